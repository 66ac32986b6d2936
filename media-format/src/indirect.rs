//! Indirect blocks: a node of a tree, `size / 128` block reference slots, sorted by key,
//! packed from slot 0, unused slots EMPTY (all zero). No header: the parent's reference
//! gives the node's level, size and check value.

use crate::blockref::{Blockref, decode_blockset_within, encode_blockset};
use crate::layout::{BLOCKREF_SIZE, MAX_DEVICES};
use crate::{DecodeError, DecodeResult};

/// Number of slots in an indirect block of `size` bytes.
pub const fn slots(size: usize) -> usize {
    size / BLOCKREF_SIZE
}

/// Decodes an indirect block of height `level` (>= 1): its entries have level `level - 1`
/// (INDIRECT references) or are leaves when `level == 1`. An empty node is corrupt: the
/// tree removes nodes that lose their last entry.
pub fn decode(buf: &[u8], level: u8) -> DecodeResult<Vec<Blockref>> {
    decode_within(buf, level, MAX_DEVICES)
}

/// [`decode`] for a filesystem of `device_count` devices: every copy of every entry names
/// one of them.
pub fn decode_within(buf: &[u8], level: u8, device_count: usize) -> DecodeResult<Vec<Blockref>> {
    if level == 0 {
        return Err(DecodeError::BadField { what: "indirect block", field: "level", value: 0 });
    }
    let entries = decode_blockset_within(buf, slots(buf.len()), level - 1, device_count)?;
    if entries.is_empty() {
        return Err(DecodeError::BadField { what: "indirect block", field: "entries", value: 0 });
    }
    Ok(entries)
}

/// Encodes `entries` into a new indirect block of `size` bytes.
pub fn encode(entries: &[Blockref], size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size];
    encode_blockset(entries, slots(size), &mut out);
    out
}
