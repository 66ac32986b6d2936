//! The read-only inspection surface a checker (fsck) uses: opening the devices without
//! mounting (probe, assemble, a volume that reads verified blocks), the committed roots and
//! one walk over every reachable block. Nothing here changes a filesystem; changes go
//! through [`crate::repair`].
//!
//! These are re-exports, so the engine keeps one definition of each; the modules they come
//! from stay internal to the engine.

pub use crate::devices::MemberState;
pub use crate::fs::Roots;
pub use crate::mount::{Assembly, Probe, assemble, probe, volume};
pub use crate::signatures::detect as detect_signature;
pub use crate::tree::Root;
pub use crate::volume::Volume;
pub use crate::walk::{Ctx, TreeKind, Visitor, walk};
