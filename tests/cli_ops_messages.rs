//! Error messages as the tools people trust print them: `prog: what: reason`, one line,
//! without Rust's "(os error N)" tails (the one formatter: `hammer2_cli::one_line`).

use hammer2_test_support as common;

use common::image::*;

#[test]
fn error_messages_have_no_os_error_tails() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("missing.img");
    let m = missing.to_str().unwrap();
    for (out, prefix) in [
        (hammer2(["info", m]), "hammer2 info: "),
        (hammer2(["scrub", m]), "hammer2 scrub: "),
        (hammer2(["resync", m]), "hammer2 resync: "),
        (fsck(["-n", m]), "fsck.hammer2: "),
    ] {
        let line = one_line_error(&out, prefix, "No such file or directory");
        assert!(!line.contains("(os error"), "{line}");
        assert!(line.contains(m), "{line} does not name the path");
    }
    let dir = d.path().join("dir");
    std::fs::create_dir(&dir).unwrap();
    let line =
        one_line_error(&mkfs(["--size", "64M", dir.join("sub/x.img").to_str().unwrap()]), "mkfs.hammer2: ", "x.img");
    assert!(!line.contains("(os error"), "{line}");
}
