//! Inode read-ahead: a walk in inode-number order (stat of files in the order they were
//! made, `find`, `tar`, `ls -l` of a directory written at once) finds each next window of
//! inodes already read, verified and decoded, by a thread of its own.
//!
//! Inodes committed together lie together in the inode index and on disk (`alloc/zones.rs`),
//! so a cold lookup reads a window of `WINDOW` neighbours with one request (`prefetch`). On
//! its own that makes every `WINDOW`-th lookup of such a walk wait for the devices and pay
//! for reading, checking and decoding the whole window, on the thread the caller (through
//! FUSE: a process waiting in `stat`) waits for. Read-ahead takes that off the waiting
//! thread: when a lookup reads window k, or first meets the window the read-ahead thread
//! read, the window after it is queued for that thread, which then runs beside the walk
//! (on a machine whose other CPU is idle while a request and its reply cross the kernel).
//!
//! The *trigger* is the first inode of the last window queued, as the kernel marks a page
//! of its read-ahead window: reaching it means the walk has caught up and the next window
//! is wanted. A lookup that misses the cache while its inode's window is being read waits
//! for that read rather than reading the same blocks a second time; one whose window is
//! still queued takes the window back and reads it itself.
//!
//! Advice only, and safe with a stale window: the thread reads through the same verified
//! bulk read as `prefetch`, so a block freed and reused since its reference was taken fails
//! its check value and is simply not cached (nothing is counted or healed from a
//! read-ahead). Only a mounted filesystem with background commits runs the thread; without
//! it windows are not queued and every miss reads its own window, as before.

use super::FsInner;
use hammer2_format::Blockref;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

/// Inode blocks one window holds: one read request (64 x 4 KiB = 256 KiB).
pub(crate) const WINDOW: usize = 64;
/// Windows queued at most: a walk that outruns its read-ahead reads for itself instead of
/// queueing more.
const MAX_QUEUED: usize = 2;

/// A run of neighbouring inode references of one index node, first to last inode number.
struct Window {
    first: u64,
    last: u64,
    refs: Vec<Blockref>,
}

impl Window {
    fn holds(&self, inum: u64) -> bool {
        (self.first..=self.last).contains(&inum)
    }
}

#[derive(Default)]
struct Queue {
    windows: VecDeque<Window>,
    /// (first, last) inode numbers of the window the thread is reading now.
    reading: Option<(u64, u64)>,
    running: bool,
    stopping: bool,
}

/// The read-ahead state of one mounted volume: the queue the thread serves and the trigger.
#[derive(Default)]
pub(crate) struct InodeReadAhead {
    queue: Mutex<Queue>,
    cv: Condvar,
    /// First inode number of the last window queued (0: none; inode 0 does not exist).
    trigger: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
    counts: Counts,
}

#[derive(Default)]
struct Counts {
    ahead: AtomicU64,
    on_demand: AtomicU64,
    waits: AtomicU64,
}

/// What the inode read-ahead did since mount (`hammer2 info --json`, `inode_readahead`): a
/// walk in inode order shows nearly all its windows read ahead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReadAheadCounts {
    /// Windows of inodes the read-ahead thread read.
    pub windows_ahead: u64,
    /// Windows a lookup read itself, because its inode was neither cached nor on its way.
    pub windows_on_demand: u64,
    /// Lookups that waited for the read-ahead thread to finish the window of their inode.
    pub waits: u64,
}

impl InodeReadAhead {
    /// Starts the thread for `fs`; `stop` (from `Fs`'s unmount or drop, with the syncer's)
    /// ends it.
    pub(crate) fn start(fs: &Arc<FsInner>) {
        let ra = &fs.inode_ahead;
        ra.queue.lock().running = true;
        let fs = fs.clone();
        let handle = std::thread::Builder::new()
            .name("hammer2-readahead".into())
            .spawn(move || run(&fs))
            .expect("spawning the read-ahead thread");
        *ra.thread.lock() = Some(handle);
    }

    /// Stops the thread and waits for it (before the last commit of an unmount, so that no
    /// read is in flight when the devices close).
    pub(crate) fn stop(&self) {
        {
            let mut q = self.queue.lock();
            q.stopping = true;
            q.running = false;
            q.windows.clear();
        }
        self.cv.notify_all();
        if let Some(h) = self.thread.lock().take() {
            let _ = h.join();
        }
    }

    pub(crate) fn counts(&self) -> ReadAheadCounts {
        let c = &self.counts;
        ReadAheadCounts {
            windows_ahead: c.ahead.load(Ordering::Relaxed),
            windows_on_demand: c.on_demand.load(Ordering::Relaxed),
            waits: c.waits.load(Ordering::Relaxed),
        }
    }

    /// A lookup read the window of its inode itself (`locate_inode`).
    pub(crate) fn count_on_demand(&self) {
        self.counts.on_demand.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a lookup that found inode `inum` cached should queue the window after it: it
    /// has reached the first inode of the window read ahead last.
    pub(crate) fn reached(&self, inum: u64) -> bool {
        self.trigger.load(Ordering::Relaxed) == inum
    }

    /// Queues `refs` (neighbours in one index node, in key order) for the thread, and makes
    /// their first inode the trigger. Nothing is queued without a thread, or when the walk
    /// has outrun the read-ahead.
    pub(crate) fn queue(&self, refs: &[Blockref]) {
        let (Some(first), Some(last)) = (refs.first(), refs.last()) else { return };
        let mut q = self.queue.lock();
        if !q.running || q.windows.len() >= MAX_QUEUED || q.windows.iter().any(|w| w.holds(first.key)) {
            return;
        }
        q.windows.push_back(Window { first: first.key, last: last.key, refs: refs.to_vec() });
        self.trigger.store(first.key, Ordering::Relaxed);
        drop(q);
        self.cv.notify_one();
    }

    /// Before a lookup of `inum` that missed the cache reads for itself: waits while the
    /// thread reads the window holding it, and takes a queued window holding it back.
    pub(crate) fn claim(&self, inum: u64) {
        let mut q = self.queue.lock();
        q.windows.retain(|w| !w.holds(inum));
        if q.reading.is_some_and(|(a, b)| (a..=b).contains(&inum)) {
            self.counts.waits.fetch_add(1, Ordering::Relaxed);
            while q.reading.is_some_and(|(a, b)| (a..=b).contains(&inum)) {
                self.cv.wait(&mut q);
            }
        }
    }
}

fn run(fs: &FsInner) {
    let ra = &fs.inode_ahead;
    loop {
        let window = {
            let mut q = ra.queue.lock();
            loop {
                if q.stopping {
                    return;
                }
                if let Some(w) = q.windows.pop_front() {
                    q.reading = Some((w.first, w.last));
                    break w;
                }
                ra.cv.wait(&mut q);
            }
        };
        fs.vol.prefetch(&window.refs);
        ra.counts.ahead.fetch_add(1, Ordering::Relaxed);
        ra.queue.lock().reading = None;
        ra.cv.notify_all();
    }
}
