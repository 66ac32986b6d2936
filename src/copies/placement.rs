//! Where the copies of a block go: the one statement of the placement rule, pure (no
//! allocator, no devices). Allocating the copies of a new block by this rule is the
//! allocator's (`alloc/copies.rs`); fsck, `info` and resync use the rule to check or fill a
//! block's copies.
//!
//! Copy slots: with at most as many devices as copies, slot i of every block lives on
//! device `i % D`, region `i / D` (so a single device with N copies keeps them in N regions,
//! and a device loss takes out the same slots of every block). With more devices than
//! copies, each block's copies go to the N writable devices with the most free space, each
//! in region 0.

#[derive(Debug, Clone)]
pub struct Placement {
    copies: u8,
    ndev: usize,
}

/// The (device, region) of copy slot `slot` when slots are fixed (at most as many devices
/// as copies): device `slot % ndev`, region `slot / ndev`.
pub fn fixed_slot(slot: usize, ndev: usize) -> (u8, u8) {
    ((slot % ndev) as u8, (slot / ndev) as u8)
}

/// True when every block's copy slot i has a fixed device and region (`fixed_slot`): at
/// most as many devices as copies.
pub fn slots_are_fixed(ndev: usize, copies: u8) -> bool {
    ndev <= usize::from(copies)
}

impl Placement {
    pub fn new(ndev: usize, copies: u8) -> Placement {
        Placement { copies, ndev }
    }

    pub fn copies(&self) -> u8 {
        self.copies
    }

    pub fn devices(&self) -> usize {
        self.ndev
    }

    /// Regions each device needs for `copies` copies on `ndev` devices (mkfs layout): as
    /// many as fixed slots land on it.
    pub fn regions_for(ndev: usize, copies: u8, device: usize) -> u8 {
        let n = usize::from(copies);
        if ndev >= n { 1 } else { (n / ndev + usize::from(device < n % ndev)) as u8 }
    }

    /// True when slots have fixed devices and regions (see the module comment).
    pub fn fixed(&self) -> bool {
        slots_are_fixed(self.ndev, self.copies)
    }

    /// The (device, region) of every copy slot when slots are fixed, in slot order.
    pub fn fixed_slots(&self) -> impl Iterator<Item = (u8, u8)> + '_ {
        (0..usize::from(self.copies)).map(|i| fixed_slot(i, self.ndev))
    }

    /// The region a copy in slot `slot` uses.
    pub fn region_of_slot(&self, slot: usize) -> u8 {
        if self.fixed() { fixed_slot(slot, self.ndev).1 } else { 0 }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_slots_go_round_the_devices_then_to_the_next_region() {
        let p = Placement::new(2, 3);
        assert_eq!(p.fixed_slots().collect::<Vec<_>>(), vec![(0, 0), (1, 0), (0, 1)]);
        assert_eq!(Placement::regions_for(2, 3, 0), 2);
        assert_eq!(Placement::regions_for(2, 3, 1), 1);
        assert!(!Placement::new(3, 2).fixed());
        assert_eq!(Placement::new(3, 2).region_of_slot(1), 0);
    }
}
