//! Volume headers: `HEADER_SLOTS` slots of 4096 bytes at fixed offsets of every device
//! (`layout::header_offset`). A commit with transaction id T writes slot `T % 4` of every
//! device it can reach; a mount reads all slots and, per device, takes the valid slot (crc32c
//! right, fields valid, slot field equal to its position) with the highest tid. A torn slot
//! write therefore costs one commit at most.
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! |    0 |  8 | magic `HMR2LIKE` |
//! |    8 |  4 | format version (1 or 2) |
//! |   12 |  4 | header size (4096) |
//! |   16 |  8 | tid: transaction id of the commit that wrote this slot |
//! |   24 | 16 | filesystem uuid |
//! |   40 | 16 | device uuid |
//! |   56 |  2 | device index |
//! |   58 |  2 | device count |
//! |   60 |  1 | copies (1..=4) |
//! |   61 |  1 | check method (1 crc32c, 2 blake3) |
//! |   62 |  1 | slot index (0..=3) |
//! |   63 |  1 | flags (bit 0: written by a clean unmount) |
//! |   64 |  8 | device size in bytes |
//! |   72 |  8 | next inode number (0 with `PFS_TABLE`: each PFS record holds its own) |
//! |   80 |  8 | commit time (ns since the epoch) |
//! |   88 |  8 | mkfs time (ns since the epoch) |
//! |   96 |  1 | data block shift (12..=20) |
//! |   97 |  1 | indirect block shift (12..=16) |
//! |   98 |  1 | version 2: default compression (0 none, 1 lz4, 2 zstd); version 1: zero |
//! |   99 |  1 | version 2: default zstd level (1..=19); version 1: zero |
//! |  100 |  4 | reserved, zero |
//! |  104 |  8 | incompatible features (`layout::feature`; none in version 1: must be zero) |
//! |  112 |  8 | compatible features (ignored if unknown) |
//! |  120 |  8 | reserved, zero |
//! |  128 | 64 | label, UTF-8, zero padded |
//! |  192 | 64 | reserved, zero |
//! |  256 | 512 | root block references: inode tree, free map, orphans, reserved (version 2 with `PFS_TABLE`: EMPTY, free map, EMPTY, PFS table) |
//! |  768 | 1280 | device table: 16 entries of 80 bytes ([`DeviceEntry`]) |
//! | 2048 | 2044 | reserved, zero |
//! | 4092 |  4 | crc32c of bytes 0..4092 |

use crate::blockref::{BlockType, Blockref};
use crate::bytes::{Reader, Writer};
use crate::check::CheckMethod;
use crate::layout::*;
use crate::{DecodeError, DecodeResult};

pub const MAGIC: [u8; 8] = *b"HMR2LIKE";
pub const FLAG_CLEAN: u8 = 1;

/// Byte offsets of the volume header's fields (the table above; FORMAT.md §3).
pub mod off {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const HEADER_SIZE: usize = 12;
    pub const TID: usize = 16;
    pub const FS_UUID: usize = 24;
    pub const DEVICE_UUID: usize = 40;
    pub const DEVICE_INDEX: usize = 56;
    pub const DEVICE_COUNT: usize = 58;
    pub const COPIES: usize = 60;
    pub const CHECK_METHOD: usize = 61;
    pub const SLOT: usize = 62;
    pub const FLAGS: usize = 63;
    pub const DEVICE_SIZE: usize = 64;
    pub const NEXT_INUM: usize = 72;
    pub const COMMIT_TIME: usize = 80;
    pub const MKFS_TIME: usize = 88;
    pub const DATA_BLOCK_SHIFT: usize = 96;
    pub const INDIRECT_BLOCK_SHIFT: usize = 97;
    /// Version 2 only (zero in version 1).
    pub const DEFAULT_COMPRESSION: usize = 98;
    pub const DEFAULT_ZSTD_LEVEL: usize = 99;
    /// 4 reserved bytes (6, from 98, in version 1).
    pub const RESERVED_100: usize = 100;
    pub const INCOMPAT_FEATURES: usize = 104;
    pub const COMPAT_FEATURES: usize = 112;
    /// 8 reserved bytes.
    pub const RESERVED_120: usize = 120;
    /// `LABEL_MAX` bytes.
    pub const LABEL: usize = 128;
    /// 64 reserved bytes.
    pub const RESERVED_192: usize = 192;
    /// `SROOT_COUNT` block references.
    pub const SROOT: usize = 256;
    /// `MAX_DEVICES` entries of `DEVICE_ENTRY_SIZE` bytes.
    pub const DEVICE_TABLE: usize = 768;
    pub const DEVICE_ENTRY_SIZE: usize = 80;
    /// Reserved up to the check code.
    pub const DEVICE_TABLE_END: usize = DEVICE_TABLE + crate::layout::MAX_DEVICES * DEVICE_ENTRY_SIZE;
    /// crc32c of every byte before it.
    pub const CRC: usize = crate::layout::HEADER_SIZE - 4;

