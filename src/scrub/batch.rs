//! The bulk of a scrub: leaf blocks (file data, names, xattrs, free-map leaves) are not
//! needed to find other blocks, so the walk only queues them; a batch is verified at once.
//! Each device's copies are sorted by offset and read in large runs (neighbours merged,
//! small gaps read through), one thread per device, so scrub reads at device speed instead
//! of one seek per copy. A block whose copies are not all good is handed back; the caller
//! reads it again copy by copy, which counts, reports and heals exactly as for any block.

use crate::storage::runs::run_at;
use crate::volume::Volume;
use hammer2_format::{Blockref, CopyState};

/// Blocks per batch: bounds the queue (128 bytes a reference), not the reads.
pub const BATCH_BLOCKS: usize = 16 << 10;

/// One copy to read: where, how much, and which queued block it belongs to.
struct Item {
    offset: u64,
    size: u32,
    block: u32,
}

/// Verifies every stored copy of `blocks`. Returns, per block, true when each of its
/// copies was read and matched its check value (MISSING copies aside: they hold nothing
/// yet). A copy on a device that cannot be read counts as not good.
pub fn verify(vol: &Volume, blocks: &[Blockref]) -> Vec<bool> {
    let ndev = vol.devices.len();
    let mut good = vec![true; blocks.len()];
    let mut per_dev: Vec<Vec<Item>> = (0..ndev).map(|_| Vec::new()).collect();
    for (i, br) in blocks.iter().enumerate() {
        let Some(p) = br.ptr() else {
            good[i] = false;
            continue;
        };
        for loc in p.copies.iter().filter(|l| l.state != CopyState::Missing) {
            match vol.devices.get(loc.device).filter(|m| m.readable() && m.storage.is_some()) {
                Some(_) => {
                    per_dev[usize::from(loc.device)].push(Item { offset: loc.offset, size: p.size, block: i as u32 })
                }
                None => good[i] = false,
            }
        }
    }
    let bad: Vec<Vec<u32>> = std::thread::scope(|s| {
        let hs: Vec<_> = per_dev
            .into_iter()
            .enumerate()
            .filter(|(_, items)| !items.is_empty())
            .map(|(d, items)| s.spawn(move || verify_device(vol, d as u8, items, blocks)))
            .collect();
        // A verifier only reads and compares; should one panic anyway, its blocks are
        // all re-read one by one, which reports whatever is wrong with them.
        hs.into_iter().map(|h| h.join().unwrap_or_else(|_| (0..blocks.len() as u32).collect())).collect()
    });
    for b in bad.into_iter().flatten() {
        good[b as usize] = false;
    }
    good
}

/// Reads one device's copies in offset order, in merged runs; returns the blocks with a
/// copy there that failed to read or to verify.
fn verify_device(vol: &Volume, device: u8, mut items: Vec<Item>, blocks: &[Blockref]) -> Vec<u32> {
    items.sort_unstable_by_key(|i| (i.offset, i.block));
    let Some(storage) = vol.devices.get(device).and_then(|m| m.storage.clone()) else {
        return items.iter().map(|i| i.block).collect();
    };
    let mut bad = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let (j, start, end) = run_at(items.len(), i, |k| (items[k].offset, items[k].size));
        let len = (end - start) as usize;
        buf.resize(len, 0);
        if storage.read_at(&mut buf[..len], start).is_err() {
            // The run failed as a whole: its blocks are re-read one by one by the caller.
            bad.extend(items[i..j].iter().map(|it| it.block));
        } else {
            for it in &items[i..j] {
                let off = (it.offset - start) as usize;
                let ok =
                    blocks[it.block as usize].ptr().is_some_and(|p| p.check.verify(&buf[off..off + it.size as usize]));
                if !ok {
                    bad.push(it.block);
                }
            }
        }
        i = j;
    }
    bad
}
