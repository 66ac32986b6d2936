//! PFS records (format version 2, `PFS_TABLE`): one 4096-byte block per PFS, the leaf
//! content of the PFS table (`sroot[3]`), keyed by PFS id. A record holds the PFS's own
//! inode index, orphan list and inode counter, which version 1 keeps in the header.
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! |    0 |   4 | magic `PFS2` |
//! |    4 |   2 | record version (1) |
//! |    6 |   1 | kind: 1 PFS, 2 snapshot, 3 clone |
//! |    7 |   1 | flags: bit 0 receiving, bit 1 hidden |
//! |    8 |   8 | PFS id (= the key of its reference) |
//! |   16 |   8 | origin id |
//! |   24 |   8 | create tid |
//! |   32 |   8 | create time, ns |
//! |   40 |   8 | next inode number of this PFS |
//! |   48 |   8 | previous snapshot id |
//! |   56 |   8 | referenced bytes, logical |
//! |   64 |   8 | referenced bytes, physical |
//! |   72 |   8 | dead-list bytes, physical |
//! |   80 |  16 | PFS uuid |
//! |   96 |  16 | received-from uuid |
//! |  112 |   8 | received-from tid |
//! |  120 | 136 | resume token |
//! |  256 |  64 | name: UTF-8, 1..64 bytes, no `/`, NUL padded |
//! |  320 | 128 | inode index root (INDIRECT) |
//! |  448 | 128 | orphan list root (EMPTY or INDIRECT) |
//! |  576 | 128 | dead-list root (EMPTY or INDIRECT) |
//! |  704 | 3388 | reserved, zero |
//! | 4092 |   4 | crc32c of bytes 0..4092 |

use crate::blockref::{BlockType, Blockref};
use crate::bytes::{Reader, Writer};
use crate::layout::*;
use crate::{DecodeError, DecodeResult};

pub const MAGIC: [u8; 4] = *b"PFS2";
pub const RECORD_VERSION: u16 = 1;
/// Flag bit 0: an incomplete receive (not mountable, not listed as a snapshot).
pub const FLAG_RECEIVING: u8 = 1;
/// Flag bit 1: hidden from `.snapshots`.
pub const FLAG_HIDDEN: u8 = 2;
const KNOWN_FLAGS: u8 = FLAG_RECEIVING | FLAG_HIDDEN;
pub const RESUME_TOKEN_SIZE: usize = 136;

/// Byte offsets of a PFS record's fields (the table above; FORMAT.md "Version 2").
pub mod off {
    pub const MAGIC: usize = 0;
    pub const RECORD_VERSION: usize = 4;
    pub const KIND: usize = 6;
    pub const FLAGS: usize = 7;
    pub const ID: usize = 8;
    pub const ORIGIN: usize = 16;
    pub const CREATE_TID: usize = 24;
    pub const CREATE_TIME: usize = 32;
    pub const NEXT_INUM: usize = 40;
    pub const PREV_SNAPSHOT: usize = 48;
    pub const REFERENCED_LOGICAL: usize = 56;
    pub const REFERENCED_PHYSICAL: usize = 64;
    pub const DEAD_BYTES: usize = 72;
    pub const UUID: usize = 80;
    pub const RECEIVED_UUID: usize = 96;
    pub const RECEIVED_TID: usize = 112;
    pub const RESUME_TOKEN: usize = 120;
    pub const NAME: usize = 256;
    pub const INODE_ROOT: usize = 320;
    pub const ORPHAN_ROOT: usize = 448;
    pub const DEAD_ROOT: usize = 576;
    /// Reserved up to the check code.
    pub const RESERVED: usize = 704;
    /// crc32c of every byte before it.
    pub const CRC: usize = crate::layout::PFS_RECORD_SIZE - 4;
}

/// What a PFS is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PfsKind {
    /// A writable PFS.
    Pfs,
    /// A read-only snapshot.
    Snapshot,
    /// A writable PFS made from a snapshot (its origin).
    Clone,
}

