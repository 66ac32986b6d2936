//! Snapshots and PFSs in the engine (FORMAT-V2 "Shared blocks and the rule that frees
//! them"): a model-based property test interleaving writes, deletes, snapshots and
//! snapshot deletions (every snapshot equals the model at its creation; the allocator
//! equals the blocks every tree and dead list reach after every step; deleting every
//! snapshot gives back exactly the space a twin filesystem without snapshots has free),
//! PFS create/delete, the refusals, and every crash state of snapshot create and delete.

use hammer2_test_support as common;

use common::crash::{Fate, crash_device};
use common::engine::{assert_consistent, mem_devices, quiet_options, snapshot_files};
use hammer2::format::{FormatOptions, format};
use hammer2::snapshot;
use hammer2::storage::DynStorage;
use hammer2::storage::Storage;
use hammer2::storage::recording::{Op as RecOp, RecordLog, RecordingStorage};
use hammer2::{Creds, Fs, Options};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

const MIB: u64 = 1 << 20;

fn fresh(n: usize) -> Vec<DynStorage> {
    let devs = mem_devices(n, 64 * MIB);
    // Data stored raw: the tests count the bytes snapshots hold and free.
    common::engine::format_raw(&devs, n as u8, 2);
    devs
}

fn ro(name: &str) -> Options {
    Options { read_only: true, pfs: name.into(), ..quiet_options() }
}

fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

type Files = BTreeMap<String, Vec<u8>>;

/// Writes `data` as `/name` (replacing what was there).
fn put(fs: &Fs, name: &str, data: &[u8]) {
    let c = Creds::default();
    let ino = match fs.lookup(fs.root(), name.as_bytes()) {
        Ok(a) => {
            fs.setattr(a.ino, &hammer2::SetAttr { size: Some(0), ..Default::default() }).expect("truncate");
            a.ino
        }
        Err(_) => fs.create(fs.root(), name.as_bytes(), 0o644, c).expect("create").ino,
    };
    fs.write(ino, 0, data).expect("write");
}

/// Units allocated on the devices (the free map's set bits, frees of the last commit
/// included): exact, as `statfs` is (S5).
fn used_units(fs: &Fs) -> u64 {
    let mut used = 0;
    hammer2::testing::for_each_unit(fs, &mut |_, _, allocated| used += u64::from(allocated));
    used
}

/// Mounts snapshot `name` read-only and returns its files.
fn snapshot_content(devs: &[DynStorage], name: &str) -> Files {
    let fs = Fs::mount(devs.to_vec(), ro(name)).expect("snapshot mounts read-only");
    let files = snapshot_files(&fs);
    fs.unmount().expect("unmount");
    files
}

#[derive(Debug, Clone)]
enum Op {
    Write { file: u8, seed: u8, len: u32 },
    Delete { file: u8 },
    Sync,
    Snapshot,
    DeleteSnapshot { pick: u16 },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..6u8, any::<u8>(), 1..400_000u32).prop_map(|(file, seed, len)| Op::Write { file, seed, len }),
        3 => (0..6u8).prop_map(|file| Op::Delete { file }),
        2 => Just(Op::Sync),
        3 => Just(Op::Snapshot),
        2 => any::<u16>().prop_map(|pick| Op::DeleteSnapshot { pick }),
    ]
}

