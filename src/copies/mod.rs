//! Copies: every block is stored N times (N = the filesystem's `copies`), on N different
//! devices when there are enough, else in separate regions of a device. One check value in
//! the block reference covers all copies, so a read can tell a good copy from a bad one,
//! which a mirror underneath the filesystem cannot.
//!
//! - `placement.rs`: where the N copies of a new block go.
//! - `read.rs`: verified reads that take the first good copy and rewrite the bad ones.

pub mod placement;
pub mod read;
