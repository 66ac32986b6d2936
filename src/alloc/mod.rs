//! The block allocator.
//!
//! Free space is a bitmap per device of 4 KiB units (`bits`: set = not available), loaded
//! at mount from the free-map tree and written back, leaf by leaf, by every commit that
//! changed it (see `freemap.rs`).
//!
//! The rule that keeps the previous root intact until the new one is durable:
//! **a unit freed by commit T is handed out again only after T's volume headers are
//! durable** (and after every pinned older tree that might still use it is unpinned).
//! Until then it stays set in `bits` and is also set in `pending`; the free map written by T
//! already shows it free (`bits & !pending`), because T's tree no longer references it.
//! Units allocated and freed within the same commit attempt were never referenced by a
//! durable tree, so they are released at once.
//!
//! Only the commit path allocates and frees (user operations only reserve space, see
//! `space.rs`), so one mutex around the allocator is never contended by I/O.

pub mod bitmap;
pub mod copies;
pub mod freemap;
pub mod space;
pub mod zones;

use bitmap::Bitmap;
use hammer2_format::layout::{FREEMAP_LEAF_UNITS, HEADER_SLOTS, UNIT, region_bounds};
use std::collections::{BTreeMap, BTreeSet, HashMap};
pub use zones::Class;
use zones::Zones;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Extent {
    pub device: u8,
    pub unit: u64,
    pub count: u64,
}

impl Extent {
    pub fn from_bytes(device: u8, offset: u64, size: u64) -> Extent {
        Extent { device, unit: offset / UNIT, count: size.div_ceil(UNIT) }
    }
    pub fn offset(&self) -> u64 {
        self.unit * UNIT
    }
}

#[derive(Debug, Clone)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    /// Where the next search of each class starts (indexed by `Class`).
    cursors: [u64; 2],
    /// The class found no room in its own or empty zones, and no free has given it room
    /// there since: go straight to the fallback instead of scanning the region again.
    crowded: [bool; 2],
    pub free: u64,
}

pub struct DeviceSpace {
    pub size: u64,
    pub bits: Bitmap,
    pub pending: Bitmap,
    pub regions: Vec<Region>,
    pub dirty_leaves: BTreeSet<u32>,
    zones: Zones,
}

impl DeviceSpace {
    /// A device's space with everything outside its regions allocated and the inside
    /// taken from `bits` (or all free, for a new filesystem).
    pub fn new(size: u64, nregions: u8, bits: Option<Bitmap>) -> DeviceSpace {
        let units = hammer2_format::freemap::leaves_for(size) as u64 * FREEMAP_LEAF_UNITS;
        let mut bits = bits.unwrap_or_else(|| {
            let mut b = Bitmap::full(units);
            for k in 0..nregions {
                let (s, e) = region_bounds(size, nregions, k);
                b.set_range(s / UNIT, (e - s) / UNIT, false);
            }
            b
        });
        let regions: Vec<Region> = (0..nregions)
            .map(|k| {
                let (s, e) = region_bounds(size, nregions, k);
                let (s, e) = (s / UNIT, e / UNIT);
                Region { start: s, end: e, cursors: [s; 2], crowded: [false; 2], free: bits.count_clear(s, e) }
            })
            .collect();
        // Units outside every region are never free, whatever a damaged free map says.
        let mut inside = Bitmap::empty(units);
        for r in &regions {
            inside.set_range(r.start, r.end - r.start, true);
        }
        for u in 0..units {
            if !inside.get(u) && !bits.get(u) {
                bits.set_range(u, 1, true);
            }
        }
        let zones = Zones::load(&bits);
        DeviceSpace { size, pending: Bitmap::empty(units), bits, regions, dirty_leaves: BTreeSet::new(), zones }
    }

    /// A device whose free map could not be read: nothing can be allocated on it.
    pub fn unusable(size: u64, nregions: u8) -> DeviceSpace {
        let units = hammer2_format::freemap::leaves_for(size) as u64 * FREEMAP_LEAF_UNITS;
        DeviceSpace::new(size, nregions, Some(Bitmap::full(units)))
    }

    fn region_of(&self, unit: u64) -> Option<usize> {
        self.regions.iter().position(|r| unit >= r.start && unit < r.end)
    }

