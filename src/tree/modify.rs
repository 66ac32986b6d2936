//! The commit side of the tree: applies a sorted batch of leaf changes to a committed tree
//! and returns the new root. Nothing is modified in place: every node on a changed path is
//! rebuilt as a new pending block (see `commit::arena`), and the old node is freed.
//!
//! Shape rules:
//! - A node holds at most `capacity` entries; an overflowing list is cut into nodes. When a
//!   batch only appends past a node's last key (a growing file, increasing inode numbers),
//!   the cut leaves full nodes behind instead of half-full ones.
//! - A rebuilt node left with fewer than `capacity / 4` entries is merged with a neighbour,
//!   so delete-heavy workloads do not leave chains of nearly empty nodes.
//! - A root that overflows its blockset grows a level; a root with a single child whose
//!   entries fit into the root shrinks a level.

use super::Root;
use crate::error::Result;
use hammer2_format::Blockref;

/// An entry of a node being built: an unchanged committed reference, or a block created by
/// this commit (index into the arena).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PEntry {
    Ref(Blockref),
    New(u32),
}

#[derive(Debug, Clone)]
pub enum Change {
    Put(PEntry),
    Delete,
}

/// A root being built.
#[derive(Debug, Clone, Default)]
pub struct PRoot {
    pub level: u8,
    pub entries: Vec<PEntry>,
}

impl From<&Root> for PRoot {
    fn from(r: &Root) -> PRoot {
        PRoot { level: r.level, entries: r.entries.iter().map(|b| PEntry::Ref(*b)).collect() }
    }
}

/// What the tree code needs from the commit in progress.
pub trait NodeWriter {
    /// Entries of a committed node (verified read).
    fn read_node(&self, br: &Blockref) -> Result<Vec<Blockref>>;
    /// Entries of a node created earlier in this commit.
    fn pending_entries(&self, id: u32) -> Vec<PEntry>;
    /// Creates (and places) a new node of `level` holding `entries`.
    fn new_node(&mut self, level: u8, entries: Vec<PEntry>) -> Result<PEntry>;
    /// The key of an entry.
    fn key(&self, e: &PEntry) -> u64;
    /// Releases a block the new tree no longer references (committed: freed once the
    /// commit is durable; pending: dropped at once).
    fn release(&mut self, e: &PEntry);
    /// Maximum entries of an indirect node.
    fn capacity(&self) -> usize;
}

/// Applies `changes` (sorted by key, one per key) to the tree `root` (a committed root, or
/// one already rebuilt earlier in this commit), whose blockset holds
/// at most `root_cap` entries. `indirect_root` forces the root to be a single INDIRECT
/// reference (volume-header roots), unless the tree is empty.
pub fn apply(
    w: &mut dyn NodeWriter,
    root: PRoot,
    root_cap: usize,
    indirect_root: bool,
    changes: &[(u64, Change)],
) -> Result<PRoot> {
    if changes.is_empty() {
        return Ok(root);
    }
    let mut level = root.level;
    let mut list = root.entries;
    let old_last = list.last().map(|e| w.key(e));
    if !changes.is_empty() {
        list = apply_level(w, level, list, changes)?;
    }
    let append = old_last.is_none_or(|k| changes.iter().all(|(c, _)| *c > k));

    // Shrink while the root has a single child whose entries fit in the root.
    while level > 0 && list.len() == 1 {
        let child = list[0];
        let entries = entries_of(w, &child)?;
        // A volume root is one reference: it can only drop a level when its node has a
        // single child of its own.
        let fits = if indirect_root { level > 1 && entries.len() == 1 } else { entries.len() <= root_cap };
        if !fits {
            break;
        }
        w.release(&child);
        list = entries;
        level -= 1;
    }
    // Grow while the blockset overflows (or a volume root is not yet a single INDIRECT).
    while list.len() > root_cap || (indirect_root && level == 0 && !list.is_empty()) {
        list = pack(w, level + 1, list, append)?;
        level += 1;
    }
    if list.is_empty() {
        level = 0;
    }
    Ok(PRoot { level, entries: list })
}

fn entries_of(w: &mut dyn NodeWriter, e: &PEntry) -> Result<Vec<PEntry>> {
    Ok(match e {
        PEntry::Ref(br) => w.read_node(br)?.into_iter().map(PEntry::Ref).collect(),
        PEntry::New(id) => w.pending_entries(*id),
    })
}

