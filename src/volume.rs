//! A mounted volume: the member devices, the filesystem's fixed parameters, the block
//! cache, and verified block reads.

use crate::cache::{BlockCache, CacheKey, Cached};
use crate::copies::placement::Placement;
use crate::copies::{BulkBlock, CopyIo, OnBadCopy, ReadCtx};
use crate::devices::DeviceSet;
use crate::error::{Error, Result};
use crate::tree::{Node, NodeSource};
use hammer2_format::{BlockType, Blockref, CheckMethod, InodeBlock, indirect};
use std::sync::Arc;

/// What every header of the filesystem agrees on.
#[derive(Debug, Clone)]
pub struct Params {
    pub fs_uuid: [u8; 16],
    pub label: String,
    pub copies: u8,
    pub check: CheckMethod,
    pub data_block_shift: u8,
    pub indirect_block_shift: u8,
    pub mkfs_time_ns: u64,
}

impl Params {
    pub fn block_size(&self) -> u64 {
        1 << self.data_block_shift
    }
    /// Units of a slot (§10, S1): the largest block this filesystem writes (a data block, an
    /// indirect node, a free-map leaf or an inode), a power of two.
    pub fn slot_units(&self) -> u64 {
        let largest = self
            .block_size()
            .max(1 << self.indirect_block_shift)
            .max(hammer2_format::layout::FREEMAP_LEAF_SIZE as u64)
            .max(hammer2_format::layout::INODE_SIZE as u64);
        (largest / hammer2_format::UNIT).next_power_of_two()
    }

    /// Units a reservation takes for one data block (§10, S2): its size in units, at most a
    /// slot (data blocks of one size pack their slots exactly).
    pub fn data_block_units(&self) -> u64 {
        (self.block_size() / hammer2_format::UNIT).max(1).min(self.slot_units())
    }

    pub fn node_capacity(&self) -> usize {
        indirect::slots(1 << self.indirect_block_shift)
    }
}

pub struct Volume {
    pub params: Params,
    pub devices: DeviceSet,
    pub cache: BlockCache,
    /// `FREE_PLACEMENT` is set (format version 2): no pinned copy slots (FP1). Set at mount
    /// from the master header, and by the first device add or remove (with the commit lock
    /// held, before the commit that records it).
    pub free_placement: std::sync::atomic::AtomicBool,
    /// No write of any kind reaches a device (not even self-heal).
    pub read_only: bool,
}

impl Volume {
    /// The placement rule for the devices this volume has now (their number grows with a
    /// `device add`).
    pub fn placement(&self) -> Placement {
        Placement::with_free(
            self.devices.len(),
            self.params.copies,
            self.free_placement.load(std::sync::atomic::Ordering::SeqCst),
        )
    }

    /// The most copies a block can have now (VC1: one per domain, at most 4).
    pub fn max_copies(&self) -> u8 {
        self.placement().max_copies(|d| {
            let m = self.devices.get(d)?;
            m.takes_new_copies().then_some(m.regions)
        })
    }

    /// The copies a new DATA block of a file whose inode says `setting` gets (VC2): its own
    /// count (0: the filesystem's N), more than N only while there are domains for them.
    pub fn data_copies(&self, setting: u8) -> u8 {
        let n = self.params.copies;
        if setting == 0 { n } else { setting.min(self.max_copies().max(n)).max(1) }
    }