    /// Units leave the working map's free space: allocated (or pending reuse).
    fn take(&mut self, unit: u64, count: u64, class: Class) {
        self.bits.set_range(unit, count, true);
        self.zones.taken(unit, count, class);
        if let Some(r) = self.region_of(unit) {
            self.regions[r].free -= count;
        }
    }

    /// Units become allocatable again.
    fn give(&mut self, unit: u64, count: u64) {
        self.bits.set_range(unit, count, false);
        let roomier = self.zones.given(unit, count);
        if let Some(r) = self.region_of(unit) {
            let r = &mut self.regions[r];
            r.free += count;
            // Only room in a class's own or empty zones ends its fallback; resetting on
            // every free would rescan a crowded device's zones after each one.
            for (crowded, roomier) in r.crowded.iter_mut().zip(roomier) {
                *crowded &= !roomier;
            }
        }
    }

    fn mark(&mut self, unit: u64, count: u64) {
        let first = unit / FREEMAP_LEAF_UNITS;
        let last = (unit + count - 1) / FREEMAP_LEAF_UNITS;
        for l in first..=last {
            self.dirty_leaves.insert(l as u32);
        }
    }

    pub fn free_units(&self) -> u64 {
        self.regions.iter().map(|r| r.free).sum()
    }
}

#[derive(Default)]
pub struct Allocator {
    pub devs: Vec<DeviceSpace>,
    /// Allocated by the open commit attempt: released at once if freed again, rolled back
    /// if the attempt fails.
    /// (device, first unit) -> units.
    fresh: HashMap<(u8, u64), u64>,
    /// Freed by the open commit attempt (still referenced by the durable tree).
    freed: Vec<Extent>,
    /// Freed by durable commits, waiting for pins older than their tid to go away.
    deferred: Vec<(u64, Extent)>,
    /// Trees pinned by long readers (online scrub/resync): tid -> count.
    pins: BTreeMap<u64, usize>,
    /// Extents given back after a free, waiting to be discarded (TRIM, see `take_trims`):
    /// (device, first unit) -> (tid of the commit that freed it, units). Disjoint; an
    /// extent allocated again leaves this map at once.
    trims: BTreeMap<(u8, u64), (u64, u64)>,
    /// Units of a slot: the largest block this filesystem writes, a power of two (§10, S1).
    /// Every block starts at a multiple of its own size rounded up to a power of two, so it
    /// lies inside one aligned slot. 0 (never set: mkfs, tools) means 1.
    slot: u64,
}

impl Allocator {
    pub fn new(devs: Vec<DeviceSpace>) -> Allocator {
        Allocator { devs, ..Default::default() }
    }

    /// Sets the slot size in units (a power of two; see `slot`).
    pub fn set_slot(&mut self, units: u64) {
        debug_assert!(units.is_power_of_two());
        self.slot = units;
    }

    pub fn slot(&self) -> u64 {
        self.slot.max(1)
    }

    /// Allocates `count` contiguous units for a block of `class` in region `region` of
    /// `device`: in the class's own zones or empty ones if they have room (see `zones.rs`),
    /// else wherever a run is free.
    pub fn alloc(&mut self, device: u8, region: u8, class: Class, count: u64) -> Option<Extent> {
        let d = self.devs.get_mut(usize::from(device))?;
        let r = d.regions.get_mut(usize::from(region))?;
        if r.free < count {
            return None;
        }
        let c = class as usize;
        // S1: a block starts at a multiple of its size rounded up to a power of two (at most
        // the slot), so it never straddles a slot boundary.
        let align = count.next_power_of_two().min(self.slot.max(1));
        let zoned = if r.crowded[c] {
            None
        } else {
            d.zones.find_run(&d.bits, r.start, r.end, count, r.cursors[c], class, align)
        };
        if zoned.is_none() {
            r.crowded[c] = true;
        }
        let unit = zoned.or_else(|| d.bits.find_run(r.start, r.end, count, r.cursors[c], align))?;
        r.cursors[c] = unit + count;
        d.take(unit, count, class);
        d.mark(unit, count);
        let e = Extent { device, unit, count };
        self.fresh.insert((device, unit), count);
        self.forget_trims(&e);
        Some(e)
    }

