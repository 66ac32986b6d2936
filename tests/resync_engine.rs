//! Degraded operation, master selection and resync at the engine level.

use hammer2_test_support as common;

use common::engine::*;
use hammer2::storage::DynStorage;
use hammer2::storage::faulty::FaultyStorage;
use hammer2::{Creds, Fs, MemberState, Options, resync, testing};
use hammer2_format::layout::{HEADER_SLOTS, header_offset};
use std::sync::Arc;

const C: Creds = Creds { uid: 0, gid: 0, umask: 0 };

fn degraded() -> Options {
    Options { degraded: true, ..quiet_options() }
}

fn resync_now(fs: &Fs) -> resync::ResyncReport {
    testing::resync(fs, &mut |_| {}).expect("resync")
}

fn write_file(fs: &Fs, dir: u64, name: &str, len: usize, seed: u8) {
    let f = fs.create(dir, name.as_bytes(), 0o644, C).unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
    fs.write(f.ino, 0, &data).unwrap();
}

#[test]
fn a_device_that_missed_commits_is_stale_and_resync_makes_it_hold_everything() {
    let devs = mem_devices(2, 128 << 20);
    format_copies(&devs, 2);
    let fs = mount(&devs);
    populate(&fs, 1, 30); // set A
    fs.unmount().unwrap();

    // Device 1 is away: write set B and delete part of A on device 0 alone.
    let fs = Fs::mount(vec![devs[0].clone()], degraded()).unwrap();
    assert_eq!(fs.devices()[1].state, MemberState::Absent);
    populate(&fs, 2, 30);
    let d1 = fs.lookup(fs.root(), b"d1").unwrap();
    for i in (0..30).step_by(3) {
        fs.unlink(d1.ino, format!("f{i}").as_bytes()).unwrap();
    }
    let expected = snapshot_files(&fs);
    fs.unmount().unwrap();

    let fs = mount(&devs);
    assert_eq!(fs.devices()[1].state, MemberState::Stale, "device 1 is recognized as stale");
    let rep = resync_now(&fs);
    assert!(rep.counts.copied_blocks > 0);
    assert_eq!(rep.synced, vec!["mem1".to_string()]);
    assert_eq!(fs.devices()[1].state, MemberState::Online);
    assert_consistent(&fs);
    fs.unmount().unwrap();

    // Device 1 alone now holds exactly A + B - deletions.
    let fs = Fs::mount(vec![devs[1].clone()], degraded()).unwrap();
    assert_eq!(snapshot_files(&fs), expected);
}

#[test]
fn resync_cost_is_proportional_to_the_change_not_to_the_filesystem() {
    let devs = mem_devices(2, 1 << 30);
    format_copies(&devs, 2);
    let fs = mount(&devs);
    let dirs: Vec<u64> =
        (0..20).map(|i| fs.mkdir(fs.root(), format!("dir{i}").as_bytes(), 0o755, C).unwrap().ino).collect();
    for i in 0..20_000 {
        write_file(&fs, dirs[i % 20], &format!("file{i:05}"), 200 + i % 3000, i as u8);
    }
    fs.unmount().unwrap();
    let fs = mount(&devs);
    let total_blocks = all_blocks(&fs).len() as u64;
    fs.unmount().unwrap();

    let fs = Fs::mount(vec![devs[0].clone()], degraded()).unwrap();
    for i in (0..20_000).step_by(2000) {
        let f = fs.lookup(dirs[i % 20], format!("file{i:05}").as_bytes()).unwrap();
        fs.write(f.ino, 0, b"changed while device 1 was away").unwrap();
    }
    fs.unmount().unwrap();

    let fs = mount(&devs);
    // Out-of-sync leaves: the 10 inode blocks (small files embed their data) and their
    // directories' entries did not change; each changed leaf drags its path to the root.
    let depth = 4; // inode tree root node + 1-2 levels + the inode itself
    let changed = 10;
    let rep = resync_now(&fs);
    eprintln!(
        "20,000 files, 10 changed: resync visited {} and copied {} blocks ({} bytes) in {} commits; the tree has {} blocks",
        rep.counts.visited, rep.counts.copied_blocks, rep.counts.copied_bytes, rep.commits, total_blocks
    );
    assert!(rep.counts.visited <= depth * changed + 8, "visited {} out-of-sync references", rep.counts.visited);
    assert!(rep.counts.copied_blocks <= depth * changed, "copied {}", rep.counts.copied_blocks);
    assert!(rep.counts.visited * 100 < total_blocks, "far fewer than a full copy ({total_blocks} blocks)");
    fs.unmount().unwrap();
    let fs = Fs::mount(vec![devs[1].clone()], degraded()).unwrap();
    let f = fs.lookup(dirs[0], b"file00000").unwrap();
    assert_eq!(&fs.read(f.ino, 0, 31).unwrap(), b"changed while device 1 was away");
}

