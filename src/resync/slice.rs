//! One resync slice: what the commit hook of a resync runs at each commit's fixed point. It
//! fills MISSING copies on writable devices (a new location on that device, the verified
//! content copied there) and rebuilds the nodes above them, within a budget of bytes.
//!
//! The same walk moves copies off a device being removed (`Goal::MoveOff`, `devchange/`):
//! it then enters every branch (no flag marks where such copies are), and gives each copy
//! on that device a new location on another one (FP1), the verified content copied there
//! (read through the check value, from any good copy), the old location freed in the same
//! commit that stops referencing it.
//!
//! The served PFS's trees are walked first, in bounded slices. Once a slice finds them done,
//! the same commit walks every other root ([`other_roots`]: the other PFSs, snapshots and
//! clones, and every dead list) so that a block only a snapshot holds is caught up or moved
//! too (AR1..AR3 in docs/DESIGN.md). A block several roots share gets one set of new copies,
//! found through the substitution map (`subst.rs`); a node rebuilt in a root other than the
//! served one keeps the birth of the node it replaces, so the rules that free shared
//! blocks (SN1, SN3, SN5) see the same block they saw before.

mod roots;

use super::ResyncCounts;
use super::subst::Substitutions;
use crate::alloc::{Class, Extent};
use crate::commit::builder::Builder;
use crate::copies::read::ReadCtx;
use crate::error::{Error, Result};
use crate::tree::modify::{NodeWriter, PEntry, PRoot};
use crate::walk::TreeKind;
use hammer2_format::blockref::{Copies, FLAG_DEGRADED};
use hammer2_format::{BlockType, Blockref, CopyState, InodeBlock, InodeContent};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What a slice is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Goal {
    /// Fill MISSING copies on writable devices, entering only DEGRADED branches.
    Resync,
    /// Move every copy on this device to another one, entering every branch.
    MoveOff(u8),
    /// Give this device (a new one) copies: a block with none there has its copy on its
    /// fullest device moved to it (`device rebalance`). Blocks other roots may share stay
    /// where they are: moving them is not needed for correctness, only for balance.
    Rebalance(u8),
}

/// What a slice changed, for the commit to install.
#[derive(Default)]
pub(crate) struct SliceOutcome {
    pub counts: ResyncCounts,
    pub complete: bool,
    /// A copy was not placed for want of room the reservations leave (S4): a resync waits
    /// for space to be freed; a remove that makes no progress stops.
    pub no_room: bool,
    /// Inodes of the served PFS whose block was rewritten: (inum, new INODE entry, new root).
    pub inodes: Vec<(u64, PEntry, PRoot)>,
    /// Blocks relocated by this slice that other references may name (AR1): for the
    /// session's map once the commit is installed.
    pub subst: Substitutions,
    /// Old copies another root may still name, retired by a slice of the served trees:
    /// freed by the first walk over every root (AR3).
    pub retired: Vec<Extent>,
    /// The other roots were walked whole in this commit, and every retired copy freed.
    pub other_roots_done: bool,
    /// New records of other PFSs (by id), and the served PFS's dead list as rewritten with
    /// the change of its physical bytes.
    pub records: Vec<(u64, PEntry)>,
    pub served_dead: Option<(PRoot, i64)>,
}

/// What the session of a resync or remove keeps between its commits (AR1, AR3).
#[derive(Default)]
pub(crate) struct Carried {
    pub subst: Substitutions,
    /// Copies retired by slices of the served trees, freed by the next walk over every root.
    pub retired: Vec<Extent>,
}

/// The part of a [`SliceOutcome`] the session keeps once the commit is installed.
pub(crate) struct SliceInstalled {
    subst: Substitutions,
    retired: Vec<Extent>,
    other_roots_done: bool,
    forget: bool,
}

impl Carried {
    /// Takes in what an installed slice relocated and retired.
    pub fn installed(&mut self, out: SliceInstalled) {
        if out.forget {
            // A PFS deletion committed meanwhile may have freed blocks these name: start
            // over (a retired copy is then never freed twice, at worst leaked: fsck).
            *self = Carried::default();
            return;
        }
        if out.other_roots_done {
            self.retired.clear();
        }
        self.subst.merge(out.subst);
        self.retired.extend(out.retired);
    }
}

