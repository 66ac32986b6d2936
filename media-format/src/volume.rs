//! Volume headers: `HEADER_SLOTS` slots of 4096 bytes at fixed offsets of every device
//! (`layout::header_offset`). A commit with transaction id T writes slot `T % 4` of every
//! device it can reach; a mount reads all slots and, per device, takes the valid slot (crc32c
//! right, fields valid, slot field equal to its position) with the highest tid. A torn slot
//! write therefore costs one commit at most.
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! |    0 |  8 | magic `HMR2LIKE` |
//! |    8 |  4 | format version (1) |
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
//! |   72 |  8 | next inode number |
//! |   80 |  8 | commit time (ns since the epoch) |
//! |   88 |  8 | mkfs time (ns since the epoch) |
//! |   96 |  1 | data block shift (12..=20) |
//! |   97 |  1 | indirect block shift (12..=16) |
//! |   98 |  6 | reserved, zero |
//! |  104 |  8 | incompatible features (none in version 1: must be zero) |
//! |  112 |  8 | compatible features (ignored if unknown) |
//! |  120 |  8 | reserved, zero |
//! |  128 | 64 | label, UTF-8, zero padded |
//! |  192 | 64 | reserved, zero |
//! |  256 | 512 | root block references: inode tree, free map, orphans, reserved |
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
const DEVTAB: usize = 768;
const DEVENT: usize = 80;
const DEVTAB_END: usize = DEVTAB + MAX_DEVICES * DEVENT;

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
}

