//! Resync and device remove over every root (AR1..AR3 in docs/DESIGN.md): blocks that only
//! snapshots, clones or dead lists still hold are caught up by a resync and moved by a
//! remove like the served PFS's own, every reference to a shared block ends up naming the
//! same copies, nothing is leaked or freed twice, and each snapshot then reads back whole
//! from the devices that are left.

use hammer2_test_support as common;

use common::engine::{assert_consistent, assert_every_copy_verifies, mem_devices, quiet_options, snapshot_files};
use hammer2::format::{FormatOptions, format};
use hammer2::inspect::{Ctx, Visitor, walk_every_reference};
use hammer2::storage::DynStorage;
use hammer2::{Creds, Fs, MemberState, Options, snapshot, testing};
use hammer2_format::{Blockref, CopyState};
use std::collections::BTreeMap;
use std::sync::Arc;

const MIB: u64 = 1 << 20;

type Files = BTreeMap<String, Vec<u8>>;

/// Version 2 with `copies` copies, data stored raw (the tests write repetitive data and
/// look at every copy).
fn fresh(n: usize, copies: u8) -> Vec<DynStorage> {
    let devs = mem_devices(n, 96 * MIB);
    let raw = FormatOptions { copies: Some(copies), format_version: 2, compression: Some(None), ..Default::default() };
    format(devs.clone(), &raw).expect("format");
    devs
}

fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed)).collect()
}

/// Writes `data` as `/name`, replacing what was there.
fn put(fs: &Fs, files: &mut Files, name: &str, data: Vec<u8>) {
    let ino = match fs.lookup(fs.root(), name.as_bytes()) {
        Ok(a) => {
            fs.setattr(a.ino, &hammer2::SetAttr { size: Some(0), ..Default::default() }).expect("truncate");
            a.ino
        }
        Err(_) => fs.create(fs.root(), name.as_bytes(), 0o644, Creds::default()).expect("create").ino,
    };
    fs.write(ino, 0, &data).expect("write");
    files.insert(format!("/{name}"), data);
}

fn delete(fs: &Fs, files: &mut Files, name: &str) {
    fs.unlink(fs.root(), name.as_bytes()).expect("unlink");
    files.remove(&format!("/{name}"));
}

/// Every reference of every root (each PFS, snapshot, clone and dead list, shared subtrees
/// once per root that holds them) for which `bad` says something.
fn references_where(fs: &Fs, bad: impl Fn(&Blockref) -> Option<String>) -> Vec<String> {
    struct Find<'a, F> {
        fs: &'a Fs,
        bad: F,
        found: Vec<String>,
    }
    impl<F: Fn(&Blockref) -> Option<String>> Visitor for Find<'_, F> {
        fn visit(&mut self, br: &Blockref, ctx: &Ctx) -> hammer2::Result<Option<Arc<[u8]>>> {
            if br.ptr().is_none() {
                return Ok(None);
            }
            if let Some(why) = (self.bad)(br) {
                self.found.push(format!("{} block in {:?}: {why}", br.btype.name(), ctx.tree));
            }
            if br.btype.names_blocks() {
                return Ok(Some(testing::read_block(self.fs, br)?));
            }
            Ok(None)
        }
    }
    let mut f = Find { fs, bad, found: Vec::new() };
    walk_every_reference(&testing::committed_roots(fs), &mut f).expect("walk");
    f.found
}

/// Mounts PFS or snapshot `name` read-only from `devs` alone and returns its files.
fn files_of(devs: &[DynStorage], name: &str) -> Files {
    let opts = Options { read_only: true, degraded: true, pfs: name.into(), ..quiet_options() };
    let fs = Fs::mount(devs.to_vec(), opts).unwrap_or_else(|e| panic!("{name} mounts: {e}"));
    let files = snapshot_files(&fs);
    fs.unmount().expect("unmount");
    files
}

