//! Describing a filesystem for `hammer2 info`: the space its device table leaves for data,
//! the copy slots each device holds, and, for a mounted one, its live state in the shape a
//! probe-and-assemble gives (so the front end shows both the same way).

use crate::Mounted;
use crate::copies::placement::{self, Placement};
use crate::devices::MemberState;
use crate::mount::Assembly;
use hammer2_format::DeviceEntry;
use hammer2_format::layout::{UNIT, region_bounds};
use std::sync::atomic::Ordering;

/// Total and free space as a device table tells it, in bytes of file data (one copy's
/// worth): what a user can still store, not raw device bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes of data a full filesystem holds.
    pub total: u64,
    /// Bytes of data that still fit with every block stored `copies` times.
    pub free: u64,
    /// Free bytes on all devices together, before copies are accounted for.
    pub raw_free: u64,
}

/// The space of a filesystem whose master header has the device table `devices`. Free
/// space follows the allocator's capacity rule ([`Placement::capacity`]); the table records
/// free units per device only, so a device holding several fixed slots has them shared
/// equally by its regions (every block puts one copy in each of them).
pub fn space(devices: &[DeviceEntry], copies: u8, free_placement: bool) -> Space {
    let copies = copies.max(1);
    let raw_free = devices.iter().map(|e| e.free_units).sum::<u64>() * UNIT;
    if devices.is_empty() {
        return Space { total: 0, free: 0, raw_free };
    }
    let p = Placement::with_free(devices.len(), copies, free_placement);
    let region_units = |e: &DeviceEntry, k: u8| {
        let (s, end) = region_bounds(e.size, e.regions, k);
        (end - s) / UNIT
    };
    let exists = |d: u8, r: u8| {
        devices.get(usize::from(d)).is_some_and(|e| r < e.regions && e.state != hammer2_format::DeviceState::Removed)
    };
    let total = if p.is_free() {
        p.capacity(|d, r| exists(d, r).then(|| region_units(&devices[usize::from(d)], r)))
    } else if p.fixed() {
        p.capacity(|d, r| Some(region_units(&devices[usize::from(d)], r)))
    } else {
        devices.iter().map(|e| region_units(e, 0)).sum::<u64>() / u64::from(copies)
    };
    let free = p.capacity(|d, r| {
        let e = &devices[usize::from(d)];
        if p.is_free() {
            return exists(d, r).then(|| e.free_units / u64::from(e.regions.max(1)));
        }
        Some(if p.fixed() { e.free_units / u64::from(e.regions.max(1)) } else { e.free_units })
    });
    Space { total: total * UNIT, free: free * UNIT, raw_free }
}

/// The copy slots device `device` holds for every block, each with its region, when slots
/// are fixed (at most as many devices as copies); None when any copy may land on it.
pub fn slots_on(device: usize, ndev: usize, copies: u8) -> Option<Vec<(usize, usize)>> {
    if !placement::slots_are_fixed(ndev, copies) {
        return None;
    }
    Some(
        (0..usize::from(copies))
            .map(|s| (s, placement::fixed_slot(s, ndev)))
            .filter(|(_, (d, _))| usize::from(*d) == device)
            .map(|(s, (_, r))| (s, usize::from(r)))
            .collect(),
    )
}

pub use crate::fs::inode_readahead::ReadAheadCounts;

/// A mounted filesystem's state for `info`.
pub struct Live {
    /// The committed state with the live device table (what the next header would say) and
    /// the members' runtime states.
    pub assembly: Assembly,
    /// (device index, last commit written to it) of every present member.
    pub header_tids: Vec<(usize, u64)>,
    /// Per device index: a resync is catching it up now.
    pub resyncing: Vec<bool>,
    /// Per device index: what the reconnect watcher knows of it.
    pub links: Vec<Link>,
    /// No device takes writes (R1): changes are refused until one is back.
    pub stalled: bool,
    /// File data as written and as stored (compression); None when the walk failed.
    pub data: Option<crate::usage::DataUsage>,
    /// The scrub or resync running now.
    pub scan: Option<crate::scan::Running>,
    /// How the last scrub of this mount ended.
    pub last_scrub: Option<crate::scan::LastScrub>,
    /// How the last resync, device remove or rebalance of this mount ended.
    pub last_operation: Option<crate::scan::Finished>,
    /// What the inode read-ahead did since mount.
    pub inode_readahead: ReadAheadCounts,
}

