//! Writing a commit's blocks: every copy of every block, grouped per device, sorted by
//! offset and coalesced into large vectored writes, one thread per device so the copies of
//! a block are written in parallel. Then one flush per device.
//!
//! A large commit starts writing before it is built: [`Streams`] takes the copies of the
//! data blocks of each file with at least [`STREAM_MIN_FILE`] of changes as soon as they
//! are allocated, and writes them while the trees, the free map and the check values are
//! still being built. That is crash-safe because nothing names those blocks until the
//! headers are written after the final flush, and a freshly allocated location is never
//! part of the durable trees (the allocator reuses freed space only after the freeing
//! commit is durable). An attempt that fails leaves only writes to free space behind.

use super::arena::Arena;
use crate::devices::Member;
use crate::volume::Volume;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};

/// Largest single write (bytes).
const MAX_WRITE: usize = 8 << 20;
/// A streaming writer waits for this much adjacent content before it writes, unless the
/// stream ends: the builder allocates faster than a device writes, so waiting costs little
/// and keeps the writes large.
const MIN_STREAM_WRITE: usize = 1 << 20;
/// Commits with less changed data than this are not worth writer threads of their own.
pub const STREAM_MIN_DIRTY: u64 = 4 << 20;
/// Only files with at least this much changed data stream it: their blocks are allocated
/// one after the other and coalesce into large writes. A small file's block sits between
/// inode blocks and other small files' blocks, which are written after the build; streamed
/// alone it would be a write of its own.
pub const STREAM_MIN_FILE: u64 = 1 << 20;

/// One copy of a block to write: (offset, content, length).
type Piece = (u64, Arc<Vec<u8>>, usize);

/// Per-device writers fed while the commit is built. Dropping it ends the streams; the
/// scope the writers run in waits for them.
pub struct Streams {
    senders: Vec<Option<Sender<Piece>>>,
}

impl Streams {
    /// Starts one writer per writable device in `scope`.
    pub fn start<'scope, 'env>(scope: &'scope std::thread::Scope<'scope, 'env>, vol: &'env Volume) -> Streams {
        let senders = vol
            .devices
            .iter()
            .map(|m| {
                if !m.writable() {
                    return None;
                }
                let (tx, rx) = channel();
                scope.spawn(move || stream_device(m, rx));
                Some(tx)
            })
            .collect();
        Streams { senders }
    }

    /// Queues the first `len` bytes of `buf` for `offset` on `device`. False when that
    /// device has no writer (it was not writable when the commit started): the block must
    /// then be written by [`write_and_flush`].
    pub fn send(&self, device: u8, offset: u64, buf: &Arc<Vec<u8>>, len: usize) -> bool {
        match self.senders.get(usize::from(device)) {
            Some(Some(tx)) => tx.send((offset, buf.clone(), len)).is_ok(),
            _ => false,
        }
    }
}

/// Adjacent pieces collected for one write.
struct Run {
    end: u64,
    bytes: usize,
    pieces: Vec<Piece>,
}

/// Runs a writer keeps open at once: one per copy region the commit allocates in (copies
/// on one device go to separate regions, so a block's copies arrive one after the other
/// for two or more places), with room for a few breaks in the free space.
const MAX_RUNS: usize = 8;

/// Writes what arrives, in arrival order (allocation order: ascending offsets within each
/// region), coalescing each piece with the open run it extends. A write error fails the
/// device; the commit attempt then sees it as not writable and retries without it.
fn stream_device(m: &Member, rx: Receiver<Piece>) {
    let mut runs: Vec<Run> = Vec::new();
    let mut buffered = 0usize;
    // One clone for the whole stream (O1: a storage replaced meanwhile is not written by
    // this commit, which allocated nothing on it).
    let storage = m.storage();
    let mut ok = storage.is_some();
    let mut write = |run: Run| {
        if ok && let Some(storage) = &storage {
            let start = run.pieces[0].0;
            let bufs: Vec<&[u8]> = run.pieces.iter().map(|(_, b, len)| &b[..*len]).collect();
            if let Err(e) = storage.write_vectored_at(&bufs, start) {
                m.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                m.fail(&format!("write error at offset {start}: {e}"));
                ok = false;
            }
        }
    };
    loop {
        // Block for more while little is buffered; once enough is, write it all as soon as
        // the stream goes quiet.
        let next =
            if buffered < MIN_STREAM_WRITE { rx.recv().map_err(|_| TryRecvError::Disconnected) } else { rx.try_recv() };
        match next {
            Ok(p) => {
                let len = p.2;
                let (off, end) = (p.0, p.0 + len as u64);
                if let Some(i) = runs.iter().position(|r| r.end == off && r.bytes + len <= MAX_WRITE) {
                    let r = &mut runs[i];
                    r.end = end;
                    r.bytes += len;
                    r.pieces.push(p);
                } else {
                    // A full run that this piece would extend, or the oldest run when too
                    // many are open, goes out first.
                    let out = runs.iter().position(|r| r.end == off).or((runs.len() >= MAX_RUNS).then_some(0));
                    if let Some(i) = out {
                        let r = runs.remove(i);
                        buffered -= r.bytes;
                        write(r);
                    }
                    runs.push(Run { end, bytes: len, pieces: vec![p] });
                }
                buffered += len;
            }
            Err(quiet_or_end) => {
                for r in runs.drain(..) {
                    write(r);
                }
                buffered = 0;
                if quiet_or_end == TryRecvError::Disconnected {
                    return;
                }
            }
        }
    }
}

/// Writes and flushes every live block of the arena. Returns the devices that failed (they
/// are already marked failed); an empty list means every write is durable.
pub fn write_and_flush(vol: &Volume, arena: &Arena) -> Vec<u8> {
    let ndev = vol.devices.len();
    let mut per_dev: Vec<Vec<(u64, &[u8])>> = vec![Vec::new(); ndev];
    // A device that took only streamed writes still needs its flush (and its verdict).
    let mut streamed_to = vec![false; ndev];
    for b in arena.blocks.iter().filter(|b| !b.dead) {
        let bytes = b.bytes();
        for loc in b.copies.iter().filter(|l| l.is_valid()) {
            if b.streamed {
                streamed_to[usize::from(loc.device)] = true;
            } else {
                per_dev[usize::from(loc.device)].push((loc.offset, bytes));
            }
        }
    }
    for (dev, off, bytes) in &arena.extra {
        per_dev[usize::from(*dev)].push((*off, bytes));
    }
    let results: Vec<(u8, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = per_dev
            .into_iter()
            .enumerate()
            .filter(|(d, w)| !w.is_empty() || streamed_to[*d])
            .map(|(d, mut writes)| {
                let m = &vol.devices[d];
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
    let Some(storage) = m.storage().filter(|_| m.writable()) else {
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
