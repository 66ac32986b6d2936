//! mkfs.hammer2 as users run it: the real binary on real image files and loop devices.
//! Every refusal must exit non-zero with one line and leave every device byte-for-byte
//! unchanged.

use hammer2_test_support as common;

use common::image::*;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;

fn argv(parts: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    parts.iter().map(|p| p.as_ref().to_os_string()).collect()
}

/// Runs mkfs, expects a one-line refusal mentioning `needle`, and checks that none of
/// `devices` changed.
#[track_caller]
fn assert_refused(args: &[OsString], devices: &[&Path], needle: &str) -> String {
    let before: Vec<_> = devices.iter().map(|d| content_hash(d)).collect();
    let o = mkfs(args);
    let line = one_line_error(&o, "mkfs.hammer2: ", needle);
    assert!(o.stdout.is_empty(), "a refusal printed a summary: {}", stdout(&o));
    for (d, h) in devices.iter().zip(before) {
        assert_eq!(content_hash(d), h, "{} changed although mkfs refused", d.display());
    }
    line
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

// ---- what users get -------------------------------------------------------------------

#[test]
fn mkfs_creates_a_1g_image_with_two_copies_and_a_label_that_info_shows() {
    let d = tmp();
    let img = d.path().join("img");
    let out = ok(&mkfs(argv(&[&"--size", &"1G", &"--copies", &"2", &"-L", &"demo", &img])));
    for want in ["uuid", "label    demo", "copies   2", "check    crc32c", "1 GiB"] {
        assert!(out.contains(want), "summary lacks {want:?}:\n{out}");
    }
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 1 << 30);
    let info = ok(&hammer2(argv(&[&"info", &img])));
    assert!(info.contains("copies       2"), "{info}");
    assert!(info.contains("label        demo"), "{info}");
}

#[test]
fn mkfs_formats_two_512m_files_with_two_copies_and_info_lists_both() {
    let d = tmp();
    let a = sparse_file(d.path(), "a.img", 512 * MIB);
    let b = sparse_file(d.path(), "b.img", 512 * MIB);
    ok(&mkfs(argv(&[&"--copies", &"2", &a, &b])));
    let j = info_json([&a, &b]);
    assert_eq!(j["copies"], 2);
    let devs = j["devices"].as_array().expect("devices");
    assert_eq!(devs.len(), 2);
    for (i, p) in [&a, &b].iter().enumerate() {
        assert_eq!(devs[i]["path"], p.display().to_string());
        assert_eq!(devs[i]["state"], "online");
        assert_eq!(devs[i]["role"]["slots"][0]["slot"], i);
    }
}

#[test]
fn mkfs_formats_two_loop_devices_with_two_copies_and_info_lists_both() {
    let d = tmp();
    let a = LoopDev::attach(&sparse_file(d.path(), "a.img", 512 * MIB));
    let b = LoopDev::attach(&sparse_file(d.path(), "b.img", 512 * MIB));
    let out = ok(&mkfs(argv(&[&"--copies", &"2", &"-L", &"loops", &a.path, &b.path])));
    assert!(out.contains(&a.path.display().to_string()), "{out}");
    let j = info_json([&a.path, &b.path]);
    assert_eq!(j["copies"], 2);
    assert_eq!(j["label"], "loops");
    let devs = j["devices"].as_array().expect("devices");
    assert_eq!(devs.len(), 2);
    assert_eq!(devs[0]["path"], a.path.display().to_string());
    assert_eq!(devs[1]["path"], b.path.display().to_string());
    assert_eq!(devs[0]["size"], 512 * MIB);
}

#[test]
fn mkfs_defaults_to_one_copy_on_one_device_and_two_on_several() {
    let d = tmp();
    let one = sparse_file(d.path(), "one.img", 64 * MIB);
    ok(&mkfs([&one]));
    assert_eq!(info_json([&one])["copies"], 1);
    let a = sparse_file(d.path(), "a.img", 64 * MIB);
    let b = sparse_file(d.path(), "b.img", 64 * MIB);
    let c = sparse_file(d.path(), "c.img", 64 * MIB);
    ok(&mkfs([&a, &b, &c]));
    let j = info_json([&a, &b, &c]);
    assert_eq!(j["copies"], 2);
    assert_eq!(j["devices"][2]["role"]["any_slot"], true);
}

