//! `device remove` in the engine (DESIGN §7, DC2): every copy on the device moves to the
//! others, verified, while writes go on; afterwards no reference names it, every block has
//! its copies on distinct devices, the data is identical and the filesystem mounts without
//! the device. Refusals say the numbers; every crash state of a remove mounts with the
//! data, and running the remove again after the crash finishes it.

use hammer2_test_support as common;

use common::crash::{contents, images, replay};
use common::engine::{
    all_blocks, assert_consistent, assert_every_copy_verifies, format_raw, mem_devices, populate, quiet_options,
    snapshot_files,
};
use hammer2::devchange::DeviceChangeError;
use hammer2::storage::DynStorage;
use hammer2::storage::recording::{RecordLog, RecordingStorage};
use hammer2::{Creds, Fs, MemberState, Options};
use hammer2_format::layout::{FORMAT_VERSION, FORMAT_VERSION_2};
use hammer2_format::{DeviceState, VolumeHeader};
use std::collections::BTreeSet;
use std::sync::Arc;

const MIB: u64 = 1 << 20;

/// The newest valid header on `dev`, if it has one.
fn newest_header(dev: &DynStorage) -> Option<VolumeHeader> {
    common::raw_blocks::newest_if_any(dev).map(|(_, h)| h)
}

/// No committed reference names `device`, and every block's copies are on distinct devices.
fn assert_off_and_distinct(fs: &Fs, device: u8) {
    for (b, t) in all_blocks(fs) {
        let devs: Vec<u8> = b.ptr().unwrap().copies.iter().map(|l| l.device).collect();
        assert!(!devs.contains(&device), "a {} block of {t:?} still names device {device}: {devs:?}", b.btype.name());
        let distinct: BTreeSet<u8> = devs.iter().copied().collect();
        assert_eq!(distinct.len(), devs.len(), "a {} block has copies sharing a device: {devs:?}", b.btype.name());
    }
}

#[test]
fn a_removed_device_leaves_no_reference_while_writes_go_on() {
    let devs = mem_devices(3, 96 * MIB);
    format_raw(&devs, 2, FORMAT_VERSION_2);
    let fs = Fs::mount(devs.clone(), Options { resync_slice_bytes: 2 * MIB, ..quiet_options() }).expect("mount");
    populate(&fs, 1, 15);
    fs.sync().unwrap();
    let held_before: usize =
        all_blocks(&fs).iter().filter(|(b, _)| b.ptr().unwrap().copies.iter().any(|l| l.device == 1)).count();
    assert!(held_before > 50, "device 1 holds copies: {held_before}");
    let mut reports = Vec::new();
    let removed = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for i in 0..30 {
                let f = fs.create(fs.root(), format!("w{i}").as_bytes(), 0o644, Creds::default()).unwrap();
                fs.write(f.ino, 0, &vec![i as u8; 100_000 + i * 1000]).unwrap();
                if i % 5 == 0 {
                    fs.sync().unwrap();
                }
            }
        });
        let r = fs.device_remove(1, &mut |p| reports.push(*p)).expect("remove");
        writer.join().unwrap();
        r
    });
    assert!(removed.commits >= 2, "several slices: {removed:?}");
    assert!(removed.moved_bytes > 0 && reports.len() as u64 >= removed.commits - 1);
    assert!(reports.windows(2).all(|w| w[0].moved_bytes <= w[1].moved_bytes), "progress only grows");
    assert_eq!(removed.devices_left, 2);
    fs.sync().unwrap();
    assert_off_and_distinct(&fs, 1);
    assert_consistent(&fs);
    assert_every_copy_verifies(&fs);
    assert_eq!(fs.devices()[1].state, MemberState::Removed);
    let want = snapshot_files(&fs);
    // A second remove of the same device is refused.
    assert!(matches!(fs.device_remove(1, &mut |_| {}), Err(DeviceChangeError::AlreadyRemoved { index: 1 })));
    fs.unmount().unwrap();

    let h = newest_header(&devs[0]).unwrap();
    assert_eq!(h.devices[1].state, DeviceState::Removed);
    // Mounts without it (it is not needed), with the same data.
    let rest = vec![devs[0].clone(), devs[2].clone()];
    let fs = Fs::mount(rest, quiet_options()).expect("mount without the removed device");
    assert_eq!(snapshot_files(&fs), want);
    assert_off_and_distinct(&fs, 1);
    assert_consistent(&fs);
    assert_every_copy_verifies(&fs);
    fs.unmount().unwrap();
}

