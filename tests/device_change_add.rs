//! `device add` in the engine (DESIGN §7, A1; FORMAT.md "Devices added and removed"): new
//! devices join a mounted version-2 filesystem and take copies of new blocks at once, on
//! distinct devices (FP1); the filesystem stays consistent and remounts with them; a
//! version-1 filesystem refuses with FORMAT-V2's line and nothing is written; devices that
//! must not be taken are refused; and every crash state of an add mounts, with the device
//! either in the table or out of it and the data unchanged.

use hammer2_test_support as common;

use common::crash::{contents, images, replay};
use common::engine::{
    all_blocks, assert_consistent, assert_every_copy_verifies, format_raw, mem_devices, populate, quiet_options,
    snapshot_files,
};
use hammer2::devchange::DeviceChangeError;
use hammer2::storage::DynStorage;
use hammer2::storage::recording::{RecordLog, RecordingStorage};
use hammer2::{Creds, Fs, Options};
use hammer2_format::layout::{FORMAT_VERSION, FORMAT_VERSION_2, feature};
use hammer2_format::{BlockType, VolumeHeader};
use std::collections::BTreeSet;
use std::sync::Arc;

const MIB: u64 = 1 << 20;

/// The newest valid header on `dev`, if it has one.
fn newest_header(dev: &DynStorage) -> Option<VolumeHeader> {
    common::raw_blocks::newest_if_any(dev).map(|(_, h)| h)
}

fn write_file(fs: &Fs, name: &str, len: usize, seed: u8) -> u64 {
    let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(17).wrapping_add(seed)).collect();
    let f = fs.create(fs.root(), name.as_bytes(), 0o644, Creds::default()).expect("create");
    fs.write(f.ino, 0, &data).expect("write");
    f.ino
}

/// The devices each committed block's copies are on, for the blocks written at or after
/// commit `since`.
fn copy_devices_since(fs: &Fs, since: u64) -> Vec<(BlockType, Vec<u8>)> {
    all_blocks(fs)
        .into_iter()
        .filter(|(b, _)| b.modify_tid >= since)
        .map(|(b, _)| (b.btype, b.ptr().unwrap().copies.iter().map(|l| l.device).collect()))
        .collect()
}

#[test]
fn an_added_device_takes_copies_of_new_blocks_at_once_on_distinct_devices() {
    // One device with two copies: both copies in two regions of it (fixed slots).
    let old = mem_devices(1, 96 * MIB);
    format_raw(&old, 2, FORMAT_VERSION_2);
    let fs = Fs::mount(old.clone(), quiet_options()).expect("mount");
    populate(&fs, 1, 10);
    fs.sync().unwrap();
    let new = mem_devices(1, 64 * MIB).pop().unwrap();
    let added = fs.device_add(vec![new.clone()]).expect("device add");
    assert_eq!(added.devices.len(), 1);
    assert_eq!(added.devices[0].index, 1);
    assert_eq!(added.device_count, 2);
    let h = newest_header(&new).expect("the new device holds a header of the filesystem");
    assert!(h.has_feature(feature::FREE_PLACEMENT), "the first device change sets FREE_PLACEMENT");
    assert_eq!(h.devices.len(), 2);
    assert_eq!(h.devices[1].state.name(), "online");

    let since = hammer2::testing::committed_roots(&fs).tid + 1;
    write_file(&fs, "after-add", 3 << 20, 9);
    fs.sync().unwrap();
    let new_blocks = copy_devices_since(&fs, since);
    assert!(new_blocks.iter().filter(|(t, _)| *t == BlockType::Data).count() >= 100, "the new file's blocks");
    for (t, devs) in &new_blocks {
        let distinct: BTreeSet<u8> = devs.iter().copied().collect();
        assert_eq!(distinct.len(), 2, "a new {} block has its two copies on two devices: {devs:?}", t.name());
    }
    assert_consistent(&fs);
    assert_every_copy_verifies(&fs);
    let want = snapshot_files(&fs);
    let statfs = fs.statfs();
    fs.unmount().unwrap();

    // Remounted with both devices: the same files; more space than one device gave.
    let devs = vec![old[0].clone(), new.clone()];
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("remount with the added device");
    assert_eq!(snapshot_files(&fs), want);
    assert_eq!(fs.statfs().blocks, statfs.blocks);
    assert_consistent(&fs);
    assert_every_copy_verifies(&fs);
    fs.unmount().unwrap();
    // Without it, the filesystem is degraded (the device is a member now).
    let e = Fs::mount(old.clone(), quiet_options()).err().expect("a member is missing");
    assert!(e.to_string().contains("device 1"), "{e}");
}

