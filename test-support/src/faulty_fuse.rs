//! A device that fails on command, for tests that run the real daemon: the test serves a
//! tiny FUSE filesystem of its own holding one file, `dev.img`, whose reads, writes and
//! fsyncs are passed straight through (direct I/O, no page cache) to a real image file, or,
//! once told to fail, answered with EIO until told to recover. `hammer2 mount` opens
//! `dev.img` like any image file; the daemon needs no fault hook.

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, MountOption,
    OpenFlags, ReplyAttr, ReplyData, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, SessionACL, WriteFlags,
};
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

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
}

impl PassThrough {
    fn attr(&self, ino: u64) -> FileAttr {
        let now = SystemTime::now();
        let (kind, perm, size, nlink) =
            if ino == ROOT { (FileType::Directory, 0o755, 0, 2) } else { (FileType::RegularFile, 0o644, self.size, 1) };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size / 512,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Blocks the calling request while the device is held.
    fn wait_while_held(&self) {
        while self.faults.held.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// EIO while failing (counted).
    fn refuse(&self) -> bool {
        let failing = self.faults.failing.load(Ordering::SeqCst);
        if failing {
            self.faults.refused.fetch_add(1, Ordering::Relaxed);
        }
        failing
    }
}

impl Filesystem for PassThrough {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent.0 == ROOT && name == NAME {
            reply.entry(&TTL, &self.attr(FILE), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino.0 {
            ROOT | FILE => reply.attr(&TTL, &self.attr(ino.0)),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if self.refuse() {
            return reply.error(Errno::EIO);
        }
        let len = (size as u64).min(self.size.saturating_sub(offset)) as usize;
        let mut buf = vec![0u8; len];
        match self.backing.read_exact_at(&mut buf, offset) {
            Ok(()) => reply.data(&buf),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.wait_while_held();
        if self.refuse() {
            return reply.error(Errno::EIO);
        }
        if offset + data.len() as u64 > self.size {
            return reply.error(Errno::ENOSPC);
        }
        match self.backing.write_all_at(data, offset) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.wait_while_held();
        if self.refuse() {
            return reply.error(Errno::EIO);
        }
        match self.backing.sync_data() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }
}

/// A real image file served as `MOUNTPOINT/dev.img` by a FUSE filesystem of the test's own,
/// which fails every request on command. Unmounted when dropped.
pub struct FaultyDevice {
    /// The path to give `hammer2 mount`.
    pub path: PathBuf,
    pub faults: Arc<Faults>,
    session: Option<fuser::BackgroundSession>,
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
        let fs = PassThrough { backing: file, size, faults: faults.clone() };
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("hammer2-test-faulty".into())];
        config.acl = SessionACL::Owner;
        config.n_threads = Some(2);
        let session = fuser::Session::new(fs, mountpoint, &config)
            .and_then(|s| s.spawn())
            .unwrap_or_else(|e| panic!("cannot serve the faulty device on {}: {e}", mountpoint.display()));
        let path = mountpoint.join(NAME);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::fs::metadata(&path).map(|m| m.len()).ok() != Some(size) {
            assert!(std::time::Instant::now() < deadline, "{} did not appear", path.display());
            std::thread::sleep(Duration::from_millis(10));
        }
        FaultyDevice { path, faults, session: Some(session), mountpoint: mountpoint.to_path_buf() }
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
        if let Some(s) = self.session.take() {
            // umount_and_join unmounts through fusermount3 when fuser mounted through it;
            // a plain umount covers the case where it mounted directly.
            if let Err(e) = s.umount_and_join() {
                let _ = std::process::Command::new("umount").arg("-l").arg(&self.mountpoint).output();
                eprintln!("unmounting the faulty device: {e}");
            }
        }
    }
}

impl Drop for FaultyDevice {
    fn drop(&mut self) {
        self.unmount();
    }
}
