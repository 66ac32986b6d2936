//! The FUSE adapter: a thin translation of kernel requests into the engine's VOP calls.
//!
//! Every request runs inside [`Hammer2Fuse::run`]: an engine error becomes its errno, and a
//! panic becomes EIO and a log line, so no request can take the daemon down. Requests are
//! served by several threads at once; this layer holds no lock of its own.

mod convert;
mod dir;
mod negotiate;
mod ops;
mod xattr;

use fuser::Errno;
use hammer2::Fs;
use negotiate::{ATTR_TTL, ENTRY_TTL, MAX_WRITE};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

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