#[test]
fn add_two_then_remove_the_first_moves_everything_to_the_new_devices() {
    // One device with two copies in two regions; two new devices take its place.
    let first = mem_devices(1, 96 * MIB);
    format_raw(&first, 2, FORMAT_VERSION_2);
    let fs = Fs::mount(first.clone(), quiet_options()).expect("mount");
    populate(&fs, 2, 12);
    fs.sync().unwrap();
    let want = snapshot_files(&fs);
    let new = mem_devices(2, 96 * MIB);
    fs.device_add(new.clone()).expect("add");
    let r = fs.device_remove(0, &mut |_| {}).expect("remove the first device");
    let data: u64 = want.values().map(|v| v.len() as u64).sum();
    assert!(r.moved_bytes >= 2 * data, "both of its copies of everything moved: {r:?} for {data} bytes of data");
    fs.sync().unwrap();
    assert_off_and_distinct(&fs, 0);
    assert_eq!(snapshot_files(&fs), want);
    assert_consistent(&fs);
    assert_every_copy_verifies(&fs);
    fs.unmount().unwrap();
    // The two new devices alone are the filesystem now.
    let fs = Fs::mount(new.clone(), quiet_options()).expect("mount the new devices alone");
    assert_eq!(snapshot_files(&fs), want);
    assert_every_copy_verifies(&fs);
    fs.unmount().unwrap();
}

#[test]
fn removes_that_cannot_hold_the_copies_are_refused_with_the_numbers() {
    // Two devices, two copies: the other has one region for two copies.
    let devs = mem_devices(2, 64 * MIB);
    format_raw(&devs, 2, FORMAT_VERSION_2);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    let e = fs.device_remove(1, &mut |_| {}).expect_err("too few domains");
    assert_eq!(
        e.to_string(),
        "the other 1 device(s) have 1 region(s) in all, fewer than the 2 copies of each block: add a device first"
    );
    assert!(matches!(fs.device_remove(7, &mut |_| {}), Err(DeviceChangeError::NoSuchDevice(7))));
    fs.unmount().unwrap();

    // Three devices, two copies, 40 MiB of copies each: the others have less free.
    let devs = mem_devices(3, 64 * MIB);
    format_raw(&devs, 2, FORMAT_VERSION_2);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    let f = fs.create(fs.root(), b"big", 0o644, Creds::default()).unwrap();
    fs.write(f.ino, 0, &vec![5u8; 60 << 20]).unwrap();
    fs.sync().unwrap();
    let e = fs.device_remove(0, &mut |_| {}).expect_err("no room");
    assert!(e.to_string().starts_with("the device holds 4") && e.to_string().contains(" MiB free"), "{e}");
    assert_eq!(fs.devices().iter().filter(|d| d.state == MemberState::Online).count(), 3, "nothing changed");
    fs.unmount().unwrap();

    // Room in all but not where the copies may go: the block's other copy is on device 1
    // (one region), so only the small new device can take them. The walk runs out of room:
    // an error, nothing lost, the device stays.
    let devs = mem_devices(2, 64 * MIB);
    format_raw(&devs, 2, FORMAT_VERSION_2);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    let f = fs.create(fs.root(), b"big", 0o644, Creds::default()).unwrap();
    fs.write(f.ino, 0, &vec![6u8; 30 << 20]).unwrap();
    fs.sync().unwrap();
    let want = snapshot_files(&fs);
    fs.device_add(mem_devices(1, 24 * MIB)).expect("add");
    let e = fs.device_remove(0, &mut |_| {}).expect_err("runs out of room");
    assert!(e.to_string().contains("no room left"), "{e}");
    assert_eq!(fs.devices()[0].state, MemberState::Online);
    assert_eq!(snapshot_files(&fs), want);
    assert_consistent(&fs);
    assert_every_copy_verifies(&fs);
    fs.unmount().unwrap();

    // A file given 3 copies on 3 devices: without one, its blocks' copies could not lie on
    // distinct devices. Refused before anything moves, saying 3 (not the filesystem's 2).
    let devs = mem_devices(3, 64 * MIB);
    format_raw(&devs, 2, FORMAT_VERSION_2);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    let f = fs.create(fs.root(), b"three", 0o644, Creds::default()).unwrap();
    fs.set_setting(f.ino, hammer2::Setting::Copies, "3").unwrap();
    fs.write(f.ino, 0, &vec![7u8; 1 << 20]).unwrap();
    fs.sync().unwrap();
    let e = fs.device_remove(2, &mut |_| {}).expect_err("too few devices for 3 copies");
    assert!(matches!(e, DeviceChangeError::TooFewDomains { copies: 3, .. }), "{e}");
    assert!(e.to_string().contains("fewer than the 3 copies"), "{e}");
    assert_eq!(fs.devices()[2].state, MemberState::Online);
    assert_consistent(&fs);
    fs.unmount().unwrap();
    // Version 1.
    let v1 = mem_devices(3, 64 * MIB);
    format_raw(&v1, 2, FORMAT_VERSION);
    let fs = Fs::mount(v1.clone(), quiet_options()).expect("mount");
    let before = contents(&v1[1]);
    let e = fs.device_remove(1, &mut |_| {}).expect_err("version 1");
    assert_eq!(e.to_string(), "this filesystem is format version 1; 'hammer2 upgrade' converts it (see FORMAT-V2)");
    assert!(contents(&v1[1]) == before);
    fs.unmount().unwrap();
}

