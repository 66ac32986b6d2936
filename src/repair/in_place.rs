//! Repairs written in place, outside any commit: no reference changes, so there is no
//! commit to go through. A copy is rewritten only with content its check value vouches for;
//! a header slot is cleared only when damaged (it never hides a newer commit); a member's
//! header is restored from the master's, as the commit would have written it.

use crate::storage::DynStorage;
use crate::volume::Volume;
use hammer2_format::layout::{HEADER_SIZE, HEADER_SLOTS, header_offset};
use hammer2_format::{BlockPtr, VolumeHeader};
use std::io;

/// What rewriting one copy came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyRewrite {
    /// Written, and the copy read back verifies.
    Verified,
    /// Written, but the copy read back still does not verify.
    StillBad,
    /// The write failed (or the device is not writable).
    Failed,
}

/// Rewrites copy `slot` of a block from `good` (content that verifies against the block's
/// check value) through the copy-I/O layer's heal, then reads the copy back: the repair
/// counts only when it now verifies.
pub fn rewrite_copy(vol: &Volume, ptr: &BlockPtr, slot: usize, good: &[u8]) -> CopyRewrite {
    if !crate::copies::heal(&vol.devices, ptr, slot, good) {
        return CopyRewrite::Failed;
    }
    // Read back without counting or healing: this is the check of the rewrite itself.
    let ok = crate::copies::CopyIo::new(&vol.devices, false).uncounted().copy_verifies(ptr, slot);
    if ok { CopyRewrite::Verified } else { CopyRewrite::StillBad }
}

/// Zeroes header slot `slot` of a device and flushes.
pub fn clear_header_slot(storage: &DynStorage, slot: usize) -> io::Result<()> {
    storage.write_at(&[0u8; HEADER_SIZE], header_offset(slot))?;
    storage.flush()
}

/// Writes the master's header, as member `index`'s own, into the slot of the master's
/// commit (a member whose every slot is damaged; its identity came from the damaged slots).
pub fn restore_member_header(storage: &DynStorage, index: usize, master: &VolumeHeader) -> io::Result<()> {
    let e = master.devices.get(index).ok_or_else(|| io::Error::other("no such member"))?;
    let mut hd = master.clone();
    hd.device_uuid = e.uuid;
    hd.device_index = index as u16;
    hd.device_size = e.size;
    let slot = (master.tid % HEADER_SLOTS as u64) as usize;
    hd.slot = slot as u8;
    storage.write_at(&hd.encode(), header_offset(slot))?;
    storage.flush()
}
