//! The bulk of a scrub: leaf blocks (file data, names, xattrs, free-map leaves) are not
//! needed to find other blocks, so the walk only queues them; a batch is verified at once.
//! Each device's copies are read in the copy-I/O layer's merged runs (`copies::runs`), one
//! thread per device, so scrub reads at device speed instead of one seek per copy. A block
//! whose copies are not all good is handed back; the caller reads it again copy by copy,
//! which counts, reports and heals exactly as for any block.

use crate::copies::runs::{CopyRead, on_each_device, read_runs};
use crate::volume::Volume;
use hammer2_format::{Blockref, CopyState};

pub use crate::copies::runs::BATCH_BLOCKS;

/// Verifies every stored copy of `blocks`. Returns, per block, true when each of its
/// copies was read and matched its check value (MISSING copies aside: they hold nothing
/// yet). A copy on a device that cannot be read counts as not good.
pub fn verify(vol: &Volume, blocks: &[Blockref]) -> Vec<bool> {
    let ndev = vol.devices.len();
    let mut good = vec![true; blocks.len()];
    let mut per_dev: Vec<Vec<CopyRead>> = (0..ndev).map(|_| Vec::new()).collect();
    for (i, br) in blocks.iter().enumerate() {
        let Some(p) = br.ptr() else {
            good[i] = false;
            continue;
        };
        for loc in p.copies.iter().filter(|l| l.state != CopyState::Missing) {
            match vol.devices.get(loc.device).filter(|m| m.readable()) {
                Some(_) => {
                    per_dev[usize::from(loc.device)].push(CopyRead { offset: loc.offset, size: p.size, tag: i as u32 })
                }
                None => good[i] = false,
            }
        }
    }
    let outcomes = on_each_device(&vol.devices, per_dev, &mut || {}, |_, storage, mut items| {
        // The blocks with a copy on this device that failed to read or to verify.
        let mut bad: Vec<u32> = Vec::new();
        let Some(storage) = storage else { return items.iter().map(|i| i.tag).collect() };
        read_runs(&*storage, &mut items, None, &|| false, &mut |it, r| {
            let ok = r.is_ok_and(|b| blocks[it.tag as usize].ptr().is_some_and(|p| p.check.verify(b)));
            if !ok {
                bad.push(it.tag);
            }
        });
        bad
    });
    for (_, bad) in outcomes {
        match bad {
            Some(bad) => bad.into_iter().for_each(|b| good[b as usize] = false),
            // A verifier only reads and compares; should one panic anyway, its blocks are
            // all re-read one by one, which reports whatever is wrong with them.
            None => good.iter_mut().for_each(|g| *g = false),
        }
    }
    good
}