#[test]
fn resync_catches_up_what_only_snapshots_clones_and_dead_lists_hold() {
    let devs = fresh(2, 2);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    let mut live = Files::new();
    for i in 0..4 {
        put(&fs, &mut live, &format!("a{i}"), content(i, 150_000));
    }
    fs.unmount().expect("unmount");

    // Device 1 is away: everything written now has a MISSING copy on it.
    let fs = Fs::mount(vec![devs[0].clone()], Options { degraded: true, ..quiet_options() }).expect("degraded");
    for i in 0..6 {
        put(&fs, &mut live, &format!("b{i}"), content(40 + i, 200_000));
    }
    snapshot::snapshot(&fs, Some("s1")).expect("snapshot s1");
    let s1 = live.clone();
    // The live PFS drops some of what s1 holds: those blocks are s1's and a dead list's alone.
    delete(&fs, &mut live, "b0");
    delete(&fs, &mut live, "b1");
    put(&fs, &mut live, "b2", content(90, 120_000));
    put(&fs, &mut live, "a1", content(91, 60_000));
    snapshot::snapshot(&fs, Some("s2")).expect("snapshot s2");
    let s2 = live.clone();
    delete(&fs, &mut live, "b3");
    snapshot::clone(&fs, "s1", "c1").expect("clone of s1");
    fs.sync().expect("sync");
    fs.unmount().expect("unmount");

    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount both");
    assert_eq!(fs.devices()[1].state, MemberState::Stale);
    let missing = |br: &Blockref| {
        let p = br.ptr()?;
        p.copies.iter().any(|l| l.state == CopyState::Missing).then(|| "a MISSING copy".to_string())
    };
    let before = references_where(&fs, missing);
    assert!(before.len() > 20, "snapshots and dead lists hold degraded blocks: {}", before.len());
    let rep = testing::resync(&fs, &mut |_| {}).expect("resync");
    assert_eq!(rep.synced, vec!["mem1".to_string()], "{rep:?}");
    let after = references_where(&fs, missing);
    assert!(after.is_empty(), "after the resync, references still name MISSING copies:\n{}", after.join("\n"));
    assert_consistent(&fs);
    assert_every_copy_verifies(&fs);
    fs.unmount().expect("unmount");

    // Device 1 alone holds every PFS, snapshot and clone.
    let one = vec![devs[1].clone()];
    assert_eq!(files_of(&one, "ROOT"), live);
    assert_eq!(files_of(&one, "s1"), s1);
    assert_eq!(files_of(&one, "s2"), s2);
    assert_eq!(files_of(&one, "c1"), s1);
    // And deleting the snapshots gives back every unit (nothing retired was lost track of).
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    for name in ["c1", "s2", "s1"] {
        snapshot::delete(&fs, name).unwrap_or_else(|e| panic!("delete {name}: {e}"));
        assert_consistent(&fs);
    }
    fs.unmount().expect("unmount");
}

#[test]
fn removing_a_device_moves_the_copies_snapshots_and_clones_hold() {
    let devs = fresh(3, 2);
    let fs = Fs::mount(devs.clone(), Options { resync_slice_bytes: MIB, ..quiet_options() }).expect("mount");
    let mut live = Files::new();
    for i in 0..8 {
        put(&fs, &mut live, &format!("f{i}"), content(i, 180_000));
    }
    snapshot::snapshot(&fs, Some("s1")).expect("snapshot s1");
    let s1 = live.clone();
    delete(&fs, &mut live, "f0");
    delete(&fs, &mut live, "f1");
    put(&fs, &mut live, "f2", content(77, 90_000));
    snapshot::snapshot(&fs, Some("s2")).expect("snapshot s2");
    let s2 = live.clone();
    delete(&fs, &mut live, "f3");
    put(&fs, &mut live, "g", content(78, 300_000));
    snapshot::clone(&fs, "s2", "c2").expect("clone of s2");
    fs.sync().expect("sync");
    let on_2 = |br: &Blockref| {
        let p = br.ptr()?;
        p.copies.iter().any(|l| l.device == 2).then(|| "a copy on device 2".to_string())
    };
    assert!(references_where(&fs, on_2).len() > 20, "device 2 holds copies of every root");

    let removed = fs.device_remove(2, &mut |_| {}).expect("remove device 2 with snapshots on it");
    assert!(removed.commits >= 2, "{removed:?}");
    fs.sync().expect("sync");
    let left = references_where(&fs, on_2);
    assert!(left.is_empty(), "after the remove, references still name device 2:\n{}", left.join("\n"));
    assert_consistent(&fs);
    assert_every_copy_verifies(&fs);
    fs.unmount().expect("unmount");

    let rest = vec![devs[0].clone(), devs[1].clone()];
    assert_eq!(files_of(&rest, "ROOT"), live);
    assert_eq!(files_of(&rest, "s1"), s1);
    assert_eq!(files_of(&rest, "s2"), s2);
    assert_eq!(files_of(&rest, "c2"), s2);
    let fs = Fs::mount(rest, quiet_options()).expect("mount without device 2");
    for name in ["c2", "s1", "s2"] {
        snapshot::delete(&fs, name).unwrap_or_else(|e| panic!("delete {name}: {e}"));
        assert_consistent(&fs);
    }
    fs.unmount().expect("unmount");
}

