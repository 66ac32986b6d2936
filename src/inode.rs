//! In-memory inodes and their three generations of state.
//!
//! Every change a user makes lands in the inode's open `dirty` overlay. A commit starts by
//! moving every dirty overlay into `flushing` (all inodes at once, under the snapshot gate,
//! so a commit captures a state the filesystem actually passed through), and then writes
//! the flushing overlays onto the `committed` trees without holding any lock that users
//! need. Reads look through `dirty`, then `flushing`, then `committed`.
//!
//! The committed state (`CommittedInode`) is replaced only by the commit that wrote its
//! successor, under the inode's write lock; a reader holding the read lock can keep using
//! the old one, whose blocks stay allocated until after the swap.

use crate::tree::Root;
use hammer2_format::inode::{S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use hammer2_format::layout::ROOT_INUM;
use hammer2_format::{InodeBlock, InodeContent, Timespec};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Attributes, authoritative in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub rdev: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub btime: Timespec,
    pub parent: u64,
    pub version: u64,
    pub create_tid: u64,
    /// Bytes of data blocks as stored (committed, plus an estimate for dirty blocks).
    pub blocks: u64,
    /// Layout-2 settings (compression; format version 2). A directory's are inherited by
    /// the files and directories made in it.
    pub policy: hammer2_format::InodePolicy,
}

impl Meta {
    /// The root directory of a new filesystem (mkfs) or PFS: empty, owned by root, mode
    /// 0755, made now by commit `create_tid`.
    pub fn fresh_root_dir(create_tid: u64) -> Meta {
        let now = Timespec::now();
        Meta {
            mode: S_IFDIR | 0o755,
            uid: 0,
            gid: 0,
            nlink: 2,
            size: 0,
            rdev: 0,
            atime: now,
            mtime: now,
            ctime: now,
            btime: now,
            parent: ROOT_INUM,
            version: 1,
            create_tid,
            blocks: 0,
            policy: Default::default(),
        }
    }

    pub fn kind(&self) -> u32 {
        self.mode & S_IFMT
    }
    pub fn is_dir(&self) -> bool {
        self.kind() == S_IFDIR
    }
    pub fn is_reg(&self) -> bool {
        self.kind() == S_IFREG
    }
    pub fn is_symlink(&self) -> bool {
        self.kind() == S_IFLNK
    }
    /// Files and symlinks hold data blocks (and may embed small content).
    pub fn has_data(&self) -> bool {
        self.is_reg() || self.is_symlink()
    }

    pub fn from_block(b: &InodeBlock) -> Meta {
        Meta {
            mode: b.mode,
            uid: b.uid,
            gid: b.gid,
            nlink: b.nlink,
            size: b.size,
            rdev: b.rdev,
            atime: b.atime,
            mtime: b.mtime,
            ctime: b.ctime,
            btime: b.btime,
            parent: b.parent,
            version: b.version,
            create_tid: b.create_tid,
            blocks: b.blocks,
            policy: b.policy,
        }
    }

    pub fn to_block(&self, inum: u64, content: InodeContent) -> InodeBlock {
        InodeBlock {
            inum,
            parent: self.parent,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            nlink: self.nlink,
            size: self.size,
            rdev: self.rdev,
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
            btime: self.btime,
            version: self.version,
            create_tid: self.create_tid,
            blocks: self.blocks,
            policy: self.policy,
            content,
        }
    }
}

/// Content as of the last commit.
#[derive(Debug, Clone)]
pub enum Content {
    Embedded(Arc<Vec<u8>>),
    Tree(Root),
}

#[derive(Debug, Clone)]
pub struct CommittedInode {
    /// The INODE reference in the inode tree (None: never committed).
    pub inode_ref: Option<hammer2_format::Blockref>,
    pub content: Content,
    /// The inode is in the orphan list (unlinked while open).
    pub orphan: bool,
    /// Exact bytes of DATA blocks in `content`.
    pub blocks: u64,
}

