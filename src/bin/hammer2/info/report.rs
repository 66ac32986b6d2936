//! Everything `hammer2 info` shows, gathered from the probed headers and the assembly, in
//! one serializable value (printed as text or as `--json`).

use hammer2::MemberState;
use hammer2::inspect::Assembly;
use hammer2_format::volume::FLAG_CLEAN;
use serde::Serialize;

#[derive(Serialize)]
pub struct Report {
    pub uuid: String,
    pub label: String,
    pub format_version: u32,
    pub copies: u8,
    pub check: &'static str,
    pub data_block_size: u64,
    pub indirect_block_size: u64,
    /// Transaction id of the last commit (the master's header).
    pub tid: u64,
    pub commit_time: String,
    pub commit_time_ns: u64,
    pub created: String,
    /// The last commit was written by a clean unmount.
    pub clean: bool,
    /// The device whose header was taken as the truth.
    pub master: String,
    /// Bytes of file data (one copy's worth), see `space`.
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// Free bytes on all devices together, before copies.
    pub raw_free_bytes: u64,
    pub devices: Vec<DeviceReport>,
    pub notes: Vec<String>,
    /// On a mount: the FUSE requests the daemon has served, per opcode (see
    /// `fuse/requests.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<std::collections::BTreeMap<&'static str, crate::fuse::requests::RequestCount>>,
    /// On a mount: windows of inodes read ahead and read on demand (DESIGN §12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode_readahead: Option<hammer2::info::ReadAheadCounts>,
    /// What new files are compressed with unless a file, directory or mount says
    /// otherwise (`none` on format version 1).
    pub compression: String,
    /// File data as written and as stored; None when the trees could not be read.
    pub data: Option<DataReport>,
    /// On a mount: the long operation running now (scrub, resync, device remove or
    /// rebalance) and how far it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<RunningReport>,
}

/// A long operation running on a mount, as `info` shows it.
#[derive(Serialize)]
pub struct RunningReport {
    pub kind: &'static str,
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// None until the total is known.
    pub percent: Option<f64>,
}

/// File data by size as written (logical) and as stored (physical), for compression.
#[derive(Serialize)]
pub struct DataReport {
    pub blocks: u64,
    pub compressed_blocks: u64,
    pub logical_bytes: u64,
    /// One copy of every block.
    pub stored_bytes: u64,
    /// Every copy of every block.
    pub physical_bytes: u64,
    /// logical_bytes / stored_bytes.
    pub ratio: f64,
    /// Blocks by their number of copies (per-file copies), the counts present only.
    pub by_copies: Vec<CopiesCount>,
}

#[derive(Serialize)]
pub struct CopiesCount {
    pub copies: u8,
    pub blocks: u64,
    /// One copy of each.
    pub stored_bytes: u64,
}

impl From<hammer2::usage::DataUsage> for DataReport {
    fn from(u: hammer2::usage::DataUsage) -> DataReport {
        DataReport {
            blocks: u.blocks,
            compressed_blocks: u.compressed_blocks,
            logical_bytes: u.logical_bytes,
            stored_bytes: u.stored_bytes,
            physical_bytes: u.physical_bytes,
            ratio: (u.ratio() * 100.0).round() / 100.0,
            by_copies: (1..=4u8)
                .zip(u.by_copies)
                .filter(|(_, (blocks, _))| *blocks > 0)
                .map(|(copies, (blocks, stored_bytes))| CopiesCount { copies, blocks, stored_bytes })
                .collect(),
        }
    }
}

#[derive(Serialize)]
pub struct DeviceReport {
    pub index: usize,
    /// None when the device was not given or not found.
    pub path: Option<String>,
    pub uuid: String,
    pub size: u64,
    pub regions: u8,
    pub role: Role,
    /// online, stale, diverged, rolled back (to an older copy of itself: DESIGN §8), failed
    /// or missing; on a mount also resyncing and reconnecting.
    pub state: &'static str,
    /// What the master's device table says about the device.
    pub recorded_state: &'static str,
    /// First commit the device missed (0: none).
    pub missed_since: u64,
    /// Commits the device is behind the master (0 when in sync).
    pub behind: u64,
    /// Transaction id of the device's own newest header (None when missing).
    pub header_tid: Option<u64>,
    /// The last commit the master's device table says was written to the device.
    pub received_tid: u64,
    pub free_bytes: u64,
    /// The device's error counters, named as in `status` and `scrub`.
    #[serde(flatten)]
    pub errors: Errors,
    /// On a mount: its reconnects while mounted and the last error (None offline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<hammer2::info::Link>,
}

#[derive(Serialize)]
pub struct Role {
    /// Copy slots this device holds for every block, with the region each lives in; empty
    /// when placement is by free space (more devices than copies).
    pub slots: Vec<SlotPlace>,
    /// True when any copy of a block may land on this device.
    pub any_slot: bool,
}

#[derive(Serialize)]
pub struct SlotPlace {
    pub slot: usize,
    pub region: usize,
}

#[derive(Serialize)]
pub struct Errors {
    #[serde(rename = "read_errors")]
    pub read: u32,
    #[serde(rename = "write_errors")]
    pub write: u32,
    #[serde(rename = "check_errors")]
    pub check: u32,
    pub repaired: u32,
}

