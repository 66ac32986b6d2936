//! `device remove`: every copy on a device moves to the others, then the device leaves
//! (DC2 in docs/DESIGN.md).
//!
//! 1. Refused (one line, with the numbers) when the other devices cannot hold N copies of
//!    everything: fewer (device, region) domains than N, or less free space than the
//!    device holds; or when another device is not online (it may lack copies only this
//!    one holds).
//! 2. The device gets weight none (`draining`): placement gives it no new copies.
//! 3. Commits run the resync walk with `Goal::MoveOff` (`resync/slice.rs`) until one has
//!    walked every branch of every root and found nothing left on the device: each copy
//!    there gets a new location on another device, its content read through the check
//!    value (from any good copy) before the new reference is committed, the old location
//!    freed by the commit that stops naming it. Once the served trees are done, the same
//!    commits walk every other root (snapshots, clones, dead lists: AR1..AR3). Every commit is whole, so a kill at any
//!    point leaves a filesystem with some copies moved; running the remove again (after a
//!    remount) moves the rest.
//! 4. A walk over the committed trees proves no reference names the device; then it is
//!    recorded `removed` and let go of.

use super::DeviceChangeError;
use crate::commit::hook::{self, CommitHook, FixedPoint, HookOutcome};
use crate::devices::MemberState;
use crate::error::{Error, Result};
use crate::fs::FsInner;
use crate::resync::{Goal, ResyncCounts};
use crate::walk;
use hammer2_format::layout::{UNIT, feature};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where a running remove is.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct RemoveProgress {
    /// Copies moved and their bytes so far.
    pub moved_blocks: u64,
    pub moved_bytes: u64,
    /// Bytes the device held when the remove started.
    pub total: u64,
    pub commits: u64,
}

/// What [`remove`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Removed {
    pub index: u8,
    pub name: String,
    pub moved_blocks: u64,
    pub moved_bytes: u64,
    pub commits: u64,
    pub seconds: f64,
    /// Devices still in service.
    pub devices_left: usize,
}

#[derive(Default)]
struct Shared {
    totals: Mutex<ResyncCounts>,
    complete: AtomicBool,
    /// The last slice found no room for a copy.
    no_room: AtomicBool,
    /// What the slices relocated and retired, for the next ones (AR1, AR3).
    carried: Mutex<crate::resync::Carried>,
}

struct MoveHook {
    from: u8,
    slice_bytes: u64,
    shared: Arc<Shared>,
}

impl CommitHook for MoveHook {
    fn is_active(&self) -> bool {
        true
    }

    fn at_fixed_point(&self, fp: FixedPoint<'_, '_>) -> Result<HookOutcome> {
        let forget = matches!(fp.pfs_op, Some(crate::commit::PfsOp::Delete { .. }));
        let carried = self.shared.carried.lock();
        let mut out = crate::resync::slice(Goal::MoveOff(self.from), fp, self.slice_bytes, &carried)?;
        drop(carried);
        let shared = self.shared.clone();
        let (counts, complete, no_room) = (out.counts, out.complete, out.no_room);
        let keep = out.carried(forget);
        Ok(HookOutcome {
            inodes: out.inodes,
            records: out.records,
            served_dead: out.served_dead,
            on_installed: Some(Box::new(move || {
                shared.totals.lock().merge(&counts);
                shared.complete.store(complete, Ordering::SeqCst);
                shared.no_room.store(no_room, Ordering::SeqCst);
                shared.carried.lock().installed(keep);
            })),
        })
    }
}

/// Removes device `index` from the mounted filesystem (see the module doc). `progress` is
/// called after every commit.
pub(crate) fn remove(
    fs: &FsInner,
    index: u8,
    progress: &mut dyn FnMut(&RemoveProgress),
) -> std::result::Result<Removed, DeviceChangeError> {
    if fs.vol.read_only || fs.remounted_ro.load(Ordering::SeqCst) {
        return Err(DeviceChangeError::ReadOnly);
    }
    if fs.roots.read().pfs.is_none() {
        return Err(Error::FormatVersion1.into());
    }
    let _one = fs.devchange.claim().ok_or(DeviceChangeError::Busy)?;
    remove_claimed(fs, index, progress)
}

/// [`remove`] with the mount's device-change claim (DC1) held by the caller.
pub(super) fn remove_claimed(
    fs: &FsInner,
    index: u8,
    progress: &mut dyn FnMut(&RemoveProgress),
) -> std::result::Result<Removed, DeviceChangeError> {
    let m = fs.vol.devices.get(index).ok_or(DeviceChangeError::NoSuchDevice(index))?;
    let name = m.name();
    if m.state() == MemberState::Removed {
        return Err(DeviceChangeError::AlreadyRemoved { index });
    }
    fits_without(fs, index, None)?;
    let start = std::time::Instant::now();
    {
        // O1: placement changes between commits.
        let _no_commit = fs.commit_lock.lock();
        m.set_draining(true);
        fs.vol.free_placement.store(true, Ordering::SeqCst);
        if let Some(p) = fs.roots.write().pfs.as_mut() {
            p.features |= feature::FREE_PLACEMENT;
        }
    }
    let r = drain(fs, index, progress);
    let (counts, commits) = match r {
        Ok(v) => v,
        Err(e) => {
            // Interrupted or failed: it takes new copies again; a new remove goes on.
            m.set_draining(false);
            return Err(e);
        }
    };
    {
        let _no_commit = fs.commit_lock.lock();
        m.set_state(MemberState::Removed);
        m.detach();
    }
    crate::commit::commit(fs, true, false)?;
    tracing::info!(device = %name, index, moved = counts.copied_blocks, "device removed");
    Ok(Removed {
        index,
        name,
        moved_blocks: counts.copied_blocks,
        moved_bytes: counts.copied_bytes,
        commits: commits + 1,
        seconds: start.elapsed().as_secs_f64(),
        devices_left: fs.vol.devices.iter().filter(|m| m.state() != MemberState::Removed).count(),
    })
}

