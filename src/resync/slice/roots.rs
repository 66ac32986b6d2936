//! The walk over every root other than the served PFS's trees (AR1..AR3 in
//! docs/DESIGN.md): the other PFSs, snapshots and clones, the PFS table, and every dead
//! list. It runs in the commit whose slice found the served trees done, whole (not
//! budgeted: what it copies is what only those roots still hold).
//!
//! Order, and why:
//! 1. The other records' trees, with the substitution map: a block the served trees or
//!    another root relocated gets the same new copies; a node rebuilt here keeps its birth
//!    (AR2) and is shared by every root that shared the old one.
//! 2. The dead lists (the served PFS's, the others', and the entries this commit's own
//!    drops are adding): each entry names what a snapshot holds, so it takes the new copies
//!    or the new node. A node rebuilt in this very commit has no final reference yet: its
//!    entries follow in the next commit (which the walk asks for by not completing).
//! 3. The copies retired by earlier commits: no reference names them any more, so they
//!    are freed (AR3).

use super::{Goal, Slice};
use crate::alloc::Extent;
use crate::commit::deadlist::{self, EntriesKept, physical};
use crate::error::Result;
use crate::fs::PfsRoots;
use crate::tree::Root;
use crate::tree::modify::{Change, NodeWriter, PEntry, PRoot, apply};
use crate::walk::TreeKind;
use hammer2_format::{BlockType, Blockref, Payload, PfsRecord};

fn proot(br: &Blockref) -> PRoot {
    PRoot::from(&Root::from_ref(br))
}

/// One other PFS's roots as this walk leaves them.
struct Other {
    record: PfsRecord,
    inodes: PRoot,
    orphans: PRoot,
    dead: PRoot,
    changed: bool,
}

impl Slice<'_, '_> {
    /// Steps 1 to 3 of the module doc. `retired`: copies earlier commits retired.
    pub(super) fn other_roots(&mut self, pfs: &PfsRoots, retired: &[Extent]) -> Result<()> {
        let Some(served) = pfs.served.as_ref() else { return Ok(()) };
        // Nothing walked here is the served PFS's: what is dropped is not entered in its
        // dead list (each list is rewritten below), and its referenced bytes stay.
        let mut sink = self.b.dead.take();
        let referenced = self.b.referenced.take();
        self.other = true;
        let dropped = sink.as_mut().map(|s| std::mem::take(&mut s.entries)).unwrap_or_default();
        let r = self.walk_others(pfs, served, dropped, retired);
        self.other = false;
        self.b.referenced = referenced;
        if let Some(s) = sink.as_mut() {
            s.entries = r?;
        } else {
            r?;
        }
        self.b.dead = sink;
        Ok(())
    }

    fn walk_others(
        &mut self,
        pfs: &PfsRoots,
        served: &PfsRecord,
        sink: Vec<Blockref>,
        retired: &[Extent],
    ) -> Result<Vec<Blockref>> {
        let records = crate::pfs::records(self.b.vol, &pfs.table, self.b.vol.devices.len())?;
        // A table node or record block that itself needs a copy: every record is written
        // again, which rewrites every path of the table.
        let table_fixable = self.table_fixable(&pfs.table)?;
        let mut others = Vec::new();
        for (br, rec) in records.into_iter().filter(|(_, r)| r.id != served.id) {
            let mut o = Other {
                inodes: proot(&rec.inode_root),
                orphans: proot(&rec.orphan_root),
                dead: proot(&rec.dead_root),
                changed: table_fixable || self.fixable(&br),
                record: rec,
            };
            o.changed |= self.entries(&mut o.inodes.entries, TreeKind::Inodes)?;
            o.changed |= self.entries(&mut o.orphans.entries, TreeKind::Orphans)?;
            others.push(o);
        }
        for o in &mut others {
            let (dead, changed, delta) = self.dead_list(std::mem::take(&mut o.dead))?;
            o.dead = dead;
            o.changed |= changed;
            o.record.dead_bytes = o.record.dead_bytes.saturating_add_signed(delta);
        }
        let (mut served_dead, mut changed, mut delta) = self.dead_list(proot(&served.dead_root))?;
        // This commit's own drops: an entry for a node rebuilt just now goes in as its alias.
        let mut pending = Vec::new();
        let mut kept = Vec::with_capacity(sink.len());
        for e in sink {
            match self.dead_entry(&e)? {
                Entry::Same => kept.push(e),
                Entry::Ref(n) => kept.push(n),
                Entry::Pending(id) => pending.push((e, id)),
            }
        }
        if !pending.is_empty() {
            let (root, added) = deadlist::append_pending(self.b, served_dead, &pending)?;
            served_dead = root;
            changed = true;
            delta += added as i64;
        }
        if changed {
            self.out.served_dead = Some((served_dead, delta));
        }
        for o in others.into_iter().filter(|o| o.changed) {
            let e = self.b.new_pfs_record(o.record.clone(), o.inodes, o.orphans, o.dead)?;
            self.out.records.push((o.record.id, e));
        }
        // AR3: every reference and entry now names the new blocks; the old copies this
        // walk retired, and those earlier slices of the served trees retired, are free.
        for e in retired.iter().chain(&std::mem::take(&mut self.out.retired)) {
            self.b.alloc.free(*e);
        }
        self.out.other_roots_done = true;
        Ok(kept)
    }