    /// Records a given-back extent for discarding, merged with the one before it when they
    /// touch and were freed by the same commit (a deleted large file is a few entries).
    fn remember_trim(&mut self, tid: u64, e: Extent) {
        if let Some((&(dev, u), &mut (t, ref mut n))) = self.trims.range_mut(..(e.device, e.unit)).next_back()
            && dev == e.device
            && t == tid
            && u + *n == e.unit
        {
            *n += e.count;
            return;
        }
        self.trims.insert((e.device, e.unit), (tid, e.count));
    }

    /// Units allocated again are no longer free: whatever waits to discard them must not
    /// (C5). Trim entries are disjoint and sorted, so the overlapping ones are the last few
    /// that start before the extent's end. Only the reallocated units leave an entry: the
    /// parts before and after it are still free and still discarded (a deleted large file
    /// is one merged entry, and one small allocation inside it must not cancel its discard).
    fn forget_trims(&mut self, e: &Extent) {
        let end = e.unit + e.count;
        let overlapping: Vec<(u64, u64, u64)> = self
            .trims
            .range((e.device, 0)..(e.device, end))
            .rev()
            .take_while(|&(&(_, u), &(_, n))| u + n > e.unit)
            .map(|(&(_, u), &(tid, n))| (u, tid, n))
            .collect();
        for (u, tid, n) in overlapping {
            self.trims.remove(&(e.device, u));
            if u < e.unit {
                self.trims.insert((e.device, u), (tid, e.unit - u));
            }
            if u + n > end {
                self.trims.insert((e.device, end), (tid, u + n - end));
            }
        }
    }

    /// The extents that may be discarded now that commit `durable_tid` is durable (C5): freed
    /// by a commit no newer than the oldest header slot a mount could still fall back to
    /// (`durable_tid - (HEADER_SLOTS - 1)`), not allocated again since, and no longer needed
    /// by a pinned tree (they were given back). Adjacent extents come back merged.
    pub fn take_trims(&mut self, durable_tid: u64) -> Vec<Extent> {
        let horizon = durable_tid.saturating_sub(HEADER_SLOTS as u64 - 1);
        let due: Vec<(u8, u64)> = self.trims.iter().filter(|(_, (tid, _))| *tid <= horizon).map(|(k, _)| *k).collect();
        let mut out: Vec<Extent> = Vec::new();
        for k in due {
            let Some((_, count)) = self.trims.remove(&k) else { continue };
            match out.last_mut() {
                Some(last) if last.device == k.0 && last.unit + last.count == k.1 => last.count += count,
                _ => out.push(Extent { device: k.0, unit: k.1, count }),
            }
        }
        out
    }

    /// Frees an extent named by a tree that may be damaged (fsck's repairs): only when it
    /// lies inside one of its device's regions and is allocated; anything else is ignored.
    pub fn free_if_allocated_inside(&mut self, e: Extent) {
        let inside = self
            .devs
            .get(usize::from(e.device))
            .is_some_and(|d| d.regions.iter().any(|r| e.unit >= r.start && e.unit + e.count <= r.end));
        if inside && self.is_allocated(&e) {
            self.free(e);
        }
    }

    /// Frees an extent that the tree being committed no longer references.
    pub fn free(&mut self, e: Extent) {
        let Some(d) = self.devs.get_mut(usize::from(e.device)) else {
            return;
        };
        if e.unit + e.count > d.bits.units() {
            return;
        }
        // S5: units outside every region are never free (`DeviceSpace::new` sets them): only
        // a damaged reference names them (a copy past the end of its device, or in the
        // header area), and the commit that drops it must not clear them.
        if d.region_of(e.unit).is_none_or(|r| e.unit + e.count > d.regions[r].end) {
            tracing::error!(device = e.device, unit = e.unit, count = e.count, "freeing a block outside every region");
            return;
        }
        // Freeing what is not allocated (or already freed) would count space twice: only a
        // damaged tree asks for it, and the free map is then rebuilt by fsck.
        if !d.bits.range_set(e.unit, e.count) || !d.pending.range_clear(e.unit, e.count) {
            tracing::error!(device = e.device, unit = e.unit, count = e.count, "freeing a block that is not allocated");
            return;
        }
        d.mark(e.unit, e.count);
        if self.fresh.remove(&(e.device, e.unit)).is_some() {
            d.give(e.unit, e.count);
        } else {
            d.pending.set_range(e.unit, e.count, true);
            self.freed.push(e);
        }
    }

