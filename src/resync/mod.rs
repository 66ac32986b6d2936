//! Resync: catching a device up by walking the tree from the master root and descending
//! only into branches whose references carry the DEGRADED flag (some copy at or below them
//! is MISSING). A branch without the flag is fully synchronized and is not entered, so a
//! resync costs in proportion to what the device missed, not to the filesystem's size.
//!
//! The work is done by commits: while a resync runs, its commit hook (`hook.rs`, registered
//! with `commit::hook`) ends every commit's build phase with a bounded *slice* (`slice.rs`):
//! it fills MISSING copies on writable devices (a new location on that device, the verified
//! content copied there) and rebuilds the nodes above them, whose new versions are written
//! to every device and so carry no flag. Progress therefore
//! lives in the tree itself: an interrupted resync restarts from the root and finds the
//! finished branches already clean. Writes during a resync are ordinary commits.
//!
//! A *diverged* device (split brain, rolled back, or a replacement: DESIGN §8) cannot trust
//! any of its older copies; before the slices run, `scrub_device` reads every copy on it
//! and rewrites those that fail their check, after which it is treated as stale.

mod hook;
mod pending;
mod slice;
mod subst;

pub(crate) use slice::{Carried, Goal, slice};
pub(crate) use subst::moved_off;

use crate::devices::MemberState;
use crate::error::{Error, Result};
use crate::fs::FsInner;
use crate::scrub::ScrubRun;
use crate::throttle::RunOptions;
use crate::throttle::Throttle;
use std::sync::atomic::Ordering;

pub use crate::fs::scans::{ResyncCounts, ResyncReport};
pub use hook::Session;
pub(crate) use hook::{claimed, running, start};

/// Where a running resync is: what it did so far, and the bytes of copies it set out to
/// write (`copied_bytes` against `total`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ResyncProgress {
    pub counts: ResyncCounts,
    pub commits: u64,
    pub total: u64,
}

impl ResyncCounts {
    fn add(&mut self, o: &ResyncCounts) {
        self.visited += o.visited;
        self.copied_blocks += o.copied_blocks;
        self.copied_bytes += o.copied_bytes;
    }
}

/// Between commits: holds while the operator paused the resync (an unmount does not wait
/// for a resume), adding the time held to `paused`. False when it is to stop: cancelled, or
/// paused while the filesystem is being unmounted.
fn follow_operator(fs: &FsInner, paused: &mut std::time::Duration) -> bool {
    use crate::fs::scans::ScanState;
    loop {
        match fs.resync_control.state() {
            ScanState::Run => return true,
            ScanState::Cancelled => return false,
            ScanState::Paused if fs.stopping.load(Ordering::SeqCst) => return false,
            ScanState::Paused => {
                let t = std::time::Instant::now();
                std::thread::sleep(std::time::Duration::from_millis(50));
                *paused += t.elapsed();
            }
        }
    }
}

/// Reads every copy on device `dev` of every reachable block and rewrites the ones whose
/// content fails its check (a diverged or replaced device). Returns (checked, repaired).
fn scrub_device(fs: &FsInner, dev: u8, rate: Option<u64>) -> Result<(u64, u64)> {
    let roots = fs.pinned_roots();
    let rep = crate::scrub::scrub_roots(fs, &roots, Some(dev), ScrubRun { rate, controlled: false }, &mut |_| {})?;
    Ok((rep.blocks, rep.devices.get(usize::from(dev)).map_or(0, |d| d.repaired)))
}

