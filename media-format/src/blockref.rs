//! Block references: the 128-byte pointer that names a block's content (type, key range,
//! check value, transaction ids) and the N locations of its copies.
//!
//! Layout (128 bytes, little-endian):
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! |   0 |  1 | type ([`BlockType`]) |
//! |   1 |  1 | check method (0 when there is no block) |
//! |   2 |  1 | keybits: the reference covers `key .. key + 2^keybits` (leaves) |
//! |   3 |  1 | level: height of the node an INDIRECT reference points to (>= 1), else 0 |
//! |   4 |  1 | flags (`FLAG_DEGRADED`) |
//! |   5 |  1 | compression method ([`CompressionMethod`]; DATA only, version 2 `COMPRESSED`) |
//! |   6 |  2 | reserved, zero |
//! |   8 |  8 | key |
//! |  16 |  8 | modify_tid: transaction that last changed the content |
//! |  24 |  8 | mirror_tid: transaction that last changed this reference or anything below |
//! |  32 |  4 | size of the block in bytes (multiple of 4096), 0 when there is no block |
//! |  36 |  4 | compressed DATA: logical (uncompressed) size, 0 = `size`; else zero |
//! |  40 | 32 | four copy locations ([`Location`], 8 bytes each) |
//! |  72 | 32 | check value of the block's content |
//! | 104 | 24 | type-specific payload ([`Payload`]; compressed DATA: u32 frame length) |
//!
//! An inline directory entry has no block: its name lives in bytes 40..104 instead.

use crate::bytes::{Reader, Writer};
use crate::check::{Check, CheckMethod};
use crate::layout::*;
use crate::{DecodeError, DecodeResult};

/// Some copy of this block, or of a block below it, is MISSING: the branch is out of sync
/// and a resync must descend into it. A reference without this flag heads a fully
/// synchronized branch, which is what lets resync stop early.
pub const FLAG_DEGRADED: u8 = 1;
const KNOWN_FLAGS: u8 = FLAG_DEGRADED;

/// Byte offsets of a block reference's fields (the table above; FORMAT.md §5).
pub mod off {
    pub const TYPE: usize = 0;
    pub const CHECK_METHOD: usize = 1;
    pub const KEYBITS: usize = 2;
    pub const LEVEL: usize = 3;
    pub const FLAGS: usize = 4;
    /// Compression method of a DATA reference (format version 2).
    pub const COMPRESSION: usize = 5;
    /// 2 reserved bytes.
    pub const RESERVED_6: usize = 6;
    pub const KEY: usize = 8;
    pub const MODIFY_TID: usize = 16;
    pub const MIRROR_TID: usize = 24;
    pub const SIZE: usize = 32;
    /// Compressed DATA: the logical size (0 = `size`); otherwise 4 reserved bytes.
    pub const LOGICAL_SIZE: usize = 36;
    /// `MAX_COPIES` copy locations of `COPY_SIZE` bytes.
    pub const COPIES: usize = 40;
    pub const COPY_SIZE: usize = 8;
    /// An inline directory entry's name takes the place of the copies and check value.
    pub const INLINE_NAME: usize = 40;
    pub const CHECK: usize = 72;
    pub const CHECK_SIZE: usize = 32;
    /// The type-specific payload, to the end of the reference.
    pub const PAYLOAD: usize = 104;
    pub const PAYLOAD_SIZE: usize = crate::layout::BLOCKREF_SIZE - PAYLOAD;

    /// DIRENT payload.
    pub const DIRENT_INUM: usize = 104;
    pub const DIRENT_NAME_LEN: usize = 112;
    pub const DIRENT_DTYPE: usize = 114;
    pub const DIRENT_END: usize = 115;
    /// XATTR payload (106..108 reserved).
    pub const XATTR_NAME_LEN: usize = 104;
    pub const XATTR_RESERVED: usize = 106;
    pub const XATTR_VALUE_LEN: usize = 108;
    pub const XATTR_END: usize = 112;
    /// FREEMAP_LEAF payload.
    pub const FREEMAP_FREE_UNITS: usize = 104;
    pub const FREEMAP_END: usize = 112;
    /// Compressed DATA payload: the length of the compressed frame.
    pub const FRAME_LEN: usize = 104;
    pub const FRAME_END: usize = 108;
    /// DEAD payload: the original type code.
    pub const DEAD_ORIGINAL: usize = 104;
    pub const DEAD_END: usize = 105;
}

