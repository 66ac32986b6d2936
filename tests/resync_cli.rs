//! Degraded operation and resync as users meet them: two image files formatted by
//! `mkfs.hammer2`, mounted with `hammer2 mount` (one of them alone with `-o degraded`, both,
//! or with `-o master=`), inspected with `hammer2 info` and caught up with `hammer2 resync`
//! (offline on the images, online on the mount point while it is written to). Every result
//! is checked by mounting the caught-up device alone: it must show the very same tree.
//!
//! A device that fails in the middle of a write stream is an image file served through a
//! small FUSE filesystem of the test's own that answers EIO on command
//! (`common::faulty_fuse`): the daemon has no fault hook.

use hammer2_test_support as common;

use common::damage::{Blocks, wipe};
use common::faulty_fuse::FaultyDevice;
use common::image::{Slot, hammer2, hammer2_bin, hammer2_json, header_slots, info_json, ok, one_line_error};
use common::mount::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

type Tree = BTreeMap<PathBuf, Snap>;

fn os<S: AsRef<std::ffi::OsStr>>(s: S) -> OsString {
    s.as_ref().to_os_string()
}

/// Files of varied sizes (embedded, one block, several, under an indirect block), a
/// subdirectory and a symlink, in `m/name`.
fn write_set(m: &Mount, name: &str, files: usize) {
    let d = m.join(name);
    fs::create_dir_all(d.join("sub")).unwrap();
    for i in 0..files {
        let size = [100, 5000, 70_000, 300_000, 2_500_000][i % 5];
        fs::write(d.join(format!("f{i}")), pattern(size, (i + name.len()) as u8)).unwrap();
    }
    fs::write(d.join("sub/note"), format!("set {name}\n")).unwrap();
    std::os::unix::fs::symlink("../f1", d.join("sub/link")).unwrap();
}

/// The tree as a read-only mount of `devices` shows it (`-o ro`, plus `degraded` when only
/// some are given): nothing is written to the images, so looking changes nothing.
fn view(img: &Image, devices: &[&Path]) -> Tree {
    let opts = if devices.len() == img.devices.len() { "ro" } else { "ro,degraded" };
    let m = img.mount_devices(devices, opts, &[]);
    let t = snapshot(&m.path);
    m.unmount();
    t
}

fn state(info: &Value, dev: usize) -> &str {
    info["devices"][dev]["state"].as_str().unwrap_or_else(|| panic!("no state for device {dev}: {info}"))
}

/// `hammer2 resync` with text output: returns (visited, copied) from its summary line
/// `resync: visited N out-of-sync blocks, copied M blocks (...) ...` and the whole text.
fn resync_text(targets: &[&Path]) -> (u64, u64, String) {
    let mut args = vec![os("resync")];
    args.extend(targets.iter().map(os));
    let out = ok(&hammer2(&args));
    let line = out.lines().find(|l| l.starts_with("resync: visited ")).unwrap_or_else(|| panic!("no summary:\n{out}"));
    let num = |after: &str| -> u64 {
        let rest = &line[line.find(after).unwrap_or_else(|| panic!("{line:?} lacks {after:?}")) + after.len()..];
        rest.split(' ').next().unwrap().parse().unwrap_or_else(|e| panic!("{line:?}: {e}"))
    };
    (num("visited "), num("copied "), out)
}

fn resync_json(targets: &[&Path]) -> Value {
    let (code, rep) = hammer2_json("resync", targets);
    assert_eq!(code, 0, "resync failed: {rep}");
    rep
}

/// The two devices of `img`, as `a` and `b`.
fn pair(img: &Image) -> (&Path, &Path) {
    (img.devices[0].as_path(), img.devices[1].as_path())
}

/// Two devices formatted by `mkfs.hammer2`, `size` bytes each, that both hold set `name`
/// (`files` files) written through a mount of both.
fn both_holding(size: u64, name: &str, files: usize) -> Image {
    let img = Image::by_mkfs(2, size, 2);
    let m = img.mount();
    write_set(&m, name, files);
    m.unmount();
    img
}

/// Mounts `dev` alone (`-o degraded`), makes `change` through it and unmounts: the other
/// device misses those commits.
fn alone(img: &Image, dev: &Path, change: impl FnOnce(&Mount)) {
    let m = img.mount_devices(&[dev], "degraded", &[]);
    change(&m);
    m.unmount();
}

/// Commits what is pending now (an fsync of the mount's root).
fn commit(m: &Mount) {
    fs::File::open(&m.path).unwrap().sync_all().unwrap();
}

