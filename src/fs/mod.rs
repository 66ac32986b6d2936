//! The mounted filesystem's shared state and the inode table.
//!
//! Every piece of a mount's state is declared here or in this module's files, below the
//! modules that act on it (commit, maintenance, rejoin, resync): they import this one, never
//! the other way round, so the engine's module graph has no cycle (docs/DESIGN.md §1).

pub(crate) mod devchange;
pub(crate) mod inode_readahead;
pub(crate) mod rejoin;
pub(crate) mod resume;
pub(crate) mod scans;
pub(crate) mod snapviews;

use crate::alloc::Allocator;
use crate::alloc::space::Space;
use crate::copies::read::ReadCtx;
use crate::error::{Error, Result};
use crate::inode::{CommittedInode, Content, Inode, InodeRef, InodeState, Meta};
use crate::tree::{self, Root};
use crate::volume::Volume;
use hammer2_format::{BlockType, InodeBlock, InodeContent};
use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The committed roots: what the last durable volume headers point to.
#[derive(Debug, Clone, Default)]
pub struct Roots {
    pub tid: u64,
    pub inodes: Root,
    pub freemap: Root,
    pub orphans: Root,
    /// Version 2 with `PFS_TABLE`: the PFS table and the served PFS's record (where
    /// `inodes`, `orphans` and the inode counter are kept on disk); `None`: the volume
    /// header keeps them (version 1). See `pfs.rs`.
    pub pfs: Option<Box<PfsRoots>>,
}

/// The PFS table and the served PFS, as committed (`Roots::pfs`; read and written by
/// `pfs.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfsRoots {
    /// The PFS table (`sroot[3]`).
    pub table: Root,
    /// The record of the PFS this mount serves. Its inode and orphan roots and its counter
    /// are those of the commit's `Roots` (a commit writes a new record holding them).
    /// `None` in roots read for inspection only (`pfs::header_roots`): nothing is served.
    pub served: Option<hammer2_format::PfsRecord>,
    /// The create tid of the served PFS's newest snapshot (0: none): a block the served
    /// PFS drops that was born at or before it goes to the dead list, not the free map
    /// (SN1 in docs/DESIGN.md).
    pub newest_snapshot_tid: u64,
    /// For a clone (kind 3): the create tid of the snapshot it was made from. A block the
    /// clone drops that was born at or before it is that snapshot's: neither freed nor
    /// entered in a dead list (SN5 in docs/DESIGN.md). 0 for every other PFS.
    pub clone_floor: u64,
    /// Version-2 header fields a commit writes back as it found them.
    pub features: u64,
    pub default_compression: u8,
    pub default_zstd_level: u8,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub read_only: bool,
    /// Budget of the block cache, in bytes.
    pub cache_bytes: u64,
    /// Dirty data beyond this many bytes makes writers wait for a commit.
    pub dirty_limit: u64,
    /// Background commit interval.
    pub sync_interval: Duration,
    /// Mount even if member devices are missing.
    pub degraded: bool,
    /// Take this device's root as master when devices diverged (index into the device
    /// list given to `open`).
    pub master: Option<usize>,
    /// Run the background committer thread.
    pub background_sync: bool,
    /// Adopt a device without a valid header (a blank or wiped replacement) as the one
    /// missing member. Only scrub and resync ask for this: they rebuild it completely.
    pub replace: bool,
    /// Bytes of copies one commit's resync slice writes at most: a resync catches a device
    /// up in commits of about this size, and changes wait for each one no longer than that.
    pub resync_slice_bytes: u64,
    /// A device that comes back while mounted (`hammer2 device online`, the reconnect
    /// watcher) is caught up by a resync that starts by itself (`-o autoresync=off`: the
    /// operator runs `hammer2 resync`).
    pub autoresync: bool,
    /// The PFS to serve (format version 2; a version-1 filesystem has only "ROOT").
    pub pfs: String,
    /// `-o compression=`: what files without a setting of their own are compressed with
    /// (`Some(None)`: stored raw); `None` takes the volume header's default. Format
    /// version 2 only: a version-1 filesystem refuses it at mount.
    pub compression: Option<Option<crate::copies::compress::Codec>>,
}

