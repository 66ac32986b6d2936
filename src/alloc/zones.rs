//! Allocation zones: metadata and file data kept apart.
//!
//! A device is cut into 2 MiB zones. A zone with nothing allocated belongs to nobody; the
//! first allocation in it gives it to that allocation's class, metadata (inodes, tree
//! nodes, directory entries, attributes, free-map leaves) or file data, and that class
//! alone allocates there until the zone is empty again. So the inode blocks a commit
//! writes lie back to back instead of between the data of their files: a cold directory
//! listing reads them with a few large requests, not through every file's data, and a tree
//! walk (fsck, scrub, resync) meets its nodes close together.
//!
//! The class of a zone is not recorded on disk: a zone partly used when the free map is
//! loaded is `Mixed`. A class takes space in a mixed zone or in the other class's zones only
//! when none of its own and no empty zone has room, so placement never turns free space
//! into ENOSPC.

use super::bitmap::Bitmap;
use hammer2_format::BlockType;

/// Units (4 KiB) per zone: 2 MiB, twice the largest prefetch and commit write run.
pub const ZONE_UNITS: u64 = 512;

/// What a block is, for placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Meta = 0,
    Data = 1,
}

impl Class {
    /// File data (and symlink targets) is data; every other block is metadata.
    pub fn of(btype: BlockType) -> Class {
        if btype == BlockType::Data { Class::Data } else { Class::Meta }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Nobody,
    Class(Class),
    Mixed,
}

pub struct Zones {
    /// Units set in the working bitmap, per zone.
    used: Vec<u32>,
    owner: Vec<Owner>,
}

impl Zones {
    /// Zones for a loaded bitmap: a zone with anything allocated is `Mixed`.
    pub fn load(bits: &Bitmap) -> Zones {
        let n = bits.units().div_ceil(ZONE_UNITS);
        let used: Vec<u32> = (0..n)
            .map(|z| {
                let (s, e) = (z * ZONE_UNITS, ((z + 1) * ZONE_UNITS).min(bits.units()));
                ((e - s) - bits.count_clear(s, e)) as u32
            })
            .collect();
        let owner = used.iter().map(|&u| if u == 0 { Owner::Nobody } else { Owner::Mixed }).collect();
        Zones { used, owner }
    }

    fn accepts(&self, zone: u64, class: Class) -> bool {
        match self.owner.get(zone as usize) {
            Some(Owner::Nobody) => true,
            Some(Owner::Class(c)) => *c == class,
            Some(Owner::Mixed) | None => false,
        }
    }

    /// First run of `n` clear units in `[start, end)` lying in zones `class` may use (its
    /// own and empty ones), searched from `hint` to `end` and then from `start` (next fit,
    /// per class, keeps each class's blocks of a commit contiguous).
    #[allow(clippy::too_many_arguments)]
    pub fn find_run(
        &self,
        bits: &Bitmap,
        start: u64,
        end: u64,
        n: u64,
        hint: u64,
        class: Class,
        align: u64,
    ) -> Option<u64> {
        let hint = hint.clamp(start, end);
        self.find_in(bits, hint, end, n, class, align)
            .or_else(|| self.find_in(bits, start, (hint + n).min(end), n, class, align))
    }

    fn find_in(&self, bits: &Bitmap, from: u64, to: u64, n: u64, class: Class, align: u64) -> Option<u64> {
        let mut z = from / ZONE_UNITS;
        while z * ZONE_UNITS < to {
            if self.accepts(z, class) {
                // Runs starting in zone z; one may reach n - 1 units into the zones after
                // it, as far as those are usable too.
                let mut end = ((z + 1) * ZONE_UNITS).min(to);
                let mut next = z + 1;
                while end < to && end < (z + 1) * ZONE_UNITS + n - 1 && self.accepts(next, class) {
                    next += 1;
                    end = (next * ZONE_UNITS).min(to);
                }
                let end = end.min((z + 1) * ZONE_UNITS + n - 1);
                if let Some(u) = bits.find_run_in((z * ZONE_UNITS).max(from), end, n, align) {
                    return Some(u);
                }
            }
            z += 1;
        }
        None
    }