#[test]
fn mkfs_json_summary_parses_and_names_copies_check_and_devices() {
    let d = tmp();
    let img = d.path().join("j.img");
    let out = ok(&mkfs(argv(&[&"--json", &"--size", &"64M", &"--check", &"blake3", &"-L", &"j", &img])));
    let j: serde_json::Value = serde_json::from_str(&out).expect("mkfs --json is JSON");
    assert_eq!(j["copies"], 1);
    assert_eq!(j["check"], "blake3");
    assert_eq!(j["label"], "j");
    assert_eq!(j["devices"][0]["size"], 64 * MIB);
    assert!(j["uuid"].as_str().is_some_and(|u| u.len() == 36));
}

#[test]
fn mkfs_grows_a_smaller_file_to_size_and_never_shrinks_a_larger_one() {
    let d = tmp();
    let small = sparse_file(d.path(), "small.img", 32 * MIB);
    ok(&mkfs(argv(&[&"--size", &"64M", &small])));
    assert_eq!(std::fs::metadata(&small).unwrap().len(), 64 * MIB);
    let big = sparse_file(d.path(), "big.img", 96 * MIB);
    ok(&mkfs(argv(&[&"--size", &"64M", &big])));
    assert_eq!(std::fs::metadata(&big).unwrap().len(), 96 * MIB);
    assert_eq!(info_json([&big])["devices"][0]["size"], 96 * MIB);
}

#[test]
fn mkfs_force_formats_over_an_ext4_filesystem() {
    let d = tmp();
    let img = ext4_image(d.path(), "ext4.img");
    assert_refused(&argv(&[&img]), &[&img], "ext2/3/4");
    ok(&mkfs(argv(&[&"-f", &"-L", &"over", &img])));
    assert_eq!(info_json([&img])["label"], "over");
}

#[test]
fn mkfs_force_reformats_a_hammer2_filesystem_with_a_new_uuid() {
    let d = tmp();
    let img = d.path().join("h.img");
    ok(&mkfs(argv(&[&"--size", &"64M", &img])));
    let first = info_json([&img])["uuid"].clone();
    ok(&mkfs(argv(&[&"-f", &img])));
    assert_ne!(info_json([&img])["uuid"], first);
}

// ---- refusals: existing content ------------------------------------------------------

#[test]
fn mkfs_refuses_a_device_with_a_hammer2_filesystem_and_leaves_it_unchanged() {
    let d = tmp();
    let img = sparse_file(d.path(), "h.img", 64 * MIB);
    ok(&mkfs([&img]));
    let line = assert_refused(&argv(&[&img]), &[&img], "hammer2 filesystem");
    assert!(line.contains("-f"), "the message should say how to override: {line}");
}

#[test]
fn mkfs_refuses_a_device_with_an_ext4_filesystem_and_leaves_it_unchanged() {
    let d = tmp();
    let img = ext4_image(d.path(), "ext4.img");
    assert_refused(&argv(&[&img]), &[&img], "ext2/3/4");
}

#[test]
fn mkfs_refuses_a_device_with_an_ext4_signature_and_leaves_it_unchanged() {
    let d = tmp();
    let img = sparse_file(d.path(), "sig.img", 64 * MIB);
    poke(&img, 1080, &[0x53, 0xef]);
    assert_refused(&argv(&[&img]), &[&img], "ext2/3/4");
}

#[test]
fn mkfs_refuses_a_device_with_an_xfs_filesystem_and_leaves_it_unchanged() {
    let d = tmp();
    // mkfs.xfs wants at least 300 MiB.
    let img = sparse_file(d.path(), "xfs.img", 320 * MIB);
    run_tool("mkfs.xfs", "xfsprogs", &[os("-q"), img.as_os_str()]);
    assert_refused(&argv(&[&img]), &[&img], "an xfs filesystem");
}

