//! Free-map leaves: 16384-byte bitmaps, one bit per 4096-byte allocation unit, bit set =
//! allocated. Bit `i` of leaf `L` of device `d` is unit `L * 131072 + i` of device `d`, stored
//! at bit `i % 8` of byte `i / 8`. Units outside any region (the header area, the tail) are
//! set. The free map's tree is keyed by `layout::freemap_key(device, leaf)`.
//!
//! The invariant fsck checks: after a commit, the set bits are exactly the units of the
//! blocks reachable from that commit's roots (the free map's own blocks included), plus the
//! units outside every region.

use crate::layout::*;

pub fn leaves_for(device_size: u64) -> u32 {
    (device_size / UNIT).div_ceil(FREEMAP_LEAF_UNITS) as u32
}

pub fn get(bits: &[u8], i: u64) -> bool {
    bits[(i / 8) as usize] & (1 << (i % 8)) != 0
}

pub fn set(bits: &mut [u8], i: u64, v: bool) {
    let b = &mut bits[(i / 8) as usize];
    if v {
        *b |= 1 << (i % 8);
    } else {
        *b &= !(1 << (i % 8));
    }
}

pub fn count_free(bits: &[u8]) -> u64 {
    bits.iter().map(|b| u64::from(b.count_zeros())).sum()
}

/// The same bitmap as little-endian u64 words, the form the allocator and fsck keep in
/// memory: bit `i` is bit `i % 64` of word `i / 64`, which is byte `i / 8`, bit `i % 8` of
/// the leaf. This is the one place that says so.
pub const WORD_BITS: u64 = u64::BITS as u64;
/// Bytes of one word in the leaf.
pub const WORD_BYTES: usize = 8;
/// Words of one leaf.
pub const LEAF_WORDS: usize = FREEMAP_LEAF_SIZE / WORD_BYTES;

/// Word `w` of `bits` (bits `w * 64 .. w * 64 + 64`).
pub fn word(bits: &[u8], w: usize) -> u64 {
    let mut a = [0u8; WORD_BYTES];
    a.copy_from_slice(&bits[w * WORD_BYTES..(w + 1) * WORD_BYTES]);
    u64::from_le_bytes(a)
}

/// The words of `bits` (whole words; a trailing partial word is ignored).
pub fn words(bits: &[u8]) -> impl Iterator<Item = u64> + '_ {
    (0..bits.len() / WORD_BYTES).map(|w| word(bits, w))
}

/// The leaf bytes of `words`.
pub fn bytes_of_words(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}
