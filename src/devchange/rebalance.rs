//! `device rebalance` (and `device add --rebalance`): copies move onto a device that holds
//! less than its share, so that reads and new writes spread over every device after one
//! is added. Not needed for correctness (a new device takes new copies at once, A1); a
//! balance only.
//!
//! Commits run the resync walk with `Goal::Rebalance(device)` (`resync/slice.rs`): a block
//! with no copy on the device has the copy on its fullest device moved there, read through
//! its check value first and the old location freed by the commit that stops naming it
//! (as DC2). It stops once the device holds its share of the allocated space (the
//! average over the online devices) or the walk found nothing more to move. Blocks other
//! roots may share (born at or before a snapshot of the mounted PFS) stay where they are:
//! moving them would change every root's references, which only a remove must do.

use super::DeviceChangeError;
use crate::commit::hook::{self, CommitHook, FixedPoint, HookOutcome};
use crate::devices::MemberState;
use crate::error::{Error, Result};
use crate::fs::FsInner;
use crate::resync::{Carried, Goal, ResyncCounts};
use hammer2_format::layout::UNIT;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What [`rebalance`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rebalanced {
    pub index: u8,
    pub name: String,
    pub moved_blocks: u64,
    pub moved_bytes: u64,
    /// The bytes it set out to move: the device's share of the allocated space less what
    /// it held.
    pub target: u64,
    pub commits: u64,
    pub seconds: f64,
}

#[derive(Default)]
struct Shared {
    totals: Mutex<ResyncCounts>,
    complete: AtomicBool,
    /// Bytes still to move; each commit's slice moves at most this much.
    left: AtomicU64,
}

struct RebalanceHook {
    to: u8,
    slice_bytes: u64,
    shared: Arc<Shared>,
}

impl CommitHook for RebalanceHook {
    fn is_active(&self) -> bool {
        true
    }

    fn at_fixed_point(&self, fp: FixedPoint<'_, '_>) -> Result<HookOutcome> {
        let budget = self.slice_bytes.min(self.shared.left.load(Ordering::SeqCst));
        let mut out = crate::resync::slice(Goal::Rebalance(self.to), fp, budget, &Carried::default())?;
        let _ = out.carried(false);
        let shared = self.shared.clone();
        let (counts, complete) = (out.counts, out.complete);
        Ok(HookOutcome {
            inodes: out.inodes,
            records: out.records,
            served_dead: out.served_dead,
            on_installed: Some(Box::new(move || {
                shared.totals.lock().merge(&counts);
                shared.complete.store(complete, Ordering::SeqCst);
                let left = shared.left.load(Ordering::SeqCst);
                shared.left.store(left.saturating_sub(counts.copied_bytes), Ordering::SeqCst);
            })),
        })
    }
}

/// Moves copies onto device `to` until it holds its share (see the module doc). `progress`
/// is called after every commit with (bytes moved, target).
pub(crate) fn rebalance(
    fs: &FsInner,
    to: u8,
    progress: &mut dyn FnMut(u64, u64),
) -> std::result::Result<Rebalanced, DeviceChangeError> {
    if fs.vol.read_only || fs.remounted_ro.load(Ordering::SeqCst) {
        return Err(DeviceChangeError::ReadOnly);
    }
    if fs.roots.read().pfs.is_none() {
        return Err(Error::FormatVersion1.into());
    }
    let _one = fs.devchange.claim().ok_or(DeviceChangeError::Busy)?;
    let m = fs.vol.devices.get(to).ok_or(DeviceChangeError::NoSuchDevice(to))?;
    if m.state() != MemberState::Online {
        return Err(DeviceChangeError::NotOnline { name: m.name(), index: to, state: m.state().name() });
    }
    let start = std::time::Instant::now();
    let target = {
        let alloc = fs.alloc.lock();
        let online: Vec<u8> =
            fs.vol.devices.iter().filter(|d| d.state() == MemberState::Online).map(|d| d.index).collect();
        let total: u64 = online.iter().map(|d| alloc.allocated_units(*d)).sum();
        let share = total / online.len().max(1) as u64;
        share.saturating_sub(alloc.allocated_units(to)) * UNIT
    };
    let shared = Arc::new(Shared { left: AtomicU64::new(target), ..Default::default() });
    let hook = RebalanceHook { to, slice_bytes: fs.opts.resync_slice_bytes, shared: shared.clone() };
    let mut commits = 0;
    if target > 0 {
        let _guard = hook::register(fs, Arc::new(hook)).map_err(|e| match e {
            Error::Busy(_) => DeviceChangeError::MaintenanceRunning,
            e => e.into(),
        })?;
        let scan = crate::scan::begin(fs, crate::scan::ScanKind::Rebalance);
        loop {
            if fs.stopping.load(Ordering::SeqCst) {
                return Err(Error::Busy("the filesystem is being unmounted; run the rebalance again".into()).into());
            }
            shared.complete.store(false, Ordering::SeqCst);
            let before = shared.totals.lock().copied_bytes;
            crate::commit::commit(fs, true, false)?;
            commits += 1;
            let moved = shared.totals.lock().copied_bytes;
            scan.progress(moved, target.max(moved));
            progress(moved, target);
            // Done: the share is reached, the walk found nothing more to move, or a commit
            // moved nothing (no room where the copies may go).
            if shared.left.load(Ordering::SeqCst) == 0 || shared.complete.load(Ordering::SeqCst) || moved == before {
                break;
            }
        }
        scan.completed();
    }
    let t = *shared.totals.lock();
    tracing::info!(device = %m.name(), moved = t.copied_bytes, target, "rebalance done");
    Ok(Rebalanced {
        index: to,
        name: m.name(),
        moved_blocks: t.copied_blocks,
        moved_bytes: t.copied_bytes,
        target,
        commits,
        seconds: start.elapsed().as_secs_f64(),
    })
}
