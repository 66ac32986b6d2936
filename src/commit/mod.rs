//! The commit path: turns the in-memory changes of every inode into a new, durable tree.
//!
//! 1. Snapshot (under the exclusive gate, no I/O): every dirty overlay becomes `flushing`.
//! 2. Build (no user-visible lock): each inode's overlay is applied to its committed tree,
//!    then the inode and orphan trees are updated, then the free map; every new block is a
//!    pending block with its copies allocated (`builder.rs`, `arena.rs`).
//! 3. Finalize: contents and check values, children before parents.
//! 4. Write every copy of every new block, in parallel per device, and flush every device.
//! 5. Write the volume header slot `tid % 4` on every writable device, and flush.
//! 6. Install: swap the committed roots in memory, then release the blocks this commit
//!    freed (only now, after the new headers are durable, may they be reused).
//!
//! A write or flush error in step 4 or 5 marks the device failed and the attempt is redone
//! from the same snapshot: the failed device's copies are then recorded as MISSING. If no
//! device is left, the commit fails, the changes stay in memory, and the filesystem stops
//! accepting new ones until a resync brings a device back (R1 in docs/DESIGN.md §5); the
//! previous committed state on the devices is untouched.

pub(crate) mod arena;
pub(crate) mod builder;
pub(crate) mod deadlist;
mod discard;
pub(crate) mod freemap;
pub mod header;
pub(crate) mod hook;
pub(crate) mod inode;
mod pfs;
mod remount;

pub use pfs::PfsOp;
pub(crate) mod writeout;

use crate::error::{Error, Result};
use crate::fs::{FsInner, Roots};
use crate::inode::{CommittedInode, Content, Flushing, InodeRef};
use crate::tree::Root;
use crate::tree::modify::{Change, PEntry, PRoot, apply};
use arena::Arena;
use builder::Builder;
use hammer2_format::{BlockData, BlockType, Blockref, Payload};
use inode::{InodeCommit, PendingContent};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use writeout::Streams;

struct Snapshot {
    inodes: Vec<(InodeRef, Arc<Flushing>, Arc<CommittedInode>)>,
    next_inum: u64,
    reserved: u64,
    dirty_bytes: u64,
}

struct Built {
    arena: Arena,
    roots: PRootSet,
    inodes: Vec<InodeCommit>,
    /// What the registered commit hook changed.
    hooked: Option<hook::HookOutcome>,
    /// Version 2: the new PFS table and record.
    pfs: Option<pfs::PendingPfs>,
}

struct PRootSet {
    inodes: PRoot,
    freemap: PRoot,
    orphans: PRoot,
}

/// What a commit did.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitReport {
    pub tid: u64,
    pub inodes: usize,
    pub blocks: usize,
    pub bytes: u64,
}

/// Commits everything changed so far. `force` writes new headers even when nothing
/// changed (unmount, device state changes); `clean` marks them as written by a clean
/// unmount.
pub fn commit(fs: &FsInner, force: bool, clean: bool) -> Result<CommitReport> {
    commit_with(fs, force, clean, None)
}

/// Commits everything changed so far together with one change of the PFS table (format
/// version 2): the change is in the same commit as the trees it names.
pub fn commit_pfs_op(fs: &FsInner, op: &PfsOp) -> Result<CommitReport> {
    if fs.roots.read().pfs.is_none() {
        return Err(Error::FormatVersion1);
    }
    // Read-only, remounted read-only, or refusing changes after a failed commit: a PFS
    // change is a change like any other.
    fs.check_writable()?;
    commit_with(fs, true, false, Some(op))
}

