//! Per-opcode request counters of the daemon: how many requests of each kind the kernel
//! sent, and how long the engine spent on them. `hammer2 info --json MOUNTPOINT` shows them
//! (`requests`), so a workload's requests per operation and work per request can be read
//! off a running mount without tracing the kernel (see README, "Benchmarks").
//!
//! Process-wide rather than per session: the /dev/fuse session and the ring's sessions serve
//! one mount, and a daemon serves one mount. A BATCH_FORGET counts as its forgets. Three
//! relaxed atomic operations and a clock read per request: nothing next to the request's
//! round trip through the kernel.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Every opcode the adapter answers, in the names `Hammer2Fuse::run` is given.
const OPS: [&str; 35] = [
    "lookup",
    "forget",
    "getattr",
    "setattr",
    "readlink",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "symlink",
    "rename",
    "link",
    "open",
    "read",
    "write",
    "flush",
    "release",
    "fsync",
    "opendir",
    "readdir",
    "readdirplus",
    "releasedir",
    "fsyncdir",
    "statfs",
    "setxattr",
    "getxattr",
    "listxattr",
    "removexattr",
    "access",
    "create",
    "fallocate",
    "lseek",
    "ioctl",
    "init",
    "other",
];

struct Counter {
    count: AtomicU64,
    busy_ns: AtomicU64,
    max_ns: AtomicU64,
}

static COUNTERS: [Counter; OPS.len()] =
    [const { Counter { count: AtomicU64::new(0), busy_ns: AtomicU64::new(0), max_ns: AtomicU64::new(0) } }; OPS.len()];

fn slot(op: &str) -> usize {
    OPS.iter().position(|o| *o == op).unwrap_or(OPS.len() - 1)
}

/// Counts one request of `op` that took no engine work worth timing.
pub fn count(op: &'static str) {
    COUNTERS[slot(op)].count.fetch_add(1, Relaxed);
}

/// Counts one request of `op` whose engine work started at `started`.
pub fn served(op: &'static str, started: Instant) {
    let c = &COUNTERS[slot(op)];
    c.count.fetch_add(1, Relaxed);
    let ns = started.elapsed().as_nanos() as u64;
    c.busy_ns.fetch_add(ns, Relaxed);
    c.max_ns.fetch_max(ns, Relaxed);
}

/// One opcode's figures since the daemon started.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestCount {
    pub count: u64,
    /// Nanoseconds the engine spent on these requests (summed over workers, so it can
    /// exceed the wall-clock time): the daemon's own work, without the kernel's transport.
    pub busy_ns: u64,
    /// The longest of them: a request that waited on a lock (a commit, a throttle) shows
    /// here, where the sum would hide it.
    pub max_ns: u64,
}

/// The opcodes served at least once, by name.
pub fn snapshot() -> BTreeMap<&'static str, RequestCount> {
    OPS.iter()
        .zip(&COUNTERS)
        .map(|(op, c)| {
            let count = c.count.load(Relaxed);
            (*op, RequestCount { count, busy_ns: c.busy_ns.load(Relaxed), max_ns: c.max_ns.load(Relaxed) })
        })
        .filter(|(_, c)| c.count > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_has_its_own_slot_and_unknown_names_count_as_other() {
        for (i, op) in OPS.iter().enumerate() {
            assert_eq!(slot(op), i, "{op}");
        }
        assert_eq!(OPS[slot("no such opcode")], "other");
    }
}
