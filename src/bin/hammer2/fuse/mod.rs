//! The FUSE adapter: a thin translation of kernel requests into the engine's VOP calls.
//!
//! Every request runs inside [`Hammer2Fuse::run`]: an engine error becomes its errno, and a
//! panic becomes EIO and a log line, so no request can take the daemon down. Requests are
//! served by several threads at once; this layer holds no lock of its own.

mod convert;
mod dir;
mod ops;
mod xattr;

use fuser::{Errno, InitFlags, KernelConfig};
use hammer2::Fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Largest write the kernel sends in one request (the kernel's own ceiling is 256 pages).
const MAX_WRITE: u32 = 1 << 20;
/// Readahead we ask for (the kernel caps it at what it offered in INIT).
const MAX_READAHEAD: u32 = 1 << 20;
/// How long the kernel may trust a name (and a negative lookup): names only change through
/// the kernel, which updates its dentry cache itself.
const ENTRY_TTL: Duration = Duration::from_secs(3600);
/// How long the kernel may trust attributes. Short, because one field changes behind its
/// back: st_blocks counts whole blocks for data not yet committed and becomes exact at the
/// commit.
const ATTR_TTL: Duration = Duration::from_secs(1);

/// How the final commit went (set by `destroy`, read by the daemon before it exits).
pub type Outcome = Arc<OnceLock<Result<(), String>>>;

pub struct Hammer2Fuse {
    /// Taken by `destroy`, after the last request was answered.
    fs: Option<Fs>,
    /// st_blksize: the data block size, the best unit for I/O.
    blksize: u32,
    outcome: Outcome,
}

impl Hammer2Fuse {
    pub fn new(fs: Fs, outcome: Outcome) -> Hammer2Fuse {
        let blksize = fs.inner().block_size().clamp(4096, u64::from(MAX_WRITE)) as u32;
        Hammer2Fuse { fs: Some(fs), blksize, outcome }
    }

    /// Runs the engine side of one request. Engine errors become their errno (logged when
    /// they mean something is wrong inside: EIO); a panic becomes EIO and is logged.
    fn run<T>(&self, op: &'static str, ino: u64, f: impl FnOnce(&Fs) -> hammer2::Result<T>) -> Result<T, Errno> {
        let Some(fs) = self.fs.as_ref() else {
            return Err(Errno::EIO);
        };
        match catch_unwind(AssertUnwindSafe(|| f(fs))) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let errno = e.errno();
                if errno == libc::EIO {
                    tracing::error!("{op} (inode {ino}): {e}");
                } else {
                    tracing::debug!("{op} (inode {ino}): {e}");
                }
                Err(Errno::from_i32(errno))
            }
            Err(_) => {
                tracing::error!("{op} (inode {ino}) panicked; answered EIO and kept serving");
                Err(Errno::EIO)
            }
        }
    }

    /// Negotiates what the kernel may do: 1 MiB writes, readahead, parallel directory
    /// operations, readdirplus and symlink caching.
    ///
    /// And FUSE_HANDLE_KILLPRIV_V2: we drop set-user/group-ID on write, truncate and chown
    /// ourselves (see `write` and `setattr`), so the kernel need not refresh the attributes
    /// before every chown, and after a file's first write it stops asking for its
    /// security.capability before each write (SB_NOSEC): two round trips less per file
    /// tar unpacks. Capabilities are still removed by the kernel, which asks for them where
    /// it matters.
    ///
    /// And FUSE_ASYNC_DIO: without it the kernel turns every asynchronous direct request
    /// (libaio, io_uring) into a synchronous one, so a program keeping 16 requests in flight
    /// had one at a time reach us, and the workers sat idle: 4 KiB random writes at queue
    /// depth 16 went from 5.9k to 11.8k IOPS, random reads to 59k.
    ///
    /// Not the writeback cache: with it the kernel keeps written pages to itself until it
    /// flushes them, but it does not flush before asking us for SEEK_DATA/SEEK_HOLE, so we
    /// would report holes where a program has just written (and `cp`, `tar --sparse` would
    /// skip that data). Writes go through to the engine instead, 1 MiB at a time; reads are
    /// still cached (FOPEN_KEEP_CACHE) and read ahead.
    fn configure(&self, config: &mut KernelConfig) {
        if let Err(max) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(max);
        }
        if let Err(max) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        let wanted = InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_BIG_WRITES
            | InitFlags::FUSE_MAX_PAGES
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_HANDLE_KILLPRIV_V2
            | InitFlags::FUSE_ASYNC_DIO;
        for flag in wanted.iter() {
            if config.add_capabilities(flag).is_err() {
                tracing::info!("the kernel does not offer {flag:?}");
            }
        }
    }

    /// The final commit: everything, with the clean flag.
    fn finish(&mut self) {
        let Some(fs) = self.fs.take() else {
            return;
        };
        let r = match catch_unwind(AssertUnwindSafe(|| fs.unmount())) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("final commit failed: {e}")),
            Err(_) => Err("final commit panicked".to_string()),
        };
        match &r {
            Ok(()) => tracing::info!("unmounted; final commit done"),
            Err(e) => tracing::error!("{e}"),
        }
        let _ = self.outcome.set(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hammer2::format::{FormatOptions, format};
    use hammer2::storage::DynStorage;
    use hammer2::storage::mem::MemStorage;

    fn adapter() -> Hammer2Fuse {
        let dev: DynStorage = Arc::new(MemStorage::new(64 << 20, "mem"));
        format(vec![dev.clone()], &FormatOptions::default()).unwrap();
        let opts = hammer2::Options { background_sync: false, ..Default::default() };
        let fs = Fs::mount(vec![dev], opts).unwrap();
        Hammer2Fuse::new(fs, Outcome::default())
    }

    #[test]
    fn a_panicking_request_is_answered_eio_and_the_next_one_is_served() {
        let h = adapter();
        let r: Result<(), Errno> = h.run("test", 1, |_| panic!("injected"));
        assert_eq!(r, Err(Errno::EIO));
        assert!(h.run("getattr", 1, |fs| fs.getattr(fs.root())).is_ok());
    }

    #[test]
    fn engine_errors_become_their_errno() {
        let h = adapter();
        let r = h.run("lookup", 1, |fs| fs.lookup(fs.root(), b"missing"));
        assert_eq!(r, Err(Errno::ENOENT));
    }

    #[test]
    fn destroy_commits_once_and_reports_success() {
        let mut h = adapter();
        let outcome = h.outcome.clone();
        h.finish();
        h.finish();
        assert_eq!(outcome.get(), Some(&Ok(())));
        assert_eq!(h.run("getattr", 1, |fs| fs.getattr(1)).err(), Some(Errno::EIO));
    }
}
