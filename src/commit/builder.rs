//! The state of one commit attempt while it builds the new trees: the arena of pending
//! blocks and the allocator. It implements the tree's `NodeWriter`.

use super::arena::{Arena, Content, PBlock};
use super::writeout::Streams;
use crate::alloc::{Allocator, Class, Extent};
use crate::error::Result;
use crate::tree::modify::{NodeWriter, PEntry, PRoot};
use crate::tree::{self, Root};
use crate::volume::Volume;
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
}

impl<'a> Builder<'a> {
    pub fn new(vol: &'a Volume, alloc: &'a mut Allocator, tid: u64, streams: Option<&'a Streams>) -> Builder<'a> {
        Builder { vol, alloc, arena: Arena::default(), tid, released_data: 0, streams }
    }

    fn place(&mut self, class: Class, size: u32) -> Result<hammer2_format::blockref::Copies> {
        self.vol.placement().place(self.alloc, &self.vol.devices, class, size)
    }

    /// Frees every valid copy of a committed block.
    pub fn free_ref(&mut self, br: &Blockref) {
        if let Some(p) = br.ptr() {
            if br.btype == BlockType::Data {
                self.released_data += u64::from(p.size);
            }
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
        debug_assert!(len as u64 % UNIT == 0 && len <= buf.len());
        let copies = self.place(Class::of(btype), len as u32)?;
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

    /// A new record block of PFS `record.id`; its roots are `inodes` and `orphans` (each
    /// empty or one INDIRECT entry, resolved at finalize).
    pub fn new_pfs_record(&mut self, record: PfsRecord, inodes: PRoot, orphans: PRoot) -> Result<PEntry> {
        let copies = self.place(Class::Meta, PFS_RECORD_SIZE as u32)?;
        let id = self.arena.push(PBlock::new(
            BlockType::Pfs,
            record.id,
            PFS_RECORD_SIZE as u32,
            copies,
            Content::PfsRecord { record: Box::new(record), inodes, orphans },
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
