//! Bad input to `hammer2 mount`: one clear line on stderr, a non-zero exit, nothing mounted,
//! and not one byte written to any device.

use hammer2_test_support as common;

use common::mount::*;
use std::path::{Path, PathBuf};
use std::process::Output;

const SMALL: u64 = 64 << 20;

/// The promise every refusal keeps (`mounts` is how many mounts `mountpoint` had before).
fn assert_refused(out: &Output, mountpoint: &Path, mounts: usize, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what}: hammer2 mount succeeded");
    assert_eq!(err.lines().count(), 1, "{what}: not one line:\n{err}");
    assert!(err.starts_with("hammer2 mount: "), "{what}: {err}");
    assert_eq!(mount_count(mountpoint), mounts, "{what}: something got mounted");
    err
}

fn refused_without_writing(img: &Image, mountpoint: &Path, opts: &str, what: &str) -> String {
    let before = img.contents();
    let mounts = mount_count(mountpoint);
    let out = img.try_mount(mountpoint, opts);
    let err = assert_refused(&out, mountpoint, mounts, what);
    assert!(before == img.contents(), "{what}: the device changed");
    err
}

#[test]
fn a_device_that_is_not_hammer2_is_refused_untouched() {
    let img = Image::with(1, SMALL, None);
    std::fs::write(&img.devices[0], vec![0x5a; SMALL as usize]).unwrap();
    let err = refused_without_writing(&img, &img.mountpoint(), "", "not hammer2");
    assert!(err.contains("no valid hammer2 volume header"), "{err}");
}

#[test]
fn a_corrupted_header_is_refused_untouched() {
    let img = Image::with(1, SMALL, None);
    let mut bytes = std::fs::read(&img.devices[0]).unwrap();
    for slot in 0..hammer2_format::layout::HEADER_SLOTS {
        bytes[hammer2_format::layout::header_offset(slot) as usize + 200] ^= 0xff;
    }
    std::fs::write(&img.devices[0], &bytes).unwrap();
    let err = refused_without_writing(&img, &img.mountpoint(), "", "corrupted header");
    assert!(err.contains("no valid hammer2 volume header"), "{err}");
}

#[test]
fn a_missing_device_is_refused() {
    let img = Image::with(1, SMALL, None);
    let missing = img.dir.path().join("missing.img");
    let out = std::process::Command::new(HAMMER2)
        .args(["mount".as_ref(), missing.as_os_str(), img.mountpoint().as_os_str()])
        .output()
        .unwrap();
    let err = assert_refused(&out, &img.mountpoint(), 0, "missing device");
    assert!(err.contains("missing.img") && err.contains("No such file"), "{err}");
}

#[test]
fn a_missing_member_needs_the_degraded_option() {
    let img = Image::with(2, SMALL, Some(2));
    let m = img.mount();
    std::fs::write(m.join("f"), b"on both devices").unwrap();
    m.unmount();
    let only_first = Image { dir: tempfile::tempdir().unwrap(), devices: vec![img.devices[0].clone()] };
    std::fs::create_dir(only_first.mountpoint()).unwrap();
    let err = refused_without_writing(&only_first, &only_first.mountpoint(), "", "missing member");
    assert!(err.contains("is missing; mount with -o degraded"), "{err}");
    let m = only_first.mount_with("degraded");
    assert_eq!(std::fs::read(m.join("f")).unwrap(), b"on both devices");
    m.unmount();
}

#[test]
fn a_master_that_is_not_one_of_the_devices_is_refused() {
    let img = Image::with(2, SMALL, Some(2));
    let err = refused_without_writing(&img, &img.mountpoint(), "master=/dev/nonesuch", "bad master");
    assert!(err.contains("master=/dev/nonesuch is not one of the devices given"), "{err}");
    // Naming one of them is fine (here the devices agree, so it changes nothing).
    let m = img.mount_with(&format!("master={}", img.devices[1].display()));
    m.unmount();
}

#[test]
fn a_mount_point_that_does_not_exist_or_is_a_file_is_refused() {
    let img = Image::with(1, SMALL, None);
    let nowhere = img.dir.path().join("nowhere");
    let err = refused_without_writing(&img, &nowhere, "", "no mount point");
    assert!(err.contains("does not exist"), "{err}");
    let file = img.dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let err = refused_without_writing(&img, &file, "", "file mount point");
    assert!(err.contains("is not a directory"), "{err}");
}

#[test]
fn a_busy_or_non_empty_mount_point_is_refused() {
    let first = Image::with(1, SMALL, None);
    let m = first.mount();
    let second = Image::with(1, SMALL, None);
    let err = refused_without_writing(&second, &m.path, "", "busy mount point");
    assert!(err.contains("is busy"), "{err}");
    assert!(is_mounted(&m.path), "the first mount must survive");
    m.unmount();

    let full = second.mountpoint();
    std::fs::write(full.join("lost+found"), b"").unwrap();
    let err = refused_without_writing(&second, &full, "", "non-empty mount point");
    assert!(err.contains("is not empty"), "{err}");
    let m = second.mount_with("nonempty");
    m.unmount();
}

#[test]
fn a_device_already_mounted_is_refused() {
    let img = Image::with(1, SMALL, None);
    let m = img.mount();
    let other: PathBuf = img.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let out = img.try_mount(&other, "");
    let err = assert_refused(&out, &other, 0, "device in use");
    assert!(err.contains("is in use"), "{err}");
    m.unmount();
}

#[test]
fn unknown_or_malformed_options_are_refused_before_anything_is_opened() {
    let img = Image::with(1, SMALL, None);
    for (opts, want) in [
        ("bogus", "unknown mount option 'bogus'"),
        ("cache=lots", "bad value for cache"),
        ("sync_interval=-1", "bad value for sync_interval"),
        ("ro=yes", "takes no value"),
    ] {
        let err = refused_without_writing(&img, &img.mountpoint(), opts, opts);
        assert!(err.contains(want), "{opts}: {err}");
    }
}
