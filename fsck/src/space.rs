//! The free-space map against the set of reachable blocks.
//!
//! During the walk every valid copy of every block marks its units in `reach`, a sparse
//! bitmap kept in free-map-leaf-sized chunks (so a location far beyond any device, from a
//! damaged reference, costs one chunk, not a bitmap of that size). A unit marked twice is
//! a block referenced twice. The free-map leaves read during the walk are kept; afterwards
//! each leaf is compared word by word with what it should say: exactly the reachable units,
//! plus every unit outside the device's regions.

use crate::report::{FindingId, Findings, Problem};
use hammer2::repair::Bitmap;
use hammer2_format::freemap::{self, LEAF_WORDS, WORD_BITS};
use hammer2_format::layout::{FREEMAP_LEAF_SIZE, FREEMAP_LEAF_UNITS, UNIT, region_bounds};
use std::collections::{BTreeMap, HashMap};

/// A device claiming more free-map leaves than this (8 PiB) is not believed.
pub const MAX_LEAVES: u64 = 1 << 24;

/// A sparse bitmap of units per device, in chunks of one free-map leaf.
#[derive(Default)]
pub struct UnitMap {
    chunks: HashMap<(u8, u64), Box<[u64]>>,
}

impl UnitMap {
    /// Sets `count` units from `unit`; returns how many of them were already set.
    pub fn mark(&mut self, device: u8, unit: u64, count: u64) -> u64 {
        let mut already = 0;
        let end = unit.saturating_add(count);
        let mut u = unit;
        while u < end {
            let leaf = u / FREEMAP_LEAF_UNITS;
            let stop = end.min((leaf + 1).saturating_mul(FREEMAP_LEAF_UNITS));
            let w = self.chunks.entry((device, leaf)).or_insert_with(|| vec![0u64; LEAF_WORDS].into());
            for v in u..stop {
                let i = (v % FREEMAP_LEAF_UNITS) as usize;
                let bit = 1u64 << (i % 64);
                already += u64::from(w[i / 64] & bit != 0);
                w[i / 64] |= bit;
            }
            u = stop;
        }
        already
    }

    pub fn get(&self, device: u8, unit: u64) -> bool {
        self.chunks.get(&(device, unit / FREEMAP_LEAF_UNITS)).is_some_and(|w| {
            let i = (unit % FREEMAP_LEAF_UNITS) as usize;
            w[i / 64] & (1 << (i % 64)) != 0
        })
    }

    fn word(&self, device: u8, leaf: u64, w: usize) -> u64 {
        self.chunks.get(&(device, leaf)).map_or(0, |c| c[w])
    }

    /// Chunks of one device, by leaf number.
    fn leaves_of(&self, device: u8) -> impl Iterator<Item = (u64, &[u64])> {
        self.chunks.iter().filter(move |((d, _), _)| *d == device).map(|((_, l), w)| (*l, &w[..]))
    }
}

/// What the check knows about one device's geometry (from the master's device table).
#[derive(Debug, Clone)]
pub struct Geometry {
    pub index: u8,
    pub name: String,
    pub size: u64,
    pub regions: u8,
    pub recorded_free: u64,
}

impl Geometry {
    pub fn leaves(&self) -> u64 {
        u64::from(hammer2_format::freemap::leaves_for(self.size))
    }

    /// Bit mask of the units of `[u0, u0 + 64)` that lie inside a region.
    fn inside_word(&self, u0: u64) -> u64 {
        let mut m = 0u64;
        for k in 0..self.regions {
            let (s, e) = region_bounds(self.size, self.regions, k);
            let (s, e) = (s / UNIT, e / UNIT);
            let lo = s.max(u0);
            let hi = e.min(u0 + 64);
            if lo < hi {
                let n = hi - lo;
                let bits = if n == 64 { u64::MAX } else { ((1u64 << n) - 1) << (lo - u0) };
                m |= bits;
            }
        }
        m
    }

