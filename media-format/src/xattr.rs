//! Extended attribute blocks: one XATTR block per attribute, in the owning inode's tree at
//! `dirent::xattr_key_base(name) | iter`.
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0 | 2 | name length (1..=255) |
//! | 2 | 2 | reserved, zero |
//! | 4 | 4 | value length (0..=65536) |
//! | 8 | n | name |
//! | 8+n | v | value |
//! | ... | | zeros up to the block size (a multiple of 4096) |

use crate::bytes::{Reader, Writer};
use crate::layout::*;
use crate::{DecodeError, DecodeResult};

/// Byte offsets of the block's fields (the table above; FORMAT.md §9).
pub mod off {
    pub const NAME_LEN: usize = 0;
    /// 2 reserved bytes.
    pub const RESERVED_2: usize = 2;
    pub const VALUE_LEN: usize = 4;
    /// The name, then the value, then zeros.
    pub const NAME: usize = 8;
}

const HEADER: usize = off::NAME;

/// Block size for an attribute with the given name and value lengths, if they are in range.
pub fn block_size(name_len: usize, value_len: usize) -> Option<u32> {
    if name_len == 0 || name_len > MAX_NAME_LEN || value_len > MAX_XATTR_VALUE {
        return None;
    }
    let n = (HEADER + name_len + value_len) as u64;
    Some(n.div_ceil(UNIT).saturating_mul(UNIT) as u32)
}

/// Panics only if the lengths are out of range; callers validate names and values first.
pub fn encode(name: &[u8], value: &[u8]) -> Vec<u8> {
    let size = block_size(name.len(), value.len()).expect("xattr name/value length validated by caller");
    let mut out = vec![0u8; size as usize];
    let mut w = Writer::new(&mut out);
    w.u16(off::NAME_LEN, name.len() as u16);
    w.u32(off::VALUE_LEN, value.len() as u32);
    w.bytes(HEADER, name);
    w.bytes(HEADER + name.len(), value);
    out
}

/// Returns (name, value).
pub fn decode(buf: &[u8]) -> DecodeResult<(Vec<u8>, Vec<u8>)> {
    let r = Reader::new(buf, HEADER, "xattr")?;
    let n = usize::from(r.u16(off::NAME_LEN)?);
    r.zero(off::RESERVED_2, off::VALUE_LEN - off::RESERVED_2)?;
    let v = r.u32(off::VALUE_LEN)? as usize;
    let size = block_size(n, v).ok_or_else(|| r.bad("lengths", n as u64))?;
    if buf.len() != size as usize {
        return Err(DecodeError::BadField { what: "xattr", field: "block size", value: buf.len() as u64 });
    }
    let r = Reader::new(buf, size as usize, "xattr")?;
    r.zero(HEADER + n + v, size as usize - HEADER - n - v)?;
    Ok((r.bytes(HEADER, n)?.to_vec(), r.bytes(HEADER + n, v)?.to_vec()))
}
