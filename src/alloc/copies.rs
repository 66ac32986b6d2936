//! Allocating the copies of a new block by the placement rule (`copies::placement`): the
//! allocator's half of placement, since it takes space. A slot whose device is failed or
//! absent gets a MISSING location: no space is taken and nothing is queued; resync fills it
//! in later.

use super::{Allocator, Class};
use crate::copies::placement::{Placement, spread_capacity};
use crate::devices::DeviceSet;
use crate::error::{Error, Result};
use hammer2_format::blockref::Copies;
use hammer2_format::layout::UNIT;
use hammer2_format::{CopyState, Location};

impl Placement {
    /// (device, region) targets for the copies of a new block, in slot order: the fixed
    /// slots, or else the writable devices with the most free space.
    fn targets(&self, alloc: &Allocator, devices: &DeviceSet) -> Vec<(u8, u8)> {
        if self.fixed() {
            return self.fixed_slots().collect();
        }
        let mut devs: Vec<u8> = (0..self.devices() as u8).collect();
        // Writable devices first, most free space first; index breaks ties.
        devs.sort_by_key(|&d| {
            let w = devices.get(d).is_some_and(|m| m.writable());
            (!w, std::cmp::Reverse(alloc.domain_free(d, 0)), d)
        });
        devs.into_iter().take(usize::from(self.copies())).map(|d| (d, 0)).collect()
    }

    /// Allocates the copies of a new block of `size` bytes.
    pub fn place(&self, alloc: &mut Allocator, devices: &DeviceSet, class: Class, size: u32) -> Result<Copies> {
        let units = u64::from(size).div_ceil(UNIT);
        let mut copies = Copies::new();
        for (d, r) in self.targets(alloc, devices) {
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

    /// Allocates a location for the MISSING copy in `slot` of a block (resync).
    pub fn place_missing(
        &self,
        alloc: &mut Allocator,
        device: u8,
        slot: usize,
        class: Class,
        size: u32,
    ) -> Result<Location> {
        let units = u64::from(size).div_ceil(UNIT);
        let e = alloc.alloc(device, self.region_of_slot(slot), class, units).ok_or(Error::NoSpace)?;
        Ok(Location::valid(device, e.offset()))
    }

    /// Units that reservations may still claim on the writable devices: whole free slots
    /// (§10, S1) times the slot size. Each block needs one place in each of its copies'
    /// domains, so with fixed slots the fullest domain decides; with more devices than
    /// copies, the spread over the devices does (each block on `copies` distinct devices).
    /// Free units outside whole slots are not counted: they can take small blocks, but no
    /// reservation relies on them.
    pub fn capacity_units(&self, alloc: &Allocator, devices: &DeviceSet) -> u64 {
        let writable = |d: u8| devices.get(d).is_some_and(|m| m.writable());
        self.capacity(|d, r| writable(d).then(|| alloc.domain_free_slots(d, r))) * alloc.slot()
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
        let free: Vec<u64> = (0..self.devices() as u8).filter_map(|d| free(d, 0)).collect();
        let n = (usize::from(self.copies())).min(free.len()) as u64;
        spread_capacity(&free, n)
    }
}