/// The bits of an encoded copy location (FORMAT.md §5, "Copy location").
mod loc {
    /// Bits 0..48: the device offset in allocation units.
    pub const UNITS_MASK: u64 = (1 << 48) - 1;
    /// Bits 48..56: the device index.
    pub const DEVICE_SHIFT: u32 = 48;
    /// Bits 56..64: the state.
    pub const STATE_SHIFT: u32 = 56;
    pub const STATE_VALID: u64 = 1;
    pub const STATE_MISSING: u64 = 2;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockType {
    /// An unused slot: all 128 bytes are zero.
    Empty,
    /// A 4 KiB inode block (leaf of the inode tree, keyed by inode number).
    Inode,
    /// A node of a tree: an array of block references sorted by key.
    Indirect,
    /// File data (or a symlink target), keyed by byte offset.
    Data,
    /// A directory entry, keyed by name hash; the name is inline or in a 4 KiB block.
    Dirent,
    /// An extended attribute: name and value in one block.
    Xattr,
    /// A free-map bitmap leaf.
    FreemapLeaf,
    /// An inode that is unlinked but was still open; removed at the next mount.
    Orphan,
    /// A PFS record (format version 2, leaf of the PFS table, keyed by PFS id).
    Pfs,
    /// A dead-list entry (format version 2, `SHARED_BLOCKS`): a copy of the reference of a
    /// block the live tree dropped while an older snapshot still holds it, keyed by
    /// `birth_tid << 24 | seq` ([`dead_key`]); the original type is its payload.
    Dead,
}

/// Type code of dead-list entries.
pub const DEAD_TYPE_CODE: u8 = 9;

/// Bits of a dead-list key below the birth tid: the entry's sequence number among the
/// entries of one birth tid in one list.
pub const DEAD_SEQ_BITS: u32 = 24;

/// The key of the dead-list entry number `seq` of blocks born in commit `birth`.
pub const fn dead_key(birth: u64, seq: u64) -> u64 {
    (birth << DEAD_SEQ_BITS) | (seq & ((1 << DEAD_SEQ_BITS) - 1))
}

/// The birth tid a dead-list key names.
pub const fn dead_key_birth(key: u64) -> u64 {
    key >> DEAD_SEQ_BITS
}

impl BlockType {
    pub const fn code(self) -> u8 {
        match self {
            BlockType::Empty => 0,
            BlockType::Inode => 1,
            BlockType::Indirect => 2,
            BlockType::Data => 3,
            BlockType::Dirent => 4,
            BlockType::Xattr => 5,
            BlockType::FreemapLeaf => 6,
            BlockType::Orphan => 7,
            BlockType::Pfs => 8,
            BlockType::Dead => DEAD_TYPE_CODE,
        }
    }
    pub fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => BlockType::Empty,
            1 => BlockType::Inode,
            2 => BlockType::Indirect,
            3 => BlockType::Data,
            4 => BlockType::Dirent,
            5 => BlockType::Xattr,
            6 => BlockType::FreemapLeaf,
            7 => BlockType::Orphan,
            8 => BlockType::Pfs,
            DEAD_TYPE_CODE => BlockType::Dead,
            _ => return None,
        })
    }
    /// Whether a block of this type names other blocks (a walk reads it to go on below).
    pub const fn names_blocks(self) -> bool {
        matches!(self, BlockType::Indirect | BlockType::Inode | BlockType::Pfs)
    }

    pub const fn name(self) -> &'static str {
        match self {
            BlockType::Empty => "empty",
            BlockType::Inode => "inode",
            BlockType::Indirect => "indirect",
            BlockType::Data => "data",
            BlockType::Dirent => "dirent",
            BlockType::Xattr => "xattr",
            BlockType::FreemapLeaf => "freemap",
            BlockType::Orphan => "orphan",
            BlockType::Pfs => "pfs",
            BlockType::Dead => "dead",
        }
    }
}

