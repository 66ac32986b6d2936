//! `device add`: new devices join a mounted filesystem (A1 in docs/DESIGN.md).
//!
//! 1. Each new device is checked (not a member already, no other filesystem or signature
//!    on it, large enough) and its four header slots are zeroed, so it holds no header
//!    until the commit that adds it writes one.
//! 2. With the commit lock held, each becomes a member: a new index and uuid, one region,
//!    state online but *joining* (written by commits, given no copies), an all-free space
//!    whose free-map leaves the next commit writes. `FREE_PLACEMENT` is set in memory.
//! 3. A commit writes the new table (the devices `joining`, the feature bit) with the
//!    joining devices' headers durable before any other's (`commit/header.rs`). A crash
//!    before leaves the old filesystem, in which the new devices hold no header; a crash
//!    after leaves a master that lists them (mount takes `joining` as online).
//! 4. Once that commit is durable they stop joining; a second commit records them online.

use super::DeviceChangeError;
use crate::devices::{Member, MemberState};
use crate::fs::FsInner;
use crate::storage::DynStorage;
use hammer2_format::DeviceEntry;
use hammer2_format::layout::{HEADER_SIZE, HEADER_SLOTS, MAX_DEVICES, MIN_DEVICE_BYTES, UNIT, feature, header_offset};
use std::sync::atomic::Ordering;

/// One device [`add`] added.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AddedDevice {
    pub index: u8,
    pub name: String,
    /// Bytes it holds for the filesystem (its size rounded down to 4096).
    pub size: u64,
}

/// What [`add`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Added {
    pub devices: Vec<AddedDevice>,
    /// The commit that added them.
    pub tid: u64,
    /// Devices of the filesystem now.
    pub device_count: usize,
}

/// Adds `storages` to the mounted filesystem (see the module doc).
pub(crate) fn add(fs: &FsInner, storages: Vec<DynStorage>) -> Result<Added, DeviceChangeError> {
    if fs.vol.read_only || fs.remounted_ro.load(Ordering::SeqCst) {
        return Err(DeviceChangeError::ReadOnly);
    }
    if fs.roots.read().pfs.is_none() {
        return Err(crate::error::Error::FormatVersion1.into());
    }
    if storages.is_empty() {
        return Err(DeviceChangeError::NoDevice);
    }
    let _one = fs.devchange.claim().ok_or(DeviceChangeError::Busy)?;
    add_claimed(fs, storages)
}

/// [`add`] with the mount's device-change claim (DC1) held by the caller.
pub(super) fn add_claimed(fs: &FsInner, storages: Vec<DynStorage>) -> Result<Added, DeviceChangeError> {
    let have = fs.vol.devices.len();
    if have + storages.len() > MAX_DEVICES {
        return Err(DeviceChangeError::TableFull { have, adding: storages.len(), max: MAX_DEVICES });
    }
    for (i, st) in storages.iter().enumerate() {
        check(fs, st)?;
        let name = st.name();
        let canon = |n: &str| std::fs::canonicalize(n).unwrap_or_else(|_| n.into());
        if storages[..i].iter().any(|o| canon(&o.name()) == canon(&name)) {
            return Err(DeviceChangeError::Twice(name));
        }
    }
    for st in &storages {
        clear_header_slots(st).map_err(|e| crate::error::Error::DeviceIo { device: st.name(), source: e })?;
    }
    let mut added = Vec::with_capacity(storages.len());
    {
        // O1: the set changes between commits.
        let _no_commit = fs.commit_lock.lock();
        if fs.stalled.load(Ordering::SeqCst) {
            return Err(DeviceChangeError::Stalled);
        }
        let mut alloc = fs.alloc.lock();
        for st in storages {
            let index = fs.vol.devices.len() as u8;
            let size = st.size() / UNIT * UNIT;
            let entry = DeviceEntry::new(*uuid::Uuid::new_v4().as_bytes(), size, 1, 0);
            let name = st.name();
            let m = Member::new(index, Some(st), &entry, MemberState::Online, name.clone());
            m.set_joining(true);
            alloc.devs.push(crate::alloc::freemap::fresh_device(size, 1));
            if !fs.vol.devices.push(m) {
                alloc.devs.pop();
                return Err(DeviceChangeError::TableFull { have: index.into(), adding: 1, max: MAX_DEVICES });
            }
            added.push(AddedDevice { index, name, size });
        }
        fs.vol.free_placement.store(true, Ordering::SeqCst);
        if let Some(p) = fs.roots.write().pfs.as_mut() {
            p.features |= feature::FREE_PLACEMENT;
        }
    }
    tracing::info!(devices = ?added.iter().map(|a| &a.name).collect::<Vec<_>>(), "adding devices");
    let r = crate::commit::commit(fs, true, false)?;
    for a in &added {
        let m = &fs.vol.devices[usize::from(a.index)];
        if !m.writable() {
            let why = m.reconnect.last_error.lock().clone().unwrap_or_else(|| "it stopped answering".into());
            m.set_joining(false);
            return Err(DeviceChangeError::FailedWhileAdded { name: a.name.clone(), why });
        }
        // A1: the commit that adds it is durable: placement may use it.
        m.set_joining(false);
    }
    // The table says online from here on (a mount takes joining as online anyway).
    crate::commit::commit(fs, true, false)?;
    for a in &added {
        tracing::info!(device = %a.name, index = a.index, "device added: new copies use it from now on");
    }
    Ok(Added { devices: added, tid: r.tid, device_count: fs.vol.devices.len() })
}

/// Refuses a device that must not be taken: a member already, another filesystem's, one
/// with any other signature, or too small.
fn check(fs: &FsInner, st: &DynStorage) -> Result<(), DeviceChangeError> {
    let name = st.name();
    let size = st.size() / UNIT * UNIT;
    if size < MIN_DEVICE_BYTES {
        return Err(DeviceChangeError::TooSmall { name, size: st.size(), min: MIN_DEVICE_BYTES });
    }
    let probe = crate::mount::probe(st.clone());
    if let Some(h) = &probe.header {
        if h.fs_uuid != fs.vol.params.fs_uuid {
            return Err(DeviceChangeError::OtherFilesystem(name));
        }
        if let Some(m) = fs.vol.devices.iter().find(|m| m.uuid == h.device_uuid) {
            return Err(DeviceChangeError::AlreadyMember { name, index: m.index });
        }
    }
    // A header of this filesystem for no current member (an add that crashed before its
    // commit was durable elsewhere) may be overwritten; anything else may not.
    if probe.header.is_none()
        && let Some(sig) = crate::signatures::detect(st.as_ref())
    {
        if sig == "hammer2" {
            return Err(DeviceChangeError::OtherFilesystem(name));
        }
        return Err(DeviceChangeError::Signature { name, sig });
    }
    Ok(())
}

/// Zeroes the four header slots and flushes.
fn clear_header_slots(st: &DynStorage) -> std::io::Result<()> {
    let zero = vec![0u8; HEADER_SIZE];
    for slot in 0..HEADER_SLOTS {
        st.write_at(&zero, header_offset(slot))?;
    }
    st.flush()
}
