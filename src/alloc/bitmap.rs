//! A plain bitmap of allocation units with run search.

use hammer2_format::freemap::{self, WORD_BITS};

#[derive(Clone)]
pub struct Bitmap {
    words: Vec<u64>,
}

impl Bitmap {
    /// A bitmap of `units` bits, all set (allocated).
    pub fn full(units: u64) -> Bitmap {
        Bitmap { words: vec![u64::MAX; units.div_ceil(64) as usize] }
    }
    /// A bitmap of `units` bits, all clear.
    pub fn empty(units: u64) -> Bitmap {
        Bitmap { words: vec![0; units.div_ceil(64) as usize] }
    }

    pub fn units(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    pub fn get(&self, u: u64) -> bool {
        self.words[(u / 64) as usize] & (1 << (u % 64)) != 0
    }

    pub fn set_range(&mut self, start: u64, n: u64, v: bool) {
        for u in start..start + n {
            let w = &mut self.words[(u / 64) as usize];
            if v {
                *w |= 1 << (u % 64);
            } else {
                *w &= !(1 << (u % 64));
            }
        }
    }

    /// True when every unit of `start..start + n` is clear.
    pub fn range_clear(&self, start: u64, n: u64) -> bool {
        (start..start + n).all(|u| !self.get(u))
    }
    /// True when every unit of `start..start + n` is set.
    pub fn range_set(&self, start: u64, n: u64) -> bool {
        (start..start + n).all(|u| self.get(u))
    }

    pub fn count_clear(&self, start: u64, end: u64) -> u64 {
        let mut n = 0;
        let mut u = start;
        while u < end {
            if u % 64 == 0 && u + 64 <= end {
                n += u64::from(self.words[(u / 64) as usize].count_zeros());
                u += 64;
            } else {
                n += u64::from(!self.get(u));
                u += 1;
            }
        }
        n
    }

    /// First run of `n` clear units inside `[start, end)` starting at a multiple of `align`,
    /// searching from `hint` to `end` and then from `start` to `hint` (next fit keeps a
    /// commit's blocks contiguous).
    pub fn find_run(&self, start: u64, end: u64, n: u64, hint: u64, align: u64) -> Option<u64> {
        let hint = hint.clamp(start, end);
        self.find_run_in(hint, end, n, align).or_else(|| self.find_run_in(start, (hint + n).min(end), n, align))
    }

    /// First run of `n` clear units inside `[start, end)` starting at a multiple of `align`
    /// (a power of two), lowest first.
    pub fn find_run_in(&self, start: u64, end: u64, n: u64, align: u64) -> Option<u64> {
        let up = |u: u64| u.div_ceil(align) * align;
        let mut u = up(start);
        while u + n <= end {
            let w = self.words[(u / 64) as usize];
            if w == u64::MAX {
                u = up((u / 64 + 1) * 64);
                continue;
            }
            // The first set unit of the candidate run, if any: the next candidate starts
            // after it.
            match (u..u + n).find(|&x| self.get(x)) {
                None => return Some(u),
                Some(x) => u = up(x + 1),
            }
        }
        None
    }

    /// Aligned runs of `slot` units (a power of two) inside `[start, end)` with every unit
    /// clear: the space that can take any block of up to `slot` units (§10, S1).
    pub fn count_free_slots(&self, start: u64, end: u64, slot: u64) -> u64 {
        let mut n = 0;
        let mut u = start.div_ceil(slot) * slot;
        while u + slot <= end {
            if slot <= 64 && u % 64 == 0 && u + 64 <= end {
                // A whole word: count its clear slot-sized chunks.
                let w = self.words[(u / 64) as usize];
                if w == 0 {
                    n += 64 / slot;
                } else if w != u64::MAX {
                    let mask = if slot == 64 { u64::MAX } else { (1u64 << slot) - 1 };
                    n += (0..64 / slot).filter(|k| (w >> (k * slot)) & mask == 0).count() as u64;
                }
                u += 64;
                continue;
            }
            if self.range_clear(u, slot) {
                n += 1;
            }
            u += slot;
        }
        n
    }

    /// The bytes of `units` bits starting at `start` (a multiple of 64), in the free-map
    /// leaf's word layout (`hammer2_format::freemap`).
    pub fn bytes(&self, start: u64, units: u64) -> Vec<u8> {
        let w0 = (start / WORD_BITS) as usize;
        let nw = units.div_ceil(WORD_BITS) as usize;
        freemap::bytes_of_words(&self.words[w0..w0 + nw])
    }

    /// Overwrites bits from `start` (a multiple of 64) with `bytes`, in the free-map leaf's
    /// word layout.
    pub fn load_bytes(&mut self, start: u64, bytes: &[u8]) {
        let w0 = (start / WORD_BITS) as usize;
        for (w, word) in self.words.iter_mut().skip(w0).zip(freemap::words(bytes)) {
            *w = word;
        }
    }
}
