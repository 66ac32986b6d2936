//! Opening a filesystem: read every header slot of every device, choose the master root,
//! recognize stale, missing and diverged devices, and load the free map.
//!
//! Master selection (the seed's root-block rule): every device's newest valid header holds
//! that device's view of the root. The master is the newest view whose tree validates. A
//! device whose header is older is *behind*; it is only *diverged* when it holds commits
//! the master does not know about (its tid is newer than what the master's device table
//! says it last had) while the master also holds commits it does not know about: both
//! were written apart. Mount then refuses unless the operator names the master. A device
//! whose newest header is older than the commit before the one the master says it received
//! was *rolled back* to an older copy of itself (DESIGN §8): it is verified like a diverged
//! one.

use crate::alloc::Allocator;
use crate::alloc::space::Space;
use crate::cache::BlockCache;
use crate::devices::{DeviceSet, Member, MemberState};
use crate::error::{Error, Result};
use crate::fs::{FsInner, Options, Roots};
use crate::storage::DynStorage;
use crate::volume::{Params, Volume};
use hammer2_format::layout::{HEADER_SIZE, HEADER_SLOTS, header_offset};
use hammer2_format::{DeviceState, VolumeHeader};

/// What one device's header slots say.
pub struct Probe {
    pub storage: DynStorage,
    pub name: String,
    /// The newest valid slot.
    pub header: Option<VolumeHeader>,
    /// Every slot: its header or why it is not valid.
    pub slots: Vec<std::result::Result<VolumeHeader, String>>,
    /// Per slot: it is not valid and not unwritten (all zero) either, i.e. damaged or torn.
    /// With the magic intact, the tid its damaged header claims.
    pub damaged: Vec<Option<Option<u64>>>,
}

impl Probe {
    pub fn tid(&self) -> u64 {
        self.header.as_ref().map_or(0, |h| h.tid)
    }
}

pub fn probe(storage: DynStorage) -> Probe {
    let name = storage.name();
    let mut slots = Vec::with_capacity(HEADER_SLOTS);
    let mut damaged = Vec::with_capacity(HEADER_SLOTS);
    for slot in 0..HEADER_SLOTS {
        let off = header_offset(slot);
        let mut buf = vec![0u8; HEADER_SIZE];
        let r = if off + HEADER_SIZE as u64 > storage.size() {
            Err("beyond the end of the device".to_string())
        } else {
            match storage.read_at(&mut buf, off) {
                Err(e) => Err(format!("read error: {e}")),
                Ok(()) => VolumeHeader::decode(&buf).map_err(|e| e.to_string()).and_then(|h| {
                    if usize::from(h.slot) != slot {
                        Err(format!("header claims slot {} but sits in slot {slot}", h.slot))
                    } else if h.device_size > storage.size() {
                        Err(format!("header says the device has {} bytes but it has {}", h.device_size, storage.size()))
                    } else {
                        Ok(h)
                    }
                }),
            }
        };
        damaged.push(match &r {
            Ok(_) => None,
            Err(_) if buf.iter().all(|&b| b == 0) => None,
            Err(_) if VolumeHeader::has_magic(&buf) => Some(VolumeHeader::raw_identity(&buf).map(|raw| raw.tid)),
            Err(_) => Some(None),
        });
        slots.push(r);
    }
    let header = slots.iter().filter_map(|s| s.as_ref().ok()).max_by_key(|h| h.tid).cloned();
    Probe { storage, name, header, slots, damaged }
}

/// How the devices relate, before anything is loaded.
pub struct Assembly {
    pub master: VolumeHeader,
    pub master_name: String,
    /// Per device index: (storage, name, state).
    pub members: Vec<(Option<DynStorage>, String, MemberState, u64)>,
    /// What a mount logs about the members' states.
    pub notes: Vec<String>,
    /// Members found rolled back to an older copy of themselves (DESIGN §8): (index, tid of
    /// their newest header). Their state is `Diverged`.
    pub rolled_back: Vec<(usize, u64)>,
    /// What every front end shows besides the members' states (a mount logs it, `info` and
    /// fsck print it): that the newest commit's header was found damaged everywhere.
    pub warnings: Vec<String>,
}

/// DESIGN §8, "rolled back": a device whose newest header is older than the commit before
/// `synced_tid` (the last commit the master wrote, or was writing, to it) lost headers it
/// had durably acknowledged, and with them possibly blocks of those commits. Lacking only
/// the newest one is a crash between two devices' header writes (commits are serialized
/// and each flushes every header before the next starts), or a damaged newest slot.
pub fn rolled_back(synced_tid: u64, header_tid: u64) -> bool {
    header_tid.saturating_add(1) < synced_tid
}

