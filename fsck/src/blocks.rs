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
use hammer2::storage::runs::run_at;
use hammer2_format::blockref::BlockPtr;
use hammer2_format::{CopyState, Location};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Data blocks per verification batch.
pub const BATCH_BLOCKS: usize = 1 << 16;

/// What reading one copy gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyResult {
    Good,
    /// Read fine, but the content does not match the check value.
    Mismatch,
    /// The read failed.
    Io(String),
    /// Not read: its device is missing or failed.
    Skipped(&'static str),
    /// A MISSING copy (no location yet).
    Missing,
}

impl CopyResult {
    pub fn why(&self) -> String {
        match self {
            CopyResult::Good => "good".into(),
            CopyResult::Mismatch => "check value mismatch".into(),
            CopyResult::Io(e) => format!("read error: {e}"),
            CopyResult::Skipped(w) => (*w).to_string(),
            CopyResult::Missing => "missing (never written)".into(),
        }
    }
    pub fn is_bad(&self) -> bool {
        matches!(self, CopyResult::Mismatch | CopyResult::Io(_))
    }
}

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

pub(crate) fn readable_storage(vol: &Volume, loc: &Location) -> Result<hammer2::storage::DynStorage, &'static str> {
    let m = vol.devices.get(loc.device).ok_or("no such device")?;
    match &m.storage {
        Some(s) if m.readable() => Ok(s.clone()),
        _ => Err("device missing"),
    }
}

