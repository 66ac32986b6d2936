//! One resync slice: what the commit hook of a resync runs at each commit's fixed point. It
//! fills MISSING copies on writable devices (a new location on that device, the verified
//! content copied there) and rebuilds the nodes above them, within a budget of bytes.
//!
//! The same walk moves copies off a device being removed (`Goal::MoveOff`, `devchange/`):
//! it then enters every branch (no flag marks where such copies are), and gives each copy
//! on that device a new location on another one (FP1), the verified content copied there
//! (read through the check value, from any good copy), the old location freed in the same
//! commit that stops referencing it.

use super::ResyncCounts;
use crate::alloc::{Class, Extent};
use crate::commit::builder::Builder;
use crate::copies::read::ReadCtx;
use crate::error::{Error, Result};
use crate::tree::modify::{NodeWriter, PEntry, PRoot};
use crate::walk::TreeKind;
use hammer2_format::blockref::FLAG_DEGRADED;
use hammer2_format::{BlockType, Blockref, CopyState, InodeBlock, InodeContent};
use std::collections::HashSet;
use std::sync::Arc;

/// What a slice is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Goal {
    /// Fill MISSING copies on writable devices, entering only DEGRADED branches.
    Resync,
    /// Move every copy on this device to another one, entering every branch.
    MoveOff(u8),
}

/// What a slice changed, for the commit to install.
#[derive(Default)]
pub(crate) struct SliceOutcome {
    pub counts: ResyncCounts,
    pub complete: bool,
    /// A copy was not placed for want of room the reservations leave (S4): a resync waits
    /// for space to be freed; a remove that makes no progress stops.
    pub no_room: bool,
    /// Inodes whose block was rewritten: (inum, new INODE entry, new root).
    pub inodes: Vec<(u64, PEntry, PRoot)>,
}

struct Slice<'s, 'a> {
    b: &'s mut Builder<'a>,
    goal: Goal,
    skip: &'s HashSet<u64>,
    budget: u64,
    /// Units each copy domain must keep free for the commit's reservations (S4).
    keep_free: u64,
    /// Units of whole free slots left per (device, region), counted once and then charged a
    /// slot per copy placed.
    room: std::collections::HashMap<(u8, u8), u64>,
    out: SliceOutcome,
}

/// Runs one slice over the trees a commit is building. `skip` holds the inodes this commit
/// writes anyway (their new blocks are fresh; what they still reference is caught next time).
#[allow(clippy::too_many_arguments)]
pub(crate) fn slice(
    goal: Goal,
    b: &mut Builder,
    inodes: &mut PRoot,
    orphans: &mut PRoot,
    freemap_degraded: bool,
    skip: &HashSet<u64>,
    budget: u64,
    keep_free: u64,
) -> Result<SliceOutcome> {
    let out = SliceOutcome { complete: true, ..Default::default() };
    let mut s = Slice { b, goal, skip, budget, keep_free, room: Default::default(), out };
    s.entries(&mut inodes.entries, TreeKind::Inodes)?;
    s.entries(&mut orphans.entries, TreeKind::Orphans)?;
    if freemap_degraded || matches!(goal, Goal::MoveOff(_)) {
        // The free map is small: rewrite all of it (the commit's free-map step writes every
        // dirty leaf and the nodes above them to every writable device).
        let all: Vec<(u8, u32)> =
            s.b.alloc
                .devs
                .iter()
                .enumerate()
                .flat_map(|(d, sp)| (0..hammer2_format::freemap::leaves_for(sp.size)).map(move |l| (d as u8, l)))
                .collect();
        s.b.alloc.mark_leaves_dirty(&all);
    }
    if !s.out.inodes.is_empty() || s.out.counts.copied_blocks > 0 {
        tracing::debug!(visited = s.out.counts.visited, copied = s.out.counts.copied_blocks, "resync slice");
    }
    Ok(s.out)
}

impl Slice<'_, '_> {
    fn exhausted(&mut self) -> bool {
        if self.out.counts.copied_bytes >= self.budget {
            self.out.complete = false;
            return true;
        }
        false
    }

