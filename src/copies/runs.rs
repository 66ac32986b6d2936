//! Reading many copies of one device in few requests: the one batching policy of every bulk
//! reader (the VOP read path, inode prefetch, scrub, fsck's data pass and read-ahead).
//! Copies sorted by offset are grouped into runs, neighbours merged and small gaps read
//! through, so a device is read at its sequential speed. A run whose read fails is read
//! again copy by copy, so each copy gets the result of its own read.
//!
//! This module only reads bytes; verifying them, counting errors and healing is the
//! caller's, through `CopyIo` (`read.rs`).

use crate::devices::DeviceSet;
use crate::storage::{DynStorage, Storage};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// A gap between two copies up to this size is read through rather than skipped.
pub const MAX_GAP: u64 = 256 << 10;
/// Longest single read.
pub const MAX_RUN: u64 = 8 << 20;
/// Blocks a bulk verifier (scrub, fsck's data pass) queues before reading them: bounds the
/// queue's memory, not the reads.
pub const BATCH_BLOCKS: usize = 1 << 16;

/// One copy to read in bulk: where, how much, and the caller's index for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyRead {
    pub offset: u64,
    pub size: u32,
    pub tag: u32,
}

/// The run that starts at extent `i` of `n` extents sorted by offset (`extent(k)` gives
/// extent k's offset and size): returns the index just past the run's last extent and the
/// byte range `[start, end)` that one read covers.
pub fn run_at(n: usize, i: usize, extent: impl Fn(usize) -> (u64, u32)) -> (usize, u64, u64) {
    let (start, size) = extent(i);
    let mut end = start + u64::from(size);
    let mut j = i + 1;
    while j < n {
        let (o, s) = extent(j);
        let e = o + u64::from(s);
        if o > end.saturating_add(MAX_GAP) || e.max(end) - start > MAX_RUN {
            break;
        }
        end = end.max(e);
        j += 1;
    }
    (j, start, end)
}

/// Run buffers kept for the next bulk read, and the largest one kept: a cold lookup's inode
/// prefetch reads a run of a few hundred KiB, and a fresh buffer each time cost more than the
/// read itself (the allocator hands the pages back between requests, so every run paid page
/// faults and zeroing again: a fifth of the daemon's time in cold stats). A few buffers
/// shared by all threads bound the memory kept to POOL_BUFFERS * POOL_KEEP whatever the
/// number of FUSE workers.
const POOL_BUFFERS: usize = 4;
const POOL_KEEP: usize = 1 << 20;
static POOL: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// A buffer from the pool (empty when the pool is), whose old bytes the caller overwrites
/// before it hands any of them out.
fn take_buffer() -> Vec<u8> {
    POOL.lock().ok().and_then(|mut p| p.pop()).unwrap_or_default()
}

fn give_back(buf: Vec<u8>) {
    if buf.capacity() <= POOL_KEEP
        && let Ok(mut p) = POOL.lock()
        && p.len() < POOL_BUFFERS
    {
        p.push(buf);
    }
}

/// Reads the copies `items` of one device (sorted here by offset) in merged runs and hands
/// each to `each` with its bytes or the error of its own read, in offset order. `stop` is
/// asked before each run; returns how many of the sorted `items` were handed over (the rest
/// were not read). Bytes read (gaps included) are added to `read_bytes` as runs complete.
pub fn read_runs(
    storage: &dyn Storage,
    items: &mut [CopyRead],
    read_bytes: Option<&AtomicU64>,
    stop: &dyn Fn() -> bool,
    each: &mut dyn FnMut(&CopyRead, io::Result<&[u8]>),
) -> usize {
    items.sort_unstable_by_key(|i| (i.offset, i.tag));
    let count = |n: u64| {
        if let Some(c) = read_bytes {
            c.fetch_add(n, Ordering::Relaxed);
        }
    };
    let mut buf = take_buffer();
    let mut i = 0;
    while i < items.len() {
        if stop() {
            give_back(buf);
            return i;
        }
        let (j, start, end) = run_at(items.len(), i, |k| (items[k].offset, items[k].size));
        let len = (end - start) as usize;
        // Only what the buffer never held is zeroed; the reads below overwrite what is
        // handed out.
        if buf.len() < len {
            buf.resize(len, 0);
        }
        if j - i > 1 && storage.read_at(&mut buf[..len], start).is_ok() {
            count(len as u64);
            for it in &items[i..j] {
                let at = (it.offset - start) as usize;
                each(it, Ok(&buf[at..at + it.size as usize]));
            }
        } else {
            // A single copy, or a run that failed as a whole (e.g. it reaches past the end
            // of the device): each copy is read alone, to tell the good from the bad.
            for it in &items[i..j] {
                let b = &mut buf[..it.size as usize];
                match storage.read_at(b, it.offset) {
                    Ok(()) => {
                        count(u64::from(it.size));
                        each(it, Ok(b));
                    }
                    Err(e) => each(it, Err(e)),
                }
            }
        }
        i = j;
    }
    give_back(buf);
    items.len()
}