fn commit_with(fs: &FsInner, force: bool, clean: bool, op: Option<&PfsOp>) -> Result<CommitReport> {
    let _one_at_a_time = fs.commit_lock.lock();
    let current = fs.roots.read().tid;
    if fs.vol.read_only {
        return Ok(CommitReport { tid: current, ..Default::default() });
    }
    let started = std::time::Instant::now();
    let snap = snapshot(fs);
    if snap.inodes.is_empty() && !force {
        return Ok(CommitReport { tid: current, ..Default::default() });
    }
    let old = fs.roots.read().clone();
    let tid = old.tid + 1;
    // A bug that panics while the commit is built must not leave the allocator or the
    // inodes half-changed: it becomes an error like a failed device, and the filesystem
    // stops taking changes (what is committed stays safe on the devices).
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| attempt_commit(fs, tid, &old, &snap, clean, op)))
            .unwrap_or_else(|_| {
                fs.alloc.lock().rollback();
                fs.broken.store(true, Ordering::SeqCst);
                Err(Error::Corrupt(format!(
                    "internal error while building commit {tid}; no further changes are accepted"
                )))
            });
    match result {
        Ok((built, roots)) => {
            let r = install(fs, snap, built, roots);
            // A device took this commit whole: the changes refused while none could are
            // accepted again (R1).
            fs.stalled.store(false, Ordering::SeqCst);
            tracing::debug!(
                "commit {}: {} inodes, {} blocks, {} KiB in {} ms",
                r.tid,
                r.inodes,
                r.blocks,
                r.bytes >> 10,
                started.elapsed().as_millis()
            );
            Ok(r)
        }
        Err(e) => {
            tracing::error!("commit {tid} failed: {e}; changes kept in memory");
            if fs.vol.devices.writable_count() == 0 {
                fs.stalled.store(true, Ordering::SeqCst);
            }
            restore(fs, snap);
            Err(e)
        }
    }
}

/// Builds, writes and seals one commit, retrying without devices that fail on the way.
fn attempt_commit(
    fs: &FsInner,
    tid: u64,
    old: &Roots,
    snap: &Snapshot,
    clean: bool,
    op: Option<&PfsOp>,
) -> Result<(Built, Roots)> {
    let max_attempts = fs.vol.devices.len() + 1;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let t0 = std::time::Instant::now();
        // A large commit streams its data to the devices while it is built. The streams
        // end with the closure, and the scope waits for their writers, so every streamed
        // write has completed before the remaining blocks are written and each device
        // flushed (and before a failed attempt is retried on the same locations).
        let built = std::thread::scope(|s| {
            let streams = (snap.dirty_bytes >= writeout::STREAM_MIN_DIRTY).then(|| Streams::start(s, &fs.vol));
            let mut alloc = fs.alloc.lock();
            let r = build(fs, &mut alloc, tid, old, snap, streams.as_ref(), op);
            if r.is_err() {
                alloc.rollback();
            }
            r
        })?;
        let t1 = std::time::Instant::now();
        let failed = writeout::write_and_flush(&fs.vol, &built.arena);
        let t2 = std::time::Instant::now();
        if !failed.is_empty() {
            fs.alloc.lock().rollback();
            if fs.vol.devices.writable_count() == 0 || attempt >= max_attempts {
                return Err(Error::Io(std::io::Error::other("commit failed: no device accepted the new blocks")));
            }
            tracing::warn!(tid, ?failed, "retrying commit without the failed devices");
            continue;
        }
        let roots = resolve_roots(&built, tid);
        if header::write_headers(fs, &roots, snap.next_inum, clean) == 0 {
            fs.alloc.lock().rollback();
            return Err(Error::Io(std::io::Error::other("commit failed: no device accepted the new volume header")));
        }
        tracing::debug!(
            "commit {tid} phases: build and streamed writes {} ms, other blocks and flush {} ms, headers {} ms",
            (t1 - t0).as_millis(),
            (t2 - t1).as_millis(),
            t2.elapsed().as_millis()
        );
        return Ok((built, roots));
    }
}