fn diverged(a: &VolumeHeader, b: &VolumeHeader) -> bool {
    let a_knows_b = a.devices.get(usize::from(b.device_index)).map_or(0, |e| e.synced_tid);
    let b_knows_a = b.devices.get(usize::from(a.device_index)).map_or(0, |e| e.synced_tid);
    a_knows_b < b.tid && b_knows_a < a.tid
}

pub fn assemble(probes: Vec<Probe>, opts: &Options) -> Result<Assembly> {
    if probes.is_empty() {
        return Err(Error::Mount("no device given".into()));
    }
    let mut notes = Vec::new();
    let newest = probes.iter().filter(|p| p.header.is_some()).max_by_key(|p| p.tid()).ok_or_else(|| {
        let names: Vec<_> = probes.iter().map(|p| p.name.clone()).collect();
        Error::Mount(format!("no valid hammer2 volume header on {}", names.join(", ")))
    })?;
    let fs_uuid = newest.header.as_ref().map(|h| h.fs_uuid).unwrap_or_default();
    let mut valid: Vec<&Probe> = Vec::new();
    let mut unknown: Vec<&Probe> = Vec::new();
    for p in &probes {
        match &p.header {
            Some(h) if h.fs_uuid == fs_uuid => valid.push(p),
            Some(_) => {
                return Err(Error::Mount(format!(
                    "{} belongs to a different hammer2 filesystem than {}",
                    p.name, newest.name
                )));
            }
            None => unknown.push(p),
        }
    }
    for (i, a) in valid.iter().enumerate() {
        for b in &valid[i + 1..] {
            let (ha, hb) = (a.header.as_ref().expect("valid"), b.header.as_ref().expect("valid"));
            if ha.device_index == hb.device_index {
                return Err(Error::Mount(format!(
                    "{} and {} are the same member (device {}) of the filesystem",
                    a.name, b.name, ha.device_index
                )));
            }
        }
    }
    for u in &unknown {
        if opts.replace {
            continue;
        }
        if !opts.degraded {
            return Err(Error::Mount(format!(
                "{} holds no valid hammer2 volume header; mount with -o degraded to run without it",
                u.name
            )));
        }
        notes.push(format!("{} holds no valid volume header: ignored", u.name));
    }

    // The master: named by the operator, or the newest that is not in conflict.
    let master: &Probe = match opts.master {
        Some(i) => {
            let p = probes.get(i).ok_or_else(|| {
                Error::Mount(format!("master= names device #{i}, but only {} were given", probes.len()))
            })?;
            if p.header.is_none() {
                return Err(Error::Mount(format!("the chosen master {} holds no valid volume header", p.name)));
            }
            p
        }
        None => {
            let m = valid.iter().max_by_key(|p| p.tid()).expect("at least one valid probe");
            let mh = m.header.as_ref().expect("valid");
            for o in &valid {
                let oh = o.header.as_ref().expect("valid");
                if oh.device_index != mh.device_index && diverged(mh, oh) {
                    return Err(Error::Mount(format!(
                        "devices diverged: {} (last commit {}) and {} (last commit {}) were each modified without the other; \
                         mount with -o master=<device> to keep one of them (the other's changes since commit {} are discarded)",
                        m.name,
                        mh.tid,
                        o.name,
                        oh.tid,
                        mh.devices.get(usize::from(oh.device_index)).map_or(0, |e| e.synced_tid)
                    )));
                }
            }
            m
        }
    };
    let mh = master.header.clone().expect("master has a header");

    let mut members = Vec::with_capacity(mh.devices.len());
    let mut rolled = Vec::new();
    let warnings = fell_back(&mh, &valid).into_iter().collect();
    let missing: Vec<usize> = (0..mh.devices.len())
        .filter(|&i| !valid.iter().any(|p| p.header.as_ref().is_some_and(|h| usize::from(h.device_index) == i)))
        .collect();
    let mut adopt = None;
    if opts.replace && !unknown.is_empty() {
        match (missing.as_slice(), unknown.as_slice()) {
            ([i], [u]) => {
                if let Some(sig) = crate::signatures::detect(u.storage.as_ref()).filter(|s| *s != "hammer2") {
                    return Err(Error::Mount(format!(
                        "{} holds a {sig} signature: refusing to use it as a replacement",
                        u.name
                    )));
                }
                if u.storage.size() < mh.devices[*i].size {
                    return Err(Error::Mount(format!(
                        "{} is smaller than the device it would replace ({} < {} bytes)",
                        u.name,
                        u.storage.size(),
                        mh.devices[*i].size
                    )));
                }
                notes.push(format!("{} replaces missing device {i}: every copy on it will be rewritten", u.name));
                adopt = Some((*i, *u));
            }
            _ => {
                return Err(Error::Mount(format!(
                    "{} device(s) without a valid header for {} missing member(s): give exactly one replacement for one missing device",
                    unknown.len(),
                    missing.len()
                )));
            }
        }
    }
    for (i, entry) in mh.devices.iter().enumerate() {
        if let Some((ai, u)) = adopt
            && ai == i
        {
            members.push((Some(u.storage.clone()), u.name.clone(), MemberState::Diverged, entry.synced_tid.max(1)));
            continue;
        }
        if entry.state == DeviceState::Removed {
            // No reference names it (FORMAT.md "Devices added and removed"): not needed,
            // and not used if given.
            members.push((None, "(removed)".to_string(), MemberState::Removed, 0));
            continue;
        }
        let found = valid.iter().find(|p| p.header.as_ref().is_some_and(|h| usize::from(h.device_index) == i));
        let Some(p) = found else {
            if !opts.degraded {
                return Err(Error::Mount(format!(
                    "device {i} of filesystem {} (uuid {}) is missing; mount with -o degraded to run without it",
                    uuid::Uuid::from_bytes(mh.fs_uuid),
                    uuid::Uuid::from_bytes(entry.uuid)
                )));
            }
            notes.push(format!("device {i} is missing: running degraded"));
            members.push((None, "(missing)".to_string(), MemberState::Absent, entry.missed_since));
            continue;
        };
        let ph = p.header.as_ref().expect("valid");
        if ph.device_uuid != entry.uuid {
            return Err(Error::Mount(format!(
                "{} claims to be device {i} but is not the device the filesystem knows there",
                p.name
            )));
        }
        let mut missed = entry.missed_since;
        let state = if ph.device_index == mh.device_index {
            match entry.state {
                DeviceState::Diverged => MemberState::Diverged,
                DeviceState::Stale => MemberState::Stale,
                // Joining (A1): the commit that added it is the master, so it is durable.
                _ => MemberState::Online,
            }
        } else if diverged(&mh, ph) || ph.tid > entry.synced_tid {
            // It holds a commit the master never wrote to it: it was written apart (with
            // `master=` naming the other side, that may be one-sided).
            notes.push(format!(
                "{} diverged from the master {}: its own changes are discarded; resync it",
                p.name, master.name
            ));
            MemberState::Diverged
        } else if rolled_back(entry.synced_tid, ph.tid) {
            // DESIGN §8: not stale, whose VALID copies are trusted: copies of the commits
            // it lost are recorded VALID and may be old bytes. Verified copy by copy.
            notes.push(format!(
                "{} was rolled back to an older copy of itself: its newest header is commit {}, but it received \
                 commit {} (a reverted snapshot, an old disk put back, a lost write cache); its copies are not \
                 trusted until hammer2 resync has verified every one of them",
                p.name, ph.tid, entry.synced_tid
            ));
            rolled.push((i, ph.tid));
            missed = if missed == 0 { ph.tid + 1 } else { missed.min(ph.tid + 1) };
            MemberState::Diverged
        } else {
            match entry.state {
                // A1: a device recorded joining holds no copy, and the commit that added
                // it is durable (it is the master's or older): it is online.
                DeviceState::Online | DeviceState::Joining if ph.tid >= entry.synced_tid => MemberState::Online,
                DeviceState::Online | DeviceState::Joining => {
                    // It missed commits the master believed it had: a crash while the
                    // headers were written. Its blocks were flushed before the headers.
                    MemberState::Online
                }
                DeviceState::Diverged => MemberState::Diverged,
                DeviceState::Stale | DeviceState::Failed | DeviceState::Removed => {
                    // (Removed entries never get here: handled before the lookup.)
                    if missed == 0 {
                        missed = ph.tid + 1;
                    }
                    notes.push(format!("{} is stale (missed commits since {missed}): run hammer2 resync", p.name));
                    MemberState::Stale
                }
            }
        };
        if state == MemberState::Diverged && missed == 0 {
            missed = entry.synced_tid.max(1);
        }
        members.push((Some(p.storage.clone()), p.name.clone(), state, missed));
    }
    Ok(Assembly { master: mh, master_name: master.name.clone(), members, notes, rolled_back: rolled, warnings })
}