    /// The commit attempt failed: undo its allocations and frees.
    pub fn rollback(&mut self) {
        for ((device, unit), count) in std::mem::take(&mut self.fresh) {
            let d = &mut self.devs[usize::from(device)];
            d.give(unit, count);
            d.mark(unit, count);
        }
        for e in std::mem::take(&mut self.freed) {
            let d = &mut self.devs[usize::from(e.device)];
            d.pending.set_range(e.unit, e.count, false);
            d.mark(e.unit, e.count);
        }
    }

    /// Commit `tid` is durable: its allocations are now part of the durable tree, and its
    /// frees become reusable as soon as no older pinned tree can reference them.
    pub fn committed(&mut self, tid: u64) {
        self.fresh.clear();
        for e in std::mem::take(&mut self.freed) {
            self.deferred.push((tid, e));
        }
        self.release_unpinned();
    }

    fn release_unpinned(&mut self) {
        let min_pin = self.pins.keys().next().copied();
        let mut keep = Vec::new();
        for (tid, e) in std::mem::take(&mut self.deferred) {
            // A block freed by commit `tid` is absent from every tree at or after `tid`; only
            // a pinned tree older than `tid` can still use it.
            if min_pin.is_some_and(|p| p < tid) {
                keep.push((tid, e));
                continue;
            }
            let d = &mut self.devs[usize::from(e.device)];
            d.give(e.unit, e.count);
            d.pending.set_range(e.unit, e.count, false);
            self.remember_trim(tid, e);
        }
        self.deferred = keep;
    }

    pub fn pin(&mut self, tid: u64) {
        *self.pins.entry(tid).or_default() += 1;
    }

    pub fn unpin(&mut self, tid: u64) {
        if let Some(c) = self.pins.get_mut(&tid) {
            *c -= 1;
            if *c == 0 {
                self.pins.remove(&tid);
            }
        }
        self.release_unpinned();
    }

    /// The region of `device` that byte `offset` lies in.
    pub fn region_of(&self, device: u8, offset: u64) -> Option<u8> {
        self.devs.get(usize::from(device))?.region_of(offset / UNIT).map(|r| r as u8)
    }

    /// The first byte of region `region` of `device` (0 when there is no such region).
    pub fn region_start(&self, device: u8, region: u8) -> u64 {
        self.devs
            .get(usize::from(device))
            .and_then(|d| d.regions.get(usize::from(region)))
            .map_or(0, |r| r.start * UNIT)
    }

    /// Free units of each (device, region), for placement and space accounting.
    pub fn domain_free(&self, device: u8, region: u8) -> u64 {
        self.devs.get(usize::from(device)).and_then(|d| d.regions.get(usize::from(region))).map_or(0, |r| r.free)
    }

    /// Units of a device's regions in use (allocated, or freed and waiting for reuse): what a
    /// scrub of the device reads at most.
    pub fn allocated_units(&self, device: u8) -> u64 {
        self.devs.get(usize::from(device)).map_or(0, |d| d.regions.iter().map(|r| r.end - r.start - r.free).sum())
    }

    /// Whole free slots of a (device, region): what reservations are counted against (S1).
    pub fn domain_free_slots(&self, device: u8, region: u8) -> u64 {
        let Some(d) = self.devs.get(usize::from(device)) else { return 0 };
        let Some(r) = d.regions.get(usize::from(region)) else { return 0 };
        d.bits.count_free_slots(r.start, r.end, self.slot())
    }

    /// Free units of a device as the free map of the commit being written will say:
    /// clear units plus pending frees (which that free map already shows free).
    pub fn device_free_on_disk(&self, device: u8) -> u64 {
        let Some(d) = self.devs.get(usize::from(device)) else {
            return 0;
        };
        d.regions.iter().map(|r| r.free + (r.end - r.start - d.pending.count_clear(r.start, r.end))).sum()
    }

