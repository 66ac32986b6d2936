//! Where the copies of a new block go.
//!
//! Copy slots: with at most as many devices as copies, slot i of every block lives on
//! device `i % D`, region `i / D` (so a single device with N copies keeps them in N regions,
//! and a device loss takes out the same slots of every block). With more devices than
//! copies, each block's copies go to the N writable devices with the most free space.
//!
//! A slot whose device is failed or absent gets a MISSING location: no space is taken and
//! nothing is queued; resync fills it in later.

use crate::alloc::{Allocator, Class};
use crate::devices::DeviceSet;
use crate::error::{Error, Result};
use hammer2_format::blockref::Copies;
use hammer2_format::layout::UNIT;
use hammer2_format::{CopyState, Location};

#[derive(Debug, Clone)]
pub struct Placement {
    copies: u8,
    ndev: usize,
}

impl Placement {
    pub fn new(ndev: usize, copies: u8) -> Placement {
        Placement { copies, ndev }
    }

    /// Regions each device needs for `copies` copies on `ndev` devices (mkfs layout).
    pub fn regions_for(ndev: usize, copies: u8, device: usize) -> u8 {
        let n = usize::from(copies);
        if ndev >= n { 1 } else { (n / ndev + usize::from(device < n % ndev)) as u8 }
    }

    fn fixed(&self) -> bool {
        self.ndev <= usize::from(self.copies)
    }

    /// The region a copy in slot `slot` on `device` uses.
    pub fn region_of_slot(&self, slot: usize) -> u8 {
        if self.fixed() { (slot / self.ndev) as u8 } else { 0 }
    }

    /// (device, region) targets for the copies of a new block, in slot order.
    fn targets(&self, alloc: &Allocator, devices: &DeviceSet) -> Vec<(u8, u8)> {
        let n = usize::from(self.copies);
        if self.fixed() {
            return (0..n).map(|i| ((i % self.ndev) as u8, (i / self.ndev) as u8)).collect();
        }
        let mut devs: Vec<u8> = (0..self.ndev as u8).collect();
        // Writable devices first, most free space first; index breaks ties.
        devs.sort_by_key(|&d| {
            let w = devices.get(d).is_some_and(|m| m.writable());
            (!w, std::cmp::Reverse(alloc.domain_free(d, 0)), d)
        });
        devs.into_iter().take(n).map(|d| (d, 0)).collect()
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
        let slot = alloc.slot();
        if self.fixed() {
            let n = usize::from(self.copies);
            return (0..n)
                .filter(|&i| devices.get((i % self.ndev) as u8).is_some_and(|m| m.writable()))
                .map(|i| alloc.domain_free_slots((i % self.ndev) as u8, (i / self.ndev) as u8))
                .min()
                .unwrap_or(0)
                * slot;
        }
        let free: Vec<u64> = (0..self.ndev as u8)
            .filter(|&d| devices.get(d).is_some_and(|m| m.writable()))
            .map(|d| alloc.domain_free_slots(d, 0))
            .collect();
        let n = (usize::from(self.copies)).min(free.len()) as u64;
        spread_capacity(&free, n) * slot
    }
}

/// Units of data that fit when every unit needs a unit on `n` distinct devices whose free
/// units are `free`: the largest k with sum(min(free_d, k)) >= n * k.
pub fn spread_capacity(free: &[u64], n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let (mut lo, mut hi) = (0u64, free.iter().sum::<u64>() / n + 1);
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if free.iter().map(|&f| f.min(mid)).sum::<u64>() >= n * mid { lo = mid } else { hi = mid }
    }
    lo
}
