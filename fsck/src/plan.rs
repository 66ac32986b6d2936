//! The repairs the checks ask for, before any is made. Every action names the findings it
//! resolves, so that when the repair commit succeeds they are marked repaired (and when
//! it fails, failed). The analysis only puts an action in the plan when the mode allows
//! it: `-y` everything, `-p` only what is safe without asking.

use crate::report::FindingId;
use hammer2_format::Blockref;
use std::collections::BTreeMap;

/// A change to one directory entry.
#[derive(Debug, Clone)]
pub enum EntryChange {
    Drop {
        key: u64,
    },
    /// Rewrite the entry at `key` (same name and target, new type).
    Retype {
        key: u64,
        name: Vec<u8>,
        target: u64,
        dtype: u8,
    },
    /// Move the entry to a free key of its name's hash range.
    Rekey {
        key: u64,
        name: Vec<u8>,
        target: u64,
        dtype: u8,
    },
}

/// Where a directory's parent link should point after the repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentRef {
    Inode(u64),
    /// The lost+found directory (which the repair may create).
    LostFound,
}

/// Attribute fixes of one inode (absolute target values).
#[derive(Debug, Clone, Default)]
pub struct InodeFix {
    pub nlink: Option<u32>,
    /// Directories: the number of entries after the repair (lost+found links excluded
    /// when lost+found is created by the repair: it starts empty and counts its own).
    pub size: Option<u64>,
    pub parent: Option<ParentRef>,
    pub blocks: Option<u64>,
    /// Drop the data at and past this size.
    pub truncate: Option<u64>,
    /// Rewrite the file's last block (at this key) with zeros past the end of the file.
    pub zero_tail: Option<u64>,
    /// Take the inode off the orphan list (it is still linked).
    pub unorphan: bool,
    /// Extended attributes whose blocks cannot be read: dropped.
    pub drop_xattrs: Vec<u64>,
}

/// lost+found and what goes into it.
#[derive(Debug, Clone, Default)]
pub struct LostFound {
    /// The existing directory, or None to create one named `name` in the root.
    pub existing: Option<u64>,
    pub name: Vec<u8>,
    /// (entry name, inode, DT_* type).
    pub links: Vec<(Vec<u8>, u64, u8)>,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Index entries whose inode block cannot be used: (inum, its reference, listed in
    /// the orphan list).
    pub remove_inodes: Vec<(u64, Blockref, bool)>,
    /// Orphan-list entries that name no inode.
    pub drop_orphans: Vec<u64>,
    /// Directories whose tree is rebuilt from the leaves that can still be read.
    pub rebuild_dirs: Vec<u64>,
    pub entries: BTreeMap<u64, Vec<EntryChange>>,
    pub lost_found: Option<LostFound>,
    pub inodes: BTreeMap<u64, InodeFix>,
    pub next_inum: Option<u64>,
    /// Findings resolved when the plan is committed, with how.
    pub resolves: Vec<(FindingId, String)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.remove_inodes.is_empty()
            && self.drop_orphans.is_empty()
            && self.rebuild_dirs.is_empty()
            && self.entries.is_empty()
            && self.lost_found.is_none()
            && self.inodes.is_empty()
            && self.next_inum.is_none()
    }

    pub fn fix(&mut self, inum: u64) -> &mut InodeFix {
        self.inodes.entry(inum).or_default()
    }

    pub fn entry(&mut self, dir: u64, c: EntryChange) {
        self.entries.entry(dir).or_default().push(c);
    }

    pub fn resolves(&mut self, id: FindingId, how: impl Into<String>) {
        self.resolves.push((id, how.into()));
    }
}