impl SliceOutcome {
    /// Splits off what the session keeps, leaving what the commit installs. `forget`: the
    /// commit deletes a PFS or snapshot.
    pub fn carried(&mut self, forget: bool) -> SliceInstalled {
        SliceInstalled {
            subst: std::mem::take(&mut self.subst),
            retired: std::mem::take(&mut self.retired),
            other_roots_done: self.other_roots_done,
            forget,
        }
    }
}

struct Slice<'s, 'a> {
    b: &'s mut Builder<'a>,
    goal: Goal,
    /// Walking a root other than the served PFS's trees: rebuilt blocks keep their birth,
    /// replaced ones are retired rather than freed, and nothing is budgeted (AR2).
    other: bool,
    /// Blocks born at or before this may be named by another root too (the served PFS's
    /// newest snapshot or its origin, SN1/SN5); every block of another root may.
    shared_below: u64,
    carried: &'s Substitutions,
    /// Nodes of other roots rebuilt in this commit (old node's valid copies → new entry),
    /// and nodes walked and found clean, so a subtree several roots share is done once.
    rebuilt: HashMap<(u8, u64), PEntry>,
    clean: HashSet<(u8, u64)>,
    /// Old copies this commit already retired or freed (never twice).
    gone: HashSet<(u8, u64)>,
    skip: &'s HashSet<u64>,
    budget: u64,
    /// Units each copy domain must keep free for the commit's reservations (S4).
    keep_free: u64,
    /// Units of whole free slots left per (device, region), counted once and then charged a
    /// slot per copy placed.
    room: std::collections::HashMap<(u8, u8), u64>,
    out: SliceOutcome,
}