/// Runs `ops` on a filesystem with snapshots and on a twin without, against a model.
fn run(ops: &[Op]) {
    let devs = fresh(2);
    let twin_devs = fresh(2);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    let twin = Fs::mount(twin_devs.clone(), quiet_options()).expect("mount twin");
    let mut model = Files::new();
    // Snapshots alive: name -> the model when it was taken.
    let mut snaps: BTreeMap<String, Files> = BTreeMap::new();
    let mut n = 0;
    for op in ops {
        match op {
            Op::Write { file, seed, len } => {
                let name = format!("f{file}");
                let data = content(*seed, *len as usize);
                put(&fs, &name, &data);
                put(&twin, &name, &data);
                model.insert(name, data);
            }
            Op::Delete { file } => {
                let name = format!("f{file}");
                if model.remove(&name).is_some() {
                    fs.unlink(fs.root(), name.as_bytes()).expect("unlink");
                    twin.unlink(twin.root(), name.as_bytes()).expect("unlink twin");
                }
            }
            Op::Sync => {
                fs.sync().expect("sync");
                twin.sync().expect("sync twin");
            }
            Op::Snapshot => {
                n += 1;
                let name = format!("s{n}");
                snapshot::snapshot(&fs, Some(&name)).expect("snapshot");
                // The twin commits at the same point (a snapshot is one commit).
                hammer2::testing::commit(&twin).expect("twin commit");
                snaps.insert(name, model.iter().map(|(k, v)| (format!("/{k}"), v.clone())).collect());
            }
            Op::DeleteSnapshot { pick } => {
                if snaps.is_empty() {
                    continue;
                }
                let name = snaps.keys().nth(usize::from(*pick) % snaps.len()).unwrap().clone();
                snapshot::delete(&fs, &name).expect("delete snapshot");
                hammer2::testing::commit(&twin).expect("twin commit");
                snaps.remove(&name);
            }
        }
        if matches!(op, Op::Snapshot | Op::DeleteSnapshot { .. } | Op::Sync) {
            assert_consistent(&fs);
        }
    }
    fs.sync().expect("sync");
    assert_consistent(&fs);
    fs.unmount().expect("unmount");
    // Every snapshot still there is the model at its creation.
    for (name, want) in &snaps {
        assert_eq!(&snapshot_content(&devs, name), want, "snapshot {name}");
    }
    // Deleting every snapshot (in the order the names sort, not creation order) leaves
    // exactly the space the twin without snapshots has.
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("remount");
    let live: Files = model.iter().map(|(k, v)| (format!("/{k}"), v.clone())).collect();
    assert_eq!(snapshot_files(&fs), live, "the live PFS");
    for name in snaps.keys().rev() {
        snapshot::delete(&fs, name).expect("delete");
        hammer2::testing::commit(&twin).expect("twin commit");
        assert_consistent(&fs);
    }
    twin.sync().expect("twin sync");
    assert_eq!(used_units(&fs), used_units(&twin), "free space after deleting every snapshot");
    fs.unmount().expect("unmount");
    twin.unmount().expect("unmount twin");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("HAMMER2_SNAPSHOT_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16),
        ..ProptestConfig::default()
    })]
    #[test]
    fn snapshots_equal_the_model_and_free_space_returns_exactly(ops in prop::collection::vec(op_strategy(), 1..40)) {
        run(&ops);
    }
}

#[test]
fn a_snapshot_holds_what_was_written_before_it_and_its_deletion_frees_what_it_alone_held() {
    let devs = fresh(1);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    let free0 = used_units(&fs);
    put(&fs, "a", &content(1, 1_000_000));
    put(&fs, "b", &content(2, 300_000));
    // Not synced: the snapshot commits it.
    let (name, tid) = snapshot::snapshot(&fs, None).expect("snapshot");
    assert!(name.starts_with("ROOT@") && name.ends_with('Z'), "default name {name}");
    assert!(tid > 0);
    let after_snap = used_units(&fs);
    // Rewriting and deleting after the snapshot frees nothing the snapshot holds.
    put(&fs, "a", &content(3, 1_000_000));
    fs.unlink(fs.root(), b"b").expect("unlink");
    fs.sync().expect("sync");
    assert_consistent(&fs);
    assert!(used_units(&fs) > after_snap, "the old content stays allocated");
    let list = snapshot::list(&fs).expect("list");
    let s = list.iter().find(|p| p.name == name).expect("listed");
    assert_eq!(s.kind, "snapshot");
    assert_eq!(s.origin.as_deref(), Some("ROOT"));
    assert_eq!(s.create_tid, tid);
    let root = list.iter().find(|p| p.name == "ROOT").expect("ROOT listed");
    assert!(root.mounted);
    assert!(root.dead_list_bytes >= 1_300_000, "ROOT's dead list holds the dropped blocks: {root:?}");
    assert!(s.would_free_bytes.unwrap() >= 1_300_000, "deleting it frees them: {s:?}");
    // A snapshot refuses a writable mount, and the mounted PFS cannot be deleted.
    let e = snapshot::delete(&fs, "ROOT").unwrap_err();
    assert!(e.to_string().contains("mounted"), "{e}");
    // Remounted read-only, nothing changes the table either.
    fs.remount(true).expect("remount ro");
    let e = snapshot::snapshot(&fs, Some("ro")).unwrap_err();
    assert!(matches!(e, hammer2::Error::ReadOnly), "{e}");
    fs.remount(false).expect("remount rw");
    fs.unmount().expect("unmount");
    let e = Fs::mount(devs.clone(), Options { pfs: name.clone(), ..quiet_options() }).err().expect("refused");
    assert!(e.to_string().contains("read-only"), "{e}");
    let files = snapshot_content(&devs, &name);
    assert_eq!(files.get("/a"), Some(&content(1, 1_000_000)));
    assert_eq!(files.get("/b"), Some(&content(2, 300_000)));
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    let before_delete = used_units(&fs);
    snapshot::delete(&fs, &name).expect("delete");
    assert_consistent(&fs);
    assert!(used_units(&fs) + 1_300_000 / 4096 <= before_delete, "deleting frees what only it held");
    fs.unlink(fs.root(), b"a").expect("unlink");
    fs.sync().expect("sync");
    assert_consistent(&fs);
    assert_eq!(used_units(&fs), free0, "everything given back");
    fs.unmount().expect("unmount");
}