fn snapshot(fs: &FsInner) -> Snapshot {
    let bs = fs.block_size();
    let _gate = fs.gate.write();
    let mut dirty: Vec<InodeRef> = fs.dirty.lock().drain().map(|(_, v)| v).collect();
    dirty.sort_by_key(|i| i.inum);
    let mut snap = Snapshot { inodes: Vec::with_capacity(dirty.len()), next_inum: 0, reserved: 0, dirty_bytes: 0 };
    for inode in dirty {
        let mut st = inode.state.write();
        st.queued = false;
        let mut overlay = std::mem::take(&mut st.dirty);
        if let Some(prev) = st.flushing.take() {
            overlay = prev.overlay.clone().absorb(overlay, bs);
        }
        snap.reserved += overlay.reserved;
        snap.dirty_bytes += overlay.dirty_bytes;
        let fl = Arc::new(Flushing {
            overlay,
            meta: st.meta.clone(),
            deleted: st.deleted,
            orphan: st.meta.nlink == 0 && !st.deleted,
        });
        st.flushing = Some(fl.clone());
        st.atime_dirty = false;
        let committed = st.committed.clone();
        drop(st);
        snap.inodes.push((inode, fl, committed));
    }
    snap.next_inum = fs.next_inum.load(Ordering::SeqCst);
    snap
}

fn orphan_ref(inum: u64, tid: u64) -> Blockref {
    Blockref {
        btype: BlockType::Orphan,
        keybits: 0,
        level: 0,
        flags: 0,
        key: inum,
        modify_tid: tid,
        mirror_tid: tid,
        data: BlockData::None,
        payload: Payload::None,
    }
}

fn build(
    fs: &FsInner,
    alloc: &mut crate::alloc::Allocator,
    tid: u64,
    old: &Roots,
    snap: &Snapshot,
    streams: Option<&Streams>,
    op: Option<&PfsOp>,
) -> Result<Built> {
    let mut b = Builder::new(&fs.vol, alloc, tid, streams);
    let codec = fs.default_codec(old);
    // SN1, SN5: while the served PFS's trees are rebuilt, what they drop and a snapshot
    // holds is kept for the dead list or left to the clone's origin (`pfs::write_record`
    // takes the sink back).
    if old.pfs.is_some() {
        b.referenced = Some((0, 0));
    }
    if let Some(p) = old.pfs.as_ref().filter(|p| p.newest_snapshot_tid > 0 || p.clone_floor > 0) {
        b.dead =
            Some(builder::DeadSink { threshold: p.newest_snapshot_tid, floor: p.clone_floor, entries: Vec::new() });
    }
    for br in fs.dropped_blocks.lock().iter() {
        b.free_ref(br);
    }
    let mut inode_changes = Vec::with_capacity(snap.inodes.len());
    let mut orphan_changes = Vec::new();
    let mut results = Vec::with_capacity(snap.inodes.len());
    for (inode, fl, committed) in &snap.inodes {
        let r = inode::commit_inode(&mut b, inode.inum, committed, fl, codec)?;
        inode_changes.push((inode.inum, r.change.clone()));
        let want_orphan = fl.orphan && !fl.deleted;
        if want_orphan != committed.orphan {
            let c = if want_orphan { Change::Put(PEntry::Ref(orphan_ref(inode.inum, tid))) } else { Change::Delete };
            orphan_changes.push((inode.inum, c));
        }
        results.push(r);
    }
    for inum in fs.stale_orphans.lock().iter() {
        orphan_changes.push((*inum, Change::Delete));
    }
    orphan_changes.sort_by_key(|c| c.0);
    orphan_changes.dedup_by_key(|c| c.0);
    let mut inodes = apply(&mut b, PRoot::from(&old.inodes), 1, true, &inode_changes)?;
    let mut orphans = apply(&mut b, PRoot::from(&old.orphans), 1, true, &orphan_changes)?;
    let hooked = match hook::current(fs) {
        Some(h) if h.is_active() => {
            let written: std::collections::HashSet<u64> = snap.inodes.iter().map(|(i, _, _)| i.inum).collect();
            Some(h.at_fixed_point(hook::FixedPoint {
                builder: &mut b,
                inodes: &mut inodes,
                orphans: &mut orphans,
                freemap_degraded: old.freemap.entries.iter().any(|b| b.is_degraded()),
                written: &written,
                keep_free: fs.space.reserved() + fs.space.meta_reserve(),
                pfs_op: op,
                old,
            })?)
        }
        _ => None,
    };
    // After every tree the record names, before the free map (which must see its blocks).
    let mut pfs = match &old.pfs {
        Some(p) => {
            let (records, dead) = hooked.as_ref().map_or((&[][..], None), |h| (&h.records[..], h.served_dead.as_ref()));
            Some(pfs::write_record(&mut b, p, &inodes, &orphans, snap.next_inum, op, records, dead)?)
        }
        None => None,
    };
    // Z3: the header that first names a compressed block carries `COMPRESSED` (the same
    // commit, so no crash leaves one without the other). Only version 2 compresses.
    if b.compressed
        && let Some(p) = pfs.as_mut()
    {
        p.roots.features |= hammer2_format::layout::feature::COMPRESSED;
    }
    // VC3: likewise `VARIABLE_COPIES` with the first DATA block of another copy count.
    if b.variable_copies
        && let Some(p) = pfs.as_mut()
    {
        p.roots.features |= hammer2_format::layout::feature::VARIABLE_COPIES;
    }
    let freemap = freemap::persist(&mut b, &old.freemap)?;
    let method = fs.vol.params.check;
    let mut arena = std::mem::take(&mut b.arena);
    arena.finalize(tid, method, b.alloc);
    Ok(Built { arena, roots: PRootSet { inodes, freemap, orphans }, inodes: results, hooked, pfs })
}

