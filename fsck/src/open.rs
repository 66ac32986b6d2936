//! Opening the devices named on the command line, and refusing a filesystem in use.
//!
//! Repairs (`-y`, `-p`) open every device read-write and exclusively, like the daemon:
//! O_EXCL for block devices (EBUSY when mounted or held), a non-blocking exclusive flock
//! for image files (EBUSY while a hammer2 daemon holds it).
//!
//! `-n` opens read-only, so it can never write; it still refuses a device in use, since
//! a filesystem that changes under the check gives a report that means nothing. It holds
//! a shared flock on image files and O_EXCL on block devices for the whole check (another
//! `fsck -n` may run beside it; a mount may not start). `-n -f` checks a device in use
//! anyway, read-only, and says so.
//!
//! Image files backing an attached loop device are refused too: the loop driver never
//! takes the file's lock, so a mount of the loop device would go unnoticed otherwise.

use crate::{FsckError, Mode};
use hammer2::storage::DynStorage;
use hammer2::storage::file::{FileStorage, OpenMode};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Open devices, plus whatever keeps others away while the check runs.
pub struct Opened {
    pub storages: Vec<DynStorage>,
    /// Held for the whole run: shared flocks or O_EXCL descriptors (`-n`).
    pub guards: Vec<File>,
    pub notes: Vec<String>,
}

pub fn open_all(paths: &[PathBuf], mode: Mode, force: bool) -> Result<Opened, FsckError> {
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let mut out = Opened { storages: Vec::new(), guards: Vec::new(), notes: Vec::new() };
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| FsckError::Open { path: p.clone(), why: e.to_string() })?;
        let is_blk = meta.file_type().is_block_device();
        if !is_blk && !meta.is_file() {
            return Err(FsckError::Open { path: p.clone(), why: "not a regular file or block device".into() });
        }
        let id = if is_blk { (meta.rdev(), 0) } else { (meta.dev(), meta.ino()) };
        if seen.contains(&id) {
            return Err(FsckError::Usage(format!("{} is named twice", p.display())));
        }
        seen.push(id);
        if !is_blk {
            let loops = hammer2::loopdev::backed_by(&meta);
            if !loops.is_empty() {
                let why = format!("it backs {}", loops.join(", "));
                if mode != Mode::Check || !force {
                    return Err(FsckError::InUse { path: p.clone(), why });
                }
                out.notes.push(format!("{} is in use ({why}): checked anyway (-f)", p.display()));
            }
        }
        match mode {
            Mode::Check => {
                let s = FileStorage::open(p, OpenMode::ReadOnly)
                    .map_err(|e| FsckError::Open { path: p.clone(), why: e.to_string() })?;
                match hold(p, is_blk) {
                    Ok(g) => out.guards.push(g),
                    Err(Held::Busy) if force => out
                        .notes
                        .push(format!("{} is in use: checked anyway (-f), results may be inconsistent", p.display())),
                    Err(Held::Busy) => return Err(FsckError::InUse { path: p.clone(), why: in_use_why(is_blk) }),
                    Err(Held::Other(e)) => return Err(FsckError::Open { path: p.clone(), why: e }),
                }
                out.storages.push(Arc::new(s));
            }
            Mode::Preen | Mode::Yes => {
                let s = FileStorage::open(p, OpenMode::Exclusive).map_err(|e| {
                    if e.raw_os_error() == Some(libc::EBUSY) {
                        FsckError::InUse { path: p.clone(), why: in_use_why(is_blk) }
                    } else {
                        FsckError::Open { path: p.clone(), why: e.to_string() }
                    }
                })?;
                out.storages.push(Arc::new(s));
            }
        }
    }
    Ok(out)
}

fn in_use_why(is_blk: bool) -> String {
    if is_blk {
        "it is mounted or opened exclusively by another program".into()
    } else {
        "a hammer2 process (mount or another repair) holds it".into()
    }
}

enum Held {
    Busy,
    Other(String),
}

/// Keeps writers away during a read-only check: O_EXCL for a block device, a shared
/// flock for an image file (exclusive lockers, i.e. the daemon, get EBUSY).
fn hold(p: &Path, is_blk: bool) -> Result<File, Held> {
    let mut o = OpenOptions::new();
    o.read(true);
    if is_blk {
        o.custom_flags(libc::O_EXCL);
    }
    let f = o.open(p).map_err(|e| match e.raw_os_error() {
        Some(libc::EBUSY) => Held::Busy,
        _ => Held::Other(e.to_string()),
    })?;
    if !is_blk {
        // SAFETY: flock on a valid, owned file descriptor.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                Held::Busy
            } else {
                Held::Other(e.to_string())
            });
        }
    }
    Ok(f)
}