#[test]
fn pfs_create_and_delete_and_the_refusals() {
    let devs = fresh(2);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    let free0 = used_units(&fs);
    snapshot::create_pfs(&fs, "home").expect("create");
    for (bad, needle) in [("home", "exists"), ("", "empty"), ("a/b", "'/'"), (&"x".repeat(65)[..], "64")] {
        let e = snapshot::create_pfs(&fs, bad).unwrap_err();
        assert!(e.to_string().contains(needle), "{bad:?}: {e}");
    }
    assert!(snapshot::delete(&fs, "nope").unwrap_err().to_string().contains("no PFS named"));
    fs.unmount().expect("unmount");
    // The new PFS mounts on its own and holds what is written there.
    let home = Fs::mount(devs.clone(), Options { pfs: "home".into(), ..quiet_options() }).expect("mount home");
    assert!(snapshot_files(&home).is_empty());
    put(&home, "x", &content(9, 200_000));
    snapshot::snapshot(&home, Some("home-1")).expect("snapshot of home");
    home.unmount().expect("unmount");
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount ROOT");
    assert!(snapshot_files(&fs).is_empty(), "ROOT does not see home's files");
    let e = snapshot::delete(&fs, "home").unwrap_err();
    assert!(e.to_string().contains("has snapshots"), "{e}");
    // A snapshot of another PFS deletes from here too (its next is that PFS's record).
    snapshot::delete(&fs, "home-1").expect("delete home-1");
    assert_consistent(&fs);
    snapshot::delete(&fs, "home").expect("delete home");
    assert_consistent(&fs);
    assert_eq!(used_units(&fs), free0, "the PFS's blocks are all free again");
    let names: Vec<String> = snapshot::list(&fs).unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, vec!["ROOT".to_string()]);
    fs.unmount().expect("unmount");
}

#[test]
fn a_version1_filesystem_refuses_snapshots_with_the_one_line() {
    let devs = mem_devices(1, 64 * MIB);
    format(devs.clone(), &FormatOptions { copies: Some(1), format_version: 1, ..Default::default() }).expect("format");
    let fs = Fs::mount(devs, quiet_options()).expect("mount");
    let e = snapshot::snapshot(&fs, Some("s")).unwrap_err();
    assert_eq!(e.to_string(), "this filesystem is format version 1; 'hammer2 upgrade' converts it (see FORMAT-V2)");
    assert!(snapshot::list(&fs).is_err());
    fs.unmount().expect("unmount");
}

