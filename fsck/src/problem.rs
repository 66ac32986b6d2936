//! What can be wrong, and where: the typed problems fsck reports, with their messages.

use serde::Serialize;
use std::fmt;

/// Where a block sits in the filesystem, for messages.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BlockAt {
    /// Block type: data, inode, indirect, dirent, xattr, freemap, orphan.
    pub block: &'static str,
    /// Which tree: "inodes", "freemap", "orphans" or "inode" (an inode's own tree).
    pub tree: &'static str,
    pub key: u64,
    /// The inode the block belongs to (its own inode block, or a block of its tree).
    pub inum: Option<u64>,
    /// The inode's path, when the namespace check could name it.
    pub path: Option<String>,
}

impl BlockAt {
    fn owner(&self) -> String {
        match (&self.path, self.inum) {
            (Some(p), Some(i)) => format!("{p} (inode {i})"),
            (None, Some(i)) => format!("inode {i}"),
            _ => "?".to_string(),
        }
    }
}

impl fmt::Display for BlockAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.block, self.tree) {
            ("data", _) => write!(f, "data block of {} at offset {}", self.owner(), self.key),
            ("inode", _) => write!(f, "inode block of {}", self.owner()),
            ("dirent", _) => write!(f, "name block of an entry (key {:#x}) of directory {}", self.key, self.owner()),
            ("xattr", _) => write!(f, "extended attribute block (key {:#x}) of {}", self.key, self.owner()),
            ("freemap", _) => {
                let (d, l) = hammer2_format::freemap_key_split(self.key);
                write!(f, "free-map leaf {l} of device {d}")
            }
            ("orphan", _) => write!(f, "orphan-list entry of inode {}", self.key),
            (b, "inode") => write!(f, "{b} block of {} (keys from {:#x})", self.owner(), self.key),
            (b, "inodes") => write!(f, "{b} block of the inode index (inodes from {})", self.key),
            (b, "freemap") => write!(f, "{b} block of the free map (keys from {:#x})", self.key),
            (b, t) => write!(f, "{b} block of the {t} tree (keys from {:#x})", self.key),
        }
    }
}

/// A directory entry, for messages: the directory's path (when known) and the name.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EntryAt {
    pub dir: u64,
    pub dir_path: Option<String>,
    pub name: String,
}

impl fmt::Display for EntryAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.dir_path.as_deref() {
            Some("/") => write!(f, "/{}", self.name),
            Some(p) => write!(f, "{p}/{}", self.name),
            None => write!(f, "{} in directory inode {}", self.name, self.dir),
        }
    }
}