/// Every crash state of a remove mounts (all devices given; the removed one is ignored once
/// the master says so) with the data; a remove run again on a sample of them finishes.
#[test]
fn every_crash_state_of_a_remove_mounts_and_a_second_run_finishes_it() {
    let mem = mem_devices(3, 64 * MIB);
    format_raw(&mem, 2, FORMAT_VERSION_2);
    let fs = Fs::mount(mem.clone(), quiet_options()).expect("mount");
    populate(&fs, 4, 10);
    let want = snapshot_files(&fs);
    fs.unmount().unwrap();
    let bases = images(&mem);
    let log = RecordLog::new();
    let rec: Vec<DynStorage> = mem
        .iter()
        .enumerate()
        .map(|(i, m)| Arc::new(RecordingStorage::new(m.clone(), i, log.clone())) as DynStorage)
        .collect();
    let fs = Fs::mount(rec, Options { resync_slice_bytes: MIB, ..quiet_options() }).expect("mount recorded");
    let r = fs.device_remove(2, &mut |_| {}).expect("remove");
    assert!(r.commits >= 3, "several commits to cut between: {r:?}");
    fs.unmount().unwrap();
    let events = log.events();

    let mut states = BTreeSet::new();
    let mut n = 0;
    replay(&bases, &events, 150, 0x5eed_0de1, |devs, upto, what| {
        let fs = Fs::mount(devs.clone(), Options { read_only: true, ..quiet_options() })
            .unwrap_or_else(|e| panic!("{what}: crash at event {upto} does not mount: {e}"));
        assert_eq!(snapshot_files(&fs), want, "{what}: crash at event {upto}");
        assert_consistent(&fs);
        assert_every_copy_verifies(&fs);
        let removed = fs.devices()[2].state == MemberState::Removed;
        states.insert(removed);
        fs.crash();
        n += 1;
        if removed || n % 7 != 0 {
            return;
        }
        // Run again: it finishes, with nothing lost.
        let fs = Fs::mount(devs, quiet_options()).unwrap_or_else(|e| panic!("{what}: rw mount: {e}"));
        fs.device_remove(2, &mut |_| {}).unwrap_or_else(|e| panic!("{what}: remove again: {e}"));
        assert_off_and_distinct(&fs, 2);
        assert_eq!(snapshot_files(&fs), want, "{what}: after the second remove");
        assert_consistent(&fs);
        fs.crash();
    });
    assert_eq!(states.into_iter().collect::<Vec<_>>(), vec![false, true], "both sides of the remove were seen");
}

