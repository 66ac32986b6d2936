//! Devices added to and removed from a mounted filesystem (format version 2; DESIGN §7,
//! A1 and C1; FORMAT.md "Devices added and removed").
//!
//! - [`add`] (`add.rs`): new devices join the device table at once: the commit that adds
//!   them records them `joining` and writes their free map; once it is durable they are
//!   online and placement gives them copies of new blocks (no balance is needed for
//!   correctness). The first device change sets `FREE_PLACEMENT` (P1): with the device
//!   count changing, the pinned slots of version 1 would name other devices.
//!
//! One device change runs at a time on a mount (C1); each changes the device set with the
//! commit lock held (O1), so every commit sees the set before or after the change.

mod add;

pub(crate) use add::add;
pub use add::{Added, AddedDevice};

/// Why a device change is refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceChangeError {
    #[error("the filesystem is read-only")]
    ReadOnly,
    #[error("another device change is running on this filesystem")]
    Busy,
    #[error("no device given")]
    NoDevice,
    #[error("{name} is already device {index} of this filesystem")]
    AlreadyMember { name: String, index: u8 },
    #[error("{0} belongs to another hammer2 filesystem: wipe it first (wipefs -a) if it is no longer needed")]
    OtherFilesystem(String),
    #[error("{name} holds a {sig} signature: wipe it first (wipefs -a) if it is no longer needed")]
    Signature { name: String, sig: String },
    #[error("{name} is too small: {size} bytes, a device needs at least {min}")]
    TooSmall { name: String, size: u64, min: u64 },
    #[error("{0} is given twice")]
    Twice(String),
    #[error("the device table is full: {have} devices, adding {adding} would exceed {max}")]
    TableFull { have: usize, adding: usize, max: usize },
    #[error("every device failed and the filesystem takes no changes: run hammer2 resync first")]
    Stalled,
    #[error("{name} failed while it was being added ({why}); it is in the device table as failed")]
    FailedWhileAdded { name: String, why: String },
    #[error(transparent)]
    Engine(#[from] crate::error::Error),
}