#[test]
fn mkfs_refuses_a_device_with_a_btrfs_signature_and_leaves_it_unchanged() {
    let d = tmp();
    let img = sparse_file(d.path(), "btrfs.img", 64 * MIB);
    poke(&img, 65536 + 64, b"_BHRfS_M");
    assert_refused(&argv(&[&img]), &[&img], "btrfs");
}

#[test]
fn mkfs_refuses_a_device_with_a_dos_partition_table_and_leaves_it_unchanged() {
    let d = tmp();
    let img = sparse_file(d.path(), "mbr.img", 64 * MIB);
    // One Linux partition from sector 2048 to the end, and the boot signature.
    let mut entry = [0u8; 16];
    entry[4] = 0x83;
    entry[8..12].copy_from_slice(&2048u32.to_le_bytes());
    entry[12..16].copy_from_slice(&((64 * MIB / 512 - 2048) as u32).to_le_bytes());
    poke(&img, 446, &entry);
    poke(&img, 510, &[0x55, 0xaa]);
    assert_refused(&argv(&[&img]), &[&img], "partition table");
}

#[test]
fn mkfs_refuses_a_device_with_a_gpt_partition_table_and_leaves_it_unchanged() {
    let d = tmp();
    let img = gpt_image(d.path(), "gpt.img");
    assert_refused(&argv(&[&img]), &[&img], "GPT partition table");
}

// ---- -f removes what was there ----------------------------------------------------------

/// What libblkid finds on `dev` (`wipefs` lists every signature, `blkid -p` the one it
/// would mount): after `mkfs.hammer2 -f` both must find nothing (blkid does not know
/// hammer2, so "nothing" is the right answer).
#[track_caller]
fn assert_no_foreign_signature(dev: &Path) {
    let listed = run_tool("wipefs", "util-linux", &[os("--noheadings"), dev.as_os_str()]);
    assert!(stdout(&listed).trim().is_empty(), "wipefs still finds on {}:\n{}", dev.display(), stdout(&listed));
    let o = Command::new("blkid").arg("-p").arg(dev).output().expect("run blkid (util-linux)");
    assert_eq!(o.status.code(), Some(2), "blkid -p still finds something on {}: {}", dev.display(), stdout(&o));
}

#[test]
fn mkfs_refuses_an_lvm2_physical_volume_and_with_f_leaves_no_trace_of_it() {
    let d = tmp();
    let img = sparse_file(d.path(), "pv.img", 64 * MIB);
    let dev = LoopDev::attach(&img);
    // No devices file and no hints: the test leaves nothing in LVM's state behind.
    run_tool(
        "pvcreate",
        "lvm2",
        &[
            os("--devicesfile"),
            os(""),
            os("--config"),
            os("devices { hints = \"none\" }"),
            os("-y"),
            dev.path.as_os_str(),
        ],
    );
    let line = assert_refused(&argv(&[&dev.path]), &[&dev.path], "an LVM2 physical volume");
    assert!(line.contains("-f"), "{line}");
    ok(&mkfs(argv(&[&"-f", &dev.path])));
    assert_no_foreign_signature(&dev.path);
    assert_eq!(info_json([&dev.path])["devices"][0]["size"], 64 * MIB, "a hammer2 filesystem is there");
}

#[test]
fn mkfs_f_over_btrfs_wipes_its_superblock_so_a_plain_mount_does_not_take_it_for_btrfs() {
    let d = tmp();
    let img = sparse_file(d.path(), "btrfs.img", 256 * MIB);
    run_tool("mkfs.btrfs", "btrfs-progs", &[os("-q"), img.as_os_str()]);
    assert_refused(&argv(&[&img]), &[&img], "a btrfs filesystem at offset 65600");
    ok(&mkfs(argv(&[&"-f", &img])));
    assert_no_foreign_signature(&img);
    let dev = LoopDev::attach(&img);
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let o = Command::new("mount").args(["-o", "ro"]).arg(&dev.path).arg(&mnt).output().expect("run mount");
    if o.status.success() {
        let _ = Command::new("umount").arg(&mnt).status();
        panic!("mount without -t mounted the reformatted device as something else");
    }
    info_json([&img]);
}

