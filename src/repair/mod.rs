//! The repair session: the only way fsck changes a filesystem.
//!
//! Why one typed session: a checker that wrote engine state directly (dirty leaves, the
//! committed roots, allocator regions) would bypass the locks every change holds (DESIGN §4)
//! and could leave state the commit path does not expect. Here each kind of change fsck
//! makes is one method that takes the gate and the inode lock as a VOP does, and
//! [`Session::commit`] writes everything through the engine's ordinary commit path, so a
//! crash during a repair leaves the previous commit intact.
//!
//! Changes that are not tree changes are written in place, before or after the session,
//! by the functions of `in_place.rs`: a bad copy rewritten from a good copy
//! ([`rewrite_copy`]), a damaged header slot cleared ([`clear_header_slot`]), a member's
//! lost header restored ([`restore_member_header`]).
//!
//! - `rebuilt_freemap.rs`: opening with a free map rebuilt from the reachable blocks.
//! - `session.rs`: the session and its changes.
//! - `in_place.rs`: the in-place rewrites.
//! - `testing.rs`: hooks that damage a mounted filesystem the way a buggy engine would.

mod in_place;
mod rebuilt_freemap;
mod session;
pub mod testing;

pub use crate::alloc::bitmap::Bitmap;
pub use in_place::{CopyRewrite, clear_header_slot, restore_member_header, rewrite_copy};
pub use rebuilt_freemap::used_bitmap;
pub use session::{EntryCount, InodeFix, Session};

/// Why a repair session could not be opened or a change could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// One used-space map per device is needed.
    #[error("invalid argument: {maps} used-space maps for {devices} devices")]
    UsedMaps { maps: usize, devices: usize },
    /// A used-space map must cover every free-map leaf of its device ([`used_bitmap`]).
    #[error("invalid argument: used-space map of device {device} is too small")]
    UsedMapTooSmall { device: u8 },
    /// The engine refused the change (or could not read what it needed).
    #[error(transparent)]
    Engine(#[from] crate::Error),
}
