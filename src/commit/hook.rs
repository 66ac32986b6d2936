//! The commit hook: maintenance that must change the trees inside a commit (resync fills
//! the missing copies of out-of-sync blocks) registers itself here, and every commit calls
//! it at its fixed point without naming its user. The commit stays below the maintenance
//! that drives it, and a hook's changes are built, written and installed like any other.
//!
//! One hook per filesystem at a time: registering while one is registered is refused
//! (`Error::Busy`). The registration ends when its guard is dropped, however the session
//! holding it ends (an error, or a panic in a commit), so later commits do not keep running
//! a hook nobody drives.

use super::builder::Builder;
use crate::error::{Error, Result};
use crate::fs::FsInner;
use crate::tree::modify::{PEntry, PRoot};
use std::collections::HashSet;
use std::sync::Arc;

/// What the commit hands its hook: the trees after this commit's inodes and orphans are
/// built, before the free map is persisted (so the hook's allocations are recorded in it).
pub struct FixedPoint<'s, 'a> {
    pub builder: &'s mut Builder<'a>,
    pub inodes: &'s mut PRoot,
    pub orphans: &'s mut PRoot,
    /// A block of the committed free map has a MISSING copy.
    pub freemap_degraded: bool,
    /// Inodes this commit writes anyway (their new blocks are fresh).
    pub written: &'s HashSet<u64>,
    /// Units each copy domain must keep free: everything reserved (this commit's changes
    /// included, until install) and the metadata reserve (S4).
    pub keep_free: u64,
    /// The change of the PFS table this commit also makes, if any: the hook leaves the
    /// other PFS records alone in it (two changes of one record in one commit would
    /// collide).
    pub pfs_op: Option<&'s super::PfsOp>,
    /// The committed roots this commit starts from.
    pub old: &'s crate::fs::Roots,
}

/// What a hook changed, for the commit to install.
#[derive(Default)]
pub struct HookOutcome {
    /// Inodes whose block the hook rewrote: (inum, new INODE entry, new root). At install
    /// their in-memory committed state (if loaded) moves to the new block and tree.
    pub inodes: Vec<(u64, PEntry, PRoot)>,
    /// New record blocks of PFSs other than the served one whose trees the hook rewrote
    /// (by PFS id), for the commit to put into the PFS table.
    pub records: Vec<(u64, PEntry)>,
    /// The served PFS's dead list as the hook rewrote it (its entries relocated) and the
    /// change of its physical bytes, for the commit's record to start from; `None`:
    /// unchanged.
    pub served_dead: Option<(PRoot, i64)>,
    /// Called once the commit is installed (never for a commit that fails).
    pub on_installed: Option<Box<dyn FnOnce() + Send>>,
}

/// Maintenance that changes the trees inside every commit while it is registered.
pub trait CommitHook: Send + Sync {
    /// Whether commits call `at_fixed_point` now.
    fn is_active(&self) -> bool;
    /// Called in every commit's build while registered and active.
    fn at_fixed_point(&self, fp: FixedPoint<'_, '_>) -> Result<HookOutcome>;
}

/// The registered hook, as `FsInner` holds it (opaquely: the in-memory state sits below
/// the commit and does not name it).
struct Registered(Arc<dyn CommitHook>);

/// Ends the registration when dropped.
pub struct HookGuard<'f> {
    fs: &'f FsInner,
}

impl Drop for HookGuard<'_> {
    fn drop(&mut self) {
        *self.fs.commit_hook.lock() = None;
    }
}

/// Registers `hook` with the commits of `fs` until the guard is dropped.
pub fn register(fs: &FsInner, hook: Arc<dyn CommitHook>) -> Result<HookGuard<'_>> {
    let mut slot = fs.commit_hook.lock();
    if slot.is_some() {
        return Err(Error::Busy("another maintenance session is registered with the commit".into()));
    }
    *slot = Some(Arc::new(Registered(hook)));
    Ok(HookGuard { fs })
}

/// The registered hook, if any.
pub fn current(fs: &FsInner) -> Option<Arc<dyn CommitHook>> {
    let slot = fs.commit_hook.lock().clone()?;
    slot.downcast::<Registered>().ok().map(|r| r.0.clone())
}