/// `device replace` with the old device dead (missing at mount, written degraded): the new
/// device is added, every copy the old one held (or missed) is rebuilt on it from the good
/// copies, and the filesystem then mounts from the survivor and the new device, whole.
#[test]
fn replacing_a_dead_device_rebuilds_its_copies_on_the_new_one() {
    let devs = mem_devices(2, 64 * MIB);
    format_raw(&devs, 2, FORMAT_VERSION_2);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    populate(&fs, 5, 10);
    fs.unmount().unwrap();
    // Device 1 is gone: degraded mount, more writes (their copies for it are MISSING).
    let fs = Fs::mount(vec![devs[0].clone()], Options { degraded: true, ..quiet_options() }).expect("degraded");
    populate(&fs, 6, 5);
    fs.sync().unwrap();
    let want = snapshot_files(&fs);
    let new = mem_devices(1, 64 * MIB).pop().unwrap();
    let r = fs.device_replace(1, new.clone(), &mut |_| {}).expect("replace the dead device");
    assert_eq!((r.added.devices[0].index, r.removed.index), (2, 1));
    fs.sync().unwrap();
    assert_off_and_distinct(&fs, 1);
    for (b, _) in all_blocks(&fs) {
        let p = b.ptr().unwrap();
        assert!(p.copies.iter().all(|l| l.is_valid()), "no MISSING copy is left: {:?}", p.copies);
        assert!(!b.is_degraded());
    }
    assert_eq!(snapshot_files(&fs), want);
    assert_consistent(&fs);
    assert_every_copy_verifies(&fs);
    fs.unmount().unwrap();
    // Not degraded any more: the survivor and the new device are the filesystem.
    let fs = Fs::mount(vec![devs[0].clone(), new], quiet_options()).expect("mount without -o degraded");
    assert_eq!(snapshot_files(&fs), want);
    assert_every_copy_verifies(&fs);
    fs.unmount().unwrap();
}

/// A replace the remove would refuse (the new device too small to take the old one's
/// copies) is refused before the new device joins: the device set stays as it was.
#[test]
fn a_replace_refused_for_room_leaves_the_device_set_as_it_was() {
    let devs = mem_devices(2, 64 * MIB);
    format_raw(&devs, 2, FORMAT_VERSION_2);
    let fs = Fs::mount(devs.clone(), quiet_options()).expect("mount");
    populate(&fs, 7, 60); // about 35 MB on each device
    fs.sync().unwrap();
    let before = fs.devices().len();
    let small = mem_devices(1, 12 * MIB).pop().unwrap();
    let r = fs.device_replace(1, small, &mut |_| {});
    assert!(matches!(r, Err(DeviceChangeError::NoRoom { .. })), "refused for room: {r:?}");
    assert_eq!(fs.devices().len(), before, "the new device did not join");
    assert!(fs.devices().iter().all(|d| d.state == MemberState::Online));
    assert_consistent(&fs);
    fs.unmount().unwrap();
}

/// A remove is watched as the running operation (`hammer2 status` and `info` show it):
/// after every commit the mount reports a device remove with the bytes moved so far of the
/// total, and nothing once it is done.
#[test]
fn a_running_remove_is_reported_as_the_mount_s_running_operation() {
    let devs = mem_devices(3, 64 * MIB);
    format_raw(&devs, 2, FORMAT_VERSION_2);
    let fs = Fs::mount(devs.clone(), Options { resync_slice_bytes: MIB, ..quiet_options() }).expect("mount");
    populate(&fs, 9, 12);
    fs.sync().unwrap();
    let mut seen = Vec::new();
    fs.device_remove(2, &mut |p| {
        let run = hammer2::info::live(&fs, String::new()).scan.expect("a running operation while the remove runs");
        assert_eq!(run.kind, hammer2::scan::ScanKind::Remove);
        seen.push((run.done, run.total, p.moved_bytes));
    })
    .expect("remove");
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.iter().all(|(done, total, moved)| done == moved && done <= total), "{seen:?}");
    assert!(hammer2::info::live(&fs, String::new()).scan.is_none(), "nothing runs after it");
    fs.unmount().unwrap();
}
