//! What `hammer2 status` and `info` show of maintenance: the scrub, resync, device remove or
//! rebalance running now (bytes done of a known total, since when) and the result of the
//! last scrub of this mount. Each records here as it reports progress.
//! The state itself is declared in `fs/scans.rs`.

use crate::fs::FsInner;
pub use crate::fs::scans::{LastScrub, Running, ScanKind};
use std::time::SystemTime;

/// A scan of `kind` started: shown until its guard drops.
pub(crate) fn begin(fs: &FsInner, kind: ScanKind) -> Guard<'_> {
    *fs.scans.running.lock() = Some(Running { kind, started: SystemTime::now(), done: 0, total: 0 });
    Guard(fs)
}

/// Clears the running scan however it ends.
pub(crate) struct Guard<'a>(&'a FsInner);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        *self.0.scans.running.lock() = None;
    }
}

impl Guard<'_> {
    pub(crate) fn progress(&self, done: u64, total: u64) {
        if let Some(r) = self.0.scans.running.lock().as_mut() {
            r.done = done;
            r.total = total;
        }
    }
}

pub(crate) fn scrub_ended(fs: &FsInner, last: LastScrub) {
    *fs.scans.last_scrub.lock() = Some(last);
}

/// (the scan running now, the last scrub of this mount).
pub(crate) fn snapshot(fs: &FsInner) -> (Option<Running>, Option<LastScrub>) {
    (fs.scans.running.lock().clone(), fs.scans.last_scrub.lock().clone())
}