fn image(d: &DynStorage) -> Arc<Vec<u8>> {
    let mut v = vec![0u8; d.size() as usize];
    d.read_at(&mut v, 0).expect("read image");
    Arc::new(v)
}

struct Lost;
impl Fate for Lost {
    fn fate(&mut self, _: usize, _: usize) -> Option<usize> {
        None
    }
}
/// Writes after the last flush: lost, torn at a 512-byte boundary, or whole.
struct Torn(u64);
impl Fate for Torn {
    fn fate(&mut self, _: usize, len: usize) -> Option<usize> {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        match (self.0 >> 33) % 10 {
            0..=3 => None,
            4 => Some(((self.0 >> 40) as usize % len.div_ceil(512)) * 512),
            _ => Some(len),
        }
    }
}

/// Every write prefix of snapshot create and of snapshot delete, writes after the last
/// flush lost or torn: the filesystem mounts, the allocator equals the reachable blocks,
/// and the snapshot is either all there (its content equal to the model) or absent.
#[test]
fn every_crash_state_of_snapshot_create_and_delete_mounts_consistent() {
    let mem = fresh(2);
    let before: Files = [("/a".to_string(), content(1, 300_000)), ("/b".to_string(), content(2, 5000))].into();
    let fs = Fs::mount(mem.clone(), quiet_options()).expect("mount");
    put(&fs, "a", &content(1, 300_000));
    put(&fs, "b", &content(2, 5000));
    fs.sync().expect("sync");
    fs.unmount().expect("unmount");
    for phase in ["create", "delete"] {
        let bases: Vec<Arc<Vec<u8>>> = mem.iter().map(image).collect();
        let log = RecordLog::new();
        let devs: Vec<DynStorage> = mem
            .iter()
            .enumerate()
            .map(|(i, m)| Arc::new(RecordingStorage::new(m.clone(), i, log.clone())) as DynStorage)
            .collect();
        let fs = Fs::mount(devs, quiet_options()).expect("mount");
        if phase == "create" {
            // Written, not synced: the snapshot's commit holds it.
            put(&fs, "b", &content(3, 5000));
            snapshot::snapshot(&fs, Some("s")).expect("snapshot");
        } else {
            snapshot::delete(&fs, "s").expect("delete");
        }
        fs.crash();
        let events = log.events();
        let mut want = before.clone();
        want.insert("/b".into(), content(3, 5000));
        let mut seen = std::collections::BTreeSet::new();
        let mut check = |upto: usize, fate: &mut dyn Fate| {
            let devs: Vec<DynStorage> =
                (0..2).map(|d| Arc::new(crash_device(&bases[d], &events, upto, d, fate)) as DynStorage).collect();
            let fs = Fs::mount(devs.clone(), quiet_options())
                .unwrap_or_else(|e| panic!("{phase}: crash at event {upto} does not mount: {e}"));
            assert_consistent(&fs);
            let has = snapshot::list(&fs).unwrap().iter().any(|p| p.name == "s");
            fs.crash();
            if has {
                assert_eq!(snapshot_content(&devs, "s"), want, "{phase}: crash at {upto}: the snapshot is whole");
            }
            seen.insert(has);
        };
        for upto in 0..=events.len() {
            check(upto, &mut Lost);
        }
        for upto in (0..=events.len()).step_by(3) {
            check(upto, &mut Torn(upto as u64));
        }
        assert_eq!(seen.len(), 2, "{phase}: states with and without the snapshot");
        let _ = RecOp::Flush;
    }
}

