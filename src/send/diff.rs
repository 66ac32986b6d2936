//! What changed in a tree between two snapshots of one lineage, found by birth tids so the
//! cost follows the change, not the tree (SR2 in docs/DESIGN.md).
//!
//! Every block carries its birth (`modify_tid`), and a node is never older than what is
//! below it (copy-on-write rewrites every node above a change). So in the newer tree a
//! reference born at or before the base's create tid is a whole subtree the base holds
//! unchanged: it is not entered. Leaves met in the nodes that are entered are the changed
//! ones (born after the base) and the ones that merely moved to a new node (older: kept).
//!
//! Removed leaves are the base's leaves missing from the newer tree. The base's walk skips
//! every subtree the newer tree kept (the same block: same type, key, level and birth, which
//! no other block of the lineage shares, since a commit writes one node per key and level);
//! any other leaf of the base is either present in a node the newer walk entered (its key
//! was seen) or gone. A base leaf cannot hide under a kept subtree of the newer tree
//! without being in that very subtree, which the base walk skipped.

use crate::error::Result;
use crate::tree::{NodeSource, Root};
use hammer2_format::{BlockType, Blockref};
use std::collections::HashSet;

/// The leaves of the newer tree born after the base, and the base's leaves it lacks, each
/// in key order.
#[derive(Debug, Default)]
pub struct Diff {
    pub changed: Vec<Blockref>,
    pub removed: Vec<Blockref>,
}

type Identity = (BlockType, u64, u8, u64);

fn identity(br: &Blockref) -> Identity {
    (br.btype, br.key, br.level, br.modify_tid)
}

/// The difference of `new` against `old`, where `old` is the same tree as of `base_tid`
/// (an older snapshot of the same lineage). With `base_tid` 0, every leaf of `new`.
pub fn diff(src: &dyn NodeSource, new: &Root, old: &Root, base_tid: u64) -> Result<Diff> {
    let mut d = Diff::default();
    let mut kept: HashSet<Identity> = HashSet::new();
    let mut seen: HashSet<u64> = HashSet::new();
    walk_new(src, new.level, &new.entries, base_tid, &mut d.changed, &mut kept, &mut seen)?;
    if base_tid != 0 {
        walk_old(src, old.level, &old.entries, &kept, &seen, &mut d.removed)?;
    }
    Ok(d)
}

fn walk_new(
    src: &dyn NodeSource,
    level: u8,
    entries: &[Blockref],
    base_tid: u64,
    changed: &mut Vec<Blockref>,
    kept: &mut HashSet<Identity>,
    seen: &mut HashSet<u64>,
) -> Result<()> {
    for e in entries {
        if level > 0 {
            if e.modify_tid > base_tid {
                let node = src.node(e)?;
                walk_new(src, level - 1, &node, base_tid, changed, kept, seen)?;
            } else {
                kept.insert(identity(e));
            }
        } else {
            seen.insert(e.key);
            if e.modify_tid > base_tid {
                changed.push(*e);
            }
        }
    }
    Ok(())
}

fn walk_old(
    src: &dyn NodeSource,
    level: u8,
    entries: &[Blockref],
    kept: &HashSet<Identity>,
    seen: &HashSet<u64>,
    removed: &mut Vec<Blockref>,
) -> Result<()> {
    for e in entries {
        if level > 0 {
            if !kept.contains(&identity(e)) {
                let node = src.node(e)?;
                walk_old(src, level - 1, &node, kept, seen, removed)?;
            }
        } else if !seen.contains(&e.key) {
            removed.push(*e);
        }
    }
    Ok(())
}
