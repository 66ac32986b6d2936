//! Copies as users meet them: files written through a real mount, copies damaged in the
//! image files while the filesystem is unmounted (located with the library, opened
//! read-only), then everything read back through a new mount with no error to the
//! application, `hammer2 info` showing the repairs per device, and `hammer2 scrub` (online,
//! while another thread writes, and offline) repairing the rest and then reporting nothing.
//! With every copy of a block bad, exactly that range fails with EIO and scrub names the
//! file; a wiped device is read around, rebuilt by `hammer2 scrub`, and then carries the
//! filesystem alone.

use hammer2_test_support as common;

use common::damage::{Blocks, garbage, overwrite, wipe};
use common::image::{Slot, exit_code, hammer2, hammer2_json, header_slots, info_json, newest_header, stdout};
use common::mount::*;
use hammer2::inspect::TreeKind;
use hammer2_format::BlockType;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

type Tree = BTreeMap<PathBuf, Snap>;

/// Files of every shape, written the ways users write them: embedded in the inode (100 B),
/// one block, a few blocks, and files with more blocks than an inode holds references to
/// (so they hang under indirect blocks); by `std::fs::write`, `dd` and `cp`; plus a
/// directory, a symlink and an extended attribute.
fn write_files(m: &Mount) {
    let d = m.join("d");
    fs::create_dir_all(d.join("sub")).unwrap();
    for (i, size) in
        [100, 5000, 70_000, 300_000, 2_500_000, 100, 65536, 200_000, 1_000_000, 3_000_000].iter().enumerate()
    {
        fs::write(d.join(format!("f{i}")), pattern(*size, i as u8)).unwrap();
    }
    sh(&format!("dd if=/dev/urandom of={} bs=1M count=4 status=none", d.join("sub/random.bin").display()));
    sh(&format!("cp {} {}", d.join("f4").display(), d.join("sub/f4.copy").display()));
    std::os::unix::fs::symlink("../f1", d.join("sub/link")).unwrap();
    set_xattr(&d.join("f2"), "user.note", b"kept");
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let path = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    assert_eq!(r, 0, "setxattr {}: {}", p.display(), std::io::Error::last_os_error());
}

/// Writes the files, unmounts, and returns the tree as a clean read-only mount shows it.
fn prepare(img: &Image) -> Tree {
    let m = img.mount();
    write_files(&m);
    m.unmount();
    clean_view(img, &img.devices)
}

/// The tree as a read-only mount of `devices` shows it (`-o ro`, plus `degraded` when only
/// some devices are given). Nothing is written to the images.
fn clean_view(img: &Image, devices: &[PathBuf]) -> Tree {
    let devs: Vec<&Path> = devices.iter().map(PathBuf::as_path).collect();
    let opts = if devices.len() == img.devices.len() { "ro" } else { "ro,degraded" };
    let m = img.mount_devices(&devs, opts, &[]);
    let t = snapshot(&m.path);
    m.unmount();
    t
}

fn os<S: AsRef<std::ffi::OsStr>>(s: S) -> OsString {
    s.as_ref().to_os_string()
}

/// `hammer2 scrub --json TARGET...`: exit status and report.
fn scrub<S: AsRef<std::ffi::OsStr>>(targets: &[S]) -> (i32, Value) {
    hammer2_json("scrub", targets)
}