/// The device mounted alone deletes set `common` and commits, then writes set `on-b` into
/// the space that frees (its zones are empty again, see alloc/zones.rs), over its copies
/// of blocks the other device's tree still uses.
fn overwrite_common(m: &Mount) {
    fs::remove_dir_all(m.join("common")).unwrap();
    commit(m);
    write_set(m, "on-b", 10);
}

/// M from resync's `verified N copies ... rewrote M` line; `why` says what a missing line means.
fn verified_rewrote(text: &str, why: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("verified ").and_then(|r| r.rsplit_once("rewrote ")))
        .unwrap_or_else(|| panic!("{why}: {text}"))
        .1
        .trim()
        .parse()
        .unwrap()
}

/// After a resync: `hammer2 info` on the images shows both devices online, and b alone
/// shows `expected`.
fn assert_caught_up(img: &Image, expected: &Tree, msg: &str) {
    let (a, b) = pair(img);
    let info = info_json([a, b]);
    assert_eq!((state(&info, 0), state(&info, 1)), ("online", "online"), "{info}");
    assert_eq!(view(img, &[b]), *expected, "{msg}");
}

/// Every copy of every block is good, and no daemon panicked.
fn assert_whole(img: &Image) {
    Blocks::open(&img.devices).assert_every_copy_good();
    img.assert_no_panics();
}

#[test]
fn a_device_left_out_of_a_degraded_mount_is_stale_and_resync_makes_it_hold_exactly_the_same_tree() {
    let img = both_holding(256 * MIB, "A", 30);
    let (a, b) = pair(&img);

    // Device b is away: set B is written and part of set A deleted on a alone.
    alone(&img, a, |m| {
        let live = info_json([&m.path]);
        assert_eq!((state(&live, 0), state(&live, 1)), ("online", "missing"), "{live}");
        write_set(m, "B", 30);
        for i in (0..30).step_by(3) {
            fs::remove_file(m.join(format!("A/f{i}"))).unwrap();
        }
        fs::remove_dir_all(m.join("A/sub")).unwrap();
    });
    let expected = view(&img, &[a]);

    // Both devices again: b is stale, and info says how far behind.
    let info = info_json([a, b]);
    assert_eq!(state(&info, 1), "stale", "{info}");
    assert!(info["devices"][1]["behind"].as_u64().unwrap() > 0, "{info}");
    let text = ok(&hammer2([os("info"), os(a), os(b)]));
    assert!(text.contains("stale (behind by "), "{text}");
    let m = img.mount();
    let live = info_json([&m.path]);
    assert_eq!(state(&live, 1), "stale", "the mount of both reports b stale: {live}");
    let text = ok(&hammer2([os("info"), os(&m.path)]));
    assert!(text.contains("stale (behind by "), "{text}");
    m.unmount();

    // Offline resync: it says what it visited and copied; a second one has nothing to do.
    let (visited, copied, text) = resync_text(&[a, b]);
    eprintln!(
        "A/B resync: visited {visited} out-of-sync blocks, copied {copied}, of {} blocks in the tree:\n{text}",
        Blocks::open(&img.devices).all().len()
    );
    assert!(copied > 0 && visited >= copied, "{text}");
    assert!(text.contains(&format!("{}: in sync", b.display())), "{text}");
    let again = resync_json(&[a, b]);
    assert_eq!((again["counts"]["visited"].as_u64(), again["counts"]["copied_blocks"].as_u64()), (Some(0), Some(0)));

    // b alone holds exactly A + B - deletions, byte for byte.
    assert_caught_up(&img, &expected, "b alone holds A + B - deletions");
    assert_whole(&img);
}