/// Bytes of copies one resync slice writes at most by default.
pub const DEFAULT_RESYNC_SLICE_BYTES: u64 = 64 << 20;

/// Memory for blocks by default (see [`Options::with_memory`]).
pub const DEFAULT_MEMORY: u64 = 256 << 20;

impl Options {
    /// Options that keep the blocks held in memory within `bytes`: half for data not
    /// yet durable (writers wait for a commit beyond it; the commit in flight counts until
    /// it is installed), the rest for the block cache.
    pub fn with_memory(bytes: u64) -> Options {
        let dirty_limit = (bytes / 2).max(1 << 20);
        Options { cache_bytes: bytes.saturating_sub(dirty_limit), dirty_limit, ..Options::default() }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            read_only: false,
            cache_bytes: DEFAULT_MEMORY - DEFAULT_MEMORY / 2,
            dirty_limit: DEFAULT_MEMORY / 2,
            sync_interval: Duration::from_secs(5),
            degraded: false,
            master: None,
            background_sync: true,
            replace: false,
            resync_slice_bytes: DEFAULT_RESYNC_SLICE_BYTES,
            autoresync: true,
            pfs: hammer2_format::layout::ROOT_PFS_NAME.to_string(),
            compression: None,
        }
    }
}

const INODE_SHARDS: usize = 64;
/// Clean, unreferenced inodes are dropped from memory above this many.
const INODE_CACHE_TARGET: usize = 50_000;
/// Memory a changed inode costs until its commit is installed, beyond its data: the
/// inode block the commit builds (4 KiB) and its encoding (4 KiB). Counting it keeps a
/// burst of small creates, whose data is little, within the dirty limit too.
pub const DIRTY_INODE_COST: u64 = 8 << 10;

/// One shard of the inode table; foldhash rather than SipHash, since every request looks
/// its inode up here.
type InodeShard = HashMap<u64, InodeRef, foldhash::fast::RandomState>;

pub struct InodeTable {
    shards: Vec<Mutex<InodeShard>>,
}

impl Default for InodeTable {
    fn default() -> Self {
        InodeTable { shards: (0..INODE_SHARDS).map(|_| Mutex::new(InodeShard::default())).collect() }
    }
}

impl InodeTable {
    fn shard(&self, inum: u64) -> &Mutex<InodeShard> {
        &self.shards[(inum as usize) % INODE_SHARDS]
    }
    pub fn get(&self, inum: u64) -> Option<InodeRef> {
        self.shard(inum).lock().get(&inum).cloned()
    }
    /// Inserts unless present; returns the inode now in the table.
    pub fn insert(&self, inode: InodeRef) -> InodeRef {
        self.shard(inode.inum).lock().entry(inode.inum).or_insert(inode).clone()
    }
    pub fn remove(&self, inum: u64) {
        self.shard(inum).lock().remove(&inum);
    }
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Drops clean inodes nobody holds. Only entries whose Arc is held by the table alone
    /// are dropped, under the shard lock, so no other holder can be modifying them.
    pub fn evict_clean(&self) {
        if self.len() <= INODE_CACHE_TARGET {
            return;
        }
        for s in &self.shards {
            s.lock().retain(|_, ino| {
                if Arc::strong_count(ino) > 1 {
                    return true;
                }
                let st = ino.state.read();
                !(st.is_clean() && st.opens == 0 && st.lookups == 0)
            });
        }
    }
    pub fn all(&self) -> Vec<InodeRef> {
        self.shards.iter().flat_map(|s| s.lock().values().cloned().collect::<Vec<_>>()).collect()
    }
}

