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
//! forgets it. A restarted remove seeds it from the trees ([`moved_off`]): a reference
//! that no longer names the device tells where its block's copies went. A restarted
//! resync does not (that would cost a walk of everything): it places a second copy for a
//! reference the first one did not reach (both verified and in use; when the block is
//! dropped, the one its freeing reference does not name is a leak fsck reports and frees,
//! never a loss).

use hammer2_format::blockref::Copies;
use hammer2_format::{Blockref, Check};
use std::collections::HashMap;

/// What tells one block from another among references naming a common unit (SN4).
type Identity = (u32, Check, u64);

fn identity(br: &Blockref) -> Option<Identity> {
    br.ptr().map(|p| (p.size, p.check, br.modify_tid))
}

/// Relocated blocks with their new copy sets.
#[derive(Default, Clone)]
pub(crate) struct Substitutions {
    leaves: HashMap<(u8, u64), (Identity, Copies)>,
}

impl Substitutions {
    fn keys(br: &Blockref) -> impl Iterator<Item = (u8, u64)> + '_ {
        br.ptr().into_iter().flat_map(|p| p.copies.iter().filter(|l| l.is_valid()).map(|l| (l.device, l.offset)))
    }

    fn find<V: Copy>(map: &HashMap<(u8, u64), (Identity, V)>, br: &Blockref) -> Option<V> {
        let id = identity(br)?;
        Self::keys(br).find_map(|k| map.get(&k).filter(|(i, _)| *i == id).map(|(_, v)| *v))
    }

    /// The new copies of the block `br` names, if another reference relocated it.
    pub fn leaf(&self, br: &Blockref) -> Option<Copies> {
        Self::find(&self.leaves, br)
    }

    pub fn record_leaf(&mut self, old: &Blockref, new: Copies) {
        if let Some(id) = identity(old) {
            for k in Self::keys(old) {
                self.leaves.insert(k, (id, new));
            }
        }
    }

    pub fn merge(&mut self, o: Substitutions) {
        self.leaves.extend(o.leaves);
    }
}

/// The map a restarted remove of device `from` starts with: every reference, in any root,
/// of a block that may be shared (born at or before a snapshot's or clone origin's create
/// tid) and names no copy on `from`, keyed by its copies, so that another reference of the
/// same block still naming `from` takes the same new copies (AR1 across a crash).
pub(crate) fn moved_off(fs: &crate::fs::FsInner, from: u8) -> crate::error::Result<Substitutions> {
    use crate::walk::{Ctx, Visitor};
    use std::sync::Arc;
    struct Seed<'a> {
        fs: &'a crate::fs::FsInner,
        from: u8,
        shared_up_to: u64,
        map: Substitutions,
    }
    impl Visitor for Seed<'_> {
        fn visit(&mut self, br: &Blockref, _: &Ctx) -> crate::error::Result<Option<Arc<[u8]>>> {
            let Some(p) = br.ptr() else { return Ok(None) };
            if br.modify_tid <= self.shared_up_to && !p.copies.iter().any(|l| l.device == self.from) {
                self.map.record_leaf(br, p.copies);
            }
            if br.btype.names_blocks() {
                return Ok(Some(self.fs.vol.read_block(br, &Default::default())?));
            }
            Ok(None)
        }
    }
    let roots = fs.pinned_roots();
    let Some(pfs) = roots.pfs.as_deref() else { return Ok(Substitutions::default()) };
    let records = crate::pfs::records(&fs.vol, &pfs.table, fs.vol.devices.len())?;
    let shared_up_to = records
        .iter()
        .filter(|(_, r)| r.kind != hammer2_format::pfs::PfsKind::Pfs)
        .map(|(_, r)| r.create_tid)
        .max()
        .unwrap_or(0);
    if shared_up_to == 0 {
        return Ok(Substitutions::default());
    }
    let mut seed = Seed { fs, from, shared_up_to, map: Substitutions::default() };
    crate::walk::walk_every_reference(&roots, &mut seed)?;
    Ok(seed.map)
}