#[test]
fn resync_after_changing_10_of_20000_files_visits_and_copies_a_few_blocks_not_the_filesystem() {
    let img = Image::by_mkfs(2, 1024 * MIB, 2);
    let (a, b) = pair(&img);
    const FILES: usize = 20_000;
    const DIRS: usize = 20;
    let m = img.mount();
    for d in 0..DIRS {
        fs::create_dir(m.join(format!("dir{d}"))).unwrap();
    }
    for i in 0..FILES {
        fs::write(m.join(format!("dir{}/file{i:05}", i % DIRS)), pattern(200 + i % 3000, i as u8)).unwrap();
    }
    m.unmount();
    let (total_blocks, inode_tree_levels) = {
        let blocks = Blocks::open(&img.devices);
        let levels = u64::from(hammer2::testing::committed_roots(&blocks.fs).inodes.level);
        (blocks.all().len() as u64, levels)
    };

    // Ten files change while b is away.
    let changed: Vec<usize> = (0..FILES).step_by(FILES / 10).collect();
    alone(&img, a, |m| {
        for i in &changed {
            let p = m.join(format!("dir{}/file{i:05}", i % DIRS));
            fs::OpenOptions::new().write(true).open(&p).unwrap().write_all(b"changed while b was away").unwrap();
        }
    });
    let expected = view(&img, &[a]);

    let rep = resync_json(&[a, b]);
    let (visited, copied) =
        (rep["counts"]["visited"].as_u64().unwrap(), rep["counts"]["copied_blocks"].as_u64().unwrap());
    // Each changed file's inode block is out of sync (small files keep their data in it);
    // above it, one reference per level of the inode tree leads to it.
    let per_change = inode_tree_levels + 1;
    let bound = changed.len() as u64 * per_change;
    eprintln!(
        "{FILES} files, {} changed: resync visited {visited} and copied {copied} blocks; a full copy is {total_blocks} \
         blocks; inode tree of {inode_tree_levels} levels, so at most {bound} = {} changes x {per_change} references",
        changed.len(),
        changed.len()
    );
    assert!(visited <= bound, "visited {visited} > {bound}");
    assert!(copied <= bound, "copied {copied} > {bound}");
    assert!(visited * 100 < total_blocks, "far fewer than a full copy of {total_blocks} blocks");
    assert!(copied >= changed.len() as u64, "each changed inode was copied: {rep}");
    assert_eq!(view(&img, &[b]), expected, "b alone holds the changes");
    img.assert_no_panics();
}

#[test]
fn without_degraded_a_missing_device_is_a_one_line_error_that_names_it_and_says_how_to_mount_degraded() {
    let img = Image::by_mkfs(2, 64 * MIB, 2);
    let (a, b) = pair(&img);
    let uuid_b = info_json([a, b])["devices"][1]["uuid"].as_str().unwrap().to_string();

    let out = img.try_mount_devices(&[a], &img.mountpoint(), "", &[]);
    let line = one_line_error(&out, "hammer2 mount: ", "-o degraded");
    assert!(line.contains("device 1") && line.contains(&uuid_b), "names the missing device: {line}");
    assert!(!is_mounted(&img.mountpoint()));

    // A device that is there but no longer holds a header (wiped) is named by its path.
    wipe(b);
    let out = img.try_mount_devices(&[a, b], &img.mountpoint(), "", &[]);
    let line = one_line_error(&out, "hammer2 mount: ", "-o degraded");
    assert!(line.contains(&b.display().to_string()), "names the wiped device: {line}");
    assert!(!is_mounted(&img.mountpoint()));
    alone(&img, a, |_| {});
    img.assert_no_panics();
}

#[test]
fn devices_written_apart_refuse_to_mount_until_master_is_named_and_resync_makes_the_other_identical() {
    let img = both_holding(256 * MIB, "common", 10);
    let (a, b) = pair(&img);
    // Each alone: a adds files and deletes one; b deletes the files a keeps and overwrites
    // its copies of blocks a still uses.
    alone(&img, a, |m| {
        write_set(m, "on-a", 5);
        fs::remove_file(m.join("common/f1")).unwrap();
    });
    alone(&img, b, overwrite_common);

    let out = img.try_mount(&img.mountpoint(), "");
    let line = one_line_error(&out, "hammer2 mount: ", "-o master=");
    assert!(line.contains("diverged"), "{line}");
    assert!(!is_mounted(&img.mountpoint()));

    let m = img.mount_with(&format!("master={}", a.display()));
    let live = info_json([&m.path]);
    assert_eq!(state(&live, 1), "diverged", "{live}");
    assert!(m.join("on-a").exists() && !m.join("on-b").exists(), "a's state is the truth");
    m.unmount();
    let master_view = view(&img, &[a]);

    let (visited, copied, text) = resync_text(&[a, b]);
    eprintln!(
        "split brain resync: visited {visited}, copied {copied}, of {} blocks in the tree:\n{text}",
        Blocks::open(&img.devices).all().len()
    );
    let rewrote = verified_rewrote(&text, "b's old copies were not verified first");
    assert!(rewrote > 0, "b's copies that its own writes overwrote were rewritten from a: {text}");
    assert_caught_up(&img, &master_view, "b alone is now identical to the chosen master");
    assert_eq!(view(&img, &[a, b]), master_view);
    assert_whole(&img);
}

