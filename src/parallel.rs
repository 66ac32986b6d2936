//! How many threads CPU-bound work of one commit (check values, compression) is spread
//! over: the CPUs this process may use, at most 8.
//!
//! Asked once: `available_parallelism` reads the cgroup's CPU quota from /proc and /sys on
//! every call, which commits that compress inode by inode called thousands of times a
//! second (4% of the daemon's time during an untar).

use std::sync::OnceLock;

const MAX_THREADS: usize = 8;

pub(crate) fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()).min(MAX_THREADS))
}