/// A writable snapshot (a clone of a snapshot taken for it): it starts with the PFS's
/// files, takes writes of its own without touching its origin or the PFS, keeps its
/// origin from being deleted, and deleting it, then its origin, gives back exactly the
/// space the PFS alone uses.
#[test]
fn a_writable_snapshot_is_a_clone_that_frees_only_its_own_blocks() {
    let devs = fresh(2);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    put(&fs, "a", &content(1, 700_000));
    put(&fs, "b", &content(2, 5000));
    fs.sync().expect("sync");
    let base = used_units(&fs);
    let (name, _) = snapshot::snapshot_writable(&fs, Some("w")).expect("writable snapshot");
    assert_eq!(name, "w");
    assert!(snapshot::snapshot_writable(&fs, Some("w")).unwrap_err().to_string().contains("exists"));
    let list = snapshot::list(&fs).unwrap();
    let w = list.iter().find(|p| p.name == "w").expect("clone listed");
    assert_eq!((w.kind, w.origin.as_deref()), ("clone", Some("w@origin")));
    // The PFS goes on: its rewrite goes to its dead list (the origin holds the old blocks).
    put(&fs, "a", &content(3, 700_000));
    fs.sync().expect("sync");
    assert_consistent(&fs);
    let e = snapshot::delete(&fs, "w@origin").unwrap_err();
    assert!(e.to_string().contains("clone \"w\""), "{e}");
    fs.unmount().expect("unmount");

    let w = Fs::mount(devs.clone(), Options { pfs: "w".into(), ..quiet_options() }).expect("the clone mounts writable");
    let want: Files = [("/a".to_string(), content(1, 700_000)), ("/b".to_string(), content(2, 5000))].into();
    assert_eq!(snapshot_files(&w), want, "the clone starts as the PFS was");
    put(&w, "b", &content(4, 90_000));
    put(&w, "c", &content(5, 300_000));
    w.unlink(w.root(), b"a").expect("unlink");
    w.sync().expect("sync");
    assert_consistent(&w);
    snapshot::snapshot(&w, Some("w-1")).expect("a snapshot of the clone");
    put(&w, "c", &content(6, 300_000));
    w.sync().expect("sync");
    assert_consistent(&w);
    w.unmount().expect("unmount");
    assert_eq!(snapshot_content(&devs, "w@origin"), want, "the origin is unchanged");
    let w1 = snapshot_content(&devs, "w-1");
    assert_eq!(w1.get("/c"), Some(&content(5, 300_000)));
    assert_eq!(w1.get("/a"), None);

    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    let live: Files = [("/a".to_string(), content(3, 700_000)), ("/b".to_string(), content(2, 5000))].into();
    assert_eq!(snapshot_files(&fs), live, "the PFS did not see the clone's writes");
    snapshot::delete(&fs, "w-1").expect("delete the clone's snapshot");
    assert_consistent(&fs);
    snapshot::delete(&fs, "w").expect("delete the clone");
    assert_consistent(&fs);
    snapshot::delete(&fs, "w@origin").expect("then its origin");
    assert_consistent(&fs);
    assert_eq!(used_units(&fs), base, "exactly the PFS's space again");
    fs.unmount().expect("unmount");
}

/// Scrub walks the snapshots and the dead lists too, a shared block once: a bad copy of a
/// block that the PFS, a snapshot and a dead list all name is found and repaired once,
/// and the block count is that of distinct blocks.
#[test]
fn scrub_reads_a_shared_block_once_and_repairs_it() {
    let devs = fresh(2);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    put(&fs, "a", &content(1, 600_000));
    put(&fs, "b", &content(2, 600_000));
    fs.sync().expect("sync");
    let clean = hammer2::testing::scrub(&fs, &mut |_| {}).expect("scrub");
    snapshot::snapshot(&fs, Some("s1")).expect("snapshot");
    snapshot::snapshot(&fs, Some("s2")).expect("snapshot");
    // "b" is dropped by the PFS: its blocks are in s1, s2 and ROOT's dead list.
    fs.unlink(fs.root(), b"b").expect("unlink");
    fs.sync().expect("sync");
    let ino = fs.lookup(fs.root(), b"a").expect("a").ino;
    let shared = common::engine::data_blocks(&fs, ino)[0];
    common::engine::corrupt_copy(&devs, &shared, 1);
    let r = hammer2::testing::scrub(&fs, &mut |_| {}).expect("scrub");
    assert_eq!((r.errors(), r.repaired()), (1, 1), "one bad copy, found and repaired once: {r:?}");
    assert!(r.malformed.is_empty(), "{:?}", r.malformed);
    // The distinct blocks: what the first scrub saw, plus the new records, table, dead
    // list and free-map blocks (not the shared file blocks again).
    assert!(r.blocks < clean.blocks + 20, "shared blocks counted once: {} then {}", clean.blocks, r.blocks);
    let again = hammer2::testing::scrub(&fs, &mut |_| {}).expect("scrub");
    assert_eq!(again.errors(), 0);
    assert_consistent(&fs);
    fs.unmount().expect("unmount");
}

