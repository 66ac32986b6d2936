//! Error messages as the tools people trust print them: `prog: path: reason`, on one line,
//! with the reason as strerror(3) words and without Rust's ` (os error N)` tail.

/// An error for the user, on one line: the whole cause chain (`{e:#}` of an anyhow error,
/// or any Display), every ` (os error N)` tail dropped, line breaks joined with `; `.
pub fn one_line(e: &dyn std::fmt::Display) -> String {
    let s = format!("{e:#}");
    strip_os_error(&s).lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

fn strip_os_error(s: &str) -> String {
    const TAIL: &str = " (os error ";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(TAIL) {
        let after = &rest[i + TAIL.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        out += &rest[..i];
        if digits > 0 && after[digits..].starts_with(')') {
            rest = &after[digits + 1..];
        } else {
            out += TAIL;
            rest = after;
        }
    }
    out + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_error_tails_go_and_the_reason_stays() {
        // ENOENT, as std formats it.
        let e = anyhow::Error::from(std::io::Error::from_raw_os_error(2)).context("cannot open a");
        assert_eq!(one_line(&e), "cannot open a: No such file or directory");
        assert_eq!(
            one_line(&"cannot open a: No such file or directory (os error 2): Permission denied (os error 13)"),
            "cannot open a: No such file or directory: Permission denied"
        );
        assert_eq!(one_line(&"kept (os error x) and (os error 12"), "kept (os error x) and (os error 12");
        assert_eq!(one_line(&"two\nlines\n"), "two; lines");
    }
}
