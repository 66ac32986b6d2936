//! Every volume header slot of every device, and the choice of the master (through the
//! engine's own `mount::probe`/`assemble`, so fsck judges the filesystem exactly as a
//! mount would see it).
//!
//! A slot is fine when it is unwritten (all zero: mkfs clears every slot, a commit writes
//! slot `tid % 4`) or holds a valid header of this filesystem. Anything else is damaged: a
//! torn write, media damage, or leftovers of something else. A damaged slot never hides
//! data (the newest valid slot wins), so the repair clears it.

use crate::FsckError;
use crate::report::{Findings, Problem};
use hammer2::inspect::{Assembly, MemberState, Probe, assemble, detect_signature, probe};
use hammer2::storage::DynStorage;
use hammer2_format::VolumeHeader;
use hammer2_format::layout::{HEADER_SIZE, HEADER_SLOTS, header_offset};

/// One slot as found.
#[derive(Debug, Clone)]
pub enum Slot {
    Empty,
    Valid(u64, [u8; 16]),
    Damaged(String),
}

/// What one device's slots hold.
pub struct DeviceSlots {
    pub name: String,
    pub slots: Vec<Slot>,
}

/// Reads the four slots of a device.
pub fn read_slots(s: &DynStorage) -> DeviceSlots {
    let mut slots = Vec::with_capacity(HEADER_SLOTS);
    for slot in 0..HEADER_SLOTS {
        let off = header_offset(slot);
        let mut buf = vec![0u8; HEADER_SIZE];
        let r = if off + HEADER_SIZE as u64 > s.size() {
            Slot::Damaged("beyond the end of the device".into())
        } else {
            match s.read_at(&mut buf, off) {
                Err(e) => Slot::Damaged(format!("read error: {e}")),
                Ok(()) if buf.iter().all(|&b| b == 0) => Slot::Empty,
                Ok(()) => match VolumeHeader::decode(&buf) {
                    Ok(h) if usize::from(h.slot) != slot => {
                        Slot::Damaged(format!("the header claims slot {} but sits in slot {slot}", h.slot))
                    }
                    Ok(h) if h.device_size > s.size() => Slot::Damaged(format!(
                        "the header says the device has {} bytes, it has {}",
                        h.device_size,
                        s.size()
                    )),
                    Ok(h) => Slot::Valid(h.tid, h.fs_uuid),
                    Err(e) => Slot::Damaged(e.to_string()),
                },
            }
        };
        slots.push(r);
    }
    DeviceSlots { name: s.name(), slots }
}

/// The master and member states, or why the devices do not make a filesystem.
pub fn assemble_devices(storages: &[DynStorage]) -> Result<(Assembly, Vec<DeviceSlots>), FsckError> {
    let slots: Vec<DeviceSlots> = storages.iter().map(read_slots).collect();
    let probes: Vec<Probe> = storages.iter().cloned().map(probe).collect();
    if probes.iter().all(|p| p.header.is_none()) {
        let what: Vec<String> = storages
            .iter()
            .zip(&slots)
            .map(|(s, ds)| {
                let holds = match detect_signature(s.as_ref()).as_deref() {
                    Some("hammer2") => {
                        let bad: Vec<String> = ds
                            .slots
                            .iter()
                            .enumerate()
                            .filter_map(|(i, x)| match x {
                                Slot::Damaged(why) => Some(format!("slot {i}: {why}")),
                                _ => None,
                            })
                            .collect();
                        format!("only damaged hammer2 volume headers ({})", bad.join("; "))
                    }
                    Some(sig) => format!("{sig}, not hammer2"),
                    None if s.size() < hammer2_format::layout::MIN_DEVICE_BYTES => {
                        format!("no hammer2 filesystem (only {} bytes)", s.size())
                    }
                    None => "no hammer2 filesystem".to_string(),
                };
                format!("{} holds {holds}", s.name())
            })
            .collect();
        return Err(FsckError::NotHammer2(what.join("; ")));
    }
    let opts = hammer2::Options { degraded: true, background_sync: false, read_only: true, ..Default::default() };
    let asm = assemble(probes, &opts).map_err(|e| FsckError::Assemble(e.to_string()))?;
    Ok((asm, slots))
}

