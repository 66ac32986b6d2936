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
