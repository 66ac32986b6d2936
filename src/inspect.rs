//! The read-only inspection surface a checker (fsck) uses: opening the devices without
//! mounting (probe, assemble, a volume that reads verified blocks), the committed roots and
//! one walk over every reachable block. Nothing here changes a filesystem; changes go
//! through [`crate::repair`].
//!
//! These are re-exports, so the engine keeps one definition of each; the modules they come
//! from stay internal to the engine.

pub use crate::devices::MemberState;
pub use crate::fs::PfsRoots;
pub use crate::fs::Roots;
pub use crate::mount::{Assembly, Probe, assemble, probe, volume};
pub use crate::pfs::{header_roots, implemented_features};
pub use crate::signatures::detect as detect_signature;
pub use crate::tree::Root;
pub use crate::volume::Volume;
pub use crate::walk::{Ctx, TreeKind, Visitor, filesystem_roots, walk, walk_every_reference};

/// The placement rule a checker holds copies against (slot → device and region).
pub use crate::copies::placement::{fixed_slot, slots_are_fixed};
/// The engine's copy-I/O layer, for reading: every copy of a block with a verdict each
/// ([`CopyIo::read_every_copy`]), and bulk reads in sorted runs per device under the one
/// batching policy (`BATCH_BLOCKS`, and the run limits of `read_runs`).
pub use crate::copies::runs::{BATCH_BLOCKS, CopyRead, on_each_device, read_runs};
pub use crate::copies::{CopyIo, CopyVerdict};

/// A copy reader for a checker: it neither heals (a check changes nothing; repairs go
/// through [`crate::repair`]) nor counts errors in the devices' counters.
pub fn copy_reader(vol: &Volume) -> CopyIo<'_> {
    CopyIo::new(&vol.devices, false).uncounted()
}
