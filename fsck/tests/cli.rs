//! The command line: devices in use, things that are not hammer2, missing paths, usage
//! errors, exit statuses and the JSON report.

use hammer2_test_support::fsck as common;

use common::image::*;
use common::run::*;
use hammer2::storage::file::{FileStorage, OpenMode};
use std::process::Command;

/// Asserts exactly one line on stderr, starting with `fsck.hammer2: ` and containing `needle`.
#[track_caller]
fn one_line_error(o: &std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got {err:?}");
    assert!(lines[0].starts_with("fsck.hammer2: "), "{:?}", lines[0]);
    assert!(lines[0].contains(needle), "{:?} does not mention {needle:?}", lines[0]);
}

#[test]
fn an_image_held_by_a_running_hammer2_is_refused_with_exit_8_unless_n_f() {
    let _serial = common::serial();
    let (img, _) = standard(1, 64 * MIB, 1);
    let held = FileStorage::open(&img.paths[0], OpenMode::Exclusive).expect("hold the image like the daemon");
    for mode in ["-n", "-y", "-p"] {
        let o = fsck(&[mode], &img.args());
        assert_eq!(status(&o), 8, "{mode}: {}", text(&o));
        one_line_error(&o, "is in use");
    }
    let o = fsck(&["-y", "-f"], &img.args());
    assert_eq!(status(&o), 8, "-f never allows repairs of a filesystem in use: {}", text(&o));
    let (st, r) = fsck_json(&["-n", "-f"], &img.args());
    assert_eq!(st, 0, "{}", messages(&r));
    assert!(r["notes"].to_string().contains("in use"), "{}", r["notes"]);
    drop(held);
    assert_eq!(status(&fsck(&["-n"], &img.args())), 0);
}

#[test]
fn a_mounted_filesystem_is_refused() {
    let _serial = common::serial();
    let (img, _) = standard(1, 64 * MIB, 1);
    let fs = img.mount();
    let o = fsck(&["-y"], &img.args());
    assert_eq!(status(&o), 8, "{}", text(&o));
    one_line_error(&o, "is in use");
    fs.unmount().expect("unmount");
}

/// A loop device over an image, detached when dropped.
struct Loop(String);

