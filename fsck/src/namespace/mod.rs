//! Inodes and directory entries: what the walk saw, and the checks over all of it
//! (`analyze.rs`): link counts against the entries that name each inode, entries that
//! point to nothing, `..`, directories reachable twice, loops, orphans, sizes and the
//! `blocks` count; `paths.rs` names inodes for messages.

pub mod analyze;
mod attributes;
pub mod paths;

use crate::report::FindingId;
use hammer2_format::inode::{S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use hammer2_format::{Blockref, InodeBlock};
use std::collections::{BTreeMap, HashMap};

/// What the check keeps of one decoded inode.
#[derive(Debug, Clone)]
pub struct InodeInfo {
    pub mode: u32,
    pub nlink: u32,
    pub size: u64,
    pub parent: u64,
    pub blocks: u64,
    /// Bytes of the DATA blocks found in its tree.
    pub data_bytes: u64,
    /// Some block of its tree could not be read or decoded: what lies below is unknown.
    pub tree_damaged: bool,
    /// Offset of the first data block at or past the end of the file.
    pub past_eof: Option<u64>,
    /// Extended attributes whose blocks cannot be used: (key, the finding).
    pub bad_xattrs: Vec<(u64, FindingId)>,
    /// Findings about blocks of its tree that cannot be used.
    pub damage: Vec<FindingId>,
    /// Key of its last data block when bytes past the end of the file are not zero.
    pub dirty_tail: Option<u64>,
}

impl InodeInfo {
    pub fn kind(&self) -> u32 {
        self.mode & S_IFMT
    }
    pub fn is_dir(&self) -> bool {
        self.kind() == S_IFDIR
    }
    pub fn has_data(&self) -> bool {
        matches!(self.kind(), S_IFREG | S_IFLNK)
    }
}

/// One directory entry as found.
#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: u64,
    pub key: u64,
    pub target: u64,
    pub dtype: u8,
    /// None when the name lives in a block that cannot be read.
    pub name: Option<Vec<u8>>,
    /// The finding about the unreadable name block, if any.
    pub name_finding: Option<FindingId>,
}

#[derive(Default)]
pub struct Namespace {
    pub inodes: HashMap<u64, InodeInfo>,
    /// Index entries whose inode block cannot be used, with the finding that says so.
    pub lost: BTreeMap<u64, (Blockref, FindingId)>,
    pub entries: Vec<Entry>,
    /// Keys of the orphan list.
    pub orphans: Vec<u64>,
    /// Some node of the inode index could not be read: inodes may exist that were not seen.
    pub index_incomplete: bool,
    /// Some node of the orphan list could not be read.
    pub orphans_incomplete: bool,
}

impl Namespace {
    pub fn inode(&mut self, ino: &InodeBlock) {
        self.inodes.insert(
            ino.inum,
            InodeInfo {
                mode: ino.mode,
                nlink: ino.nlink,
                size: ino.size,
                parent: ino.parent,
                blocks: ino.blocks,
                data_bytes: 0,
                tree_damaged: false,
                past_eof: None,
                bad_xattrs: Vec::new(),
                damage: Vec::new(),
                dirty_tail: None,
            },
        );
    }

    pub fn lost_inode(&mut self, inum: u64, br: Blockref, finding: FindingId) {
        self.lost.insert(inum, (br, finding));
    }

    pub fn data(&mut self, inum: u64, key: u64, size: u32) {
        if let Some(i) = self.inodes.get_mut(&inum) {
            i.data_bytes += u64::from(size);
            if key >= i.size && i.past_eof.is_none_or(|o| key < o) {
                i.past_eof = Some(key);
            }
        }
    }

    pub fn dirty_tail(&mut self, inum: u64, key: u64) {
        if let Some(i) = self.inodes.get_mut(&inum) {
            i.dirty_tail = Some(key);
        }
    }

    pub fn tree_damaged(&mut self, inum: u64, finding: FindingId) {
        if let Some(i) = self.inodes.get_mut(&inum) {
            i.tree_damaged = true;
            i.damage.push(finding);
        }
    }

    pub fn bad_xattr(&mut self, inum: u64, key: u64, finding: FindingId) {
        if let Some(i) = self.inodes.get_mut(&inum) {
            i.bad_xattrs.push((key, finding));
        }
    }

    pub fn entry(&mut self, e: Entry) {
        self.entries.push(e);
    }

    pub fn orphan(&mut self, inum: u64) {
        self.orphans.push(inum);
    }

    /// Counts for the summary: (inodes, directories, files).
    pub fn counts(&self) -> (u64, u64, u64) {
        let dirs = self.inodes.values().filter(|i| i.is_dir()).count() as u64;
        let files = self.inodes.values().filter(|i| i.kind() == S_IFREG).count() as u64;
        (self.inodes.len() as u64, dirs, files)
    }
}