fn resolve_root(arena: &Arena, r: &PRoot) -> Root {
    Root { level: r.level, entries: r.entries.iter().map(|e| arena.resolve(e)).collect() }
}

fn resolve_roots(built: &Built, tid: u64) -> Roots {
    let inodes = resolve_root(&built.arena, &built.roots.inodes);
    let orphans = resolve_root(&built.arena, &built.roots.orphans);
    let pfs = built.pfs.as_ref().map(|p| {
        let mut r = p.roots.clone();
        r.table = resolve_root(&built.arena, &p.table);
        if let Some(rec) = r.served.as_mut() {
            rec.inode_root = inodes.to_ref();
            rec.orphan_root = orphans.to_ref();
            rec.dead_root = resolve_root(&built.arena, &p.dead).to_ref();
        }
        Box::new(r)
    });
    Roots { tid, inodes, freemap: resolve_root(&built.arena, &built.roots.freemap), orphans, pfs }
}

fn install(fs: &FsInner, snap: Snapshot, mut built: Built, roots: Roots) -> CommitReport {
    let tid = roots.tid;
    warm_cache(fs, &built.arena);
    *fs.roots.write() = roots;
    for ((inode, fl, _), r) in snap.inodes.iter().zip(&built.inodes) {
        let mut st = inode.state.write();
        st.flushing = None;
        if fl.deleted {
            if st.lookups == 0 {
                fs.inodes.remove(inode.inum);
            }
            continue;
        }
        let inode_ref = match &r.change {
            Change::Put(e) => Some(built.arena.resolve(e)),
            Change::Delete => None,
        };
        let content = match &r.content {
            Some(PendingContent::Embedded(b)) => Content::Embedded(b.clone()),
            Some(PendingContent::Tree(p)) => Content::Tree(resolve_root(&built.arena, p)),
            None => Content::Tree(Root::empty()),
        };
        st.committed =
            Arc::new(CommittedInode { inode_ref, content, orphan: fl.orphan && !fl.deleted, blocks: r.blocks });
        if st.dirty.data.is_empty() && st.dirty.trunc.is_none() {
            st.meta.blocks = r.blocks;
        }
    }
    fs.stale_orphans.lock().clear();
    fs.dropped_blocks.lock().clear();
    if let Some(out) = built.hooked.take() {
        install_rewritten(fs, &built.arena, &out.inodes);
        if let Some(installed) = out.on_installed {
            installed();
        }
    }
    let (blocks, bytes) = built.arena.totals();
    let trims = {
        let mut a = fs.alloc.lock();
        a.committed(tid);
        let placement = fs.vol.placement();
        fs.space
            .publish_capacity(placement.capacity_units(&a, &fs.vol.devices), placement.free_units(&a, &fs.vol.devices));
        a.take_trims(tid)
    };
    // Still under the commit lock: nothing can allocate these units before they are
    // discarded (C5).
    if !trims.is_empty() {
        tracing::debug!(tid, extents = trims.len(), units = trims.iter().map(|e| e.count).sum::<u64>(), "discarding");
    }
    discard::issue(&fs.vol.devices, &trims);
    fs.space.release(snap.reserved);
    fs.dirty_bytes.fetch_sub(snap.dirty_bytes.min(fs.dirty_bytes.load(Ordering::SeqCst)), Ordering::SeqCst);
    fs.dirty_inodes.fetch_sub(snap.inodes.len() as u64, Ordering::SeqCst);
    fs.stats.commits.fetch_add(1, Ordering::Relaxed);
    fs.stats.commit_blocks.fetch_add(blocks as u64, Ordering::Relaxed);
    fs.stats.commit_bytes.fetch_add(bytes, Ordering::Relaxed);
    *fs.committed_tid.lock() = tid;
    fs.commit_cv.notify_all();
    fs.inodes.evict_clean();
    return_freed_memory();
    CommitReport { tid, inodes: snap.inodes.len(), blocks, bytes }
}

