//! The state of a mount's long maintenance operations, for `hammer2 status` and `info`: the
//! scan running now, the last scrub's result, how the last other operation ended, and what
//! a resync reports. Declared here, below the scrub and the resync that fill it in
//! (`scan.rs`, `resync/`).
//!
//! All of it lives in memory: nothing is written to the devices for it. The front end keeps
//! the last scrub on the machine (`bin/hammer2/scrub_record.rs`) so it outlives the mount.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::SystemTime;

/// Which long operation a scan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanKind {
    Scrub,
    Resync,
    /// `device remove` (and the remove half of a replace): bytes of copies moved off.
    Remove,
    /// `device rebalance`: bytes of copies moved onto the device.
    Rebalance,
}

impl ScanKind {
    /// What `status` and `info` call it.
    pub fn name(self) -> &'static str {
        match self {
            ScanKind::Scrub => "scrub",
            ScanKind::Resync => "resync",
            ScanKind::Remove => "device remove",
            ScanKind::Rebalance => "device rebalance",
        }
    }
}

/// A scan running now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Running {
    pub kind: ScanKind,
    /// When it started (wall clock, for the rate and the ETA).
    #[serde(skip)]
    pub started: SystemTime,
    /// Bytes done (copies read by a scrub, copies written by a resync, copies moved by a
    /// remove or rebalance) of `total`.
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
    #[serde(rename = "bytes_read")]
    pub bytes: u64,
    pub errors: u64,
    pub repaired: u64,
    /// Blocks left without a good copy.
    pub unrepairable: u64,
    pub cancelled: bool,
}

/// How a resync, device remove or rebalance of this mount ended (a scrub's end is the richer
/// `LastScrub`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finished {
    pub kind: ScanKind,
    #[serde(skip)]
    pub ended: SystemTime,
    pub seconds: f64,
    /// Bytes done, as `Running::done` counts them.
    pub bytes: u64,
    pub outcome: Outcome,
}

/// Whether a scan ran to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Completed,
    /// Stopped by the operator (`--cancel`); what it committed stays.
    Cancelled,
    /// Ended by an error or an unmount; what it committed stays, and running it again goes on.
    Stopped,
}

#[derive(Debug, Default)]
pub struct Scans {
    pub(crate) running: parking_lot::Mutex<Option<Running>>,
    pub(crate) last_scrub: parking_lot::Mutex<Option<LastScrub>>,
    pub(crate) last_other: parking_lot::Mutex<Option<Finished>>,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ResyncCounts {
    /// Out-of-sync references examined (each one read and descended into, or filled).
    pub visited: u64,
    /// Copies written.
    pub copied_blocks: u64,
    pub copied_bytes: u64,
}

/// A resync's result.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ResyncReport {
    pub counts: ResyncCounts,
    pub commits: u64,
    pub seconds: f64,
    /// Devices brought back to online.
    pub synced: Vec<String>,
    /// Devices still missing copies (absent or failed).
    pub still_missing: Vec<String>,
    /// Failed devices that answer again but were not taken back, each with the reason
    /// (`DEVICE: why`): their header slots are not what this mount last wrote (R1).
    pub refused: Vec<String>,
    pub verified_blocks: u64,
    pub verify_repaired: u64,
    /// Stopped by `hammer2 resync --cancel` (or an unmount while paused): the copies made
    /// are committed, the rest is left to the next resync.
    pub cancelled: bool,
}

/// What an operator asks of a running scrub or resync (`hammer2 scrub|resync --pause|--resume|
/// --cancel MOUNTPOINT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanCommand {
    Pause,
    Resume,
    Cancel,
}

/// Where a scan should be now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanState {
    Run,
    Paused,
    Cancelled,
}

/// The operator's word to one kind of scan: a command sets it, the scan reads it between
/// batches (a scrub) or commits (a resync), so a pause or a cancel takes effect within one.
#[derive(Debug, Default)]
pub struct ScanControl(AtomicU8);

const RUN: u8 = 0;
const PAUSED: u8 = 1;
const CANCELLED: u8 = 2;

impl ScanControl {
    /// A new scan starts running, whatever the last one was told.
    pub(crate) fn reset(&self) {
        self.0.store(RUN, Ordering::SeqCst);
    }

    /// Applies `cmd`; a cancel stays a cancel (a resume does not undo it).
    pub(crate) fn apply(&self, cmd: ScanCommand) {
        let new = match cmd {
            ScanCommand::Pause => PAUSED,
            ScanCommand::Resume => RUN,
            ScanCommand::Cancel => CANCELLED,
        };
        let _ = self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| (s != CANCELLED).then_some(new));
    }

    pub(crate) fn state(&self) -> ScanState {
        match self.0.load(Ordering::SeqCst) {
            PAUSED => ScanState::Paused,
            CANCELLED => ScanState::Cancelled,
            _ => ScanState::Run,
        }
    }
}
