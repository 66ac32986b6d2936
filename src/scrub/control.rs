//! Pausing, resuming and cancelling a running scrub (`hammer2 scrub --pause|--resume|
//! --cancel MOUNTPOINT`): the command sets the state, the scrub reads it between batches
//! (so a pause or a cancel takes effect within one batch).

use crate::fs::FsInner;
use std::sync::atomic::Ordering;

/// What an operator asks of a running scrub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrubCommand {
    Pause,
    Resume,
    Cancel,
}

const RUN: u8 = 0;
const PAUSED: u8 = 1;
const CANCELLED: u8 = 2;

/// Where the scrub should be now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrubState {
    Run,
    Paused,
    Cancelled,
}

/// A new scrub starts running (whatever the last one was told).
pub(crate) fn reset(fs: &FsInner) {
    fs.scrub_control.store(RUN, Ordering::SeqCst);
}

/// Applies `cmd` to the running scrub; a cancel stays a cancel (a resume does not undo it).
pub(crate) fn apply(fs: &FsInner, cmd: ScrubCommand) {
    let new = match cmd {
        ScrubCommand::Pause => PAUSED,
        ScrubCommand::Resume => RUN,
        ScrubCommand::Cancel => CANCELLED,
    };
    let _ = fs.scrub_control.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| (s != CANCELLED).then_some(new));
}

pub(crate) fn state(fs: &FsInner) -> ScrubState {
    match fs.scrub_control.load(Ordering::SeqCst) {
        PAUSED => ScrubState::Paused,
        CANCELLED => ScrubState::Cancelled,
        _ => ScrubState::Run,
    }
}