/// How a DATA block's stored bytes encode its content (byte 5; FORMAT.md "Compression").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompressionMethod {
    /// An LZ4 block (no frame header): `lz4_flex::block` / `LZ4_compress_default`.
    Lz4,
    /// One zstd frame.
    Zstd,
}

impl CompressionMethod {
    pub const fn code(self) -> u8 {
        match self {
            CompressionMethod::Lz4 => 1,
            CompressionMethod::Zstd => 2,
        }
    }
    /// `None` for 0 (stored raw) and for unknown codes.
    pub fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(CompressionMethod::Lz4),
            2 => Some(CompressionMethod::Zstd),
            _ => None,
        }
    }
    pub const fn name(self) -> &'static str {
        match self {
            CompressionMethod::Lz4 => "lz4",
            CompressionMethod::Zstd => "zstd",
        }
    }
}

/// A compressed DATA block: the stored `size` bytes are a frame of `frame_len` bytes, then
/// zeros; decompressed, the frame gives `logical_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Compression {
    pub method: CompressionMethod,
    /// The uncompressed length as written (bytes 36..40); 0 means equal to the stored size.
    pub logical_size: u32,
    /// Bytes of the frame at the start of the block (1..=`size`).
    pub frame_len: u32,
}

impl Compression {
    /// The uncompressed length of a block stored in `size` bytes.
    pub fn logical_len(&self, size: u32) -> u32 {
        if self.logical_size == 0 { size } else { self.logical_size }
    }
}

/// The state of one copy of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyState {
    /// The copy was written with this content when the reference was written.
    Valid,
    /// The copy could not be written (its device was failed or absent). It has no location
    /// yet (offset 0); a resync allocates one and writes the content there.
    Missing,
}

/// Where one copy of a block lives. Encoded in 8 bytes: bits 0..48 the byte offset divided
/// by 4096, bits 48..56 the device index, bits 56..64 the state (1 valid, 2 missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    pub device: u8,
    /// Byte offset on the device; a multiple of `UNIT`. Zero for a missing copy.
    pub offset: u64,
    pub state: CopyState,
}

impl Location {
    pub fn valid(device: u8, offset: u64) -> Self {
        Location { device, offset, state: CopyState::Valid }
    }
    pub fn missing(device: u8) -> Self {
        Location { device, offset: 0, state: CopyState::Missing }
    }
    pub fn is_valid(&self) -> bool {
        self.state == CopyState::Valid
    }
    fn encode(&self) -> u64 {
        let state = match self.state {
            CopyState::Valid => loc::STATE_VALID,
            CopyState::Missing => loc::STATE_MISSING,
        };
        (self.offset >> UNIT_SHIFT) | (u64::from(self.device) << loc::DEVICE_SHIFT) | (state << loc::STATE_SHIFT)
    }
    /// `None` for an empty slot (all zero). The device must be one of `device_count`.
    fn decode(raw: u64, device_count: usize, r: &Reader<'_>) -> DecodeResult<Option<Location>> {
        if raw == 0 {
            return Ok(None);
        }
        let offset = (raw & loc::UNITS_MASK) << UNIT_SHIFT;
        let device = (raw >> loc::DEVICE_SHIFT) as u8;
        if usize::from(device) >= device_count.min(MAX_DEVICES) {
            return Err(r.bad("copy device", u64::from(device)));
        }
        match raw >> loc::STATE_SHIFT {
            loc::STATE_VALID if offset >= RESERVED_BYTES => Ok(Some(Location::valid(device, offset))),
            loc::STATE_VALID => Err(r.bad("copy offset", offset)),
            loc::STATE_MISSING if offset == 0 => Ok(Some(Location::missing(device))),
            loc::STATE_MISSING => Err(r.bad("missing copy offset", offset)),
            s => Err(r.bad("copy state", s)),
        }
    }
}