impl CommittedInode {
    pub fn new_empty() -> CommittedInode {
        CommittedInode { inode_ref: None, content: Content::Tree(Root::empty()), orphan: false, blocks: 0 }
    }
}

/// A directory entry or extended attribute as held in an overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leaf {
    Dirent { name: Vec<u8>, inum: u64, dtype: u8 },
    Xattr { name: Vec<u8>, value: Vec<u8> },
}

/// Changes made since a point in time.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    /// File data blocks by block index; a buffer holds bytes `[0, len)` of its block (len a
    /// multiple of 4 KiB, at most the block size); the rest of the block is zero, and so are
    /// the bytes past the file size.
    pub data: BTreeMap<u64, Arc<Vec<u8>>>,
    /// Lowest size a truncate set while this overlay was open: data of lower layers at or
    /// beyond it is gone (the block holding it was copied into `data` first).
    pub trunc: Option<u64>,
    /// Directory entries and extended attributes by key: new value, or None for removed.
    pub leaves: BTreeMap<u64, Option<Leaf>>,
    /// Units reserved in `Space` for this overlay's commit.
    pub reserved: u64,
    /// Bytes of dirty data held (for the dirty-data limit).
    pub dirty_bytes: u64,
}

impl Overlay {
    pub fn is_empty(&self) -> bool {
        self.data.is_empty() && self.trunc.is_none() && self.leaves.is_empty()
    }

    /// Stacks `upper` (newer) on `self` (older) into one overlay, for a commit that failed
    /// and must be retried together with what came after it.
    pub fn absorb(mut self, upper: Overlay, block_size: u64) -> Overlay {
        if let Some(t) = upper.trunc {
            let first_gone = t.div_ceil(block_size);
            self.data.retain(|&k, _| k < first_gone);
            self.trunc = Some(self.trunc.map_or(t, |x| x.min(t)));
        }
        self.data.extend(upper.data);
        self.leaves.extend(upper.leaves);
        self.reserved += upper.reserved;
        self.dirty_bytes = self.data.values().map(|b| b.len() as u64).sum();
        self
    }
}

/// What a commit takes from an inode.
#[derive(Debug, Clone)]
pub struct Flushing {
    pub overlay: Overlay,
    pub meta: Meta,
    /// Remove the inode (nlink 0 and no longer open).
    pub deleted: bool,
    /// Unlinked but still open: keep it, listed in the orphan tree.
    pub orphan: bool,
}

#[derive(Debug)]
pub struct InodeState {
    pub meta: Meta,
    pub committed: Arc<CommittedInode>,
    pub dirty: Overlay,
    pub flushing: Option<Arc<Flushing>>,
    /// Registered in the filesystem's dirty set for the open generation.
    pub queued: bool,
    /// Only atime changed since the last commit: written when something else is, or at
    /// unmount (atime is cheap and need not be exact on crash).
    pub atime_dirty: bool,
    /// nlink reached 0 and the last open is gone: the next commit removes the inode.
    pub deleted: bool,
    pub opens: u32,
    /// Kernel lookup references (FUSE nlookup); the inode stays in memory while non-zero.
    pub lookups: u64,
}

impl InodeState {
    pub fn new(meta: Meta, committed: CommittedInode) -> InodeState {
        InodeState {
            meta,
            committed: Arc::new(committed),
            dirty: Overlay::default(),
            flushing: None,
            queued: false,
            atime_dirty: false,
            deleted: false,
            opens: 0,
            lookups: 0,
        }
    }

    /// True when nothing about this inode waits for a commit.
    pub fn is_clean(&self) -> bool {
        !self.queued && self.flushing.is_none() && !self.atime_dirty && self.dirty.is_empty()
    }
}

pub struct Inode {
    pub inum: u64,
    pub state: RwLock<InodeState>,
}

pub type InodeRef = Arc<Inode>;