#[test]
fn adding_grows_the_space_and_the_new_device_is_filled_first() {
    let old = mem_devices(2, 48 * MIB);
    format_raw(&old, 2, FORMAT_VERSION_2);
    let fs = Fs::mount(old.clone(), quiet_options()).expect("mount");
    let total_before = fs.statfs().blocks;
    let free_before = fs.statfs().blocks_free;
    let new = mem_devices(1, 96 * MIB).pop().unwrap();
    fs.device_add(vec![new]).expect("device add");
    let st = fs.statfs();
    assert!(st.blocks > total_before, "total grows: {} -> {}", total_before, st.blocks);
    assert!(st.blocks_free > free_before, "free grows: {} -> {}", free_before, st.blocks_free);
    // The emptiest device (the new one) takes one copy of each new block.
    let since = hammer2::testing::committed_roots(&fs).tid + 1;
    write_file(&fs, "f", 1 << 20, 1);
    fs.sync().unwrap();
    for (_, devs) in copy_devices_since(&fs, since) {
        assert!(devs.contains(&2), "copies on {devs:?}");
        let distinct: BTreeSet<u8> = devs.iter().copied().collect();
        assert_eq!(distinct.len(), devs.len());
    }
    assert_consistent(&fs);
    fs.unmount().unwrap();
}

#[test]
fn version1_refuses_with_the_one_line_and_writes_nothing() {
    let old = mem_devices(1, 64 * MIB);
    format_raw(&old, 2, FORMAT_VERSION);
    let fs = Fs::mount(old.clone(), quiet_options()).expect("mount");
    let new = mem_devices(1, 64 * MIB).pop().unwrap();
    new.write_at(&[7u8; 4096], 0).unwrap();
    let before = contents(&new);
    let e = fs.device_add(vec![new.clone()]).expect_err("refused");
    assert_eq!(e.to_string(), "this filesystem is format version 1; 'hammer2 upgrade' converts it (see FORMAT-V2)");
    assert!(contents(&new) == before, "nothing written to the device");
    assert_eq!(fs.devices().len(), 1);
    fs.unmount().unwrap();
    assert_eq!(newest_header(&old[0]).unwrap().version, FORMAT_VERSION);
}

#[test]
fn devices_that_must_not_be_taken_are_refused_with_one_line_each() {
    let old = mem_devices(1, 64 * MIB);
    format_raw(&old, 2, FORMAT_VERSION_2);
    let fs = Fs::mount(old.clone(), quiet_options()).expect("mount");
    // A member of this filesystem.
    let e = fs.device_add(vec![old[0].clone()]).expect_err("a member");
    assert!(matches!(e, DeviceChangeError::AlreadyMember { index: 0, .. }), "{e}");
    // Another filesystem's device.
    let other = mem_devices(1, 64 * MIB);
    format_raw(&other, 1, FORMAT_VERSION_2);
    let e = fs.device_add(vec![other[0].clone()]).expect_err("another filesystem");
    assert!(e.to_string().contains("belongs to another hammer2 filesystem"), "{e}");
    assert!(newest_header(&other[0]).is_some(), "left alone");
    // Too small.
    let small = Arc::new(hammer2::storage::mem::MemStorage::new(20 * MIB, "small")) as DynStorage;
    let e = fs.device_add(vec![small]).expect_err("too small");
    assert!(e.to_string().contains("too small"), "{e}");
    // The same device twice.
    let d = mem_devices(1, 64 * MIB).pop().unwrap();
    let e = fs.device_add(vec![d.clone(), d.clone()]).expect_err("twice");
    assert!(e.to_string().contains("given twice"), "{e}");
    // Nothing given.
    assert!(matches!(fs.device_add(vec![]), Err(DeviceChangeError::NoDevice)));
    assert_eq!(fs.devices().len(), 1, "nothing was added");
    // Read-only.
    fs.unmount().unwrap();
    let fs = Fs::mount(old.clone(), Options { read_only: true, ..quiet_options() }).unwrap();
    assert!(matches!(fs.device_add(vec![d]), Err(DeviceChangeError::ReadOnly)));
    fs.crash();
}

