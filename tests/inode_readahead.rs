//! Inode read-ahead (DESIGN §12, `fs/inode_readahead.rs`): a walk in inode order after a
//! cold mount finds its inodes read ahead by the read-ahead thread, reads each inode block
//! once, and a window gone stale under commits that reuse its space is never taken for a
//! bad copy.

use hammer2_test_support as common;

use common::engine::{CountingStorage, format_copies, mem_devices};
use hammer2::storage::DynStorage;
use hammer2::{Creds, Fs, Options};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const C: Creds = Creds { uid: 0, gid: 0, umask: 0 };
const FILES: usize = 3000;
const DIRS: usize = 10;

/// Background commits on, as a mount runs (the read-ahead thread starts with them).
fn mounted(devs: &[DynStorage]) -> Fs {
    Fs::mount(devs.to_vec(), Options::default()).expect("mount")
}

fn name(i: usize) -> Vec<u8> {
    format!("f{i:05}").into_bytes()
}

/// FILES files of 100 bytes in DIRS directories, made round robin (inode order), committed
/// at once: (the directories' inode numbers, each file's inode number).
fn populate(fs: &Fs) -> (Vec<u64>, Vec<u64>) {
    let dirs: Vec<u64> =
        (0..DIRS).map(|d| fs.mkdir(fs.root(), format!("d{d}").as_bytes(), 0o755, C).unwrap().ino).collect();
    let files = (0..FILES)
        .map(|i| {
            let f = fs.create(dirs[i % DIRS], &name(i), 0o644, C).unwrap();
            fs.write(f.ino, 0, &[i as u8; 100]).unwrap();
            fs.release(f.ino).unwrap();
            f.ino
        })
        .collect();
    fs.sync().unwrap();
    (dirs, files)
}

#[test]
fn a_cold_walk_in_inode_order_finds_its_inodes_read_ahead_and_reads_each_once() {
    let devs = mem_devices(2, 256 << 20);
    format_copies(&devs, 2);
    let fs = mounted(&devs);
    let (dirs, inos) = populate(&fs);
    fs.unmount().unwrap();

    let counting: Vec<Arc<CountingStorage>> = devs.iter().map(|d| Arc::new(CountingStorage::new(d.clone()))).collect();
    let fs = mounted(&counting.iter().map(|c| c.clone() as DynStorage).collect::<Vec<_>>());
    let read_before: u64 = counting.iter().map(|c| c.read_bytes.load(Ordering::SeqCst)).sum();
    for (i, ino) in inos.iter().enumerate() {
        let a = fs.lookup(dirs[i % DIRS], &name(i)).unwrap();
        assert_eq!((a.ino, a.size), (*ino, 100), "file {i}");
        // A FUSE client's stat takes tens of microseconds between two lookups: the pace the
        // read-ahead thread has to keep.
        if i % 8 == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let read: u64 = counting.iter().map(|c| c.read_bytes.load(Ordering::SeqCst)).sum::<u64>() - read_before;
    // (info's live state walks every tree for the data usage: read after the bytes.)
    let counts = hammer2::info::live(&fs, String::new()).inode_readahead;
    let windows = FILES.div_ceil(64) as u64;
    // The first window of each index node is read on demand (a window never spans two
    // nodes; 3000 inodes fill a few nodes of 512), every other one ahead.
    assert!(counts.windows_on_demand <= windows / 4, "{counts:?}");
    assert!(counts.windows_ahead + counts.windows_on_demand >= windows - 2, "{counts:?}");
    // Each inode block read once: what the walk read is the inodes (4 KiB each) and the
    // directories' and index's nodes, not a window twice.
    let inodes = (FILES as u64) * 4096;
    assert!(read < inodes + inodes / 4, "read {read} bytes for {inodes} bytes of inodes: {counts:?}");
    fs.unmount().unwrap();
}

#[test]
fn windows_gone_stale_under_commits_that_reuse_their_space_are_never_taken_for_bad_copies() {
    // Small devices: the space the deleted inodes free is written again at once.
    let devs = mem_devices(2, 64 << 20);
    format_copies(&devs, 2);
    let fs = mounted(&devs);
    let (dirs, _) = populate(&fs);
    fs.unmount().unwrap();

    let fs = mounted(&devs);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // The writer replaces files from the end of the order backwards, committing each
        // round: the walk's read-ahead windows hold references those commits free.
        let writer = s.spawn(|| {
            let mut round = 0usize;
            while !stop.load(Ordering::SeqCst) {
                for k in 0..50 {
                    let i = FILES - 1 - (round * 50 + k) % FILES;
                    fs.unlink(dirs[i % DIRS], &name(i)).unwrap();
                    let f = fs.create(dirs[i % DIRS], &name(i), 0o644, C).unwrap();
                    fs.write(f.ino, 0, &[i as u8; 100]).unwrap();
                    fs.release(f.ino).unwrap();
                }
                fs.sync().unwrap();
                round += 1;
            }
        });
        for pass in 0..3 {
            for i in 0..FILES {
                let a = fs.lookup(dirs[i % DIRS], &name(i)).unwrap_or_else(|e| panic!("pass {pass}, file {i}: {e}"));
                assert_eq!(a.size, 100, "pass {pass}, file {i}");
            }
        }
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
    });
    // A stale window read ahead fails its check values quietly: nothing is counted against
    // a device, nothing is rewritten.
    for d in fs.devices() {
        assert_eq!((d.check_errors, d.read_errors, d.repaired), (0, 0, 0), "device {}", d.index);
    }
    fs.unmount().unwrap();
}
