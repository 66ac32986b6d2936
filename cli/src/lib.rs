//! What the three hammer2 binaries (hammer2, mkfs.hammer2, fsck.hammer2) share at their
//! surface: their man pages and completions, their JSON documents, and how an error
//! becomes one line.

mod completions;
pub mod generate;
pub mod json;
mod man;
pub mod message;

pub use generate::{Error, Kind, Section, generate, generate_and_exit};
pub use message::one_line;
