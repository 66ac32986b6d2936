//! Reading every copy of every block, each exactly once.
//!
//! Metadata (nodes, inode blocks, name and xattr blocks, free-map leaves) is read during
//! the walk, because the walk needs its content (in runs, ahead of it: `readahead`); each
//! copy is verified when the walk reaches it. Data blocks are only queued during the
//! walk; a batch is verified when it fills up and at the end: each device's copies are
//! sorted by offset and read in large sequential runs (neighbouring blocks merged, small
//! gaps read through), one thread per device, so the bulk of a filesystem is read at
//! device speed. (Checking a run while the next is read in another thread was measured:
//! no faster, since the kernel's readahead already overlaps the two for sequential reads.) A batch holds at most `BATCH_BLOCKS` blocks, which bounds memory whatever
//! the filesystem's size.

use crate::readahead::ReadAhead;
use hammer2::inspect::Volume;
use hammer2::inspect::{CopyRead, copy_reader, on_each_device, read_runs};
use hammer2_format::blockref::BlockPtr;
use hammer2_format::{CopyState, Location};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Data blocks per verification batch: the engine's one batch size.
pub use hammer2::inspect::BATCH_BLOCKS;

/// What reading one copy gave: the engine's verdict.
pub use hammer2::inspect::CopyVerdict as CopyResult;

/// Bytes and copies read, shared with the progress display.
#[derive(Debug, Default)]
pub struct IoStats {
    pub bytes: AtomicU64,
    pub copies: AtomicU64,
}

/// The result of reading every copy of one block.
pub struct AllCopies {
    /// The content of the first good copy.
    pub data: Option<Vec<u8>>,
    pub copies: Vec<(usize, Location, CopyResult)>,
}

/// Reads and verifies every copy of a block (taking the copies read ahead from `ahead`).
pub fn read_all(vol: &Volume, ptr: &BlockPtr, io: &IoStats, ahead: &mut ReadAhead) -> AllCopies {
    let every = copy_reader(vol).read_every_copy(ptr, &mut |_, _, _| true, &mut |loc, size| ahead.take(loc, size));
    for (_, _, r) in &every.copies {
        if matches!(r, CopyResult::Good | CopyResult::Mismatch) {
            io.bytes.fetch_add(u64::from(ptr.size), Ordering::Relaxed);
            io.copies.fetch_add(1, Ordering::Relaxed);
        }
    }
    AllCopies { data: every.data, copies: every.copies }
}

/// A queued data block.
pub struct QueuedBlock {
    pub ptr: BlockPtr,
    pub inum: u64,
    pub key: u64,
    /// For a file's last block: where the file ends in it (the bytes after must be zero:
    /// a later extension of the file would show them).
    pub tail: Option<u32>,
}

/// A data block some of whose copies are not good.
pub struct DataProblem {
    pub block: QueuedBlock,
    pub copies: Vec<(usize, Location, CopyResult)>,
}

/// What one device's pass found: (block, copy slot, result) per copy read, and the blocks
/// whose tail past the end of the file is not zero.
type DeviceOutcome = (Vec<(u32, u8, CopyResult)>, Vec<u32>);

#[derive(Default)]
pub struct DataQueue {
    blocks: Vec<QueuedBlock>,
}

impl DataQueue {
    pub fn push(&mut self, ptr: BlockPtr, inum: u64, key: u64, tail: Option<u32>) {
        self.blocks.push(QueuedBlock { ptr, inum, key, tail });
    }

    pub fn is_full(&self) -> bool {
        self.blocks.len() >= BATCH_BLOCKS
    }

