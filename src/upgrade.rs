//! The boundary between format versions 1 and 2 (FORMAT.md "Version 2", FORMAT-V2
//! "Upgrade from version 1"): `hammer2 upgrade`, and the one refusal every feature that
//! needs version 2 gives on a version-1 filesystem ([`require_feature`]).
//!
//! The upgrade is one ordinary commit on an offline, healthy filesystem: a PFS table with
//! one record, ROOT (id 1), naming the old inode index and orphan list and taking the
//! header's inode counter; the header becomes version 2 with `PFS_TABLE`. No data block
//! moves. A crash before the new header is durable leaves the version-1 slots, which still
//! name the complete version-1 tree (U1 in docs/DESIGN.md).

use crate::commit;
use crate::devices::MemberState;
use crate::error::{Error, Result};
use crate::fs::PfsRoots;
use crate::fs::{FsInner, Options};
use crate::mount::{assemble, probe};
use crate::storage::DynStorage;
use crate::tree::Root;
use hammer2_format::layout::{FORMAT_VERSION, ROOT_PFS_ID, ROOT_PFS_NAME, feature};
use hammer2_format::volume::FLAG_CLEAN;
use hammer2_format::{PfsRecord, VolumeHeader};

/// The zstd level a version-2 header names by default (zstd's own default).
pub const DEFAULT_ZSTD_LEVEL: u8 = 3;

/// Refuses `feature` (a `layout::feature` bit, e.g. `SHARED_BLOCKS` for snapshots) on a
/// filesystem whose committed header is version 1, with FORMAT-V2's one line.
pub fn require_feature(header: &VolumeHeader, feature: u64) -> Result<()> {
    let _ = feature;
    if header.version == FORMAT_VERSION { Err(Error::FormatVersion1) } else { Ok(()) }
}

/// The version-2 state a mkfs or an upgrade starts from: an empty PFS table, into which
/// the first commit puts ROOT's record (with the commit's trees and `next_inum`).
pub(crate) fn fresh_pfs(create_tid: u64, next_inum: u64) -> PfsRoots {
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    PfsRoots {
        table: Root::empty(),
        served: Some(PfsRecord::new(
            ROOT_PFS_ID,
            ROOT_PFS_NAME,
            *uuid::Uuid::new_v4().as_bytes(),
            create_tid,
            now_ns,
            next_inum,
        )),
        newest_snapshot_tid: 0,
        clone_floor: 0,
        features: feature::PFS_TABLE,
        default_compression: 0,
        default_zstd_level: DEFAULT_ZSTD_LEVEL,
    }
}

/// What [`upgrade`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum UpgradeOutcome {
    /// The commit that made the filesystem version 2.
    Upgraded { tid: u64 },
    /// Nothing to do: the filesystem already is version 2.
    AlreadyVersion2,
}

/// Upgrades the version-1 filesystem on `storages` (all its devices, opened exclusively by
/// the caller) to version 2 with `PFS_TABLE`. Refuses, before writing anything, a
/// filesystem with a missing, stale, diverged or rolled-back member, or a header slot from
/// another history: the upgrade's one commit must reach every device in sync.
pub fn upgrade(storages: Vec<DynStorage>) -> Result<UpgradeOutcome> {
    let opts = Options { background_sync: false, ..Options::default() };
    let probes: Vec<_> = storages.iter().cloned().map(probe).collect();
    // Every valid slot of every device must belong to the master's filesystem: a slot of
    // another history would survive the upgrade and could win a later mount.
    let fs_uuid = probes.iter().filter_map(|p| p.header.as_ref()).max_by_key(|h| h.tid).map(|h| h.fs_uuid);
    for p in &probes {
        if p.slots.iter().flatten().any(|h| Some(h.fs_uuid) != fs_uuid) {
            return Err(Error::Mount(format!("{} holds a header slot of another filesystem", p.name)));
        }
    }
    // The mount's refusal of a missing device names its way out (`-o degraded`); the
    // upgrade has none: it converts only a whole filesystem (U1).
    let asm = assemble(probes, &opts).map_err(|e| match e {
        Error::Mount(m) => Error::Mount(
            m.replace("mount with -o degraded to run without it", "the upgrade needs every device of the filesystem"),
        ),
        e => e,
    })?;
    let mh = &asm.master;
    if mh.version != FORMAT_VERSION {
        return Ok(UpgradeOutcome::AlreadyVersion2);
    }
    for (i, (_, name, state, _)) in asm.members.iter().enumerate() {
        if *state != MemberState::Online {
            return Err(Error::Mount(format!(
                "device {i} ({name}) is {}: run hammer2 resync before upgrading",
                state_word(*state)
            )));
        }
    }
    for (i, e) in mh.devices.iter().enumerate() {
        if e.missed_since != 0 {
            return Err(Error::Mount(format!(
                "device {i} missed commits since {}: run hammer2 resync before upgrading",
                e.missed_since
            )));
        }
    }
    if let Some(w) = asm.warnings.first() {
        return Err(Error::Mount(format!("{w}; mount and unmount it once before upgrading")));
    }
    let clean = mh.flags & FLAG_CLEAN != 0;
    let fs: FsInner = crate::mount::open(storages, opts)?;
    {
        let mut roots = fs.roots.write();
        let next_inum = fs.next_inum.load(std::sync::atomic::Ordering::SeqCst);
        let mut pfs = fresh_pfs(roots.tid + 1, next_inum);
        // ROOT's record counts the trees it takes over; commits keep the count.
        let (logical, physical) = crate::pfs::referenced_bytes(&fs.vol, &roots.inodes, &roots.orphans)?;
        if let Some(r) = pfs.served.as_mut() {
            r.referenced_logical = logical;
            r.referenced_physical = physical;
        }
        roots.pfs = Some(Box::new(pfs));
    }
    let r = commit::commit(&fs, true, clean)?;
    Ok(UpgradeOutcome::Upgraded { tid: r.tid })
}

fn state_word(s: MemberState) -> &'static str {
    match s {
        MemberState::Online => "online",
        MemberState::Stale => "stale",
        MemberState::Diverged => "diverged (or rolled back)",
        MemberState::Failed => "failed",
        MemberState::Absent => "missing",
        MemberState::Removed => "removed",
    }
}