/// Reads and verifies every copy of a block (taking the copies read ahead from `ahead`).
pub fn read_all(vol: &Volume, ptr: &BlockPtr, io: &IoStats, ahead: &mut ReadAhead) -> AllCopies {
    let mut out = AllCopies { data: None, copies: Vec::with_capacity(ptr.copies.len()) };
    for (slot, loc) in ptr.copies.iter().enumerate() {
        if loc.state == CopyState::Missing {
            out.copies.push((slot, *loc, CopyResult::Missing));
            continue;
        }
        let storage = match readable_storage(vol, loc) {
            Ok(s) => s,
            Err(why) => {
                out.copies.push((slot, *loc, CopyResult::Skipped(why)));
                continue;
            }
        };
        let (buf, read) = match ahead.take(loc, ptr.size) {
            Some(b) => (b, Ok(())),
            None => {
                let mut b = vec![0u8; ptr.size as usize];
                let r = storage.read_at(&mut b, loc.offset);
                (b, r)
            }
        };
        let r = match read {
            Ok(()) => {
                io.bytes.fetch_add(u64::from(ptr.size), Ordering::Relaxed);
                io.copies.fetch_add(1, Ordering::Relaxed);
                if ptr.check.verify(&buf) { CopyResult::Good } else { CopyResult::Mismatch }
            }
            Err(e) => CopyResult::Io(e.to_string()),
        };
        if r == CopyResult::Good && out.data.is_none() {
            out.data = Some(buf);
        }
        out.copies.push((slot, *loc, r));
    }
    out
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

struct Item {
    offset: u64,
    size: u32,
    block: u32,
    slot: u8,
}

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
        let mut per_dev: Vec<Vec<Item>> = (0..ndev).map(|_| Vec::new()).collect();
        let mut results: Vec<Vec<(usize, Location, CopyResult)>> = Vec::with_capacity(blocks.len());
        for (i, b) in blocks.iter().enumerate() {
            let mut r = Vec::new();
            for (slot, loc) in b.ptr.copies.iter().enumerate() {
                if loc.state == CopyState::Missing {
                    r.push((slot, *loc, CopyResult::Missing));
                    continue;
                }
                match readable_storage(vol, loc) {
                    Ok(_) => per_dev[usize::from(loc.device)].push(Item {
                        offset: loc.offset,
                        size: b.ptr.size,
                        block: i as u32,
                        slot: slot as u8,
                    }),
                    Err(why) => r.push((slot, *loc, CopyResult::Skipped(why))),
                }
            }
            results.push(r);
        }
        let outcomes: Vec<DeviceOutcome> = std::thread::scope(|s| {
            let hs: Vec<_> = per_dev
                .into_iter()
                .enumerate()
                .filter(|(_, items)| !items.is_empty())
                .map(|(d, items)| {
                    let blocks = &blocks;
                    s.spawn(move || verify_device(vol, d as u8, items, blocks, io, cancel))
                })
                .collect();
            while !hs.iter().all(|h| h.is_finished()) {
                tick();
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            // A verifier thread only reads and compares; if one panicked anyway, its
            // copies are reported as unreadable rather than taking the run down.
            hs.into_iter().map(|h| h.join().unwrap_or_default()).collect()
        });
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

/// Reads one device's copies in offset order, in merged runs.
fn verify_device(
    vol: &Volume,
    device: u8,
    mut items: Vec<Item>,
    blocks: &[QueuedBlock],
    io: &IoStats,
    cancel: &AtomicBool,
) -> DeviceOutcome {
    items.sort_unstable_by_key(|i| (i.offset, i.block));
    let mut out = Vec::with_capacity(items.len());
    let mut tails = Vec::new();
    let Some(storage) = vol.devices.get(device).and_then(|m| m.storage.clone()) else {
        return (items.iter().map(|i| (i.block, i.slot, CopyResult::Skipped("device missing"))).collect(), tails);
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < items.len() {
        if cancel.load(Ordering::Relaxed) {
            for it in &items[i..] {
                out.push((it.block, it.slot, CopyResult::Skipped("cancelled")));
            }
            break;
        }
        let (j, start, end) = run_at(items.len(), i, |k| (items[k].offset, items[k].size));
        let len = (end - start) as usize;
        buf.resize(len, 0);
        match storage.read_at(&mut buf[..len], start) {
            Ok(()) => {
                io.bytes.fetch_add(len as u64, Ordering::Relaxed);
                for it in &items[i..j] {
                    let off = (it.offset - start) as usize;
                    let data = &buf[off..off + it.size as usize];
                    let b = &blocks[it.block as usize];
                    let ok = b.ptr.check.verify(data);
                    io.copies.fetch_add(1, Ordering::Relaxed);
                    if ok && b.tail.is_some_and(|t| data.get(t as usize..).is_some_and(|z| z.iter().any(|&x| x != 0))) {
                        tails.push(it.block);
                    }
                    out.push((it.block, it.slot, if ok { CopyResult::Good } else { CopyResult::Mismatch }));
                }
            }
            Err(_) => {
                // The run failed as a whole (e.g. it reaches past the end of the device):
                // read its blocks one by one to tell the good from the bad.
                for it in &items[i..j] {
                    let mut b = vec![0u8; it.size as usize];
                    let r = match storage.read_at(&mut b, it.offset) {
                        Ok(()) => {
                            io.bytes.fetch_add(u64::from(it.size), Ordering::Relaxed);
                            io.copies.fetch_add(1, Ordering::Relaxed);
                            if blocks[it.block as usize].ptr.check.verify(&b) {
                                CopyResult::Good
                            } else {
                                CopyResult::Mismatch
                            }
                        }
                        Err(e) => CopyResult::Io(e.to_string()),
                    };
                    out.push((it.block, it.slot, r));
                }
            }
        }
        i = j;
    }
    (out, tails)
}

/// Reads the first good copy of a block (for repairs that need its content again).
pub fn read_good(vol: &Volume, ptr: &BlockPtr) -> Option<Vec<u8>> {
    for loc in ptr.copies.iter().filter(|l| l.is_valid()) {
        let Ok(storage) = readable_storage(vol, loc) else { continue };
        let mut buf = vec![0u8; ptr.size as usize];
        if storage.read_at(&mut buf, loc.offset).is_ok() && ptr.check.verify(&buf) {
            return Some(buf);
        }
    }
    None
}
