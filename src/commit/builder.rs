//! The state of one commit attempt while it builds the new trees: the arena of pending
//! blocks and the allocator. It implements the tree's `NodeWriter`.

use super::arena::{Arena, Content, PBlock};
use super::writeout::Streams;
use crate::alloc::{Allocator, Class, Extent};
use crate::error::Result;
use crate::tree::modify::{NodeWriter, PEntry, PRoot};
use crate::tree::{self, Root};
use crate::volume::Volume;
use hammer2_format::Compression;
use hammer2_format::layout::{FREEMAP_LEAF_SIZE, INODE_SIZE, PFS_RECORD_SIZE, UNIT};
use hammer2_format::{BlockType, Blockref, InodeBlock, Payload, PfsRecord};
use std::sync::Arc;

pub struct Builder<'a> {
    pub vol: &'a Volume,
    pub alloc: &'a mut Allocator,
    pub arena: Arena,
    pub tid: u64,
    /// Bytes of DATA blocks released since the counter was last reset (st_blocks upkeep).
    pub released_data: u64,
    /// Where content known up front goes as soon as it has a place (large commits).
    pub streams: Option<&'a Streams>,
    /// A block of this commit is stored compressed: its header gets `COMPRESSED`.
    pub compressed: bool,
    /// A DATA block of this commit has another copy count than N: its header gets
    /// `VARIABLE_COPIES` (VC3).
    pub variable_copies: bool,
    /// While the served PFS's trees are rebuilt: blocks they drop that a snapshot still
    /// holds (SN1), kept for the PFS's dead list instead of freed.
    pub dead: Option<DeadSink>,
    /// While the served PFS's trees are rebuilt (format version 2): how their referenced
    /// bytes change, (logical, physical), for the record's counters.
    pub referenced: Option<(i64, i64)>,
}

/// Blocks dropped from the served PFS's trees that its newest snapshot still holds.
pub struct DeadSink {
    /// The newest snapshot's create tid: a block born at or before it is in that snapshot.
    pub threshold: u64,
    /// A clone's origin snapshot's create tid (SN5): a block born at or before it stays
    /// that snapshot's, and is neither freed nor listed.
    pub floor: u64,
    /// The dropped references, in the order they were dropped.
    pub entries: Vec<Blockref>,
}