/// Runs `per_device(device, storage, items)` for every device with copies to read, one
/// thread per device when there are several (a device is read at its own speed, not the
/// slowest one's), calling `tick` while they run. `per_dev[d]` holds device d's copies. A
/// device that is absent gets `None` as storage. The result of a device whose thread
/// panicked is `None`.
pub fn on_each_device<R: Send>(
    devices: &DeviceSet,
    per_dev: Vec<Vec<CopyRead>>,
    tick: &mut dyn FnMut(),
    per_device: impl Fn(u8, Option<DynStorage>, Vec<CopyRead>) -> R + Sync,
) -> Vec<(u8, Option<R>)> {
    let work: Vec<(u8, Option<DynStorage>, Vec<CopyRead>)> = per_dev
        .into_iter()
        .enumerate()
        .filter(|(_, items)| !items.is_empty())
        .map(|(d, items)| (d as u8, devices.get(d as u8).and_then(|m| m.storage()), items))
        .collect();
    if work.len() == 1 {
        return work.into_iter().map(|(d, st, items)| (d, Some(per_device(d, st, items)))).collect();
    }
    let per_device = &per_device;
    std::thread::scope(|s| {
        let hs: Vec<_> =
            work.into_iter().map(|(d, st, items)| (d, s.spawn(move || per_device(d, st, items)))).collect();
        while !hs.iter().all(|(_, h)| h.is_finished()) {
            tick();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        hs.into_iter().map(|(d, h)| (d, h.join().ok())).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::mem::MemStorage;

    #[test]
    fn neighbours_and_small_gaps_merge_large_gaps_and_long_runs_split() {
        let ext = [(0u64, 4096u32), (4096, 4096), (4096 + 4096 + MAX_GAP, 4096), (1 << 30, 4096)];
        let at = |k: usize| ext[k];
        assert_eq!(run_at(ext.len(), 0, at), (3, 0, 8192 + MAX_GAP + 4096));
        assert_eq!(run_at(ext.len(), 3, at), (4, 1 << 30, (1 << 30) + 4096));
        let long: Vec<(u64, u32)> = (0..3).map(|k| (k * (4 << 20), 4 << 20)).collect();
        assert_eq!(run_at(long.len(), 0, |k| long[k]).0, 2, "a run stops at MAX_RUN bytes");
    }

    #[test]
    fn a_run_that_fails_is_read_copy_by_copy() {
        let st = MemStorage::new(1 << 20, "mem");
        st.write_at(&[1u8; 4096], 0).unwrap();
        st.write_at(&[2u8; 4096], 8192).unwrap();
        // The last copy reaches past the end of the device: the run fails as a whole.
        let mut items = [
            CopyRead { offset: (1 << 20) - 2048, size: 4096, tag: 2 },
            CopyRead { offset: 8192, size: 4096, tag: 1 },
            CopyRead { offset: 0, size: 4096, tag: 0 },
        ];
        let mut got = Vec::new();
        let n = read_runs(&st, &mut items, None, &|| false, &mut |it, r| got.push((it.tag, r.map(|b| b[0]).ok())));
        assert_eq!(n, 3);
        assert_eq!(got, vec![(0, Some(1)), (1, Some(2)), (2, None)]);
    }

    #[test]
    fn a_pooled_buffer_hands_out_only_the_bytes_just_read() {
        let a = MemStorage::new(1 << 20, "a");
        a.write_at(&[9u8; 1 << 16], 0).unwrap();
        let b = MemStorage::new(1 << 20, "b");
        b.write_at(&[3u8; 4096], 0).unwrap();
        b.write_at(&[4u8; 4096], 8192).unwrap();
        // Fill every pooled buffer with a's bytes, then read b through them, in runs and
        // copy by copy (the second item reaches past b's end).
        for _ in 0..2 * POOL_BUFFERS {
            let mut big =
                [CopyRead { offset: 0, size: 1 << 16, tag: 0 }, CopyRead { offset: 1 << 16, size: 4096, tag: 1 }];
            read_runs(&a, &mut big, None, &|| false, &mut |_, r| assert!(r.is_ok()));
        }
        let mut items = [CopyRead { offset: 0, size: 4096, tag: 0 }, CopyRead { offset: 8192, size: 4096, tag: 1 }];
        let mut got = Vec::new();
        read_runs(&b, &mut items, None, &|| false, &mut |it, r| got.push((it.tag, r.unwrap().to_vec())));
        assert_eq!(got, vec![(0, vec![3u8; 4096]), (1, vec![4u8; 4096])]);
        let mut past = [CopyRead { offset: (1 << 20) - 2048, size: 4096, tag: 0 }];
        read_runs(&b, &mut past, None, &|| false, &mut |_, r| assert!(r.is_err(), "no stale bytes for a failed read"));
        assert!(POOL.lock().unwrap().len() <= POOL_BUFFERS);
    }
}