pub struct FsInner {
    pub vol: Volume,
    /// The inode read-ahead queue and its thread (`inode_readahead.rs`).
    pub(crate) inode_ahead: inode_readahead::InodeReadAhead,
    pub alloc: Mutex<Allocator>,
    pub space: Space,
    pub roots: RwLock<Roots>,
    pub inodes: InodeTable,
    /// Held shared by every operation that changes in-memory state, exclusively by the
    /// commit while it moves dirty overlays to flushing: a commit therefore captures the
    /// state between two whole operations, never half of one.
    pub gate: RwLock<()>,
    /// Inodes with changes in the open generation.
    pub dirty: Mutex<HashMap<u64, InodeRef>>,
    pub next_inum: AtomicU64,
    /// One commit at a time.
    pub commit_lock: Mutex<()>,
    /// Tid of the last completed commit, for waiters.
    pub committed_tid: Mutex<u64>,
    pub commit_cv: Condvar,
    /// Set when a commit is wanted soon (dirty pressure, space pressure).
    pub commit_wanted: AtomicBool,
    pub dirty_bytes: AtomicU64,
    /// Inodes changed and not yet committed: queued in the open generation or in the
    /// commit in flight (counted until it is installed).
    pub dirty_inodes: AtomicU64,
    pub opts: Options,
    /// Serializes renames that move a directory to another parent (loop check).
    pub rename_lock: Mutex<()>,
    /// A commit failed for a reason a retry cannot fix: refuse further changes.
    pub broken: AtomicBool,
    /// The last commit failed because no device was writable (R1 in docs/DESIGN.md §5):
    /// changes are refused until a commit succeeds again, which needs a device that a
    /// resync has brought back (`resync::rejoin`).
    pub stalled: AtomicBool,
    /// Remounted read-only (`mount -o remount,ro`): changes are refused until a remount rw.
    pub remounted_ro: AtomicBool,
    /// A scrub runs (`maintenance::scrub`): a second one is refused (M1 in docs/DESIGN.md §9).
    pub scrubbing: AtomicBool,
    /// What the running scrub was told (pause, cancel): `maintenance::scrub_command` sets
    /// it, the scrub reads it between batches.
    pub(crate) scrub_control: scans::ScanControl,
    /// The same for the running resync (`maintenance::resync_command`), read after each of
    /// its commits.
    pub(crate) resync_control: scans::ScanControl,
    /// The scrub or resync running now and the last scrub's result, for `status`.
    pub scans: scans::Scans,
    pub stopping: AtomicBool,
    pub stats: Stats,
    /// The commit hook that maintenance registered (`commit::hook`: resync), held opaquely
    /// because this layer sits below the commit and does not name it.
    pub(crate) commit_hook: Mutex<Option<Arc<dyn std::any::Any + Send + Sync>>>,
    /// Orphan-list entries that name no inode (left by damage): the next commit drops them.
    pub stale_orphans: Mutex<Vec<u64>>,
    /// Blocks of a tree that a repair replaced whole (fsck rebuilding a directory from
    /// what reads): the next commit drops them by the freeing rule (SN1, FK2).
    pub dropped_blocks: Mutex<Vec<hammer2_format::Blockref>>,
    /// What the mount found about the headers that `info` on the mount point repeats
    /// (`mount::Assembly::warnings`).
    pub mount_warnings: Vec<String>,
    /// Devices back while mounted: the reconnect watcher, automatic resyncs (`rejoin`).
    pub(crate) rejoin: rejoin::State,
    /// A device add or remove running now (`devchange`).
    pub(crate) devchange: devchange::State,
    /// The snapshots of the served PFS read through `.snapshots` (`vnops/snapview.rs`).
    pub(crate) snapviews: snapviews::Views,
}

#[derive(Default)]
pub struct Stats {
    pub commits: AtomicU64,
    pub commit_blocks: AtomicU64,
    pub commit_bytes: AtomicU64,
}