    /// Units freed but not yet reusable (waiting for a commit to become durable or a pin).
    pub fn pending_units(&self) -> u64 {
        self.freed.iter().map(|e| e.count).sum::<u64>() + self.deferred.iter().map(|(_, e)| e.count).sum::<u64>()
    }

    /// True when the unit range is allocated in the working map (for checks in tests/fsck).
    pub fn is_allocated(&self, e: &Extent) -> bool {
        self.devs.get(usize::from(e.device)).is_some_and(|d| d.bits.range_set(e.unit, e.count))
    }

    /// The on-disk content of free-map leaf `leaf` of `device`: allocated units, with the
    /// units freed by this commit (and earlier, still pending) shown free.
    pub fn leaf_bytes(&self, device: u8, leaf: u32) -> Vec<u8> {
        let d = &self.devs[usize::from(device)];
        let start = u64::from(leaf) * FREEMAP_LEAF_UNITS;
        let mut bits = d.bits.bytes(start, FREEMAP_LEAF_UNITS);
        let pend = d.pending.bytes(start, FREEMAP_LEAF_UNITS);
        for (b, p) in bits.iter_mut().zip(pend) {
            *b &= !p;
        }
        bits
    }

    pub fn take_dirty_leaves(&mut self) -> Vec<(u8, u32)> {
        let mut out = Vec::new();
        for (i, d) in self.devs.iter_mut().enumerate() {
            for l in std::mem::take(&mut d.dirty_leaves) {
                out.push((i as u8, l));
            }
        }
        out
    }

    pub fn has_dirty_leaves(&self) -> bool {
        self.devs.iter().any(|d| !d.dirty_leaves.is_empty())
    }

