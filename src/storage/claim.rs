//! Who may open a device at the same time as whom: the one locking rule every command
//! follows (DESIGN §2, "device claims"). `FileStorage::open` applies it; nothing else takes
//! a lock on a device.
//!
//! - `Exclusive` (every writer: a read-write mount, mkfs, fsck -y/-p, scrub, resync): a
//!   block device is opened with O_EXCL (EBUSY while mounted or held by another O_EXCL
//!   opener) and both files and block devices get a non-blocking exclusive flock.
//! - `Shared` (readers that need the filesystem not to change under them: a read-only
//!   mount, fsck -n): a non-blocking shared flock, so any number of them may run together
//!   and no writer beside them; a block device must also not be claimed with O_EXCL by
//!   anyone (a kernel mount, a writer).
//! - `ReadOnly` (info, which may look at a mounted filesystem): no claim at all.
//!
//! The flock is on the inode, so a hard link (a second path to the same file) meets the
//! first opener's lock. A loop device holds its backing file open but never locks it, so
//! the rule is made to reach across it both ways: an image file that backs an attached loop
//! device is refused to every claimant, and opening a loop device also takes the same
//! flock on its backing file (a mount of the file that started before `losetup` then keeps
//! a mount of the loop device away, and the other way round).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How to open a device (see the module doc for what each one keeps away).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read-only, without any claim.
    ReadOnly,
    /// Read-only, with a shared claim that keeps every writer away.
    Shared,
    /// Read-write, with an exclusive claim.
    Exclusive,
}

/// Why a device cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{} is in use ({why})", path.display())]
    InUse { path: PathBuf, why: InUse },
    #[error("cannot open {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// A remote device (an NBD URI) that could not be reached or used.
    #[error(transparent)]
    Nbd(#[from] super::nbd::NbdError),
}

/// Who holds a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InUse {
    /// Its flock is held: a hammer2 process (mount, fsck, scrub...) has it, maybe under
    /// another name (a hard link, the loop device over it).
    Locked,
    /// A block device that is mounted or held open with O_EXCL by another program.
    Claimed,
    /// An image file behind these attached loop devices.
    BacksLoop(Vec<String>),
    /// A loop device whose backing file's flock is held (a hammer2 process has the file).
    BackingLocked(PathBuf),
}

impl std::fmt::Display for InUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InUse::Locked => write!(f, "locked by a running hammer2 mount or tool"),
            InUse::Claimed => write!(f, "mounted, or opened exclusively by another program"),
            InUse::BacksLoop(l) => write!(f, "it backs loop device {}", l.join(", ")),
            InUse::BackingLocked(b) => {
                write!(f, "its backing file {} is locked by a running hammer2 mount or tool", b.display())
            }
        }
    }
}

impl From<OpenError> for io::Error {
    fn from(e: OpenError) -> io::Error {
        match e {
            OpenError::InUse { .. } => io::Error::new(io::ErrorKind::ResourceBusy, e.to_string()),
            OpenError::Io { source, .. } => source,
            OpenError::Nbd(e) => io::Error::other(e),
        }
    }
}

/// An opened device with its claim taken: the descriptor to use, and (for a loop device)
/// the locked descriptor of its backing file, to hold as long as the device.
pub(super) struct Claimed {
    pub file: File,
    pub meta: std::fs::Metadata,
    pub backing: Option<File>,
}

