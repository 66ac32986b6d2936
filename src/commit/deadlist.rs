//! Dead lists (FORMAT-V2 "Shared blocks and the rule that frees them"): per PFS record, a
//! tree of DEAD entries keyed by `birth_tid << 24 | seq`, each a copy of the reference of a
//! block the PFS dropped while an older snapshot still held it. Ordered by birth, so the
//! blocks a deleted snapshot held alone are one key range of the next list.
//!
//! One entry per dropped block (the design allows one entry for a whole dropped subtree;
//! this writer does not make those, so freeing an entry frees exactly one block).

use super::arena::{Content, PBlock};
use super::builder::Builder;
use crate::error::Result;
use crate::tree::child_index;
use crate::tree::modify::{Change, NodeWriter, PEntry, PRoot, apply};
use hammer2_format::blockref::Copies;
use hammer2_format::blockref::{dead_key, dead_key_birth};
use hammer2_format::{BlockType, Blockref, Payload};
use std::collections::BTreeMap;

/// The physical bytes a block takes: its size on every valid copy.
pub fn physical(br: &Blockref) -> u64 {
    br.ptr().map_or(0, |p| u64::from(p.size) * p.copies.iter().filter(|l| l.is_valid()).count() as u64)
}

/// The dead-list entry standing for `br` under `key`.
fn entry(br: &Blockref, key: u64) -> Blockref {
    let original = if br.btype == BlockType::Dead {
        match br.payload {
            Payload::Dead { original } => original,
            _ => br.btype.code(),
        }
    } else {
        br.btype.code()
    };
    Blockref { btype: BlockType::Dead, keybits: 0, level: 0, key, payload: Payload::Dead { original }, ..*br }
}

fn children(w: &dyn NodeWriter, e: &PEntry) -> Result<Vec<PEntry>> {
    Ok(match e {
        PEntry::Ref(br) => w.read_node(br)?.into_iter().map(PEntry::Ref).collect(),
        PEntry::New(id) => w.pending_entries(*id),
    })
}

/// The largest key below `bound` in the tree `root`, if any: one path down.
fn last_below(w: &dyn NodeWriter, root: &PRoot, bound: u64) -> Result<Option<u64>> {
    let Some(target) = bound.checked_sub(1) else { return Ok(None) };
    let mut level = root.level;
    let mut list = root.entries.clone();
    loop {
        if list.is_empty() {
            return Ok(None);
        }
        if level == 0 {
            return Ok(list.iter().map(|e| w.key(e)).filter(|k| *k <= target).max());
        }
        let i = child_index(|i| w.key(&list[i]), list.len(), target);
        if w.key(&list[i]) > target {
            return Ok(None);
        }
        list = children(w, &list[i])?;
        level -= 1;
    }
}