#[test]
fn devices_written_apart_refuse_to_mount_until_a_master_is_chosen_and_resync_converges_them() {
    let devs = mem_devices(2, 128 << 20);
    format_copies(&devs, 2);
    let fs = mount(&devs);
    populate(&fs, 1, 10);
    fs.unmount().unwrap();
    for (d, seed) in [(0usize, 20u64), (1, 30)] {
        let fs = Fs::mount(vec![devs[d].clone()], degraded()).unwrap();
        populate(&fs, seed, 5);
        fs.unmount().unwrap();
    }
    let err = Fs::mount(devs.clone(), quiet_options()).err().expect("split brain must refuse");
    let msg = err.to_string();
    assert!(msg.contains("diverged") && msg.contains("master="), "{msg}");

    let fs = Fs::mount(devs.clone(), Options { master: Some(0), ..quiet_options() }).unwrap();
    assert_eq!(fs.devices()[1].state, MemberState::Diverged);
    let master_view = snapshot_files(&fs);
    assert!(master_view.keys().any(|k| k.starts_with("/d20/")) && !master_view.keys().any(|k| k.starts_with("/d30/")));
    resync_now(&fs);
    fs.unmount().unwrap();
    let fs = Fs::mount(vec![devs[1].clone()], degraded()).unwrap();
    assert_eq!(snapshot_files(&fs), master_view, "the other device is now identical to the chosen master");
    assert_consistent(&fs);
}

#[test]
fn an_interrupted_resync_keeps_its_progress_and_finishes_when_restarted() {
    let devs = mem_devices(2, 256 << 20);
    format_copies(&devs, 2);
    let fs = mount(&devs);
    fs.unmount().unwrap();
    let fs = Fs::mount(vec![devs[0].clone()], degraded()).unwrap();
    populate(&fs, 1, 60);
    let expected = snapshot_files(&fs);
    fs.unmount().unwrap();

    // A few small slices, then a crash in the middle of the resync.
    let fs = mount(&devs);
    let session = testing::resync_start(&fs, 256 << 10).unwrap();
    for _ in 0..5 {
        testing::commit(&fs).unwrap();
    }
    let first = session.totals();
    assert!(first.copied_blocks > 0 && !session.complete());
    drop(session);
    fs.crash();

    let fs = mount(&devs);
    assert_eq!(fs.devices()[1].state, MemberState::Stale);
    let rest = resync_now(&fs);
    assert!(rest.counts.copied_blocks > 0);
    fs.unmount().unwrap();
    let fs = Fs::mount(vec![devs[1].clone()], degraded()).unwrap();
    assert_eq!(snapshot_files(&fs), expected);
}

#[test]
fn a_device_failing_in_a_write_stream_is_dropped_and_caught_up_when_it_returns() {
    let (base, faulty, devs) = common::engine::two_copies_second_faulty(256 << 20, 3);
    // Stored raw (no compression), so that the bytes the resync copies are those written.
    let opts = Options { dirty_limit: 8 << 20, ..common::engine::raw_options() };
    let fs = Fs::mount(devs.clone(), opts).unwrap();
    let f = fs.create(fs.root(), b"stream", 0o644, C).unwrap();
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i * 13) as u8).collect();
    for i in 0..96u64 {
        if i == 20 {
            faulty.vanish();
        }
        fs.write(f.ino, i << 20, &chunk).unwrap();
    }
    fs.sync().unwrap();
    assert_eq!(fs.devices()[1].state, MemberState::Failed);
    faulty.reappear();
    let rep = resync_now(&fs);
    assert!(rep.counts.copied_bytes >= 70 << 20, "{rep:?}");
    fs.unmount().unwrap();
    let fs = Fs::mount(vec![base[1].clone()], degraded()).unwrap();
    let f = fs.lookup(fs.root(), b"stream").unwrap();
    for i in (0..96u64).step_by(7) {
        assert_eq!(fs.read(f.ino, i << 20, 1 << 20).unwrap(), chunk);
    }
}

#[test]
fn without_degraded_a_missing_device_is_named_in_the_error() {
    let devs = mem_devices(2, 64 << 20);
    format_copies(&devs, 2);
    let err = Fs::mount(vec![devs[0].clone()], quiet_options()).err().expect("refuses");
    let msg = err.to_string();
    assert!(msg.contains("device 1") && msg.contains("-o degraded"), "{msg}");
}