/// Every crash state of an add, with writes before it: mounts (read-only), with the old
/// device alone when the master does not list the new one and with both when it does; the
/// data is what was synced; both sides of the add are seen.
#[test]
fn every_crash_state_of_an_add_mounts_with_the_device_in_or_out() {
    let mem = mem_devices(1, 64 * MIB);
    format_raw(&mem, 2, FORMAT_VERSION_2);
    let fs = Fs::mount(mem.clone(), quiet_options()).expect("mount");
    populate(&fs, 3, 10);
    fs.unmount().unwrap();
    let newdev = mem_devices(1, 48 * MIB).pop().unwrap();
    newdev.write_at(&[0xee; 4096], 2 * MIB).unwrap();
    let all = [mem[0].clone(), newdev.clone()];
    let bases = images(&all);
    let log = RecordLog::new();
    let rec: Vec<DynStorage> = all
        .iter()
        .enumerate()
        .map(|(i, m)| Arc::new(RecordingStorage::new(m.clone(), i, log.clone())) as DynStorage)
        .collect();
    let fs = Fs::mount(vec![rec[0].clone()], quiet_options()).expect("mount recorded");
    let want = snapshot_files(&fs);
    fs.device_add(vec![rec[1].clone()]).expect("add");
    write_file(&fs, "after", 200_000, 5);
    fs.sync().unwrap();
    let want_after = snapshot_files(&fs);
    fs.unmount().unwrap();
    let events = log.events();

    let mut seen = BTreeSet::new();
    replay(&bases, &events, 200, 0x5eed_00ad, |devs, upto, what| {
        let master =
            [newest_header(&devs[0]), newest_header(&devs[1])].into_iter().flatten().max_by_key(|h| h.tid).unwrap();
        let n = master.devices.len();
        seen.insert(n);
        let given = if n == 2 { devs.clone() } else { vec![devs[0].clone()] };
        let fs = Fs::mount(given, Options { read_only: true, ..quiet_options() })
            .unwrap_or_else(|e| panic!("{what}: crash at event {upto} ({n} devices) does not mount: {e}"));
        assert_eq!(fs.devices().len(), n, "{what}: the device is in or out");
        let got = snapshot_files(&fs);
        assert!(got == want || got == want_after, "{what}: crash at event {upto}: unexpected content");
        assert_consistent(&fs);
        assert_every_copy_verifies(&fs);
        fs.crash();
    });
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 2], "both sides of the add were seen");
}

/// Allocated units per device, from the free map (exact).
fn allocated(fs: &Fs) -> Vec<u64> {
    let mut per = vec![0u64; fs.devices().len()];
    hammer2::testing::for_each_unit(fs, &mut |d, _, a| per[usize::from(d)] += u64::from(a));
    per
}

/// `device rebalance` after an add: copies move onto the new device until it holds its
/// share of the allocated space, each block's copies still on distinct devices, the data
/// unchanged, the allocator equal to what the trees reach; a second run has nothing to do.
#[test]
fn a_rebalance_moves_copies_onto_an_added_device_until_it_holds_its_share() {
    let devs = mem_devices(2, 96 * MIB);
    format_raw(&devs, 2, FORMAT_VERSION_2);
    let fs = Fs::mount(devs.clone(), Options { resync_slice_bytes: 2 * MIB, ..quiet_options() }).expect("mount");
    populate(&fs, 3, 25);
    fs.sync().unwrap();
    let want = snapshot_files(&fs);
    let new = mem_devices(1, 96 * MIB);
    fs.device_add(new.clone()).expect("add");
    let before = allocated(&fs);
    assert!(before[2] * 20 < before[0], "the new device holds next to nothing: {before:?}");
    let mut reports = Vec::new();
    let r = fs.device_rebalance(2, &mut |moved, target| reports.push((moved, target))).expect("rebalance");
    assert!(r.commits >= 2 && r.moved_bytes > 0, "{r:?}");
    assert!(reports.windows(2).all(|w| w[0].0 <= w[1].0), "progress only grows");
    fs.sync().unwrap();
    let after = allocated(&fs);
    let share = after.iter().sum::<u64>() / 3;
    assert!(after[2] * 10 >= share * 8, "the new device holds about its share: {after:?} (share {share})");
    for (b, t) in all_blocks(&fs) {
        let d: Vec<u8> = b.ptr().unwrap().copies.iter().map(|l| l.device).collect();
        let distinct: BTreeSet<u8> = d.iter().copied().collect();
        assert_eq!(distinct.len(), d.len(), "a {} block of {t:?} has copies sharing a device: {d:?}", b.btype.name());
    }
    assert_eq!(snapshot_files(&fs), want);
    assert_consistent(&fs);
    assert_every_copy_verifies(&fs);
    let again = fs.device_rebalance(2, &mut |_, _| {}).expect("rebalance again");
    assert!(again.moved_bytes <= 2 * MIB, "little or nothing left to move: {again:?}");
    fs.unmount().unwrap();
    let all = vec![devs[0].clone(), devs[1].clone(), new[0].clone()];
    let fs = Fs::mount(all, quiet_options()).expect("mount the three");
    assert_eq!(snapshot_files(&fs), want);
    assert_every_copy_verifies(&fs);
    fs.unmount().unwrap();
}