/// One problem. Every variant says what and where; `Finding` adds whether it was repaired.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// A volume header slot that holds something other than a valid header of this
    /// filesystem (and is not simply unwritten).
    HeaderSlotDamaged {
        device: String,
        slot: usize,
        why: String,
    },
    /// A device whose newest valid header is older than the master's although the master
    /// says it received that commit (its newest slot was lost).
    HeaderBehind {
        device: String,
        tid: u64,
        master_tid: u64,
    },
    /// A device given on the command line that is not a usable member.
    DeviceUnrecognized {
        device: String,
        why: String,
    },
    /// A member of the filesystem that was not given (or not found).
    DeviceMissing {
        index: usize,
        uuid: String,
    },
    /// A member that missed commits and still lacks blocks written since.
    DeviceStale {
        device: String,
        index: usize,
        missed_since: u64,
    },
    /// A member that was modified apart from the master.
    DeviceDiverged {
        device: String,
        index: usize,
    },
    /// A member whose recorded size disagrees with the device.
    DeviceSize {
        device: String,
        recorded: u64,
        actual: u64,
    },
    /// One copy of a block is bad; another copy is good.
    BadCopy {
        at: BlockAt,
        device: String,
        copy: usize,
        offset: u64,
        why: String,
    },
    /// No copy of the block is good: its content is lost.
    Unreadable {
        at: BlockAt,
        why: String,
    },
    /// The block's content passed its check value but is not a valid structure, or the
    /// reference does not belong where it is.
    Malformed {
        at: BlockAt,
        why: String,
    },
    /// The tree's shape: key order and ranges, levels, sizes, transaction ids.
    Structure {
        at: BlockAt,
        why: String,
    },
    /// Copies that are MISSING (never written: their device was away) on one device.
    MissingCopies {
        device: String,
        index: usize,
        blocks: u64,
        bytes: u64,
    },
    /// Copies placed against the layout (fewer copies, two on one device, wrong region).
    Placement {
        at: BlockAt,
        why: String,
    },
    /// A reference without the DEGRADED flag above a MISSING copy: resync would skip it.
    DegradedFlag {
        at: BlockAt,
    },
    /// Units used by two blocks.
    SharedBlock {
        device: String,
        offset: u64,
        bytes: u64,
        second: BlockAt,
        first: Option<BlockAt>,
    },
    /// Units marked allocated that no block uses.
    Leaked {
        device: String,
        offset: u64,
        bytes: u64,
    },
    /// Units used by a block but marked free: the allocator would hand them out again.
    MarkedFree {
        device: String,
        offset: u64,
        bytes: u64,
    },
    /// A free-map leaf that is missing, extra, or whose recorded count is wrong.
    FreeMapLeaf {
        device: u64,
        leaf: u64,
        why: String,
    },
    /// The free count a device's header entry records differs from its free map.
    HeaderFreeCount {
        device: String,
        recorded: u64,
        actual: u64,
    },
    /// The root directory is missing or unusable.
    NoRoot {
        why: String,
    },
    /// Inode attributes that make no sense (file type, symlink length).
    BadInode {
        inum: u64,
        path: Option<String>,
        why: String,
    },
    LinkCount {
        inum: u64,
        path: Option<String>,
        recorded: u32,
        actual: u32,
    },
    /// A directory's size is its number of entries.
    DirSize {
        inum: u64,
        path: Option<String>,
        recorded: u64,
        actual: u64,
    },
    /// `blocks` (bytes of data blocks) disagrees with the tree.
    BlocksCount {
        inum: u64,
        path: Option<String>,
        recorded: u64,
        actual: u64,
    },
    /// The bytes of a file's last block past its end are not zero (extending the file
    /// would show them).
    TailNotZero {
        inum: u64,
        path: Option<String>,
        size: u64,
    },
    /// Data blocks at or past the end of the file.
    DataPastEof {
        inum: u64,
        path: Option<String>,
        size: u64,
        offset: u64,
    },
    /// A directory entry naming an inode that does not exist.
    DanglingEntry {
        entry: EntryAt,
        target: u64,
    },
    /// A directory entry whose name is not a valid name.
    BadName {
        entry: EntryAt,
        key: u64,
    },
    /// A directory entry stored under a key its name does not hash to (lookup cannot find it).
    EntryKey {
        entry: EntryAt,
        key: u64,
        expected: u64,
    },
    /// Two entries with the same name in one directory.
    DuplicateName {
        entry: EntryAt,
        key: u64,
    },
    /// A directory entry whose type disagrees with the inode's.
    EntryType {
        entry: EntryAt,
        recorded: u8,
        actual: u8,
    },
    /// A directory named by more than one entry (only one can be its parent link).
    DirLinkedTwice {
        inum: u64,
        path: Option<String>,
        extra: EntryAt,
    },
    /// A directory's parent (`..`) disagrees with the entry that names it.
    DotDot {
        inum: u64,
        path: Option<String>,
        recorded: u64,
        actual: u64,
    },
    /// An inode no directory reaches (or a directory cycle cut loose from the root).
    Unreachable {
        inum: u64,
        file_type: &'static str,
        why: String,
    },
    /// An orphan-list entry naming an inode that is missing or still linked.
    OrphanEntry {
        inum: u64,
        why: String,
    },
    /// The next inode number in the header is not above every inode number in use.
    NextInum {
        recorded: u64,
        needed: u64,
    },
    /// A part of the tree could not be read, so the checks below it were not made.
    Incomplete {
        what: String,
    },
    /// Blocks need a feature bit the volume header lacks (`features.rs`).
    FeatureMissing {
        feature: String,
        version: u32,
        blocks: u64,
        what: String,
        first: BlockAt,
        /// The PFS of `first` when it is not ROOT.
        pfs: Option<String>,
    },
}

