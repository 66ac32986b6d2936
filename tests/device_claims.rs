//! Who may use a filesystem's devices at the same time (the engine's device claims, DESIGN §2),
//! as users meet it: real `hammer2 mount`s, `mkfs.hammer2`, `fsck.hammer2`, `hammer2 scrub` and
//! `resync` on real image files, hard links to them and loop devices over them.
//!
//! - a read-write mount, mkfs, fsck -y/-p, scrub and resync claim every device exclusively;
//! - a read-only mount and fsck -n share a claim: readers together, no writer beside them;
//! - a file behind a loop device and the loop device are one device, whichever is named;
//! - a hard link is the same file: refused at once, not after a wait;
//! - a daemon still finishing its final commit after `umount` is waited for by every
//!   offline command, so `umount m && fsck.hammer2 a b` works.

use hammer2_test_support as common;

use common::image::{LoopDev, content_hash, exit_code, fsck, hammer2, mkfs, ok, one_line_error, stderr};
use common::mount::*;
use std::path::{Path, PathBuf};
use std::process::Output;

const MIB: u64 = 1 << 20;

/// A second, empty mount point beside the image's own.
fn second_mountpoint(img: &Image, name: &str) -> PathBuf {
    let p = img.dir.path().join(name);
    std::fs::create_dir(&p).expect("second mount point");
    p
}

/// Every byte of every device, to prove a refused command wrote nothing.
fn hashes(devices: &[&Path]) -> Vec<blake3::Hash> {
    devices.iter().map(|d| content_hash(d)).collect()
}

/// The command failed with one line on stderr saying `device` is in use.
#[track_caller]
fn refused_in_use(o: &Output, prefix: &str, device: &Path) -> String {
    let line = one_line_error(o, prefix, "is in use");
    assert!(line.contains(&*device.to_string_lossy()), "{line:?} does not name {}", device.display());
    line
}

#[test]
fn an_image_behind_a_loop_device_and_the_loop_device_are_one_device_for_mount() {
    let img = Image::by_mkfs(1, 64 * MIB, 1);
    let file = img.devices[0].as_path();
    let other = second_mountpoint(&img, "other");

    // losetup first: the file is refused, since a mount of the loop device would go unseen.
    {
        let lo = LoopDev::attach(file);
        let out = img.try_mount_devices(&[file], &img.mountpoint(), "", &[]);
        let line = refused_in_use(&out, "hammer2 mount: ", file);
        assert!(line.contains(&*lo.path.to_string_lossy()), "{line:?} names the loop device");
        assert!(!is_mounted(&img.mountpoint()));
    }

    // The file mounted first, then a loop device attached over it: mounting the loop device
    // is refused too, and the first mount's data survives.
    let m = img.mount();
    std::fs::write(m.join("kept"), pattern(300_000, 7)).unwrap();
    let lo = LoopDev::attach(file);
    let out = img.try_mount_devices(&[&lo.path], &other, "", &[]);
    let line = refused_in_use(&out, "hammer2 mount: ", &lo.path);
    assert!(line.contains(&*file.to_string_lossy()), "{line:?} names the backing file");
    assert_eq!(mount_count(&other), 0, "nothing got mounted through the loop device");
    for cmd in ["-y", "-n"] {
        let o = fsck([os(cmd), lo.path.as_os_str()]);
        assert_eq!(exit_code(&o), 8, "fsck {cmd} of the loop device: {}", stderr(&o));
        refused_in_use(&o, "fsck.hammer2: ", &lo.path);
    }
    m.unmount();
    drop(lo);
    let m = img.mount_with("ro");
    assert_eq!(std::fs::read(m.join("kept")).unwrap(), pattern(300_000, 7));
    m.unmount();
    img.assert_no_panics();
}

#[test]
fn a_read_only_mount_keeps_every_writer_away_and_lets_readers_in() {
    let img = Image::by_mkfs(2, 64 * MIB, 2);
    let (a, b) = (img.devices[0].as_path(), img.devices[1].as_path());
    let m = img.mount();
    std::fs::write(m.join("f"), pattern(500_000, 3)).unwrap();
    m.unmount();
    let before = hashes(&[a, b]);

    let ro = img.mount_with("ro");
    let rw = second_mountpoint(&img, "rw");
    let out = img.try_mount_devices(&[a, b], &rw, "", &[]);
    refused_in_use(&out, "hammer2 mount: ", a);
    assert_eq!(mount_count(&rw), 0, "no read-write mount beside a read-only one");

    let o = mkfs([os("-f"), a.as_os_str(), b.as_os_str()]);
    refused_in_use(&o, "mkfs.hammer2: ", a);
    for mode in ["-y", "-p"] {
        let o = fsck([os(mode), a.as_os_str(), b.as_os_str()]);
        assert_eq!(exit_code(&o), 8, "fsck {mode}: {}", stderr(&o));
        refused_in_use(&o, "fsck.hammer2: ", a);
    }
    for cmd in ["scrub", "resync"] {
        let o = hammer2([os(cmd), a.as_os_str(), b.as_os_str()]);
        assert_eq!(exit_code(&o), 8, "{cmd}: {}", stderr(&o));
        refused_in_use(&o, &format!("hammer2 {cmd}: "), a);
    }
    assert_eq!(hashes(&[a, b]), before, "no writer changed a byte under the read-only mount");

    // Readers share: fsck -n, info and a second read-only mount run beside it.
    let o = fsck([os("-n"), a.as_os_str(), b.as_os_str()]);
    assert_eq!(
        exit_code(&o),
        0,
        "fsck -n beside a read-only mount: {}{}",
        stderr(&o),
        String::from_utf8_lossy(&o.stdout)
    );
    ok(&hammer2([os("info"), a.as_os_str(), b.as_os_str()]));
    let out = img.try_mount_devices(&[a, b], &rw, "ro", &[]);
    assert!(out.status.success(), "a second read-only mount: {}", stderr(&out));
    let ro2 = Mount::attach(&rw, img.log_path());
    assert_eq!(std::fs::read(ro2.join("f")).unwrap(), pattern(500_000, 3));
    assert_eq!(std::fs::read(ro.join("f")).unwrap(), pattern(500_000, 3));
    ro2.unmount();
    ro.unmount();
    assert_eq!(hashes(&[a, b]), before, "read-only mounts write nothing");
    img.assert_no_panics();
}

