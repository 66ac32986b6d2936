//! Format version 2 in the engine (FORMAT.md "Version 2"): mkfs of version 2, mount and
//! commit through the PFS table, `upgrade` of a version-1 filesystem holding data, every
//! crash state of the upgrade commit, `require_feature`, and PFS records that must be
//! refused (bad check code, name, magic).

use hammer2_test_support as common;

use common::crash::{images, replay};
use common::engine::{
    assert_consistent, assert_every_copy_verifies, mem_devices, populate, quiet_options, snapshot_files,
};
use common::raw_blocks::{newest, read_block, reseal_record, rewrite_root_record};
use hammer2::format::{FormatOptions, format};
use hammer2::storage::DynStorage;
use hammer2::storage::recording::{RecordLog, RecordingStorage};
use hammer2::upgrade::{UpgradeOutcome, require_feature, upgrade};
use hammer2::{Creds, Fs, Options};
use hammer2_format::layout::{FORMAT_VERSION, FORMAT_VERSION_2, SROOT_INODES, SROOT_ORPHANS, SROOT_PFS_TABLE, feature};
use hammer2_format::{BlockType, PfsRecord, indirect};
use std::sync::Arc;

const MIB: u64 = 1 << 20;

fn format_version(devs: &[DynStorage], copies: u8, version: u32) {
    format(devs.to_vec(), &FormatOptions { copies: Some(copies), format_version: version, ..Default::default() })
        .expect("format");
}

/// The PFS records of the newest commit, read from the devices without the engine.
fn records(devs: &[DynStorage]) -> Vec<PfsRecord> {
    let (_, h) = newest(&devs[0]);
    let mut out = Vec::new();
    let mut stack = vec![h.sroot[SROOT_PFS_TABLE]];
    while let Some(br) = stack.pop() {
        match br.btype {
            BlockType::Indirect => stack.extend(indirect::decode(&read_block(devs, &br), br.level).expect("node")),
            BlockType::Pfs => out.push(PfsRecord::decode(&read_block(devs, &br)).expect("record")),
            t => panic!("a {} reference in the PFS table", t.name()),
        }
    }
    out
}

#[test]
fn a_version2_filesystem_mounts_commits_and_remounts_through_its_pfs_table() {
    let devs = mem_devices(2, 64 * MIB);
    format_version(&devs, 2, FORMAT_VERSION_2);
    let (_, h) = newest(&devs[0]);
    assert_eq!((h.version, h.incompat_features, h.next_inum), (FORMAT_VERSION_2, feature::PFS_TABLE, 0));
    assert!(h.sroot[SROOT_INODES].is_empty() && h.sroot[SROOT_ORPHANS].is_empty());
    let recs = records(&devs);
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].name.as_str(), recs[0].id, recs[0].next_inum), ("ROOT", 1, 2));

    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    populate(&fs, 7, 40);
    fs.sync().expect("sync");
    assert_consistent(&fs);
    assert_every_copy_verifies(&fs);
    let want = snapshot_files(&fs);
    fs.unmount().expect("unmount");

    // Each commit wrote a new record: the counter moved with the files created.
    let recs = records(&devs);
    assert!(recs[0].next_inum > 40, "next inode number {}", recs[0].next_inum);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("remount");
    assert_eq!(snapshot_files(&fs), want);
    assert_consistent(&fs);
    // Inode numbers go on from the record's counter: never reused.
    let f = fs.create(fs.root(), b"after-remount", 0o644, Creds::default()).expect("create");
    assert!(f.ino >= recs[0].next_inum, "inode {} reuses a number below {}", f.ino, recs[0].next_inum);
    fs.unmount().expect("unmount");
    let (_, h) = newest(&devs[1]);
    assert_eq!(h.version, FORMAT_VERSION_2, "a commit keeps the version");
}

#[test]
fn a_pfs_that_does_not_exist_is_refused_and_version1_has_only_root() {
    let v2 = mem_devices(1, 64 * MIB);
    format_version(&v2, 1, FORMAT_VERSION_2);
    let e = Fs::mount(v2.clone(), Options { pfs: "other".into(), ..quiet_options() }).err().expect("refused");
    assert!(e.to_string().contains("no PFS named \"other\"") && e.to_string().contains("ROOT"), "{e}");
    Fs::mount(v2, Options { pfs: "ROOT".into(), ..quiet_options() }).expect("ROOT mounts").unmount().unwrap();

    let v1 = mem_devices(1, 64 * MIB);
    format_version(&v1, 1, FORMAT_VERSION);
    let e = Fs::mount(v1, Options { pfs: "other".into(), ..quiet_options() }).err().expect("refused");
    assert!(e.to_string().contains("'hammer2 upgrade' converts it"), "{e}");
}