    /// Offsets inside one device table entry.
    pub mod dev {
        pub const UUID: usize = 0;
        pub const SIZE: usize = 16;
        pub const SYNCED_TID: usize = 24;
        pub const FREE_UNITS: usize = 32;
        pub const MISSED_SINCE: usize = 40;
        pub const READ_ERRORS: usize = 48;
        pub const WRITE_ERRORS: usize = 52;
        pub const CHECK_ERRORS: usize = 56;
        pub const REPAIRED: usize = 60;
        pub const REGIONS: usize = 64;
        pub const STATE: usize = 65;
        /// Reserved to the end of the entry.
        pub const RESERVED: usize = 66;
    }
}

/// A device's state as recorded by the writer of a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceState {
    /// Written by every commit and holding every block it should.
    Online,
    /// Failed or absent: commits skip it and record its copies as MISSING.
    Failed,
    /// Written by commits again, but still missing blocks from the commits it missed
    /// (since `missed_since`); a resync brings it back to Online.
    Stale,
    /// Was modified apart from the master (split brain) and lost the operator's choice:
    /// any of its copies may have been overwritten, so a resync verifies all of them.
    Diverged,
    /// Version 2: removed by `device remove`; no reference names it. Its index stays
    /// allocated so copy locations naming other devices keep their meaning.
    Removed,
    /// Version 2: added while mounted by the commit that wrote this header; written by
    /// commits, holding no copy yet (placement uses it once that commit is durable).
    Joining,
}

impl DeviceState {
    fn code(self) -> u8 {
        match self {
            DeviceState::Online => 1,
            DeviceState::Failed => 2,
            DeviceState::Stale => 3,
            DeviceState::Diverged => 4,
            DeviceState::Removed => 5,
            DeviceState::Joining => 6,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(DeviceState::Online),
            2 => Some(DeviceState::Failed),
            3 => Some(DeviceState::Stale),
            4 => Some(DeviceState::Diverged),
            5 => Some(DeviceState::Removed),
            6 => Some(DeviceState::Joining),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DeviceState::Online => "online",
            DeviceState::Failed => "failed",
            DeviceState::Stale => "stale",
            DeviceState::Diverged => "diverged",
            DeviceState::Removed => "removed",
            DeviceState::Joining => "joining",
        }
    }
}

/// One entry of the device table (80 bytes), as the header's writer knows that device.
///
/// | off | size | field |
/// |----:|-----:|-------|
/// |  0 | 16 | device uuid |
/// | 16 |  8 | device size in bytes |
/// | 24 |  8 | synced tid: the last commit whose header was written (or being written) to this device |
/// | 32 |  8 | free allocation units on the device after the commit |
/// | 40 |  8 | missed since: first commit the device missed (0 when it is in sync) |
/// | 48 |  4 | read errors (cumulative) |
/// | 52 |  4 | write errors |
/// | 56 |  4 | check (checksum) errors |
/// | 60 |  4 | copies repaired |
/// | 64 |  1 | regions on the device (1..=4) |
/// | 65 |  1 | state (1 online, 2 failed, 3 stale, 4 diverged; version 2: 5 removed, 6 joining) |
/// | 66 | 14 | reserved, zero |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceEntry {
    pub uuid: [u8; 16],
    pub size: u64,
    pub synced_tid: u64,
    pub free_units: u64,
    pub missed_since: u64,
    pub read_errors: u32,
    pub write_errors: u32,
    pub check_errors: u32,
    pub repaired: u32,
    pub regions: u8,
    pub state: DeviceState,
}

