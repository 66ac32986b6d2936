//! FUSE over io_uring for the tests: the kernel serves a mount through the ring only while
//! fuse's `enable_uring` parameter is on (off by default), so the tests that exercise the
//! ring switch it on for as long as any of them runs, and back to what it was after.
//!
//! `cargo test` runs one test binary at a time, so only the ring tests' own mounts see the
//! switch on. Within their binary the tests run in parallel: the last one to finish turns
//! it back.

use parking_lot::Mutex;
use std::path::Path;

const PARAMETER: &str = "/sys/module/fuse/parameters/enable_uring";

/// (tests holding the switch on, what it read before the first of them)
static HOLDERS: Mutex<(usize, Option<String>)> = Mutex::new((0, None));

/// Keeps fuse's `enable_uring` on while it lives. Panics (the test fails) with the reason
/// when this kernel cannot serve FUSE over io_uring or the parameter cannot be written.
pub struct RingSwitch(());

impl RingSwitch {
    pub fn on() -> RingSwitch {
        super::mount::require_fuse();
        let mut h = HOLDERS.lock();
        if h.0 == 0 {
            let before = std::fs::read_to_string(PARAMETER).unwrap_or_else(|e| {
                panic!(
                    "this kernel cannot serve FUSE over io_uring ({PARAMETER}: {e}): it needs Linux 6.14 or later \
                     built with CONFIG_FUSE_IO_URING"
                )
            });
            std::fs::write(PARAMETER, "Y")
                .unwrap_or_else(|e| panic!("cannot switch on {PARAMETER} (run as root): {e}"));
            h.1 = Some(before.trim().to_string());
        }
        h.0 += 1;
        RingSwitch(())
    }
}

impl Drop for RingSwitch {
    fn drop(&mut self) {
        let mut h = HOLDERS.lock();
        h.0 -= 1;
        if h.0 == 0
            && let Some(before) = h.1.take()
        {
            let _ = std::fs::write(PARAMETER, before);
        }
    }
}

/// Whether this run is the FUSE tests' pass through the ring (`HAMMER2_TEST_TRANSPORT=ring`,
/// set by `scripts/test.sh` with fuse's `enable_uring` on for the whole pass); without it
/// the tests run through /dev/fuse (the kernel's default). Any other value is a mistake.
pub fn ring_under_test() -> bool {
    match std::env::var("HAMMER2_TEST_TRANSPORT").as_deref() {
        Err(_) | Ok("" | "devfuse") => false,
        Ok("ring") => true,
        Ok(other) => panic!("HAMMER2_TEST_TRANSPORT={other}: give ring or devfuse"),
    }
}

/// How many of the daemon's threads serve a ring queue (one per possible CPU when the ring
/// is up, none when everything goes through /dev/fuse).
pub fn ring_threads(pid: i32) -> usize {
    let tasks = Path::new("/proc").join(pid.to_string()).join("task");
    std::fs::read_dir(&tasks)
        .unwrap_or_else(|e| panic!("{}: {e}", tasks.display()))
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("hammer2-ring"))
        .count()
}

/// The kernel's queue count: one per possible CPU.
pub fn possible_cpus() -> usize {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible").expect("possible CPUs");
    let last = s.trim().rsplit([',', '-']).next().expect("a CPU number");
    last.parse::<usize>().expect("a CPU number") + 1
}