#[test]
fn version1_stays_version1_byte_for_byte_in_its_header_fields() {
    let devs = mem_devices(1, 64 * MIB);
    format_version(&devs, 1, FORMAT_VERSION);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    populate(&fs, 3, 10);
    fs.unmount().expect("unmount");
    for d in &devs {
        let (_, h) = newest(d);
        assert_eq!((h.version, h.incompat_features, h.default_compression, h.default_zstd_level), (1, 0, 0, 0));
        assert!(h.sroot[SROOT_PFS_TABLE].is_empty() && !h.sroot[SROOT_INODES].is_empty());
        assert!(h.next_inum > 10);
    }
}

#[test]
fn require_feature_refuses_version1_with_the_one_line() {
    let v1 = mem_devices(1, 64 * MIB);
    format_version(&v1, 1, FORMAT_VERSION);
    let e = require_feature(&newest(&v1[0]).1, feature::SHARED_BLOCKS).expect_err("version 1");
    assert_eq!(e.to_string(), "this filesystem is format version 1; 'hammer2 upgrade' converts it (see FORMAT-V2)");
    assert_eq!(e.errno(), libc::EOPNOTSUPP);
    let v2 = mem_devices(1, 64 * MIB);
    format_version(&v2, 1, FORMAT_VERSION_2);
    require_feature(&newest(&v2[0]).1, feature::SHARED_BLOCKS).expect("version 2");
}

#[test]
fn upgrade_keeps_every_file_and_the_inode_counter() {
    let devs = mem_devices(2, 64 * MIB);
    format_version(&devs, 2, FORMAT_VERSION);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    populate(&fs, 11, 30);
    let want = snapshot_files(&fs);
    fs.unmount().expect("unmount");
    let (_, before) = newest(&devs[0]);

    let out = upgrade(devs.clone()).expect("upgrade");
    assert_eq!(out, UpgradeOutcome::Upgraded { tid: before.tid + 1 });
    let (_, after) = newest(&devs[0]);
    assert_eq!((after.version, after.incompat_features), (FORMAT_VERSION_2, feature::PFS_TABLE));
    let recs = records(&devs);
    assert_eq!(recs.len(), 1);
    // The record names the very trees version 1 had: no data moved.
    assert_eq!(recs[0].inode_root, before.sroot[SROOT_INODES]);
    assert_eq!(recs[0].orphan_root, before.sroot[SROOT_ORPHANS]);
    assert_eq!(recs[0].next_inum, before.next_inum);

    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount version 2");
    assert_eq!(snapshot_files(&fs), want);
    assert_consistent(&fs);
    assert_every_copy_verifies(&fs);
    let f = fs.create(fs.root(), b"new", 0o644, Creds::default()).expect("create");
    assert!(f.ino >= before.next_inum);
    fs.unmount().expect("unmount");
    assert_eq!(upgrade(devs.clone()).expect("again"), UpgradeOutcome::AlreadyVersion2);
}

#[test]
fn upgrade_refuses_a_missing_or_stale_member_and_garbage_without_writing() {
    let devs = mem_devices(2, 64 * MIB);
    format_version(&devs, 2, FORMAT_VERSION);
    let e = upgrade(vec![devs[0].clone()]).expect_err("one device of two");
    assert!(e.to_string().contains("missing"), "{e}");
    assert_eq!(newest(&devs[0]).1.version, FORMAT_VERSION, "nothing written");

    // Device 1 missed a commit: stale until a resync.
    let fs = Fs::mount(vec![devs[0].clone()], Options { degraded: true, ..quiet_options() }).expect("degraded");
    populate(&fs, 1, 5);
    fs.unmount().expect("unmount");
    let e = upgrade(devs.clone()).expect_err("stale member");
    assert!(e.to_string().contains("resync"), "{e}");
    assert_eq!(newest(&devs[0]).1.version, FORMAT_VERSION, "nothing written");

    let garbage = mem_devices(1, 64 * MIB);
    garbage[0].write_at(&[0xa5; 8192], 0).unwrap();
    let e = upgrade(garbage).expect_err("garbage");
    assert!(e.to_string().contains("no valid hammer2 volume header"), "{e}");
}