/// Every crash state of a remove with snapshots on the device mounts with every root whole
/// and the allocator equal to what every root reaches (no copy freed while named, none
/// lost track of); running the remove again after the crash finishes it the same way.
#[test]
fn every_crash_state_of_a_remove_with_snapshots_is_whole_and_a_second_run_finishes_it() {
    use common::crash::{images, replay};
    use hammer2::storage::recording::{RecordLog, RecordingStorage};

    let mem = fresh(3, 2);
    let fs = Fs::mount(mem.clone(), quiet_options()).expect("mount");
    let mut live = Files::new();
    for i in 0..6 {
        put(&fs, &mut live, &format!("f{i}"), content(i, 150_000));
    }
    snapshot::snapshot(&fs, Some("s1")).expect("snapshot");
    let s1 = live.clone();
    delete(&fs, &mut live, "f0");
    put(&fs, &mut live, "f1", content(60, 100_000));
    put(&fs, &mut live, "g", content(61, 200_000));
    fs.unmount().expect("unmount");
    let bases = images(&mem);
    let log = RecordLog::new();
    let rec: Vec<DynStorage> = mem
        .iter()
        .enumerate()
        .map(|(i, m)| Arc::new(RecordingStorage::new(m.clone(), i, log.clone())) as DynStorage)
        .collect();
    let fs = Fs::mount(rec, Options { resync_slice_bytes: 256 << 10, ..quiet_options() }).expect("mount recorded");
    let r = fs.device_remove(2, &mut |_| {}).expect("remove");
    assert!(r.commits >= 3, "several commits to cut between: {r:?}");
    fs.unmount().expect("unmount");
    let events = log.events();

    let on_2 = |br: &Blockref| {
        let p = br.ptr()?;
        p.copies.iter().any(|l| l.device == 2).then(|| "a copy on device 2".to_string())
    };
    let mut n = 0;
    replay(&bases, &events, 60, 0x0a11_2007, |devs, upto, what| {
        assert_eq!(files_of(&devs, "s1"), s1, "{what}: snapshot after a crash at event {upto}");
        let fs = Fs::mount(devs.clone(), Options { read_only: true, ..quiet_options() })
            .unwrap_or_else(|e| panic!("{what}: crash at event {upto} does not mount: {e}"));
        assert_eq!(snapshot_files(&fs), live, "{what}: crash at event {upto}");
        assert_consistent(&fs);
        let removed = fs.devices()[2].state == MemberState::Removed;
        fs.crash();
        n += 1;
        if removed || n % 4 != 0 {
            return;
        }
        let fs = Fs::mount(devs.clone(), quiet_options()).unwrap_or_else(|e| panic!("{what}: rw mount: {e}"));
        fs.device_remove(2, &mut |_| {}).unwrap_or_else(|e| panic!("{what}: remove again: {e}"));
        let left = references_where(&fs, on_2);
        assert!(left.is_empty(), "{what}: after the second remove:\n{}", left.join("\n"));
        assert_eq!(snapshot_files(&fs), live, "{what}: after the second remove");
        assert_consistent(&fs);
        fs.unmount().expect("unmount");
        assert_eq!(files_of(&devs, "s1"), s1, "{what}: snapshot after the second remove");
    });
}