impl PfsKind {
    pub const fn code(self) -> u8 {
        match self {
            PfsKind::Pfs => 1,
            PfsKind::Snapshot => 2,
            PfsKind::Clone => 3,
        }
    }
    pub fn from_code(c: u8) -> Option<PfsKind> {
        Some(match c {
            1 => PfsKind::Pfs,
            2 => PfsKind::Snapshot,
            3 => PfsKind::Clone,
            _ => return None,
        })
    }
    pub const fn name(self) -> &'static str {
        match self {
            PfsKind::Pfs => "pfs",
            PfsKind::Snapshot => "snapshot",
            PfsKind::Clone => "clone",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfsRecord {
    pub kind: PfsKind,
    pub flags: u8,
    pub id: u64,
    pub origin: u64,
    pub create_tid: u64,
    pub create_time_ns: u64,
    pub next_inum: u64,
    pub prev_snapshot: u64,
    pub referenced_logical: u64,
    pub referenced_physical: u64,
    pub dead_bytes: u64,
    pub uuid: [u8; 16],
    pub received_uuid: [u8; 16],
    pub received_tid: u64,
    pub resume_token: [u8; RESUME_TOKEN_SIZE],
    pub name: String,
    /// The PFS's inode index: one INDIRECT reference.
    pub inode_root: Blockref,
    /// Its orphan list: EMPTY or one INDIRECT reference.
    pub orphan_root: Blockref,
    /// Its dead list: EMPTY or one INDIRECT reference.
    pub dead_root: Blockref,
}

/// Why `name` cannot name a PFS (FORMAT.md "Version 2": UTF-8, 1..=64 bytes, no `/`, no
/// NUL), or None when it can.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a PFS name must not be empty")
    } else if name.len() > PFS_NAME_MAX {
        Some("a PFS name is at most 64 bytes")
    } else if name.contains('/') {
        Some("a PFS name must not contain '/'")
    } else if name.contains('\0') {
        Some("a PFS name must not contain NUL")
    } else {
        None
    }
}

