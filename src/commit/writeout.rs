//! Writing a commit's blocks: every copy of every block, grouped per device, sorted by
//! offset and coalesced into large vectored writes, one thread per device so the copies of
//! a block are written in parallel. Then one flush per device.

use super::arena::Arena;
use crate::devices::Member;
use crate::volume::Volume;
use std::sync::atomic::Ordering;

/// Largest single write (bytes).
const MAX_WRITE: usize = 8 << 20;

/// Writes and flushes every live block of the arena. Returns the devices that failed (they
/// are already marked failed); an empty list means every write is durable.
pub fn write_and_flush(vol: &Volume, arena: &Arena) -> Vec<u8> {
    let ndev = vol.devices.len();
    let mut per_dev: Vec<Vec<(u64, &[u8])>> = vec![Vec::new(); ndev];
    for b in arena.blocks.iter().filter(|b| !b.dead) {
        let bytes = b.bytes();
        for loc in b.copies.iter().filter(|l| l.is_valid()) {
            per_dev[usize::from(loc.device)].push((loc.offset, bytes));
        }
    }
    for (dev, off, bytes) in &arena.extra {
        per_dev[usize::from(*dev)].push((*off, bytes));
    }
    let results: Vec<(u8, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = per_dev
            .into_iter()
            .enumerate()
            .filter(|(_, w)| !w.is_empty())
            .map(|(d, mut writes)| {
                let m = &vol.devices.members[d];
                s.spawn(move || {
                    writes.sort_unstable_by_key(|w| w.0);
                    (d as u8, write_device(m, &writes))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or((u8::MAX, false))).collect()
    });
    results.into_iter().filter(|(_, ok)| !ok).map(|(d, _)| d).collect()
}

fn write_device(m: &Member, writes: &[(u64, &[u8])]) -> bool {
    // A device that failed while this commit was being built gets no more writes; the
    // retry records its copies as MISSING.
    let Some(storage) = m.storage.as_ref().filter(|_| m.writable()) else {
        return false;
    };
    let mut i = 0;
    while i < writes.len() {
        let start = writes[i].0;
        let mut end = start + writes[i].1.len() as u64;
        let mut bufs = vec![writes[i].1];
        let mut len = writes[i].1.len();
        i += 1;
        while i < writes.len() && writes[i].0 == end && len + writes[i].1.len() <= MAX_WRITE {
            bufs.push(writes[i].1);
            len += writes[i].1.len();
            end += writes[i].1.len() as u64;
            i += 1;
        }
        if let Err(e) = storage.write_vectored_at(&bufs, start) {
            m.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            m.fail(&format!("write error at offset {start}: {e}"));
            return false;
        }
    }
    if let Err(e) = storage.flush() {
        m.counters.write_errors.fetch_add(1, Ordering::Relaxed);
        m.fail(&format!("flush error: {e}"));
        return false;
    }
    true
}
