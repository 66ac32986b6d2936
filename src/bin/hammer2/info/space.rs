//! Total and free space as the master header's device table tells it, in bytes of file data
//! (one copy's worth): what a user can still store, not raw device bytes.
//!
//! The table records free allocation units per device. How those turn into room for data
//! depends on placement (see `copies::placement`):
//! - at most as many devices as copies: copy slot i of every block lives on device i % D,
//!   region i / D. Every slot takes one unit per unit of data, so the room left is the
//!   smallest slot's free space; a device holding several slots has its free units shared
//!   equally by its regions (every block puts one copy in each of them).
//! - more devices than copies: each block goes to the N devices with the most free space, so
//!   k units of data fit while the devices together can give k units to N distinct devices:
//!   the largest k with sum(min(free_d, k)) >= N * k.

use hammer2::copies::placement;
use hammer2_format::DeviceEntry;
use hammer2_format::layout::{UNIT, region_bounds};

pub struct SpaceView {
    /// Bytes of data a full filesystem holds.
    pub total: u64,
    /// Bytes of data that still fit with every block stored `copies` times.
    pub free: u64,
    /// Free bytes on all devices together, before copies are accounted for.
    pub raw_free: u64,
}

pub fn view(devices: &[DeviceEntry], copies: u8) -> SpaceView {
    let n = usize::from(copies.max(1));
    let d = devices.len();
    let raw_free = devices.iter().map(|e| e.free_units).sum::<u64>() * UNIT;
    if d == 0 {
        return SpaceView { total: 0, free: 0, raw_free };
    }
    let region_units = |e: &DeviceEntry, k: u8| {
        let (s, end) = region_bounds(e.size, e.regions, k);
        (end - s) / UNIT
    };
    let (total, free) = if placement::slots_are_fixed(d, copies.max(1)) {
        let slots = (0..n).map(|i| placement::fixed_slot(i, d)).map(|(dev, k)| (&devices[usize::from(dev)], k));
        let total = slots.clone().map(|(e, k)| region_units(e, k)).min().unwrap_or(0);
        let free = slots.map(|(e, _)| e.free_units / u64::from(e.regions.max(1))).min().unwrap_or(0);
        (total, free)
    } else {
        let total = devices.iter().map(|e| region_units(e, 0)).sum::<u64>() / n as u64;
        let free: Vec<u64> = devices.iter().map(|e| e.free_units).collect();
        (total, placement::spread_capacity(&free, n as u64))
    };
    SpaceView { total: total * UNIT, free: free * UNIT, raw_free }
}

#[cfg(test)]
mod tests {
    use hammer2::copies::placement::spread_capacity;

    #[test]
    fn spread_capacity_is_limited_by_the_devices_that_must_differ() {
        // Two copies over three devices: 10 units per device give 15 units of data.
        assert_eq!(spread_capacity(&[10, 10, 10], 2), 15);
        // One huge device cannot hold both copies of a block.
        assert_eq!(spread_capacity(&[100, 5, 5], 2), 10);
        assert_eq!(spread_capacity(&[0, 0, 0], 2), 0);
    }
}