/// Opens `path` for `mode` and takes the claim the rule asks for.
pub(super) fn claim(path: &Path, mode: OpenMode) -> Result<Claimed, OpenError> {
    let io_err = |source: io::Error| OpenError::Io { path: path.to_path_buf(), source };
    let busy = |why: InUse| OpenError::InUse { path: path.to_path_buf(), why };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    let is_blk = meta.file_type().is_block_device();
    if !is_blk && !meta.is_file() {
        return Err(io_err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file or block device")));
    }
    if mode == OpenMode::ReadOnly {
        let file = File::open(path).map_err(io_err)?;
        return Ok(Claimed { file, meta, backing: None });
    }
    if !is_blk {
        let loops = crate::loopdev::backed_by(&meta);
        if !loops.is_empty() {
            return Err(busy(InUse::BacksLoop(loops)));
        }
    }
    let mut opts = OpenOptions::new();
    opts.read(true);
    if mode == OpenMode::Exclusive {
        opts.write(true);
        if is_blk {
            opts.custom_flags(libc::O_EXCL);
        }
    }
    let file = opts.open(path).map_err(|e| match e.raw_os_error() {
        Some(libc::EBUSY) => busy(InUse::Claimed),
        _ => io_err(e),
    })?;
    lock(&file, mode).map_err(|e| match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => busy(InUse::Locked),
        _ => io_err(e),
    })?;
    if is_blk && mode == OpenMode::Shared {
        // A shared claim on a block device must also find nobody holding it with O_EXCL:
        // the flock alone does not see a kernel mount. Taken after the flock, so a writer
        // that slips in between meets one or the other.
        OpenOptions::new().read(true).custom_flags(libc::O_EXCL).open(path).map_err(|e| match e.raw_os_error() {
            Some(libc::EBUSY) => busy(InUse::Claimed),
            _ => io_err(e),
        })?;
    }
    let backing = if is_blk { lock_loop_backing(&meta, mode).map_err(|e| e.at(path))? } else { None };
    Ok(Claimed { file, meta, backing })
}

/// Opens `path` again for the claimant that holds `held` (a device reopened while mounted,
/// `FileStorage::reopen`). When `path` still names what `held` is open on, the new
/// descriptor takes no claim of its own (flock and O_EXCL would meet our own claim) and
/// `Reclaimed::Same` says so: the caller keeps the claim by keeping `held`'s descriptors (a
/// duplicate is the same open file description, hence the same flock and O_EXCL).
/// Anything else there (a disk that came back as another device) is claimed afresh, as by
/// any opener.
pub(super) fn reclaim(path: &Path, mode: OpenMode, held: &File) -> Result<(Claimed, Reclaimed), OpenError> {
    let io_err = |source: io::Error| OpenError::Io { path: path.to_path_buf(), source };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    let same = held.metadata().is_ok_and(|h| Identity::of(&h) == Identity::of(&meta));
    if !same || mode == OpenMode::ReadOnly {
        return Ok((claim(path, mode)?, Reclaimed::Fresh));
    }
    let file = OpenOptions::new().read(true).write(mode == OpenMode::Exclusive).open(path).map_err(io_err)?;
    Ok((Claimed { file, meta, backing: None }, Reclaimed::Same))
}

/// Whether `reclaim` found the same device (whose claim the caller must keep holding) or
/// claimed a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reclaimed {
    Same,
    Fresh,
}

fn lock(file: &File, mode: OpenMode) -> io::Result<()> {
    let how = if mode == OpenMode::Exclusive { libc::LOCK_EX } else { libc::LOCK_SH };
    // SAFETY: flock on a valid, owned file descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), how | libc::LOCK_NB) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An error about the backing file, reported against the loop device that was named.
struct BackingError(OpenError);

impl BackingError {
    fn at(self, loopdev: &Path) -> OpenError {
        match self.0 {
            OpenError::InUse { path, why: InUse::Locked } => {
                OpenError::InUse { path: loopdev.to_path_buf(), why: InUse::BackingLocked(path) }
            }
            e => e,
        }
    }
}

/// When the block device is a loop device, takes `mode`'s flock on its backing file.
fn lock_loop_backing(meta: &std::fs::Metadata, mode: OpenMode) -> Result<Option<File>, BackingError> {
    let Some(backing) = crate::loopdev::backing_file(meta.rdev()) else {
        return Ok(None);
    };
    // A backing file that was deleted (or cannot be opened) cannot be named by anyone else.
    let Ok(file) = File::open(&backing) else {
        return Ok(None);
    };
    match lock(&file, mode) {
        Ok(()) => Ok(Some(file)),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
            Err(BackingError(OpenError::InUse { path: backing, why: InUse::Locked }))
        }
        Err(e) => Err(BackingError(OpenError::Io { path: backing, source: e })),
    }
}

/// How long to wait for a daemon that is still writing its final commit.
const FINISHING_WAIT: Duration = Duration::from_secs(60);

