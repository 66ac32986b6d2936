//! The tree: a copy-on-write B+tree of block references.
//!
//! Every tree (an inode's data or directory entries, the inode index, the free map, the
//! orphan list) has the same shape. Its root is a small *blockset*: the 30 slots of an inode,
//! or the single root reference in a volume header. Interior nodes are INDIRECT blocks of
//! up to `indirect_block_size / 128` references, sorted by key. Leaves are the block
//! references of the content (DATA, DIRENT, XATTR, INODE, FREEMAP_LEAF, ORPHAN).
//!
//! Routing invariant (checked by fsck): the key of an INDIRECT reference equals the first
//! key below it, and every key below it is smaller than the next sibling's key. A lookup
//! for key k descends into the last child whose key is <= k.
//!
//! Levels: an INDIRECT reference of level L points to a node whose entries have level L-1
//! (INDIRECT references when L-1 >= 1, leaves when L-1 == 0). A root of level L holds
//! INDIRECT references of level L, or leaves when L == 0.
//!
//! This file is the read side; `modify.rs` is the commit side.

pub mod modify;

use crate::error::Result;
use hammer2_format::Blockref;
use std::ops::ControlFlow;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Root {
    pub level: u8,
    pub entries: Vec<Blockref>,
}

impl Root {
    pub fn empty() -> Root {
        Root { level: 0, entries: Vec::new() }
    }

    /// The root held by one volume-header reference (EMPTY or INDIRECT).
    pub fn from_ref(br: &Blockref) -> Root {
        if br.is_empty() { Root::empty() } else { Root { level: br.level, entries: vec![*br] } }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The single reference a volume header stores for this root.
    pub fn to_ref(&self) -> Blockref {
        debug_assert!(self.entries.len() <= 1);
        self.entries.first().copied().unwrap_or(Blockref::EMPTY)
    }
}

/// Reads tree nodes (verified and cached).
pub trait NodeSource {
    fn node(&self, br: &Blockref) -> Result<Arc<[Blockref]>>;
}

/// Index of the child that covers `key`: the last entry whose key is <= `key`, or the first.
pub fn child_index(keys: impl Fn(usize) -> u64, len: usize, key: u64) -> usize {
    // partition_point over indices
    let (mut lo, mut hi) = (0usize, len);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if keys(mid) <= key { lo = mid + 1 } else { hi = mid }
    }
    lo.saturating_sub(1)
}

/// The leaf with exactly `key`, if any.
pub fn lookup(src: &dyn NodeSource, root: &Root, key: u64) -> Result<Option<Blockref>> {
    Ok(lookup_in_node(src, root, key)?.map(|(node, i)| node[i]))
}

/// The leaf node holding `key` (its entries) and the key's index in it, if present. The
/// node is the root blockset itself for a root of level 0.
pub fn lookup_in_node(src: &dyn NodeSource, root: &Root, key: u64) -> Result<Option<(Arc<[Blockref]>, usize)>> {
    if root.entries.is_empty() {
        return Ok(None);
    }
    let mut level = root.level;
    let mut node: Arc<[Blockref]> = Arc::from(root.entries.as_slice());
    while level > 0 {
        let i = child_index(|i| node[i].key, node.len(), key);
        node = src.node(&node[i])?;
        level -= 1;
    }
    Ok(node.binary_search_by_key(&key, |b| b.key).ok().map(|i| (node, i)))
}

/// Calls `f` on every leaf with key >= `from`, in key order, until it breaks.
pub fn scan(
    src: &dyn NodeSource,
    root: &Root,
    from: u64,
    f: &mut dyn FnMut(&Blockref) -> Result<ControlFlow<()>>,
) -> Result<()> {
    scan_level(src, root.level, &root.entries, from, f).map(|_| ())
}

fn scan_level(
    src: &dyn NodeSource,
    level: u8,
    entries: &[Blockref],
    from: u64,
    f: &mut dyn FnMut(&Blockref) -> Result<ControlFlow<()>>,
) -> Result<ControlFlow<()>> {
    if entries.is_empty() {
        return Ok(ControlFlow::Continue(()));
    }
    if level == 0 {
        let start = entries.partition_point(|b| b.key < from);
        for e in &entries[start..] {
            if f(e)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        return Ok(ControlFlow::Continue(()));
    }
    let start = child_index(|i| entries[i].key, entries.len(), from);
    for child in &entries[start..] {
        let node = src.node(child)?;
        if scan_level(src, level - 1, &node, from, f)?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// Calls `f` on every block reference of the tree (nodes before their children), for
/// walks that free or check whole trees. `f` returns false to skip a node's children.
pub fn for_each_ref(src: &dyn NodeSource, root: &Root, f: &mut dyn FnMut(&Blockref) -> Result<bool>) -> Result<()> {
    for e in &root.entries {
        for_each_ref_below(src, e, f)?;
    }
    Ok(())
}

fn for_each_ref_below(src: &dyn NodeSource, br: &Blockref, f: &mut dyn FnMut(&Blockref) -> Result<bool>) -> Result<()> {
    if !f(br)? {
        return Ok(());
    }
    if br.btype == hammer2_format::BlockType::Indirect {
        let node = src.node(br)?;
        for e in node.iter() {
            for_each_ref_below(src, e, f)?;
        }
    }
    Ok(())
}