/// Brings every stale, diverged or returning device up to date. Calls `progress` after
/// every commit. With a rate, each commit copies about a quarter second's worth and the
/// next waits until the copies written so far fit the rate (T1). Callers outside the
/// engine reach it as `maintenance::resync`.
pub(crate) fn run(
    fs: &impl crate::Mounted,
    opts: RunOptions,
    progress: &mut dyn FnMut(&ResyncProgress),
) -> Result<ResyncReport> {
    let fs = fs.engine().0;
    if fs.vol.read_only {
        return Err(Error::ReadOnly);
    }
    if fs.broken.load(Ordering::SeqCst) {
        // Its commits would succeed while every change is refused: not a success to report.
        return Err(Error::Mount(
            "the filesystem stopped taking changes after an internal error; unmount and mount it again".into(),
        ));
    }
    // Registered for the whole run (a second resync is refused) and slicing only once the
    // devices to catch up are known; unregistered however the run ends.
    let mut throttle = Throttle::new(opts.rate);
    let slice_bytes =
        throttle.rate().map_or(fs.opts.resync_slice_bytes, |r| fs.opts.resync_slice_bytes.min((r / 4).max(256 << 10)));
    let session = hook::Session::claim(fs, slice_bytes)?;
    fs.resync_control.reset();
    let scan = crate::scan::begin(fs, crate::scan::ScanKind::Resync);
    let start = std::time::Instant::now();
    let mut report = ResyncReport::default();
    rejoin(fs, &mut report)?;
    for m in fs.vol.devices.iter() {
        if m.state() == MemberState::Stale {
            tracing::info!(device = %m.name(), "resync started");
        }
    }
    for m in fs.vol.devices.iter() {
        if m.state() == MemberState::Diverged {
            let (checked, repaired) = scrub_device(fs, m.index, opts.rate)?;
            report.verified_blocks += checked;
            report.verify_repaired += repaired;
            m.set_state(MemberState::Stale);
            m.set_rolled_back(0);
        }
    }
    let total = pending::bytes(fs)?;
    session.set_slicing(true);
    // The stale devices, each with its epoch, before the last commit: a device is in sync
    // only after a slice that walked everything while it was writable throughout (one
    // that came back or failed meanwhile has another epoch, O1).
    let mut stale;
    loop {
        if fs.stopping.load(Ordering::SeqCst) {
            return Err(Error::Busy("the filesystem is being unmounted; the next resync goes on from here".into()));
        }
        stale = stale_epochs(fs);
        session.expect_slice();
        commit(fs)?;
        report.commits += 1;
        let counts = session.totals();
        progress(&ResyncProgress { counts, commits: report.commits, total });
        throttle.pace(counts.copied_bytes);
        // After the pace: what `status` divides by the time since the start keeps to the rate (T1).
        scan.progress(counts.copied_bytes, total);
        let mut throttle_paused = std::time::Duration::ZERO;
        if !follow_operator(fs, &mut throttle_paused) {
            // Cancelled: what was copied is committed and stays; the devices not caught up
            // stay stale, and the next resync goes on from the tree as it is.
            session.set_slicing(false);
            report.cancelled = true;
            report.counts = session.totals();
            for m in fs.vol.devices.iter() {
                if !m.writable() {
                    report.still_missing.push(m.name());
                }
            }
            report.seconds = start.elapsed().as_secs_f64();
            tracing::info!("resync cancelled");
            scan.cancelled();
            return Ok(report);
        }
        throttle.exclude(throttle_paused);
        if session.complete() && stale_epochs(fs) == stale {
            break;
        }
    }
    session.set_slicing(false);
    for m in fs.vol.devices.iter() {
        if stale.contains(&(m.index, m.epoch())) && m.state() == MemberState::Stale {
            m.set_state(MemberState::Online);
            m.set_missed_since(0);
            report.synced.push(m.name());
        } else if !m.writable() && m.state() != MemberState::Removed {
            report.still_missing.push(m.name());
        }
    }
    // Persist the new device states.
    commit(fs)?;
    report.commits += 1;
    report.counts = session.totals();
    report.seconds = start.elapsed().as_secs_f64();
    scan.completed();
    Ok(report)
}

/// Every stale device with its epoch.
fn stale_epochs(fs: &FsInner) -> Vec<(u8, u64)> {
    fs.vol.devices.iter().filter(|m| m.state() == MemberState::Stale).map(|m| (m.index, m.epoch())).collect()
}