    /// Marks leaves dirty again (a failed commit attempt must rewrite them next time).
    pub fn mark_leaves_dirty(&mut self, leaves: &[(u8, u32)]) {
        for &(d, l) in leaves {
            if let Some(d) = self.devs.get_mut(usize::from(d)) {
                d.dirty_leaves.insert(l);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_device() -> Allocator {
        Allocator::new(vec![DeviceSpace::new(64 << 20, 1, None)])
    }

    fn drain(a: &mut Allocator) -> Vec<Extent> {
        std::iter::from_fn(|| a.alloc(0, 0, Class::Data, 16)).collect()
    }

    /// C5: a freed extent is discarded only once every header slot a mount could fall back
    /// to is at least as new as the commit that freed it, and never after it was handed out
    /// again.
    #[test]
    fn a_freed_extent_is_trimmed_only_when_no_header_slot_needs_it_and_never_once_reused() {
        let mut a = one_device();
        let x = a.alloc(0, 0, Class::Data, 16).unwrap();
        let y = a.alloc(0, 0, Class::Data, 16).unwrap();
        a.committed(1);
        a.free(x);
        a.free(y);
        a.committed(2);
        let slots = HEADER_SLOTS as u64;
        for tid in 2..2 + slots - 1 {
            assert!(a.take_trims(tid).is_empty(), "commit {tid}: an older slot still names a tree using them");
        }
        let merged = a.take_trims(2 + slots - 1);
        assert_eq!(merged, vec![Extent { device: 0, unit: x.unit, count: 32 }], "adjacent frees come back as one");
        assert!(a.take_trims(100).is_empty(), "and only once");

        // Freed, then handed out again before it was due: never trimmed.
        let z = a.alloc(0, 0, Class::Data, 16).unwrap();
        a.committed(10);
        a.free(z);
        a.committed(11);
        let again = drain(&mut a);
        assert!(again.iter().any(|e| e.unit <= z.unit && z.unit < e.unit + e.count), "z is handed out again");
        assert!(a.take_trims(1000).is_empty(), "a unit in use is never discarded");
    }

    /// Regression: one unit reallocated inside a large freed extent (a deleted big file,
    /// merged into one entry) cancelled the discard of the whole extent.
    #[test]
    fn a_reallocation_inside_a_freed_extent_keeps_the_rest_of_it_for_the_trim() {
        let mut a = one_device();
        let big = a.alloc(0, 0, Class::Data, 64).unwrap();
        let _rest = drain(&mut a);
        a.committed(1);
        a.free(big);
        a.committed(2);
        // Commit 3 hands out units of it again (nothing else is free).
        let again = a.alloc(0, 0, Class::Data, 4).unwrap();
        assert!(big.unit <= again.unit && again.unit + again.count <= big.unit + big.count, "{again:?} in {big:?}");
        a.committed(3);
        let trims = a.take_trims(100);
        let trimmed: u64 = trims.iter().map(|e| e.count).sum();
        assert_eq!(trimmed, big.count - again.count, "{trims:?}");
        for t in &trims {
            assert!(t.unit + t.count <= again.unit || t.unit >= again.unit + again.count, "{t:?} overlaps {again:?}");
        }
    }

    /// A pinned older tree (online scrub/resync) keeps its blocks from being trimmed too.
    #[test]
    fn a_pinned_tree_keeps_its_freed_blocks_from_the_trim() {
        let mut a = one_device();
        let x = a.alloc(0, 0, Class::Data, 16).unwrap();
        a.committed(1);
        a.pin(1);
        a.free(x);
        a.committed(2);
        assert!(a.take_trims(50).is_empty(), "pinned: not given back, not trimmed");
        a.unpin(1);
        assert_eq!(a.take_trims(50), vec![x]);
    }

    #[test]
    fn a_block_freed_by_a_commit_is_not_handed_out_before_that_commit_is_durable() {
        let mut a = one_device();
        let live = a.alloc(0, 0, Class::Data, 16).unwrap();
        a.committed(1);
        a.free(live); // commit 2 no longer references it; commit 1 (durable) still does
        let rest = drain(&mut a);
        assert!(!rest.is_empty());
        assert!(rest.iter().all(|e| e.unit + e.count <= live.unit || e.unit >= live.unit + live.count));
        a.committed(2);
        assert_eq!(a.alloc(0, 0, Class::Data, 16), Some(live), "reusable once commit 2 is durable");
    }

    #[test]
    fn a_block_allocated_and_freed_in_one_commit_is_reusable_at_once() {
        let mut a = one_device();
        let e = a.alloc(0, 0, Class::Data, 16).unwrap();
        a.free(e);
        let rest = drain(&mut a);
        assert!(rest.contains(&e));
    }

    #[test]
    fn a_pinned_tree_keeps_blocks_freed_after_it() {
        let mut a = one_device();
        let live = a.alloc(0, 0, Class::Data, 16).unwrap();
        a.committed(1);
        a.pin(1);
        a.free(live);
        a.committed(2);
        assert!(!drain(&mut a).contains(&live), "an online scrub of tree 1 may still read it");
        a.unpin(1);
        assert_eq!(a.alloc(0, 0, Class::Data, 16), Some(live));
    }

    #[test]
    fn a_failed_commit_rolls_back_its_allocations_and_frees() {
        let mut a = one_device();
        let live = a.alloc(0, 0, Class::Data, 16).unwrap();
        a.committed(1);
        let free_before = a.domain_free(0, 0);
        a.free(live);
        let new = a.alloc(0, 0, Class::Data, 32).unwrap();
        a.rollback();
        assert_eq!(a.domain_free(0, 0), free_before);
        assert!(a.is_allocated(&live), "still referenced by the durable commit");
        assert!(!a.is_allocated(&new));
        assert_eq!(a.leaf_bytes(0, 0), {
            let mut b = one_device();
            b.alloc(0, 0, Class::Data, 16);
            b.leaf_bytes(0, 0)
        });
    }

    /// A damaged reference may name a copy past the end of its device or in the header area;
    /// the commit that drops it frees nothing there (fsck's fuzz found a repair leaving such
    /// a unit marked free).
    #[test]
    fn freeing_units_outside_every_region_leaves_them_allocated() {
        let mut a = one_device();
        a.committed(1);
        let units = (64u64 << 20) / UNIT;
        let past_end = Extent { device: 0, unit: units + 77, count: 1 };
        let header_area = Extent { device: 0, unit: 3, count: 1 };
        for e in [past_end, header_area] {
            assert!(a.is_allocated(&e), "{e:?} starts allocated");
            a.free(e);
            a.committed(2);
            assert!(a.is_allocated(&e), "{e:?}");
            assert!(hammer2_format::freemap::get(&a.leaf_bytes(0, 0), e.unit), "{e:?} stays set in the free map");
        }
    }

    #[test]
    fn the_free_map_of_a_commit_shows_its_frees_as_free() {
        let mut a = one_device();
        let live = a.alloc(0, 0, Class::Data, 16).unwrap();
        a.committed(1);
        a.free(live);
        let leaf = a.leaf_bytes(0, 0);
        assert!(!hammer2_format::freemap::get(&leaf, live.unit), "commit 2's tree no longer uses it");
        assert!(a.is_allocated(&live), "but it is not handed out yet");
    }

    #[test]
    fn a_class_with_no_room_in_its_zones_takes_free_units_anywhere() {
        let mut a = one_device();
        let all = drain(&mut a);
        a.committed(1);
        let hole = all[all.len() / 2];
        a.free(hole);
        a.committed(2);
        // Every zone is data's and none is empty: metadata goes where the free units are.
        assert_eq!(a.alloc(0, 0, Class::Meta, 16), Some(hole), "placement never causes ENOSPC");
    }

    #[test]
    fn metadata_and_data_of_one_commit_go_to_separate_zones() {
        let mut a = one_device();
        let (mut meta, mut data) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            meta.push(a.alloc(0, 0, Class::Meta, 1).unwrap());
            data.push(a.alloc(0, 0, Class::Data, 1).unwrap());
        }
        let zone = |e: &Extent| e.unit / zones::ZONE_UNITS;
        assert!(meta.windows(2).all(|w| w[1].unit == w[0].unit + 1), "inode blocks back to back");
        assert!(meta.iter().all(|m| data.iter().all(|d| zone(m) != zone(d))));
    }
}

#[cfg(test)]
mod slots {
    use super::*;

    #[test]
    fn no_block_straddles_a_slot_so_each_takes_at_most_one_whole_free_slot() {
        // S1: with 1-unit blocks scattered over the region, a 16-unit block still fits
        // wherever the capacity counted a whole free slot, and never across two slots.
        let mut a = Allocator::new(vec![DeviceSpace::new(64 << 20, 1, None)]);
        a.set_slot(16);
        let small: Vec<Extent> = std::iter::from_fn(|| a.alloc(0, 0, Class::Meta, 3)).collect();
        a.committed(1);
        // Free every other small block: lots of free units, no whole free slot.
        for e in small.iter().step_by(2) {
            a.free(*e);
        }
        a.committed(2);
        assert!(a.domain_free(0, 0) > 16 * 100, "plenty of free units");
        assert_eq!(a.domain_free_slots(0, 0), 0, "but no whole free slot");
        assert!(small.iter().all(|e| e.unit / 16 == (e.unit + e.count - 1) / 16), "no block straddles a slot");
        assert_eq!(a.alloc(0, 0, Class::Data, 16), None);
        // Free one whole slot's blocks: exactly one 16-unit block now fits, in that slot.
        let slot = small[10].unit / 16;
        for e in small.iter().filter(|e| e.unit / 16 == slot) {
            a.free(*e);
        }
        a.committed(3);
        assert_eq!(a.domain_free_slots(0, 0), 1);
        let big = a.alloc(0, 0, Class::Data, 16).expect("the counted slot takes a whole block");
        assert_eq!(big.unit, slot * 16);
    }
}

#[cfg(test)]
mod robustness {
    use super::*;

    #[test]
    fn freeing_twice_or_freeing_free_space_counts_nothing() {
        let mut a = Allocator::new(vec![DeviceSpace::new(64 << 20, 1, None)]);
        let free0 = a.domain_free(0, 0);
        let e = a.alloc(0, 0, Class::Data, 16).unwrap();
        a.committed(1);
        a.free(e);
        a.free(e);
        a.committed(2);
        assert_eq!(a.domain_free(0, 0), free0);
        a.free(e);
        assert_eq!(a.domain_free(0, 0), free0, "freeing free space changes nothing");
    }
}
