//! A device that fails on command, for tests that run the real daemon: the test serves a
//! tiny FUSE filesystem of its own holding one file, `dev.img`, whose reads, writes and
//! fsyncs are passed straight through (direct I/O, no page cache) to a real image file, or,
//! once told to fail, answered with EIO until told to recover. `hammer2 mount` opens
//! `dev.img` like any image file; the daemon needs no fault hook.
//!
//! It is served by hammer2's own FUSE protocol code and /dev/fuse transport (`proto/`,
//! `devfuse.rs`, `negotiate.rs` of `src/bin/hammer2/fuse/`, included here as the floor
//! includes them), so the tests need no FUSE library of their own.

#[path = "../../src/bin/hammer2/fuse/devfuse.rs"]
#[allow(dead_code)]
mod devfuse;
#[path = "../../src/bin/hammer2/fuse/dispatch.rs"]
#[allow(dead_code)]
mod dispatch;
#[path = "../../src/bin/hammer2/fuse/negotiate.rs"]
#[allow(dead_code)]
mod negotiate;
#[path = "../../src/bin/hammer2/fuse/proto/mod.rs"]
#[allow(dead_code)]
mod proto;

use dispatch::{Answer, Dispatch};
use proto::{Errno, Op, Reply, Request, abi};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

const ROOT: u64 = 1;
const FILE: u64 = 2;
const NAME: &str = "dev.img";
const TTL: Duration = Duration::from_secs(1);

/// What the device has been asked to do, shared with the test.
#[derive(Default)]
pub struct Faults {
    failing: AtomicBool,
    /// Writes and fsyncs wait while this is set (a device that stalls).
    held: AtomicBool,
    /// Requests answered with EIO so far.
    pub refused: AtomicU64,
}

struct PassThrough {
    backing: File,
    size: u64,
    faults: Arc<Faults>,
    initialized: OnceLock<()>,
}

impl PassThrough {
    fn attr(&self, ino: u64) -> abi::Attr {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (mode, size, nlink) =
            if ino == ROOT { (libc::S_IFDIR | 0o755, 0, 2) } else { (libc::S_IFREG | 0o644, self.size, 1) };
        abi::Attr {
            ino,
            size,
            blocks: size / 512,
            atime: now,
            mtime: now,
            ctime: now,
            mode,
            nlink,
            blksize: 4096,
            ..abi::Attr::default()
        }
    }

    /// Blocks the calling request while the device is held.
    fn wait_while_held(&self) {
        while self.faults.held.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// EIO while failing (counted).
    fn refuse(&self) -> Result<(), Errno> {
        if self.faults.failing.load(Ordering::SeqCst) {
            self.faults.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Errno(libc::EIO));
        }
        Ok(())
    }

    fn serve(&self, req: &Request, out: &mut Reply) -> Result<(), Errno> {
        let io = |e: std::io::Error| Errno(e.raw_os_error().unwrap_or(libc::EIO));
        match &req.op {
            Op::Init(k) => {
                if k.major != abi::KERNEL_VERSION {
                    return Err(Errno(libc::EPROTO));
                }
                let (reply, _) = negotiate::configure(k, false);
                out.push(&reply)?;
                let _ = self.initialized.set(());
            }
            Op::Lookup { name } if req.nodeid() == ROOT && *name == NAME.as_bytes() => {
                out.push(&abi::EntryOut {
                    nodeid: FILE,
                    generation: 0,
                    entry_valid: TTL.as_secs(),
                    attr_valid: TTL.as_secs(),
                    entry_valid_nsec: 0,
                    attr_valid_nsec: 0,
                    attr: self.attr(FILE),
                })?;
            }
            Op::Lookup { .. } => return Err(Errno::ENOENT),
            Op::Getattr if matches!(req.nodeid(), ROOT | FILE) => {
                let attr = self.attr(req.nodeid());
                out.push(&abi::AttrOut { attr_valid: TTL.as_secs(), attr_valid_nsec: 0, dummy: 0, attr })?;
            }
            Op::Getattr => return Err(Errno::ENOENT),
            // Direct I/O: every read and write of the daemon reaches us, none is cached.
            Op::Open { .. } => out.push(&abi::OpenOut { fh: 0, open_flags: abi::fopen::DIRECT_IO, backing_id: 0 })?,
            Op::Read(r) => {
                self.refuse()?;
                let len = u64::from(r.size).min(self.size.saturating_sub(r.offset)) as usize;
                let room = out.room(len);
                let n = room.len();
                self.backing.read_exact_at(room, r.offset).map_err(io)?;
                out.commit(n);
            }
            Op::Write { arg, data } => {
                self.wait_while_held();
                self.refuse()?;
                if arg.offset + data.len() as u64 > self.size {
                    return Err(Errno(libc::ENOSPC));
                }
                self.backing.write_all_at(data, arg.offset).map_err(io)?;
                out.push(&abi::WriteOut { size: data.len() as u32, padding: 0 })?;
            }
            Op::Fsync => {
                self.wait_while_held();
                self.refuse()?;
                self.backing.sync_data().map_err(io)?;
            }
            Op::Release | Op::Flush => {}
            _ => return Err(Errno::ENOSYS),
        }
        Ok(())
    }
}