/// A mount that opens commit T while the slot where commit T+1 goes is damaged on every
/// device (and no device holds T+1) fell back a commit: T+1's header was torn on every
/// device by a crash, or damaged since. Either way the operator is told: if T+1 had
/// completed, its changes are gone. A damaged slot whose intact magic names an older commit
/// is old damage, not a fallback.
fn fell_back(mh: &VolumeHeader, valid: &[&Probe]) -> Option<String> {
    let next = mh.tid + 1;
    let slot = (next % HEADER_SLOTS as u64) as usize;
    let all = !valid.is_empty()
        && valid.iter().all(|p| matches!(p.damaged.get(slot), Some(Some(claim)) if claim.is_none_or(|t| t >= next)));
    all.then(|| {
        format!(
            "header slot {slot}, where commit {next} would be, is damaged on every device: opened at commit {}, \
             the one before (if commit {next} had completed, its changes are lost)",
            mh.tid
        )
    })
}

/// Builds the volume an assembly describes.
pub fn volume(asm: &Assembly, opts: &Options) -> Volume {
    let mh = &asm.master;
    let members = asm
        .members
        .iter()
        .enumerate()
        .map(|(i, (storage, name, state, missed))| {
            let m = Member::new(i as u8, storage.clone(), &mh.devices[i], *state, name.clone());
            m.set_missed_since(*missed);
            if let Some((_, t)) = asm.rolled_back.iter().find(|(d, _)| *d == i) {
                m.set_rolled_back(*t);
            }
            // H1 (DESIGN §8): the slots of a member that diverged, was rolled back or is a
            // replacement hold no header of the master's history; they are cleared once the
            // first header of this mount is durable on it.
            m.set_foreign_slots(*state == MemberState::Diverged && i != usize::from(mh.device_index));
            m
        })
        .collect();
    Volume {
        params: Params {
            fs_uuid: mh.fs_uuid,
            label: mh.label.clone(),
            copies: mh.copies,
            check: mh.check,
            data_block_shift: mh.data_block_shift,
            indirect_block_shift: mh.indirect_block_shift,
            mkfs_time_ns: mh.mkfs_time_ns,
        },
        devices: DeviceSet::new(members),
        cache: BlockCache::new(opts.cache_bytes),
        free_placement: mh.has_feature(hammer2_format::layout::feature::FREE_PLACEMENT).into(),
        read_only: opts.read_only,
    }
}

