//! Test hooks: what tests, benches and the test-support crate need from a mounted
//! filesystem beyond what a user of the library does. **For tests only, not stable API**:
//! names and shapes change with the engine.
//!
//! The hooks look at (or, for the few that act, drive) the engine the way a VOP does: each
//! takes the engine's own locks for what it reads, so a background commit is never seen
//! half done, and none hands out engine state to hold on to (they return copies).
//!
//! The damage hooks fsck's tests use (a buggy engine's changes, committed for fsck to find)
//! live with the repair session they exercise and are re-exported here, so this module is
//! the one place to look.

use crate::Fs;
use crate::alloc::Extent;
use crate::copies::ReadCtx;
use crate::inode::Content;
use crate::inspect::{Root, Roots};
use crate::storage::DynStorage;
use hammer2_format::Blockref;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use crate::fs::DIRTY_INODE_COST;
pub use crate::repair::testing::*;
pub use crate::vnops::killed_mode;

/// The names of the POSIX ACL extended attributes.
pub mod acl {
    pub use crate::vnops::acl::{ACCESS, DEFAULT};
}

/// The allocator itself, for the benches that time it alone.
pub mod alloc {
    pub use crate::alloc::{Allocator, Class, DeviceSpace};
}

/// The committed roots (of the last installed commit).
pub fn committed_roots(fs: &Fs) -> Roots {
    fs.inner.roots.read().clone()
}

/// Commits now, even when nothing changed (`Fs::sync` commits only changes): a commit that
/// carries only maintenance work, such as a resync slice.
pub fn commit(fs: &Fs) -> crate::Result<()> {
    crate::commit::commit(&fs.inner, true, false).map(|_| ())
}

/// Bytes of memory the changes not yet committed hold (what the dirty limit bounds).
pub fn dirty_load(fs: &Fs) -> u64 {
    fs.inner.dirty_load()
}

/// True when no inode waits for a commit.
pub fn nothing_dirty(fs: &Fs) -> bool {
    fs.inner.dirty.lock().is_empty()
}

/// Commits installed since the mount.
pub fn commits(fs: &Fs) -> u64 {
    fs.inner.stats.commits.load(Ordering::Relaxed)
}

/// Empties the block cache, so the next reads go to the devices.
pub fn clear_cache(fs: &Fs) {
    fs.inner.vol.cache.clear();
}

/// The verified content of the block `br` points to, through the cache and the copy-I/O
/// layer like any engine read (heals a bad copy unless read-only).
pub fn read_block(fs: &Fs, br: &Blockref) -> crate::Result<Arc<[u8]>> {
    fs.inner.vol.read_block(br, &ReadCtx::default())
}

/// The verified content of the block `br` points to, read from the devices (not the cache).
pub fn read_block_uncached(fs: &Fs, br: &Blockref) -> crate::Result<Vec<u8>> {
    fs.inner.vol.read_block_uncached(br, &ReadCtx::default())
}

/// The decoded entries of the tree node `br` points to (served from the cache when there).
pub fn read_node(fs: &Fs, br: &Blockref) -> crate::Result<Arc<crate::tree::Node>> {
    fs.inner.vol.read_node(br)
}

/// The committed block tree of inode `ino` (`None` when its content is embedded or it has
/// none). The inode is loaded if it is not in memory.
pub fn committed_tree(fs: &Fs, ino: u64) -> crate::Result<Option<Root>> {
    let inode = fs.inner.inode(ino)?;
    let st = inode.state.read();
    Ok(match &st.committed.content {
        Content::Tree(root) => Some(root.clone()),
        _ => None,
    })
}

/// Member device `index`'s storage, as the engine opened it (`None`: absent, or no such
/// device): to read or damage copies underneath the engine.
pub fn device_storage(fs: &Fs, index: u8) -> Option<DynStorage> {
    fs.inner.vol.devices.get(index).and_then(|m| m.storage())
}

/// True when the allocator holds the `bytes` at `offset` of device `device` allocated.
pub fn is_allocated(fs: &Fs, device: u8, offset: u64, bytes: u64) -> bool {
    fs.inner.alloc.lock().is_allocated(&Extent::from_bytes(device, offset, bytes))
}

/// Calls `f(device, unit, allocated)` for every allocation unit of every device's
/// allocatable regions, under the allocator's lock; `allocated` leaves out the frees that
/// wait for the next commit.
pub fn for_each_unit(fs: &Fs, f: &mut dyn FnMut(u8, u64, bool)) {
    let alloc = fs.inner.alloc.lock();
    for (d, space) in alloc.devs.iter().enumerate() {
        for r in &space.regions {
            for u in r.start..r.end {
                f(d as u8, u, space.bits.get(u) && !space.pending.get(u));
            }
        }
    }
}

/// Scrubs the mounted filesystem (every copy of every reachable block), healing what it can.
pub fn scrub(
    fs: &Fs,
    progress: &mut dyn FnMut(crate::scrub::ScrubProgress),
) -> crate::Result<crate::scrub::ScrubReport> {
    crate::scrub::scrub(&fs.inner, Default::default(), progress)
}

/// Resyncs the mounted filesystem to the end (every copy a device missed is written).
pub fn resync(
    fs: &Fs,
    progress: &mut dyn FnMut(&crate::resync::ResyncProgress),
) -> crate::Result<crate::resync::ResyncReport> {
    crate::resync::run(fs, Default::default(), progress)
}

/// Starts a resync session that writes at most `slice_bytes` of copies per commit (driven
/// by the commits that follow, see [`commit`]).
pub fn resync_start(fs: &Fs, slice_bytes: u64) -> crate::Result<crate::resync::Session<'_>> {
    crate::resync::start(&fs.inner, slice_bytes)
}

/// True when inode `ino` is in the in-memory inode table (loading nothing).
pub fn in_memory(fs: &Fs, ino: u64) -> bool {
    fs.inner.inodes.get(ino).is_some()
}
