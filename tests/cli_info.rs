//! `hammer2 info` as users run it: the real binaries on real image files.

use hammer2_test_support as common;

use common::image::*;
use hammer2::storage::DynStorage;
use hammer2::storage::file::{FileStorage, OpenMode};
use hammer2::{Creds, Fs, Options};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MIB: u64 = 1 << 20;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Two 64 MiB images formatted as one filesystem with the given mkfs options.
fn pair(dir: &Path, extra: &[&str]) -> (PathBuf, PathBuf) {
    let a = sparse_file(dir, "a.img", 64 * MIB);
    let b = sparse_file(dir, "b.img", 64 * MIB);
    let mut args: Vec<std::ffi::OsString> = extra.iter().map(Into::into).collect();
    args.push(a.clone().into());
    args.push(b.clone().into());
    ok(&mkfs(&args));
    (a, b)
}

/// Mounts only `present` (degraded), writes a file, and unmounts: the devices left out miss
/// those commits.
fn write_without_the_others(present: &[&Path], name: &str) {
    let storages: Vec<DynStorage> = present
        .iter()
        .map(|p| Arc::new(FileStorage::open(p, OpenMode::Exclusive).expect("open image")) as DynStorage)
        .collect();
    let opts = Options { degraded: true, background_sync: false, ..Options::default() };
    let fs = Fs::mount(storages, opts).expect("degraded mount");
    let f = fs.create(fs.root(), name.as_bytes(), 0o644, Creds::default()).expect("create");
    fs.write(f.ino, 0, b"written while a device was away").expect("write");
    fs.sync().expect("sync");
    fs.unmount().expect("unmount");
}

#[test]
fn info_shows_label_copies_check_block_sizes_and_every_device() {
    let d = tmp();
    let (a, b) = pair(d.path(), &["-L", "shown", "--check", "blake3"]);
    let out = ok(&hammer2([OsArg::from("info"), a.clone().into(), b.clone().into()]));
    for want in [
        "label        shown",
        "format       version 2",
        "copies       2",
        "check        blake3",
        "block sizes  data 16 KiB, indirect 64 KiB",
        "last commit  tid 1,",
        "clean        yes",
        "free of",
    ] {
        assert!(out.contains(want), "info lacks {want:?}:\n{out}");
    }
    for p in [&a, &b] {
        let line = out
            .lines()
            .find(|l| !l.starts_with("master") && l.contains(&*p.display().to_string()))
            .expect("a line per device");
        assert!(line.contains("online"), "{line}");
        assert!(line.contains("64 MiB"), "{line}");
    }
}

type OsArg = std::ffi::OsString;

#[test]
fn info_json_parses_and_has_copies_label_check_space_and_devices() {
    let d = tmp();
    let (a, b) = pair(d.path(), &["-L", "js", "--copies", "2"]);
    let j = info_json([&a, &b]);
    assert_eq!(j["copies"], 2);
    assert_eq!(j["label"], "js");
    assert_eq!(j["check"], "crc32c");
    assert_eq!(j["format_version"], 2);
    assert_eq!(j["tid"], 1);
    assert_eq!(j["clean"], true);
    let devs = j["devices"].as_array().expect("devices");
    assert_eq!(devs.len(), 2);
    for (i, dv) in devs.iter().enumerate() {
        assert_eq!(dv["index"], i);
        assert_eq!(dv["state"], "online");
        assert_eq!(dv["header_tid"], 1);
        assert_eq!(dv["check_errors"], 0);
        assert_eq!(dv["role"]["slots"].as_array().map(Vec::len), Some(1));
    }
}

#[test]
fn info_free_space_counts_each_block_once_per_copy() {
    let d = tmp();
    let one = d.path().join("one");
    std::fs::create_dir(&one).unwrap();
    let (a1, b1) = pair(&one, &["--copies", "1"]);
    let two = d.path().join("two");
    std::fs::create_dir(&two).unwrap();
    let (a2, b2) = pair(&two, &["--copies", "2"]);
    let j1 = info_json([&a1, &b1]);
    let j2 = info_json([&a2, &b2]);
    let (t1, t2) = (j1["total_bytes"].as_u64().unwrap(), j2["total_bytes"].as_u64().unwrap());
    // Same devices: two copies hold half the data one copy holds.
    assert_eq!(t1, 2 * t2, "{j1}\n{j2}");
    for j in [&j1, &j2] {
        let (free, total, raw) = (
            j["free_bytes"].as_u64().unwrap(),
            j["total_bytes"].as_u64().unwrap(),
            j["raw_free_bytes"].as_u64().unwrap(),
        );
        assert!(free <= total && free > total * 9 / 10, "a new filesystem is nearly empty: {j}");
        assert!(raw >= free * j["copies"].as_u64().unwrap(), "{j}");
    }
}

#[test]
fn info_shows_a_device_that_was_not_given_as_missing() {
    let d = tmp();
    let (a, _b) = pair(d.path(), &[]);
    let j = info_json([&a]);
    assert_eq!(j["devices"][0]["state"], "online");
    assert_eq!(j["devices"][1]["state"], "missing");
    assert!(j["devices"][1]["path"].is_null());
    let out = ok(&hammer2([OsArg::from("info"), a.into()]));
    assert!(out.lines().any(|l| l.contains("missing")), "{out}");
}

