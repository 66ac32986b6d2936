//! Format version 2 from the command line, mounted for real through FUSE: `mkfs.hammer2
//! --format-version 2` → mount → write a tree → remount → same tree → fsck clean;
//! `hammer2 upgrade` of a version-1 filesystem holding data (and its refusals: a mounted
//! device, garbage, one device of two); `-o pfs=NAME`.

use hammer2_test_support as common;

use common::image::{exit_code, fsck, hammer2, info_json, mkfs, ok, one_line_error, stdout};
use common::mount::{Image, pattern, require_fuse, snapshot};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

/// `n` images of `size` made by the real mkfs with `--format-version VERSION`.
fn image(n: usize, size: u64, copies: u8, version: &str) -> Image {
    require_fuse();
    let dir = tempfile::Builder::new().prefix("h2v2").tempdir().expect("temp dir");
    let devices: Vec<PathBuf> = (0..n).map(|i| dir.path().join(format!("dev{i}.img"))).collect();
    let args: Vec<String> = vec![
        "--size".into(),
        size.to_string(),
        "--copies".into(),
        copies.to_string(),
        "--format-version".into(),
        version.into(),
    ];
    let out = mkfs(args.iter().map(OsStr::new).chain(devices.iter().map(|d| d.as_os_str())));
    assert!(ok(&out).contains(&format!("format   version {version}")), "{}", stdout(&out));
    std::fs::create_dir(dir.path().join("mnt")).expect("mount point");
    Image { dir, devices }
}

fn write_tree(root: &Path) {
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    for i in 0..20u8 {
        std::fs::write(root.join(format!("a/f{i}")), pattern(1000 + usize::from(i) * 7919, i)).unwrap();
    }
    std::fs::write(root.join("a/b/c/big"), pattern(3 << 20, 9)).unwrap();
    std::os::unix::fs::symlink("a/b/c/big", root.join("link")).unwrap();
    std::fs::hard_link(root.join("a/f1"), root.join("a/b/hard")).unwrap();
}

/// The tree as the devices hold it (mounted afresh, nothing pending).
fn committed_snapshot(img: &Image) -> std::collections::BTreeMap<PathBuf, common::mount::Snap> {
    let m = img.mount();
    let s = snapshot(&m.join(""));
    m.unmount();
    s
}

#[track_caller]
fn fsck_clean(img: &Image) {
    let out = fsck(std::iter::once(OsStr::new("-n")).chain(img.devices.iter().map(|d| d.as_os_str())));
    assert_eq!(exit_code(&out), 0, "fsck: {}{}", stdout(&out), common::image::stderr(&out));
}

fn devices_args(img: &Image) -> Vec<&OsStr> {
    img.devices.iter().map(|d| d.as_os_str()).collect()
}

#[test]
fn mkfs_version2_mount_write_remount_and_fsck_clean() {
    let img = image(2, 128 * MIB, 2, "2");
    let info = info_json(devices_args(&img));
    assert_eq!(info["format_version"], 2, "{info}");
    let m = img.mount();
    write_tree(&m.join(""));
    // st_blocks of a file counts its blocks once they are committed: compare committed trees.
    m.unmount();
    let before = committed_snapshot(&img);
    fsck_clean(&img);
    let m = img.mount_with("pfs=ROOT");
    assert_eq!(snapshot(&m.join("")), before);
    std::fs::write(m.join("after"), b"more").unwrap();
    m.unmount();
    fsck_clean(&img);
    img.assert_no_panics();
}

#[test]
fn mount_refuses_a_pfs_that_does_not_exist_with_one_line() {
    let img = image(1, 64 * MIB, 1, "2");
    let out = img.try_mount(&img.mountpoint(), "pfs=nothere");
    one_line_error(&out, "hammer2 mount", "no PFS named \"nothere\"");
    let out = img.try_mount(&img.mountpoint(), "pfs=a/b");
    one_line_error(&out, "hammer2 mount", "pfs");
}

#[test]
fn upgrade_of_a_version1_filesystem_with_data() {
    let img = image(2, 128 * MIB, 2, "1");
    let m = img.mount();
    write_tree(&m.join(""));
    m.unmount();
    let before = committed_snapshot(&img);

    // Refused while mounted: one line, nothing written.
    let m = img.mount();
    let out = hammer2(std::iter::once(OsStr::new("upgrade")).chain(devices_args(&img)));
    assert_eq!(exit_code(&out), 8);
    one_line_error(&out, "hammer2 upgrade", "in use");
    m.unmount();
    assert_eq!(info_json(devices_args(&img))["format_version"], 1);

    // One device of two.
    let out = hammer2(["upgrade".as_ref(), img.devices[0].as_os_str()]);
    assert_eq!(exit_code(&out), 8);
    one_line_error(&out, "hammer2 upgrade", "missing; the upgrade needs every device of the filesystem");
    assert!(
        !common::image::stderr(&out).contains("-o degraded"),
        "the upgrade has no degraded mode: {}",
        common::image::stderr(&out)
    );
    assert_eq!(info_json(devices_args(&img))["format_version"], 1);

    let out = hammer2(std::iter::once(OsStr::new("upgrade")).chain(devices_args(&img)));
    assert!(ok(&out).contains("upgraded to format version 2"), "{}", stdout(&out));
    assert_eq!(info_json(devices_args(&img))["format_version"], 2);
    let out = hammer2(std::iter::once(OsStr::new("upgrade")).chain(devices_args(&img)));
    assert!(ok(&out).contains("already format version 2"), "{}", stdout(&out));
    fsck_clean(&img);

    let m = img.mount();
    assert_eq!(snapshot(&m.join("")), before);
    std::fs::write(m.join("a/new"), b"written after the upgrade").unwrap();
    m.unmount();
    fsck_clean(&img);
    img.assert_no_panics();
}

#[test]
fn upgrade_refuses_garbage_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::image::sparse_file(dir.path(), "junk.img", 64 * MIB);
    common::image::poke(&p, 0, &[0x5a; 65536]);
    let before = std::fs::read(&p).unwrap();
    let out = hammer2(["upgrade".as_ref(), p.as_os_str()]);
    assert_eq!(exit_code(&out), 8);
    one_line_error(&out, "hammer2 upgrade", "no valid hammer2 volume header");
    assert!(std::fs::read(&p).unwrap() == before, "nothing written");
}