/// Opens a filesystem on `storages` (in any order).
pub fn open(storages: Vec<DynStorage>, opts: Options) -> Result<FsInner> {
    let probes: Vec<Probe> = storages.into_iter().map(probe).collect();
    let asm = assemble(probes, &opts)?;
    for n in asm.notes.iter().chain(&asm.warnings) {
        tracing::warn!("{n}");
    }
    let vol = volume(&asm, &opts);
    let mh = &asm.master;
    // Version 1 or 2 (the PFS table): decided here, once (`pfs.rs`).
    let (roots, next_inum) = crate::pfs::load(&vol, mh, &opts.pfs).map_err(|e| match e {
        Error::Mount(m) => Error::Mount(m),
        e => Error::Mount(format!(
            "the PFS table of the master ({}, commit {}) does not validate: {e}",
            asm.master_name, mh.tid
        )),
    })?;
    if opts.compression.is_some() && roots.pfs.is_none() {
        return Err(Error::FormatVersion1);
    }
    for (what, r) in [("inode", &roots.inodes), ("free-map", &roots.freemap), ("orphan", &roots.orphans)] {
        if let Some(br) = r.entries.first() {
            vol.read_node(br).map_err(|e| {
                Error::Mount(format!(
                    "the {what} tree of the master ({}, commit {}) does not validate: {e}",
                    asm.master_name, mh.tid
                ))
            })?;
        }
    }
    if roots.inodes.is_empty() || roots.freemap.is_empty() {
        return Err(Error::Mount(format!("{}: the volume header has no inode tree or free map", asm.master_name)));
    }
    check_freemap_memory(&vol)?;
    let spaces = match crate::alloc::freemap::load(&vol, &roots.freemap) {
        Ok(spaces) => spaces,
        // A read-only mount never allocates: it can do without the free map.
        Err(e) if opts.read_only => {
            tracing::warn!("the free map cannot be read ({e}); mounting read-only without it");
            vol.devices.iter().map(|m| crate::alloc::DeviceSpace::unusable(m.size, m.regions)).collect()
        }
        Err(e) => {
            return Err(Error::Mount(format!(
                "the free map cannot be read ({e}): run fsck.hammer2 -y to rebuild it, or mount with -o ro"
            )));
        }
    };
    let alloc = Allocator::new(spaces);
    let mut fs = FsInner::new(vol, alloc, roots, next_inum, opts);
    fs.mount_warnings = asm.warnings;
    Ok(fs)
}

