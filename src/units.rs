//! Sizes as people write and read them: `512M` on a command line or in `-o cache=`, and
//! `1.5 GiB` in reports. Shared by every command.

/// Parses plain bytes or a number with a binary suffix: K, M, G, T (1024-based; case does not
/// matter, an optional trailing `iB` or `B` is accepted, so `1G`, `1g` and `1GiB` agree).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower.strip_suffix("ib").or_else(|| lower.strip_suffix('b')).unwrap_or(&lower);
    let (digits, shift) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 10),
        Some('m') => (&body[..body.len() - 1], 20),
        Some('g') => (&body[..body.len() - 1], 30),
        Some('t') => (&body[..body.len() - 1], 40),
        // "5iB" is not a size: a suffix without a unit letter only makes sense as "B".
        _ if body.len() != lower.len() && lower.ends_with("ib") => {
            return Err(format!("invalid size {t:?}: expected bytes or a number with K, M, G or T"));
        }
        _ => (body, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid size {t:?}: expected bytes or a number with K, M, G or T"));
    }
    let n: u64 = digits.parse().map_err(|_| format!("size {t:?} is too large"))?;
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("size {t:?} is too large"))
}

/// `1 GiB`, `1016 MiB`, `1.5 GiB`, `4096 B`: short, binary units, at most one decimal.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    let tenths = (v * 10.0).round() / 10.0;
    if tenths.fract() == 0.0 { format!("{tenths:.0} {}", UNITS[u]) } else { format!("{tenths:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bytes_and_binary_suffixes_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("100B"), Ok(100));
    }

    #[test]
    fn garbage_and_overflow_are_rejected() {
        for bad in ["", "G", "1.5G", "-1", "12X", "1iB", "99999999999T", "1 G"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn human_sizes_are_short() {
        assert_eq!(human(100), "100 B");
        assert_eq!(human(1 << 30), "1 GiB");
        assert_eq!(human(1016 << 20), "1016 MiB");
        assert_eq!(human(3 << 29), "1.5 GiB");
    }
}