/// Every leaf of `root` with key >= `from`, in key order.
pub fn leaves_from(w: &dyn NodeWriter, root: &PRoot, from: u64) -> Result<Vec<Blockref>> {
    fn go(w: &dyn NodeWriter, level: u8, list: &[PEntry], from: u64, out: &mut Vec<Blockref>) -> Result<()> {
        if list.is_empty() {
            return Ok(());
        }
        if level == 0 {
            for e in list {
                if let PEntry::Ref(br) = e {
                    if br.key >= from {
                        out.push(*br);
                    }
                }
            }
            return Ok(());
        }
        let start = child_index(|i| w.key(&list[i]), list.len(), from);
        for e in &list[start..] {
            go(w, level - 1, &children(w, e)?, from, out)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    go(w, root.level, &root.entries, from, &mut out)?;
    Ok(out)
}

/// Keys for new entries of the given births, in order: each birth's entries continue after
/// the last sequence number the list has for it.
fn new_keys(w: &dyn NodeWriter, root: &PRoot, births: &[u64]) -> Result<Vec<u64>> {
    let mut next: BTreeMap<u64, u64> = BTreeMap::new();
    let mut keys = Vec::with_capacity(births.len());
    for &birth in births {
        let seq = match next.get(&birth) {
            Some(s) => *s,
            None => match last_below(w, root, dead_key(birth + 1, 0))? {
                Some(k) if dead_key_birth(k) == birth => (k & ((1 << hammer2_format::blockref::DEAD_SEQ_BITS) - 1)) + 1,
                _ => 0,
            },
        };
        next.insert(birth, seq + 1);
        keys.push(dead_key(birth, seq));
    }
    Ok(keys)
}

fn birth(br: &Blockref) -> u64 {
    if br.btype == BlockType::Dead { dead_key_birth(br.key) } else { br.modify_tid }
}

/// Appends entries for `blocks` (references of dropped blocks, or DEAD entries of another
/// list being merged) to the dead list `root`; returns the new root and the physical bytes
/// added.
pub fn append(b: &mut Builder, root: PRoot, blocks: &[Blockref]) -> Result<(PRoot, u64)> {
    if blocks.is_empty() {
        return Ok((root, 0));
    }
    let births: Vec<u64> = blocks.iter().map(birth).collect();
    let keys = new_keys(b, &root, &births)?;
    let mut changes: Vec<(u64, Change)> = Vec::with_capacity(blocks.len());
    let mut bytes = 0;
    for (br, key) in blocks.iter().zip(keys) {
        bytes += physical(br);
        changes.push((key, Change::Put(PEntry::Ref(entry(br, key)))));
    }
    changes.sort_by_key(|c| c.0);
    Ok((apply(b, root, 1, true, &changes)?, bytes))
}

/// Appends entries that stand for blocks of this commit: (the reference of the block the
/// entry replaces, which gives its birth and kind; the new block's pending id). Returns the
/// new root and the physical bytes added.
pub fn append_pending(b: &mut Builder, root: PRoot, items: &[(Blockref, u32)]) -> Result<(PRoot, u64)> {
    if items.is_empty() {
        return Ok((root, 0));
    }
    let births: Vec<u64> = items.iter().map(|(br, _)| birth(br)).collect();
    let keys = new_keys(b, &root, &births)?;
    let mut changes: Vec<(u64, Change)> = Vec::with_capacity(items.len());
    let mut bytes = 0;
    for ((br, id), key) in items.iter().zip(keys) {
        let size = b.arena.get(*id).size;
        bytes += u64::from(size) * b.arena.get(*id).copies.iter().filter(|l| l.is_valid()).count() as u64;
        changes.push((key, Change::Put(alias(b, key, br, *id))));
    }
    changes.sort_by_key(|c| c.0);
    Ok((apply(b, root, 1, true, &changes)?, bytes))
}

/// A DEAD entry under `key` standing for pending block `id`, which replaces the block `br`
/// stood for (its kind is kept).
pub fn alias(b: &mut Builder, key: u64, br: &Blockref, id: u32) -> PEntry {
    let original = entry(br, key);
    let a = b.arena.push(PBlock {
        payload: original.payload,
        ..PBlock::new(BlockType::Dead, key, 0, Copies::new(), Content::Alias { of: id })
    });
    PEntry::New(a)
}

/// Removes the entries with key >= `from` from the dead list `root` and frees the blocks
/// they stand for (no tree holds them any more); returns the new root and the physical
/// bytes freed.
pub fn free_from(b: &mut Builder, root: PRoot, from: u64) -> Result<(PRoot, u64)> {
    let gone = leaves_from(b, &root, from)?;
    let mut bytes = 0;
    for br in &gone {
        bytes += physical(br);
        b.free_now(br);
    }
    let changes: Vec<(u64, Change)> = gone.iter().map(|br| (br.key, Change::Delete)).collect();
    Ok((apply(&mut EntriesKept(b), root, 1, true, &changes)?, bytes))
}

/// Frees the nodes of a dead list whose entries moved elsewhere (not the blocks the
/// entries stand for).
pub fn free_nodes(b: &mut Builder, root: &PRoot) -> Result<()> {
    fn go(b: &mut Builder, level: u8, list: &[PEntry]) -> Result<()> {
        if level == 0 {
            return Ok(());
        }
        for e in list {
            let below = children(b, e)?;
            go(b, level - 1, &below)?;
            b.release(e);
        }
        Ok(())
    }
    go(b, root.level, &root.entries)
}

/// A writer for changing a dead list's entries without freeing the blocks they stand for:
/// the caller decides about those (freed just above when deleted, or still held by a
/// snapshot when an entry is replaced by its relocated self). The list's own nodes are
/// released as usual: a dead list is never shared.
pub(crate) struct EntriesKept<'b, 'a>(pub &'b mut Builder<'a>);

impl NodeWriter for EntriesKept<'_, '_> {
    fn read_node(&self, br: &Blockref) -> Result<Vec<Blockref>> {
        self.0.read_node(br)
    }
    fn pending_entries(&self, id: u32) -> Vec<PEntry> {
        self.0.pending_entries(id)
    }
    fn new_node(&mut self, level: u8, entries: Vec<PEntry>) -> Result<PEntry> {
        self.0.new_node(level, entries)
    }
    fn key(&self, e: &PEntry) -> u64 {
        self.0.key(e)
    }
    fn release(&mut self, e: &PEntry) {
        if !matches!(e, PEntry::Ref(br) if br.btype == BlockType::Dead) {
            self.0.release(e)
        }
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}
