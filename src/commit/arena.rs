//! Blocks created by a commit before they are written.
//!
//! A commit first builds every new block as a pending block: its copies are allocated at
//! once (so the free map can be completed), but its content and check value are produced
//! only at `finalize`, after the last allocation, because a free-map leaf's content depends
//! on every allocation of the commit and a parent's content depends on its children's check
//! values. Finalize therefore goes children-first. That is usually creation order, but not
//! always: a resync slice can give a node this commit built earlier new children, created
//! after it. So the order is derived from the blocks' contents (`children_first`).

use crate::alloc::Allocator;
use crate::tree::modify::{PEntry, PRoot};
use hammer2_format::blockref::FLAG_DEGRADED;
use hammer2_format::{
    BlockData, BlockPtr, BlockType, Blockref, Check, CheckMethod, InodeBlock, InodeContent, Payload, PfsRecord,
    indirect,
};
use std::sync::Arc;

pub enum Content {
    /// Content known up front (file data, long names, xattrs): the first `len` bytes of `buf`.
    Bytes { buf: Arc<Vec<u8>>, len: usize },
    /// An indirect node.
    Node(Vec<PEntry>),
    /// An inode block; `root` is its tree when it has one (otherwise the block embeds data).
    Inode { block: Box<InodeBlock>, root: Option<PRoot> },
    /// A free-map leaf, generated from the allocator at finalize.
    FreemapLeaf { device: u8, leaf: u32 },
    /// A PFS record (format version 2); `inodes`, `orphans` and `dead` are its roots.
    PfsRecord { record: Box<PfsRecord>, inodes: PRoot, orphans: PRoot, dead: PRoot },
    /// A dead-list entry standing for block `of` of this same commit: no block of its own
    /// (no copies, nothing written); its reference is `of`'s, as a DEAD entry under this
    /// block's key and payload (AR2 in docs/DESIGN.md: an entry follows a node rebuilt in
    /// the commit that rebuilds it).
    Alias { of: u32 },
}

pub struct PBlock {
    pub btype: BlockType,
    pub key: u64,
    pub keybits: u8,
    pub level: u8,
    pub payload: Payload,
    pub size: u32,
    pub copies: hammer2_format::blockref::Copies,
    pub content: Content,
    /// Dropped by a later step of the same commit (its allocation was released).
    pub dead: bool,
    /// Its copies went to the devices' streaming writers while the commit was built.
    pub streamed: bool,
    /// The final reference, set by `finalize`.
    pub done: Option<Blockref>,
    /// Encoded bytes for generated content, set by `finalize`.
    pub encoded: Option<Vec<u8>>,
    /// A node's final entries, set by `finalize`: what a read of the node would decode,
    /// handed to the block cache once the commit is durable.
    pub entries: Option<Arc<crate::tree::Node>>,
    /// The birth (`modify_tid`) of the block this one relocates, when it is a relocation
    /// rather than a change: a node rebuilt only because copies below it moved keeps the
    /// birth of the node it replaces in every tree that shared it (AR1 in docs/DESIGN.md).
    /// `None`: born in this commit.
    pub birth: Option<u64>,
}

impl PBlock {
    /// A new block of this commit at level 0 with no payload; `finalize` fills in the rest.
    pub fn new(
        btype: BlockType,
        key: u64,
        size: u32,
        copies: hammer2_format::blockref::Copies,
        content: Content,
    ) -> PBlock {
        PBlock {
            btype,
            key,
            keybits: 0,
            level: 0,
            payload: Payload::None,
            size,
            copies,
            content,
            dead: false,
            streamed: false,
            done: None,
            encoded: None,
            entries: None,
            birth: None,
        }
    }

    /// The bytes to write (after `finalize`).
    pub fn bytes(&self) -> &[u8] {
        match &self.content {
            Content::Bytes { buf, len } => &buf[..*len],
            _ => self.encoded.as_deref().unwrap_or(&[]),
        }
    }
}

#[derive(Default)]
pub struct Arena {
    pub blocks: Vec<PBlock>,
    /// Single copies of unchanged blocks, written where a resync filled a MISSING copy:
    /// (device, offset, content). Durable before the headers, like every other write.
    pub extra: Vec<(u8, u64, Arc<[u8]>)>,
}

impl Arena {
    pub fn push(&mut self, b: PBlock) -> u32 {
        self.blocks.push(b);
        (self.blocks.len() - 1) as u32
    }

    pub fn get(&self, id: u32) -> &PBlock {
        &self.blocks[id as usize]
    }

    pub fn get_mut(&mut self, id: u32) -> &mut PBlock {
        &mut self.blocks[id as usize]
    }

    /// The final reference of an entry (after `finalize`). Panics on an unfinalized entry:
    /// finalize processes blocks children-first, so every entry a parent names is final.
    pub fn resolve(&self, e: &PEntry) -> Blockref {
        match e {
            PEntry::Ref(b) => *b,
            PEntry::New(id) => self.get(*id).done.expect("child finalized before parent"),
        }
    }

    fn make_ref(b: &PBlock, tid: u64, check: Check, degraded_below: bool) -> Blockref {
        let degraded = degraded_below || b.copies.any_missing();
        Blockref {
            btype: b.btype,
            keybits: b.keybits,
            level: b.level,
            flags: if degraded { FLAG_DEGRADED } else { 0 },
            key: b.key,
            modify_tid: b.birth.unwrap_or(tid),
            mirror_tid: tid,
            data: BlockData::Block(BlockPtr { size: b.size, check, copies: b.copies }),
            payload: b.payload,
        }
    }