#[test]
fn mkfs_f_over_a_gpt_disk_wipes_both_the_primary_and_the_backup_table() {
    let d = tmp();
    let img = gpt_image(d.path(), "gpt.img");
    let line = assert_refused(&argv(&[&img]), &[&img], "GPT partition table (backup)");
    assert!(line.contains("protective MBR"), "{line}");
    ok(&mkfs(argv(&[&"-f", &img])));
    assert_no_foreign_signature(&img);
    info_json([&img]);
}

#[test]
fn mkfs_refuses_all_devices_when_one_has_a_signature_and_creates_no_file() {
    let d = tmp();
    let good = sparse_file(d.path(), "good.img", 64 * MIB);
    let bad = ext4_image(d.path(), "bad.img");
    let new = d.path().join("new.img");
    assert_refused(&argv(&[&"--size", &"64M", &good, &new, &bad]), &[&good, &bad], "ext2/3/4");
    assert!(!new.exists(), "a refused mkfs created {}", new.display());
}

// ---- refusals: sizes, copies, names ---------------------------------------------------

#[test]
fn mkfs_refuses_a_device_that_is_too_small_and_leaves_it_unchanged() {
    let d = tmp();
    let img = sparse_file(d.path(), "tiny.img", 10 * MIB);
    let line = assert_refused(&argv(&[&img]), &[&img], "too small");
    assert!(line.contains(&img.display().to_string()), "the message should name the device: {line}");
}

#[test]
fn mkfs_refuses_a_missing_path_without_size_and_creates_nothing() {
    let d = tmp();
    let img = d.path().join("missing.img");
    assert_refused(&argv(&[&img]), &[], "--size");
    assert!(!img.exists());
}

#[test]
fn mkfs_refuses_the_same_path_twice_and_leaves_it_unchanged() {
    let d = tmp();
    let img = sparse_file(d.path(), "twice.img", 64 * MIB);
    assert_refused(&argv(&[&img, &img]), &[&img], "named twice");
}

#[test]
fn mkfs_refuses_one_file_under_two_names_and_leaves_it_unchanged() {
    let d = tmp();
    let img = sparse_file(d.path(), "one.img", 64 * MIB);
    let link = d.path().join("link.img");
    std::os::unix::fs::symlink(&img, &link).expect("symlink");
    assert_refused(&argv(&[&img, &link]), &[&img], "same device");
    let dotted: PathBuf = d.path().join(".").join("one.img");
    assert_refused(&argv(&[&img, &dotted]), &[&img], "same device");
}

#[test]
fn mkfs_refuses_the_same_missing_file_twice_and_creates_nothing() {
    let d = tmp();
    let new = d.path().join("new.img");
    let again = d.path().join(".").join("new.img");
    assert_refused(&argv(&[&"--size", &"64M", &new, &again]), &[], "same device");
    assert!(!new.exists());
}

#[test]
fn mkfs_refuses_five_copies_and_leaves_the_device_unchanged() {
    let d = tmp();
    let img = sparse_file(d.path(), "five.img", 256 * MIB);
    assert_refused(&argv(&[&"--copies", &"5", &img]), &[&img], "--copies must be 1 to 4");
}

#[test]
fn mkfs_refuses_copies_that_do_not_fit_on_the_devices_and_leaves_them_unchanged() {
    let d = tmp();
    // Four copies on one device need four regions of at least 16 MiB after the headers.
    let img = sparse_file(d.path(), "four.img", 40 * MIB);
    assert_refused(&argv(&[&"--copies", &"4", &img]), &[&img], "4 copies");
    // Three copies on two devices: the first holds two of them and is too small for that.
    let a = sparse_file(d.path(), "a.img", 30 * MIB);
    let b = sparse_file(d.path(), "b.img", 30 * MIB);
    assert_refused(&argv(&[&"--copies", &"3", &a, &b]), &[&a, &b], "2 copies");
}

#[test]
fn mkfs_refuses_a_directory() {
    let d = tmp();
    assert_refused(&argv(&[&d.path()]), &[], "is a directory");
}

