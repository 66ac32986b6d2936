//! What the three hammer2 binaries (hammer2, mkfs.hammer2, fsck.hammer2) share at their
//! surface: their man pages and completions.

mod completions;
pub mod generate;
mod man;

pub use generate::{Error, Kind, Section, generate};
