//! The usage text of each tool. Having an integration test here also makes
//! `cargo test --workspace` build the `hammer2-fsx` and `fuse-floor` binaries themselves,
//! which the reliability tests at the workspace root run (cargo builds a package's
//! binaries for a test run only when that package has integration tests).

use std::process::Command;

#[test]
fn fsx_help_names_every_exerciser() {
    let o = Command::new(env!("CARGO_BIN_EXE_hammer2-fsx")).arg("--help").output().expect("run hammer2-fsx");
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for mode in ["data", "meta", "fill"] {
        assert!(help.contains(mode), "--help lacks {mode}:\n{help}");
    }
}

#[test]
fn fuse_floor_without_a_mountpoint_is_a_usage_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_fuse-floor")).output().expect("run fuse-floor");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("usage: fuse-floor MOUNTPOINT"));
}