    pub fn inside(&self, unit: u64, count: u64) -> bool {
        (0..self.regions).any(|k| {
            let (s, e) = region_bounds(self.size, self.regions, k);
            unit >= s / UNIT && unit.saturating_add(count) <= e / UNIT
        })
    }
}

/// A free-map leaf as read from the tree.
pub struct Leaf {
    pub bits: Vec<u8>,
    pub recorded_free: u64,
}

#[derive(Default)]
pub struct Space {
    pub reach: UnitMap,
    /// Free-map leaves that were read, by (device, leaf).
    pub leaves: BTreeMap<(u64, u64), Leaf>,
    /// Some part of the free map could not be read: its missing leaves are not reported
    /// one by one, and a rebuild cannot lean on it.
    pub freemap_incomplete: bool,
    /// Units used twice: (device, unit, count), for the owner pass.
    pub shared: Vec<(u8, u64, u64)>,
}

/// The outcome of the comparison, for the repair plan.
#[derive(Debug, Default, Clone)]
pub struct Differences {
    pub leaked_units: u64,
    pub marked_free_units: u64,
    pub leaf_problems: u64,
    pub header_count_problems: u64,
    /// Findings a rebuilt free map resolves; true for leaks (which a cautious rebuild keeps).
    pub ids: Vec<(FindingId, bool)>,
}

impl Differences {
    pub fn any(&self) -> bool {
        !self.ids.is_empty()
    }
}

impl Space {
    /// Marks one copy; returns the number of its units that were already used.
    pub fn mark(&mut self, device: u8, offset: u64, size: u32) -> u64 {
        let unit = offset / UNIT;
        let count = u64::from(size).div_ceil(UNIT);
        let already = self.reach.mark(device, unit, count);
        if already > 0 {
            self.shared.push((device, unit, count));
        }
        already
    }

    /// Compares every free-map leaf with the reachable set.
    pub fn compare(&self, geo: &[Geometry], findings: &mut Findings) -> Differences {
        let mut diff = Differences::default();
        for (d, l) in self.leaves.keys() {
            let ok = geo.get(*d as usize).is_some_and(|g| *l < g.leaves());
            if !ok {
                let id =
                    findings.add(Problem::FreeMapLeaf { device: *d, leaf: *l, why: "no such device or leaf".into() });
                diff.ids.push((id, false));
                diff.leaf_problems += 1;
            }
        }
        for g in geo {
            let leaves = g.leaves();
            if leaves > MAX_LEAVES {
                findings.add(Problem::DeviceSize { device: g.name.clone(), recorded: g.size, actual: 0 });
                continue;
            }
            let mut runs = Runs::default();
            let mut free_inside = 0u64;
            let mut complete = true;
            for l in 0..leaves {
                let Some(leaf) = self.leaves.get(&(u64::from(g.index), l)) else {
                    complete = false;
                    runs.flush(g, findings, &mut diff);
                    if !self.freemap_incomplete {
                        let id = findings.add(Problem::FreeMapLeaf {
                            device: u64::from(g.index),
                            leaf: l,
                            why: "missing from the free map".into(),
                        });
                        diff.ids.push((id, false));
                        diff.leaf_problems += 1;
                    }
                    continue;
                };
                let counted = hammer2_format::freemap::count_free(&leaf.bits);
                if counted != leaf.recorded_free {
                    let id = findings.add(Problem::FreeMapLeaf {
                        device: u64::from(g.index),
                        leaf: l,
                        why: format!("records {} free units, its bitmap has {counted}", leaf.recorded_free),
                    });
                    diff.ids.push((id, false));
                    diff.leaf_problems += 1;
                }
                for (w, disk) in freemap::words(&leaf.bits).enumerate() {
                    let u0 = l * FREEMAP_LEAF_UNITS + (w as u64) * WORD_BITS;
                    let inside = g.inside_word(u0);
                    let want = self.reach.word(g.index, l, w) | !inside;
                    free_inside += u64::from((!disk & inside).count_ones());
                    if disk == want {
                        runs.flush(g, findings, &mut diff);
                        continue;
                    }
                    for b in 0..64 {
                        let (have, need) = (disk >> b & 1 == 1, want >> b & 1 == 1);
                        let kind = match (have, need) {
                            (true, false) => Some(RunKind::Leaked),
                            (false, true) => Some(RunKind::MarkedFree),
                            _ => None,
                        };
                        runs.push(kind, u0 + b, g, findings, &mut diff);
                    }
                }
            }
            runs.flush(g, findings, &mut diff);
            if complete && free_inside != g.recorded_free {
                let id = findings.add(Problem::HeaderFreeCount {
                    device: g.name.clone(),
                    recorded: g.recorded_free,
                    actual: free_inside,
                });
                diff.ids.push((id, false));
                diff.header_count_problems += 1;
            }
        }
        diff
    }