/// Moves every copy off device `from` (steps 3 and 4). Returns what was moved and the
/// commits it took.
fn drain(
    fs: &FsInner,
    from: u8,
    progress: &mut dyn FnMut(&RemoveProgress),
) -> std::result::Result<(ResyncCounts, u64), DeviceChangeError> {
    let total = fs.alloc.lock().allocated_units(from) * UNIT;
    // AR1 across a crash: where the copies of blocks other roots share went, if an earlier
    // run moved them for some of their references.
    let carried = crate::resync::Carried { subst: crate::resync::moved_off(fs, from)?, retired: Vec::new() };
    let shared = Arc::new(Shared { carried: Mutex::new(carried), ..Default::default() });
    let hook = MoveHook { from, slice_bytes: fs.opts.resync_slice_bytes, shared: shared.clone() };
    let _guard = hook::register(fs, Arc::new(hook)).map_err(|e| match e {
        Error::Busy(_) => DeviceChangeError::MaintenanceRunning,
        e => e.into(),
    })?;
    let mut commits = 0;
    let mut moved_before = 0;
    let scan = crate::scan::begin(fs, crate::scan::ScanKind::Remove);
    loop {
        if fs.stopping.load(Ordering::SeqCst) {
            return Err(Error::Busy("the filesystem is being unmounted; run the remove again to finish".into()).into());
        }
        shared.complete.store(false, Ordering::SeqCst);
        crate::commit::commit(fs, true, false).map_err(|e| match e {
            Error::NoSpace => DeviceChangeError::RanOutOfRoom { moved: shared.totals.lock().copied_bytes },
            e => e.into(),
        })?;
        commits += 1;
        let t = *shared.totals.lock();
        scan.progress(t.copied_bytes, total.max(t.copied_bytes));
        progress(&RemoveProgress {
            moved_blocks: t.copied_blocks,
            moved_bytes: t.copied_bytes,
            total: total.max(t.copied_bytes),
            commits,
        });
        if shared.complete.load(Ordering::SeqCst) {
            break;
        }
        // Out of room where the copies may go (FP1), and nothing moved: waiting would not
        // end (a resync waits for space; a remove has the operator decide).
        if shared.no_room.load(Ordering::SeqCst) && t.copied_bytes == moved_before {
            return Err(DeviceChangeError::RanOutOfRoom { moved: t.copied_bytes });
        }
        moved_before = t.copied_bytes;
    }
    // Step 4: the proof, over the trees now committed.
    let left = references_to(fs, from)?;
    if left > 0 {
        return Err(Error::Corrupt(format!(
            "{left} reference(s) still name device {from} after the walk; the device is kept"
        ))
        .into());
    }
    scan.completed();
    Ok((*shared.totals.lock(), commits))
}

/// The most copies a block of the committed trees has: the filesystem's N, or more where
/// files were given more (VC1). Only a filesystem with `VARIABLE_COPIES` can have any such
/// block (VC3), so only there is the metadata walked to find out.
fn most_copies(fs: &FsInner) -> Result<usize> {
    let n = usize::from(fs.vol.params.copies);
    if !fs.variable_copies() {
        return Ok(n);
    }
    let mut most = n;
    walk::each_reference(fs, |br| most = most.max(br.ptr().map_or(0, |p| p.copies.len())))?;
    Ok(most)
}

/// References of the committed trees that name device `d` (a copy on it, of any state).
fn references_to(fs: &FsInner, d: u8) -> Result<u64> {
    let mut n = 0;
    walk::each_reference(fs, |br| n += u64::from(br.ptr().is_some_and(|p| p.copies.iter().any(|l| l.device == d))))?;
    Ok(n)
}

/// Step 1: whether the other devices can hold every block's copies without `index` (N, or
/// more for files given more with `hammer2 set copies=`); with `joining` (a replace asks
/// before it adds the new device): counting a device about to join, with its (domains,
/// free bytes).
pub(super) fn fits_without(
    fs: &FsInner,
    index: u8,
    joining: Option<(usize, u64)>,
) -> std::result::Result<(), DeviceChangeError> {
    let copies = most_copies(fs)?;
    let others: Vec<&crate::devices::Member> =
        fs.vol.devices.iter().filter(|o| o.index != index && o.state() != MemberState::Removed).collect();
    if let Some(o) = others.iter().find(|o| o.state() != MemberState::Online) {
        return Err(DeviceChangeError::OtherNotOnline { name: o.name(), index: o.index, state: o.state().name() });
    }
    let (new_domains, new_free) = joining.unwrap_or((0, 0));
    let domains: usize = others.iter().map(|o| usize::from(o.regions)).sum::<usize>() + new_domains;
    if domains < copies {
        let devices = others.len() + usize::from(joining.is_some());
        return Err(DeviceChangeError::TooFewDomains { domains, devices, copies });
    }
    let alloc = fs.alloc.lock();
    let held = alloc.allocated_units(index) * UNIT;
    let free: u64 = others.iter().map(|o| alloc.device_free_on_disk(o.index) * UNIT).sum::<u64>() + new_free;
    // Space the others must keep for what is reserved already (S4).
    let reserved = (fs.space.reserved() + fs.space.meta_reserve()) * UNIT;
    if held + reserved > free {
        return Err(DeviceChangeError::NoRoom { held, free: free.saturating_sub(reserved) });
    }
    Ok(())
}
