//! A second scrub of the same filesystem is refused while one runs (M1, DESIGN §9), in the
//! engine that `hammer2 scrub` calls offline and through a mount's daemon: a second offline
//! command cannot even claim the devices, and on a mount point the daemon answers the refusal
//! and the command exits 8 (as for every operational error: tests/cli_offline.rs). Driven
//! here in-process, where the first scrub can be held at a known point.

use hammer2_test_support as common;

use std::sync::mpsc;

const MIB: u64 = 1 << 20;

/// M1 (DESIGN §9): while one scrub runs, a second of the same filesystem is refused with
/// Busy (EBUSY; a command on the mount point prints it and exits 8), and once the first is
/// done a scrub runs again.
#[test]
fn a_second_scrub_of_the_same_filesystem_is_refused_while_one_runs() {
    let devs = common::engine::mem_devices(2, 64 * MIB);
    common::engine::format_copies(&devs, 2);
    let fs = common::engine::mount(&devs);
    common::engine::populate(&fs, 1, 10);
    fs.sync().unwrap();
    let (started, wait_started) = mpsc::channel();
    let (release, wait_release) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let fs = &fs;
        let first = s.spawn(move || {
            let mut told = false;
            hammer2::maintenance::scrub(fs, Default::default(), &mut |_| {
                if !told {
                    told = true;
                    started.send(()).unwrap();
                    wait_release.recv().unwrap();
                }
            })
        });
        wait_started.recv().unwrap();
        let second = hammer2::maintenance::scrub(fs, Default::default(), &mut |_| {});
        match second {
            Err(hammer2::Error::Busy(m)) => assert!(m.contains("already running"), "{m}"),
            other => panic!("a second scrub was not refused: {other:?}"),
        }
        release.send(()).unwrap();
        let rep = first.join().unwrap().expect("the first scrub");
        assert_eq!(rep.exit_code(), 0);
    });
    let again =
        hammer2::maintenance::scrub(&fs, Default::default(), &mut |_| {}).expect("a scrub after the first one ended");
    assert_eq!(again.exit_code(), 0);
    fs.unmount().unwrap();
}
