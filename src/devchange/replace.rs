//! `device replace`: a new device takes an old one's place (DC3 in docs/DESIGN.md): the new
//! one is added (A1), then the old one removed (DC2), under one device-change claim (DC1).
//! The old device may be dead (failed or missing): the remove reads every block through
//! its check value from any good copy, so the copies it held are rebuilt from the others;
//! while it still answers, its own verified copies serve as well.

use super::{Added, DeviceChangeError, RemoveProgress, Removed};
use crate::fs::FsInner;
use crate::storage::{DynStorage, Storage};
use std::sync::atomic::Ordering;

/// What [`replace`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Replaced {
    pub added: Added,
    pub removed: Removed,
}

/// Replaces device `old` by `new` (see the module doc).
pub(crate) fn replace(
    fs: &FsInner,
    old: u8,
    new: DynStorage,
    progress: &mut dyn FnMut(&RemoveProgress),
) -> Result<Replaced, DeviceChangeError> {
    if fs.vol.read_only || fs.remounted_ro.load(Ordering::SeqCst) {
        return Err(DeviceChangeError::ReadOnly);
    }
    if fs.roots.read().pfs.is_none() {
        return Err(crate::error::Error::FormatVersion1.into());
    }
    let _one = fs.devchange.claim().ok_or(DeviceChangeError::Busy)?;
    let m = fs.vol.devices.get(old).ok_or(DeviceChangeError::NoSuchDevice(old))?;
    if m.state() == crate::devices::MemberState::Removed {
        return Err(DeviceChangeError::AlreadyRemoved { index: old });
    }
    // Asked before the new device joins, counting it: a replace that the remove would
    // refuse leaves the device set as it was (not the new device added).
    let joining = new.size().saturating_sub(hammer2_format::layout::RESERVED_BYTES);
    super::remove::fits_without(fs, old, Some((1, joining)))?;
    let added = super::add::add_claimed(fs, vec![new])?;
    let removed = super::remove::remove_claimed(fs, old, progress)?;
    Ok(Replaced { added, removed })
}
