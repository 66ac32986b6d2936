//! Where a mount's inode index, orphan list and inode counter live on the devices: the one
//! place that knows the difference between the format versions (FORMAT.md "Version 2").
//!
//! Version 1 (and any header without `PFS_TABLE`) keeps them in the volume header
//! (`sroot[0]`, `sroot[2]`, the next-inode field). With `PFS_TABLE` the header holds the
//! PFS table in `sroot[3]`, and each PFS record holds its own roots and counter; a mount
//! serves one PFS (`Options::pfs`). The choice is made once, when the roots are loaded
//! ([`load`]): `Roots::pfs` is `None` for the header layout and names the table and the
//! served record otherwise, and the commit asks [`header_fields`] what to write (V2 in
//! docs/DESIGN.md: a version-1 filesystem is never written as version 2 by a mount).

use crate::error::{Error, Result};
use crate::fs::{PfsRoots, Roots};
use crate::tree::{self, Root};
use crate::volume::Volume;
use hammer2_format::layout::{
    FORMAT_VERSION, FORMAT_VERSION_2, ROOT_PFS_NAME, SROOT_FREEMAP, SROOT_INODES, SROOT_ORPHANS, SROOT_PFS_TABLE,
    feature,
};
use hammer2_format::pfs::PfsKind;
use hammer2_format::{BlockType, Blockref, PfsRecord, VolumeHeader};
use std::ops::ControlFlow;

/// What a commit writes into the header for its roots.
pub struct HeaderFields {
    pub version: u32,
    pub features: u64,
    pub default_compression: u8,
    pub default_zstd_level: u8,
    pub sroot: [Blockref; 4],
    pub next_inum: u64,
}

/// The header fields of a commit of `roots` with inode counter `next_inum`.
pub fn header_fields(roots: &Roots, next_inum: u64) -> HeaderFields {
    match &roots.pfs {
        None => HeaderFields {
            version: FORMAT_VERSION,
            features: 0,
            default_compression: 0,
            default_zstd_level: 0,
            sroot: [roots.inodes.to_ref(), roots.freemap.to_ref(), roots.orphans.to_ref(), Blockref::EMPTY],
            next_inum,
        },
        Some(p) => HeaderFields {
            version: FORMAT_VERSION_2,
            features: p.features,
            default_compression: p.default_compression,
            default_zstd_level: p.default_zstd_level,
            sroot: [Blockref::EMPTY, roots.freemap.to_ref(), Blockref::EMPTY, p.table.to_ref()],
            // The counter is the record's (FORMAT.md "Version 2": 0 in the header).
            next_inum: 0,
        },
    }
}

/// The features this build implements; a header with any other is refused (it may hold
/// structures this code would damage by writing).
const IMPLEMENTED: u64 = feature::PFS_TABLE
    | feature::SHARED_BLOCKS
    | feature::COMPRESSED
    | feature::FREE_PLACEMENT
    | feature::VARIABLE_COPIES;

/// The incompatible features this build implements (a checker sets only these: a header
/// with any other is refused at mount).
pub fn implemented_features() -> u64 {
    IMPLEMENTED
}

/// The roots the header `mh` names, read without I/O, serving no PFS: for a walk over the
/// whole filesystem (fsck), which reaches every PFS through the table.
pub fn header_roots(mh: &VolumeHeader) -> Roots {
    let freemap = Root::from_ref(&mh.sroot[SROOT_FREEMAP]);
    if !mh.has_feature(feature::PFS_TABLE) {
        return Roots {
            tid: mh.tid,
            inodes: Root::from_ref(&mh.sroot[SROOT_INODES]),
            freemap,
            orphans: Root::from_ref(&mh.sroot[SROOT_ORPHANS]),
            pfs: None,
        };
    }
    Roots {
        tid: mh.tid,
        inodes: Root::empty(),
        freemap,
        orphans: Root::empty(),
        pfs: Some(Box::new(PfsRoots {
            table: Root::from_ref(&mh.sroot[SROOT_PFS_TABLE]),
            served: None,
            newest_snapshot_tid: 0,
            clone_floor: 0,
            features: mh.incompat_features,
            default_compression: mh.default_compression,
            default_zstd_level: mh.default_zstd_level,
        })),
    }
}