fn apply_level(
    w: &mut dyn NodeWriter,
    level: u8,
    entries: Vec<PEntry>,
    changes: &[(u64, Change)],
) -> Result<Vec<PEntry>> {
    if level == 0 {
        return Ok(merge_leaves(w, entries, changes));
    }
    if entries.is_empty() {
        // A tree of height >= 1 never has an empty root; treat as leaves below.
        let leaves = merge_leaves(w, Vec::new(), changes);
        return pack(w, level, leaves, true);
    }
    let keys: Vec<u64> = entries.iter().map(|e| w.key(e)).collect();
    let mut out = Vec::with_capacity(entries.len() + 2);
    let mut c = 0;
    for (i, child) in entries.iter().enumerate() {
        let end = if i + 1 < entries.len() { keys[i + 1] } else { u64::MAX };
        let start_c = c;
        // Changes below the first key go to the first child.
        while c < changes.len() && (changes[c].0 < end || i + 1 == entries.len()) {
            c += 1;
        }
        let mine = &changes[start_c..c];
        if mine.is_empty() {
            out.push(*child);
            continue;
        }
        let child_entries = entries_of(w, child)?;
        let last = child_entries.last().map(|e| w.key(e));
        let append = last.is_none_or(|k| mine.iter().all(|(ck, _)| *ck > k));
        let new_list = apply_level(w, level - 1, child_entries, mine)?;
        w.release(child);
        out.extend(pack(w, level, new_list, append)?);
    }
    merge_small(w, level, out)
}

fn merge_leaves(w: &mut dyn NodeWriter, entries: Vec<PEntry>, changes: &[(u64, Change)]) -> Vec<PEntry> {
    let mut out = Vec::with_capacity(entries.len() + changes.len());
    let mut it = entries.into_iter().peekable();
    for (key, change) in changes {
        while let Some(e) = it.peek() {
            if w.key(e) < *key {
                out.push(*e);
                it.next();
            } else {
                break;
            }
        }
        let existing = match it.peek() {
            Some(e) if w.key(e) == *key => it.next(),
            _ => None,
        };
        if let Some(old) = existing {
            w.release(&old);
        }
        if let Change::Put(e) = change {
            out.push(*e);
        }
    }
    out.extend(it);
    out
}

/// Cuts `list` (entries of level `level - 1`) into nodes of level `level`.
fn pack(w: &mut dyn NodeWriter, level: u8, list: Vec<PEntry>, append: bool) -> Result<Vec<PEntry>> {
    let cap = w.capacity();
    let n = list.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let k = n.div_ceil(cap);
    let mut sizes = Vec::with_capacity(k);
    if append {
        for i in 0..k {
            sizes.push(if i + 1 < k { cap } else { n - cap * (k - 1) });
        }
    } else {
        for i in 0..k {
            sizes.push(n / k + usize::from(i < n % k));
        }
    }
    let mut out = Vec::with_capacity(k);
    let mut it = list.into_iter();
    for s in sizes {
        let chunk: Vec<PEntry> = it.by_ref().take(s).collect();
        out.push(w.new_node(level, chunk)?);
    }
    Ok(out)
}

/// Merges nodes created by this commit that fell below a quarter of capacity into a
/// neighbour.
fn merge_small(w: &mut dyn NodeWriter, level: u8, mut list: Vec<PEntry>) -> Result<Vec<PEntry>> {
    let cap = w.capacity();
    let small = cap / 4;
    let mut i = 0;
    while list.len() > 1 && i < list.len() {
        let is_small_new = match list[i] {
            PEntry::New(id) => w.pending_entries(id).len() < small,
            PEntry::Ref(_) => false,
        };
        if !is_small_new {
            i += 1;
            continue;
        }
        let j = if i + 1 < list.len() { i + 1 } else { i - 1 };
        let (a, b) = (i.min(j), i.max(j));
        let mut merged = entries_of(w, &list[a])?;
        merged.extend(entries_of(w, &list[b])?);
        w.release(&list[a]);
        w.release(&list[b]);
        let nodes = pack(w, level, merged, false)?;
        let produced = nodes.len();
        list.splice(a..=b, nodes);
        // A merge that produced one node may still be small next to another neighbour;
        // a merge that re-split produced balanced nodes.
        i = if produced == 1 { a } else { a + produced };
        if produced == 1 && list.len() > 1 {
            if let PEntry::New(id) = list[a] {
                if w.pending_entries(id).len() >= small {
                    i = a + 1;
                }
            }
        }
    }
    Ok(list)
}