/// The tids of the valid headers in an image's four slots, and whether any slot is damaged.
fn slot_tids(dev: &Path) -> (Vec<u64>, bool) {
    let slots = header_slots(dev);
    let tids = slots.iter().filter_map(|s| if let Slot::Tid(t) = s { Some(*t) } else { None }).collect();
    (tids, slots.contains(&Slot::Damaged))
}

#[test]
fn after_a_split_brain_is_settled_the_losing_device_keeps_no_header_of_its_discarded_history() {
    let img = both_holding(256 * MIB, "common", 5);
    let (a, b) = pair(&img);
    // a alone makes one change; b alone makes many more commits than a.
    alone(&img, a, |m| fs::write(m.join("on-a"), "a's\n").unwrap());
    alone(&img, b, |m| {
        for i in 0..12u8 {
            fs::write(m.join(format!("on-b-{i}")), pattern(5000, i)).unwrap();
            commit(m);
        }
    });
    let (b_alone, _) = slot_tids(b);
    let b_newest = *b_alone.iter().max().unwrap();
    assert!(b_newest > info_json([a])["tid"].as_u64().unwrap() + 5, "b is far ahead of a: {b_alone:?}");

    // The operator keeps a; resync makes b its copy.
    let m = img.mount_with(&format!("master={}", a.display()));
    m.unmount();
    let (_, _, text) = resync_text(&[a, b]);
    assert!(text.contains(&format!("{}: in sync", b.display())), "{text}");
    let master_view = view(&img, &[a]);
    assert!(master_view.contains_key(Path::new("on-a")) && !master_view.contains_key(Path::new("on-b-0")));

    // Every header b holds is one of a's history: none newer than a's newest, none damaged.
    let info = info_json([a, b]);
    let tid = info["tid"].as_u64().unwrap();
    let (b_slots, b_damaged) = slot_tids(b);
    assert!(!b_damaged && b_slots.iter().all(|t| *t <= tid), "b's slots {b_slots:?}, master commit {tid}");
    assert_eq!(b_slots.iter().max(), Some(&tid), "{info}");
    assert_eq!((state(&info, 0), state(&info, 1)), ("online", "online"), "{info}");
    assert_eq!(info["master"].as_str().map(|m| m.contains("diverged")), Some(false), "{info}");

    // Both mount without naming a master, and b alone holds a's state, also after more
    // writes to both.
    assert_eq!(view(&img, &[a, b]), master_view);
    assert_eq!(view(&img, &[b]), master_view, "b alone shows the kept history");
    let m = img.mount();
    write_set(&m, "later", 5);
    m.unmount();
    let both = view(&img, &[a, b]);
    assert_eq!(view(&img, &[b]), both);
    assert_eq!(view(&img, &[a]), both);
    img.assert_no_panics();
}

#[test]
fn naming_the_older_device_as_master_makes_the_one_written_alone_diverged_and_resync_makes_it_identical() {
    let img = both_holding(256 * MIB, "common", 10);
    let (a, b) = pair(&img);
    // Only b moves on: it deletes what both had and overwrites its copies of blocks a's
    // tree still uses.
    alone(&img, b, overwrite_common);
    let a_view = view(&img, &[a]);

    // The operator keeps a's older state: b is not in sync with it, whatever its table says.
    let m = img.mount_with(&format!("master={}", a.display()));
    let live = info_json([&m.path]);
    assert_eq!(state(&live, 1), "diverged", "{live}");
    assert_eq!(snapshot(&m.path), a_view);
    m.unmount();
    let (_, _, text) = resync_text(&[a, b]);
    assert!(text.contains("verified ") && text.contains(&format!("{}: in sync", b.display())), "{text}");
    assert_eq!(view(&img, &[b]), a_view, "b alone is now identical to the chosen master");
    assert_whole(&img);
}

/// Online and offline scrub run one policy (`hammer2::maintenance::scrub`): once every copy on a
/// diverged device is verified and the bad ones rewritten, the device is taken back (stale,
/// then a resync). The online scrub used to leave it diverged until an explicit resync.
#[test]
fn an_online_scrub_takes_a_diverged_device_back_as_an_offline_one_does() {
    let img = both_holding(256 * MIB, "common", 10);
    let (a, b) = pair(&img);
    alone(&img, b, overwrite_common);
    let a_view = view(&img, &[a]);

    let m = img.mount_with(&format!("master={}", a.display()));
    let live = info_json([&m.path]);
    assert_eq!(state(&live, 1), "diverged", "{live}");
    let (code, rep) = hammer2_json("scrub", [&m.path]);
    assert_eq!(code, 1, "errors found (b's copies it overwrote) and all repaired: {rep}");
    assert!(rep["devices"][1]["repaired"].as_u64().unwrap() > 0, "{rep}");
    let live = info_json([&m.path]);
    assert_eq!((state(&live, 0), state(&live, 1)), ("online", "online"), "the scrub took b back: {live}");
    assert_eq!(snapshot(&m.path), a_view);
    m.unmount();
    assert_caught_up(&img, &a_view, "b alone is now identical to the chosen master");
    assert_whole(&img);
}