/// The roots of commit `mh` for the PFS named `pfs`, and that PFS's next inode number.
pub fn load(vol: &Volume, mh: &VolumeHeader, pfs: &str) -> Result<(Roots, u64)> {
    let mut roots = header_roots(mh);
    if !mh.has_feature(feature::PFS_TABLE) {
        if mh.version != FORMAT_VERSION {
            return Err(Error::Mount(format!(
                "format version {} without PFS_TABLE is not supported by this build",
                mh.version
            )));
        }
        if pfs != ROOT_PFS_NAME {
            return Err(Error::Mount(format!("no PFS named {pfs:?}: {}", Error::FormatVersion1)));
        }
        return Ok((roots, mh.next_inum));
    }
    let unknown = mh.incompat_features & !IMPLEMENTED;
    if unknown != 0 {
        return Err(Error::Mount(format!(
            "the filesystem uses format features this build does not implement: {}",
            feature::names(unknown).join(", ")
        )));
    }
    let table = Root::from_ref(&mh.sroot[SROOT_PFS_TABLE]);
    let records = records(vol, &table, mh.device_count())?;
    let Some((_, record)) = records.iter().find(|(_, r)| r.name == pfs) else {
        let names: Vec<&str> = records.iter().map(|(_, r)| r.name.as_str()).collect();
        return Err(Error::Mount(format!("no PFS named {pfs:?} (the filesystem has: {})", names.join(", "))));
    };
    if record.flags & hammer2_format::pfs::FLAG_RECEIVING != 0 {
        return Err(Error::Mount(format!("PFS {pfs:?} is an incomplete receive and cannot be mounted")));
    }
    if record.kind == PfsKind::Snapshot && !vol.read_only {
        return Err(Error::Mount(format!("PFS {pfs:?} is a snapshot: it mounts read-only (-o ro)")));
    }
    roots.inodes = Root::from_ref(&record.inode_root);
    roots.orphans = Root::from_ref(&record.orphan_root);
    if let Some(p) = roots.pfs.as_mut() {
        p.newest_snapshot_tid = newest_snapshot_tid(&records, record.id);
        p.clone_floor = clone_floor(&records, record);
        p.served = Some(record.clone());
    }
    Ok((roots, record.next_inum))
}

/// The create tid of the newest snapshot of PFS `id` among `records` (0: none).
pub fn newest_snapshot_tid(records: &[(Blockref, PfsRecord)], id: u64) -> u64 {
    records
        .iter()
        .filter(|(_, r)| r.kind == PfsKind::Snapshot && r.origin == id)
        .map(|(_, r)| r.create_tid)
        .max()
        .unwrap_or(0)
}

/// For a clone, the create tid of the snapshot it was made from (0 for any other record).
pub fn clone_floor(records: &[(Blockref, PfsRecord)], rec: &PfsRecord) -> u64 {
    if rec.kind != PfsKind::Clone {
        return 0;
    }
    records.iter().find(|(_, r)| r.id == rec.origin).map_or(0, |(_, r)| r.create_tid)
}

/// Every record of the PFS table with its reference, by id. A record that does not read,
/// does not decode, or whose id is not its key makes the table unusable: an error naming it.
pub fn records(vol: &Volume, table: &Root, device_count: usize) -> Result<Vec<(Blockref, PfsRecord)>> {
    let mut leaves = Vec::new();
    tree::scan(vol, table, 0, &mut |br| {
        leaves.push(*br);
        Ok(ControlFlow::Continue(()))
    })?;
    let mut out = Vec::with_capacity(leaves.len());
    for br in leaves {
        if br.btype != BlockType::Pfs {
            return Err(Error::Corrupt(format!("a {} reference in the PFS table", br.btype.name())));
        }
        let bytes = vol.read_block(&br, &crate::copies::read::ReadCtx::meta())?;
        let rec = PfsRecord::decode_within(&bytes, device_count)
            .map_err(|e| Error::Corrupt(format!("the PFS record with id {}: {e}", br.key)))?;
        if rec.id != br.key {
            return Err(Error::Corrupt(format!("the PFS record under key {} says its id is {}", br.key, rec.id)));
        }
        if out.iter().any(|(_, r): &(Blockref, PfsRecord)| r.name == rec.name) {
            return Err(Error::Corrupt(format!("two PFS records are named {:?}", rec.name)));
        }
        out.push((br, rec));
    }
    Ok(out)
}

/// The referenced bytes (logical, physical: size on every valid copy) of the trees of an
/// inode index and an orphan list, every inode's tree included: what a PFS record counts
/// (the upgrade counts ROOT's once; commits keep the count after that).
pub fn referenced_bytes(vol: &Volume, inodes: &Root, orphans: &Root) -> Result<(u64, u64)> {
    let mut refs = Vec::new();
    for root in [inodes, orphans] {
        tree::for_each_ref(vol, root, &mut |br| {
            refs.push(*br);
            Ok(true)
        })?;
    }
    let (mut logical, mut physical) = (0u64, 0u64);
    let mut i = 0;
    while i < refs.len() {
        let br = refs[i];
        i += 1;
        let Some(p) = br.ptr() else { continue };
        logical += u64::from(p.size);
        physical += u64::from(p.size) * p.copies.iter().filter(|l| l.is_valid()).count() as u64;
        if br.btype == BlockType::Inode {
            let inode = vol.read_inode_block(&br, &crate::copies::read::ReadCtx::inode(br.key))?;
            if let hammer2_format::InodeContent::Tree { root_level, entries } = &inode.content {
                let (root_level, entries) = (*root_level, entries.clone());
                tree::for_each_ref(vol, &Root { level: root_level, entries }, &mut |c| {
                    refs.push(*c);
                    Ok(true)
                })?;
            }
        }
    }
    Ok((logical, physical))
}