impl Problem {
    /// Short name of the kind (as in JSON), for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::HeaderSlotDamaged { .. } => "header_slot_damaged",
            Problem::HeaderBehind { .. } => "header_behind",
            Problem::DeviceUnrecognized { .. } => "device_unrecognized",
            Problem::DeviceMissing { .. } => "device_missing",
            Problem::DeviceStale { .. } => "device_stale",
            Problem::DeviceDiverged { .. } => "device_diverged",
            Problem::DeviceSize { .. } => "device_size",
            Problem::BadCopy { .. } => "bad_copy",
            Problem::Unreadable { .. } => "unreadable",
            Problem::Malformed { .. } => "malformed",
            Problem::Structure { .. } => "structure",
            Problem::MissingCopies { .. } => "missing_copies",
            Problem::Placement { .. } => "placement",
            Problem::DegradedFlag { .. } => "degraded_flag",
            Problem::SharedBlock { .. } => "shared_block",
            Problem::Leaked { .. } => "leaked",
            Problem::MarkedFree { .. } => "marked_free",
            Problem::FreeMapLeaf { .. } => "free_map_leaf",
            Problem::HeaderFreeCount { .. } => "header_free_count",
            Problem::NoRoot { .. } => "no_root",
            Problem::BadInode { .. } => "bad_inode",
            Problem::LinkCount { .. } => "link_count",
            Problem::DirSize { .. } => "dir_size",
            Problem::BlocksCount { .. } => "blocks_count",
            Problem::DataPastEof { .. } => "data_past_eof",
            Problem::TailNotZero { .. } => "tail_not_zero",
            Problem::DanglingEntry { .. } => "dangling_entry",
            Problem::BadName { .. } => "bad_name",
            Problem::EntryKey { .. } => "entry_key",
            Problem::DuplicateName { .. } => "duplicate_name",
            Problem::EntryType { .. } => "entry_type",
            Problem::DirLinkedTwice { .. } => "dir_linked_twice",
            Problem::DotDot { .. } => "dot_dot",
            Problem::Unreachable { .. } => "unreachable",
            Problem::OrphanEntry { .. } => "orphan_entry",
            Problem::NextInum { .. } => "next_inum",
            Problem::Incomplete { .. } => "incomplete",
            Problem::FeatureMissing { .. } => "feature_missing",
        }
    }

    /// Inode numbers whose paths the message would like to show.
    pub(crate) fn fill_paths(&mut self, path: &dyn Fn(u64) -> Option<String>) {
        let at_fill = |at: &mut BlockAt| {
            if at.path.is_none() {
                at.path = at.inum.and_then(path);
            }
        };
        match self {
            Problem::BadCopy { at, .. }
            | Problem::Unreadable { at, .. }
            | Problem::Malformed { at, .. }
            | Problem::Structure { at, .. }
            | Problem::Placement { at, .. }
            | Problem::DegradedFlag { at } => at_fill(at),
            Problem::FeatureMissing { first, pfs: None, .. } => at_fill(first),
            Problem::SharedBlock { second, first, .. } => {
                at_fill(second);
                if let Some(f) = first {
                    at_fill(f);
                }
            }
            Problem::BadInode { inum, path: p, .. }
            | Problem::LinkCount { inum, path: p, .. }
            | Problem::DirSize { inum, path: p, .. }
            | Problem::BlocksCount { inum, path: p, .. }
            | Problem::DataPastEof { inum, path: p, .. }
            | Problem::TailNotZero { inum, path: p, .. }
            | Problem::DotDot { inum, path: p, .. } => *p = p.take().or_else(|| path(*inum)),
            Problem::DirLinkedTwice { inum, path: p, extra } => {
                if p.is_none() {
                    *p = path(*inum);
                }
                if extra.dir_path.is_none() {
                    extra.dir_path = path(extra.dir);
                }
            }
            Problem::BadName { entry, .. }
            | Problem::DanglingEntry { entry, .. }
            | Problem::EntryKey { entry, .. }
            | Problem::DuplicateName { entry, .. }
            | Problem::EntryType { entry, .. } => entry.dir_path = entry.dir_path.take().or_else(|| path(entry.dir)),
            _ => {}
        }
    }
}

fn named(inum: u64, path: &Option<String>) -> String {
    match path {
        Some(p) => format!("{p} (inode {inum})"),
        None => format!("inode {inum}"),
    }
}

pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::HeaderSlotDamaged { device, slot, why } => {
                write!(f, "{device}: volume header slot {slot} is damaged ({why})")
            }
            Problem::HeaderBehind { device, tid, master_tid } => write!(
                f,
                "{device}: newest valid volume header is commit {tid}, but the device received commit {master_tid}"
            ),
            Problem::DeviceUnrecognized { device, why } => write!(f, "{device}: not a usable member ({why})"),
            Problem::DeviceMissing { index, uuid } => {
                write!(f, "device {index} (uuid {uuid}) is missing: blocks on it were not checked")
            }
            Problem::DeviceStale { device, index, missed_since } => write!(
                f,
                "{device} (device {index}) is stale: it missed the commits since {missed_since} (run hammer2 resync)"
            ),
            Problem::DeviceDiverged { device, index } => write!(
                f,
                "{device} (device {index}) diverged from the master: its copies need a resync (run hammer2 resync)"
            ),
            Problem::DeviceSize { device, recorded, actual } => {
                write!(f, "{device}: the filesystem records {recorded} bytes, the device has {actual}")
            }
            Problem::BadCopy { at, device, copy, offset, why } => {
                write!(f, "bad copy {copy} of the {at}, on {device} at offset {offset}: {why}")
            }
            Problem::Unreadable { at, why } => write!(f, "no good copy of the {at}: {why}"),
            Problem::Malformed { at, why } => write!(f, "malformed {at}: {why}"),
            Problem::Structure { at, why } => write!(f, "tree structure at the {at}: {why}"),
            Problem::MissingCopies { device, index, blocks, bytes: b } => write!(
                f,
                "{blocks} block(s) ({}) have no copy on {device} (device {index}) yet (run hammer2 resync)",
                bytes(*b)
            ),
            Problem::Placement { at, why } => write!(f, "copies of the {at} are misplaced: {why}"),
            Problem::DegradedFlag { at } => {
                write!(f, "the {at} lacks the DEGRADED flag although a copy below it is missing")
            }
            Problem::SharedBlock { device, offset, bytes: b, second, first } => {
                write!(f, "{device} offset {offset} ({}) is used by the {second}", bytes(*b))?;
                match first {
                    Some(a) => write!(f, " and by the {a}"),
                    None => write!(f, " and by another block"),
                }
            }
            Problem::Leaked { device, offset, bytes: b } => {
                write!(f, "{device} offset {offset} ({}) is marked in use but no block uses it (leaked)", bytes(*b))
            }
            Problem::MarkedFree { device, offset, bytes: b } => {
                write!(f, "{device} offset {offset} ({}) is in use but marked free in the free map", bytes(*b))
            }
            Problem::FreeMapLeaf { device, leaf, why } => write!(f, "free-map leaf {leaf} of device {device}: {why}"),
            Problem::HeaderFreeCount { device, recorded, actual } => {
                write!(f, "{device}: the volume header records {recorded} free units, the free map has {actual}")
            }
            Problem::NoRoot { why } => write!(f, "the root directory is unusable: {why}"),
            Problem::BadInode { inum, path, why } => write!(f, "{}: {why}", named(*inum, path)),
            Problem::LinkCount { inum, path, recorded, actual } => {
                write!(f, "{}: link count is {recorded}, should be {actual}", named(*inum, path))
            }
            Problem::DirSize { inum, path, recorded, actual } => {
                write!(f, "directory {}: size is {recorded}, it has {actual} entries", named(*inum, path))
            }
            Problem::BlocksCount { inum, path, recorded, actual } => {
                write!(f, "{}: records {recorded} bytes of data blocks, its tree has {actual}", named(*inum, path))
            }
            Problem::TailNotZero { inum, path, size } => {
                write!(f, "{}: the bytes after its end ({size}) in its last block are not zero", named(*inum, path))
            }
            Problem::DataPastEof { inum, path, size, offset } => {
                write!(
                    f,
                    "{}: data block at offset {offset} lies past the end of the file ({size} bytes)",
                    named(*inum, path)
                )
            }
            Problem::DanglingEntry { entry, target } => {
                write!(f, "entry {entry} names inode {target}, which does not exist")
            }
            Problem::BadName { entry, key } => write!(
                f,
                "directory {}: entry {key:#x} has an invalid name {:?}",
                named(entry.dir, &entry.dir_path),
                entry.name
            ),
            Problem::EntryKey { entry, key, expected } => write!(
                f,
                "entry {entry} is stored under key {key:#x}, but its name hashes to {expected:#x} (lookups miss it)"
            ),
            Problem::DuplicateName { entry, key } => write!(f, "entry {entry} (key {key:#x}) repeats a name"),
            Problem::EntryType { entry, recorded, actual } => {
                write!(f, "entry {entry} has type {recorded}, the inode has type {actual}")
            }
            Problem::DirLinkedTwice { inum, path, extra } => {
                write!(f, "directory {} is also named by {extra}", named(*inum, path))
            }
            Problem::DotDot { inum, path, recorded, actual } => {
                write!(f, "directory {}: '..' is inode {recorded}, should be {actual}", named(*inum, path))
            }
            Problem::Unreachable { inum, file_type, why } => {
                write!(f, "{file_type} inode {inum} is not reachable ({why})")
            }
            Problem::OrphanEntry { inum, why } => write!(f, "orphan list entry for inode {inum}: {why}"),
            Problem::NextInum { recorded, needed } => {
                write!(f, "next inode number is {recorded}, but inode numbers up to {} are in use", needed - 1)
            }
            Problem::Incomplete { what } => write!(f, "not fully checked: {what}"),
            Problem::FeatureMissing { feature, version, blocks, what, first, pfs } => {
                let in_pfs = pfs.as_ref().map_or(String::new(), |p| format!(" in PFS {p:?}"));
                write!(
                    f,
                    "{blocks} data block(s) are {what} but the volume header (format version {version}) lacks \
                     {feature} (the first: the {first}{in_pfs})"
                )
            }
        }
    }
}