    /// Whether a block of the PFS table (a node or a record block) needs a copy.
    fn table_fixable(&self, table: &Root) -> Result<bool> {
        let mut found = false;
        crate::tree::for_each_ref(self.b.vol, table, &mut |br| {
            found |= self.fixable(br);
            Ok(!found)
        })?;
        Ok(found)
    }

    /// A dead list with every entry pointing at the relocated block it stands for; true
    /// when an entry changed, and the change of the list's physical bytes.
    fn dead_list(&mut self, root: PRoot) -> Result<(PRoot, bool, i64)> {
        let mut leaves = Vec::new();
        self.dead_leaves(root.level, &root.entries, &mut leaves)?;
        let mut changes = Vec::new();
        let mut delta = 0i64;
        for e in &leaves {
            let new = match self.dead_entry(e)? {
                Entry::Same => continue,
                Entry::Ref(n) => {
                    delta += physical(&n) as i64;
                    PEntry::Ref(n)
                }
                Entry::Pending(id) => {
                    let b = self.b.arena.get(id);
                    delta += (u64::from(b.size) * b.copies.iter().filter(|l| l.is_valid()).count() as u64) as i64;
                    deadlist::alias(self.b, e.key, e, id)
                }
            };
            delta -= physical(e) as i64;
            changes.push((e.key, Change::Put(new)));
        }
        if changes.is_empty() {
            return Ok((root, false, 0));
        }
        Ok((apply(&mut EntriesKept(self.b), root, 1, true, &changes)?, true, delta))
    }

    /// The entries of a dead list the walk must look at: every one for a move (nothing
    /// marks which name the device), those below DEGRADED nodes for a resync.
    fn dead_leaves(&mut self, level: u8, list: &[PEntry], out: &mut Vec<Blockref>) -> Result<()> {
        for e in list {
            let PEntry::Ref(br) = e else { continue };
            if level == 0 {
                out.push(*br);
            } else if matches!(self.goal, Goal::MoveOff(_)) || br.is_degraded() {
                let below: Vec<PEntry> = self.b.read_node(br)?.into_iter().map(PEntry::Ref).collect();
                self.dead_leaves(level - 1, &below, out)?;
            }
        }
        Ok(())
    }

    /// The entry `e` (a DEAD entry, or a reference this commit's drops are adding) once the
    /// block it stands for was relocated. A block no root relocated (its tree reference was
    /// caught up before this map existed) gets its own copies, as its tree reference did.
    fn dead_entry(&mut self, e: &Blockref) -> Result<Entry> {
        if e.ptr().is_none() {
            return Ok(Entry::Same);
        }
        let valid =
            e.ptr().into_iter().flat_map(|p| p.copies.iter().filter(|l| l.is_valid()).map(|l| (l.device, l.offset)));
        let rebuilt: Vec<PEntry> = valid.filter_map(|k| self.rebuilt.get(&k).copied()).collect();
        match rebuilt.first() {
            Some(PEntry::New(id)) => return Ok(Entry::Pending(*id)),
            Some(PEntry::Ref(n)) if same_block_filled(e, n) => {
                return Ok(Entry::Ref(Blockref {
                    btype: e.btype,
                    key: e.key,
                    keybits: e.keybits,
                    level: e.level,
                    payload: e.payload,
                    ..*n
                }));
            }
            _ => {}
        }
        let as_block = original(e);
        Ok(match self.fill(&as_block)? {
            Some(PEntry::Ref(n)) => Entry::Ref(Blockref { btype: e.btype, key: e.key, payload: e.payload, ..n }),
            _ => Entry::Same,
        })
    }
}

/// What becomes of a dead-list entry.
enum Entry {
    Same,
    /// It names the block's new copies.
    Ref(Blockref),
    /// It stands for this pending block of the commit (a rebuilt node, AR2).
    Pending(u32),
}

/// Whether `n` is `e`'s block with copies filled or moved (same size, check, birth).
fn same_block_filled(e: &Blockref, n: &Blockref) -> bool {
    match (e.ptr(), n.ptr()) {
        (Some(a), Some(b)) => a.size == b.size && a.check == b.check && e.modify_tid == n.modify_tid,
        _ => false,
    }
}

/// A DEAD entry as a reference of the kind of block it stands for (for the copy walk: a
/// node's flag is then computed from what is below it).
fn original(e: &Blockref) -> Blockref {
    match (e.btype, e.payload) {
        (BlockType::Dead, Payload::Dead { original }) => match BlockType::from_code(original) {
            Some(t) if t != BlockType::Data => Blockref { btype: t, payload: Payload::None, ..*e },
            _ => *e,
        },
        _ => *e,
    }
}