    fn zones_of(unit: u64, count: u64) -> impl Iterator<Item = (usize, u32)> {
        let (first, last) = (unit / ZONE_UNITS, (unit + count - 1) / ZONE_UNITS);
        (first..=last).map(move |z| {
            let (s, e) = ((z * ZONE_UNITS).max(unit), ((z + 1) * ZONE_UNITS).min(unit + count));
            (z as usize, (e - s) as u32)
        })
    }

    /// Units newly set in the bitmap by an allocation of `class`: an empty zone becomes
    /// the class's.
    pub fn taken(&mut self, unit: u64, count: u64, class: Class) {
        for (z, n) in Self::zones_of(unit, count) {
            let Some(u) = self.used.get_mut(z) else { continue };
            *u += n;
            if self.owner[z] == Owner::Nobody {
                self.owner[z] = Owner::Class(class);
            }
        }
    }

    /// Units cleared in the bitmap: a zone left empty belongs to nobody again. Saturating,
    /// because only a damaged free map (or a test damaging one) clears bits it never set.
    /// Returns, per class, whether the class's usable zones gained room (units freed in a
    /// mixed zone or in the other class's zone give it none).
    pub fn given(&mut self, unit: u64, count: u64) -> [bool; 2] {
        let mut roomier = [false; 2];
        for (z, n) in Self::zones_of(unit, count) {
            let Some(u) = self.used.get_mut(z) else { continue };
            *u = u.saturating_sub(n);
            if *u == 0 {
                self.owner[z] = Owner::Nobody;
            }
            match self.owner[z] {
                Owner::Nobody => roomier = [true; 2],
                Owner::Class(c) => roomier[c as usize] = true,
                Owner::Mixed => {}
            }
        }
        roomier
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zone_taken_by_one_class_is_skipped_by_the_other() {
        let bits = Bitmap::empty(4 * ZONE_UNITS);
        let mut z = Zones::load(&bits);
        z.taken(0, 1, Class::Meta);
        assert_eq!(z.find_run(&bits, 0, 4 * ZONE_UNITS, 1, 0, Class::Data, 1), Some(ZONE_UNITS));
        assert_eq!(z.find_run(&bits, 0, 4 * ZONE_UNITS, 1, 0, Class::Meta, 1), Some(0));
    }

    #[test]
    fn an_emptied_zone_is_free_for_either_class() {
        let bits = Bitmap::empty(2 * ZONE_UNITS);
        let mut z = Zones::load(&bits);
        z.taken(10, 4, Class::Data);
        z.given(10, 4);
        assert_eq!(z.find_run(&bits, 0, 2 * ZONE_UNITS, 1, 0, Class::Meta, 1), Some(0));
    }

    #[test]
    fn only_frees_in_its_own_or_emptied_zones_give_a_class_room() {
        let mut bits = Bitmap::empty(3 * ZONE_UNITS);
        bits.set_range(0, 8, true);
        let mut z = Zones::load(&bits);
        z.taken(ZONE_UNITS, 8, Class::Data);
        assert_eq!(z.given(0, 4), [false, false], "a mixed zone is nobody's room");
        assert_eq!(z.given(ZONE_UNITS, 4), [false, true], "data's zone, still in use");
        assert_eq!(z.given(ZONE_UNITS + 4, 4), [true, true], "emptied: anybody's");
    }

    #[test]
    fn a_run_may_cross_into_a_usable_neighbour_zone_but_not_into_a_mixed_one() {
        let mut bits = Bitmap::empty(2 * ZONE_UNITS);
        bits.set_range(0, ZONE_UNITS - 2, true);
        let z = Zones::load(&bits);
        assert_eq!(z.find_run(&bits, 0, 2 * ZONE_UNITS, 8, 0, Class::Data, 1), Some(ZONE_UNITS), "zone 0 is mixed");
        let z = Zones { used: vec![(ZONE_UNITS - 2) as u32, 0], owner: vec![Owner::Class(Class::Data), Owner::Nobody] };
        assert_eq!(z.find_run(&bits, 0, 2 * ZONE_UNITS, 8, 0, Class::Data, 1), Some(ZONE_UNITS - 2));
    }
}
