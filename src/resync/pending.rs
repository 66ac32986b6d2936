//! What a resync will copy, known before its slices run: the MISSING copies, on devices it
//! can write, of the leaf blocks in out-of-sync branches. Found by the same descent the
//! slices make (only into references carrying the DEGRADED flag), so it costs what the
//! resync's own walk costs in metadata reads and nothing in data. Nodes are left out: a
//! slice rewrites a node whose children it filled rather than copying it.

use crate::error::Result;
use crate::fs::FsInner;
use crate::walk::{self, Ctx, Visitor};
use hammer2_format::{Blockref, CopyState};
use std::sync::Arc;

/// Bytes of copies a resync of `fs` is to write now (the total of its progress).
pub(super) fn bytes(fs: &FsInner) -> Result<u64> {
    struct Count<'a> {
        fs: &'a FsInner,
        bytes: u64,
    }
    impl Visitor for Count<'_> {
        fn visit(&mut self, br: &Blockref, _: &Ctx) -> Result<Option<Arc<[u8]>>> {
            if !br.is_degraded() {
                return Ok(None);
            }
            if br.btype.names_blocks() {
                // An unreadable node: the slice reports it; the estimate does without it.
                return Ok(self.fs.vol.read_block(br, &Default::default()).ok());
            }
            if let Some(p) = br.ptr() {
                let devices = &self.fs.vol.devices;
                let missing = p
                    .copies
                    .iter()
                    .filter(|l| l.state == CopyState::Missing && devices.get(l.device).is_some_and(|m| m.writable()))
                    .count();
                self.bytes += missing as u64 * u64::from(p.size);
            }
            Ok(None)
        }
    }
    // Pinned, as the scrub's tree: commits running meanwhile do not reuse what it reads.
    let mut c = Count { fs, bytes: 0 };
    walk::walk(&fs.pinned_roots(), &mut c)?;
    Ok(c.bytes)
}
