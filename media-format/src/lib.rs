//! The on-disk format of hammer2, a HAMMER2-like copy-on-write filesystem.
//!
//! This crate only encodes and decodes; it never does I/O. `FORMAT.md` beside this crate is
//! the specification; every structure here names its byte offsets (`off` modules), and the
//! tests pin every byte: `tests/known_answers.rs` rebuilds each structure from FORMAT.md, and
//! `tests/golden_bytes.rs` compares it with golden files that are never regenerated.
//!
//! Every decoder accepts any byte sequence and either returns a fully validated value or a
//! [`DecodeError`]; none of them panics. Every encoder produces bytes its decoder accepts.

#![forbid(unsafe_code)]

pub mod blockref;
mod bytes;
pub mod check;
pub mod dirent;
pub mod freemap;
pub mod indirect;
pub mod inode;
pub mod layout;
pub mod pfs;
pub mod volume;
pub mod xattr;

pub use blockref::{
    BlockData, BlockPtr, BlockType, Blockref, Compression, CompressionMethod, CopyState, Location, Payload,
};
pub use check::{Check, CheckMethod};
pub use inode::{InodeBlock, InodeContent, InodePolicy, Timespec};
pub use layout::*;
pub use pfs::{PfsKind, PfsRecord};
pub use volume::{DeviceEntry, DeviceState, VolumeHeader};

/// Why a byte sequence is not a valid on-disk structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{what}: need {need} bytes, got {got}")]
    Short { what: &'static str, need: usize, got: usize },
    #[error("{what}: bad magic")]
    BadMagic { what: &'static str },
    #[error("{what}: unsupported format version {version}")]
    BadVersion { what: &'static str, version: u32 },
    #[error("{what}: check code mismatch")]
    BadCheck { what: &'static str },
    #[error("{what}: field {field} has invalid value {value:#x}")]
    BadField { what: &'static str, field: &'static str, value: u64 },
    #[error("{what}: reserved bytes at offset {offset} are not zero")]
    Reserved { what: &'static str, offset: usize },
}

pub type DecodeResult<T> = Result<T, DecodeError>;
