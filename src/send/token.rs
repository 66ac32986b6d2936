//! Resume tokens of streams (docs/SEND-STREAM.md "Resuming"): the token type is declared in
//! `fs/resume.rs`, below the PFS listing and file operations that read it; what a token
//! says of a stream is here (SR9).

use super::stream::{Header, RecordId};
pub use crate::fs::resume::{BadToken, ResumeToken};

impl ResumeToken {
    /// The token of stream `h` applied up to `position` (the record before it: `after`).
    pub fn of(h: &Header, position: u64, after: RecordId) -> Self {
        ResumeToken {
            pfs_uuid: h.pfs_uuid,
            snapshot_uuid: h.snapshot_uuid,
            snapshot_tid: h.snapshot_tid,
            base_tid: h.base_tid,
            position,
            after,
        }
    }

    /// True when `h` is a send of the same snapshot from the same base.
    pub fn same_stream(&self, h: &Header) -> bool {
        self.pfs_uuid == h.pfs_uuid
            && self.snapshot_uuid == h.snapshot_uuid
            && self.snapshot_tid == h.snapshot_tid
            && self.base_tid == h.base_tid
    }
}