/// A member's reconnects while mounted (`rejoin`), for `info` on a mount.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Link {
    /// It failed and the reconnect watcher is trying to reopen it.
    pub reconnecting: bool,
    /// Times it was reopened and taken back while mounted.
    pub reconnects: u64,
    /// Reopen attempts that failed since it last failed.
    pub attempts: u64,
    /// Why it last failed, or why its last reopen was not taken.
    pub last_error: Option<String>,
    /// The operator took it out with `hammer2 device offline` and has not brought it back.
    pub offline: bool,
}

/// The live state of a mounted filesystem; `name` names it as the master (e.g. its
/// devices).
pub fn live(fs: &impl Mounted, name: String) -> Live {
    let fs = fs.engine().0;
    let members = fs.vol.devices.iter().collect::<Vec<_>>();
    let resync = crate::resync::running(fs);
    let assembly = Assembly {
        master: crate::commit::header::live_view(fs),
        master_name: name,
        members: members.iter().map(|m| (m.storage(), m.name(), m.state(), m.missed_since())).collect(),
        notes: Vec::new(),
        rolled_back: members
            .iter()
            .filter(|m| m.rolled_back() > 0 && m.state() == MemberState::Diverged)
            .map(|m| (usize::from(m.index), m.rolled_back()))
            .collect(),
        // Devices named at mount that did not answer: their members show as missing.
        warnings: fs
            .mount_warnings
            .iter()
            .cloned()
            .chain(crate::rejoin::awaited::statuses(fs).into_iter().map(|a| {
                format!(
                    "waiting for {} to answer: it joins the mount when it does ({} attempt(s) so far; last error: {})",
                    a.name, a.attempts, a.last_error
                )
            }))
            .collect(),
    };
    let scans = crate::scan::snapshot(fs);
    Live {
        stalled: fs.stalled.load(Ordering::SeqCst),
        data: crate::usage::data_usage(fs).ok(),
        scan: scans.running,
        last_scrub: scans.last_scrub,
        last_operation: scans.last_other,
        inode_readahead: fs.inode_ahead.counts(),
        assembly,
        header_tids: members
            .iter()
            .filter(|m| m.has_storage())
            .map(|m| (usize::from(m.index), m.synced_tid()))
            .collect(),
        resyncing: members
            .iter()
            .map(|m| resync && matches!(m.state(), MemberState::Stale | MemberState::Diverged))
            .collect(),
        links: members
            .iter()
            .map(|m| Link {
                reconnecting: crate::rejoin::reconnecting(fs, m),
                reconnects: m.reconnect.reconnects.load(Ordering::Relaxed),
                attempts: m.reconnect.attempts.load(Ordering::Relaxed),
                last_error: m.reconnect.last_error.lock().clone(),
                offline: m.reconnect.offlined.load(Ordering::SeqCst) && m.state() == MemberState::Failed,
            })
            .collect(),
    }
}

/// The overall state of a filesystem, in the words of `zpool status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Health {
    /// Every device online and in sync.
    Online,
    /// Some device is not (missing, failed, stale, diverged, being resynced), but every
    /// block still has a copy on a device in service.
    Degraded,
    /// As many devices failed or missing as a block has copies: some blocks may have no
    /// copy left, or no device takes writes.
    Faulted,
}

impl Health {
    pub fn name(self) -> &'static str {
        match self {
            Health::Online => "ONLINE",
            Health::Degraded => "DEGRADED",
            Health::Faulted => "FAULTED",
        }
    }
}

