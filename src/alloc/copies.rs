//! Allocating the copies of a new block by the placement rule (`copies::placement`): the
//! allocator's half of placement, since it takes space. A slot whose device is failed or
//! absent gets a MISSING location: no space is taken and nothing is queued; resync fills it
//! in later.

use super::{Allocator, Class};
use crate::copies::placement::{Placement, free_domains, spread_capacity};
use crate::devices::DeviceSet;
use crate::error::{Error, Result};
use hammer2_format::blockref::Copies;
use hammer2_format::layout::UNIT;
use hammer2_format::{CopyState, Location};

impl Placement {
    /// (device, region) targets for the `n` copies of a new block, in slot order: the first
    /// `n` fixed slots, or else the writable devices with the most free space.
    fn targets(&self, alloc: &Allocator, devices: &DeviceSet, units: u64, n: u8) -> Vec<(u8, u8)> {
        if self.fixed() {
            // VC2: a block with fewer copies than N takes the first slots of the pinned rule.
            return self.fixed_slots().take(usize::from(n)).collect();
        }
        if self.is_free() {
            return free_targets(usize::from(n), alloc, devices, units);
        }
        let mut devs: Vec<u8> = (0..self.devices() as u8).collect();
        // Writable devices first, most free space first; index breaks ties.
        devs.sort_by_key(|&d| {
            let w = devices.get(d).is_some_and(|m| m.writable());
            (!w, std::cmp::Reverse(alloc.domain_free(d, 0)), d)
        });
        devs.into_iter().take(usize::from(n)).map(|d| (d, 0)).collect()
    }

    /// Allocates the `n` copies of a new block of `size` bytes (`n` is N but for file data
    /// with a copies setting of its own, VC2; at most `max_copies`).
    pub fn place(&self, alloc: &mut Allocator, devices: &DeviceSet, class: Class, size: u32, n: u8) -> Result<Copies> {
        let units = u64::from(size).div_ceil(UNIT);
        let mut copies = Copies::new();
        let targets = self.targets(alloc, devices, units, n);
        if targets.len() < usize::from(n) {
            // FP1: fewer domains than copies can take the block (never two copies in one).
            return Err(Error::NoSpace);
        }
        for (d, r) in targets {
            if devices.get(d).is_some_and(|m| m.writable()) {
                let e = alloc.alloc(d, r, class, units).ok_or(Error::NoSpace)?;
                copies.push(Location::valid(d, e.offset()));
            } else {
                copies.push(Location::missing(d));
            }
        }
        if !copies.iter().any(|l| l.state == CopyState::Valid) {
            return Err(Error::Mount("no writable device left: every copy would be missing".into()));
        }
        Ok(copies)
    }

    /// The region of `device` a MISSING copy in `slot` of a block with copies `copies` is
    /// filled in (resync): the slot's region when slots are fixed; under free placement the
    /// roomiest region of the device that holds no other copy of the block (FP1).
    pub fn missing_region(&self, alloc: &Allocator, device: u8, slot: usize, copies: &[Location]) -> u8 {
        if !self.is_free() {
            return self.region_of_slot(slot);
        }
        let taken: Vec<u8> = copies
            .iter()
            .filter(|l| l.is_valid() && l.device == device)
            .filter_map(|l| alloc.region_of(device, l.offset))
            .collect();
        let nregions = alloc.devs.get(usize::from(device)).map_or(1, |d| d.regions.len()) as u8;
        (0..nregions)
            .filter(|r| !taken.contains(r))
            .max_by_key(|&r| (alloc.domain_free(device, r), u8::MAX - r))
            .unwrap_or(0)
    }

    /// Where a copy moved off a device being removed goes (FP1), given the block's copies
    /// with the one to move marked MISSING on its old device: a writable device that takes
    /// new copies and is not that one, one holding no other copy of the block first, in a
    /// region holding none with room for `units`, roomiest first. None: nowhere.
    pub fn move_target(
        &self,
        alloc: &Allocator,
        devices: &DeviceSet,
        copies: &[Location],
        units: u64,
    ) -> Option<(u8, u8)> {
        let from: Vec<u8> = copies.iter().filter(|l| !l.is_valid()).map(|l| l.device).collect();
        let used = |d: u8| -> Vec<u8> {
            copies
                .iter()
                .filter(|l| l.is_valid() && l.device == d)
                .filter_map(|l| alloc.region_of(d, l.offset))
                .collect()
        };
        (0..devices.len() as u8)
            .filter(|&d| !from.contains(&d) && devices.get(d).is_some_and(|m| m.writable() && m.takes_new_copies()))
            .flat_map(|d| {
                let nregions = alloc.devs.get(usize::from(d)).map_or(0, |s| s.regions.len()) as u8;
                let taken = used(d);
                let alone = taken.is_empty();
                (0..nregions).filter(move |r| !taken.contains(r)).map(move |r| (d, r, alone))
            })
            .filter(|&(d, r, _)| alloc.domain_free(d, r) >= units)
            .max_by_key(|&(d, r, alone)| (alone, alloc.domain_free(d, r), std::cmp::Reverse(d)))
            .map(|(d, r, _)| (d, r))
    }

