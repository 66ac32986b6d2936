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

/// A tree node as the tree reads it: its references, with their keys also kept apart. A
/// search probes the compact array of keys (a few cache lines) rather than one reference of
/// some 150 bytes per probe: those cache misses were a quarter of an UNLINK's engine time
/// and a tenth of a cold lookup's. Derefs to the references.
#[derive(Debug, PartialEq, Eq)]
pub struct Node {
    refs: Box<[Blockref]>,
    keys: Box<[u64]>,
}

impl Node {
    pub fn new(refs: Vec<Blockref>) -> Node {
        let keys = refs.iter().map(|b| b.key).collect();
        Node { refs: refs.into_boxed_slice(), keys }
    }

    /// The keys of the references, in order.
    pub fn keys(&self) -> &[u64] {
        &self.keys
    }

    /// Index of the child that covers `key` (see [`child_index`]).
    pub fn child_for(&self, key: u64) -> usize {
        child_index(|i| self.keys[i], self.keys.len(), key)
    }

    /// Index of the reference with exactly `key`.
    pub fn position(&self, key: u64) -> Option<usize> {
        self.keys.binary_search(&key).ok()
    }
}

impl std::ops::Deref for Node {
    type Target = [Blockref];
    fn deref(&self) -> &[Blockref] {
        &self.refs
    }
}

impl FromIterator<Blockref> for Node {
    fn from_iter<I: IntoIterator<Item = Blockref>>(iter: I) -> Node {
        Node::new(iter.into_iter().collect())
    }
}

/// Reads tree nodes (verified and cached).
pub trait NodeSource {
    fn node(&self, br: &Blockref) -> Result<Arc<Node>>;
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

/// The node below the root that covers `key`, at level 0 (a leaf node): None for a root of
/// level 0 (its entries are the leaves) or an empty one.
fn leaf_node(src: &dyn NodeSource, root: &Root, key: u64) -> Result<Option<Arc<Node>>> {
    if root.level == 0 || root.entries.is_empty() {
        return Ok(None);
    }
    let mut node = src.node(&root.entries[child_index(|i| root.entries[i].key, root.entries.len(), key)])?;
    for _ in 1..root.level {
        node = src.node(&node[node.child_for(key)])?;
    }
    Ok(Some(node))
}

/// The leaf with exactly `key`, if any.
pub fn lookup(src: &dyn NodeSource, root: &Root, key: u64) -> Result<Option<Blockref>> {
    Ok(match leaf_node(src, root, key)? {
        Some(node) => node.position(key).map(|i| node[i]),
        None => root.entries.binary_search_by_key(&key, |b| b.key).ok().map(|i| root.entries[i]),
    })
}

/// The leaf node holding `key` (its entries) and the key's index in it, if present. The
/// node is the root blockset itself for a root of level 0.
pub fn lookup_in_node(src: &dyn NodeSource, root: &Root, key: u64) -> Result<Option<(Arc<Node>, usize)>> {
    let node = match leaf_node(src, root, key)? {
        Some(node) => node,
        None if root.entries.is_empty() => return Ok(None),
        None => Arc::new(Node::new(root.entries.clone())),
    };
    Ok(node.position(key).map(|i| (node, i)))
}

/// Calls `f` on every leaf with key >= `from`, in key order, until it breaks.
pub fn scan(
    src: &dyn NodeSource,
    root: &Root,
    from: u64,
    f: &mut dyn FnMut(&Blockref) -> Result<ControlFlow<()>>,
) -> Result<()> {
    scan_level(src, root.level, &root.entries, None, from, f).map(|_| ())
}

/// Scans `entries` (of level `level`; `keys` are their keys when they are a node's).
fn scan_level(
    src: &dyn NodeSource,
    level: u8,
    entries: &[Blockref],
    keys: Option<&[u64]>,
    from: u64,
    f: &mut dyn FnMut(&Blockref) -> Result<ControlFlow<()>>,
) -> Result<ControlFlow<()>> {
    if entries.is_empty() {
        return Ok(ControlFlow::Continue(()));
    }
    let key_at = |i: usize| keys.map_or(entries[i].key, |k| k[i]);
    if level == 0 {
        let start = match keys {
            Some(k) => k.partition_point(|&k| k < from),
            None => entries.partition_point(|b| b.key < from),
        };
        for e in &entries[start..] {
            if f(e)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        return Ok(ControlFlow::Continue(()));
    }
    let start = child_index(key_at, entries.len(), from);
    for child in &entries[start..] {
        let node = src.node(child)?;
        if scan_level(src, level - 1, &node, Some(node.keys()), from, f)?.is_break() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaf(key: u64) -> Blockref {
        Blockref { btype: hammer2_format::BlockType::Orphan, key, ..Blockref::EMPTY }
    }

    proptest! {
        /// A node's searches over its separate keys answer what a search of the references
        /// themselves answers.
        #[test]
        fn node_searches_agree_with_its_references(mut keys in proptest::collection::vec(0u64..1000, 0..600), probe in 0u64..1100) {
            keys.sort_unstable();
            keys.dedup();
            let node = Node::new(keys.iter().map(|&k| leaf(k)).collect());
            prop_assert_eq!(node.keys(), &keys[..]);
            prop_assert_eq!(node.position(probe), node.iter().position(|b| b.key == probe));
            let covering = node.iter().rposition(|b| b.key <= probe).unwrap_or(0);
            prop_assert_eq!(node.child_for(probe), covering);
        }
    }
}
