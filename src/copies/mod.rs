//! Copies: every block is stored N times (N = the filesystem's `copies`), on N different
//! devices when there are enough, else in separate regions of a device. One check value in
//! the block reference covers all copies, so a read can tell a good copy from a bad one,
//! which a mirror underneath the filesystem cannot.
//!
//! This is the copy-I/O layer, the only code that reads a block's copies:
//! - `placement.rs`: the placement rule (which device and region each copy slot uses);
//!   allocating by it is the allocator's (`alloc/copies.rs`).
//! - `read.rs`: `CopyIo`, verified reads that take the first good copy, count device errors
//!   and rewrite the bad copies; every copy with a verdict each; bulk reads.
//! - `runs.rs`: the one batching policy of bulk reads (sorted runs per device).
//! - `compress.rs`: DATA blocks stored compressed (Z1, Z2): compressed before their check
//!   value and copies exist, decompressed only after a copy verified.

pub mod compress;
pub mod placement;
pub mod read;
pub mod runs;

pub use read::{BulkBlock, CopyIo, CopyVerdict, OnBadCopy, ReadCtx, heal};