/// Scrub reads and repairs a block only a snapshot holds: the file, its inode block and the
/// index nodes above it were dropped by ROOT and are listed in its dead list. (The walk
/// that visits each block once goes through the snapshot's tree, not the dead-list entry,
/// which it does not descend: dead lists are walked after every tree.)
#[test]
fn scrub_reads_and_repairs_what_only_a_snapshot_holds() {
    let devs = fresh(2);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    put(&fs, "a", &content(3, 300_000));
    put(&fs, "b", &content(4, 300_000));
    fs.sync().expect("sync");
    let b = fs.lookup(fs.root(), b"b").expect("b").ino;
    let held = common::engine::data_blocks(&fs, b)[1];
    snapshot::snapshot(&fs, Some("s1")).expect("snapshot");
    // "b" and the inode index nodes above it are dropped by ROOT: only s1 (and ROOT's
    // dead list) hold them now.
    fs.unlink(fs.root(), b"b").expect("unlink");
    put(&fs, "a", &content(5, 300_000));
    fs.sync().expect("sync");
    common::engine::corrupt_copy(&devs, &held, 0);
    let r = hammer2::testing::scrub(&fs, &mut |_| {}).expect("scrub");
    assert_eq!((r.errors(), r.repaired()), (1, 1), "the bad copy only s1 holds is found and repaired: {r:?}");
    let again = hammer2::testing::scrub(&fs, &mut |_| {}).expect("scrub");
    assert_eq!(again.errors(), 0, "{again:?}");
    assert_consistent(&fs);
    fs.unmount().expect("unmount");
}

/// The bytes the trees of PFS `id` reference, counted from a walk: (logical, physical).
fn walked_bytes(fs: &Fs, id: u64) -> (u64, u64) {
    use hammer2::inspect::TreeKind;
    let (mut current, mut logical, mut physical) = (0, 0, 0);
    for (b, tree) in common::engine::all_blocks(fs) {
        if b.btype == hammer2_format::BlockType::Pfs {
            current = b.key;
            continue;
        }
        if current == id && matches!(tree, TreeKind::Inodes | TreeKind::Orphans | TreeKind::Inode(_)) {
            let p = b.ptr().unwrap();
            logical += u64::from(p.size);
            physical += u64::from(p.size) * p.copies.iter().filter(|l| l.is_valid()).count() as u64;
        }
    }
    (logical, physical)
}

fn listed_bytes(fs: &Fs, name: &str) -> (u64, u64) {
    let l = snapshot::list(fs).unwrap();
    let p = l.iter().find(|p| p.name == name).expect("listed");
    (p.referenced_bytes, p.referenced_physical_bytes)
}

/// The referenced bytes a record keeps are those its trees reach: after mkfs, writes,
/// rewrites and deletions, in a snapshot (its PFS's at the time), and in a new PFS.
#[test]
fn referenced_bytes_follow_the_trees() {
    let devs = fresh(2);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    assert_eq!(listed_bytes(&fs, "ROOT"), walked_bytes(&fs, 1), "after mkfs");
    put(&fs, "a", &content(1, 900_000));
    put(&fs, "b", &content(2, 3000));
    fs.sync().expect("sync");
    let at_snapshot = walked_bytes(&fs, 1);
    assert_eq!(listed_bytes(&fs, "ROOT"), at_snapshot, "after writes");
    assert!(at_snapshot.1 >= 2 * 900_000, "two copies of the data: {at_snapshot:?}");
    snapshot::snapshot(&fs, Some("s")).expect("snapshot");
    put(&fs, "a", &content(3, 100_000));
    fs.unlink(fs.root(), b"b").expect("unlink");
    fs.sync().expect("sync");
    assert_eq!(listed_bytes(&fs, "ROOT"), walked_bytes(&fs, 1), "after rewrites and deletions");
    // The snapshot's count is ROOT's at its commit (which had nothing else to write).
    assert_eq!(listed_bytes(&fs, "s"), at_snapshot, "the snapshot");
    snapshot::create_pfs(&fs, "p").expect("pfs");
    let id = snapshot::list(&fs).unwrap().iter().find(|p| p.name == "p").unwrap().id;
    assert_eq!(listed_bytes(&fs, "p"), walked_bytes(&fs, id), "a new PFS");
    fs.unmount().expect("unmount");
}