/// Runs one slice over the trees a commit is building (`fp`), then, when the served trees
/// are done and the commit changes no PFS record itself, over every other root
/// ([`other_roots`]). `carried` is what earlier commits of this session relocated and
/// retired.
pub(crate) fn slice(
    goal: Goal,
    fp: crate::commit::hook::FixedPoint<'_, '_>,
    budget: u64,
    carried: &Carried,
) -> Result<SliceOutcome> {
    let crate::commit::hook::FixedPoint {
        builder: b,
        inodes,
        orphans,
        freemap_degraded,
        written: skip,
        keep_free,
        pfs_op,
        old,
    } = fp;
    let out = SliceOutcome { complete: true, ..Default::default() };
    let shared_below = b.dead.as_ref().map_or(0, |d| d.threshold.max(d.floor));
    let mut s = Slice {
        b,
        goal,
        other: false,
        shared_below,
        carried: &carried.subst,
        rebuilt: HashMap::new(),
        clean: HashSet::new(),
        gone: HashSet::new(),
        skip,
        budget,
        keep_free,
        room: Default::default(),
        out,
    };
    s.gone.extend(carried.retired.iter().map(|e| (e.device, e.offset())));
    s.entries(&mut inodes.entries, TreeKind::Inodes)?;
    s.entries(&mut orphans.entries, TreeKind::Orphans)?;
    if let Some(pfs) = old.pfs.as_deref().filter(|_| !matches!(goal, Goal::Rebalance(_))) {
        if s.out.complete && pfs_op.is_none() {
            s.other_roots(pfs, &carried.retired)?;
        } else {
            s.out.complete = false;
        }
    }
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

/// The first valid copy of the block `br` names: what tells blocks apart within one commit.
fn first_copy(br: &Blockref) -> Option<(u8, u64)> {
    br.ptr()?.copies.iter().find(|l| l.is_valid()).map(|l| (l.device, l.offset))
}

impl Slice<'_, '_> {
    fn exhausted(&mut self) -> bool {
        if !self.other && self.out.counts.copied_bytes >= self.budget {
            self.out.complete = false;
            return true;
        }
        false
    }

    /// Whether the walk enters `br` (and what lies below it).
    fn enters(&self, br: &Blockref) -> bool {
        match self.goal {
            Goal::Resync => br.is_degraded(),
            Goal::MoveOff(_) | Goal::Rebalance(_) => br.ptr().is_some(),
        }
    }

    /// Whether copy `l` is one this slice replaces.
    fn wants(&self, l: &hammer2_format::Location) -> bool {
        match self.goal {
            Goal::Resync => {
                l.state == CopyState::Missing && self.b.vol.devices.get(l.device).is_some_and(|m| m.writable())
            }
            Goal::MoveOff(d) => l.device == d,
            Goal::Rebalance(_) => false,
        }
    }

    /// For a rebalance onto `to`: the slot of `br`'s copy to move there, on its device
    /// with the most allocated units, if that is fuller than `to` and `br` has no copy
    /// there (and no other root may name it).
    fn rebalance_slot(&self, to: u8, br: &Blockref) -> Option<usize> {
        let p = br.ptr()?;
        if self.may_be_shared(br) || p.copies.iter().any(|l| l.device == to) {
            return None;
        }
        let target = self.b.alloc.allocated_units(to);
        let (slot, units) = p
            .copies
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_valid())
            .map(|(i, l)| (i, self.b.alloc.allocated_units(l.device)))
            .max_by_key(|(_, u)| *u)?;
        (units > target).then_some(slot)
    }

    /// A copy of `br` this slice replaces: a MISSING copy on a device we can write now
    /// (resync), any copy on the device being emptied, or one to move to a new device.
    fn fixable(&self, br: &Blockref) -> bool {
        match self.goal {
            Goal::Rebalance(to) => self.rebalance_slot(to, br).is_some(),
            _ => br.ptr().is_some_and(|p| p.copies.iter().any(|l| self.wants(l))),
        }
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
        let below = br.btype == BlockType::Indirect || (br.btype == BlockType::Inode && tree == TreeKind::Inodes);
        if self.other && below {
            // A node of another root: one walk per block, however many roots share it.
            let key = first_copy(br);
            if let Some(e) = key.and_then(|k| self.rebuilt.get(&k)) {
                return Ok(Some(*e));
            }
            if key.is_some_and(|k| self.clean.contains(&k)) {
                return Ok(None);
            }
            let r = self.node(br, tree)?;
            if let Some(k) = key {
                match r {
                    Some(e) => {
                        self.rebuilt.insert(k, e);
                    }
                    None => {
                        self.clean.insert(k);
                    }
                }
            }
            return Ok(r);
        }
        self.node(br, tree)
    }

    /// A block of another root replaced by a rebuilt one: its copies are freed at the end
    /// of the walk over every root, once every root and dead list names the new block (AR3).
    fn retire(&mut self, br: &Blockref) {
        if let Some(p) = br.ptr() {
            for l in p.copies.iter().filter(|l| l.is_valid()) {
                if self.gone.insert((l.device, l.offset)) {
                    self.out.retired.push(Extent::from_bytes(l.device, l.offset, u64::from(p.size)));
                }
            }
        }
    }

    /// A rebuilt node in place of `old`: in another root it keeps `old`'s birth (AR2).
    fn rebuilt_node(&mut self, old: &Blockref, e: PEntry) -> PEntry {
        if self.other {
            if let PEntry::New(id) = e {
                self.b.arena.get_mut(id).birth = Some(old.modify_tid);
            }
            self.retire(old);
        }
        e
    }

    fn node(&mut self, br: &Blockref, tree: TreeKind) -> Result<Option<PEntry>> {
        match br.btype {
            BlockType::Indirect => {
                let mut children: Vec<PEntry> = self.b.read_node(br)?.into_iter().map(PEntry::Ref).collect();
                if self.entries(&mut children, tree)? {
                    if !self.other {
                        self.b.release(&PEntry::Ref(*br));
                    }
                    let e = self.b.new_node(br.level, children)?;
                    return Ok(Some(self.rebuilt_node(br, e)));
                }
                self.fill(br)
            }
            BlockType::Inode if tree == TreeKind::Inodes => {
                if !self.other && self.skip.contains(&br.key) {
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
                let mut block = ino.clone();
                block.content = InodeContent::Tree { root_level: 0, entries: Vec::new() };
                if self.other {
                    let e = self.b.new_inode(block, Some(root))?;
                    return Ok(Some(self.rebuilt_node(br, e)));
                }
                self.b.release(&PEntry::Ref(*br));
                let entry = self.b.new_inode(block, Some(root.clone()))?;
                self.out.inodes.push((ino.inum, entry, root));
                Ok(Some(entry))
            }
            _ => self.fill(br),
        }
    }

    /// Whether another root may name the block `br` names too (AR1).
    fn may_be_shared(&self, br: &Blockref) -> bool {
        self.other || br.modify_tid <= self.shared_below
    }

    /// The copies of `br` this slice no longer names: freed now when no other root can
    /// name them, else retired (AR3).
    fn drop_copy(&mut self, br: &Blockref, loc: &hammer2_format::Location, size: u32) {
        if !self.gone.insert((loc.device, loc.offset)) {
            return;
        }
        let e = Extent::from_bytes(loc.device, loc.offset, u64::from(size));
        if self.may_be_shared(br) {
            self.out.retired.push(e);
        } else {
            // Freed by this very commit, reusable once it is durable (like any replaced block).
            self.b.alloc.free(e);
        }
    }

    /// `br` with the copies another reference of the same block already got (AR1).
    fn substituted(&mut self, br: &Blockref, copies: Copies) -> Result<PEntry> {
        let p = br.ptr().ok_or_else(|| Error::Corrupt("block reference lost its block".into()))?;
        for loc in p.copies.iter().filter(|l| l.is_valid()) {
            if !copies.iter().any(|n| n.is_valid() && n.device == loc.device && n.offset == loc.offset) {
                self.drop_copy(br, loc, p.size);
            }
        }
        let mut new = *br;
        if let Some(np) = new.ptr_mut() {
            np.copies = copies;
        }
        let below = br.btype == BlockType::Indirect || br.btype == BlockType::Inode;
        new.flags = if copies.any_missing() || (below && self.still_degraded_below(br)?) { FLAG_DEGRADED } else { 0 };
        new.mirror_tid = self.b.tid;
        Ok(PEntry::Ref(new))
    }

    /// Fills the fixable MISSING copies of an unchanged block.
    fn fill(&mut self, br: &Blockref) -> Result<Option<PEntry>> {
        if !self.fixable(br) {
            return Ok(None);
        }
        let Some(p) = br.ptr() else { return Ok(None) };
        if self.may_be_shared(br) {
            if let Some(c) = self.out.subst.leaf(br).or_else(|| self.carried.leaf(br)) {
                return self.substituted(br, c).map(Some);
            }
        }
        let data: Arc<[u8]> = Arc::from(self.b.vol.read_block_uncached(br, &ReadCtx::meta())?);
        // S4: resync takes only space that no reservation counts on; short of it, the slice
        // stops here (before placing any copy) and a later one continues once space is freed.
        let slot_units = self.b.alloc.slot();
        let placement = self.b.vol.placement();
        let mut wanted: Vec<(usize, u8, u8)> = Vec::new();
        let units = u64::from(p.size).div_ceil(hammer2_format::UNIT);
        let rebalance = match self.goal {
            Goal::Rebalance(to) => self.rebalance_slot(to, br),
            _ => None,
        };
        for (slot, loc) in p.copies.iter().enumerate() {
            let moved = match self.goal {
                Goal::Rebalance(_) => rebalance == Some(slot),
                _ => self.wants(loc),
            };
            if !moved {
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
                Goal::Rebalance(to) => {
                    placed[slot] = hammer2_format::Location::missing(to);
                    (to, placement.missing_region(self.b.alloc, to, slot, &placed))
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
        let mut dropped = Vec::new();
        for (slot, loc) in np.copies.as_mut_slice().iter_mut().enumerate() {
            if let Some(&(_, d, region)) = wanted.iter().find(|w| w.0 == slot) {
                if loc.is_valid() {
                    dropped.push(*loc);
                }
                *loc = placement.place_missing(self.b.alloc, d, region, Class::of(br.btype), p.size)?;
                self.b.arena.extra.push((loc.device, loc.offset, data.clone()));
                self.out.counts.copied_blocks += 1;
                self.out.counts.copied_bytes += u64::from(p.size);
            }
        }
        let still_missing = np.copies.any_missing();
        let copies = np.copies;
        for loc in &dropped {
            self.drop_copy(br, loc, p.size);
        }
        if self.may_be_shared(br) {
            self.out.subst.record_leaf(br, copies);
        }
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