impl<'a> Builder<'a> {
    pub fn new(vol: &'a Volume, alloc: &'a mut Allocator, tid: u64, streams: Option<&'a Streams>) -> Builder<'a> {
        Builder {
            vol,
            alloc,
            arena: Arena::default(),
            tid,
            released_data: 0,
            streams,
            compressed: false,
            variable_copies: false,
            dead: None,
            referenced: None,
        }
    }

    fn place(&mut self, class: Class, size: u32) -> Result<hammer2_format::blockref::Copies> {
        self.place_n(class, size, self.vol.params.copies)
    }

    /// Places `n` copies (file data with a copies setting of its own; everything else N).
    fn place_n(&mut self, class: Class, size: u32, n: u8) -> Result<hammer2_format::blockref::Copies> {
        let copies = self.vol.placement().place(self.alloc, &self.vol.devices, class, size, n)?;
        self.count(size, &copies, 1);
        Ok(copies)
    }

    /// Counts a block of the served PFS's trees in (`sign` 1) or out (-1) of its
    /// referenced bytes, while they are rebuilt.
    fn count(&mut self, size: u32, copies: &hammer2_format::blockref::Copies, sign: i64) {
        if let Some((logical, physical)) = self.referenced.as_mut() {
            let n = copies.iter().filter(|l| l.is_valid()).count() as i64;
            *logical += sign * i64::from(size);
            *physical += sign * i64::from(size) * n;
        }
    }

    /// Drops a committed block from the tree being rebuilt: frees every valid copy, unless
    /// a snapshot still holds it (SN1: then it goes to the dead list).
    pub fn free_ref(&mut self, br: &Blockref) {
        if let Some(p) = br.ptr() {
            if br.btype == BlockType::Data {
                self.released_data += u64::from(p.size);
            }
            self.count(p.size, &p.copies, -1);
            if let Some(d) = self.dead.as_mut().filter(|d| br.modify_tid <= d.threshold.max(d.floor)) {
                if br.modify_tid > d.floor {
                    d.entries.push(*br);
                }
                return;
            }
            self.free_now(br);
        }
    }

    /// Frees every valid copy of a committed block that no tree references any more.
    pub fn free_now(&mut self, br: &Blockref) {
        if let Some(p) = br.ptr() {
            for loc in p.copies.iter().filter(|l| l.is_valid()) {
                self.alloc.free(Extent::from_bytes(loc.device, loc.offset, u64::from(p.size)));
            }
        }
    }

    /// Frees every block of a committed tree (a deleted inode's content).
    pub fn free_tree(&mut self, root: &Root) -> Result<()> {
        let mut refs = Vec::new();
        tree::for_each_ref(self.vol, root, &mut |br| {
            refs.push(*br);
            Ok(true)
        })?;
        for r in refs {
            self.free_ref(&r);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new_bytes(
        &mut self,
        btype: BlockType,
        key: u64,
        keybits: u8,
        payload: Payload,
        buf: Arc<Vec<u8>>,
        len: usize,
        stream: bool,
    ) -> Result<PEntry> {
        let n = self.vol.params.copies;
        self.new_bytes_n(btype, key, keybits, payload, buf, len, stream, n)
    }

    /// `new_bytes` with `n` copies.
    #[allow(clippy::too_many_arguments)]
    fn new_bytes_n(
        &mut self,
        btype: BlockType,
        key: u64,
        keybits: u8,
        payload: Payload,
        buf: Arc<Vec<u8>>,
        len: usize,
        stream: bool,
        n: u8,
    ) -> Result<PEntry> {
        debug_assert!(len as u64 % UNIT == 0 && len <= buf.len());
        // VC2: only file data has another count than N; metadata keeps N (VC1).
        debug_assert!(btype == BlockType::Data || n == self.vol.params.copies);
        let copies = self.place_n(Class::of(btype), len as u32, n)?;
        if copies.len() != usize::from(self.vol.params.copies) {
            self.variable_copies = true;
        }
        // A block counts as streamed only when every copy reached a stream; otherwise step 4
        // writes all its copies (rewriting a streamed one with the same bytes is harmless).
        let streamed = stream
            && self.streams.is_some_and(|st| {
                copies.iter().filter(|l| l.is_valid()).all(|l| st.send(l.device, l.offset, &buf, len))
            });
        let id = self.arena.push(PBlock {
            keybits,
            payload,
            streamed,
            ..PBlock::new(btype, key, len as u32, copies, Content::Bytes { buf, len })
        });
        Ok(PEntry::New(id))
    }

    /// A new DATA block with the first `len` bytes of `buf` as content, stored as
    /// `compressed` when the caller compressed it (`compress::compress`, when that saves a
    /// unit: Z1 in docs/DESIGN.md, before its check value, which finalize computes over the
    /// stored bytes, and before its copies are placed), with `copies` copies
    /// (`Volume::data_copies`, VC2). Returns the entry and the bytes stored (what
    /// `st_blocks` counts).
    pub fn new_data(
        &mut self,
        key: u64,
        buf: Arc<Vec<u8>>,
        len: usize,
        stream: bool,
        compressed: Option<(Vec<u8>, Compression)>,
        copies: u8,
    ) -> Result<(PEntry, usize)> {
        let keybits = self.vol.params.data_block_shift;
        if let Some((stored, c)) = compressed {
            self.compressed = true;
            let n = stored.len();
            let e = self.new_bytes_n(
                BlockType::Data,
                key,
                keybits,
                Payload::Compressed(c),
                Arc::new(stored),
                n,
                stream,
                copies,
            )?;
            return Ok((e, n));
        }
        Ok((self.new_bytes_n(BlockType::Data, key, keybits, Payload::None, buf, len, stream, copies)?, len))
    }

    pub fn new_inode(&mut self, block: InodeBlock, root: Option<PRoot>) -> Result<PEntry> {
        let copies = self.place(Class::Meta, INODE_SIZE as u32)?;
        let id = self.arena.push(PBlock::new(
            BlockType::Inode,
            block.inum,
            INODE_SIZE as u32,
            copies,
            Content::Inode { block: Box::new(block), root },
        ));
        Ok(PEntry::New(id))
    }

    /// A new record block of PFS `record.id`; its roots are `inodes`, `orphans` and `dead`
    /// (each empty or one INDIRECT entry, resolved at finalize).
    pub fn new_pfs_record(&mut self, record: PfsRecord, inodes: PRoot, orphans: PRoot, dead: PRoot) -> Result<PEntry> {
        let copies = self.place(Class::Meta, PFS_RECORD_SIZE as u32)?;
        let id = self.arena.push(PBlock::new(
            BlockType::Pfs,
            record.id,
            PFS_RECORD_SIZE as u32,
            copies,
            Content::PfsRecord { record: Box::new(record), inodes, orphans, dead },
        ));
        Ok(PEntry::New(id))
    }

    pub fn new_freemap_leaf(&mut self, device: u8, leaf: u32) -> Result<PEntry> {
        let copies = self.place(Class::Meta, FREEMAP_LEAF_SIZE as u32)?;
        let id = self.arena.push(PBlock {
            payload: Payload::FreemapLeaf { free_units: 0 },
            ..PBlock::new(
                BlockType::FreemapLeaf,
                hammer2_format::freemap_key(device, leaf),
                FREEMAP_LEAF_SIZE as u32,
                copies,
                Content::FreemapLeaf { device, leaf },
            )
        });
        Ok(PEntry::New(id))
    }

    fn node_size(&self, entries: usize) -> u32 {
        let max = 1u32 << self.vol.params.indirect_block_shift;
        ((entries * hammer2_format::BLOCKREF_SIZE) as u32).next_power_of_two().clamp(UNIT as u32, max)
    }
}

impl NodeWriter for Builder<'_> {
    fn read_node(&self, br: &Blockref) -> Result<Vec<Blockref>> {
        Ok(self.vol.read_node(br)?.to_vec())
    }

    fn pending_entries(&self, id: u32) -> Vec<PEntry> {
        match &self.arena.get(id).content {
            Content::Node(e) => e.clone(),
            _ => Vec::new(),
        }
    }

    fn new_node(&mut self, level: u8, entries: Vec<PEntry>) -> Result<PEntry> {
        let size = self.node_size(entries.len());
        let key = entries.first().map_or(0, |e| self.key(e));
        let copies = self.place(Class::Meta, size)?;
        let id = self
            .arena
            .push(PBlock { level, ..PBlock::new(BlockType::Indirect, key, size, copies, Content::Node(entries)) });
        Ok(PEntry::New(id))
    }

    fn key(&self, e: &PEntry) -> u64 {
        match e {
            PEntry::Ref(b) => b.key,
            PEntry::New(id) => self.arena.get(*id).key,
        }
    }

    fn release(&mut self, e: &PEntry) {
        match e {
            PEntry::Ref(b) => self.free_ref(b),
            PEntry::New(id) => {
                let b = self.arena.get_mut(*id);
                if b.dead {
                    return;
                }
                b.dead = true;
                let (size, copies) = (b.size, b.copies);
                self.count(size, &copies, -1);
                for loc in copies.iter().filter(|l| l.is_valid()) {
                    self.alloc.free(Extent::from_bytes(loc.device, loc.offset, u64::from(size)));
                }
            }
        }
    }

    fn capacity(&self) -> usize {
        self.vol.params.node_capacity()
    }
}
