//! Making a new filesystem (the library half of mkfs.hammer2).
//!
//! A new filesystem is made by the ordinary commit path: an empty volume with every
//! free-map leaf dirty and a root directory in memory is committed as transaction 1. So
//! mkfs writes exactly what a mount would, and the format has one writer.

use crate::copies::compress::{self, Codec};
use crate::copies::placement::Placement;
use crate::devices::{DeviceSet, Member, MemberState};
use crate::error::{Error, Result};
use crate::fs::{FsInner, Options, Roots};
use crate::inode::{CommittedInode, Inode, InodeState, Meta};
use crate::storage::DynStorage;
use crate::volume::{Params, Volume};
use hammer2_format::layout::*;
use hammer2_format::{CheckMethod, DeviceEntry};
use parking_lot::RwLock;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct FormatOptions {
    pub label: String,
    /// Default: 1 for one device, 2 for several.
    pub copies: Option<u8>,
    pub check: CheckMethod,
    pub data_block_shift: u8,
    pub indirect_block_shift: u8,
    /// `FORMAT_VERSION` (1) or `FORMAT_VERSION_2` (with a PFS table holding ROOT).
    pub format_version: u32,
    /// The default compression of new files (header @98/@99): `None` is lz4 on version 2
    /// and nothing on version 1, which refuses any codec (FORMAT-V2 principle 1).
    pub compression: Option<Option<Codec>>,
}

/// What a version-2 filesystem compresses new files with unless told otherwise.
pub const DEFAULT_COMPRESSION: Option<Codec> = Some(Codec::Lz4);

/// The format version mkfs writes unless told otherwise: 2, since the engine, fsck and the
/// mounted tests pass on it; `--format-version 1` makes a filesystem older binaries read.
pub const DEFAULT_FORMAT_VERSION: u32 = FORMAT_VERSION_2;