    /// Whether the walk enters `br` (and what lies below it).
    fn enters(&self, br: &Blockref) -> bool {
        match self.goal {
            Goal::Resync => br.is_degraded(),
            Goal::MoveOff(_) => br.ptr().is_some(),
        }
    }

    /// Whether copy `l` is one this slice replaces.
    fn wants(&self, l: &hammer2_format::Location) -> bool {
        match self.goal {
            Goal::Resync => {
                l.state == CopyState::Missing && self.b.vol.devices.get(l.device).is_some_and(|m| m.writable())
            }
            Goal::MoveOff(d) => l.device == d,
        }
    }

    /// A copy of `br` this slice replaces: a MISSING copy on a device we can write now
    /// (resync), or any copy on the device being emptied.
    fn fixable(&self, br: &Blockref) -> bool {
        br.ptr().is_some_and(|p| p.copies.iter().any(|l| self.wants(l)))
    }

    /// Resyncs a list of entries in place; true when any of them changed.
    fn entries(&mut self, entries: &mut [PEntry], tree: TreeKind) -> Result<bool> {
        let mut changed = false;
        for e in entries.iter_mut() {
            if let PEntry::New(id) = *e {
                // A node this commit rebuilt can still hold committed children that are out
                // of sync: resync them in place (the node is not written yet).
                self.pending_node(id, tree)?;
                continue;
            }
            let PEntry::Ref(br) = *e else { continue };
            if !self.enters(&br) {
                continue;
            }
            if self.exhausted() {
                break;
            }
            self.out.counts.visited += 1;
            if let Some(new) = self.one(&br, tree)? {
                *e = new;
                changed = true;
            }
        }
        Ok(changed)
    }

    fn pending_node(&mut self, id: u32, tree: TreeKind) -> Result<()> {
        let mut children = match &mut self.b.arena.get_mut(id).content {
            crate::commit::arena::Content::Node(entries) => std::mem::take(entries),
            // A new inode block belongs to an inode this commit writes: caught next time.
            _ => {
                if tree == TreeKind::Inodes {
                    self.out.complete = false;
                }
                return Ok(());
            }
        };
        let r = self.entries(&mut children, tree);
        if let crate::commit::arena::Content::Node(entries) = &mut self.b.arena.get_mut(id).content {
            *entries = children;
        }
        r.map(|_| ())
    }

    fn one(&mut self, br: &Blockref, tree: TreeKind) -> Result<Option<PEntry>> {
        match br.btype {
            BlockType::Indirect => {
                let mut children: Vec<PEntry> = self.b.read_node(br)?.into_iter().map(PEntry::Ref).collect();
                if self.entries(&mut children, tree)? {
                    self.b.release(&PEntry::Ref(*br));
                    return Ok(Some(self.b.new_node(br.level, children)?));
                }
                self.fill(br)
            }
            BlockType::Inode if tree == TreeKind::Inodes => {
                if self.skip.contains(&br.key) {
                    self.out.complete = false;
                    return Ok(None);
                }
                let bytes = self.b.vol.read_block_uncached(br, &ReadCtx::inode(br.key))?;
                let ino = InodeBlock::decode(&bytes)?;
                let InodeContent::Tree { root_level, entries } = &ino.content else { return self.fill(br) };
                let mut root = PRoot { level: *root_level, entries: entries.iter().map(|b| PEntry::Ref(*b)).collect() };
                if !self.entries(&mut root.entries, TreeKind::Inode(ino.inum))? {
                    return self.fill(br);
                }
                self.b.release(&PEntry::Ref(*br));
                let mut block = ino.clone();
                block.content = InodeContent::Tree { root_level: 0, entries: Vec::new() };
                let entry = self.b.new_inode(block, Some(root.clone()))?;
                self.out.inodes.push((ino.inum, entry, root));
                Ok(Some(entry))
            }
            _ => self.fill(br),
        }
    }