#[test]
fn a_resync_slice_sharing_a_commit_with_writes_to_a_neighbouring_inode_completes() {
    let devs = mem_devices(2, 256 << 20);
    format_copies(&devs, 2);
    mount(&devs).unmount().unwrap();

    // While device 1 is away: a file with a tree of data blocks (out of sync) and a neighbour
    // in the same inode-tree node.
    let fs = Fs::mount(vec![devs[0].clone()], degraded()).unwrap();
    write_file(&fs, fs.root(), "big", 4 << 20, 7);
    write_file(&fs, fs.root(), "small", 10, 3);
    fs.unmount().unwrap();

    // Both devices; a write to the neighbour lands in the commit that runs the first slice.
    let fs = mount(&devs);
    let small = fs.lookup(fs.root(), b"small").unwrap();
    fs.write(small.ino, 0, b"written during the resync").unwrap();
    let expected = snapshot_files(&fs);
    let session = testing::resync_start(&fs, 1 << 30).unwrap();
    testing::commit(&fs).expect("the commit with the first slice");
    drop(session);
    resync_now(&fs);
    fs.unmount().unwrap();
    let fs = Fs::mount(vec![devs[1].clone()], degraded()).unwrap();
    assert_eq!(snapshot_files(&fs), expected);
}

#[test]
fn a_resync_slice_in_a_commit_that_also_writes_changed_inodes_commits_and_syncs_everything() {
    // Regression: the slice rebuilt out-of-sync inodes under a tree node the same commit had
    // already rebuilt for a changed inode; the new children came after their parent in the
    // commit's block list, and finalize (which went through that list in order) panicked
    // with "child finalized before parent".
    let devs = mem_devices(2, 128 << 20);
    format_copies(&devs, 2);
    let fs = mount(&devs);
    let d = fs.mkdir(fs.root(), b"d", 0o755, C).unwrap();
    for i in 0..40 {
        write_file(&fs, d.ino, &format!("f{i}"), 10_000, i as u8 + 1);
    }
    fs.unmount().unwrap();

    // Device 1 is away while every file changes: each one's data has a MISSING copy.
    let fs = Fs::mount(vec![devs[0].clone()], degraded()).unwrap();
    for i in 0..40 {
        let f = fs.lookup(d.ino, format!("f{i}").as_bytes()).unwrap();
        fs.write(f.ino, 100, b"changed while device 1 was away").unwrap();
    }
    fs.unmount().unwrap();

    // Back together; one file is changed and not yet committed when the resync starts, so
    // the first slice runs in a commit that rewrites the inode tree path to it.
    let fs = mount(&devs);
    let f7 = fs.lookup(d.ino, b"f7").unwrap();
    fs.write(f7.ino, 0, b"uncommitted").unwrap();
    let expected = snapshot_files(&fs);
    let rep = resync_now(&fs);
    // Every file's changed block but f7's, which the commit wrote anew to both devices.
    assert!(rep.counts.copied_blocks >= 39, "{rep:?}");
    assert_eq!(snapshot_files(&fs), expected);
    assert_consistent(&fs);
    fs.unmount().unwrap();
    let fs = Fs::mount(vec![devs[1].clone()], degraded()).unwrap();
    assert_eq!(snapshot_files(&fs), expected, "device 1 alone holds everything");
}

/// Two devices with two copies, each behind a fault injector: (the plain devices, the
/// injectors, the devices to mount).
fn two_faulty_devices(size: u64) -> (Vec<DynStorage>, Vec<Arc<FaultyStorage>>, Vec<DynStorage>) {
    let base = mem_devices(2, size);
    format_copies(&base, 2);
    let faulty: Vec<Arc<FaultyStorage>> =
        base.iter().enumerate().map(|(i, d)| Arc::new(FaultyStorage::new(d.clone(), i as u64 + 1))).collect();
    let devs = faulty.iter().map(|f| f.clone() as DynStorage).collect();
    (base, faulty, devs)
}

/// Two faulty devices mounted: file `durable` committed, then file `kept` written and
/// every device gone, so `kept` is only in memory (the caller's next commit fails).
fn every_device_gone_with_a_change_kept() -> (Vec<DynStorage>, Vec<Arc<FaultyStorage>>, Fs) {
    let (base, faulty, devs) = two_faulty_devices(64 << 20);
    let fs = Fs::mount(devs, quiet_options()).unwrap();
    write_file(&fs, fs.root(), "durable", 100_000, 3);
    fs.sync().unwrap();
    write_file(&fs, fs.root(), "kept", 300_000, 5);
    for f in &faulty {
        f.vanish();
    }
    (base, faulty, fs)
}

fn errno<T: std::fmt::Debug>(r: hammer2::Result<T>) -> i32 {
    r.expect_err("the filesystem refuses changes").errno()
}

