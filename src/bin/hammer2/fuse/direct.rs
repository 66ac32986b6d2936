//! Direct writes and the page cache (DESIGN §12, "Direct writes and the page cache").
//!
//! The kernel drops the cached pages of a direct write's range when it sends the write,
//! not when we answer it. For a synchronous write that is the same moment as far as the
//! caller can tell; for an asynchronous one (libaio, io_uring) a buffered read or readahead
//! of the range while the write is in flight caches the old data again, and nothing drops
//! it after: a read after the write completed returned the old data. So:
//!
//! - the next buffered open of a file that had direct writes does not keep the page cache
//!   (no FOPEN_KEEP_CACHE): the kernel drops the file's pages, waiting for reads in
//!   flight, before the open returns. A program that opens the file after the writes
//!   completed reads what they wrote.
//! - after answering a direct write we drop its range once more
//!   (FUSE_NOTIFY_INVAL_INODE), for files that stayed open or mapped meanwhile.
//!
//! Not before answering: dropping a page waits for its lock, which a read in flight holds
//! until we answer that read, and writes waiting to be answered can fill every slot the
//! kernel has for requests (FUSE over io_uring's entries, max_background), so the read
//! would never reach us. The notifications are sent from a thread of their own so that no
//! worker waits on a page lock either.

use super::notify::Notifier;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, OnceLock};

/// A range a direct write changed: (inode, offset, length).
type Range = (u64, u64, u32);

/// Shared by every session of a mount; the thread ends when the last session drops its
/// handle.
pub struct DirectWrites {
    queue: Sender<Range>,
    /// The primary session's notifier, set once the session exists (before it serves).
    notifier: Arc<OnceLock<Notifier>>,
    /// Files with direct writes since their last buffered open.
    written: Mutex<HashSet<u64>>,
}

impl DirectWrites {
    pub fn start() -> std::io::Result<DirectWrites> {
        let (queue, rx) = channel::<Range>();
        let notifier: Arc<OnceLock<Notifier>> = Arc::default();
        let n = notifier.clone();
        std::thread::Builder::new().name("h2-dio-inval".into()).spawn(move || {
            for (ino, offset, len) in rx {
                let Some(n) = n.get() else { continue };
                // i64: offsets stay below MAX_FILE_SIZE (2^62).
                if let Err(e) = n.inval_inode(ino, offset as i64, i64::from(len)) {
                    tracing::warn!("inode {ino}: cannot drop the cached pages of a direct write: {e}");
                }
            }
        })?;
        Ok(DirectWrites { queue, notifier, written: Mutex::default() })
    }

    /// Where the mount puts the primary session's notifier.
    pub fn notifier(&self) -> Arc<OnceLock<Notifier>> {
        self.notifier.clone()
    }

    /// A direct write of `len` bytes at `offset` is in the engine; called before it is
    /// answered.
    pub fn written(&self, ino: u64, offset: u64, len: u32) {
        self.written.lock().insert(ino);
        // Fails only once the thread is gone, when the sessions end.
        let _ = self.queue.send((ino, offset, len));
    }

    /// Whether a buffered open of `ino` may keep the cached pages: not after direct writes.
    pub fn keep_cache(&self, ino: u64) -> bool {
        !self.written.lock().remove(&ino)
    }
}