    /// The pending blocks a block's content names.
    fn pending_children(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let (entries, more, dead): (&[PEntry], &[PEntry], &[PEntry]) = match &self.blocks[i].content {
            Content::Node(entries) => (entries, &[], &[]),
            Content::Inode { root: Some(root), .. } => (&root.entries, &[], &[]),
            Content::PfsRecord { inodes, orphans, dead, .. } => (&inodes.entries, &orphans.entries, &dead.entries),
            _ => (&[], &[], &[]),
        };
        let alias = match &self.blocks[i].content {
            Content::Alias { of } => Some(*of as usize),
            _ => None,
        };
        entries
            .iter()
            .chain(more)
            .chain(dead)
            .filter_map(|e| match e {
                PEntry::New(id) => Some(*id as usize),
                PEntry::Ref(_) => None,
            })
            .chain(alias)
    }

    /// Every block index, each one after all the pending blocks below it (depth-first
    /// post-order; a pending block has one parent, and the trees have no cycles).
    fn children_first(&self) -> Vec<usize> {
        let n = self.blocks.len();
        let mut seen = vec![false; n];
        let mut order = Vec::with_capacity(n);
        for top in 0..n {
            if seen[top] {
                continue;
            }
            seen[top] = true;
            let mut stack = vec![(top, false)];
            while let Some((i, expanded)) = stack.pop() {
                if expanded {
                    order.push(i);
                    continue;
                }
                stack.push((i, true));
                for c in self.pending_children(i) {
                    if !seen[c] {
                        seen[c] = true;
                        stack.push((c, false));
                    }
                }
            }
        }
        order
    }

    /// Produces content, check value and final reference of every live block.
    pub fn finalize(&mut self, tid: u64, method: CheckMethod, alloc: &Allocator) {
        // Known content first, its check values computed in parallel (it is most of a
        // large commit's CPU time).
        let idx: Vec<usize> = (0..self.blocks.len())
            .filter(|&i| !self.blocks[i].dead && matches!(self.blocks[i].content, Content::Bytes { .. }))
            .collect();
        let threads = crate::parallel::threads();
        let checks: Vec<Check> = if idx.len() < 16 {
            idx.iter().map(|&i| method.compute(self.blocks[i].bytes())).collect()
        } else {
            let chunk = idx.len().div_ceil(threads);
            let blocks = &self.blocks;
            std::thread::scope(|s| {
                let hs: Vec<_> = idx
                    .chunks(chunk)
                    .map(|c| s.spawn(move || c.iter().map(|&i| method.compute(blocks[i].bytes())).collect::<Vec<_>>()))
                    .collect();
                hs.into_iter().flat_map(|h| h.join().expect("check worker panicked")).collect()
            })
        };
        for (&i, c) in idx.iter().zip(checks) {
            let r = Self::make_ref(&self.blocks[i], tid, c, false);
            self.blocks[i].done = Some(r);
        }

        for i in self.children_first() {
            if self.blocks[i].dead || self.blocks[i].done.is_some() {
                continue;
            }
            if let Content::Alias { of } = self.blocks[i].content {
                let of = self.blocks[of as usize].done.expect("an aliased block is finalized before its alias");
                let b = &self.blocks[i];
                let r = Blockref { btype: b.btype, key: b.key, keybits: 0, level: 0, payload: b.payload, ..of };
                self.blocks[i].done = Some(r);
                continue;
            }
            let mut node_entries = None;
            let (bytes, degraded_below, payload) = match &self.blocks[i].content {
                Content::Bytes { .. } => unreachable!("bytes blocks finalized above"),
                Content::Alias { .. } => unreachable!("aliases finalized above"),
                Content::Node(entries) => {
                    let refs: crate::tree::Node = entries.iter().map(|e| self.resolve(e)).collect();
                    let deg = refs.iter().any(|r| r.is_degraded());
                    let bytes = indirect::encode(&refs, self.blocks[i].size as usize);
                    node_entries = Some(Arc::new(refs));
                    (bytes, deg, self.blocks[i].payload)
                }
                Content::Inode { block, root } => {
                    let mut block = (**block).clone();
                    let mut deg = false;
                    if let Some(root) = root {
                        let refs: Vec<Blockref> = root.entries.iter().map(|e| self.resolve(e)).collect();
                        deg = refs.iter().any(|r| r.is_degraded());
                        block.content = InodeContent::Tree { root_level: root.level, entries: refs };
                    }
                    (block.encode(), deg, self.blocks[i].payload)
                }
                Content::PfsRecord { record, inodes, orphans, dead } => {
                    let mut record = (**record).clone();
                    let root = |r: &PRoot| r.entries.first().map_or(Blockref::EMPTY, |e| self.resolve(e));
                    record.inode_root = root(inodes);
                    record.orphan_root = root(orphans);
                    record.dead_root = root(dead);
                    let deg = record.inode_root.is_degraded()
                        || record.orphan_root.is_degraded()
                        || record.dead_root.is_degraded();
                    (record.encode(), deg, self.blocks[i].payload)
                }
                Content::FreemapLeaf { device, leaf } => {
                    let bytes = alloc.leaf_bytes(*device, *leaf);
                    let free = hammer2_format::freemap::count_free(&bytes);
                    (bytes, false, Payload::FreemapLeaf { free_units: free })
                }
            };
            let check = method.compute(&bytes);
            let b = &mut self.blocks[i];
            b.payload = payload;
            b.encoded = Some(bytes);
            b.entries = node_entries;
            b.done = Some(Self::make_ref(b, tid, check, degraded_below));
        }
    }

    /// Number of live blocks and their bytes (per copy).
    pub fn totals(&self) -> (usize, u64) {
        self.blocks.iter().filter(|b| !b.dead).fold((0, 0), |(n, s), b| (n + 1, s + u64::from(b.size)))
    }
}
