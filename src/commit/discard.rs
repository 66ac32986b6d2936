//! Telling the devices which units hold nothing any more (TRIM / NBD_CMD_TRIM), once the
//! free is final.
//!
//! C5 (DESIGN §5): a unit is discarded only when (a) the commit that freed it is no newer
//! than the oldest volume header slot a mount could fall back to, so no tree a mount might
//! still choose references it; (b) no pinned tree (online scrub/resync) uses it; (c) it
//! has not been allocated again since; and (d) the discard is issued under the commit lock,
//! so no allocation can hand the unit out between the check and the discard. The
//! allocator keeps (a)–(c) (`Allocator::take_trims`); the commit keeps (d) by calling
//! `issue` before it lets go of its lock.
//!
//! Only devices in sync get discards: a stale device's own older header slots may still
//! name trees that use the units. A discard is advice (`Storage::discard`): a failure is
//! logged and otherwise ignored, and backends that cannot pass it on do nothing.

use crate::alloc::Extent;
use crate::devices::{DeviceSet, MemberState};

pub(super) fn issue(devices: &DeviceSet, trims: &[Extent]) {
    for e in trims {
        let Some(m) = devices.get(e.device) else { continue };
        if m.state() != MemberState::Online || m.missed_since() != 0 {
            continue;
        }
        let Some(storage) = m.storage() else { continue };
        let bytes = e.count * hammer2_format::layout::UNIT;
        if let Err(err) = storage.discard(e.offset(), bytes) {
            tracing::debug!(device = %m.name(), offset = e.offset(), bytes, "discard refused: {err}");
        }
    }
}