/// Per-device (check errors, copies repaired) from `hammer2 info --json`.
fn counters(info: &Value) -> Vec<(u64, u64)> {
    info["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| (d["check_errors"].as_u64().unwrap(), d["repaired"].as_u64().unwrap()))
        .collect()
}

/// Per-device copies repaired in a scrub report.
fn scrub_repaired(rep: &Value) -> Vec<u64> {
    rep["devices"].as_array().expect("devices").iter().map(|d| d["repaired"].as_u64().unwrap()).collect()
}

fn scrub_errors(rep: &Value) -> u64 {
    rep["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["read_errors"].as_u64().unwrap() + d["check_errors"].as_u64().unwrap())
        .sum()
}

/// Runs `act` while another thread keeps writing into `m/busy` (it has written some files
/// before `act` starts): it rewrites 16 files in turn, so commits free blocks while `act`
/// runs, and stops after 300 rewrites (about 40 MB) to stay within the small test images.
/// Afterwards every file it wrote reads back as last written.
fn while_writing<T>(m: &Mount, act: impl FnOnce() -> T) -> T {
    const NAMES: usize = 16;
    const MAX_ROUNDS: usize = 300;
    let dir = m.join("busy");
    fs::create_dir(&dir).unwrap();
    let content = |round: usize| pattern(100_000 + round % 7 * 10_000, round as u8);
    let stop = AtomicBool::new(false);
    let (result, rounds) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut round = 0usize;
            while round < NAMES || (!stop.load(Ordering::SeqCst) && round < MAX_ROUNDS) {
                fs::write(dir.join(format!("w{}", round % NAMES)), content(round)).unwrap();
                round += 1;
            }
            round
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while !dir.join("w2").exists() {
            assert!(Instant::now() < deadline, "the writer thread wrote nothing within a minute");
            std::thread::sleep(Duration::from_millis(10));
        }
        let r = act();
        stop.store(true, Ordering::SeqCst);
        (r, writer.join().expect("writer thread"))
    });
    for round in rounds - NAMES..rounds {
        let name = format!("w{}", round % NAMES);
        assert!(fs::read(dir.join(&name)).unwrap() == content(round), "busy/{name} reads as last written");
    }
    result
}

/// The promise for one bad copy of many data blocks: reads get every byte right with no
/// error and rewrite the bad copies they meet; `hammer2 info` shows those repairs on the
/// device that held them; an online scrub (while the filesystem is written to) repairs the
/// copies no read touched; a second scrub, online and offline, is clean; the counters survive
/// the unmount.
fn one_bad_copy_of_every_third_data_block(img: Image) {
    let before = prepare(&img);
    let ndev = img.devices.len();

    // Arrange: one bad copy of every third data block, in slot 0, 1, 0, 1, ...
    let blocks = Blocks::open(&img.devices);
    let data = blocks.all_data();
    let mut smashed = Vec::new();
    let mut bad_on = vec![0u64; ndev];
    for (n, br) in data.iter().step_by(3).enumerate() {
        let slot = n % 2;
        blocks.smash(br, slot);
        bad_on[usize::from(Blocks::device_of(br, slot))] += 1;
        smashed.push((*br, slot));
    }
    drop(blocks);
    let bad: u64 = bad_on.iter().sum();
    assert!(bad >= 30, "only {bad} bad copies made (of {} data blocks)", data.len());

    // Act: mount and read everything. A read takes one copy of each block (large reads take
    // turns between the copies); it rewrites the bad copies it meets.
    let m = img.mount();
    assert_eq!(snapshot(&m.path), before, "every byte reads back through the mount, with no error");

    // The reads repaired what they met, and the live counters say so, per device.
    let after_reads = counters(&info_json([&m.path]));
    let text = stdout(&hammer2([os("info"), os(&m.path)]));
    assert!(
        text.contains("CHECK") && text.contains("REPAIRED"),
        "info shows error counters like zpool status:\n{text}"
    );
    m.unmount();
    let blocks = Blocks::open(&img.devices);
    let mut left_for_scrub = vec![0u64; ndev];
    for (br, slot) in &smashed {
        if blocks.still_smashed(br, *slot) {
            left_for_scrub[usize::from(Blocks::device_of(br, *slot))] += 1;
        }
    }
    drop(blocks);
    for d in 0..ndev {
        let (check, repaired) = after_reads[d];
        let healed = bad_on[d] - left_for_scrub[d];
        assert_eq!(check, repaired, "device {d}: every check error met by a read was repaired");
        assert!(repaired >= healed, "device {d}: {repaired} repairs counted, {healed} copies healed");
    }
    assert!(left_for_scrub.iter().sum::<u64>() < bad, "the reads healed some bad copies");
    let m = img.mount();

    // Online scrub while the filesystem is in use: it finds exactly the bad copies left.
    let (code, rep) = while_writing(&m, || scrub(&[&m.path]));
    eprintln!(
        "{bad} bad copies ({bad_on:?} per device, {left_for_scrub:?} left after the reads) among {} data blocks; \
         counters after the reads {after_reads:?}; online scrub repaired {:?} of {} blocks",
        data.len(),
        scrub_repaired(&rep),
        rep["blocks"]
    );
    assert_eq!(code, 1, "errors found and all repaired: {rep}");
    assert_eq!(scrub_repaired(&rep), left_for_scrub, "scrub repaired exactly the copies no read had met: {rep}");
    assert!(rep["unrepairable"].as_array().unwrap().is_empty(), "{rep}");
    let (code, rep) = scrub(&[&m.path]);
    assert_eq!((code, scrub_errors(&rep)), (0, 0), "a second scrub finds nothing: {rep}");
    let live = counters(&info_json([&m.path]));
    for d in 0..ndev {
        assert_eq!(
            live[d].1,
            after_reads[d].1 + left_for_scrub[d],
            "device {d}: live counters add the scrub's repairs"
        );
    }
    m.unmount();

    // The counters are in the headers: info on the unmounted devices shows the same.
    assert_eq!(counters(&info_json(&img.devices)), live, "counters persisted at unmount");
    let (code, rep) = scrub(&img.devices);
    assert_eq!((code, scrub_errors(&rep)), (0, 0), "an offline scrub is clean too: {rep}");
    let mut args = vec![os("scrub")];
    args.extend(img.devices.iter().map(os));
    let text = hammer2(&args);
    assert_eq!(exit_code(&text), 0);
    assert_eq!(stdout(&text).lines().last(), Some("clean"), "{}", stdout(&text));
    assert_eq!(
        clean_view(&img, &img.devices).into_iter().filter(|(p, _)| !p.starts_with("busy")).collect::<Tree>(),
        before
    );
    Blocks::open(&img.devices).assert_every_copy_good();
    img.assert_no_panics();
}