/// The committed roots with their trees pinned (C1): until this drops, no commit reuses
/// the space of a block they reference, so a walk of them (scrub, resync, usage, a remove's
/// checks) reads only their blocks, never one written since, and never "heals" a copy
/// over it.
pub(crate) struct PinnedRoots<'a> {
    fs: &'a FsInner,
    roots: Roots,
}

impl std::ops::Deref for PinnedRoots<'_> {
    type Target = Roots;
    fn deref(&self) -> &Roots {
        &self.roots
    }
}

impl Drop for PinnedRoots<'_> {
    fn drop(&mut self) {
        self.fs.alloc.lock().unpin(self.roots.tid);
    }
}

impl FsInner {
    /// VC3: whether the committed trees may hold blocks with a copy count other than N
    /// (`VARIABLE_COPIES`, set by the first commit that writes one); only then must a check
    /// of copy counts walk the metadata.
    pub(crate) fn variable_copies(&self) -> bool {
        self.roots
            .read()
            .pfs
            .as_ref()
            .is_some_and(|p| p.features & hammer2_format::layout::feature::VARIABLE_COPIES != 0)
    }

    /// The committed roots, pinned (`PinnedRoots`). Read under the allocator's lock: a
    /// commit installs its roots before it releases, under that lock, what it freed
    /// (`Allocator::committed`), so the roots read here are the newest, or older ones
    /// whose freed blocks are not yet released. Read first and pinned after, a commit
    /// could come between and release blocks of the roots being pinned.
    pub(crate) fn pinned_roots(&self) -> PinnedRoots<'_> {
        let mut alloc = self.alloc.lock();
        let roots = self.roots.read().clone();
        alloc.pin(roots.tid);
        PinnedRoots { fs: self, roots }
    }

    /// SR11: while a receive is being applied to the served PFS, or was interrupted (its
    /// resume token is in the PFS record, also after a crash), the PFS's files are not shown:
    /// looking a name up, listing a directory, opening a file or finding an inode by number
    /// answer Busy. What users see of a mirror is only ever a completed receive; the received
    /// snapshots stay readable (`.snapshots`, `-o pfs=NAME`). The receive itself works below
    /// these calls.
    pub(crate) fn check_not_receiving(&self) -> Result<(), crate::Error> {
        let roots = self.roots.read();
        match roots.pfs.as_ref().and_then(|p| p.served.as_ref()) {
            Some(s) if s.resume_token[0] != 0 => Err(crate::Error::Busy(format!(
                "PFS {:?} is receiving a stream (or its receive was interrupted): its files are shown when the receive completes; the received snapshots are readable meanwhile",
                s.name
            ))),
            _ => Ok(()),
        }
    }

    /// What files without a setting of their own are compressed with: `-o compression=`,
    /// else the header's default; never anything on a version-1 filesystem (no header
    /// field, no `COMPRESSED` bit to set).
    pub fn default_codec(&self, roots: &Roots) -> Option<crate::copies::compress::Codec> {
        let p = roots.pfs.as_ref()?;
        self.opts
            .compression
            .unwrap_or_else(|| crate::copies::compress::from_header(p.default_compression, p.default_zstd_level))
    }

    pub fn block_size(&self) -> u64 {
        self.vol.params.block_size()
    }

    /// Memory held for changes not yet committed (data plus changed inodes); writers wait
    /// above `dirty_limit`.
    pub fn dirty_load(&self) -> u64 {
        self.dirty_bytes.load(Ordering::SeqCst) + self.dirty_inodes.load(Ordering::SeqCst) * DIRTY_INODE_COST
    }

    /// Queues the inodes whose only change is their atime for the next commit (atime is
    /// otherwise written only along with another change).
    pub fn queue_atimes(&self) {
        let _g = self.gate.read();
        for inode in self.inodes.all() {
            let mut st = inode.state.write();
            if st.atime_dirty {
                self.touch(&inode, &mut st);
            }
        }
    }

    pub fn check_writable(&self) -> Result<()> {
        if self.vol.read_only || self.remounted_ro.load(Ordering::SeqCst) {
            return Err(Error::ReadOnly);
        }
        if self.broken.load(Ordering::SeqCst) || self.stalled.load(Ordering::SeqCst) {
            return Err(Error::Io(std::io::Error::from_raw_os_error(libc::EIO)));
        }
        Ok(())
    }

    /// The in-memory inode `inum`, loaded from the inode tree if needed.
    pub fn inode(&self, inum: u64) -> Result<InodeRef> {
        if let Some(i) = self.inodes.get(inum) {
            return Ok(i);
        }
        let br = locate_inode(self, &self.roots.read().inodes, inum)?;
        let inode = read_inode(&self.vol, br, inum)?;
        // If the inode was committed by a commit that installed between our lookup and
        // now, the table already holds the newer in-memory copy: `insert` returns it.
        Ok(self.inodes.insert(Arc::new(inode)))
    }

    pub fn state_from_block(block: &InodeBlock, br: hammer2_format::Blockref) -> InodeState {
        let content = match &block.content {
            InodeContent::Embedded(d) => Content::Embedded(Arc::new(d.clone())),
            InodeContent::Tree { root_level, entries } => {
                Content::Tree(Root { level: *root_level, entries: entries.clone() })
            }
        };
        let committed = CommittedInode { inode_ref: Some(br), content, orphan: block.nlink == 0, blocks: block.blocks };
        InodeState::new(Meta::from_block(block), committed)
    }

    /// Registers an inode as changed in the open generation.
    pub fn touch(&self, inode: &InodeRef, st: &mut InodeState) {
        if !st.queued {
            st.queued = true;
            self.dirty.lock().insert(inode.inum, inode.clone());
            self.dirty_inodes.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub fn alloc_inum(&self) -> u64 {
        self.next_inum.fetch_add(1, Ordering::SeqCst)
    }
}

use inode_readahead::WINDOW;

/// The reference of inode `inum` in the inode index `index` (the served PFS's, or a
/// snapshot's).
pub(crate) fn locate_inode(fs: &FsInner, index: &Root, inum: u64) -> Result<hammer2_format::Blockref> {
    let vol = &fs.vol;
    let (node, i) = tree::lookup_in_node(vol, index, inum)?.ok_or(Error::NotFound)?;
    let br = node[i];
    let window = |from: usize| &node[from.min(node.len())..(from + WINDOW).min(node.len())];
    let ahead = &fs.inode_ahead;
    // A miss first waits for (or takes back) the read-ahead of its window.
    let cached = vol.is_cached(&br) || {
        ahead.claim(inum);
        vol.is_cached(&br)
    };
    // Inodes committed together lie together on disk and in the index: bring in the
    // neighbours with the same request (a directory listing stats them next), and queue
    // the window after them for the read-ahead thread (`inode_readahead.rs`).
    if !cached {
        vol.prefetch(window(i));
        ahead.count_on_demand();
        ahead.queue(window(i + WINDOW));
    } else if ahead.reached(inum) {
        ahead.queue(window(i + WINDOW));
    }
    Ok(br)
}

/// Reads inode `inum` from its reference `br` (`locate_inode`).
pub(crate) fn read_inode(vol: &Volume, br: hammer2_format::Blockref, inum: u64) -> Result<Inode> {
    if br.btype != BlockType::Inode {
        return Err(Error::Corrupt(format!("inode tree entry {inum} is a {}", br.btype.name())));
    }
    let block = vol.read_inode_block(&br, &ReadCtx::inode(inum))?;
    if block.inum != inum {
        return Err(Error::Corrupt(format!("inode tree entry {inum} holds inode {}", block.inum)));
    }
    Ok(Inode { inum, state: RwLock::new(FsInner::state_from_block(&block, br)) })
}