/// The N copies of one block, packed from slot 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Copies {
    slots: [Location; MAX_COPIES],
    len: u8,
}

impl Copies {
    pub fn new() -> Self {
        Copies { slots: [Location::missing(0); MAX_COPIES], len: 0 }
    }
    /// Panics if more than `MAX_COPIES` are pushed: callers size copies from the volume
    /// header, whose decoder bounds copies to `1..=MAX_COPIES`.
    pub fn push(&mut self, loc: Location) {
        assert!((self.len as usize) < MAX_COPIES, "more than MAX_COPIES copies");
        self.slots[self.len as usize] = loc;
        self.len += 1;
    }
    pub fn len(&self) -> usize {
        self.len as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn as_slice(&self) -> &[Location] {
        &self.slots[..self.len as usize]
    }
    pub fn as_mut_slice(&mut self) -> &mut [Location] {
        &mut self.slots[..self.len as usize]
    }
    pub fn iter(&self) -> impl Iterator<Item = &Location> {
        self.as_slice().iter()
    }
    /// True when some copy is MISSING (the block is degraded).
    pub fn any_missing(&self) -> bool {
        self.iter().any(|l| l.state == CopyState::Missing)
    }
}

impl Default for Copies {
    fn default() -> Self {
        Self::new()
    }
}

impl FromIterator<Location> for Copies {
    fn from_iter<I: IntoIterator<Item = Location>>(iter: I) -> Self {
        let mut c = Copies::new();
        for l in iter.into_iter().take(MAX_COPIES) {
            c.push(l);
        }
        c
    }
}

/// A pointer to a block: its size, check value and copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockPtr {
    pub size: u32,
    pub check: Check,
    pub copies: Copies,
}

/// Where the referenced content lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockData {
    /// No content (empty slot, orphan marker).
    None,
    /// A directory entry name of at most 64 bytes, zero padded, stored in bytes 40..104.
    Inline([u8; INLINE_NAME_MAX]),
    /// A block on the devices.
    Block(BlockPtr),
}