#[test]
fn after_every_device_failed_and_came_back_resync_commits_the_kept_changes_and_changes_are_accepted_again() {
    let (base, faulty, fs) = every_device_gone_with_a_change_kept();
    assert!(fs.sync().is_err(), "no device takes the commit");
    for d in 0..2 {
        assert_eq!(fs.devices()[d].state, MemberState::Failed);
    }
    assert_eq!(errno(fs.create(fs.root(), b"refused", 0o644, C)), libc::EIO, "no device: changes are refused");

    for f in &faulty {
        f.reappear();
    }
    let rep = resync_now(&fs);
    assert_eq!(rep.synced.len(), 2, "both devices are back: {rep:?}");
    assert!(rep.refused.is_empty(), "{rep:?}");
    for d in 0..2 {
        assert_eq!(fs.devices()[d].state, MemberState::Online);
    }

    // Every kind of change works again: create, write, setxattr, unlink.
    write_file(&fs, fs.root(), "after", 50_000, 7);
    let after = fs.lookup(fs.root(), b"after").unwrap();
    fs.setxattr(after.ino, b"user.k", b"v", Default::default()).unwrap();
    fs.unlink(fs.root(), b"durable").unwrap();
    fs.sync().unwrap();
    fs.unmount().unwrap();

    let fs = mount(&base);
    let kept = fs.lookup(fs.root(), b"kept").expect("the changes kept in memory were committed by the resync");
    let want: Vec<u8> = (0..300_000).map(|i| (i as u8).wrapping_mul(5)).collect();
    assert_eq!(fs.read(kept.ino, 0, want.len()).unwrap(), want);
    let after = fs.lookup(fs.root(), b"after").unwrap();
    assert_eq!(fs.getxattr(after.ino, b"user.k").unwrap(), b"v");
    assert_eq!(fs.lookup(fs.root(), b"durable").unwrap_err().errno(), libc::ENOENT);
    assert_consistent(&fs);
    assert_every_copy_verifies(&fs);
}

#[test]
fn a_returning_device_whose_header_this_mount_did_not_make_durable_is_refused_and_resync_says_to_remount() {
    let (base, faulty, fs) = every_device_gone_with_a_change_kept();
    assert!(fs.sync().is_err());
    // What a commit whose header write reached device 0 but whose flush failed leaves: a
    // header newer than the last commit this mount completed. Its blocks were given back
    // to the allocator, so resuming would reuse them under a header that names them.
    let mut h = hammer2::inspect::probe(base[0].clone()).header.expect("device 0's header");
    h.tid += 1;
    h.slot = (h.tid % HEADER_SLOTS as u64) as u8;
    base[0].write_at(&h.encode(), header_offset(usize::from(h.slot))).unwrap();
    let before: Vec<Vec<u8>> = (0..2).map(|d| contents(&base[d])).collect();
    for f in &faulty {
        f.reappear();
    }

    let err = testing::resync(&fs, &mut |_| {}).expect_err("resync cannot resume on a device it cannot vouch for");
    let msg = err.to_string();
    assert!(msg.contains("mem0") && msg.contains(&format!("commit {}", h.tid)) && msg.contains("mount"), "{msg}");
    assert_eq!(errno(fs.create(fs.root(), b"refused", 0o644, C)), libc::EIO, "changes are still refused");
    for d in 0..2u8 {
        assert_eq!(fs.devices()[usize::from(d)].state, MemberState::Failed, "device {d}");
        let i = usize::from(d);
        assert!(contents(&base[i]) == before[i], "device {d} was written to");
    }
    fs.crash();
}

fn contents(d: &DynStorage) -> Vec<u8> {
    let mut v = vec![0u8; d.size() as usize];
    d.read_at(&mut v, 0).unwrap();
    v
}

#[test]
fn a_second_resync_while_one_is_running_is_refused() {
    // Regression: two resyncs at once drove the same commits' slices and counted each
    // other's copies.
    let devs = mem_devices(2, 64 << 20);
    format_copies(&devs, 2);
    mount(&devs).unmount().unwrap();
    let fs = Fs::mount(vec![devs[0].clone()], degraded()).unwrap();
    write_file(&fs, fs.root(), "f", 1 << 20, 5);
    fs.unmount().unwrap();

    let fs = mount(&devs);
    let mut second = None;
    let rep = testing::resync(&fs, &mut |_| {
        if second.is_none() {
            second = Some(testing::resync(&fs, &mut |_| {}).map(|_| ()));
        }
    })
    .expect("the first resync");
    assert!(matches!(second, Some(Err(hammer2::Error::Busy(_)))), "{second:?}");
    assert_eq!(rep.synced, vec!["mem1".to_string()]);
    // Once it has finished, a resync runs again.
    resync_now(&fs);
}