/// One commit of the resync. When it fails for want of a device the filesystem still refuses
/// changes, and the error says so and what to do (not just "I/O error").
fn commit(fs: &FsInner) -> Result<()> {
    crate::commit::commit(fs, true, false).map(|_| ()).map_err(|e| {
        if fs.stalled.load(Ordering::SeqCst) {
            Error::Mount(format!(
                "the devices answer but fail again ({e}); changes stay refused: run resync again once they work, \
                 or unmount and mount again"
            ))
        } else {
            e
        }
    })
}

/// Failed devices that answer again rejoin as stale, each only once its header slots show
/// it holds what this mount last wrote to it (R1 in docs/DESIGN.md §5); the others stay
/// failed and are listed in `report.refused`. When no device was writable (the filesystem
/// is refusing changes), a refusal leaves every device failed and is an error: resuming
/// on the others could make the commit this mount retries and the one a refused device
/// holds two different trees with the same tid.
fn rejoin(fs: &FsInner, report: &mut ResyncReport) -> Result<()> {
    let stalled = fs.stalled.load(Ordering::SeqCst);
    let roots = fs.roots.read().clone();
    let mut back = Vec::new();
    for m in fs.vol.devices.iter() {
        let Some(st) = m.storage() else { continue };
        if m.state() != MemberState::Failed {
            continue;
        }
        let mut b = [0u8; 4096];
        if st.read_at(&mut b, 0).is_err() || st.flush().is_err() {
            continue;
        }
        match holds_what_we_wrote(fs, m, &crate::mount::probe(st.clone()), &roots) {
            Ok(()) => back.push(m),
            Err(why) => {
                tracing::warn!(device = %m.name(), "device answers again but is not taken back: {why}");
                report.refused.push(format!("{}: {why}", m.name()));
            }
        }
    }
    if stalled && !report.refused.is_empty() {
        return Err(Error::Mount(format!(
            "{}; the filesystem takes no changes until it is unmounted and mounted again",
            report.refused.join("; ")
        )));
    }
    // O1: a member becomes writable between commits.
    let _no_commit = fs.commit_lock.lock();
    for m in back {
        tracing::info!(device = %m.name(), "device answers again and holds what was last written to it: rejoining as stale");
        if m.missed_since() == 0 {
            m.set_missed_since(roots.tid);
        }
        m.set_state(MemberState::Stale);
    }
    Ok(())
}

/// R1: a failed device may be written again only if its newest valid header is one this
/// mount wrote and made durable. Newer than the last completed commit means a failed
/// commit's header landed: its blocks went back to the allocator and the retry would
/// reuse them under a header that names them. Older than the last header written to it
/// (or the one before, if that write failed) means its contents were replaced.
pub(crate) fn holds_what_we_wrote(
    fs: &FsInner,
    m: &crate::devices::Member,
    probe: &crate::mount::Probe,
    roots: &crate::fs::Roots,
) -> std::result::Result<(), String> {
    let Some(h) = &probe.header else { return Err("it holds no valid volume header".into()) };
    if h.fs_uuid != fs.vol.params.fs_uuid || h.device_uuid != m.uuid {
        return Err("its volume header belongs to another device or filesystem".into());
    }
    if h.tid > roots.tid {
        return Err(format!(
            "it holds the header of commit {}, which failed here (the last commit completed is {})",
            h.tid, roots.tid
        ));
    }
    let same_roots = h.sroot == crate::pfs::header_fields(roots, 0).sroot;
    if h.tid == roots.tid && !same_roots {
        return Err(format!("its header of commit {} names other roots than this mount committed", h.tid));
    }
    if h.tid + 1 < m.synced_tid() {
        return Err(format!("it holds commit {}, older than commit {} last written to it", h.tid, m.synced_tid()));
    }
    Ok(())
}

impl ResyncReport {
    /// 0 when every device that answers is back in service, 1 when one was refused.
    /// 0 done, 1 a failed device was not taken back, 32 cancelled (as a cancelled scrub).
    pub fn exit_code(&self) -> i32 {
        if self.cancelled { crate::scrub::EXIT_CANCELLED } else { i32::from(!self.refused.is_empty()) }
    }
}

impl ResyncCounts {
    pub fn merge(&mut self, o: &ResyncCounts) {
        self.add(o)
    }
}