/// Slot findings for every device that is a member. Returns the (device, slot) pairs a
/// repair should clear, with their finding.
pub fn check_slots(
    asm: &Assembly,
    slots: &[DeviceSlots],
    headerless: &[Headerless],
    findings: &mut Findings,
) -> Vec<(String, usize, crate::report::FindingId)> {
    let mut clear = Vec::new();
    for ds in slots {
        let member = asm.members.iter().any(|(_, name, _, _)| *name == ds.name);
        if let Some(h) = headerless.iter().find(|h| h.name == ds.name) {
            let why = format!("every volume header slot is damaged; by its uuid it is device {}", h.index);
            findings.add(Problem::DeviceUnrecognized { device: ds.name.clone(), why });
            continue;
        }
        if !member {
            let why = ds
                .slots
                .iter()
                .find_map(|s| match s {
                    Slot::Valid(_, uuid) if *uuid != asm.master.fs_uuid => Some("it belongs to another filesystem"),
                    _ => None,
                })
                .unwrap_or("it holds no valid volume header");
            findings.add(Problem::DeviceUnrecognized { device: ds.name.clone(), why: why.into() });
            continue;
        }
        for (i, s) in ds.slots.iter().enumerate() {
            let why = match s {
                Slot::Damaged(why) => why.clone(),
                Slot::Valid(_, uuid) if *uuid != asm.master.fs_uuid => "a header of another filesystem".into(),
                _ => continue,
            };
            let id = findings.add(Problem::HeaderSlotDamaged { device: ds.name.clone(), slot: i, why });
            clear.push((ds.name.clone(), i, id));
        }
    }
    clear
}

/// Members whose newest header is the commit before the master's although the master's
/// table says they received the master's commit: the headers of that commit were being
/// written when the system stopped (or their newest slot was damaged since). DESIGN §8: the
/// commit's blocks reached every device before any header, so this is a normal state,
/// reported as a note; `-y` writes the current header to them. A member further behind was
/// rolled back and is assembled as diverged (`mount::rolled_back`), not listed here.
pub fn behind(asm: &Assembly, slots: &[DeviceSlots], notes: &mut Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (_, name, state, _)) in asm.members.iter().enumerate() {
        if *state != MemberState::Online {
            continue;
        }
        let Some(ds) = slots.iter().find(|d| d.name == *name) else { continue };
        let newest = ds
            .slots
            .iter()
            .filter_map(|s| match s {
                Slot::Valid(t, u) if *u == asm.master.fs_uuid => Some(*t),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let synced = asm.master.devices.get(i).map_or(0, |e| e.synced_tid);
        if newest < asm.master.tid && synced >= asm.master.tid {
            notes.push(format!(
                "{name}: its newest volume header is commit {newest}, the master's is {}: the system stopped \
                 between two devices' header writes (or that slot was damaged); the commit's blocks are on it, \
                 and the next commit writes its header",
                asm.master.tid
            ));
            out.push(name.clone());
        }
    }
    out
}

/// A device given on the command line whose every header slot is damaged, but whose
/// damaged headers still name it: this filesystem's uuid and the uuid of a member the
/// master's device table has (and that is otherwise missing).
pub struct Headerless {
    pub storage: DynStorage,
    pub name: String,
    pub index: usize,
}

pub fn headerless(asm: &Assembly, storages: &[DynStorage], slots: &[DeviceSlots]) -> Vec<Headerless> {
    let mut out: Vec<Headerless> = Vec::new();
    for (s, ds) in storages.iter().zip(slots) {
        if ds.slots.iter().any(|x| matches!(x, Slot::Valid(..))) {
            continue;
        }
        for slot in 0..HEADER_SLOTS {
            let mut buf = vec![0u8; HEADER_SIZE];
            if header_offset(slot) + HEADER_SIZE as u64 > s.size() || s.read_at(&mut buf, header_offset(slot)).is_err()
            {
                continue;
            }
            let Some(raw) = VolumeHeader::raw_identity(&buf).filter(|raw| raw.fs_uuid == asm.master.fs_uuid) else {
                continue;
            };
            let found = asm.master.devices.iter().enumerate().find(|(i, e)| {
                e.uuid == raw.device_uuid
                    && asm.members.get(*i).is_some_and(|m| m.2 == MemberState::Absent)
                    && s.size() >= e.size
            });
            if let Some((index, _)) = found
                && !out.iter().any(|h| h.index == index)
            {
                out.push(Headerless { storage: s.clone(), name: ds.name.clone(), index });
                break;
            }
        }
    }
    out
}
