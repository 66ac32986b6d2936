//! The policy of maintenance, the same on a mounted filesystem (through its daemon's control
//! socket) and on one opened only for it (the offline commands): the binaries parse, call
//! these and print. It sits above both scrub and resync because a scrub ends by handing
//! diverged devices to a resync, while a resync checks a diverged device with scrub's walk
//! before it catches it up: the mechanisms stay in `scrub/` and `resync/`, the order in
//! which they run is here.

use crate::Mounted;
use crate::devices::MemberState;
use crate::error::{Error, Result};
use crate::scrub::{ScrubProgress, ScrubReport};
use std::sync::atomic::{AtomicBool, Ordering};

pub use crate::resync::run as resync;

/// Scrub as `hammer2 scrub` runs it, the same on a mounted filesystem (through its
/// daemon) and on one opened only for it: commit what was written before (sync(1) does not
/// reach FUSE daemons, and the scrub covers the committed tree), scrub, then, when no block
/// was left without a good copy, take the diverged devices back. A diverged device (a
/// replacement, or one written apart: DESIGN §8) whose every copy was just verified and
/// rewritten is whole again up to the copies recorded MISSING, so it turns stale and a
/// resync fills those; a resync already running fills them instead. The error and repair
/// counters are committed to the headers (by the resync's commits when it runs).
pub fn scrub(fs: &impl Mounted, progress: &mut dyn FnMut(ScrubProgress)) -> Result<ScrubReport> {
    let fs = fs.engine().0;
    // M1: one scrub at a time; the flag is cleared however this one ends.
    if fs.scrubbing.swap(true, Ordering::SeqCst) {
        return Err(Error::Busy("a scrub is already running on this filesystem".into()));
    }
    struct Running<'a>(&'a AtomicBool);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }
    let _running = Running(&fs.scrubbing);
    crate::commit::commit(fs, false, false)?;
    let rep = crate::scrub::scrub(fs, progress)?;
    let writable = !fs.vol.read_only && !fs.remounted_ro.load(Ordering::SeqCst);
    if rep.unrepairable.is_empty() && writable && !crate::resync::running(fs) {
        for m in &fs.vol.devices.members {
            if m.state() == MemberState::Diverged {
                m.set_state(MemberState::Stale);
            }
        }
        crate::resync::run(fs, &mut |_, _| {})?;
    } else {
        crate::commit::commit(fs, true, false)?;
    }
    Ok(rep)
}