/// What `status` needs to know of one member to judge the whole.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub name: String,
    pub state: MemberState,
    /// A resync is catching it up now.
    pub resyncing: bool,
    /// The reconnect watcher is retrying it.
    pub reconnecting: bool,
    /// The operator took it out (`hammer2 device offline`).
    pub offline: bool,
    /// Its read, write or check error counters are not zero.
    pub errors: bool,
}

/// The overall state and what the operator should do about it (`hammer2 status`), the one
/// place that decides it. `target` names the filesystem in the commands it suggests (a
/// mount point, or the devices); `mounted` says whether device commands apply. A block's
/// copies lie on `copies` different devices, so only that many devices out of service can
/// leave a block without any copy.
pub fn health(members: &[MemberView], copies: u8, stalled: bool, mounted: bool, target: &str) -> (Health, Vec<String>) {
    let out = |m: &&MemberView| matches!(m.state, MemberState::Failed | MemberState::Absent);
    let gone: Vec<&MemberView> = members.iter().filter(out).collect();
    let behind: Vec<&MemberView> =
        members.iter().filter(|m| matches!(m.state, MemberState::Stale | MemberState::Diverged)).collect();
    let health = if stalled || gone.len() >= usize::from(copies.max(1)) || gone.len() == members.len() {
        Health::Faulted
    } else if gone.is_empty() && behind.is_empty() {
        Health::Online
    } else {
        Health::Degraded
    };
    let names = |v: &[&MemberView]| v.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ");
    let mut actions = Vec::new();
    let (offline, gone_else): (Vec<&MemberView>, Vec<&MemberView>) = gone.iter().partition(|m| m.offline);
    if !offline.is_empty() {
        actions.push(format!(
            "{} taken offline by the operator: bring it back with 'hammer2 device online {target} DEVICE'",
            names(&offline)
        ));
    }
    let (retrying, lost): (Vec<&MemberView>, Vec<&MemberView>) = gone_else.iter().partition(|m| m.reconnecting);
    if !retrying.is_empty() {
        actions.push(format!(
            "the reconnect watcher is retrying {}; wait, or fix the device or its server",
            names(&retrying)
        ));
    }
    if !lost.is_empty() {
        actions.push(if mounted {
            format!("replace or bring back {} with 'hammer2 device online {target} DEVICE'", names(&lost))
        } else {
            format!("give every device of the filesystem, or replace {} and run 'hammer2 resync'", names(&lost))
        });
    }
    let (catching_up, waiting): (Vec<&MemberView>, Vec<&MemberView>) = behind.iter().partition(|m| m.resyncing);
    if !catching_up.is_empty() {
        actions.push(format!("wait for the resync of {} to complete", names(&catching_up)));
    }
    if !waiting.is_empty() {
        actions.push(format!("run 'hammer2 resync {target}' to bring {} up to date", names(&waiting)));
    }
    let erring: Vec<&MemberView> = members.iter().filter(|m| m.errors && !out(m)).collect();
    if !erring.is_empty() && mounted {
        actions.push(format!(
            "errors were counted on {}: run 'hammer2 scrub {target}', replace the device if they grow, \
             and reset the counters with 'hammer2 clear {target}'",
            names(&erring)
        ));
    }
    if stalled {
        actions.push("no device takes writes: bring one back with 'hammer2 device online', then resync".into());
    }
    (health, actions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copies::placement::spread_capacity;

    fn entry(size: u64, free_units: u64, regions: u8) -> DeviceEntry {
        DeviceEntry::new([0; 16], size, regions, free_units)
    }

    #[test]
    fn space_follows_the_capacity_rule_for_fixed_slots_and_for_spread_copies() {
        let mib = 1 << 20;
        let unit_of = |bytes: u64| bytes / UNIT;
        // One device, two copies in two regions: its free units are shared by both.
        let one = [entry(256 * mib, 1000, 2)];
        let (s, e) = region_bounds(256 * mib, 2, 0);
        assert_eq!(
            space(&one, 2, false),
            Space { total: (e - s) / UNIT * UNIT, free: 500 * UNIT, raw_free: 1000 * UNIT }
        );
        // Two devices, two copies: the fuller device decides.
        let two = [entry(256 * mib, 700, 1), entry(128 * mib, 300, 1)];
        let sp = space(&two, 2, false);
        assert_eq!((unit_of(sp.free), unit_of(sp.raw_free)), (300, 1000));
        let (s, e) = region_bounds(128 * mib, 1, 0);
        assert_eq!(sp.total, (e - s) / UNIT * UNIT);
        // Three devices, two copies: spread by free space, total is the raw size over copies.
        let three = [entry(128 * mib, 100, 1), entry(128 * mib, 5, 1), entry(128 * mib, 5, 1)];
        let sp = space(&three, 2, false);
        assert_eq!(unit_of(sp.free), 10, "one device cannot hold both copies of a block");
        let (s, e) = region_bounds(128 * mib, 1, 0);
        assert_eq!(sp.total, 3 * ((e - s) / UNIT) / 2 * UNIT);
        assert_eq!(slots_on(0, 2, 3), Some(vec![(0, 0), (2, 1)]));
        assert_eq!(slots_on(1, 2, 3), Some(vec![(1, 0)]));
        assert_eq!(slots_on(0, 3, 2), None);
    }

    #[test]
    fn spread_capacity_is_limited_by_the_devices_that_must_differ() {
        // Two copies over three devices: 10 units per device give 15 units of data.
        assert_eq!(spread_capacity(&[10, 10, 10], 2), 15);
        // One huge device cannot hold both copies of a block.
        assert_eq!(spread_capacity(&[100, 5, 5], 2), 10);
        assert_eq!(spread_capacity(&[0, 0, 0], 2), 0);
    }

    fn view(state: MemberState) -> super::MemberView {
        super::MemberView {
            name: format!("{state:?}"),
            state,
            resyncing: false,
            reconnecting: false,
            offline: false,
            errors: false,
        }
    }

    #[test]
    fn health_is_faulted_only_when_as_many_devices_are_out_as_a_block_has_copies() {
        use super::{Health, health};
        use MemberState::*;
        let h = |states: &[MemberState], copies| {
            health(&states.iter().map(|s| view(*s)).collect::<Vec<_>>(), copies, false, true, "/mnt").0
        };
        assert_eq!(h(&[Online, Online], 2), Health::Online);
        assert_eq!(h(&[Online, Absent], 2), Health::Degraded);
        assert_eq!(h(&[Online, Stale], 2), Health::Degraded);
        assert_eq!(h(&[Online, Diverged], 2), Health::Degraded);
        assert_eq!(h(&[Failed, Absent], 2), Health::Faulted);
        assert_eq!(h(&[Online, Online, Failed], 2), Health::Degraded);
        assert_eq!(h(&[Online, Failed, Failed], 2), Health::Faulted);
        assert_eq!(h(&[Online, Absent], 1), Health::Faulted);
        assert_eq!(health(&[view(Online)], 1, true, true, "/mnt").0, Health::Faulted);
    }

    #[test]
    fn every_state_that_needs_the_operator_gets_an_action_naming_the_command() {
        use super::health;
        let mut stale = view(MemberState::Stale);
        let (_, a) = health(&[view(MemberState::Online), stale.clone()], 2, false, true, "/mnt");
        assert_eq!(a, ["run 'hammer2 resync /mnt' to bring Stale up to date"]);
        stale.resyncing = true;
        let (_, a) = health(&[view(MemberState::Online), stale], 2, false, true, "/mnt");
        assert_eq!(a, ["wait for the resync of Stale to complete"]);
        let (_, a) = health(&[view(MemberState::Online), view(MemberState::Failed)], 2, false, true, "/mnt");
        assert_eq!(a, ["replace or bring back Failed with 'hammer2 device online /mnt DEVICE'"]);
        let mut erring = view(MemberState::Online);
        erring.errors = true;
        let (_, a) = health(&[erring], 1, false, true, "/mnt");
        assert!(a[0].contains("'hammer2 clear /mnt'"), "{a:?}");
        assert!(health(&[view(MemberState::Online)], 1, false, true, "/mnt").1.is_empty());
    }
}