/// Type-specific payload, bytes 104..128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Payload {
    None,
    /// DIRENT: target inode (u64 at 104), name length (u16 at 112), `DT_*` type (u8 at 114).
    Dirent {
        inum: u64,
        name_len: u16,
        dtype: u8,
    },
    /// XATTR: name length (u16 at 104), value length (u32 at 108).
    Xattr {
        name_len: u16,
        value_len: u32,
    },
    /// FREEMAP_LEAF: number of free units in the leaf (u64 at 104).
    FreemapLeaf {
        free_units: u64,
    },
    /// DATA stored compressed (method at 5, logical size at 36, frame length u32 at 104).
    Compressed(Compression),
    /// DEAD: the type code of the block the entry stands for (u8 at 104).
    Dead {
        original: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Blockref {
    pub btype: BlockType,
    pub keybits: u8,
    pub level: u8,
    pub flags: u8,
    pub key: u64,
    pub modify_tid: u64,
    pub mirror_tid: u64,
    pub data: BlockData,
    pub payload: Payload,
}

impl Blockref {
    pub const EMPTY: Blockref = Blockref {
        btype: BlockType::Empty,
        keybits: 0,
        level: 0,
        flags: 0,
        key: 0,
        modify_tid: 0,
        mirror_tid: 0,
        data: BlockData::None,
        payload: Payload::None,
    };

    pub fn is_empty(&self) -> bool {
        self.btype == BlockType::Empty
    }

    /// The block pointer, when this reference has a block.
    pub fn ptr(&self) -> Option<&BlockPtr> {
        match &self.data {
            BlockData::Block(p) => Some(p),
            _ => None,
        }
    }
    pub fn ptr_mut(&mut self) -> Option<&mut BlockPtr> {
        match &mut self.data {
            BlockData::Block(p) => Some(p),
            _ => None,
        }
    }
    pub fn size(&self) -> u32 {
        self.ptr().map_or(0, |p| p.size)
    }
    pub fn is_degraded(&self) -> bool {
        self.flags & FLAG_DEGRADED != 0
    }
    /// How the block is compressed, if it is.
    pub fn compression(&self) -> Option<&Compression> {
        match &self.payload {
            Payload::Compressed(c) => Some(c),
            _ => None,
        }
    }
    /// The content's length once read: the logical size of a compressed block, else `size`.
    pub fn logical_size(&self) -> u32 {
        let size = self.size();
        self.compression().map_or(size, |c| c.logical_len(size))
    }

    pub fn encode(&self) -> [u8; BLOCKREF_SIZE] {
        let mut out = [0u8; BLOCKREF_SIZE];
        self.encode_into(&mut out);
        out
    }

    /// Encodes into the first 128 bytes of `out`.
    pub fn encode_into(&self, out: &mut [u8]) {
        out[..BLOCKREF_SIZE].fill(0);
        if self.is_empty() {
            return;
        }
        let mut w = Writer::new(&mut out[..BLOCKREF_SIZE]);
        w.u8(off::TYPE, self.btype.code());
        w.u8(off::KEYBITS, self.keybits);
        w.u8(off::LEVEL, self.level);
        w.u8(off::FLAGS, self.flags);
        w.u64(off::KEY, self.key);
        w.u64(off::MODIFY_TID, self.modify_tid);
        w.u64(off::MIRROR_TID, self.mirror_tid);
        match &self.data {
            BlockData::None => {}
            BlockData::Inline(name) => w.bytes(off::INLINE_NAME, name),
            BlockData::Block(p) => {
                w.u8(off::CHECK_METHOD, p.check.method().code());
                w.u32(off::SIZE, p.size);
                for (i, loc) in p.copies.iter().enumerate() {
                    w.u64(off::COPIES + off::COPY_SIZE * i, loc.encode());
                }
                w.bytes(off::CHECK, &p.check.encode());
            }
        }
        match self.payload {
            Payload::None => {}
            Payload::Dirent { inum, name_len, dtype } => {
                w.u64(off::DIRENT_INUM, inum);
                w.u16(off::DIRENT_NAME_LEN, name_len);
                w.u8(off::DIRENT_DTYPE, dtype);
            }
            Payload::Xattr { name_len, value_len } => {
                w.u16(off::XATTR_NAME_LEN, name_len);
                w.u32(off::XATTR_VALUE_LEN, value_len);
            }
            Payload::FreemapLeaf { free_units } => w.u64(off::FREEMAP_FREE_UNITS, free_units),
            Payload::Compressed(c) => {
                w.u8(off::COMPRESSION, c.method.code());
                w.u32(off::LOGICAL_SIZE, c.logical_size);
                w.u32(off::FRAME_LEN, c.frame_len);
            }
            Payload::Dead { original } => w.u8(off::DEAD_ORIGINAL, original),
        }
    }

    /// Decodes and validates one block reference from the first 128 bytes of `buf`, without
    /// knowing the filesystem: a copy may name any device index below `MAX_DEVICES`.
    pub fn decode(buf: &[u8]) -> DecodeResult<Blockref> {
        Blockref::decode_within(buf, MAX_DEVICES)
    }

    /// Decodes one block reference of a filesystem of `device_count` devices: every copy,
    /// VALID or MISSING, names a device below `device_count` (FORMAT.md §5).
    pub fn decode_within(buf: &[u8], device_count: usize) -> DecodeResult<Blockref> {
        let r = Reader::new(buf, BLOCKREF_SIZE, "blockref")?;
        let type_code = r.u8(off::TYPE)?;
        let btype = BlockType::from_code(type_code).ok_or_else(|| r.bad("type", u64::from(type_code)))?;
        if btype == BlockType::Empty {
            r.zero(0, BLOCKREF_SIZE)?;
            return Ok(Blockref::EMPTY);
        }
        r.zero(off::RESERVED_6, off::KEY - off::RESERVED_6)?;
        let compression_code = r.u8(off::COMPRESSION)?;
        if compression_code == 0 {
            r.zero(off::LOGICAL_SIZE, off::COPIES - off::LOGICAL_SIZE)?;
        } else if btype != BlockType::Data {
            return Err(r.bad("compression on a non-DATA reference", u64::from(compression_code)));
        }
        let method_code = r.u8(off::CHECK_METHOD)?;
        let keybits = r.u8(off::KEYBITS)?;
        let level = r.u8(off::LEVEL)?;
        let flags = r.u8(off::FLAGS)?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(r.bad("flags", u64::from(flags)));
        }
        if keybits > 64 {
            return Err(r.bad("keybits", u64::from(keybits)));
        }
        let key = r.u64(off::KEY)?;
        let modify_tid = r.u64(off::MODIFY_TID)?;
        let mirror_tid = r.u64(off::MIRROR_TID)?;
        let size = r.u32(off::SIZE)?;

        let data = if method_code == 0 {
            if size != 0 {
                return Err(r.bad("size without check method", u64::from(size)));
            }
            let inline: [u8; INLINE_NAME_MAX] = r.array(off::INLINE_NAME)?;
            if inline.iter().all(|&b| b == 0) { BlockData::None } else { BlockData::Inline(inline) }
        } else {
            let method =
                CheckMethod::from_code(method_code).ok_or_else(|| r.bad("check method", u64::from(method_code)))?;
            if size == 0 || u64::from(size) % UNIT != 0 || size > MAX_BLOCK_SIZE {
                return Err(r.bad("size", u64::from(size)));
            }
            let mut copies = Copies::new();
            let mut ended = false;
            for i in 0..MAX_COPIES {
                match Location::decode(r.u64(off::COPIES + off::COPY_SIZE * i)?, device_count, &r)? {
                    Some(loc) if !ended => copies.push(loc),
                    Some(_) => return Err(r.bad("copy slots not packed", i as u64)),
                    None => ended = true,
                }
            }
            if !copies.iter().any(Location::is_valid) {
                return Err(r.bad("no valid copy", copies.len() as u64));
            }
            let check = Check::decode(method, &r.array(off::CHECK)?)?;
            BlockData::Block(BlockPtr { size, check, copies })
        };

        let payload = match btype {
            BlockType::Data if compression_code != 0 => {
                let method = CompressionMethod::from_code(compression_code)
                    .ok_or_else(|| r.bad("compression method", u64::from(compression_code)))?;
                Payload::Compressed(Compression {
                    method,
                    logical_size: r.u32(off::LOGICAL_SIZE)?,
                    frame_len: r.u32(off::FRAME_LEN)?,
                })
            }
            BlockType::Dirent => Payload::Dirent {
                inum: r.u64(off::DIRENT_INUM)?,
                name_len: r.u16(off::DIRENT_NAME_LEN)?,
                dtype: r.u8(off::DIRENT_DTYPE)?,
            },
            BlockType::Xattr => {
                r.zero(off::XATTR_RESERVED, off::XATTR_VALUE_LEN - off::XATTR_RESERVED)?;
                Payload::Xattr { name_len: r.u16(off::XATTR_NAME_LEN)?, value_len: r.u32(off::XATTR_VALUE_LEN)? }
            }
            BlockType::FreemapLeaf => Payload::FreemapLeaf { free_units: r.u64(off::FREEMAP_FREE_UNITS)? },
            BlockType::Dead => Payload::Dead { original: r.u8(off::DEAD_ORIGINAL)? },
            _ => Payload::None,
        };
        // Payload bytes past the type's fields are reserved.
        let payload_end = match payload {
            Payload::None => off::PAYLOAD,
            Payload::Dirent { .. } => off::DIRENT_END,
            Payload::Xattr { .. } => off::XATTR_END,
            Payload::FreemapLeaf { .. } => off::FREEMAP_END,
            Payload::Compressed(_) => off::FRAME_END,
            Payload::Dead { .. } => off::DEAD_END,
        };
        r.zero(payload_end, BLOCKREF_SIZE - payload_end)?;

        let br = Blockref { btype, keybits, level, flags, key, modify_tid, mirror_tid, data, payload };
        br.validate_shape(&r)?;
        Ok(br)
    }

    /// The per-type rules: which types have blocks, of what size, at what level.
    fn validate_shape(&self, r: &Reader<'_>) -> DecodeResult<()> {
        let size = self.size();
        let has_block = self.ptr().is_some();
        if self.modify_tid > self.mirror_tid {
            return Err(r.bad("modify_tid above mirror_tid", self.modify_tid));
        }
        if let Some(p) = self.ptr() {
            if p.copies.any_missing() && !self.is_degraded() {
                return Err(r.bad("missing copy without DEGRADED flag", 0));
            }
        }
        match self.btype {
            BlockType::Empty => {}
            BlockType::Inode => {
                if !has_block || size as usize != INODE_SIZE || self.level != 0 || self.keybits != 0 {
                    return Err(r.bad("inode reference", u64::from(size)));
                }
            }
            BlockType::Indirect => {
                if !has_block
                    || self.level == 0
                    || self.level > MAX_TREE_LEVEL
                    || !size.is_power_of_two()
                    || size > 1 << MAX_INDIRECT_BLOCK_SHIFT
                    || self.keybits != 0
                {
                    return Err(r.bad("indirect reference", u64::from(self.level)));
                }
            }
            BlockType::Data => {
                if !has_block || self.level != 0 || self.keybits > 63 || u64::from(size) > 1u64 << self.keybits {
                    return Err(r.bad("data reference", u64::from(size)));
                }
                if let Some(c) = self.compression() {
                    // The frame lies inside the stored bytes; the content it gives fits the
                    // block's key range (the data block size) and the largest block.
                    if c.frame_len == 0 || c.frame_len > size {
                        return Err(r.bad("compressed length", u64::from(c.frame_len)));
                    }
                    let logical = c.logical_len(size);
                    if u64::from(logical) > 1u64 << self.keybits || logical > MAX_BLOCK_SIZE {
                        return Err(r.bad("logical size", u64::from(logical)));
                    }
                }
            }
            BlockType::Dirent => {
                let Payload::Dirent { inum, name_len, dtype: t } = self.payload else {
                    return Err(r.bad("dirent payload", 0));
                };
                if inum == 0 || !dtype::valid(t) || name_len == 0 || usize::from(name_len) > MAX_NAME_LEN {
                    return Err(r.bad("dirent", u64::from(name_len)));
                }
                if self.level != 0 || self.keybits != 0 {
                    return Err(r.bad("dirent level", u64::from(self.level)));
                }
                match &self.data {
                    BlockData::Inline(name) => {
                        let n = usize::from(name_len);
                        if n > INLINE_NAME_MAX || name[n..].iter().any(|&b| b != 0) {
                            return Err(r.bad("inline name length", n as u64));
                        }
                    }
                    BlockData::Block(p) if usize::from(name_len) > INLINE_NAME_MAX && p.size as u64 == UNIT => {}
                    _ => return Err(r.bad("dirent name storage", u64::from(name_len))),
                }
            }
            BlockType::Xattr => {
                let Payload::Xattr { name_len, value_len } = self.payload else {
                    return Err(r.bad("xattr payload", 0));
                };
                let need = crate::xattr::block_size(usize::from(name_len), value_len as usize);
                if !has_block
                    || name_len == 0
                    || usize::from(name_len) > MAX_NAME_LEN
                    || value_len as usize > MAX_XATTR_VALUE
                    || need != Some(size)
                    || self.level != 0
                {
                    return Err(r.bad("xattr reference", u64::from(size)));
                }
            }
            BlockType::FreemapLeaf => {
                let Payload::FreemapLeaf { free_units } = self.payload else {
                    return Err(r.bad("freemap payload", 0));
                };
                if !has_block
                    || size as usize != FREEMAP_LEAF_SIZE
                    || free_units > FREEMAP_LEAF_UNITS
                    || self.level != 0
                {
                    return Err(r.bad("freemap reference", u64::from(size)));
                }
            }
            BlockType::Orphan => {
                if !matches!(self.data, BlockData::None) || self.level != 0 {
                    return Err(r.bad("orphan reference", u64::from(size)));
                }
            }
            BlockType::Pfs => {
                if !has_block || size as usize != PFS_RECORD_SIZE || self.level != 0 || self.keybits != 0 {
                    return Err(r.bad("pfs reference", u64::from(size)));
                }
            }
            BlockType::Dead => {
                // Stands for a block of a tree: never an entry of another dead list, a PFS
                // record, or a free-map leaf (those are never shared).
                let Payload::Dead { original } = self.payload else {
                    return Err(r.bad("dead payload", 0));
                };
                let ok = matches!(
                    BlockType::from_code(original),
                    Some(
                        BlockType::Inode | BlockType::Indirect | BlockType::Data | BlockType::Dirent | BlockType::Xattr
                    )
                );
                if !ok || !has_block || self.level != 0 || self.keybits != 0 {
                    return Err(r.bad("dead reference", u64::from(original)));
                }
            }
        }
        Ok(())
    }
}