    /// Fills the fixable MISSING copies of an unchanged block.
    fn fill(&mut self, br: &Blockref) -> Result<Option<PEntry>> {
        if !self.fixable(br) {
            return Ok(None);
        }
        let Some(p) = br.ptr() else { return Ok(None) };
        let data: Arc<[u8]> = Arc::from(self.b.vol.read_block_uncached(br, &ReadCtx::meta())?);
        // S4: resync takes only space that no reservation counts on; short of it, the slice
        // stops here (before placing any copy) and a later one continues once space is freed.
        let slot_units = self.b.alloc.slot();
        let placement = self.b.vol.placement();
        let mut wanted: Vec<(usize, u8, u8)> = Vec::new();
        let units = u64::from(p.size).div_ceil(hammer2_format::UNIT);
        for (slot, loc) in p.copies.iter().enumerate() {
            if !self.wants(loc) {
                continue;
            }
            let mut placed: Vec<hammer2_format::Location> = p.copies.iter().copied().collect();
            // Copies placed before this one in the same block take their domains (FP1).
            for &(s, d, r) in &wanted {
                placed[s] = hammer2_format::Location::valid(d, self.b.alloc.region_start(d, r));
            }
            let (d, r) = match self.goal {
                Goal::Resync => (loc.device, placement.missing_region(self.b.alloc, loc.device, slot, &placed)),
                Goal::MoveOff(from) => {
                    placed[slot] = hammer2_format::Location::missing(from);
                    match placement.move_target(self.b.alloc, &self.b.vol.devices, &placed, units) {
                        Some(t) => t,
                        None => return Err(Error::NoSpace),
                    }
                }
            };
            wanted.push((slot, d, r));
        }
        for &(_, d, r) in &wanted {
            let alloc = &*self.b.alloc;
            let room = *self.room.entry((d, r)).or_insert_with(|| alloc.domain_free_slots(d, r) * slot_units);
            if room < self.keep_free + slot_units {
                self.out.complete = false;
                self.out.no_room = true;
                return Ok(None);
            }
        }
        for &(_, d, r) in &wanted {
            if let Some(room) = self.room.get_mut(&(d, r)) {
                *room -= slot_units;
            }
        }
        let mut new = *br;
        let np = new.ptr_mut().ok_or_else(|| Error::Corrupt("block reference lost its block".into()))?;
        for (slot, loc) in np.copies.as_mut_slice().iter_mut().enumerate() {
            if let Some(&(_, d, region)) = wanted.iter().find(|w| w.0 == slot) {
                if loc.is_valid() {
                    // The new reference no longer names it; freed by this very commit,
                    // reusable once it is durable (like any replaced block).
                    self.b.alloc.free(Extent::from_bytes(loc.device, loc.offset, u64::from(p.size)));
                }
                *loc = placement.place_missing(self.b.alloc, d, region, Class::of(br.btype), p.size)?;
                self.b.arena.extra.push((loc.device, loc.offset, data.clone()));
                self.out.counts.copied_blocks += 1;
                self.out.counts.copied_bytes += u64::from(p.size);
            }
        }
        let still_missing = np.copies.any_missing();
        // A leaf's flag is its own state; a node that was not rebuilt keeps the flag if a
        // child below it is still out of sync (only its own copies were filled here).
        let below = br.btype == BlockType::Indirect || br.btype == BlockType::Inode;
        new.flags = if still_missing || (below && self.still_degraded_below(br)?) { FLAG_DEGRADED } else { 0 };
        new.mirror_tid = self.b.tid;
        Ok(Some(PEntry::Ref(new)))
    }

    fn still_degraded_below(&self, br: &Blockref) -> Result<bool> {
        Ok(match br.btype {
            BlockType::Indirect => self.b.vol.read_node(br)?.iter().any(|c| c.is_degraded()),
            BlockType::Inode => {
                let bytes = self.b.vol.read_block_uncached(br, &ReadCtx::inode(br.key))?;
                match InodeBlock::decode(&bytes)?.content {
                    InodeContent::Tree { entries, .. } => entries.iter().any(|c| c.is_degraded()),
                    InodeContent::Embedded(_) => false,
                }
            }
            _ => false,
        })
    }
}