    /// The copy-I/O layer over this volume's devices: heals bad copies unless read-only.
    pub fn copy_io(&self) -> CopyIo<'_> {
        CopyIo::new(&self.devices, !self.read_only)
    }

    fn key(br: &Blockref) -> Option<CacheKey> {
        let p = br.ptr()?;
        let first = p.copies.iter().find(|l| l.is_valid())?;
        Some(CacheKey { device: first.device, offset: first.offset, fingerprint: p.check.fingerprint() })
    }

    /// True when the block's content is in the cache.
    pub fn is_cached(&self, br: &Blockref) -> bool {
        Self::key(br).is_some_and(|k| self.cache.get(&k).is_some())
    }

    /// The verified content of the block `br` points to (served from the cache when
    /// possible).
    pub fn read_block(&self, br: &Blockref, ctx: &ReadCtx) -> Result<Arc<[u8]>> {
        let ptr = br.ptr().ok_or_else(|| Error::Corrupt(format!("{} reference without a block", br.btype.name())))?;
        let key = Self::key(br);
        if let Some(k) = &key
            && let Some(Cached::Bytes(b)) = self.cache.get(k)
        {
            return Ok(b);
        }
        let data: Arc<[u8]> = Arc::from(self.copy_io().read_verified(br.btype, ptr, ctx)?);
        if let Some(k) = key {
            self.cache.insert(k, Cached::Bytes(data.clone()));
        }
        Ok(data)
    }

    /// Reads the blocks of `refs` that are not cached yet with as few requests as possible
    /// (their first valid copies, in merged runs: `copies::runs`), and caches the ones whose
    /// content verifies. Inode blocks of one commit lie back to back in metadata zones
    /// (`alloc/zones.rs`); reading through the gaps that later frees leave between them is
    /// what keeps a directory's worth of inodes one request. Best effort: a block that
    /// fails is simply not cached (a later read tries every copy, counts and heals).
    pub fn prefetch(&self, refs: &[Blockref]) {
        let wanted: Vec<(&Blockref, BulkBlock<'_>)> = refs
            .iter()
            .filter_map(|b| {
                let p = b.ptr()?;
                let slot = p.copies.iter().position(|l| l.is_valid())?;
                let key = Self::key(b)?;
                if self.cache.get(&key).is_some() {
                    return None;
                }
                Some((b, BulkBlock { btype: b.btype, ptr: p, slot, ctx: ReadCtx::meta() }))
            })
            .collect();
        let blocks: Vec<BulkBlock<'_>> = wanted.iter().map(|(_, b)| *b).collect();
        self.copy_io().read_blocks(&blocks, OnBadCopy::Skip, &mut |i, r| {
            let (Ok(bytes), Some(k)) = (r, Self::key(wanted[i].0)) else { return };
            if wanted[i].0.btype == BlockType::Inode {
                // Kept decoded (`Cached::Inode`); one that does not decode is left to the
                // read that wants it, which reports it.
                if let Ok(inode) = InodeBlock::decode(bytes) {
                    self.cache.insert(k, Cached::Inode(Arc::new(inode)));
                }
            } else {
                self.cache.insert(k, Cached::Bytes(Arc::from(bytes)));
            }
        });
    }

    /// The decoded inode block `br` points to (from the cache when it holds it, decoded or
    /// not; cached decoded).
    pub fn read_inode_block(&self, br: &Blockref, ctx: &ReadCtx) -> Result<Arc<InodeBlock>> {
        let key = Self::key(br);
        let cached = key.as_ref().and_then(|k| self.cache.get(k));
        let bytes = match cached {
            Some(Cached::Inode(i)) => return Ok(i),
            Some(Cached::Bytes(b)) => b,
            _ => {
                let ptr = br.ptr().ok_or_else(|| Error::Corrupt("inode reference without a block".into()))?;
                Arc::from(self.copy_io().read_verified(br.btype, ptr, ctx)?)
            }
        };
        let inode = Arc::new(InodeBlock::decode(&bytes)?);
        if let Some(k) = key {
            self.cache.insert(k, Cached::Inode(inode.clone()));
        }
        Ok(inode)
    }

    /// The content of a DATA block: its verified stored bytes, decompressed when it is
    /// compressed (Z2 in docs/DESIGN.md: only bytes that matched the check value are ever
    /// decompressed). The cache holds stored bytes, as for every other block.
    pub fn read_data(&self, br: &Blockref, ctx: &ReadCtx) -> Result<Arc<[u8]>> {
        let stored = self.read_block(br, ctx)?;
        content_of(br, stored, ctx)
    }

    /// Reads a block without caching it (bulk walks: scrub, resync, fsck-like checks).
    pub fn read_block_uncached(&self, br: &Blockref, ctx: &ReadCtx) -> Result<Vec<u8>> {
        let ptr = br.ptr().ok_or_else(|| Error::Corrupt(format!("{} reference without a block", br.btype.name())))?;
        self.copy_io().read_verified(br.btype, ptr, ctx)
    }

    /// Caches the entries of a node this process wrote, under the reference that names it.
    /// The caller guarantees `entries` is exactly what the node encodes (its check value
    /// was computed over that encoding), so a later read would decode the same entries.
    pub fn cache_node(&self, br: &Blockref, entries: Arc<Node>) {
        if br.btype == BlockType::Indirect
            && let Some(k) = Self::key(br)
        {
            self.cache.insert(k, Cached::Node(entries));
        }
    }

    /// The decoded entries of the INDIRECT node `br` points to.
    pub fn read_node(&self, br: &Blockref) -> Result<Arc<Node>> {
        if br.btype != BlockType::Indirect {
            return Err(Error::Corrupt(format!("expected an indirect block, found {}", br.btype.name())));
        }
        let key = Self::key(br);
        if let Some(k) = &key
            && let Some(Cached::Node(n)) = self.cache.get(k)
        {
            return Ok(n);
        }
        let ptr = br.ptr().ok_or_else(|| Error::Corrupt("indirect reference without a block".into()))?;
        let bytes = self.copy_io().read_verified(br.btype, ptr, &ReadCtx::meta())?;
        let entries = Arc::new(Node::new(indirect::decode(&bytes, br.level)?));
        self.cache_node(br, entries.clone());
        Ok(entries)
    }
}

impl NodeSource for Volume {
    fn node(&self, br: &Blockref) -> Result<Arc<Node>> {
        self.read_node(br)
    }
}

/// The content of DATA block `br` from its verified stored bytes (see [`Volume::read_data`]).
pub fn content_of(br: &Blockref, stored: Arc<[u8]>, ctx: &ReadCtx) -> Result<Arc<[u8]>> {
    match br.compression() {
        None => Ok(stored),
        Some(c) => match crate::copies::compress::decompress(c, &stored) {
            Ok(v) => Ok(Arc::from(v)),
            // The stored bytes matched the check value, so every copy holds this: the block
            // was written so (not a damaged copy another copy could replace).
            Err(e) => Err(Error::Unrecoverable {
                what: "compressed data",
                inum: ctx.inum,
                offset: ctx.offset,
                detail: e.to_string(),
            }),
        },
    }
}