impl Dispatch for PassThrough {
    fn dispatch(&self, req: &Request, out: &mut Reply) -> Answer {
        if !req.op.answered() {
            return Answer::Nothing;
        }
        let served = self.serve(req, out);
        dispatch::answer(out, served)
    }

    fn initialized(&self) -> bool {
        self.initialized.get().is_some()
    }

    fn ring_negotiated(&self) -> bool {
        false
    }
}

/// A real image file served as `MOUNTPOINT/dev.img` by a FUSE filesystem of the test's own,
/// which fails every request on command. Unmounted when dropped.
pub struct FaultyDevice {
    /// The path to give `hammer2 mount`.
    pub path: PathBuf,
    pub faults: Arc<Faults>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    mountpoint: PathBuf,
}

impl FaultyDevice {
    /// Serves `backing` on `mountpoint` (an empty directory). Fails the test with the reason
    /// if FUSE cannot be mounted here.
    pub fn serve(backing: &Path, mountpoint: &Path) -> FaultyDevice {
        let file = File::options()
            .read(true)
            .write(true)
            .open(backing)
            .unwrap_or_else(|e| panic!("open {}: {e}", backing.display()));
        let size = file.metadata().expect("image size").len();
        let faults = Arc::new(Faults::default());
        let fs = Arc::new(PassThrough { backing: file, size, faults: faults.clone(), initialized: OnceLock::new() });
        let conn = crate::fuse_mount::mount(mountpoint, "hammer2-test-faulty", "fuse.hammer2-test-faulty")
            .unwrap_or_else(|e| panic!("cannot serve the faulty device on {}: {e}", mountpoint.display()));
        devfuse::handshake(&conn, &*fs)
            .unwrap_or_else(|e| panic!("the faulty device on {}: FUSE handshake: {e}", mountpoint.display()));
        let server = std::thread::Builder::new()
            .name("faulty-device".into())
            .spawn(move || {
                let conn: OwnedFd = conn;
                devfuse::serve(&conn, &fs, 2)
            })
            .expect("spawning the faulty device's server");
        let path = mountpoint.join(NAME);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::fs::metadata(&path).map(|m| m.len()).ok() != Some(size) {
            assert!(std::time::Instant::now() < deadline, "{} did not appear", path.display());
            std::thread::sleep(Duration::from_millis(10));
        }
        FaultyDevice { path, faults, server: Some(server), mountpoint: mountpoint.to_path_buf() }
    }

    /// From now on every read, write and fsync fails with EIO.
    pub fn fail(&self) {
        self.faults.failing.store(true, Ordering::SeqCst);
    }

    /// From now on writes and fsyncs wait (the requests stay pending) until `release`.
    pub fn hold(&self) {
        self.faults.held.store(true, Ordering::SeqCst);
    }

    pub fn release(&self) {
        self.faults.held.store(false, Ordering::SeqCst);
    }

    /// The device answers again.
    pub fn recover(&self) {
        self.faults.failing.store(false, Ordering::SeqCst);
    }

    pub fn refused(&self) -> u64 {
        self.faults.refused.load(Ordering::Relaxed)
    }

    /// Unmounts (the daemon using it must be gone) and waits for the server thread.
    pub fn stop(mut self) {
        self.unmount();
    }

    fn unmount(&mut self) {
        if let Some(server) = self.server.take() {
            // Unmounting ends the connection, and with it the server's workers.
            if let Err(e) = crate::fuse_mount::unmount(&self.mountpoint) {
                eprintln!("unmounting the faulty device: {e}");
            }
            match server.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("the faulty device's server: {e}"),
                Err(_) => eprintln!("the faulty device's server panicked"),
            }
        }
    }
}

impl Drop for FaultyDevice {
    fn drop(&mut self) {
        self.unmount();
    }
}