impl PfsRecord {
    /// The record of a new writable PFS with no trees yet (the caller sets the roots).
    pub fn new(id: u64, name: &str, uuid: [u8; 16], create_tid: u64, create_time_ns: u64, next_inum: u64) -> Self {
        PfsRecord {
            kind: PfsKind::Pfs,
            flags: 0,
            id,
            origin: 0,
            create_tid,
            create_time_ns,
            next_inum,
            prev_snapshot: 0,
            referenced_logical: 0,
            referenced_physical: 0,
            dead_bytes: 0,
            uuid,
            received_uuid: [0; 16],
            received_tid: 0,
            resume_token: [0; RESUME_TOKEN_SIZE],
            name: name.to_string(),
            inode_root: Blockref::EMPTY,
            orphan_root: Blockref::EMPTY,
            dead_root: Blockref::EMPTY,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; PFS_RECORD_SIZE];
        let mut w = Writer::new(&mut out);
        w.bytes(off::MAGIC, &MAGIC);
        w.u16(off::RECORD_VERSION, RECORD_VERSION);
        w.u8(off::KIND, self.kind.code());
        w.u8(off::FLAGS, self.flags);
        w.u64(off::ID, self.id);
        w.u64(off::ORIGIN, self.origin);
        w.u64(off::CREATE_TID, self.create_tid);
        w.u64(off::CREATE_TIME, self.create_time_ns);
        w.u64(off::NEXT_INUM, self.next_inum);
        w.u64(off::PREV_SNAPSHOT, self.prev_snapshot);
        w.u64(off::REFERENCED_LOGICAL, self.referenced_logical);
        w.u64(off::REFERENCED_PHYSICAL, self.referenced_physical);
        w.u64(off::DEAD_BYTES, self.dead_bytes);
        w.bytes(off::UUID, &self.uuid);
        w.bytes(off::RECEIVED_UUID, &self.received_uuid);
        w.u64(off::RECEIVED_TID, self.received_tid);
        w.bytes(off::RESUME_TOKEN, &self.resume_token);
        // An invalid name is the caller's bug; what fits is written and the decoder
        // refuses it, as for any other field out of range.
        let name = &self.name.as_bytes()[..self.name.len().min(PFS_NAME_MAX)];
        w.bytes(off::NAME, name);
        self.inode_root.encode_into(&mut out[off::INODE_ROOT..]);
        self.orphan_root.encode_into(&mut out[off::ORPHAN_ROOT..]);
        self.dead_root.encode_into(&mut out[off::DEAD_ROOT..]);
        let crc = crc32c::crc32c(&out[..off::CRC]);
        out[off::CRC..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(buf: &[u8]) -> DecodeResult<PfsRecord> {
        PfsRecord::decode_within(buf, MAX_DEVICES)
    }

    /// [`PfsRecord::decode`] for a filesystem of `device_count` devices: every copy of
    /// every root names one of them.
    pub fn decode_within(buf: &[u8], device_count: usize) -> DecodeResult<PfsRecord> {
        let what = "pfs record";
        let r = Reader::new(buf, PFS_RECORD_SIZE, what)?;
        if r.array::<4>(off::MAGIC)? != MAGIC {
            return Err(DecodeError::BadMagic { what });
        }
        if crc32c::crc32c(r.bytes(0, off::CRC)?) != r.u32(off::CRC)? {
            return Err(DecodeError::BadCheck { what });
        }
        let version = r.u16(off::RECORD_VERSION)?;
        if version != RECORD_VERSION {
            return Err(DecodeError::BadVersion { what, version: u32::from(version) });
        }
        let kind_code = r.u8(off::KIND)?;
        let kind = PfsKind::from_code(kind_code).ok_or_else(|| r.bad("kind", u64::from(kind_code)))?;
        let flags = r.u8(off::FLAGS)?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(r.bad("flags", u64::from(flags)));
        }
        let id = r.u64(off::ID)?;
        if id == 0 {
            return Err(r.bad("pfs id", 0));
        }
        r.zero(off::RESERVED, off::CRC - off::RESERVED)?;
        let raw = r.bytes(off::NAME, PFS_NAME_MAX)?;
        let len = raw.iter().position(|&b| b == 0).unwrap_or(PFS_NAME_MAX);
        if raw[len..].iter().any(|&b| b != 0) {
            return Err(DecodeError::Reserved { what, offset: off::NAME + len });
        }
        let name = std::str::from_utf8(&raw[..len]).map_err(|_| r.bad("name encoding", 0))?.to_string();
        if name_problem(&name).is_some() {
            return Err(r.bad("name", len as u64));
        }
        let root = |o: usize, may_be_empty: bool, field: &'static str| -> DecodeResult<Blockref> {
            let br = Blockref::decode_within(r.bytes(o, BLOCKREF_SIZE)?, device_count)?;
            let ok = if br.is_empty() { may_be_empty } else { br.btype == BlockType::Indirect };
            if ok { Ok(br) } else { Err(r.bad(field, u64::from(br.btype.code()))) }
        };
        Ok(PfsRecord {
            kind,
            flags,
            id,
            origin: r.u64(off::ORIGIN)?,
            create_tid: r.u64(off::CREATE_TID)?,
            create_time_ns: r.u64(off::CREATE_TIME)?,
            next_inum: r.u64(off::NEXT_INUM)?,
            prev_snapshot: r.u64(off::PREV_SNAPSHOT)?,
            referenced_logical: r.u64(off::REFERENCED_LOGICAL)?,
            referenced_physical: r.u64(off::REFERENCED_PHYSICAL)?,
            dead_bytes: r.u64(off::DEAD_BYTES)?,
            uuid: r.array(off::UUID)?,
            received_uuid: r.array(off::RECEIVED_UUID)?,
            received_tid: r.u64(off::RECEIVED_TID)?,
            resume_token: r.array(off::RESUME_TOKEN)?,
            name,
            inode_root: root(off::INODE_ROOT, false, "inode index root")?,
            orphan_root: root(off::ORPHAN_ROOT, true, "orphan list root")?,
            dead_root: root(off::DEAD_ROOT, true, "dead-list root")?,
        })
    }
}
