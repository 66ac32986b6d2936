//! Walks of the committed trees on a mounted filesystem (`info`'s data usage, the room
//! check of a device remove) run beside commits that free blocks and reuse the space: the
//! walk reads only the trees it started from, so it never fails and never takes a block
//! written since for a bad copy of one of its own.

use hammer2_test_support as common;

use common::engine::{format_copies, mem_devices, quiet_options};
use common::rng::Rng;
use hammer2::{Creds, Fs, Options};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const C: Creds = Creds { uid: 0, gid: 0, umask: 0 };

#[test]
fn data_usage_beside_commits_that_reuse_freed_space_never_fails_nor_counts_a_check_error() {
    // Small devices and a block cache of a few nodes: the walk reads its nodes from the
    // devices, where the freed space is soon written again.
    let devs = mem_devices(2, 48 << 20);
    format_copies(&devs, 2);
    let fs = Fs::mount(devs.clone(), Options { cache_bytes: 256 << 10, ..quiet_options() }).unwrap();
    let d = fs.mkdir(fs.root(), b"churn", 0o755, C).unwrap();
    let stop = AtomicBool::new(false);
    let (walks, commits) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            // Files made, rewritten and deleted, one commit each round: every round frees
            // the nodes of the trees before it, and the next one allocates from that space.
            let mut commits = 0u64;
            let mut rng = Rng::new(7);
            while !stop.load(Ordering::SeqCst) {
                for i in 0..40u64 {
                    let name = format!("f{}", (commits * 40 + i) % 120);
                    let _ = fs.unlink(d.ino, name.as_bytes());
                    let f = fs.create(d.ino, name.as_bytes(), 0o644, C).unwrap();
                    fs.write(f.ino, 0, &rng.bytes(1 + (i as usize * 977) % 40_000)).unwrap();
                }
                fs.sync().unwrap();
                commits += 1;
            }
            commits
        });
        // The writer stops however this thread ends (a failed walk must not leave it
        // running, and the test waiting for it).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let stopping = Stop(&stop);
        let mut walks = 0u64;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            fs.data_usage().unwrap_or_else(|e| panic!("walk {walks} beside commits: {e}"));
            walks += 1;
        }
        drop(stopping);
        (walks, writer.join().unwrap())
    });
    eprintln!("{walks} walks beside {commits} commits");
    assert!(walks > 10 && commits > 10, "{walks} walks beside {commits} commits");
    for dev in fs.devices() {
        assert_eq!(
            (dev.read_errors, dev.check_errors, dev.repaired),
            (0, 0, 0),
            "device {} after {walks} walks beside {commits} commits",
            dev.index
        );
    }
}
