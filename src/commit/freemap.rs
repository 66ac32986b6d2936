//! Persisting the free map: a tree keyed by (device, leaf) whose leaves are 16 KiB bitmaps
//! (loading it is the allocator's, `alloc/freemap.rs`).
//!
//! Persisting it is a fixpoint: the free map's own new blocks are allocated from the space
//! it describes, so giving a dirty leaf a new block, or rebuilding a node above it, can
//! dirty another leaf. `persist` loops until every dirty leaf has a pending block in the
//! tree. Contents are generated only at finalize, after the last allocation, so every leaf
//! records the commit's final allocation state, including its own blocks.

use super::builder::Builder;
use crate::error::Result;
use crate::tree::Root;
use crate::tree::modify::{Change, PEntry, PRoot, apply};
use hammer2_format::layout::freemap_key;
use std::collections::BTreeMap;

pub fn persist(b: &mut Builder, committed: &Root) -> Result<PRoot> {
    let mut leaves: BTreeMap<u64, PEntry> = BTreeMap::new();
    let mut root = PRoot::from(committed);
    loop {
        let mut fresh = Vec::new();
        for (d, l) in b.alloc.take_dirty_leaves() {
            let k = freemap_key(d, l);
            if let std::collections::btree_map::Entry::Vacant(v) = leaves.entry(k) {
                v.insert(b.new_freemap_leaf(d, l)?);
                fresh.push(k);
            }
        }
        if fresh.is_empty() {
            return Ok(root);
        }
        fresh.sort_unstable();
        let changes: Vec<(u64, Change)> = fresh.iter().map(|k| (*k, Change::Put(leaves[k]))).collect();
        root = apply(b, root, 1, true, &changes)?;
    }
}