#[test]
fn two_copies_on_one_device_a_bad_copy_of_many_blocks_reads_back_and_is_repaired() {
    one_bad_copy_of_every_third_data_block(Image::with(1, 256 * MIB, Some(2)));
}

#[test]
fn two_copies_on_two_devices_a_bad_copy_of_many_blocks_reads_back_and_is_repaired() {
    one_bad_copy_of_every_third_data_block(Image::with(2, 128 * MIB, Some(2)));
}

#[test]
fn garbage_over_half_of_one_device_outside_its_headers_reads_back_and_scrub_repairs_it() {
    let img = Image::with(2, 128 * MIB, Some(2));
    let before = prepare(&img);
    // Every other MiB of device 1 after its 8 MiB of header slots: random bytes.
    let dev1 = &img.devices[1];
    for mib in (8..128).step_by(2) {
        overwrite(dev1, mib * MIB, &garbage(MIB as usize, mib));
    }
    let m = img.mount();
    assert_eq!(snapshot(&m.path), before, "every byte reads back, with no error");
    let (code, rep) = while_writing(&m, || scrub(&[&m.path]));
    let repaired = scrub_repaired(&rep);
    eprintln!("garbage over 60 MiB of device 1: online scrub repaired {repaired:?} copies");
    assert_eq!(code, 1, "errors found and all repaired: {rep}");
    assert!(repaired[1] > 10 && repaired[0] == 0, "the damaged device's copies were rewritten: {rep}");
    let (code, rep) = scrub(&[&m.path]);
    assert_eq!((code, scrub_errors(&rep)), (0, 0), "a second scrub finds nothing: {rep}");
    m.unmount();
    let (code, rep) = scrub(&img.devices);
    assert_eq!((code, scrub_errors(&rep)), (0, 0), "an offline scrub is clean too: {rep}");
    Blocks::open(&img.devices).assert_every_copy_good();
    img.assert_no_panics();
}