/// The in-memory free map costs 2 bits per 4 KiB of every device (allocated, pending). A
/// header whose device table claims devices far larger than this machine could track (only
/// damage does that: the sizes of present devices are checked against the devices) is
/// refused instead of exhausting memory.
fn check_freemap_memory(vol: &Volume) -> Result<()> {
    let need: u64 = vol.devices.iter().map(|m| m.size / hammer2_format::UNIT / 4).sum();
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(u64::MAX, |kib| kib * 1024);
    if need > total / 2 {
        return Err(Error::Mount(format!(
            "the device table claims {} TiB of devices, whose free map would need {} MiB of memory: the header is damaged or this machine is too small",
            vol.devices.iter().map(|m| m.size).sum::<u64>() >> 40,
            need >> 20
        )));
    }
    Ok(())
}

/// Space kept back for the metadata every commit writes beyond what operations reserve
/// (§10, S3): the copy-on-write of tree paths and every free-map leaf (with the nodes
/// above them). 1/64 of the capacity within [1, 64] MiB, but never less than 32 slots plus
/// a slot per free-map leaf and node (each such block takes a slot), nor more than a
/// quarter of the capacity; a whole number of slots.
pub fn meta_reserve_units(total_units: u64, slot: u64, freemap_leaves: u64) -> u64 {
    let floor = (32 + 2 * freemap_leaves + 4) * slot;
    let units = (total_units / 64).clamp(256, 16384).max(floor).min(total_units / 4);
    units.div_ceil(slot) * slot
}

impl FsInner {
    pub fn new(vol: Volume, mut alloc: Allocator, roots: Roots, next_inum: u64, opts: Options) -> FsInner {
        let slot = vol.params.slot_units();
        alloc.set_slot(slot);
        let capacity = vol.placement().capacity_units(&alloc, &vol.devices);
        let free = vol.placement().free_units(&alloc, &vol.devices);
        let total = vol.placement_total_units();
        let leaves: u64 = vol.devices.iter().map(|m| u64::from(hammer2_format::freemap::leaves_for(m.size))).sum();
        FsInner {
            inode_ahead: Default::default(),
            space: Space::new(
                capacity,
                free,
                meta_reserve_units(total, slot, leaves),
                slot,
                vol.params.data_block_units(),
            ),
            alloc: parking_lot::Mutex::new(alloc),
            roots: parking_lot::RwLock::new(roots.clone()),
            inodes: Default::default(),
            gate: parking_lot::RwLock::new(()),
            dirty: parking_lot::Mutex::new(Default::default()),
            next_inum: std::sync::atomic::AtomicU64::new(next_inum),
            commit_lock: parking_lot::Mutex::new(()),
            committed_tid: parking_lot::Mutex::new(roots.tid),
            commit_cv: parking_lot::Condvar::new(),
            commit_wanted: Default::default(),
            dirty_bytes: Default::default(),
            dirty_inodes: Default::default(),
            opts,
            rename_lock: parking_lot::Mutex::new(()),
            broken: Default::default(),
            stalled: Default::default(),
            remounted_ro: Default::default(),
            scrubbing: Default::default(),
            scrub_control: Default::default(),
            resync_control: Default::default(),
            scans: Default::default(),
            stopping: Default::default(),
            stats: Default::default(),
            commit_hook: Default::default(),
            stale_orphans: Default::default(),
            dropped_blocks: Default::default(),
            mount_warnings: Vec::new(),
            rejoin: Default::default(),
            devchange: Default::default(),
            snapviews: Default::default(),
            vol,
        }
    }
}

impl Volume {
    /// Total units a full filesystem could hold (one copy's worth).
    pub fn placement_total_units(&self) -> u64 {
        let n = usize::from(self.params.copies);
        let ndev = self.devices.len();
        let units = |d: usize, regions: u8, k: u8| {
            let (s, e) = hammer2_format::layout::region_bounds(self.devices[d].size, regions, k);
            (e - s) / hammer2_format::UNIT
        };
        if self.free_placement.load(std::sync::atomic::Ordering::SeqCst) {
            // FP1: N copies in N distinct domains (device, region) of any devices.
            return self.placement().capacity(|d, r| {
                let m = self.devices.get(d)?;
                (r < m.regions && m.state() != MemberState::Removed).then(|| units(usize::from(d), m.regions, r))
            });
        }
        if ndev <= n {
            (0..n)
                .map(|i| {
                    let d = i % ndev;
                    units(d, self.devices[d].regions, (i / ndev) as u8)
                })
                .min()
                .unwrap_or(0)
        } else {
            (0..ndev).map(|d| units(d, 1, 0)).sum::<u64>() / n as u64
        }
    }
}