#[test]
fn a_device_rolled_back_to_an_older_copy_of_itself_is_reported_verified_by_resync_and_then_holds_everything() {
    let img = both_holding(256 * MIB, "first", 20);
    let (a, b) = pair(&img);
    // A byte copy of b (a VM snapshot, a disk kept aside), then three more commits.
    let old_b = img.dir.path().join("old-b.img");
    fs::copy(b, &old_b).unwrap();
    let m = img.mount();
    for i in 0..3 {
        write_set(&m, &format!("later{i}"), 10);
        fs::write(m.join(format!("first/f{i}")), pattern(70_000, 100 + i as u8)).unwrap();
        commit(&m);
    }
    m.unmount();
    let expected = view(&img, &[a, b]);
    // The old b is put back.
    fs::copy(&old_b, b).unwrap();

    // info names it, says how far behind it is and why that matters.
    let info = info_json([a, b]);
    assert_eq!((state(&info, 0), state(&info, 1)), ("online", "rolled back"), "{info}");
    let (header, received) = (info["devices"][1]["header_tid"].as_u64(), info["devices"][1]["received_tid"].as_u64());
    assert!(header.unwrap() + 3 <= received.unwrap(), "{info}");
    let text = ok(&hammer2([os("info"), os(a), os(b)]));
    eprintln!("hammer2 info on a and the rolled-back b:\n{text}");
    assert!(text.contains("rolled back (behind by "), "{text}");
    assert!(text.contains("was rolled back to an older copy of itself"), "{text}");

    // A mount logs it, its info shows it, and every file reads back right.
    let m = img.mount();
    assert!(img.log_shows("was rolled back to an older copy of itself"), "{}", img.log());
    let live = info_json([&m.path]);
    assert_eq!(state(&live, 1), "rolled back", "{live}");
    let text = ok(&hammer2([os("info"), os(&m.path)]));
    eprintln!("hammer2 info on the mount:\n{text}");
    eprintln!("mount log:\n{}", img.log().lines().filter(|l| l.contains("rolled back")).collect::<Vec<_>>().join("\n"));
    assert_eq!(snapshot(&m.path), expected);
    m.unmount();

    // resync verifies every copy on b and rewrites those the rollback lost.
    let (_, _, text) = resync_text(&[a, b]);
    eprintln!("resync of the rolled-back b:\n{text}");
    let rewrote = verified_rewrote(&text, "b's copies were not verified");
    assert!(rewrote > 0, "{text}");
    assert_caught_up(&img, &expected, "b alone holds everything");
    assert_whole(&img);
}

/// Bytes of file data whose copy on some device is recorded MISSING (read from the
/// unmounted images): what a resync still has to copy.
fn missing_data_bytes(img: &Image) -> u64 {
    let blocks = Blocks::open(&img.devices);
    blocks.all_data().iter().filter_map(|b| b.ptr()).filter(|p| p.copies.any_missing()).map(|p| u64::from(p.size)).sum()
}

/// Writes `count` files of 32 MiB into `m/big`.
fn write_big(m: &Mount, count: usize) {
    fs::create_dir(m.join("big")).unwrap();
    for i in 0..count {
        fs::write(m.join(format!("big/b{i}")), pattern(32 << 20, 40 + i as u8)).unwrap();
    }
}