#[test]
fn three_copies_on_one_device_survive_two_bad_copies_of_every_block() {
    let img = Image::with(1, 256 * MIB, Some(3));
    let before = prepare(&img);
    let blocks = Blocks::open(&img.devices);
    let all = blocks.all();
    for (i, (br, _)) in all.iter().enumerate() {
        blocks.smash(br, i % 3);
        blocks.smash(br, (i + 1) % 3);
    }
    drop(blocks);
    let m = img.mount();
    assert_eq!(snapshot(&m.path), before, "every byte reads back from the one good copy");
    let (code, rep) = scrub(&[&m.path]);
    eprintln!("two bad copies of each of {} blocks: online scrub repaired {:?}", all.len(), scrub_repaired(&rep));
    assert_eq!(code, 1, "{rep}");
    assert!(rep["unrepairable"].as_array().unwrap().is_empty(), "{rep}");
    let (code, rep) = scrub(&[&m.path]);
    assert_eq!((code, scrub_errors(&rep)), (0, 0), "a second scrub finds nothing: {rep}");
    m.unmount();
    let (check, repaired) = counters(&info_json(&img.devices))[0];
    assert!(repaired >= 2 * all.len() as u64 - 2, "{repaired} repairs counted for {} bad copies", 2 * all.len());
    assert_eq!(check, repaired);
    let (code, rep) = scrub(&img.devices);
    assert_eq!((code, scrub_errors(&rep)), (0, 0), "{rep}");
    Blocks::open(&img.devices).assert_every_copy_good();
    img.assert_no_panics();
}

#[test]
fn metadata_corruption_indirect_inode_directory_and_free_map_heals_like_data() {
    let img = Image::with(2, 128 * MIB, Some(2));
    let m = img.mount();
    write_files(&m);
    // A directory big enough for directory-entry blocks and indirect blocks above them.
    let many = m.join("many");
    fs::create_dir(&many).unwrap();
    for i in 0..1500 {
        fs::write(many.join(format!("entry-with-a-name-long-enough-to-need-its-own-block-{i:05}-xxxxxxxx")), [])
            .unwrap();
    }
    m.unmount();
    let before = clean_view(&img, &img.devices);

    let blocks = Blocks::open(&img.devices);
    let mut kinds = BTreeSet::new();
    let mut bad = 0u64;
    for (i, (br, tree)) in blocks.all().iter().enumerate() {
        if br.btype != BlockType::Data {
            blocks.smash(br, i % 2);
            kinds.insert(if *tree == TreeKind::Freemap { "free map" } else { br.btype.name() });
            bad += 1;
        }
    }
    drop(blocks);
    for k in ["indirect", "inode", "dirent", "free map"] {
        assert!(kinds.contains(k), "no {k} block was damaged: {kinds:?}");
    }

    let m = img.mount();
    assert_eq!(snapshot(&m.path), before, "the whole tree reads back, with no error");
    let (code, rep) = while_writing(&m, || scrub(&[&m.path]));
    eprintln!(
        "one bad copy of each of {bad} metadata blocks ({kinds:?}): online scrub repaired {:?}",
        scrub_repaired(&rep)
    );
    assert_eq!(code, 1, "errors found and all repaired: {rep}");
    assert!(rep["unrepairable"].as_array().unwrap().is_empty(), "{rep}");
    let (code, rep) = scrub(&[&m.path]);
    assert_eq!((code, scrub_errors(&rep)), (0, 0), "a second scrub finds nothing: {rep}");
    m.unmount();
    // A few damaged blocks (free-map leaves, nodes at the top of the trees) are replaced by
    // commits (the writer's, the scrub's own) before anything reads them: they need no repair.
    let repaired: u64 = counters(&info_json(&img.devices)).iter().map(|c| c.1).sum();
    assert!(repaired <= bad + 10 && repaired * 100 >= bad * 99, "{repaired} repairs counted for {bad} bad copies");
    let (code, rep) = scrub(&img.devices);
    assert_eq!((code, scrub_errors(&rep)), (0, 0), "{rep}");
    Blocks::open(&img.devices).assert_every_copy_good();
    img.assert_no_panics();
}

