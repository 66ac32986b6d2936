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
//!
//! Free placement (format version 2, feature `FREE_PLACEMENT`, set by the first device
//! add or remove, FORMAT.md "Free placement"): no slot is pinned, whatever D is. A block's
//! copies go to distinct devices as long as there are devices for them, and copies that
//! must share a device go to distinct regions of it (FP1 in docs/DESIGN.md). Every (device,
//! region) is a *domain*; a block never has two copies in one domain.

#[derive(Debug, Clone)]
pub struct Placement {
    copies: u8,
    ndev: usize,
    free: bool,
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
        Placement { copies, ndev, free: false }
    }

    /// The placement of a filesystem with `FREE_PLACEMENT` (`free`) or without.
    pub fn with_free(ndev: usize, copies: u8, free: bool) -> Placement {
        Placement { copies, ndev, free }
    }

    /// Whether copies are placed freely (no pinned slots at all).
    pub fn is_free(&self) -> bool {
        self.free
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
        !self.free && slots_are_fixed(self.ndev, self.copies)
    }

    /// The (device, region) of every copy slot when slots are fixed, in slot order.
    pub fn fixed_slots(&self) -> impl Iterator<Item = (u8, u8)> + '_ {
        (0..usize::from(self.copies)).map(|i| fixed_slot(i, self.ndev))
    }

    /// The most copies one block can have (VC1): one per domain, at most 4. With pinned
    /// slots the N slots are all the domains there are; with more devices than copies one
    /// per device (region 0); under free placement every region of every device that takes
    /// new copies (`regions(d)`: None for one that does not).
    pub fn max_copies(&self, regions: impl Fn(u8) -> Option<u8>) -> u8 {
        let domains = if self.fixed() {
            usize::from(self.copies)
        } else if self.free {
            (0..self.ndev as u8).filter_map(&regions).map(usize::from).sum()
        } else {
            self.ndev
        };
        domains.min(hammer2_format::layout::MAX_COPIES) as u8
    }

    /// The region a copy in slot `slot` uses.
    pub fn region_of_slot(&self, slot: usize) -> u8 {
        if self.fixed() { fixed_slot(slot, self.ndev).1 } else { 0 }
    }
}

/// The domains (device, region) for the copies of one block under free placement (FP1),
/// pure: `order` lists the devices in the writer's preference (writable devices that take
/// new copies first, roomiest first), `regions(d)` gives a device's regions roomiest first
/// with whether each has room for the block, `writable(d)` whether its copies are written
/// (else they are recorded MISSING and need no room). First one domain on each of `n`
/// distinct devices; when devices run out, further copies go to other regions of the
/// devices already chosen. Fewer than `n` domains come back when there are not enough.
pub fn free_domains(
    n: usize,
    order: &[u8],
    regions: &dyn Fn(u8) -> Vec<(u8, bool)>,
    writable: &dyn Fn(u8) -> bool,
) -> Vec<(u8, u8)> {
    let mut out: Vec<(u8, u8)> = Vec::with_capacity(n);
    // Pass 1: distinct devices.
    for &d in order {
        if out.len() == n {
            return out;
        }
        let first = regions(d).into_iter().find(|&(_, room)| room || !writable(d));
        if let Some((r, _)) = first {
            out.push((d, r));
        }
    }
    // Pass 2: the remaining copies share devices, each in a region of its own.
    for &d in order.iter().filter(|&&d| writable(d)) {
        for (r, room) in regions(d) {
            if out.len() == n {
                return out;
            }
            if room && !out.contains(&(d, r)) {
                out.push((d, r));
            }
        }
    }
    out
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
        assert!(!Placement::with_free(1, 2, true).fixed());
    }

    #[test]
    fn a_block_has_at_most_one_copy_per_domain() {
        let two_regions = |_| Some(2);
        // Pinned slots: the N slots are the domains.
        assert_eq!(Placement::new(1, 2).max_copies(two_regions), 2);
        assert_eq!(Placement::new(2, 3).max_copies(two_regions), 3);
        // More devices than copies: one per device.
        assert_eq!(Placement::new(3, 2).max_copies(two_regions), 3);
        // Free placement: every region of the devices that take copies, at most 4.
        assert_eq!(Placement::with_free(2, 1, true).max_copies(|d| (d == 0).then_some(2)), 2);
        assert_eq!(Placement::with_free(3, 2, true).max_copies(two_regions), 4);
    }

    #[test]
    fn free_domains_prefer_distinct_devices_then_distinct_regions() {
        let regions = |d: u8| match d {
            0 => vec![(1, true), (0, true)],
            _ => vec![(0, true)],
        };
        let all = |_| true;
        // Two devices, two copies: one on each, device 0 in its roomiest region.
        assert_eq!(free_domains(2, &[0, 1], &regions, &all), vec![(0, 1), (1, 0)]);
        // Three copies: the third shares device 0, in its other region.
        assert_eq!(free_domains(3, &[1, 0], &regions, &all), vec![(1, 0), (0, 1), (0, 0)]);
        // Four copies do not fit three domains.
        assert_eq!(free_domains(4, &[0, 1], &regions, &all).len(), 3);
        // A full region is skipped; a device with no room gives way to the next.
        let full = |d: u8| if d == 1 { vec![(0, false)] } else { vec![(0, true), (1, true)] };
        assert_eq!(free_domains(2, &[1, 0], &full, &all), vec![(0, 0), (0, 1)]);
        // A device that is not written to still gets its copy (MISSING), without room.
        let down = |d: u8| d != 1;
        assert_eq!(free_domains(2, &[0, 1], &full, &down), vec![(0, 0), (1, 0)]);
    }
}