    /// Allocates a location in `region` of `device` for a MISSING copy (resync).
    pub fn place_missing(
        &self,
        alloc: &mut Allocator,
        device: u8,
        region: u8,
        class: Class,
        size: u32,
    ) -> Result<Location> {
        let units = u64::from(size).div_ceil(UNIT);
        let e = alloc.alloc(device, region, class, units).ok_or(Error::NoSpace)?;
        Ok(Location::valid(device, e.offset()))
    }

    /// Units that reservations may still claim on the writable devices: whole free slots
    /// (§10, S1) times the slot size. Each block needs one place in each of its copies'
    /// domains, so with fixed slots the fullest domain decides; with more devices than
    /// copies, the spread over the devices does (each block on `copies` distinct devices).
    /// Free units outside whole slots are not counted: they can take small blocks, but no
    /// reservation relies on them.
    pub fn capacity_units(&self, alloc: &Allocator, devices: &DeviceSet) -> u64 {
        let takes = |d: u8| devices.get(d).is_some_and(|m| m.writable() && m.takes_new_copies());
        let exists = |d: u8, r: u8| alloc.devs.get(usize::from(d)).is_some_and(|s| usize::from(r) < s.regions.len());
        self.capacity(|d, r| (takes(d) && exists(d, r)).then(|| alloc.domain_free_slots(d, r))) * alloc.slot()
    }

    /// Free units by the same rule, counted exactly: every free unit of each domain, in a
    /// whole free slot or not. What `statfs` reports as free (S5); reservations are counted
    /// against `capacity_units`, which only whole slots make.
    pub fn free_units(&self, alloc: &Allocator, devices: &DeviceSet) -> u64 {
        let takes = |d: u8| devices.get(d).is_some_and(|m| m.writable() && m.takes_new_copies());
        let exists = |d: u8, r: u8| alloc.devs.get(usize::from(d)).is_some_and(|s| usize::from(r) < s.regions.len());
        self.capacity(|d, r| (takes(d) && exists(d, r)).then(|| alloc.domain_free(d, r)))
    }

    /// The capacity rule, the one statement of it (the allocator's reservations and `info`
    /// use it): how many units of data fit when domain (device, region) has `free(d, r)`
    /// units free, None for a device that takes no new copies. With fixed slots the fullest
    /// slot's domain decides; with more devices than copies, k units fit while the devices
    /// together can give k units to N distinct devices (`spread_capacity`), each in region 0.
    pub fn capacity(&self, free: impl Fn(u8, u8) -> Option<u64>) -> u64 {
        if self.fixed() {
            return self.fixed_slots().filter_map(|(d, r)| free(d, r)).min().unwrap_or(0);
        }
        if self.is_free() {
            // FP1: every (device, region) is a domain of its own; a block needs N of them.
            let free: Vec<u64> = (0..self.devices() as u8)
                .flat_map(|d| (0..hammer2_format::layout::MAX_REGIONS as u8).map(move |r| (d, r)))
                .filter_map(|(d, r)| free(d, r))
                .collect();
            let n = u64::from(self.copies());
            return if (free.len() as u64) < n { 0 } else { spread_capacity(&free, n) };
        }
        let free: Vec<u64> = (0..self.devices() as u8).filter_map(|d| free(d, 0)).collect();
        let n = (usize::from(self.copies())).min(free.len()) as u64;
        spread_capacity(&free, n)
    }
}

/// Free placement's targets (FP1): the devices that take new copies, writable ones first and
/// roomiest first (ties: lower index), each with its regions roomiest first.
fn free_targets(n: usize, alloc: &Allocator, devices: &DeviceSet, units: u64) -> Vec<(u8, u8)> {
    let writable = |d: u8| devices.get(d).is_some_and(|m| m.writable());
    let takes = |d: u8| devices.get(d).is_some_and(|m| m.takes_new_copies());
    let nregions = |d: u8| alloc.devs.get(usize::from(d)).map_or(0, |s| s.regions.len()) as u8;
    let device_free = |d: u8| (0..nregions(d)).map(|r| alloc.domain_free(d, r)).sum::<u64>();
    let mut order: Vec<u8> = (0..devices.len() as u8).filter(|&d| takes(d)).collect();
    order.sort_by_key(|&d| (!writable(d), std::cmp::Reverse(device_free(d)), d));
    let regions = |d: u8| {
        let mut rs: Vec<(u8, bool)> = (0..nregions(d)).map(|r| (r, alloc.domain_free(d, r) >= units)).collect();
        rs.sort_by_key(|&(r, _)| (std::cmp::Reverse(alloc.domain_free(d, r)), r));
        rs
    };
    free_domains(n, &order, &regions, &writable)
}