#[test]
fn with_every_copy_of_one_data_block_bad_only_that_range_fails_with_eio_and_scrub_names_the_file() {
    let img = Image::with(2, 128 * MIB, Some(2));
    let victim = pattern(2_500_000, 7);
    let other = pattern(2_500_000, 8);
    let m = img.mount();
    fs::create_dir(m.join("d")).unwrap();
    fs::write(m.join("d/victim"), &victim).unwrap();
    fs::write(m.join("d/other"), &other).unwrap();
    let ino = fs::metadata(m.join("d/victim")).unwrap().ino();
    m.unmount();

    let blocks = Blocks::open(&img.devices);
    let bad = blocks.data_of(ino)[3];
    let (start, end) = (bad.key, bad.key + u64::from(bad.ptr().unwrap().size));
    blocks.smash(&bad, 0);
    blocks.smash(&bad, 1);
    drop(blocks);

    let m = img.mount();
    let f = fs::File::open(m.join("d/victim")).unwrap();
    let mut buf = vec![0u8; 100];
    let err = f.read_at(&mut buf, start + 10).expect_err("a read of the bad block must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "read(2) of the bad range: {err}");
    let mut head = vec![0u8; start as usize];
    f.read_exact_at(&mut head, 0).expect("the file before the bad block reads");
    assert!(head == victim[..start as usize], "and reads right");
    let mut tail = vec![0u8; victim.len() - end as usize];
    f.read_exact_at(&mut tail, end).expect("the file after the bad block reads");
    assert!(tail == victim[end as usize..], "and reads right");
    let whole = fs::read(m.join("d/victim")).expect_err("reading the whole file meets the bad block");
    assert_eq!(whole.raw_os_error(), Some(libc::EIO));
    assert!(fs::read(m.join("d/other")).unwrap() == other, "other files read fine");

    drop(f);
    let want = format!("unrepairable data block: /d/victim at offset {start}");
    let online = hammer2([os("scrub"), os(&m.path)]);
    assert_eq!(exit_code(&online), 4, "errors left: {}", stdout(&online));
    assert!(stdout(&online).contains(&want), "online scrub names the file and offset:\n{}", stdout(&online));
    m.unmount();

    let mut args = vec![os("scrub")];
    args.extend(img.devices.iter().map(os));
    let offline = hammer2(&args);
    assert_eq!(exit_code(&offline), 4, "{}", stdout(&offline));
    assert!(stdout(&offline).contains(&want), "offline scrub names the file and offset:\n{}", stdout(&offline));
    let (code, rep) = scrub(&img.devices);
    assert_eq!(code, 4);
    let u = rep["unrepairable"].as_array().unwrap();
    assert_eq!(u.len(), 1, "{rep}");
    assert_eq!((u[0]["path"].as_str(), u[0]["offset"].as_u64()), (Some("/d/victim"), Some(start)), "{rep}");
    img.assert_no_panics();
}

#[test]
fn a_wiped_device_is_read_around_rebuilt_by_scrub_and_then_carries_the_filesystem_alone() {
    let img = Image::with(2, 128 * MIB, Some(2));
    let before = prepare(&img);
    let (good, lost) = (img.devices[0].clone(), img.devices[1].clone());

    // Device 1 is overwritten with zeros, headers included.
    wipe(&lost);
    let m = img.mount_devices(&[&good], "degraded", &[]);
    assert_eq!(snapshot(&m.path), before, "everything reads back from the other device");
    let live = info_json([&m.path]);
    assert_eq!(live["devices"][1]["state"], "missing", "{live}");
    m.unmount();

    // `hammer2 scrub good.img wiped.img` adopts the blank device and rewrites every copy on it.
    let (code, rep) = scrub(&[&good, &lost]);
    let repaired = scrub_repaired(&rep);
    eprintln!("rebuild of a wiped device: scrub of {} blocks repaired {repaired:?}", rep["blocks"]);
    assert_eq!(code, 1, "errors found and all repaired: {rep}");
    // Each block has one copy on it: rewritten, or recorded missing by the degraded mount's
    // own commits (resync, which scrub runs next, fills those).
    let d1 = &rep["devices"][1];
    assert_eq!(
        d1["repaired"].as_u64().unwrap() + d1["missing"].as_u64().unwrap(),
        rep["blocks"].as_u64().unwrap(),
        "every block's copy on the wiped device was rewritten: {rep}"
    );
    assert!(rep["unrepairable"].as_array().unwrap().is_empty(), "{rep}");
    let info = info_json([&good, &lost]);
    for d in 0..2 {
        assert_eq!(info["devices"][d]["state"], "online", "{info}");
    }
    let (code, rep) = scrub(&[&good, &lost]);
    assert_eq!((code, scrub_errors(&rep)), (0, 0), "a second scrub finds nothing: {rep}");
    Blocks::open(&img.devices).assert_every_copy_good();

    // Now the other device goes: the rebuilt one holds everything alone.
    wipe(&good);
    assert_eq!(clean_view(&img, std::slice::from_ref(&lost)), before, "the rebuilt device alone holds the whole tree");
    img.assert_no_panics();
}

#[test]
fn a_replacement_full_of_random_bytes_adopted_by_scrub_keeps_no_garbage_in_its_header_slots() {
    let img = Image::with(2, 128 * MIB, Some(2));
    let before = prepare(&img);
    let (good, lost) = (img.devices[0].clone(), img.devices[1].clone());
    // A new disk that held something else: random bytes over its first 24 MiB (the header
    // area and the start of its region).
    overwrite(&lost, 0, &garbage(24 * MIB as usize, 7));
    assert!(header_slots(&lost).iter().all(|s| *s == Slot::Damaged));

    let (code, rep) = scrub(&[&good, &lost]);
    assert!(code <= 1 && rep["unrepairable"].as_array().unwrap().is_empty(), "{rep}");
    // Its slots hold headers of the filesystem, or nothing: no leftover of what it held.
    let slots = header_slots(&lost);
    assert!(!slots.contains(&Slot::Damaged), "slots of the adopted device: {slots:?}");
    let newest = |slots: &[Slot]| slots.iter().filter_map(|s| if let Slot::Tid(t) = s { Some(*t) } else { None }).max();
    assert_eq!(newest(&slots), newest(&header_slots(&good)), "it holds the current header");
    let info = info_json([&good, &lost]);
    for d in 0..2 {
        assert_eq!(info["devices"][d]["state"], "online", "{info}");
    }
    wipe(&good);
    assert_eq!(clean_view(&img, std::slice::from_ref(&lost)), before, "the adopted device alone holds the whole tree");
    img.assert_no_panics();
}

#[test]
fn scrub_of_an_image_without_a_hammer2_filesystem_is_an_operational_error_exit_8() {
    let dir = tempfile::tempdir().unwrap();
    let g = common::image::sparse_file(dir.path(), "garbage.img", 64 * MIB);
    overwrite(&g, 0, &garbage(16 * MIB as usize, 1));
    let out = hammer2([os("scrub"), os(&g)]);
    assert_eq!(exit_code(&out), 8, "{}", common::image::stderr(&out));
    common::image::one_line_error(&out, "hammer2 scrub: ", "no valid hammer2 volume header");
}

#[test]
fn every_device_gets_the_same_header_of_a_commit_but_for_its_own_fields() {
    // FORMAT.md §3: one logical header per commit; only the device uuid, index and size
    // differ between devices. The commit time was once taken per device.
    let img = Image::with(2, 128 * MIB, Some(2));
    let m = img.mount();
    write_files(&m);
    m.unmount();
    let [a, b] = [0, 1].map(|i| newest_header(&img.devices[i]));
    assert_eq!(a.tid, b.tid, "both devices hold the last commit");
    assert_eq!(a.commit_time_ns, b.commit_time_ns, "commit time");
    let own = |mut h: hammer2_format::VolumeHeader| {
        (h.device_uuid, h.device_index, h.device_size) = ([0; 16], 0, 0);
        h
    };
    assert_eq!(own(a), own(b));
}