#[test]
fn a_hard_link_to_a_mounted_image_is_refused_at_once() {
    let img = Image::by_mkfs(1, 64 * MIB, 1);
    let m = img.mount();
    let link = img.dir.path().join("second-name.img");
    std::fs::hard_link(&img.devices[0], &link).unwrap();
    let other = second_mountpoint(&img, "other");

    // One line, and no "waiting for the previous daemon": the daemon holding the file
    // serves a live mount, so there is nothing to wait for.
    let out = img.try_mount_devices(&[&link], &other, "", &[]);
    refused_in_use(&out, "hammer2 mount: ", &link);
    assert_eq!(mount_count(&other), 0);
    let o = hammer2([os("scrub"), link.as_os_str()]);
    assert_eq!(exit_code(&o), 8, "{}", stderr(&o));
    refused_in_use(&o, "hammer2 scrub: ", &link);
    let o = fsck([os("-y"), link.as_os_str()]);
    assert_eq!(exit_code(&o), 8, "{}", stderr(&o));
    refused_in_use(&o, "fsck.hammer2: ", &link);
    let o = mkfs([os("-f"), link.as_os_str()]);
    refused_in_use(&o, "mkfs.hammer2: ", &link);
    m.unmount();
    img.assert_no_panics();
}

/// Mounts, writes enough that the final commit takes a while (nothing is committed before
/// it: no background commit within the hour, room for it all in memory), unmounts and at
/// once runs `then` (a shell command naming the devices as $A and $B), returning its output.
fn right_after_umount(img: &Image, then: &str) -> Output {
    let mut m = img.mount_with("sync_interval=3600,cache=512M");
    for i in 0..4 {
        std::fs::write(m.join(format!("f{i}")), pattern(24 << 20, i)).unwrap();
    }
    let script = format!("umount '{}' && {then}", m.path.display());
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("A", &img.devices[0])
        .env("B", &img.devices[1])
        .env("FSCK", common::image::fsck_bin())
        .env("MKFS", common::image::mkfs_bin())
        .env("HAMMER2", HAMMER2)
        .output()
        .expect("run sh");
    m.wait_exit();
    out
}

/// `umount && then` succeeds (exits 0); `what` names the command in the failure.
fn succeeds_right_after_umount(img: &Image, then: &str, what: &str) {
    let out = right_after_umount(img, then);
    assert_eq!(exit_code(&out), 0, "umount && {what}: {}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
}

#[test]
fn umount_then_an_offline_command_waits_for_the_finishing_daemon() {
    let img = Image::by_mkfs(2, 256 * MIB, 2);
    succeeds_right_after_umount(&img, r#""$FSCK" -n "$A" "$B""#, "fsck.hammer2 -n");
    succeeds_right_after_umount(&img, r#""$FSCK" -y "$A" "$B""#, "fsck.hammer2 -y");
    succeeds_right_after_umount(&img, r#""$HAMMER2" scrub "$A" "$B""#, "hammer2 scrub");
    // What the daemon committed last is all there: the final commit was not cut short.
    img.assert_consistent();
    let m = img.mount_with("ro");
    for i in 0..4 {
        assert_eq!(hash_file(&m.join(format!("f{i}"))), *blake3::hash(&pattern(24 << 20, i)).as_bytes());
    }
    m.unmount();
    succeeds_right_after_umount(&img, r#""$MKFS" -f "$A" "$B""#, "mkfs.hammer2 -f");
    img.assert_no_panics();
}

#[test]
fn a_read_only_mount_of_a_loop_device_keeps_writers_of_the_device_and_its_file_away() {
    let img = Image::by_mkfs(1, 64 * MIB, 1);
    let file = img.devices[0].as_path();
    let lo = LoopDev::attach(file);
    let out = img.try_mount_devices(&[&lo.path], &img.mountpoint(), "ro", &[]);
    assert!(out.status.success(), "read-only mount of {}: {}", lo.path.display(), stderr(&out));
    let ro = Mount::attach(&img.mountpoint(), img.log_path());
    let before = content_hash(file);

    let o = mkfs([os("-f"), lo.path.as_os_str()]);
    refused_in_use(&o, "mkfs.hammer2: ", &lo.path);
    let o = fsck([os("-y"), lo.path.as_os_str()]);
    assert_eq!(exit_code(&o), 8, "{}", stderr(&o));
    refused_in_use(&o, "fsck.hammer2: ", &lo.path);
    let rw = second_mountpoint(&img, "rw");
    let out = img.try_mount_devices(&[&lo.path], &rw, "", &[]);
    refused_in_use(&out, "hammer2 mount: ", &lo.path);
    assert_eq!(content_hash(file), before, "nothing was written under the read-only mount");

    // Readers of the block device share it.
    let o = fsck([os("-n"), lo.path.as_os_str()]);
    assert_eq!(exit_code(&o), 0, "fsck -n beside it: {}", stderr(&o));
    let out = img.try_mount_devices(&[&lo.path], &rw, "ro", &[]);
    assert!(out.status.success(), "a second read-only mount: {}", stderr(&out));
    Mount::attach(&rw, img.log_path()).unmount();
    ro.unmount();
    img.assert_no_panics();
}