#[test]
fn info_shows_a_device_that_missed_commits_as_stale_with_how_far_behind() {
    let d = tmp();
    let (a, b) = pair(d.path(), &[]);
    write_without_the_others(&[&a], "f");
    let j = info_json([&a, &b]);
    let tid = j["tid"].as_u64().unwrap();
    assert!(tid > 1, "{j}");
    let stale = &j["devices"][1];
    assert_eq!(stale["state"], "stale", "{j}");
    assert_eq!(stale["header_tid"], 1);
    assert_eq!(stale["recorded_state"], "failed");
    assert_eq!(stale["behind"].as_u64(), Some(tid + 1 - stale["missed_since"].as_u64().unwrap()));
    let out = ok(&hammer2([OsArg::from("info"), a.into(), b.into()]));
    assert!(out.contains("stale (behind by"), "{out}");
    assert!(out.contains("resync"), "{out}");
}

#[test]
fn info_shows_devices_written_apart_as_diverged_instead_of_failing() {
    let d = tmp();
    let (a, b) = pair(d.path(), &[]);
    write_without_the_others(&[&a], "on-a");
    write_without_the_others(&[&b], "on-b");
    let j = info_json([&a, &b]);
    let states: Vec<&str> = j["devices"].as_array().unwrap().iter().map(|d| d["state"].as_str().unwrap()).collect();
    assert!(states.contains(&"diverged"), "{j}");
    let notes = j["notes"].as_array().unwrap();
    assert!(notes.iter().any(|n| n.as_str().unwrap().contains("master=")), "{j}");
}

#[test]
fn info_on_garbage_fails_with_one_line() {
    let d = tmp();
    let g = sparse_file(d.path(), "garbage.img", 64 * MIB);
    poke(&g, 0, &[0xa5; 8192]);
    one_line_error(&hammer2([OsArg::from("info"), g.into()]), "hammer2 info: ", "no hammer2 filesystem");
}

#[test]
fn info_on_an_ext4_image_says_what_it_holds() {
    let d = tmp();
    let g = sparse_file(d.path(), "e.img", 64 * MIB);
    poke(&g, 1080, &[0x53, 0xef]);
    one_line_error(&hammer2([OsArg::from("info"), g.into()]), "hammer2 info: ", "ext2/3/4");
}

#[test]
fn info_on_damaged_headers_says_why_each_slot_was_rejected() {
    let d = tmp();
    let img = sparse_file(d.path(), "h.img", 64 * MIB);
    ok(&mkfs([&img]));
    // Keep the magic, break the check code of every slot.
    for slot in 0..4u64 {
        poke(&img, slot * 2 * MIB + 100, &[0xff; 4]);
    }
    one_line_error(&hammer2([OsArg::from("info"), img.into()]), "hammer2 info: ", "none is valid");
}

#[test]
fn info_on_a_missing_path_fails_with_one_line() {
    let d = tmp();
    one_line_error(&hammer2([OsArg::from("info"), d.path().join("nope.img").into()]), "hammer2 info: ", "No such file");
}

#[test]
fn info_on_a_directory_that_is_no_hammer2_mount_fails_with_one_line() {
    let d = tmp();
    one_line_error(
        &hammer2([OsArg::from("info"), d.path().into()]),
        "hammer2 info: ",
        "is not a mounted hammer2 filesystem",
    );
}

#[test]
fn info_on_devices_of_two_filesystems_fails_with_one_line() {
    let d = tmp();
    let x = sparse_file(d.path(), "x.img", 64 * MIB);
    let y = sparse_file(d.path(), "y.img", 64 * MIB);
    ok(&mkfs([&x]));
    ok(&mkfs([&y]));
    one_line_error(&hammer2([OsArg::from("info"), x.into(), y.into()]), "hammer2 info: ", "different");
}

#[test]
fn when_the_newest_header_slot_is_damaged_on_every_device_info_and_the_mount_say_it_fell_back_a_commit() {
    use hammer2_format::layout::{HEADER_SLOTS, header_offset};
    let img = common::mount::Image::by_mkfs(2, 128 * MIB, 2);
    let m = img.mount();
    std::fs::write(m.join("kept"), b"committed\n").unwrap();
    std::fs::File::open(&m.path).unwrap().sync_all().unwrap();
    std::fs::write(m.join("lost"), b"only in the last commit\n").unwrap();
    m.unmount();
    let tid = info_json(&img.devices)["tid"].as_u64().unwrap();
    // The header of the last commit is torn on both devices (its magic stays).
    let slot = (tid % HEADER_SLOTS as u64) as usize;
    for d in &img.devices {
        poke(d, header_offset(slot) + 300, b"torn");
    }
    let expected = format!("header slot {slot}, where commit {tid} would be, is damaged on every device");

    let info = info_json(&img.devices);
    assert_eq!(info["tid"].as_u64(), Some(tid - 1), "{info}");
    assert!(info["notes"].to_string().contains(&expected), "{info}");
    let text = ok(&hammer2(std::iter::once(OsArg::from("info")).chain(img.devices.iter().map(OsArg::from))));
    assert!(text.contains(&format!("note: {expected}")), "{text}");

    let m = img.mount();
    assert!(img.log_shows(&expected), "{}", img.log());
    let live = info_json([&m.path]);
    assert!(live["notes"].to_string().contains(&expected), "{live}");
    assert_eq!(std::fs::read(m.join("kept")).unwrap(), b"committed\n");
    assert!(!m.join("lost").exists(), "the last commit is the one the mount fell back from");
    m.unmount();
    // The mount's own commits wrote that slot again: nothing is left to report.
    let info = info_json(&img.devices);
    assert!(!info["notes"].to_string().contains("is damaged on every device"), "{info}");
    img.assert_no_panics();
}
