//! The substitution map of a resync or a device remove: which blocks got new copies, so
//! that every other reference to the same block gets the same ones (AR1 in
//! docs/DESIGN.md).
//!
//! A block shared by several roots (a PFS and its snapshots, a clone and its origin, a
//! dead list) is named by one reference per root. Filling its MISSING copy or moving its
//! copy off a device changes its copy set, and every reference must then name the same
//! new copies: two references of one block that named different copies on one device
//! would each free only their own when the block is finally dropped, and the other copy
//! would be lost to the free map. The walks look every changed reference up here first
//! and place new copies only for a block no reference has relocated yet.
//!
//! Keyed by every valid copy of the old reference; an entry is used only for a reference
//! of the same block (size, check value, birth: SN4), so a location freed and reused by
//! another block since never matches. Kept in memory for one resync or remove: a crash
//! forgets it, and a restarted walk then places a second copy for a reference the first
//! walk did not reach (both verified; the one that outlives its reference is a leak fsck
//! reports and frees, never a loss).

use hammer2_format::blockref::Copies;
use hammer2_format::{Blockref, Check};
use std::collections::HashMap;

/// What tells one block from another among references naming a common unit (SN4).
type Identity = (u32, Check, u64);

fn identity(br: &Blockref) -> Option<Identity> {
    br.ptr().map(|p| (p.size, p.check, br.modify_tid))
}

/// Relocated blocks: leaves with their new copy sets, nodes with their new references.
#[derive(Default, Clone)]
pub(crate) struct Substitutions {
    leaves: HashMap<(u8, u64), (Identity, Copies)>,
    nodes: HashMap<(u8, u64), (Identity, Blockref)>,
}

impl Substitutions {
    fn keys(br: &Blockref) -> impl Iterator<Item = (u8, u64)> + '_ {
        br.ptr().into_iter().flat_map(|p| p.copies.iter().filter(|l| l.is_valid()).map(|l| (l.device, l.offset)))
    }

    fn find<V: Copy>(map: &HashMap<(u8, u64), (Identity, V)>, br: &Blockref) -> Option<V> {
        let id = identity(br)?;
        Self::keys(br).find_map(|k| map.get(&k).filter(|(i, _)| *i == id).map(|(_, v)| *v))
    }

    /// The new copies of the leaf block `br` names, if another reference relocated it.
    pub fn leaf(&self, br: &Blockref) -> Option<Copies> {
        Self::find(&self.leaves, br)
    }

    /// The new reference of the node `br` names, if it was rebuilt through another root.
    pub fn node(&self, br: &Blockref) -> Option<Blockref> {
        Self::find(&self.nodes, br)
    }

    pub fn record_leaf(&mut self, old: &Blockref, new: Copies) {
        if let Some(id) = identity(old) {
            for k in Self::keys(old) {
                self.leaves.insert(k, (id, new));
            }
        }
    }

    pub fn record_node(&mut self, old: &Blockref, new: Blockref) {
        if let Some(id) = identity(old) {
            for k in Self::keys(old) {
                self.nodes.insert(k, (id, new));
            }
        }
    }

    pub fn merge(&mut self, o: Substitutions) {
        self.leaves.extend(o.leaves);
        self.nodes.extend(o.nodes);
    }
}