#[test]
fn an_offline_resync_killed_half_way_keeps_its_progress_and_finishes_when_run_again() {
    let img = both_holding(1024 * MIB, "A", 10);
    let (a, b) = pair(&img);
    // 256 MiB change while b is away.
    alone(&img, a, |m| write_big(m, 8));
    let expected = view(&img, &[a]);
    let tid0 = info_json([a, b])["tid"].as_u64().unwrap();
    let missing_before = missing_data_bytes(&img);
    assert!(missing_before >= 256 * MIB, "{missing_before} bytes of file data lack their copy on b");

    // A resync that commits every MiB, killed once a few of its commits are on disk.
    let mut child = Command::new(hammer2_bin())
        .args([os("resync"), os("--json"), os(a), os(b)])
        .env("HAMMER2_RESYNC_SLICE_BYTES", "1048576")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hammer2 resync");
    let deadline = Instant::now() + Duration::from_secs(120);
    let progressed = loop {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the resync ended ({st}) before it could be interrupted; it must take more commits");
        }
        let tid = info_json([a, b])["tid"].as_u64().unwrap();
        if tid >= tid0 + 10 {
            break tid;
        }
        assert!(Instant::now() < deadline, "the resync made no 10 commits within 2 minutes (tid still {tid})");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().expect("SIGKILL the resync");
    let st = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL), "the resync was killed, not finished: {st}");
    let info = info_json([a, b]);
    assert_eq!(state(&info, 1), "stale", "b is not caught up yet: {info}");
    assert!(info["tid"].as_u64().unwrap() >= progressed, "{info}");

    // What the killed run copied is on disk: less is missing than before, but not nothing.
    let missing_after_kill = missing_data_bytes(&img);
    assert!(0 < missing_after_kill && missing_after_kill < missing_before, "{missing_after_kill} of {missing_before}");

    // Run again: it finishes, copying what was left.
    let rep = resync_json(&[a, b]);
    let copied = rep["counts"]["copied_bytes"].as_u64().unwrap();
    eprintln!(
        "interrupted resync: {missing_before} bytes of file data to copy; killed at tid {progressed} (started at \
         {tid0}) with {missing_after_kill} left; the second run copied {copied} bytes ({} blocks, {} visited)",
        rep["counts"]["copied_blocks"], rep["counts"]["visited"]
    );
    assert!(copied >= missing_after_kill && copied < missing_before, "{rep}");
    assert_eq!(missing_data_bytes(&img), 0, "nothing is missing any more");
    assert_caught_up(&img, &expected, "b alone holds everything");
    assert_whole(&img);
}