impl DeviceState {
    fn code(self) -> u8 {
        match self {
            DeviceState::Online => 1,
            DeviceState::Failed => 2,
            DeviceState::Stale => 3,
            DeviceState::Diverged => 4,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(DeviceState::Online),
            2 => Some(DeviceState::Failed),
            3 => Some(DeviceState::Stale),
            4 => Some(DeviceState::Diverged),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DeviceState::Online => "online",
            DeviceState::Failed => "failed",
            DeviceState::Stale => "stale",
            DeviceState::Diverged => "diverged",
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
/// | 65 |  1 | state (1 online, 2 failed, 3 stale, 4 diverged) |
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeHeader {
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
    pub compat_features: u64,
    pub label: String,
    /// `[SROOT_INODES]`, `[SROOT_FREEMAP]`, `[SROOT_ORPHANS]`, and one reserved (EMPTY).
    pub sroot: [Blockref; SROOT_COUNT],
    /// One entry per device of the filesystem (the device count is its length).
    pub devices: Vec<DeviceEntry>,
}

impl VolumeHeader {
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        let mut w = Writer::new(&mut out);
        w.bytes(0, &MAGIC);
        w.u32(8, FORMAT_VERSION);
        w.u32(12, HEADER_SIZE as u32);
        w.u64(16, self.tid);
        w.bytes(24, &self.fs_uuid);
        w.bytes(40, &self.device_uuid);
        w.u16(56, self.device_index);
        w.u16(58, self.devices.len() as u16);
        w.u8(60, self.copies);
        w.u8(61, self.check.code());
        w.u8(62, self.slot);
        w.u8(63, self.flags);
        w.u64(64, self.device_size);
        w.u64(72, self.next_inum);
        w.u64(80, self.commit_time_ns);
        w.u64(88, self.mkfs_time_ns);
        w.u8(96, self.data_block_shift);
        w.u8(97, self.indirect_block_shift);
        w.u64(112, self.compat_features);
        w.bytes(128, label_bytes(&self.label));
        for (i, br) in self.sroot.iter().enumerate() {
            br.encode_into(&mut out[256 + i * BLOCKREF_SIZE..]);
        }
        let mut w = Writer::new(&mut out);
        for (i, d) in self.devices.iter().enumerate() {
            let o = DEVTAB + i * DEVENT;
            w.bytes(o, &d.uuid);
            w.u64(o + 16, d.size);
            w.u64(o + 24, d.synced_tid);
            w.u64(o + 32, d.free_units);
            w.u64(o + 40, d.missed_since);
            w.u32(o + 48, d.read_errors);
            w.u32(o + 52, d.write_errors);
            w.u32(o + 56, d.check_errors);
            w.u32(o + 60, d.repaired);
            w.u8(o + 64, d.regions);
            w.u8(o + 65, d.state.code());
        }
        let crc = crc32c::crc32c(&out[..HEADER_SIZE - 4]);
        out[HEADER_SIZE - 4..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// True when `buf` starts with the header magic (used to recognize an existing
    /// filesystem even when its check code is damaged).
    pub fn has_magic(buf: &[u8]) -> bool {
        buf.len() >= 8 && buf[..8] == MAGIC
    }

    pub fn decode(buf: &[u8]) -> DecodeResult<VolumeHeader> {
        let what = "volume header";
        let r = Reader::new(buf, HEADER_SIZE, what)?;
        if r.array::<8>(0)? != MAGIC {
            return Err(DecodeError::BadMagic { what });
        }
        let crc = r.u32(HEADER_SIZE - 4)?;
        if crc32c::crc32c(r.bytes(0, HEADER_SIZE - 4)?) != crc {
            return Err(DecodeError::BadCheck { what });
        }
        let version = r.u32(8)?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::BadVersion { what, version });
        }
        if r.u32(12)? != HEADER_SIZE as u32 {
            return Err(r.bad("header size", u64::from(r.u32(12)?)));
        }
        r.zero(98, 6)?;
        r.zero(120, 8)?;
        r.zero(192, 64)?;
        r.zero(DEVTAB_END, HEADER_SIZE - 4 - DEVTAB_END)?;
        let incompat = r.u64(104)?;
        if incompat != 0 {
            return Err(r.bad("incompatible features", incompat));
        }
        let count = usize::from(r.u16(58)?);
        if count == 0 || count > MAX_DEVICES {
            return Err(r.bad("device count", count as u64));
        }
        let device_index = r.u16(56)?;
        if usize::from(device_index) >= count {
            return Err(r.bad("device index", u64::from(device_index)));
        }
        let copies = r.u8(60)?;
        if copies == 0 || usize::from(copies) > MAX_COPIES {
            return Err(r.bad("copies", u64::from(copies)));
        }
        let check = CheckMethod::from_code(r.u8(61)?).ok_or_else(|| r.bad("check method", u64::from(buf[61])))?;
        let slot = r.u8(62)?;
        if usize::from(slot) >= HEADER_SLOTS {
            return Err(r.bad("slot", u64::from(slot)));
        }
        let flags = r.u8(63)?;
        if flags & !FLAG_CLEAN != 0 {
            return Err(r.bad("flags", u64::from(flags)));
        }
        let data_block_shift = r.u8(96)?;
        if !(MIN_BLOCK_SHIFT..=MAX_DATA_BLOCK_SHIFT).contains(&data_block_shift) {
            return Err(r.bad("data block shift", u64::from(data_block_shift)));
        }
        let indirect_block_shift = r.u8(97)?;
        if !(MIN_BLOCK_SHIFT..=MAX_INDIRECT_BLOCK_SHIFT).contains(&indirect_block_shift) {
            return Err(r.bad("indirect block shift", u64::from(indirect_block_shift)));
        }
        let label_raw = r.bytes(128, LABEL_MAX)?;
        let label_len = label_raw.iter().position(|&b| b == 0).unwrap_or(LABEL_MAX);
        if label_raw[label_len..].iter().any(|&b| b != 0) {
            return Err(DecodeError::Reserved { what, offset: 128 + label_len });
        }
        let label = std::str::from_utf8(&label_raw[..label_len]).map_err(|_| r.bad("label encoding", 0))?.to_string();

        let mut sroot = [Blockref::EMPTY; SROOT_COUNT];
        for (i, s) in sroot.iter_mut().enumerate() {
            let br = Blockref::decode(r.bytes(256 + i * BLOCKREF_SIZE, BLOCKREF_SIZE)?)?;
            let ok = match i {
                SROOT_COUNT_RESERVED => br.is_empty(),
                _ => br.is_empty() || br.btype == BlockType::Indirect,
            };
            if !ok {
                return Err(r.bad("root reference type", i as u64));
            }
            *s = br;
        }

        let mut devices = Vec::with_capacity(count);
        for i in 0..MAX_DEVICES {
            let o = DEVTAB + i * DEVENT;
            if i >= count {
                r.zero(o, DEVENT)?;
                continue;
            }
            r.zero(o + 66, DEVENT - 66)?;
            let uuid: [u8; 16] = r.array(o)?;
            let regions = r.u8(o + 64)?;
            let state_code = r.u8(o + 65)?;
            let state =
                DeviceState::from_code(state_code).ok_or_else(|| r.bad("device state", u64::from(state_code)))?;
            let size = r.u64(o + 16)?;
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
                synced_tid: r.u64(o + 24)?,
                free_units: r.u64(o + 32)?,
                missed_since: r.u64(o + 40)?,
                read_errors: r.u32(o + 48)?,
                write_errors: r.u32(o + 52)?,
                check_errors: r.u32(o + 56)?,
                repaired: r.u32(o + 60)?,
                regions,
                state,
            });
        }
        let device_uuid: [u8; 16] = r.array(40)?;
        let device_size = r.u64(64)?;
        let me = &devices[usize::from(device_index)];
        if me.uuid != device_uuid || me.size != device_size {
            return Err(r.bad("own device entry", u64::from(device_index)));
        }
        let total_regions: usize = devices.iter().map(|d| usize::from(d.regions)).sum();
        if total_regions < usize::from(copies) {
            return Err(r.bad("copies exceed regions", u64::from(copies)));
        }
        Ok(VolumeHeader {
            tid: r.u64(16)?,
            fs_uuid: r.array(24)?,
            device_uuid,
            device_index,
            copies,
            check,
            slot,
            flags,
            device_size,
            next_inum: r.u64(72)?,
            commit_time_ns: r.u64(80)?,
            mkfs_time_ns: r.u64(88)?,
            data_block_shift,
            indirect_block_shift,
            compat_features: r.u64(112)?,
            label,
            sroot,
            devices,
        })
    }
}

const SROOT_COUNT_RESERVED: usize = 3;

/// The label field holds 64 bytes of UTF-8: a longer label is cut at the last character
/// boundary that fits, so the header still decodes (a cut inside a character would not).
fn label_bytes(label: &str) -> &[u8] {
    let mut end = label.len().min(LABEL_MAX);
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    &label.as_bytes()[..end]
}