impl Default for FormatOptions {
    fn default() -> Self {
        FormatOptions {
            label: String::new(),
            copies: None,
            check: CheckMethod::Crc32c,
            data_block_shift: DEFAULT_DATA_BLOCK_SHIFT,
            indirect_block_shift: DEFAULT_INDIRECT_BLOCK_SHIFT,
            format_version: DEFAULT_FORMAT_VERSION,
            compression: None,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FormatReport {
    pub uuid: String,
    pub label: String,
    pub copies: u8,
    pub check: String,
    pub format_version: u32,
    /// The default compression of new files (`none` on version 1).
    pub compression: String,
    pub devices: Vec<FormattedDevice>,
    /// Bytes of data the filesystem can hold (one copy's worth).
    pub capacity: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FormattedDevice {
    pub name: String,
    pub size: u64,
    pub regions: u8,
}

/// Checks everything that can be checked without writing: copies, sizes, label.
pub fn validate(sizes: &[u64], opts: &FormatOptions) -> Result<u8> {
    let ndev = sizes.len();
    if ndev == 0 {
        return Err(Error::invalid("no device given"));
    }
    if ndev > MAX_DEVICES {
        return Err(Error::invalid(format!("at most {MAX_DEVICES} devices")));
    }
    let copies = opts.copies.unwrap_or(if ndev == 1 { 1 } else { 2 });
    if copies == 0 || usize::from(copies) > MAX_COPIES {
        return Err(Error::invalid(format!("--copies must be 1 to {MAX_COPIES}")));
    }
    if opts.format_version != FORMAT_VERSION && opts.format_version != FORMAT_VERSION_2 {
        return Err(Error::invalid(format!(
            "format version {} is not one this build writes (1 or 2)",
            opts.format_version
        )));
    }
    if opts.format_version == FORMAT_VERSION && matches!(opts.compression, Some(Some(_))) {
        return Err(Error::FormatVersion1);
    }
    if opts.label.len() > hammer2_format::LABEL_MAX || opts.label.contains('\0') {
        return Err(Error::invalid("the label must be at most 64 bytes of UTF-8 without NUL"));
    }
    if !(MIN_BLOCK_SHIFT..=MAX_DATA_BLOCK_SHIFT).contains(&opts.data_block_shift)
        || !(MIN_BLOCK_SHIFT..=MAX_INDIRECT_BLOCK_SHIFT).contains(&opts.indirect_block_shift)
    {
        return Err(Error::invalid("unsupported block size"));
    }
    for (d, &size) in sizes.iter().enumerate() {
        // FORMAT.md §2: a recorded device size is whole units (callers round the real size
        // down); the header decoder refuses any other, so mkfs must never write one.
        if size % UNIT != 0 {
            return Err(Error::invalid(format!("device {d} size {size} is not a multiple of {UNIT} bytes")));
        }
        let regions = Placement::regions_for(ndev, copies, d);
        let need = RESERVED_BYTES + u64::from(regions) * MIN_REGION_BYTES;
        if size < need {
            return Err(Error::invalid(format!(
                "device {d} is too small: {} MiB needed for {} cop{} on it, it has {} MiB",
                need >> 20,
                regions,
                if regions == 1 { "y" } else { "ies" },
                size >> 20
            )));
        }
    }
    Ok(copies)
}

pub fn format(storages: Vec<DynStorage>, opts: &FormatOptions) -> Result<FormatReport> {
    let sizes: Vec<u64> = storages.iter().map(|s| s.size() / UNIT * UNIT).collect();
    let copies = validate(&sizes, opts)?;
    let ndev = storages.len();
    let fs_uuid = *uuid::Uuid::new_v4().as_bytes();
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);

    // Old header slots must not outlive the new filesystem: a stale slot with a higher tid
    // would otherwise win at mount.
    for s in &storages {
        for slot in 0..HEADER_SLOTS {
            s.write_at(&[0u8; HEADER_SIZE], header_offset(slot))?;
        }
        s.flush()?;
    }

    let mut members = Vec::with_capacity(ndev);
    let mut report_devs = Vec::with_capacity(ndev);
    for (d, s) in storages.iter().enumerate() {
        let regions = Placement::regions_for(ndev, copies, d);
        let entry = DeviceEntry::new(*uuid::Uuid::new_v4().as_bytes(), sizes[d], regions, 0);
        members.push(Member::new(d as u8, Some(s.clone()), &entry, MemberState::Online, s.name()));
        report_devs.push(FormattedDevice { name: s.name(), size: sizes[d], regions });
    }
    let vol = Volume {
        params: Params {
            fs_uuid,
            label: opts.label.clone(),
            copies,
            check: opts.check,
            data_block_shift: opts.data_block_shift,
            indirect_block_shift: opts.indirect_block_shift,
            mkfs_time_ns: now_ns,
        },
        devices: DeviceSet::new(members),
        cache: crate::cache::BlockCache::new(16 << 20),
        free_placement: false.into(),
        read_only: false,
    };
    let size_regions: Vec<(u64, u8)> = vol.devices.iter().map(|m| (m.size, m.regions)).collect();
    let alloc = crate::alloc::freemap::fresh(&size_regions);
    let capacity = vol.placement_total_units() * UNIT;
    let opts_fs = Options { background_sync: false, ..Options::default() };
    // Version 2: the commit below puts ROOT's record into the (empty) PFS table.
    let compression =
        if opts.format_version == FORMAT_VERSION_2 { opts.compression.unwrap_or(DEFAULT_COMPRESSION) } else { None };
    let pfs = (opts.format_version == FORMAT_VERSION_2).then(|| {
        let mut p = crate::upgrade::fresh_pfs(1, ROOT_INUM + 1);
        (p.default_compression, p.default_zstd_level) = compress::to_header(compression);
        Box::new(p)
    });
    let fs = FsInner::new(vol, alloc, Roots { pfs, ..Roots::default() }, ROOT_INUM + 1, opts_fs);

    let meta = Meta::fresh_root_dir(1);
    let root =
        Arc::new(Inode { inum: ROOT_INUM, state: RwLock::new(InodeState::new(meta, CommittedInode::new_empty())) });
    fs.inodes.insert(root.clone());
    {
        let mut st = root.state.write();
        fs.touch(&root, &mut st);
    }
    crate::commit::commit(&fs, true, true)?;
    Ok(FormatReport {
        uuid: uuid::Uuid::from_bytes(fs_uuid).to_string(),
        label: opts.label.clone(),
        copies,
        check: opts.check.name().to_string(),
        format_version: opts.format_version,
        compression: compress::name(compression),
        devices: report_devs,
        capacity,
    })
}