/// Sets the flag when dropped: helper threads stop even when the test fails half-way.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Set A on both devices, then 128 MiB and set B on a alone; then both are mounted (b is
/// stale) and `hammer2 resync MOUNTPOINT` runs, with a resync that commits every MiB, while
/// `hammer2 info MOUNTPOINT` is watched and, `with_writer`, another thread keeps writing
/// through the mount. Afterwards a alone and b alone show the same final tree.
fn online_resync(with_writer: bool) {
    let img = both_holding(1024 * MIB, "A", 10);
    let (a, b) = pair(&img);
    alone(&img, a, |m| {
        write_big(m, 4);
        write_set(m, "B", 10);
    });

    let m = img.mount_devices(&[a, b], "", &[("HAMMER2_RESYNC_SLICE_BYTES", "1048576")]);
    let live = info_json([&m.path]);
    assert_eq!(state(&live, 1), "stale", "{live}");
    // (Without the writer nothing at all is changed through the mount: even one mkdir just
    // before the resync puts a user change into the commit of its first slice.)
    let busy = m.join("busy");
    if with_writer {
        fs::create_dir(&busy).unwrap();
    }
    let content = |round: usize| pattern(100_000 + round % 7 * 30_000, round as u8);
    let done = AtomicBool::new(false);
    let (rep, rounds, seen) = std::thread::scope(|s| {
        // The writer rewrites 16 files in turn and adds a new one every round (at most 400
        // rounds, about 150 MB, to stay within the images).
        let writer = s.spawn(|| {
            let mut round = 0usize;
            while with_writer && (round < 32 || !done.load(Ordering::SeqCst)) {
                if round == 400 {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                fs::write(busy.join(format!("w{}", round % 16)), content(round)).unwrap();
                fs::write(busy.join(format!("new{round}")), content(round + 1)).unwrap();
                round += 1;
            }
            round
        });
        // Someone watching `hammer2 info` meanwhile.
        let watcher = s.spawn(|| {
            let mut seen = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let st = info_json([&m.path])["devices"][1]["state"].as_str().unwrap().to_string();
                if seen.last() != Some(&st) {
                    seen.push(st);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        });
        let _stop = SetOnDrop(&done);
        let deadline = Instant::now() + Duration::from_secs(60);
        while with_writer && !busy.join("new2").exists() {
            assert!(Instant::now() < deadline, "the writer wrote nothing within a minute");
            std::thread::sleep(Duration::from_millis(10));
        }
        let (code, rep) = hammer2_json("resync", [&m.path]);
        assert_eq!(code, 0, "{rep}");
        done.store(true, Ordering::SeqCst);
        (rep, writer.join().unwrap(), watcher.join().unwrap())
    });
    eprintln!(
        "online resync: visited {}, copied {} blocks ({} bytes) in {} commits while {rounds} rounds were written; \
         info showed b as {seen:?}",
        rep["counts"]["visited"], rep["counts"]["copied_blocks"], rep["counts"]["copied_bytes"], rep["commits"]
    );
    assert!(rep["counts"]["copied_bytes"].as_u64().unwrap() >= 128 * MIB, "{rep}");
    for s in &seen {
        assert!(["stale", "resyncing", "online"].contains(&s.as_str()), "info showed b as {s}");
    }
    let live = info_json([&m.path]);
    assert_eq!((state(&live, 0), state(&live, 1)), ("online", "online"), "{live}");
    for round in rounds.saturating_sub(16)..rounds {
        let name = format!("w{}", round % 16);
        assert!(fs::read(busy.join(&name)).unwrap() == content(round), "busy/{name} reads as last written");
    }
    for round in 0..rounds {
        assert!(fs::read(busy.join(format!("new{round}"))).unwrap() == content(round + 1), "busy/new{round}");
    }
    m.unmount();

    let info = info_json([a, b]);
    assert_eq!((state(&info, 0), state(&info, 1)), ("online", "online"), "{info}");
    let both = view(&img, &[a, b]);
    assert_eq!(view(&img, &[a]), both, "a alone holds the final tree");
    assert_eq!(view(&img, &[b]), both, "b alone holds the final tree");
    assert_whole(&img);
}

#[test]
fn an_online_resync_on_the_mount_point_catches_the_stale_device_up() {
    online_resync(false);
}

#[test]
fn writes_during_an_online_resync_are_safe_and_both_devices_end_with_the_same_tree() {
    online_resync(true);
}

/// Peak resident memory of a process (VmHWM), in MiB.
fn peak_rss_mib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb / 1024
}

#[test]
fn a_device_failing_in_the_middle_of_a_write_stream_is_dropped_and_made_whole_by_resync_when_it_returns() {
    const STREAM_MIB: u64 = 768;
    const FAIL_AT_MIB: u64 = 64;
    const CACHE_MIB: u64 = 32;
    // What the daemon may hold: the memory given with cache= (blocks, written or cached)
    // and 100 MiB for the program and a commit's I/O buffers. Far less than what is written
    // after the failure: the lost device's copies are recorded as MISSING, not kept.
    const MEMORY_BOUND_MIB: u64 = CACHE_MIB + 100;
    let img = Image::by_mkfs(2, 1024 * MIB, 2);
    let served = img.dir.path().join("served");
    fs::create_dir(&served).unwrap();
    let faulty = FaultyDevice::serve(&img.devices[1], &served);
    let a = img.devices[0].as_path();
    // The resync is the operator's here (the reconnect watcher takes the device back as
    // stale; `tests/device_online.rs` covers the resync that starts by itself).
    let m = img.mount_devices(&[a, &faulty.path], &format!("cache={CACHE_MIB}M,autoresync=off"), &[]);

    let mut f = fs::File::create(m.join("stream")).unwrap();
    let mut written = blake3::Hasher::new();
    for i in 0..STREAM_MIB {
        if i == FAIL_AT_MIB {
            // What came before is on both devices; from here on device 1 fails.
            f.sync_data().expect("fsync before the failure");
            faulty.fail();
        }
        let chunk = pattern(MIB as usize, i as u8 ^ 0x5a);
        f.write_all(&chunk).unwrap_or_else(|e| panic!("the stream must go on; write of MiB {i} failed: {e}"));
        written.update(&chunk);
    }
    f.sync_all().expect("fsync succeeds on the remaining copies");
    drop(f);
    let peak = peak_rss_mib(m.pid);
    let live = info_json([&m.path]);
    eprintln!(
        "device 1 failed after {FAIL_AT_MIB} MiB of a {STREAM_MIB} MiB stream: {} requests refused, daemon peak RSS \
         {peak} MiB (bound {MEMORY_BOUND_MIB} MiB), device 1 {} with {} write errors",
        faulty.refused(),
        live["devices"][1]["state"],
        live["devices"][1]["write_errors"]
    );
    assert!(faulty.refused() > 0, "the daemon kept using the failed device");
    // Failed, and the reconnect watcher retrying it (it does within its first tick).
    let live = if state(&live, 1) == "reconnecting" {
        live
    } else {
        std::thread::sleep(Duration::from_millis(500));
        info_json([&m.path])
    };
    assert_eq!(state(&live, 1), "reconnecting", "{live}");
    assert!(live["devices"][1]["write_errors"].as_u64().unwrap() > 0, "{live}");
    assert!(peak <= MEMORY_BOUND_MIB, "daemon peak RSS {peak} MiB > {MEMORY_BOUND_MIB} MiB");

    // The device comes back; an online resync catches it up.
    faulty.recover();
    let (code, rep) = hammer2_json("resync", [&m.path]);
    eprintln!(
        "resync after the failure: visited {}, copied {} blocks ({} bytes) in {} commits",
        rep["counts"]["visited"], rep["counts"]["copied_blocks"], rep["counts"]["copied_bytes"], rep["commits"]
    );
    assert_eq!(code, 0, "{rep}");
    let copied = rep["counts"]["copied_bytes"].as_u64().unwrap();
    assert!(
        ((STREAM_MIB - FAIL_AT_MIB) * MIB..STREAM_MIB * MIB).contains(&copied),
        "resync copies what the device missed, not what it already had: {rep}"
    );
    let live = info_json([&m.path]);
    assert_eq!((state(&live, 0), state(&live, 1)), ("online", "online"), "{live}");
    m.unmount();
    faulty.stop();

    // The device alone holds the whole stream.
    let mb = img.mount_devices(&[&img.devices[1]], "ro,degraded", &[]);
    assert_eq!(hash_file(&mb.join("stream")), *written.finalize().as_bytes(), "the stream read from device 1 alone");
    mb.unmount();
    assert_whole(&img);
}

#[test]
fn when_every_device_failed_and_came_back_resync_resumes_writing_and_the_changes_kept_in_memory_reach_the_disks() {
    const TMPFS: u64 = 24 * MIB;
    let mut img = Image::by_mkfs(2, 256 * MIB, 2);
    // Both images on one small tmpfs: when it is full, both devices fail.
    let tmpfs = Tmpfs::mount(&img.dir.path().join("small"), TMPFS);
    for d in &mut img.devices {
        let moved = tmpfs.path.join(d.file_name().unwrap());
        sh(&format!("cp --sparse=always '{}' '{}'", d.display(), moved.display()));
        *d = moved;
    }
    // The operator's resync is what this is about: none starts by itself.
    let m = img.mount_with("autoresync=off");
    let refused = |p: &Path| {
        let e = fs::write(p, b"x").expect_err("the filesystem must refuse changes");
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{}: {e}", p.display());
    };

    // Write and fsync 1 MiB files until a commit finds no device to write to.
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    loop {
        assert!(files.len() < 64, "{} MiB written and fsync'd on a {TMPFS}-byte tmpfs", files.len());
        let p = m.join(format!("f{}", files.len()));
        let data = pattern(MIB as usize, files.len() as u8);
        let mut f = fs::File::create(&p).unwrap();
        f.write_all(&data).unwrap();
        let synced = f.sync_all();
        files.push((p, data));
        if let Err(e) = synced {
            assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
            break;
        }
    }
    let live = info_json([&m.path]);
    assert_eq!((state(&live, 0), state(&live, 1)), ("failed", "failed"), "{live}");
    refused(&m.join("refused"));

    // Still full: resync must not report success.
    let line = one_line_error(&hammer2([os("resync"), os(&m.path)]), "hammer2 resync: ", "changes stay refused");
    eprintln!("resync on the full tmpfs: {line}");
    refused(&m.join("refused"));

    tmpfs.resize(256 * MIB);
    let out = ok(&hammer2([os("resync"), os(&m.path)]));
    for d in &img.devices {
        assert!(out.contains(&format!("{}: in sync", d.display())), "{out}");
    }
    let live = info_json([&m.path]);
    assert_eq!((state(&live, 0), state(&live, 1)), ("online", "online"), "{live}");

    // Every kind of change works again.
    let after = m.join("after");
    fs::write(&after, pattern(300_000, 9)).expect("create and write after the resync");
    sh(&format!("setfattr -n user.back -v yes '{}'", after.display()));
    fs::remove_file(&files[0].0).expect("unlink after the resync");
    let kept = files.remove(0);
    fs::File::open(&after).unwrap().sync_all().expect("fsync after the resync");
    m.unmount();

    let m = img.mount();
    assert!(!m.join(kept.0.file_name().unwrap()).exists(), "the unlink was lost");
    for (p, data) in &files {
        assert_eq!(fs::read(m.join(p.file_name().unwrap())).unwrap(), *data, "{}", p.display());
    }
    assert_eq!(fs::read(m.join("after")).unwrap(), pattern(300_000, 9));
    assert_eq!(xattrs(&m.join("after")), vec![(b"user.back".to_vec(), b"yes".to_vec())]);
    m.unmount();
    img.assert_consistent();
    img.assert_no_panics();
}