/// Per probed device: (index in the filesystem, tid of its newest header), for devices that
/// belong to the assembled filesystem.
pub type HeaderTids = Vec<(usize, u64)>;

pub fn build(asm: &Assembly, tids: &HeaderTids) -> Report {
    let mh = &asm.master;
    let ndev = mh.devices.len();
    let free_placement = mh.has_feature(hammer2_format::layout::feature::FREE_PLACEMENT);
    let sp = hammer2::info::space(&mh.devices, mh.copies, free_placement);
    let devices: Vec<DeviceReport> = mh
        .devices
        .iter()
        .zip(&asm.members)
        .enumerate()
        .map(|(i, (e, (storage, name, state, missed)))| {
            let behind = if *missed == 0 { 0 } else { (mh.tid + 1).saturating_sub(*missed) };
            let header_tid = tids.iter().find(|(d, _)| *d == i).map(|(_, t)| *t);
            // Engine state Diverged, but the operator needs to know why (DESIGN §8).
            let rolled_back = asm.rolled_back.iter().find(|(d, _)| *d == i).map(|(_, t)| *t);
            let state = match rolled_back {
                Some(_) if *state == MemberState::Diverged => "rolled back",
                _ => state.name(),
            };
            // With free placement no slot is pinned (FP1): any copy may land on any device.
            let role = match hammer2::info::slots_on(i, ndev, mh.copies).filter(|_| !free_placement) {
                Some(slots) => Role {
                    slots: slots.into_iter().map(|(slot, region)| SlotPlace { slot, region }).collect(),
                    any_slot: false,
                },
                None => Role { slots: Vec::new(), any_slot: true },
            };
            DeviceReport {
                index: i,
                path: storage.as_ref().map(|_| name.clone()),
                uuid: uuid::Uuid::from_bytes(e.uuid).to_string(),
                size: e.size,
                regions: e.regions,
                role,
                state,
                recorded_state: e.state.name(),
                missed_since: *missed,
                behind,
                header_tid: rolled_back.or(header_tid),
                received_tid: e.synced_tid,
                free_bytes: e.free_units * hammer2_format::UNIT,
                errors: Errors {
                    read: e.read_errors,
                    write: e.write_errors,
                    check: e.check_errors,
                    repaired: e.repaired,
                },
                link: None,
            }
        })
        .collect();
    Report {
        uuid: uuid::Uuid::from_bytes(mh.fs_uuid).to_string(),
        label: mh.label.clone(),
        format_version: mh.version,
        copies: mh.copies,
        check: mh.check.name(),
        data_block_size: 1 << mh.data_block_shift,
        indirect_block_size: 1 << mh.indirect_block_shift,
        tid: mh.tid,
        commit_time: utc(mh.commit_time_ns),
        commit_time_ns: mh.commit_time_ns,
        created: utc(mh.mkfs_time_ns),
        clean: mh.flags & FLAG_CLEAN != 0,
        master: asm.master_name.clone(),
        total_bytes: sp.total,
        free_bytes: sp.free,
        raw_free_bytes: sp.raw_free,
        notes: asm.warnings.iter().cloned().chain(notes(&devices)).collect(),
        requests: None,
        inode_readahead: None,
        compression: hammer2::compression::name(hammer2::compression::from_header(
            mh.default_compression,
            mh.default_zstd_level,
        )),
        data: None,
        running: None,
        devices,
    }
}

/// What the operator should know about the devices, phrased for `info` (the assembly's own
/// notes speak of what a mount would do).
pub fn notes(devices: &[DeviceReport]) -> Vec<String> {
    let mut out = Vec::new();
    for d in devices {
        let name = d.path.as_deref().unwrap_or("(not given)");
        match d.state {
            "missing" => out.push(format!(
                "device {} (uuid {}) was not given: without it a mount needs -o degraded",
                d.index, d.uuid
            )),
            "stale" => out.push(format!(
                "device {} ({name}) missed {} commit(s) since commit {}: run hammer2 resync",
                d.index, d.behind, d.missed_since
            )),
            "rolled back" => out.push(format!(
                "device {} ({name}) was rolled back to an older copy of itself: its newest header is commit {}, \
                 but it received commit {}; its copies of the commits between may be old bytes: reads verify \
                 and repair them, and hammer2 resync verifies every copy on it",
                d.index,
                d.header_tid.unwrap_or(0),
                d.received_tid
            )),
            "diverged" => out.push(format!(
                "device {} ({name}) was changed apart from the master: its own changes will be discarded by a resync",
                d.index
            )),
            _ => {}
        }
    }
    out
}

/// `2025-11-21T13:40:02Z` (RFC 3339, UTC, whole seconds) from nanoseconds since the epoch:
/// the form every `--json` uses for a time, and readable as text. (A u64 of nanoseconds
/// ends in 2554, inside the years RFC 3339 can write.)
pub fn utc(ns: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns)).to_string()
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_dates_are_right_across_leap_years() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400 * 1_000_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_763_732_402 * 1_000_000_000), "2025-11-21T13:40:02Z");
        assert_eq!(utc(u64::MAX), "2554-07-21T23:34:33Z");
    }
}
