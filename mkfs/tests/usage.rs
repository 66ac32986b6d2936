//! The usage text. Having an integration test here also makes `cargo test --workspace` build
//! the `mkfs-hammer2` binary itself, which the command-line tests at the workspace root run.

use std::process::Command;

#[test]
fn help_lists_every_option_under_the_installed_name() {
    let o = Command::new(env!("CARGO_BIN_EXE_mkfs-hammer2")).arg("--help").output().expect("run mkfs-hammer2");
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("Usage: mkfs.hammer2 "), "{help}");
    for opt in ["--label", "--copies", "--check", "--size", "--force", "--json"] {
        assert!(help.contains(opt), "--help lacks {opt}:\n{help}");
    }
}

#[test]
fn no_device_is_a_usage_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_mkfs-hammer2")).output().expect("run mkfs-hammer2");
    assert_eq!(o.status.code(), Some(2), "clap's usage errors exit 2");
}
