//! `hammer2 scrub`, `resync` and `info` given devices (or a mount point) the way users get
//! them wrong: one device of a pair, a blank member, a mount point with nothing mounted, a
//! file that is not hammer2. Real binaries on image files made by `mkfs.hammer2`.
//!
//! - scrub and resync, like mount, run without a member only when asked (`--degraded`);
//! - every operational error of scrub and resync is one line and exit status 8;
//! - info shows the filesystem of the devices that hold it and names the one that does not.

use hammer2_test_support as common;

use common::image::{content_hash, exit_code, hammer2, info_json, ok, one_line_error, sparse_file, stderr, stdout};
use common::mount::*;

const MIB: u64 = 1 << 20;

/// Two image files with a filesystem of two copies holding one file.
fn pair_with_data() -> Image {
    let img = Image::by_mkfs(2, 64 * MIB, 2);
    let m = img.mount();
    std::fs::write(m.join("f"), pattern(400_000, 5)).unwrap();
    m.unmount();
    img
}

#[test]
fn scrub_or_resync_of_one_device_of_a_pair_is_refused_unless_degraded_is_given() {
    let img = pair_with_data();
    let (a, b) = (img.devices[0].as_path(), img.devices[1].as_path());
    let before = [content_hash(a), content_hash(b)];
    for cmd in ["scrub", "resync"] {
        for alone in [a, b] {
            let o = hammer2([os(cmd), alone.as_os_str()]);
            assert_eq!(exit_code(&o), 8, "{cmd} {}: {}{}", alone.display(), stdout(&o), stderr(&o));
            let line = one_line_error(&o, &format!("hammer2 {cmd}: "), "is missing");
            assert!(line.contains("--degraded"), "{line:?} says how to run it anyway");
        }
    }
    assert_eq!([content_hash(a), content_hash(b)], before, "a refused scrub or resync writes nothing");
    let info = info_json([a, b]);
    assert!((0..2).all(|i| info["devices"][i]["state"] == "online"), "the pair is still in sync: {}", info["devices"]);

    // Asked for, a degraded scrub runs; the device left out is then behind, and a resync of
    // both brings it back.
    let o = hammer2([os("scrub"), os("--degraded"), a.as_os_str()]);
    assert_eq!(exit_code(&o), 0, "scrub --degraded: {}{}", stdout(&o), stderr(&o));
    let info = info_json([a, b]);
    assert_ne!(info["devices"][1]["state"], "online", "b missed the degraded scrub's commit: {}", info["devices"]);
    let o = hammer2([os("resync"), a.as_os_str(), b.as_os_str()]);
    assert_eq!(exit_code(&o), 0, "resync: {}{}", stdout(&o), stderr(&o));
    let info = info_json([a, b]);
    assert!((0..2).all(|i| info["devices"][i]["state"] == "online"), "{}", info["devices"]);
    let m = img.mount_with("ro");
    assert_eq!(std::fs::read(m.join("f")).unwrap(), pattern(400_000, 5));
    m.unmount();
}

#[test]
fn every_operational_error_of_scrub_and_resync_is_one_line_and_exit_8() {
    let dir = tempfile::tempdir().unwrap();
    let blank = sparse_file(dir.path(), "blank.img", 64 * MIB);
    let nowhere = dir.path().join("nope.img");
    let empty_dir = dir.path().join("mnt");
    std::fs::create_dir(&empty_dir).unwrap();
    for cmd in ["scrub", "resync"] {
        let prefix = format!("hammer2 {cmd}: ");
        let o = hammer2([os(cmd), blank.as_os_str()]);
        assert_eq!(exit_code(&o), 8, "{cmd} of a blank image: {}", stderr(&o));
        one_line_error(&o, &prefix, "no valid hammer2 volume header");
        let o = hammer2([os(cmd), nowhere.as_os_str()]);
        assert_eq!(exit_code(&o), 8, "{cmd} of a missing file: {}", stderr(&o));
        one_line_error(&o, &prefix, "nope.img");
        // The mount-point form with nothing mounted there.
        let o = hammer2([os(cmd), empty_dir.as_os_str()]);
        assert_eq!(exit_code(&o), 8, "{cmd} of an empty directory: {}", stderr(&o));
        one_line_error(&o, &prefix, "is not a mounted hammer2 filesystem");
    }
}

#[test]
fn info_beside_a_blank_member_shows_the_filesystem_and_names_the_blank_device() {
    let img = pair_with_data();
    let a = img.devices[0].as_path();
    let blank = sparse_file(img.dir.path(), "blank.img", 64 * MIB);
    let uuid = info_json([a])["uuid"].as_str().expect("uuid").to_string();

    let text = ok(&hammer2([os("info"), a.as_os_str(), blank.as_os_str()]));
    assert!(text.contains(&uuid), "the filesystem is shown:\n{text}");
    assert!(text.contains("blank.img holds no hammer2 filesystem"), "the blank device is named:\n{text}");

    let info = info_json([a, blank.as_path()]);
    assert_eq!(info["uuid"], uuid.as_str());
    assert_eq!(info["devices"][0]["state"], "online", "{}", info["devices"]);
    assert_eq!(info["devices"][1]["state"], "missing", "{}", info["devices"]);
    assert!(info["notes"].to_string().contains("blank.img holds no hammer2 filesystem"), "{}", info["notes"]);

    // Alone, a blank device is still the one-line error it always was.
    one_line_error(&hammer2([os("info"), blank.as_os_str()]), "hammer2 info: ", "no hammer2 filesystem");
}