#[test]
fn a_pfs_record_with_a_bad_check_code_name_or_magic_is_refused_by_mount() {
    type Damage = (&'static str, fn(&mut Vec<u8>));
    let cases: [Damage; 4] = [
        ("check code", |b| b[300] ^= 0xff),
        ("name", |b| {
            b[257] = b'/';
            reseal_record(b)
        }),
        ("magic", |b| {
            b[0] = b'X';
            reseal_record(b)
        }),
        ("id", |b| {
            b[8] = 2;
            reseal_record(b)
        }),
    ];
    for (what, damage) in cases {
        let devs = mem_devices(1, 64 * MIB);
        format_version(&devs, 1, FORMAT_VERSION_2);
        rewrite_root_record(&devs, &damage);
        let e = Fs::mount(devs.clone(), quiet_options()).err().unwrap_or_else(|| panic!("{what}: mounted"));
        let msg = e.to_string();
        assert!(msg.contains("PFS"), "{what}: {msg}");
        assert_eq!(msg.lines().count(), 1, "{what}: one line: {msg}");
    }
}

/// Every state a power cut during the upgrade's commit can leave mounts, as version 1 or
/// version 2, with every file as it was.
#[test]
fn every_crash_state_of_the_upgrade_commit_mounts_with_the_data() {
    let mem = mem_devices(2, 32 * MIB);
    format_version(&mem, 2, FORMAT_VERSION);
    let fs = Fs::mount(mem.clone(), quiet_options()).expect("mount");
    populate(&fs, 5, 12);
    let want = snapshot_files(&fs);
    fs.unmount().expect("unmount");
    let bases = images(&mem);
    let log = RecordLog::new();
    let devs: Vec<DynStorage> = mem
        .iter()
        .enumerate()
        .map(|(i, m)| Arc::new(RecordingStorage::new(m.clone(), i, log.clone())) as DynStorage)
        .collect();
    upgrade(devs).expect("upgrade");
    let events = log.events();
    assert!(!events.is_empty());

    let mut versions = std::collections::BTreeSet::new();
    replay(&bases, &events, 300, 0x5eed_0002, |devs, upto, what| {
        versions.insert(newest(&devs[0]).1.version.max(newest(&devs[1]).1.version));
        let fs = Fs::mount(devs, Options { read_only: true, ..quiet_options() })
            .unwrap_or_else(|e| panic!("{what}: crash at event {upto} does not mount: {e}"));
        assert_eq!(snapshot_files(&fs), want, "{what}: crash at event {upto}");
        assert_consistent(&fs);
        assert_every_copy_verifies(&fs);
        fs.crash();
    });
    assert_eq!(versions.into_iter().collect::<Vec<_>>(), vec![1, 2], "both sides of the upgrade were seen");
}

/// Scrub reaches every block through the PFS table: a bad copy of a file's data block, which
/// only the record's inode index leads to, is found and rewritten.
#[test]
fn scrub_walks_through_the_pfs_table_and_repairs_below_it() {
    let devs = mem_devices(2, 64 * MIB);
    format_version(&devs, 2, FORMAT_VERSION_2);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    populate(&fs, 4, 6);
    fs.sync().expect("sync");
    let d = fs.lookup(fs.root(), b"d4").expect("dir");
    let f = fs.lookup(d.ino, b"f3").expect("file");
    let blocks = common::engine::data_blocks(&fs, f.ino);
    fs.unmount().expect("unmount");
    common::engine::corrupt_copy(&devs, &blocks[0], 1);

    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    let rep = hammer2::maintenance::scrub(&fs, Default::default(), &mut |_| {}).expect("scrub");
    assert!(rep.malformed.is_empty(), "{:?}", rep.malformed);
    assert!(rep.unrepairable.is_empty());
    assert_eq!(rep.repaired(), 1, "the bad copy below the PFS record");
    assert_every_copy_verifies(&fs);
    assert_consistent(&fs);
    fs.unmount().expect("unmount");
}

/// A resync on version 2 catches a stale device up: the commits it drives write new PFS
/// records and table nodes with every copy, and nothing stays DEGRADED.
#[test]
fn resync_of_a_version2_filesystem_leaves_every_copy_present() {
    let devs = mem_devices(2, 64 * MIB);
    format_version(&devs, 2, FORMAT_VERSION_2);
    let fs = Fs::mount(vec![devs[0].clone()], Options { degraded: true, ..quiet_options() }).expect("degraded");
    populate(&fs, 9, 8);
    let want = snapshot_files(&fs);
    fs.unmount().expect("unmount");

    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount both");
    let rep = hammer2::maintenance::resync(&fs, Default::default(), &mut |_| {}).expect("resync");
    assert!(rep.refused.is_empty(), "{:?}", rep.refused);
    fs.unmount().expect("unmount");
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("remount");
    assert_eq!(snapshot_files(&fs), want);
    for (br, tree) in common::engine::all_blocks(&fs) {
        assert!(!br.is_degraded(), "{} block in {tree:?} still DEGRADED", br.btype.name());
    }
    assert_every_copy_verifies(&fs);
    assert_consistent(&fs);
    fs.unmount().expect("unmount");
}
