//! The FUSE adapter: a thin translation of kernel requests into the engine's VOP calls.
//!
//! Requests are decoded by our own protocol code (`proto/`) from whatever carried them,
//! /dev/fuse (`devfuse.rs`) or the kernel's io_uring queues (`uring.rs`), and served by one
//! dispatch (`ops.rs`). Every request runs inside [`Hammer2Fuse::run`]: an engine error
//! becomes its errno, and a panic becomes EIO and a log line, so no request can take the
//! daemon down. Requests are served by several threads at once; this layer holds no lock of
//! its own but the short one on the set of files with direct writes (`direct.rs`).

mod convert;
pub mod devfuse;
mod dir;
mod direct;
pub mod dispatch;
mod negotiate;
pub mod notify;
mod ops;
pub mod proto;
pub mod requests;
pub mod snapdir;
pub mod uring;
mod xattr;

use hammer2::Fs;
use negotiate::{ATTR_TTL, ENTRY_TTL, MAX_WRITE, Offer};
pub use notify::Notifier;
pub use proto::Errno;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// How the final commit went (set by `destroy`, read by the daemon before it exits).
pub type Outcome = Arc<OnceLock<Result<(), String>>>;

/// The adapter of one mount, shared by every thread of both transports.
pub struct Hammer2Fuse {
    /// Taken by `finish`, after the last request was answered.
    fs: Option<Arc<Fs>>,
    /// st_blksize: the data block size, the best unit for I/O.
    blksize: u32,
    outcome: Outcome,
    /// Whether the INIT handshake negotiates FUSE over io_uring.
    want_uring: bool,
    /// What the kernel offered at INIT.
    offer: OnceLock<Offer>,
    /// Answers direct writes once their range is out of the page cache.
    direct: Arc<direct::DirectWrites>,
    /// `.snapshots` and the inode numbers of snapshots (`snapdir.rs`).
    snapdir: Arc<snapdir::SnapDir>,
}

impl Hammer2Fuse {
    pub fn new(fs: Fs, outcome: Outcome, want_uring: bool) -> std::io::Result<Hammer2Fuse> {
        let blksize = fs.block_size().clamp(4096, u64::from(MAX_WRITE)) as u32;
        Ok(Hammer2Fuse {
            fs: Some(Arc::new(fs)),
            blksize,
            outcome,
            want_uring,
            offer: OnceLock::new(),
            direct: Arc::new(direct::DirectWrites::start()?),
            snapdir: Arc::default(),
        })
    }

    /// Serves `.snapshots` as `-o snapdir=` says (hidden by default).
    /// A version-1 filesystem has no snapshots: no `.snapshots` (the name stays free).
    pub fn with_snapdir(mut self, mode: snapdir::Mode) -> Hammer2Fuse {
        let mode = match &self.fs {
            Some(fs) if !fs.has_snapshots() => snapdir::Mode::Off,
            _ => mode,
        };
        if let Some(fs) = &self.fs {
            snapdir::warn_shadowed(fs, mode);
            if mode != snapdir::Mode::Off {
                // The kernel forgets a deleted snapshot's name and everything below it.
                let notifier = self.direct.notifier();
                fs.on_snapshot_deleted(move |name| {
                    if let Some(n) = notifier.get()
                        && let Err(e) = n.inval_entry(snapdir::DIR_INO, name.as_bytes())
                    {
                        tracing::debug!("invalidating .snapshots/{name}: {e}");
                    }
                });
            }
        }
        self.snapdir = Arc::new(snapdir::SnapDir::new(mode));
        self
    }

    /// Where the mount puts the connection's notifier, once mounted.
    pub fn notifier(&self) -> Arc<OnceLock<Notifier>> {
        self.direct.notifier()
    }

    /// What the kernel offered, once the handshake has run.
    pub fn offer(&self) -> Option<Offer> {
        self.offer.get().copied()
    }

    /// The INIT handshake: what we ask of the kernel (`negotiate.rs`).
    fn init(&self, kernel: &proto::abi::InitIn, out: &mut proto::Reply) -> Result<(), Errno> {
        requests::count("init");
        if kernel.major != proto::abi::KERNEL_VERSION {
            // A newer kernel takes our major alone and sends INIT again; an older one is
            // refused.
            if kernel.major > proto::abi::KERNEL_VERSION {
                let o = proto::abi::InitOut { major: proto::abi::KERNEL_VERSION, ..Default::default() };
                return Ok(out.push(&o)?);
            }
            return Err(Errno(libc::EPROTO));
        }
        let (reply, offer) = negotiate::configure(kernel, self.want_uring);
        // ACLs only where the kernel enforces them; never stored for show.
        if let Some(fs) = &self.fs {
            fs.set_posix_acl(offer.has(proto::abi::init::POSIX_ACL));
        }
        let _ = self.offer.set(offer);
        Ok(out.push(&reply)?)
    }

    /// Tells the kernel that `ino`'s attributes changed in a request whose reply carries none
    /// (a write or fallocate that dropped set-id bits): it would otherwise serve the old
    /// mode from its cache for up to ATTR_TTL. Attributes only (offset -1): no page cache is
    /// touched and no inode lock taken, so it is safe while the request is still open.
    fn attrs_changed(&self, ino: u64) {
        if let Some(n) = self.direct.notifier().get() {
            if let Err(e) = n.inval_inode(ino, -1, 0) {
                tracing::debug!("invalidating the attributes of inode {ino}: {e}");
            }
        }
    }

    /// Runs the engine side of one request, counted under `op` (see `requests.rs`). Engine
    /// errors become their errno (logged when they mean something is wrong inside: EIO); a
    /// panic becomes EIO and is logged.
    fn run<T>(&self, op: &'static str, ino: u64, f: impl FnOnce(&Fs) -> hammer2::Result<T>) -> Result<T, Errno> {
        let Some(fs) = self.fs.as_ref() else {
            return Err(Errno::EIO);
        };
        let started = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(|| f(fs)));
        requests::served(op, started);
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let errno = e.errno();
                if errno == libc::EIO {
                    tracing::error!("{op} (inode {ino}): {e}");
                } else {
                    tracing::debug!("{op} (inode {ino}): {e}");
                }
                Err(Errno(errno))
            }
            Err(_) => {
                tracing::error!("{op} (inode {ino}) panicked; answered EIO and kept serving");
                Err(Errno::EIO)
            }
        }
    }

    /// The final commit: everything, with the clean flag. Called by the owner once every
    /// thread of both transports has stopped (it holds the adapter alone again): nothing can
    /// then change the engine behind the final commit.
    pub fn finish(&mut self) {
        let Some(fs) = self.fs.take() else {
            return;
        };
        let fs = match Arc::try_unwrap(fs) {
            Ok(fs) => fs,
            Err(_) => {
                tracing::error!("an engine handle is still held at unmount; final commit skipped");
                let _ = self.outcome.set(Err("an engine handle was still held at unmount".into()));
                return;
            }
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
        Hammer2Fuse::new(fs, Outcome::default(), false).unwrap()
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
