//! A resync's registration with the commit: the commit hook that runs a slice in every
//! commit while the resync drives them, and what the slices have done so far.

use super::ResyncCounts;
use super::slice::slice;
use crate::commit::hook::{self, CommitHook, FixedPoint, HookGuard, HookOutcome};
use crate::error::{Error, Result};
use crate::fs::FsInner;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the hook and the session holding it share; the commit updates it at install.
#[derive(Default)]
struct Shared {
    /// Commits run a slice while this is set.
    slicing: AtomicBool,
    /// Bytes of copies one commit's slice writes at most.
    slice_bytes: u64,
    /// Totals of this resync.
    totals: Mutex<ResyncCounts>,
    /// The last slice walked the whole tree without running out of budget or skipping.
    complete: AtomicBool,
    /// What the slices relocated and retired, for the next ones (AR1, AR3).
    carried: Mutex<super::Carried>,
}

struct ResyncHook(Arc<Shared>);

impl CommitHook for ResyncHook {
    fn is_active(&self) -> bool {
        self.0.slicing.load(Ordering::SeqCst)
    }

    fn at_fixed_point(&self, fp: FixedPoint<'_, '_>) -> Result<HookOutcome> {
        let forget = matches!(fp.pfs_op, Some(crate::commit::PfsOp::Delete { .. }));
        let carried = self.0.carried.lock();
        let mut out = slice(super::slice::Goal::Resync, fp, self.0.slice_bytes, &carried)?;
        drop(carried);
        let shared = self.0.clone();
        let (counts, complete) = (out.counts, out.complete);
        let keep = out.carried(forget);
        Ok(HookOutcome {
            inodes: out.inodes,
            records: out.records,
            served_dead: out.served_dead,
            on_installed: Some(Box::new(move || {
                shared.totals.lock().merge(&counts);
                shared.complete.store(complete, Ordering::SeqCst);
                shared.carried.lock().installed(keep);
            })),
        })
    }
}

/// A resync registered with the commits of a filesystem; unregistered when dropped. Only
/// one exists per filesystem at a time.
pub struct Session<'f> {
    shared: Arc<Shared>,
    _guard: HookGuard<'f>,
}

/// Starts slicing: every commit of `fs` from now on (until the session is dropped) fills
/// missing copies, at most `slice_bytes` of them each. `run` drives a whole resync; this
/// is its step, for callers (tests) that drive the commits themselves.
pub(crate) fn start(fs: &FsInner, slice_bytes: u64) -> Result<Session<'_>> {
    let s = Session::claim(fs, slice_bytes)?;
    s.set_slicing(true);
    Ok(s)
}

/// Whether a resync is slicing on `fs` now (`info` shows its devices as resyncing).
/// A resync is registered (from its start, through a diverged device's check, to its end).
pub(crate) fn claimed(fs: &FsInner) -> bool {
    hook::current(fs).is_some()
}

pub(crate) fn running(fs: &FsInner) -> bool {
    hook::current(fs).is_some_and(|h| h.is_active())
}

impl<'f> Session<'f> {
    /// Registers a resync that does not slice yet; refused while another one is registered.
    pub(super) fn claim(fs: &'f FsInner, slice_bytes: u64) -> Result<Session<'f>> {
        let shared = Arc::new(Shared { slice_bytes, ..Default::default() });
        let guard = hook::register(fs, Arc::new(ResyncHook(shared.clone()))).map_err(|e| match e {
            Error::Busy(_) => Error::Busy("a resync is already running on this filesystem".into()),
            e => e,
        })?;
        Ok(Session { shared, _guard: guard })
    }

    pub(super) fn set_slicing(&self, on: bool) {
        self.shared.slicing.store(on, Ordering::SeqCst);
    }

    /// Forgets whether the last slice completed, before the next commit runs one.
    pub(super) fn expect_slice(&self) {
        self.shared.complete.store(false, Ordering::SeqCst);
    }

    /// Totals of the slices installed so far.
    pub fn totals(&self) -> ResyncCounts {
        *self.shared.totals.lock()
    }

    /// The last slice installed walked the whole tree without running out of budget.
    pub fn complete(&self) -> bool {
        self.shared.complete.load(Ordering::SeqCst)
    }
}
