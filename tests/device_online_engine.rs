//! Devices back in service while mounted, through the engine API (`Fs::device_online`,
//! `Fs::device_offline`) and the reconnect watcher, on in-memory devices with a real
//! fault injector (`FaultyStorage`) standing for a device that vanishes and answers again.

use hammer2_test_support as common;

use common::engine::{assert_consistent, format_copies, mem_devices, populate, quiet_options, snapshot_files};
use hammer2::storage::DynStorage;
use hammer2::storage::faulty::FaultyStorage;
use hammer2::{DeviceError, Fs, MemberState, Options};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIZE: u64 = 256 << 20;

/// Options of a real mount (background commits, hence the reconnect watcher), with commits
/// only when a test asks or memory presses, so each step is deterministic enough to count.
fn live_options() -> Options {
    Options { sync_interval: Duration::from_secs(3600), ..Options::default() }
}

fn state(fs: &Fs, dev: u8) -> MemberState {
    fs.devices()[usize::from(dev)].state
}

/// Waits up to `limit` for `cond`; returns how long it took, or None.
fn wait_for(limit: Duration, cond: impl Fn() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// The files as device `dev` alone holds them (mounted degraded and read-only).
fn alone(dev: &DynStorage) -> std::collections::BTreeMap<String, Vec<u8>> {
    let fs = Fs::mount(vec![dev.clone()], Options { degraded: true, read_only: true, ..quiet_options() })
        .expect("mount one device alone");
    snapshot_files(&fs)
}

/// Blocks of file data `populate(seed, files)` writes (one copy's worth).
fn data_blocks_written(fs: &Fs, seed: u64) -> usize {
    let d = fs.lookup(fs.root(), format!("d{seed}").as_bytes()).expect("lookup").ino;
    let mut n = 0;
    let mut ents = Vec::new();
    fs.readdir(d, 2, |e| {
        ents.push(e.ino);
        false
    })
    .expect("readdir");
    for ino in ents {
        n += common::engine::data_blocks(fs, ino).len();
    }
    n
}

#[test]
fn a_device_that_vanishes_and_answers_again_comes_back_by_itself_and_resyncs_what_it_missed() {
    let base = mem_devices(2, SIZE);
    format_copies(&base, 2);
    let faulty = Arc::new(FaultyStorage::new(base[1].clone(), 7));
    let fs = Fs::mount(vec![base[0].clone(), faulty.clone() as DynStorage], live_options()).unwrap();
    populate(&fs, 1, 20);
    hammer2::testing::commit(&fs).unwrap();

    faulty.vanish();
    populate(&fs, 2, 25);
    hammer2::testing::commit(&fs).unwrap();
    assert_eq!(state(&fs, 1), MemberState::Failed, "a device that vanished is failed");
    assert!(
        wait_for(Duration::from_secs(5), || fs.devices()[1].reconnecting).is_some(),
        "the watcher tries to reopen it: {:?}",
        fs.devices()[1]
    );
    // Its first retries meet a device that still does not answer.
    std::thread::sleep(Duration::from_millis(1500));
    let d = &fs.devices()[1];
    assert_eq!(d.state, MemberState::Failed, "{d:?}");
    assert!(d.last_error.is_some(), "the reason is kept: {d:?}");
    populate(&fs, 3, 5);
    hammer2::testing::commit(&fs).unwrap();

    faulty.reappear();
    let back = wait_for(Duration::from_secs(90), || state(&fs, 1) == MemberState::Online)
        .unwrap_or_else(|| panic!("the device did not come back by itself: {:?}", fs.devices()[1]));
    // Its report is kept once its last commit (the one persisting the states) is done.
    wait_for(Duration::from_secs(30), || fs.last_autoresync().is_some());
    let rep = fs.last_autoresync().expect("an automatic resync ran");
    let away = data_blocks_written(&fs, 2) + data_blocks_written(&fs, 3);
    eprintln!(
        "device answering again -> online in {:.2} s (watcher backoff 1 s doubling to 60 s); automatic resync copied {} \
         blocks ({} bytes, {} visited, {} commits) for {} data blocks written while it was away",
        back.as_secs_f64(),
        rep.counts.copied_blocks,
        rep.counts.copied_bytes,
        rep.counts.visited,
        rep.commits,
        away
    );
    assert_eq!(fs.devices()[1].reconnects, 1, "{:?}", fs.devices()[1]);
    assert!(rep.counts.copied_blocks as usize >= away, "every data block written while away is copied: {rep:?}");
    assert!(
        (rep.counts.copied_blocks as usize) < away + 200,
        "what it already held is not copied again (only the metadata above): {rep:?}"
    );
    let all = snapshot_files(&fs);
    assert_consistent(&fs);
    fs.unmount().unwrap();
    assert_eq!(alone(&base[1]), all, "the device that came back holds exactly the data alone");
}

#[test]
fn offline_and_online_by_hand_and_every_refusal() {
    let base = mem_devices(2, SIZE);
    format_copies(&base, 2);
    let fs = Fs::mount(base.clone(), quiet_options()).unwrap();
    populate(&fs, 1, 10);
    hammer2::testing::commit(&fs).unwrap();

    // Already online.
    let e = fs.device_online(base[1].clone()).unwrap_err();
    assert!(matches!(e, DeviceError::AlreadyOnline { index: 1, .. }), "{e}");
    // Not a hammer2 device, and a device of another filesystem.
    let blank = mem_devices(1, SIZE).remove(0);
    assert!(matches!(fs.device_online(blank).unwrap_err(), DeviceError::NotHammer2(_)));
    let other = mem_devices(1, SIZE);
    format_copies(&other, 1);
    let e = fs.device_online(other[0].clone()).unwrap_err();
    assert!(matches!(e, DeviceError::OtherFilesystem(_)), "{e}");

    fs.device_offline(1).expect("one of two online devices goes offline");
    assert_eq!(state(&fs, 1), MemberState::Failed);
    assert!(!fs.devices()[1].present, "its storage is let go of");
    let e = fs.device_offline(0).unwrap_err();
    assert!(matches!(e, DeviceError::LastCopy { index: 0, .. }), "{e}");
    assert!(e.to_string().contains("last writable device"), "{e}");
    let e = fs.device_offline(1).unwrap_err();
    assert!(matches!(e, DeviceError::AlreadyOffline { index: 1, .. }), "{e}");
    assert!(matches!(fs.device_offline(9).unwrap_err(), DeviceError::NoSuchDevice(9)));

    populate(&fs, 2, 10);
    hammer2::testing::commit(&fs).unwrap();
    let r = fs.device_online(base[1].clone()).expect("it comes back");
    assert_eq!((r.index, state(&fs, 1)), (1, MemberState::Stale));
    // A stale device still lacks copies: the other one cannot go.
    let e = fs.device_offline(0).unwrap_err();
    assert!(e.to_string().contains("stale"), "{e}");
    let rep = hammer2::maintenance::resync(&fs, Default::default(), &mut |_| {}).unwrap();
    assert!(rep.counts.copied_blocks > 0, "{rep:?}");
    assert_eq!(state(&fs, 1), MemberState::Online);
    let all = snapshot_files(&fs);
    fs.unmount().unwrap();
    assert_eq!(alone(&base[1]), all);
}

#[test]
fn a_device_changed_apart_while_it_was_offline_is_refused() {
    let base = mem_devices(2, SIZE);
    format_copies(&base, 2);
    let fs = Fs::mount(base.clone(), quiet_options()).unwrap();
    populate(&fs, 1, 5);
    hammer2::testing::commit(&fs).unwrap();
    fs.device_offline(1).unwrap();
    // Meanwhile someone mounts it alone and writes to it (in-memory devices take no claim).
    let apart = Fs::mount(vec![base[1].clone()], Options { degraded: true, ..quiet_options() }).unwrap();
    populate(&apart, 9, 3);
    apart.unmount().unwrap();
    let e = fs.device_online(base[1].clone()).unwrap_err();
    assert!(matches!(e, DeviceError::NotWhatWeWrote { .. }), "{e}");
    assert!(e.to_string().contains("diverged"), "{e}");
    assert_eq!(state(&fs, 1), MemberState::Failed);
    fs.unmount().unwrap();
}

#[test]
fn a_device_of_this_filesystem_that_is_none_of_its_members_is_refused() {
    use hammer2_format::VolumeHeader;
    use hammer2_format::layout::{HEADER_SIZE, HEADER_SLOTS, header_offset};
    let base = mem_devices(2, SIZE);
    format_copies(&base, 2);
    // A copy of device 1 whose headers claim another device uuid: this filesystem's, but
    // no member's (what a device of an earlier generation of it would look like).
    let impostor = mem_devices(1, SIZE).remove(0);
    let mut changed = 0;
    for slot in (0..HEADER_SLOTS).filter(|&s| header_offset(s) + HEADER_SIZE as u64 <= SIZE) {
        let mut h = vec![0u8; HEADER_SIZE];
        base[1].read_at(&mut h, header_offset(slot)).unwrap();
        if let Ok(mut hdr) = VolumeHeader::decode(&h) {
            changed += 1;
            hdr.device_uuid = [0x5a; 16];
            let own = usize::from(hdr.device_index);
            hdr.devices[own].uuid = [0x5a; 16];
            impostor.write_at(&hdr.encode(), header_offset(slot)).unwrap();
        }
    }
    assert!(changed > 0);
    let fs = Fs::mount(vec![base[0].clone()], Options { degraded: true, ..quiet_options() }).unwrap();
    let e = fs.device_online(impostor).unwrap_err();
    assert!(matches!(e, DeviceError::NotAMember(_)), "{e}");
    assert_eq!(state(&fs, 1), MemberState::Absent);
    // The real one joins.
    fs.device_online(base[1].clone()).expect("device 1 joins");
    assert_eq!(state(&fs, 1), MemberState::Stale);
    fs.unmount().unwrap();
}