#[test]
fn mkfs_rejects_a_malformed_size() {
    let d = tmp();
    let o = mkfs(argv(&[&"--size", &"12X", &d.path().join("x.img")]));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("invalid size"), "{}", stderr(&o));
    assert!(!d.path().join("x.img").exists());
}

// ---- refusals: devices in use ---------------------------------------------------------

#[test]
fn mkfs_refuses_a_mounted_loop_device_even_with_force_and_leaves_it_unchanged() {
    let d = tmp();
    let img = sparse_file(d.path(), "mounted.img", 64 * MIB);
    let dev = LoopDev::attach(&img);
    mkfs_ext4(&dev.path);
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    // Read-only, so the mounted filesystem itself cannot change the bytes being compared.
    let _m = Mounted::new(&dev.path, &mnt, "ro");
    assert_refused(&argv(&[&"-f", &dev.path]), &[&dev.path], "in use");
}

#[test]
fn mkfs_refuses_a_file_locked_by_another_process_and_leaves_it_unchanged() {
    use std::os::fd::AsRawFd;
    let d = tmp();
    let img = sparse_file(d.path(), "locked.img", 64 * MIB);
    // The lock a running `hammer2 mount` holds on its image files.
    let f = std::fs::File::open(&img).expect("open");
    // SAFETY: flock on a valid, owned descriptor.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    assert_refused(&argv(&[&"-f", &img]), &[&img], "in use");
    drop(f);
    ok(&mkfs(argv(&[&"-f", &img])));
}

#[test]
fn mkfs_refuses_a_file_that_backs_a_loop_device_and_leaves_it_unchanged() {
    let d = tmp();
    let img = sparse_file(d.path(), "backing.img", 64 * MIB);
    let dev = LoopDev::attach(&img);
    let line = assert_refused(&argv(&[&"-f", &img]), &[&img], "in use");
    assert!(line.contains(&dev.path.display().to_string()), "the message should name the loop device: {line}");
}

// ---- helpers ----------------------------------------------------------------------------

fn mkfs_ext4(target: &Path) {
    // No lazy initialization: nothing may write to the device later behind the test's back.
    let o = Command::new("mkfs.ext4")
        .args(["-F", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
        .arg(target)
        .output()
        .unwrap_or_else(|e| panic!("mkfs.ext4 (package e2fsprogs) is needed: {e}"));
    assert!(o.status.success(), "mkfs.ext4 failed: {}", stderr(&o));
}

/// Runs one of the system's tools (from `package`), panicking with its output if it fails.
#[track_caller]
fn run_tool(cmd: &str, package: &str, args: &[&OsStr]) -> std::process::Output {
    let o = Command::new(cmd)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .unwrap_or_else(|e| panic!("{cmd} (package {package}) is needed: {e}"));
    assert!(o.status.success(), "{cmd} {args:?} failed: {}{}", stdout(&o), stderr(&o));
    o
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A 64 MiB image with a GPT partition table of one partition, made by sfdisk: the
/// protective MBR, the primary table at 512 and the backup in the last sector.
fn gpt_image(dir: &Path, name: &str) -> PathBuf {
    use std::io::Write as _;
    let img = sparse_file(dir, name, 64 * MIB);
    let mut c = Command::new("sfdisk")
        .args(["--quiet"])
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("sfdisk (package fdisk) is needed: {e}"));
    c.stdin.take().unwrap().write_all(b"label: gpt\n,\n").unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "sfdisk failed: {}", stderr(&o));
    img
}

fn ext4_image(dir: &Path, name: &str) -> PathBuf {
    let img = sparse_file(dir, name, 64 * MIB);
    mkfs_ext4(&img);
    img
}

/// A kernel mount, unmounted when dropped.
struct Mounted {
    at: PathBuf,
}

impl Mounted {
    fn new(dev: &Path, at: &Path, opts: &str) -> Mounted {
        let o = Command::new("mount")
            .args(["-o", opts])
            .arg(dev)
            .arg(at)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        assert!(o.status.success(), "mount {} failed: {}", dev.display(), stderr(&o));
        Mounted { at: at.to_path_buf() }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).status();
    }
}