impl DeviceEntry {
    /// A device as mkfs records it: online, nothing synced, missed or counted yet.
    pub fn new(uuid: [u8; 16], size: u64, regions: u8, free_units: u64) -> DeviceEntry {
        DeviceEntry {
            uuid,
            size,
            synced_tid: 0,
            free_units,
            missed_since: 0,
            read_errors: 0,
            write_errors: 0,
            check_errors: 0,
            repaired: 0,
            regions,
            state: DeviceState::Online,
        }
    }
}

/// What [`VolumeHeader::raw_identity`] reads from a header without validating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawIdentity {
    pub tid: u64,
    pub fs_uuid: [u8; 16],
    pub device_uuid: [u8; 16],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeHeader {
    /// `FORMAT_VERSION` (1) or `FORMAT_VERSION_2`.
    pub version: u32,
    pub tid: u64,
    pub fs_uuid: [u8; 16],
    pub device_uuid: [u8; 16],
    pub device_index: u16,
    pub copies: u8,
    pub check: CheckMethod,
    pub slot: u8,
    pub flags: u8,
    pub device_size: u64,
    pub next_inum: u64,
    pub commit_time_ns: u64,
    pub mkfs_time_ns: u64,
    pub data_block_shift: u8,
    pub indirect_block_shift: u8,
    /// Version 2: the default compression of new files (0 none, 1 lz4, 2 zstd); 0 in version 1.
    pub default_compression: u8,
    /// Version 2: the default zstd level (1..=19); 0 in version 1.
    pub default_zstd_level: u8,
    /// `layout::feature` bits; 0 in version 1.
    pub incompat_features: u64,
    pub compat_features: u64,
    pub label: String,
    /// `[SROOT_INODES]`, `[SROOT_FREEMAP]`, `[SROOT_ORPHANS]`, and one reserved (EMPTY);
    /// with `PFS_TABLE`: EMPTY, the free map, EMPTY and `[SROOT_PFS_TABLE]`.
    pub sroot: [Blockref; SROOT_COUNT],
    /// One entry per device of the filesystem (the device count is its length).
    pub devices: Vec<DeviceEntry>,
}