/// Puts the nodes this commit wrote into the block cache. Each changed directory, file
/// map and the inode tree gets new nodes in every commit, and the next lookup in them
/// would otherwise read each one back from a device (a synchronous read on the path of
/// the next FUSE request). Only nodes: they are small and are read again at once, while
/// written file data is often never read back and would push them out.
fn warm_cache(fs: &FsInner, arena: &Arena) {
    for b in arena.blocks.iter().filter(|b| !b.dead) {
        if let (Some(done), Some(entries)) = (&b.done, &b.entries) {
            fs.vol.cache_node(done, entries.clone());
        }
    }
}

/// Hands the memory this commit freed (the flushed overlays, the arena) back to the system.
/// The blocks are small allocations that glibc keeps in its heaps after they are freed,
/// so without this the daemon's resident size stays at its high-water mark after every
/// burst of writes instead of following the `cache=` budget.
fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap pages; it is thread-safe and touches no
    // memory that is in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Inodes the commit hook rewrote (a resync slice): their in-memory committed state (if
/// loaded) moves to the new block and tree, which hold the same content with the missing
/// copies filled in.
fn install_rewritten(fs: &FsInner, arena: &Arena, inodes: &[(u64, PEntry, PRoot)]) {
    for (inum, entry, root) in inodes {
        let Some(inode) = fs.inodes.get(*inum) else { continue };
        let mut st = inode.state.write();
        let prev = st.committed.clone();
        st.committed = Arc::new(CommittedInode {
            inode_ref: Some(arena.resolve(entry)),
            content: Content::Tree(resolve_root(arena, root)),
            orphan: prev.orphan,
            blocks: prev.blocks,
        });
    }
}

/// A failed commit: put the flushing overlays back under the newer changes.
fn restore(fs: &FsInner, snap: Snapshot) {
    let bs = fs.block_size();
    // The snapshot's inodes are still counted; `touch` below counts again those not queued
    // since, so drop the snapshot's count first.
    fs.dirty_inodes.fetch_sub(snap.inodes.len() as u64, Ordering::SeqCst);
    for (inode, _, _) in snap.inodes {
        let mut st = inode.state.write();
        if let Some(fl) = st.flushing.take() {
            let upper = std::mem::take(&mut st.dirty);
            st.dirty = fl.overlay.clone().absorb(upper, bs);
        }
        fs.touch(&inode, &mut st);
    }
}