impl Loop {
    fn attach(file: &std::path::Path) -> Loop {
        let o = Command::new("losetup").args(["--find", "--show"]).arg(file).output().expect("losetup runs");
        assert!(o.status.success(), "losetup failed: {}", String::from_utf8_lossy(&o.stderr));
        Loop(String::from_utf8_lossy(&o.stdout).trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

#[test]
fn a_block_device_in_use_and_an_image_behind_a_loop_device_are_refused() {
    let _serial = common::serial();
    let (img, _) = standard(1, 64 * MIB, 1);
    let lo = Loop::attach(&img.paths[0]);
    // The loop device itself checks clean.
    let (st, r) = fsck_json(&["-n"], std::slice::from_ref(&lo.0));
    assert_eq!(st, 0, "{}", messages(&r));
    // Its backing file is refused: the loop driver never takes the file's lock.
    let o = fsck(&["-n"], &img.args());
    assert_eq!(status(&o), 8, "{}", text(&o));
    one_line_error(&o, &lo.0);
    // A block device opened exclusively (as a mount does) is refused.
    let held = FileStorage::open(std::path::Path::new(&lo.0), OpenMode::Exclusive).expect("O_EXCL");
    let o = fsck(&["-y"], std::slice::from_ref(&lo.0));
    assert_eq!(status(&o), 8, "{}", text(&o));
    one_line_error(&o, "is in use");
    drop(held);
}

#[test]
fn things_that_are_not_hammer2_are_operational_errors_with_a_clear_message() {
    let _serial = common::serial();
    let d = tempfile::tempdir().expect("tempdir");
    let garbage = d.path().join("garbage.img");
    std::fs::write(&garbage, pattern(7, 40 << 20)).expect("write");
    let o = fsck(&["-n"], &[path_of(&garbage)]);
    assert_eq!(status(&o), 8, "{}", text(&o));
    one_line_error(&o, "holds no hammer2 filesystem");

    let ext4 = d.path().join("ext4.img");
    std::fs::File::create(&ext4).and_then(|f| f.set_len(64 << 20)).expect("create");
    let ok = Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&ext4).status().is_ok_and(|s| s.success());
    assert!(ok, "mkfs.ext4 is needed for this test");
    let o = fsck(&["-y"], &[path_of(&ext4)]);
    assert_eq!(status(&o), 8, "{}", text(&o));
    one_line_error(&o, "ext2/3/4");

    let tiny = d.path().join("tiny.img");
    std::fs::write(&tiny, b"short").expect("write");
    let o = fsck(&["-n"], &[path_of(&tiny)]);
    assert_eq!(status(&o), 8, "{}", text(&o));
    one_line_error(&o, "holds no hammer2 filesystem");

    let o = fsck(&["-n"], &[path_of(&d.path().join("missing.img"))]);
    assert_eq!(status(&o), 8, "{}", text(&o));
    one_line_error(&o, "cannot open");

    let o = fsck(&["-n"], &[path_of(d.path())]);
    assert_eq!(status(&o), 8, "{}", text(&o));
    one_line_error(&o, "not a regular file or block device");
}

#[test]
fn a_truncated_device_is_an_operational_error_that_says_so() {
    let _serial = common::serial();
    let (img, _) = standard(1, 64 * MIB, 1);
    std::fs::OpenOptions::new().write(true).open(&img.paths[0]).and_then(|f| f.set_len(40 * MIB)).expect("truncate");
    let o = fsck(&["-n"], &img.args());
    assert_eq!(status(&o), 8, "{}", text(&o));
    one_line_error(&o, "the header says the device has 67108864 bytes");
}

#[test]
fn usage_errors_exit_16_and_help_exits_0() {
    let _serial = common::serial();
    let (img, _) = standard(1, 64 * MIB, 1);
    let a = img.args();
    for args in [vec![], vec!["-n", "-y"], vec!["-y", "-p"], vec!["--bogus"]] {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if !args.is_empty() {
            all.extend(a.clone());
        }
        let o = Command::new(bin()).args(&all).output().expect("run");
        assert_eq!(status(&o), 16, "{all:?}: {}", text(&o));
    }
    let twice = vec![a[0].clone(), a[0].clone()];
    let o = fsck(&["-n"], &twice);
    assert_eq!(status(&o), 16, "{}", text(&o));
    one_line_error(&o, "named twice");
    for flag in ["--help", "--version"] {
        let o = Command::new(bin()).arg(flag).output().expect("run");
        assert_eq!(status(&o), 0, "{flag}: {}", text(&o));
    }
}

#[test]
fn the_json_report_has_findings_counts_and_timing() {
    let _serial = common::serial();
    let (img, _) = standard(2, 64 * MIB, 2);
    let (st, r) = fsck_json(&["-n"], &img.args());
    assert_eq!(st, 0);
    for key in [
        "mode",
        "devices",
        "uuid",
        "tid",
        "copies",
        "findings",
        "errors_found",
        "errors_fixed",
        "errors_left",
        "counts",
        "seconds",
        "read_mb_per_s",
        "exit_status",
    ] {
        assert!(!r[key].is_null(), "no {key} in {r}");
    }
    assert_eq!(r["mode"], "check");
    assert_eq!(r["devices"].as_array().map(Vec::len), Some(2));
    let c = &r["counts"];
    assert!(c["blocks"].as_u64() > Some(100), "{c}");
    assert!(c["directories"].as_u64() >= Some(5), "{c}");
    assert!(c["bytes_read"].as_u64() > c["bytes_allocated"].as_u64().map(|b| b * 3 / 2), "two copies are read: {c}");
    let o = fsck(&["-n", "-v"], &img.args());
    let t = text(&o);
    assert!(
        t.contains("blocks") && t.contains("inodes") && t.contains("MB/s") && t.contains("0 error(s) found"),
        "{t}"
    );
}

#[test]
fn p_stops_at_what_needs_asking_and_says_to_run_y() {
    let _serial = common::serial();
    let (img, _) = standard(1, 64 * MIB, 1);
    common::damage::with_engine(&img, |fs| {
        common::damage::add_entry(fs, "/dir", b"ghost", 9999, hammer2_format::dtype::REG);
        common::damage::set_nlink(fs, "/dir/f3", 4);
    });
    let o = fsck(&["-p"], &img.args());
    let t = text(&o);
    assert_eq!(status(&o), 5, "the link count is fixed (1), the entry is left (4): {t}");
    assert!(t.contains("UNEXPECTED INCONSISTENCY: run fsck.hammer2 -y"), "{t}");
    assert!(t.contains("/dir/ghost") && t.contains("REPAIRED: set to 1"), "{t}");
    let o = fsck(&["-y"], &img.args());
    assert_eq!(status(&o), 1, "{}", text(&o));
    assert_eq!(status(&fsck(&["-n"], &img.args())), 0);
}
