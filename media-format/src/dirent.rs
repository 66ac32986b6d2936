//! Directory entries and extended-attribute keys: names hashed into 64-bit keys.
//!
//! A directory entry is a DIRENT block reference in its directory's tree. Its key is
//! `dirent_key_base(name) | iter`, where `iter` (15 bits) separates names whose hashes
//! collide: lookup scans `base ..= base | 0x7fff` and compares names. Keys 0 and 1 are never
//! used, so readdir can use them as the cookies of `.` and `..`.
//!
//! A name longer than 64 bytes lives in a 4096-byte block: the name, then zeros.

use crate::layout::*;
use crate::{DecodeError, DecodeResult};

/// FNV-1a's 64-bit offset basis and prime (FORMAT.md §8).
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The hash bits a key keeps: bit 63 (the xattr key space) and the collision iterator's
/// low 15 bits are cleared.
const HASH_KEY_MASK: u64 = !(XATTR_KEY_BIT | HASH_ITER_MASK);
/// The smallest directory-entry key base: keys 0 and 1 stay free for readdir's `.` and `..`.
const DIRENT_KEY_MIN: u64 = HASH_ITER_MASK + 1;

/// FNV-1a, 64 bit: stable, specified in FORMAT.md, fast for short names.
pub fn name_hash(name: &[u8]) -> u64 {
    let mut h = FNV_OFFSET_BASIS;
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// First key of the collision range of a directory entry name: bit 63 clear, low 15 bits
/// clear, never below 0x8000.
pub fn dirent_key_base(name: &[u8]) -> u64 {
    (name_hash(name) & HASH_KEY_MASK).max(DIRENT_KEY_MIN)
}

/// First key of the collision range of an extended attribute name: bit 63 set.
pub fn xattr_key_base(name: &[u8]) -> u64 {
    XATTR_KEY_BIT | (name_hash(name) & HASH_KEY_MASK)
}

/// A valid name: 1..=255 bytes, no `/`, no NUL, not `.` or `..`.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.contains(&b'/')
        && !name.contains(&0)
        && name != b"."
        && name != b".."
}

/// The 4096-byte block holding a long name.
pub fn encode_name_block(name: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; UNIT as usize];
    out[..name.len()].copy_from_slice(name);
    out
}

pub fn decode_name_block(buf: &[u8], name_len: usize) -> DecodeResult<Vec<u8>> {
    if buf.len() != UNIT as usize || name_len > MAX_NAME_LEN || name_len <= INLINE_NAME_MAX {
        return Err(DecodeError::BadField { what: "name block", field: "length", value: name_len as u64 });
    }
    if buf[name_len..].iter().any(|&b| b != 0) {
        return Err(DecodeError::Reserved { what: "name block", offset: name_len });
    }
    let name = &buf[..name_len];
    if name.contains(&0) || name.contains(&b'/') {
        return Err(DecodeError::BadField { what: "name block", field: "name bytes", value: 0 });
    }
    Ok(name.to_vec())
}

/// An inline name (at most 64 bytes) zero-padded into the blockref's inline area.
pub fn inline_name(name: &[u8]) -> Option<[u8; INLINE_NAME_MAX]> {
    if name.len() > INLINE_NAME_MAX {
        return None;
    }
    let mut a = [0u8; INLINE_NAME_MAX];
    a[..name.len()].copy_from_slice(name);
    Some(a)
}
