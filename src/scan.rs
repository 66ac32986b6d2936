//! What `hammer2 status` shows of maintenance: the scrub or resync running now (bytes done
//! of a known total, since when) and the result of the last scrub of this mount. Scrub and
//! resync record here as they report progress; nothing reads it but `info::status`.
//!
//! The last scrub lives in memory only: the volume header has no reserved place for it, so
//! a new mount shows none until it scrubs.

use crate::fs::FsInner;
use std::time::SystemTime;

/// Which long operation a scan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanKind {
    Scrub,
    Resync,
}

/// A scan running now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Running {
    pub kind: ScanKind,
    /// When it started (wall clock, for the rate and the ETA).
    #[serde(skip)]
    pub started: SystemTime,
    /// Bytes done (copies read by a scrub, copies written by a resync) of `total`.
    pub done: u64,
    pub total: u64,
}

/// How the last scrub of this mount ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastScrub {
    #[serde(skip)]
    pub ended: SystemTime,
    pub seconds: f64,
    /// Bytes of copies read.
    pub bytes: u64,
    pub errors: u64,
    pub repaired: u64,
    /// Blocks left without a good copy.
    pub unrepairable: u64,
    pub cancelled: bool,
}

#[derive(Debug, Default)]
pub struct Scans {
    running: parking_lot::Mutex<Option<Running>>,
    last_scrub: parking_lot::Mutex<Option<LastScrub>>,
}

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
