//! What `hammer2 status` and `info` show of maintenance: the scrub, resync, device remove or
//! rebalance running now (bytes done of a known total, since when), the result of the last
//! scrub of this mount, and how its last resync, remove or rebalance ended. Each records
//! here as it reports progress. The state itself is declared in `fs/scans.rs`.

use crate::fs::FsInner;
pub use crate::fs::scans::{Finished, LastScrub, Outcome, Running, ScanKind};
use std::time::SystemTime;

/// A scan of `kind` started: shown until its guard drops.
pub(crate) fn begin(fs: &FsInner, kind: ScanKind) -> Guard<'_> {
    *fs.scans.running.lock() = Some(Running { kind, started: SystemTime::now(), done: 0, total: 0 });
    Guard { fs, outcome: Outcome::Stopped }
}

/// Clears the running scan however it ends, and records how a resync, remove or rebalance
/// ended: `Stopped` unless the scan said otherwise, so an error return or an unmount shows
/// as what it was.
pub(crate) struct Guard<'a> {
    fs: &'a FsInner,
    outcome: Outcome,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let Some(r) = self.fs.scans.running.lock().take() else { return };
        // A scan that found nothing to do (a resync with every device in sync, as the one a
        // scrub starts) is no operation to report.
        let nothing = r.done == 0 && r.total == 0;
        if r.kind != ScanKind::Scrub && !nothing {
            let ended = SystemTime::now();
            let seconds = ended.duration_since(r.started).unwrap_or_default().as_secs_f64();
            *self.fs.scans.last_other.lock() =
                Some(Finished { kind: r.kind, ended, seconds, bytes: r.done, outcome: self.outcome });
        }
    }
}

impl Guard<'_> {
    pub(crate) fn progress(&self, done: u64, total: u64) {
        if let Some(r) = self.fs.scans.running.lock().as_mut() {
            r.done = done;
            r.total = total;
        }
    }

    /// The scan ran to its end.
    pub(crate) fn completed(mut self) {
        self.outcome = Outcome::Completed;
    }

    /// The operator cancelled it.
    pub(crate) fn cancelled(mut self) {
        self.outcome = Outcome::Cancelled;
    }
}

pub(crate) fn scrub_ended(fs: &FsInner, last: LastScrub) {
    *fs.scans.last_scrub.lock() = Some(last);
}

/// What `info` and `status` show: the scan running now, the last scrub of this mount, and
/// how its last resync, remove or rebalance ended.
pub(crate) struct Snapshot {
    pub running: Option<Running>,
    pub last_scrub: Option<LastScrub>,
    pub last_other: Option<Finished>,
}

pub(crate) fn snapshot(fs: &FsInner) -> Snapshot {
    Snapshot {
        running: fs.scans.running.lock().clone(),
        last_scrub: fs.scans.last_scrub.lock().clone(),
        last_other: fs.scans.last_other.lock().clone(),
    }
}
