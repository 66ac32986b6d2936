//! The tree's shape, beyond what the decoders already enforce (types, levels, key order
//! inside one node):
//!
//! - routing: an INDIRECT reference's key equals the first key below it, and every key
//!   below it is smaller than its next sibling's key (`tree/mod.rs`);
//! - keys per tree: data at block-aligned offsets below the xattr key space, directory
//!   entries in their hash space, xattrs with bit 63, free-map leaves of existing devices;
//! - sizes: nodes no larger than the filesystem's indirect block size, data blocks no
//!   larger than its data block size;
//! - transaction ids: no reference is newer than the one above it, nor than the commit;
//! - DEGRADED: set on every reference above a MISSING copy (resync relies on it).

use hammer2::inspect::{Ctx, TreeKind};
use hammer2_format::layout::XATTR_KEY_BIT;
use hammer2_format::{BlockType, Blockref};
use std::collections::HashMap;

/// One thing wrong with the shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issue {
    Shape(String),
    /// The entry with this key has a MISSING copy (or is DEGRADED) but the reference
    /// above it is not DEGRADED.
    Degraded {
        key: u64,
    },
}

/// The key range a node's entries must lie in: `[lo, hi)`, `hi` None for unbounded.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub lo: u64,
    pub hi: Option<u64>,
}

/// What the shape check needs to know about the filesystem.
pub struct Shape {
    pub data_block_shift: u8,
    pub indirect_block_size: u32,
    pub tid: u64,
    /// Free-map leaves per device.
    pub leaves: Vec<u64>,
    /// Pending bounds of INDIRECT references not visited yet, by their first copy.
    bounds: HashMap<(u8, u64), Bound>,
}

/// The identity of a reference for the bound table: its first valid copy.
pub fn ref_id(br: &Blockref) -> Option<(u8, u64)> {
    br.ptr().and_then(|p| p.copies.iter().find(|l| l.is_valid())).map(|l| (l.device, l.offset))
}

/// The kind of inode that owns a tree, as far as its leaves care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Dir,
    /// Regular files and symlinks.
    Data,
    /// Devices, fifos, sockets: no content at all.
    Special,
}

impl Shape {
    pub fn new(data_block_shift: u8, indirect_block_shift: u8, tid: u64, leaves: Vec<u64>) -> Shape {
        Shape { data_block_shift, indirect_block_size: 1 << indirect_block_shift, tid, leaves, bounds: HashMap::new() }
    }

    /// A tree's root entries (a volume-header root or an inode's blockset): each INDIRECT
    /// covers up to the next entry's key; the last is unbounded.
    pub fn root_entries(&mut self, entries: &[Blockref], parent_tid: u64, parent_degraded: bool) -> Vec<Issue> {
        let mut out = Vec::new();
        self.children(entries, Bound { lo: 0, hi: None }, parent_tid, parent_degraded, &mut out);
        out
    }

    fn children(
        &mut self,
        entries: &[Blockref],
        bound: Bound,
        parent_tid: u64,
        parent_degraded: bool,
        out: &mut Vec<Issue>,
    ) {
        for (i, e) in entries.iter().enumerate() {
            if e.mirror_tid > parent_tid {
                out.push(Issue::Shape(format!(
                    "entry {:#x} was changed by commit {} but the reference above it by commit {parent_tid}",
                    e.key, e.mirror_tid
                )));
            }
            if !parent_degraded && (e.is_degraded() || e.ptr().is_some_and(|p| p.copies.any_missing())) {
                out.push(Issue::Degraded { key: e.key });
            }
            if e.btype == BlockType::Indirect
                && let Some(id) = ref_id(e)
            {
                let hi = entries.get(i + 1).map(|n| n.key).or(bound.hi);
                self.bounds.insert(id, Bound { lo: e.key, hi });
            }
        }
    }

    /// An INDIRECT node was read and decoded: checks routing and registers its children.
    pub fn node(&mut self, br: &Blockref, entries: &[Blockref]) -> Vec<Issue> {
        let mut out = Vec::new();
        let mut shape = |s: String| out.push(Issue::Shape(s));
        let bound = ref_id(br).and_then(|id| self.bounds.remove(&id)).unwrap_or(Bound { lo: br.key, hi: None });
        if br.size() > self.indirect_block_size {
            shape(format!(
                "node of {} bytes, larger than the filesystem's {} byte nodes",
                br.size(),
                self.indirect_block_size
            ));
        }
        if let Some(first) = entries.first()
            && first.key != br.key
        {
            shape(format!("the reference's key is {:#x} but the first key below it is {:#x}", br.key, first.key));
        }
        if let (Some(last), Some(hi)) = (entries.last(), bound.hi)
            && last.key >= hi
        {
            shape(format!("key {:#x} lies beyond the next sibling's key {hi:#x}", last.key));
        }
        if br.key < bound.lo {
            shape(format!("key {:#x} lies before the range {:#x} routed here", br.key, bound.lo));
        }
        self.children(entries, bound, br.mirror_tid, br.is_degraded(), &mut out);
        out
    }

    /// Per-reference rules that do not depend on siblings. `owner` is the kind of the inode
    /// whose tree this is (None in the system trees).
    pub fn leaf(&self, br: &Blockref, ctx: &Ctx, owner: Option<Owner>) -> Vec<String> {
        let mut out = Vec::new();
        if br.modify_tid > self.tid || br.mirror_tid > self.tid {
            out.push(format!("written by commit {}, after the newest commit {}", br.mirror_tid, self.tid));
        }
        let bs = 1u64 << self.data_block_shift;
        match (ctx.tree, br.btype) {
            (_, BlockType::Indirect) => {}
            (TreeKind::Inodes, BlockType::Inode) if br.key == 0 => out.push("inode number 0".into()),
            (TreeKind::Freemap, BlockType::FreemapLeaf) => {
                let (d, l) = hammer2_format::freemap_key_split(br.key);
                if self.leaves.get(d as usize).is_none_or(|n| l >= *n) {
                    out.push(format!("free-map leaf {l} of device {d} does not exist"));
                }
            }
            (TreeKind::Inode(_), BlockType::Data) => {
                if br.key >= XATTR_KEY_BIT || br.key % bs != 0 {
                    out.push(format!("data key {:#x} is not a block-aligned file offset", br.key));
                }
                if u64::from(br.size()) > bs {
                    out.push(format!("data block of {} bytes, larger than the {bs} byte blocks", br.size()));
                }
                if br.keybits != self.data_block_shift {
                    out.push(format!("data block covers 2^{} bytes, not 2^{}", br.keybits, self.data_block_shift));
                }
                if owner.is_some_and(|o| o != Owner::Data) {
                    out.push("data block in an inode that holds no data".into());
                }
            }
            (TreeKind::Inode(_), BlockType::Dirent) => {
                if br.key >= XATTR_KEY_BIT || br.key < 0x8000 {
                    out.push(format!("directory entry key {:#x} outside the entry key space", br.key));
                }
                if owner.is_some_and(|o| o != Owner::Dir) {
                    out.push("directory entry in an inode that is not a directory".into());
                }
            }
            (TreeKind::Inode(_), BlockType::Xattr) if br.key < XATTR_KEY_BIT => {
                out.push(format!("extended attribute key {:#x} lacks bit 63", br.key))
            }
            _ => {}
        }
        out
    }
}