/// Decodes a packed, sorted array of block references (an inode's root blockset or an
/// indirect block): the non-empty prefix is returned; after the first EMPTY slot every slot
/// must be EMPTY; keys must strictly increase; `level` is the level every entry must have
/// (0: leaves, any type but INDIRECT; L >= 1: INDIRECT references of level L).
pub fn decode_blockset(buf: &[u8], slots: usize, level: u8) -> DecodeResult<Vec<Blockref>> {
    decode_blockset_within(buf, slots, level, MAX_DEVICES)
}

/// [`decode_blockset`] for a filesystem of `device_count` devices (see
/// [`Blockref::decode_within`]).
pub fn decode_blockset_within(buf: &[u8], slots: usize, level: u8, device_count: usize) -> DecodeResult<Vec<Blockref>> {
    let r = Reader::new(buf, slots * BLOCKREF_SIZE, "blockset")?;
    // Slots are packed: the used ones are those before the first EMPTY type byte (a used
    // slot after it is refused below), so the vector is sized once.
    let used = (0..slots)
        .take_while(|i| r.u8(i * BLOCKREF_SIZE + off::TYPE).is_ok_and(|t| t != BlockType::Empty.code()))
        .count();
    let mut out = Vec::with_capacity(used);
    let mut ended = false;
    for i in 0..slots {
        let br = Blockref::decode_within(r.bytes(i * BLOCKREF_SIZE, BLOCKREF_SIZE)?, device_count)?;
        if br.is_empty() {
            ended = true;
            continue;
        }
        if ended {
            return Err(DecodeError::BadField { what: "blockset", field: "entry after empty slot", value: i as u64 });
        }
        let want_indirect = level > 0;
        if (br.btype == BlockType::Indirect) != want_indirect || (want_indirect && br.level != level) {
            return Err(DecodeError::BadField { what: "blockset", field: "entry level", value: u64::from(br.level) });
        }
        if let Some(prev) = out.last() {
            let prev: &Blockref = prev;
            if br.key <= prev.key {
                return Err(DecodeError::BadField { what: "blockset", field: "key order", value: br.key });
            }
        }
        out.push(br);
    }
    Ok(out)
}

/// Encodes `entries` (sorted, at most `slots`) into `slots` slots of `out`.
pub fn encode_blockset(entries: &[Blockref], slots: usize, out: &mut [u8]) {
    debug_assert!(entries.len() <= slots);
    out[..slots * BLOCKREF_SIZE].fill(0);
    for (i, e) in entries.iter().enumerate() {
        e.encode_into(&mut out[i * BLOCKREF_SIZE..]);
    }
}