    /// Units of every device that the rebuilt free map must mark as used: the reachable
    /// blocks, and, when `conservative` (part of the tree could not be read, so blocks
    /// below it are unknown), everything the on-disk free map marks as well (a leaf that
    /// could not be read counts as fully used).
    pub fn used_bitmaps(&self, geo: &[Geometry], conservative: bool) -> Vec<Bitmap> {
        geo.iter()
            .map(|g| {
                let mut bm = hammer2::repair::used_bitmap(g.size);
                let leaves = g.leaves().min(MAX_LEAVES);
                for l in 0..leaves {
                    let mut words: Vec<u64> = (0..LEAF_WORDS).map(|w| self.reach.word(g.index, l, w)).collect();
                    if conservative {
                        match self.leaves.get(&(u64::from(g.index), l)) {
                            Some(leaf) => {
                                for (word, disk) in words.iter_mut().zip(freemap::words(&leaf.bits)) {
                                    *word |= disk;
                                }
                            }
                            None => words.iter_mut().for_each(|w| *w = u64::MAX),
                        }
                    }
                    if words.iter().all(|w| *w == 0) {
                        continue;
                    }
                    bm.load_bytes(l * FREEMAP_LEAF_UNITS, &freemap::bytes_of_words(&words));
                }
                bm
            })
            .collect()
    }

    /// Reachable units of a device (for tests and summaries).
    pub fn reachable_units(&self, device: u8) -> u64 {
        self.reach.leaves_of(device).map(|(_, w)| w.iter().map(|x| u64::from(x.count_ones())).sum::<u64>()).sum()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RunKind {
    Leaked,
    MarkedFree,
}

/// Coalesces unit-by-unit differences into ranges, one finding per range.
#[derive(Default)]
struct Runs {
    cur: Option<(RunKind, u64, u64)>,
}

impl Runs {
    fn push(&mut self, kind: Option<RunKind>, unit: u64, g: &Geometry, f: &mut Findings, d: &mut Differences) {
        match (kind, self.cur) {
            (Some(k), Some((ck, start, n))) if k == ck && start + n == unit => self.cur = Some((ck, start, n + 1)),
            (Some(k), _) => {
                self.flush(g, f, d);
                self.cur = Some((k, unit, 1));
            }
            (None, _) => self.flush(g, f, d),
        }
    }

    fn flush(&mut self, g: &Geometry, f: &mut Findings, d: &mut Differences) {
        let Some((kind, start, n)) = self.cur.take() else { return };
        let (device, offset, bytes) = (g.name.clone(), start * UNIT, n * UNIT);
        match kind {
            RunKind::Leaked => {
                d.leaked_units += n;
                let id = f.add(Problem::Leaked { device, offset, bytes });
                d.ids.push((id, true));
            }
            RunKind::MarkedFree => {
                d.marked_free_units += n;
                let id = f.add(Problem::MarkedFree { device, offset, bytes });
                d.ids.push((id, false));
            }
        }
    }
}

/// A free-map leaf's content decoded from a block: `None` when the size is wrong.
pub fn leaf_from(bytes: &[u8], recorded_free: u64) -> Option<Leaf> {
    (bytes.len() == FREEMAP_LEAF_SIZE).then(|| Leaf { bits: bytes.to_vec(), recorded_free })
}