/// Opens `path` like `FileStorage::open`, but a device that a hammer2 mount daemon still
/// holds after its mount is gone (umount returns before the daemon's final commit is on
/// disk) is waited for, so that `umount m && fsck.hammer2 a b` (or a new mount, mkfs,
/// scrub...) works. `waiting` is called once, when the wait starts. A device in use by a
/// live mount (under any of its names), or by anything but a finishing daemon, is refused
/// at once.
pub fn open_when_released(
    path: &Path,
    mode: OpenMode,
    waiting: &mut dyn FnMut(&Path),
) -> Result<super::file::FileStorage, OpenError> {
    let deadline = Instant::now() + FINISHING_WAIT;
    let mut told = false;
    loop {
        match super::file::FileStorage::open(path, mode) {
            Err(OpenError::InUse { why: InUse::Locked | InUse::Claimed | InUse::BackingLocked(_), .. })
                if Instant::now() < deadline =>
            {
                if !held_by_finishing_daemon(path) {
                    // The holder may have let go between the open and the look at who holds
                    // it (a daemon closing its devices as it exits): one more open decides.
                    return super::file::FileStorage::open(path, mode);
                }
                if !told {
                    waiting(path);
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

/// What names one device, whatever the path: the device number of a block device, the
/// inode of a file (so hard links and symlinks name the same thing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity(u64, u64, bool);

impl Identity {
    pub fn of(meta: &std::fs::Metadata) -> Identity {
        if meta.file_type().is_block_device() {
            Identity(meta.rdev(), 0, true)
        } else {
            Identity(meta.dev(), meta.ino(), false)
        }
    }
    fn of_path(p: &Path) -> Option<Identity> {
        std::fs::metadata(p).ok().map(|m| Identity::of(&m))
    }
}

/// True when no mounted hammer2 filesystem names the device (or the loop device over it)
/// and a hammer2 mount daemon still has it open: a daemon finishing after umount.
fn held_by_finishing_daemon(path: &Path) -> bool {
    let Some(id) = Identity::of_path(path) else { return false };
    let mut ids = vec![id];
    if id.2 {
        // A loop device's daemon may have been given the backing file, and the other way round.
        if let Some(b) = crate::loopdev::backing_file(id.0).and_then(|b| Identity::of_path(&b)) {
            ids.push(b);
        }
    }
    !named_by_a_mount(&ids) && daemon_holds(&ids)
}

/// True when a mounted fuse.hammer2 filesystem has one of `ids` among its devices (mount
/// sources are the device paths joined by ':').
fn named_by_a_mount(ids: &[Identity]) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return true };
    info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else { return false };
        f.get(sep + 1) == Some(&"fuse.hammer2")
            && f.get(sep + 2).is_some_and(|src| {
                src.split(':')
                    .any(|d| Identity::of_path(Path::new(&d.replace("\\040", " "))).is_some_and(|i| ids.contains(&i)))
            })
    })
}

/// True when a `hammer2 mount` (or `mount.fuse.hammer2`) process has one of `ids` open.
fn daemon_holds(ids: &[Identity]) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else { return false };
    procs.filter_map(|e| e.ok()).any(|e| {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { return false };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let a0 = args.first().copied().unwrap_or_default();
        // An exiting process has no cmdline any more (its memory goes first) but still holds
        // its files for a while, a daemon with a large cache for longer: its name tells.
        let exiting_daemon = a0.is_empty()
            && std::fs::read(e.path().join("comm"))
                .is_ok_and(|c| matches!(c.trim_ascii_end(), b"hammer2" | b"mount.fuse.hamm"));
        let daemon = exiting_daemon
            || a0.ends_with(b"mount.fuse.hammer2")
            || (a0.ends_with(b"hammer2") && args.get(1) == Some(&&b"mount"[..]));
        daemon
            && std::fs::read_dir(e.path().join("fd")).is_ok_and(|fds| {
                fds.filter_map(|fd| fd.ok()).any(|fd| Identity::of_path(&fd.path()).is_some_and(|i| ids.contains(&i)))
            })
    })
}
