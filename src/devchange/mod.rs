//! Devices added to and removed from a mounted filesystem (format version 2; DESIGN §7,
//! A1 and DC1; FORMAT.md "Devices added and removed").
//!
//! - [`add`] (`add.rs`): new devices join the device table at once: the commit that adds
//!   them records them `joining` and writes their free map; once it is durable they are
//!   online and placement gives them copies of new blocks (no balance is needed for
//!   correctness). The first device change sets `FREE_PLACEMENT` (FP1): with the device
//!   count changing, the pinned slots of version 1 would name other devices.
//!
//! - [`remove`] (`remove.rs`): every copy on the device moves to the others through the
//!   resync walk (`Goal::MoveOff`), each verified by its check value before the new
//!   reference is committed; then the device is recorded `removed`.
//!
//! - [`replace`] (`replace.rs`): add the new device, then remove the old one (which may be
//!   dead: its copies are rebuilt from the good ones).
//!
//! - [`rebalance`] (`rebalance.rs`): copies move onto a device holding less than its share
//!   (after an add: `device add --rebalance`), through the same walk (`Goal::Rebalance`).
//!
//! One device change runs at a time on a mount (DC1); each changes the device set with the
//! commit lock held (O1), so every commit sees the set before or after the change.

mod add;
mod rebalance;
mod remove;
mod replace;

pub(crate) use add::add;
pub use add::{Added, AddedDevice};
pub use rebalance::Rebalanced;
pub(crate) use rebalance::rebalance;
pub(crate) use remove::remove;
pub use remove::{RemoveProgress, Removed};
pub use replace::Replaced;
pub(crate) use replace::replace;

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
    #[error("no device {0} in this filesystem")]
    NoSuchDevice(u8),
    #[error("device {index} is already removed")]
    AlreadyRemoved { index: u8 },
    #[error(
        "device {index} ({name}) is {state} and may lack copies only the device to remove holds: bring it back and \
         resync first"
    )]
    OtherNotOnline { name: String, index: u8, state: &'static str },
    #[error(
        "the other {devices} device(s) have {domains} region(s) in all, fewer than the {copies} copies of each block: \
         add a device first"
    )]
    TooFewDomains { domains: usize, devices: usize, copies: usize },
    #[error(
        "the device holds {} MiB of copies but the other devices have {} MiB free: add a device or free space first",
        held >> 20,
        free >> 20
    )]
    NoRoom { held: u64, free: u64 },
    #[error(
        "no room left on the other devices where the copies may go ({} MiB moved so far): add a device or free space, \
         then run the remove again",
        moved >> 20
    )]
    RanOutOfRoom { moved: u64 },
    #[error("device {index} ({name}) is {state}: only an online device takes copies")]
    NotOnline { name: String, index: u8, state: &'static str },
    #[error("a resync or another maintenance session is running on this filesystem; try again when it is done")]
    MaintenanceRunning,
    #[error(transparent)]
    Engine(#[from] crate::error::Error),
}
