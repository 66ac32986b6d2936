//! The policy of maintenance, the same on a mounted filesystem (through its daemon's control
//! socket) and on one opened only for it (the offline commands): the binaries parse, call
//! these and print. It sits above both scrub and resync because a scrub ends by handing
//! diverged devices to a resync, while a resync checks a diverged device with scrub's walk
//! before it catches it up: the mechanisms stay in `scrub/` and `resync/`, the order in
//! which they run is here.

use crate::Mounted;
use crate::devices::MemberState;
use crate::error::{Error, Result};
use crate::scan::{LastScrub, ScanKind};
use crate::scrub::{ScrubProgress, ScrubReport, ScrubRun};
use std::sync::atomic::{AtomicBool, Ordering};

pub use crate::fs::scans::ScanCommand;
pub use crate::throttle::RunOptions;

/// Resync as `hammer2 resync` and an automatic resync run it: every stale, diverged or
/// returning device brought up to date (`resync::run`).
pub fn resync(
    fs: &impl crate::Mounted,
    opts: RunOptions,
    progress: &mut dyn FnMut(&crate::resync::ResyncProgress),
) -> Result<crate::resync::ResyncReport> {
    crate::resync::run(fs, opts, progress)
}

/// Scrub as `hammer2 scrub` runs it, the same on a mounted filesystem (through its
/// daemon) and on one opened only for it: commit what was written before (sync(1) does not
/// reach FUSE daemons, and the scrub covers the committed tree), scrub, then, when no block
/// was left without a good copy, take the diverged devices back. A diverged device (a
/// replacement, or one written apart: DESIGN §8) whose every copy was just verified and
/// rewritten is whole again up to the copies recorded MISSING, so it turns stale and a
/// resync fills those; a resync already running fills them instead. The error and repair
/// counters are committed to the headers (by the resync's commits when it runs). A
/// cancelled scrub (`scrub_command`) reports what it did and takes no device back.
pub fn scrub(fs: &impl Mounted, opts: RunOptions, progress: &mut dyn FnMut(ScrubProgress)) -> Result<ScrubReport> {
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
    fs.scrub_control.reset();
    let scan = crate::scan::begin(fs, ScanKind::Scrub);
    crate::commit::commit(fs, false, false)?;
    let rep = crate::scrub::scrub(fs, ScrubRun { rate: opts.rate, controlled: true }, &mut |p| {
        scan.progress(p.read, p.total);
        progress(p);
    })?;
    crate::scan::scrub_ended(
        fs,
        LastScrub {
            ended: std::time::SystemTime::now(),
            seconds: rep.seconds,
            bytes: rep.devices.iter().map(|d| d.bytes).sum(),
            errors: rep.errors(),
            repaired: rep.repaired(),
            unrepairable: rep.unrepairable.len() as u64,
            cancelled: rep.cancelled,
        },
    );
    let writable = !fs.vol.read_only && !fs.remounted_ro.load(Ordering::SeqCst);
    if rep.unrepairable.is_empty() && !rep.cancelled && writable && !crate::resync::running(fs) {
        for m in fs.vol.devices.iter() {
            if m.state() == MemberState::Diverged {
                m.set_state(MemberState::Stale);
            }
        }
        crate::resync::run(fs, opts, &mut |_| {})?;
    } else {
        crate::commit::commit(fs, true, false)?;
    }
    Ok(rep)
}

/// Pauses, resumes or cancels the scrub running on `fs` (from another thread: the daemon's
/// control socket). Refused when no scrub runs.
pub fn scrub_command(fs: &impl Mounted, cmd: ScanCommand) -> Result<()> {
    let fs = fs.engine().0;
    if !fs.scrubbing.load(Ordering::SeqCst) {
        return Err(Error::Invalid("no scrub is running on this filesystem".into()));
    }
    fs.scrub_control.apply(cmd);
    Ok(())
}

/// Pauses, resumes or cancels the resync running on `fs`, started by `hammer2 resync` or
/// automatically when a device came back. Refused when no resync runs. A cancelled resync
/// loses nothing: its progress is in the committed tree (DESIGN §8), and the next resync
/// goes on from there.
pub fn resync_command(fs: &impl Mounted, cmd: ScanCommand) -> Result<()> {
    let fs = fs.engine().0;
    if !crate::resync::claimed(fs) {
        return Err(Error::Invalid("no resync is running on this filesystem".into()));
    }
    fs.resync_control.apply(cmd);
    Ok(())
}

/// `hammer2 clear`: resets the error counters of `device` (a member's name, its canonical
/// path, or its index), or of every member, and commits so the headers say so too (on a
/// read-only mount they are reset in memory only, until a commit writes them).
pub fn clear_counters(fs: &impl Mounted, device: Option<&str>) -> Result<Vec<String>> {
    let fs = fs.engine().0;
    let members = fs.vol.devices.iter().collect::<Vec<_>>();
    let chosen: Vec<&crate::devices::Member> = match device {
        None => members.clone(),
        Some(d) => {
            let canon = std::fs::canonicalize(d).ok();
            let hit: Vec<_> = members
                .iter()
                .copied()
                .filter(|m| {
                    m.name() == d
                        || d.parse::<u8>().is_ok_and(|i| i == m.index)
                        || canon.as_ref().is_some_and(|c| std::fs::canonicalize(m.name()).ok().as_ref() == Some(c))
                })
                .collect();
            if hit.is_empty() {
                return Err(Error::Invalid(format!("{d} is not a device of this filesystem")));
            }
            hit
        }
    };
    for m in &chosen {
        for c in [&m.counters.read_errors, &m.counters.write_errors, &m.counters.check_errors, &m.counters.repaired] {
            c.store(0, Ordering::Relaxed);
        }
    }
    if fs.check_writable().is_ok() {
        crate::commit::commit(fs, true, false)?;
    }
    Ok(chosen.iter().map(|m| m.name()).collect())
}