impl VolumeHeader {
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// Whether the header has incompatible feature `bit` (`layout::feature`).
    pub fn has_feature(&self, bit: u64) -> bool {
        self.incompat_features & bit == bit
    }

    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        let mut w = Writer::new(&mut out);
        w.bytes(off::MAGIC, &MAGIC);
        w.u32(off::VERSION, self.version);
        w.u32(off::HEADER_SIZE, HEADER_SIZE as u32);
        w.u64(off::TID, self.tid);
        w.bytes(off::FS_UUID, &self.fs_uuid);
        w.bytes(off::DEVICE_UUID, &self.device_uuid);
        w.u16(off::DEVICE_INDEX, self.device_index);
        w.u16(off::DEVICE_COUNT, self.devices.len() as u16);
        w.u8(off::COPIES, self.copies);
        w.u8(off::CHECK_METHOD, self.check.code());
        w.u8(off::SLOT, self.slot);
        w.u8(off::FLAGS, self.flags);
        w.u64(off::DEVICE_SIZE, self.device_size);
        w.u64(off::NEXT_INUM, self.next_inum);
        w.u64(off::COMMIT_TIME, self.commit_time_ns);
        w.u64(off::MKFS_TIME, self.mkfs_time_ns);
        w.u8(off::DATA_BLOCK_SHIFT, self.data_block_shift);
        w.u8(off::INDIRECT_BLOCK_SHIFT, self.indirect_block_shift);
        w.u8(off::DEFAULT_COMPRESSION, self.default_compression);
        w.u8(off::DEFAULT_ZSTD_LEVEL, self.default_zstd_level);
        w.u64(off::INCOMPAT_FEATURES, self.incompat_features);
        w.u64(off::COMPAT_FEATURES, self.compat_features);
        w.bytes(off::LABEL, label_bytes(&self.label));
        for (i, br) in self.sroot.iter().enumerate() {
            br.encode_into(&mut out[off::SROOT + i * BLOCKREF_SIZE..]);
        }
        let mut w = Writer::new(&mut out);
        for (i, d) in self.devices.iter().enumerate() {
            let o = off::DEVICE_TABLE + i * off::DEVICE_ENTRY_SIZE;
            w.bytes(o + off::dev::UUID, &d.uuid);
            w.u64(o + off::dev::SIZE, d.size);
            w.u64(o + off::dev::SYNCED_TID, d.synced_tid);
            w.u64(o + off::dev::FREE_UNITS, d.free_units);
            w.u64(o + off::dev::MISSED_SINCE, d.missed_since);
            w.u32(o + off::dev::READ_ERRORS, d.read_errors);
            w.u32(o + off::dev::WRITE_ERRORS, d.write_errors);
            w.u32(o + off::dev::CHECK_ERRORS, d.check_errors);
            w.u32(o + off::dev::REPAIRED, d.repaired);
            w.u8(o + off::dev::REGIONS, d.regions);
            w.u8(o + off::dev::STATE, d.state.code());
        }
        let crc = crc32c::crc32c(&out[..off::CRC]);
        out[off::CRC..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// True when `buf` starts with the header magic (used to recognize an existing
    /// filesystem even when its check code is damaged).
    pub fn has_magic(buf: &[u8]) -> bool {
        buf.len() >= MAGIC.len() && buf[..MAGIC.len()] == MAGIC
    }

    /// The identity fields of a header that may not decode (a damaged check code or field),
    /// read at their fixed offsets, so a mount or fsck can tell what a damaged slot held.
    /// `None` without the magic.
    pub fn raw_identity(buf: &[u8]) -> Option<RawIdentity> {
        if !VolumeHeader::has_magic(buf) {
            return None;
        }
        let r = Reader::new(buf, HEADER_SIZE, "volume header").ok()?;
        Some(RawIdentity {
            tid: r.u64(off::TID).ok()?,
            fs_uuid: r.array(off::FS_UUID).ok()?,
            device_uuid: r.array(off::DEVICE_UUID).ok()?,
        })
    }

    pub fn decode(buf: &[u8]) -> DecodeResult<VolumeHeader> {
        let what = "volume header";
        let r = Reader::new(buf, HEADER_SIZE, what)?;
        if r.array::<8>(off::MAGIC)? != MAGIC {
            return Err(DecodeError::BadMagic { what });
        }
        let crc = r.u32(off::CRC)?;
        if crc32c::crc32c(r.bytes(0, off::CRC)?) != crc {
            return Err(DecodeError::BadCheck { what });
        }
        let version = r.u32(off::VERSION)?;
        if version != FORMAT_VERSION && version != FORMAT_VERSION_2 {
            return Err(DecodeError::BadVersion { what, version });
        }
        if r.u32(off::HEADER_SIZE)? != HEADER_SIZE as u32 {
            return Err(r.bad("header size", u64::from(r.u32(off::HEADER_SIZE)?)));
        }
        r.zero(off::RESERVED_100, off::INCOMPAT_FEATURES - off::RESERVED_100)?;
        r.zero(off::RESERVED_120, off::LABEL - off::RESERVED_120)?;
        r.zero(off::RESERVED_192, off::SROOT - off::RESERVED_192)?;
        r.zero(off::DEVICE_TABLE_END, off::CRC - off::DEVICE_TABLE_END)?;
        let incompat = r.u64(off::INCOMPAT_FEATURES)?;
        let default_compression = r.u8(off::DEFAULT_COMPRESSION)?;
        let default_zstd_level = r.u8(off::DEFAULT_ZSTD_LEVEL)?;
        if version == FORMAT_VERSION {
            // Version 1 has none of version 2's fields: bytes 98..104 are reserved.
            if default_compression != 0 || default_zstd_level != 0 {
                return Err(DecodeError::Reserved { what, offset: off::DEFAULT_COMPRESSION });
            }
            if incompat != 0 {
                return Err(r.bad("incompatible features", incompat));
            }
        } else {
            if incompat & !feature::ALL != 0 {
                return Err(r.bad("incompatible features", incompat));
            }
            if default_compression > MAX_COMPRESSION_CODE {
                return Err(r.bad("default compression", u64::from(default_compression)));
            }
            if !(1..=MAX_ZSTD_LEVEL).contains(&default_zstd_level) {
                return Err(r.bad("default zstd level", u64::from(default_zstd_level)));
            }
        }
        let pfs_table = incompat & feature::PFS_TABLE != 0;
        let count = usize::from(r.u16(off::DEVICE_COUNT)?);
        if count == 0 || count > MAX_DEVICES {
            return Err(r.bad("device count", count as u64));
        }
        let device_index = r.u16(off::DEVICE_INDEX)?;
        if usize::from(device_index) >= count {
            return Err(r.bad("device index", u64::from(device_index)));
        }
        let copies = r.u8(off::COPIES)?;
        if copies == 0 || usize::from(copies) > MAX_COPIES {
            return Err(r.bad("copies", u64::from(copies)));
        }
        let check_code = r.u8(off::CHECK_METHOD)?;
        let check = CheckMethod::from_code(check_code).ok_or_else(|| r.bad("check method", u64::from(check_code)))?;
        let slot = r.u8(off::SLOT)?;
        if usize::from(slot) >= HEADER_SLOTS {
            return Err(r.bad("slot", u64::from(slot)));
        }
        let flags = r.u8(off::FLAGS)?;
        if flags & !FLAG_CLEAN != 0 {
            return Err(r.bad("flags", u64::from(flags)));
        }
        let data_block_shift = r.u8(off::DATA_BLOCK_SHIFT)?;
        if !(MIN_BLOCK_SHIFT..=MAX_DATA_BLOCK_SHIFT).contains(&data_block_shift) {
            return Err(r.bad("data block shift", u64::from(data_block_shift)));
        }
        let indirect_block_shift = r.u8(off::INDIRECT_BLOCK_SHIFT)?;
        if !(MIN_BLOCK_SHIFT..=MAX_INDIRECT_BLOCK_SHIFT).contains(&indirect_block_shift) {
            return Err(r.bad("indirect block shift", u64::from(indirect_block_shift)));
        }
        let label_raw = r.bytes(off::LABEL, LABEL_MAX)?;
        let label_len = label_raw.iter().position(|&b| b == 0).unwrap_or(LABEL_MAX);
        if label_raw[label_len..].iter().any(|&b| b != 0) {
            return Err(DecodeError::Reserved { what, offset: off::LABEL + label_len });
        }
        let label = std::str::from_utf8(&label_raw[..label_len]).map_err(|_| r.bad("label encoding", 0))?.to_string();

        let mut sroot = [Blockref::EMPTY; SROOT_COUNT];
        for (i, s) in sroot.iter_mut().enumerate() {
            // The roots' copies name devices of this header's table.
            let br = Blockref::decode_within(r.bytes(off::SROOT + i * BLOCKREF_SIZE, BLOCKREF_SIZE)?, count)?;
            // With PFS_TABLE the inode index and orphan list live in PFS records and
            // sroot[3] is the table (never empty: it holds ROOT at least); without it,
            // sroot[3] is reserved.
            let ok = match (i, pfs_table) {
                (SROOT_PFS_TABLE, true) => br.btype == BlockType::Indirect,
                (SROOT_PFS_TABLE, false) | (SROOT_INODES | SROOT_ORPHANS, true) => br.is_empty(),
                _ => br.is_empty() || br.btype == BlockType::Indirect,
            };
            if !ok {
                return Err(r.bad("root reference type", i as u64));
            }
            *s = br;
        }

        let mut devices = Vec::with_capacity(count);
        for i in 0..MAX_DEVICES {
            let o = off::DEVICE_TABLE + i * off::DEVICE_ENTRY_SIZE;
            if i >= count {
                r.zero(o, off::DEVICE_ENTRY_SIZE)?;
                continue;
            }
            r.zero(o + off::dev::RESERVED, off::DEVICE_ENTRY_SIZE - off::dev::RESERVED)?;
            let uuid: [u8; 16] = r.array(o + off::dev::UUID)?;
            let regions = r.u8(o + off::dev::REGIONS)?;
            let state_code = r.u8(o + off::dev::STATE)?;
            let state = DeviceState::from_code(state_code)
                .filter(|s| version != FORMAT_VERSION || !matches!(s, DeviceState::Removed | DeviceState::Joining))
                .ok_or_else(|| r.bad("device state", u64::from(state_code)))?;
            let size = r.u64(o + off::dev::SIZE)?;
            if uuid == [0; 16]
                || regions == 0
                || usize::from(regions) > MAX_REGIONS
                || size < MIN_DEVICE_BYTES
                || size % UNIT != 0
            {
                return Err(r.bad("device entry", i as u64));
            }
            devices.push(DeviceEntry {
                uuid,
                size,
                synced_tid: r.u64(o + off::dev::SYNCED_TID)?,
                free_units: r.u64(o + off::dev::FREE_UNITS)?,
                missed_since: r.u64(o + off::dev::MISSED_SINCE)?,
                read_errors: r.u32(o + off::dev::READ_ERRORS)?,
                write_errors: r.u32(o + off::dev::WRITE_ERRORS)?,
                check_errors: r.u32(o + off::dev::CHECK_ERRORS)?,
                repaired: r.u32(o + off::dev::REPAIRED)?,
                regions,
                state,
            });
        }
        let device_uuid: [u8; 16] = r.array(off::DEVICE_UUID)?;
        let device_size = r.u64(off::DEVICE_SIZE)?;
        let me = &devices[usize::from(device_index)];
        if me.uuid != device_uuid || me.size != device_size {
            return Err(r.bad("own device entry", u64::from(device_index)));
        }
        let total_regions: usize = devices.iter().map(|d| usize::from(d.regions)).sum();
        if total_regions < usize::from(copies) {
            return Err(r.bad("copies exceed regions", u64::from(copies)));
        }
        let next_inum = r.u64(off::NEXT_INUM)?;
        if pfs_table && next_inum != 0 {
            return Err(r.bad("next inode number with a PFS table", next_inum));
        }
        Ok(VolumeHeader {
            version,
            tid: r.u64(off::TID)?,
            fs_uuid: r.array(off::FS_UUID)?,
            device_uuid,
            device_index,
            copies,
            check,
            slot,
            flags,
            device_size,
            next_inum,
            commit_time_ns: r.u64(off::COMMIT_TIME)?,
            mkfs_time_ns: r.u64(off::MKFS_TIME)?,
            data_block_shift,
            indirect_block_shift,
            default_compression,
            default_zstd_level,
            incompat_features: incompat,
            compat_features: r.u64(off::COMPAT_FEATURES)?,
            label,
            sroot,
            devices,
        })
    }
}

/// The label field holds 64 bytes of UTF-8: a longer label is cut at the last character
/// boundary that fits, so the header still decodes (a cut inside a character would not).
fn label_bytes(label: &str) -> &[u8] {
    let mut end = label.len().min(LABEL_MAX);
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    &label.as_bytes()[..end]
}