    /// Verifies every copy of the queued blocks and empties the queue. Returns the
    /// blocks with a copy that is not good (bad, unreadable, skipped or missing), and the
    /// (inode, key) of file tails whose bytes past the end of the file are not zero.
    pub fn verify(
        &mut self,
        vol: &Volume,
        io: &IoStats,
        cancel: &AtomicBool,
        tick: &mut dyn FnMut(),
    ) -> (Vec<DataProblem>, Vec<(u64, u64)>) {
        let blocks = std::mem::take(&mut self.blocks);
        let ndev = vol.devices.len();
        let cio = copy_reader(vol);
        let mut per_dev: Vec<Vec<CopyRead>> = (0..ndev).map(|_| Vec::new()).collect();
        // What each bulk read's tag stands for: (block, copy slot).
        let mut copies: Vec<(u32, u8)> = Vec::new();
        let mut results: Vec<Vec<(usize, Location, CopyResult)>> = Vec::with_capacity(blocks.len());
        for (i, b) in blocks.iter().enumerate() {
            let mut r = Vec::new();
            for (slot, loc) in b.ptr.copies.iter().enumerate() {
                if loc.state == CopyState::Missing {
                    r.push((slot, *loc, CopyResult::Missing));
                    continue;
                }
                match cio.readable(loc) {
                    Ok(_) => {
                        let tag = copies.len() as u32;
                        copies.push((i as u32, slot as u8));
                        per_dev[usize::from(loc.device)].push(CopyRead { offset: loc.offset, size: b.ptr.size, tag });
                    }
                    Err(why) => r.push((slot, *loc, CopyResult::Skipped(why))),
                }
            }
            results.push(r);
        }
        let outcomes = on_each_device(&vol.devices, per_dev, tick, |_, storage, items| {
            check_device_copies(storage, items, &copies, &blocks, io, cancel)
        });
        // A verifier thread only reads and compares; if one panicked anyway, its copies
        // are left out rather than taking the run down.
        let outcomes: Vec<DeviceOutcome> = outcomes.into_iter().filter_map(|(_, o)| o).collect();
        let mut tails: Vec<u32> = Vec::new();
        for (outcome, t) in outcomes {
            tails.extend(t);
            for (block, slot, r) in outcome {
                let b = &blocks[block as usize];
                let loc = b.ptr.copies.as_slice()[usize::from(slot)];
                results[block as usize].push((usize::from(slot), loc, r));
            }
        }
        tails.sort_unstable();
        tails.dedup();
        let tails = tails.into_iter().map(|i| (blocks[i as usize].inum, blocks[i as usize].key)).collect();
        let problems = blocks
            .into_iter()
            .zip(results)
            .filter(|(_, r)| r.iter().any(|(_, _, c)| *c != CopyResult::Good))
            .map(|(block, mut copies)| {
                copies.sort_by_key(|c| c.0);
                DataProblem { block, copies }
            })
            .collect();
        (problems, tails)
    }
}

/// Reads one device's copies in offset order, in the engine's merged runs.
fn check_device_copies(
    storage: Option<hammer2::storage::DynStorage>,
    mut items: Vec<CopyRead>,
    copies: &[(u32, u8)],
    blocks: &[QueuedBlock],
    io: &IoStats,
    cancel: &AtomicBool,
) -> DeviceOutcome {
    let mut out = Vec::with_capacity(items.len());
    let mut tails = Vec::new();
    let Some(storage) = storage else {
        let missing = items.iter().map(|i| copies[i.tag as usize]);
        return (missing.map(|(b, s)| (b, s, CopyResult::Skipped("device missing"))).collect(), tails);
    };
    let done = read_runs(&*storage, &mut items, Some(&io.bytes), &|| cancel.load(Ordering::Relaxed), &mut |it, r| {
        let (block, slot) = copies[it.tag as usize];
        let b = &blocks[block as usize];
        let r = match r {
            Ok(data) => {
                io.copies.fetch_add(1, Ordering::Relaxed);
                let ok = b.ptr.check.verify(data);
                if ok && b.tail.is_some_and(|t| data.get(t as usize..).is_some_and(|z| z.iter().any(|&x| x != 0))) {
                    tails.push(block);
                }
                if ok { CopyResult::Good } else { CopyResult::Mismatch }
            }
            Err(e) => CopyResult::Io(e.to_string()),
        };
        out.push((block, slot, r));
    });
    for it in &items[done..] {
        let (block, slot) = copies[it.tag as usize];
        out.push((block, slot, CopyResult::Skipped("cancelled")));
    }
    (out, tails)
}

/// Reads the first good copy of a block (for repairs that need its content again).
pub fn read_good(vol: &Volume, ptr: &BlockPtr) -> Option<Vec<u8>> {
    copy_reader(vol).read_first_good(ptr)
}