/// An upgraded filesystem's ROOT counts the trees it took over.
#[test]
fn an_upgraded_root_counts_its_referenced_bytes() {
    let devs = mem_devices(2, 64 * MIB);
    format(devs.clone(), &FormatOptions { copies: Some(2), format_version: 1, ..Default::default() }).expect("format");
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    put(&fs, "a", &content(1, 500_000));
    fs.unmount().expect("unmount");
    hammer2::upgrade::upgrade(devs.clone()).expect("upgrade");
    let fs = Fs::mount(devs, quiet_options()).expect("mount");
    assert_eq!(listed_bytes(&fs, "ROOT"), walked_bytes(&fs, 1));
    fs.unmount().expect("unmount");
}

/// `.snapshots` in the engine (DESIGN §13 "Snapshots under the mount"): a view reads a
/// snapshot's files as they were while the live ones change, with the snapshot's own inode
/// numbers; a snapshot with a file open in its view is not deleted (SD3); once deleted, the
/// view answers ESTALE, never its old blocks (SD2), and the snapshot is no longer listed.
#[test]
fn a_snapshot_view_reads_the_snapshot_and_is_stale_once_deleted() {
    let devs = fresh(1);
    let fs = Fs::mount(devs, quiet_options()).expect("mount");
    put(&fs, "a", &content(1, 100_000));
    let (_, tid) = snapshot::snapshot(&fs, Some("s1")).expect("snapshot");
    put(&fs, "a", &content(2, 50_000));
    put(&fs, "b", &content(3, 10));
    fs.sync().expect("sync");

    let snaps = fs.snapshots().expect("snapshots");
    assert_eq!(snaps.iter().map(|s| (s.name.as_str(), s.create_tid)).collect::<Vec<_>>(), [("s1", tid)]);
    let v = fs.snapshot_view(snaps[0].id).expect("view");
    let root = fs.root();
    let a = v.lookup(root, b"a").expect("a in the snapshot");
    assert_eq!(a.size, 100_000);
    assert_eq!(v.read(a.ino, 0, 200_000).expect("read"), content(1, 100_000));
    assert_eq!(v.lookup(root, b"b").expect_err("b came later").errno(), libc::ENOENT);
    let mut listed = Vec::new();
    v.readdir(root, 0, |e| {
        listed.push(String::from_utf8(e.name.clone()).unwrap());
        false
    })
    .expect("readdir");
    assert_eq!(listed, [".", "..", "a"]);
    // The live file is the new one, under the same inode number.
    let live = fs.lookup(root, b"a").expect("live a");
    assert_eq!(live.ino, a.ino);
    assert_eq!(fs.read(live.ino, 0, 200_000).expect("read"), content(2, 50_000));

    v.open(a.ino).expect("open");
    let busy = snapshot::delete(&fs, "s1").expect_err("a file is open in it");
    assert_eq!(busy.errno(), libc::EBUSY, "{busy}");
    assert_eq!(v.read(a.ino, 0, 10).expect("still readable"), content(1, 10));
    v.release();
    snapshot::delete(&fs, "s1").expect("delete");
    assert_eq!(v.read(a.ino, 0, 10).expect_err("deleted").errno(), libc::ESTALE);
    assert_eq!(v.getattr(a.ino).expect_err("deleted").errno(), libc::ESTALE);
    assert!(fs.snapshots().expect("snapshots").is_empty());
    assert_eq!(fs.snapshot_view(snaps[0].id).err().map(|e| e.errno()), Some(libc::ENOENT));
    assert_consistent(&fs);
}
