//! Opening device paths given on the command line, with one clear error per failure.

use anyhow::{Context, Result, bail};
use hammer2::storage::DynStorage;
use hammer2::storage::file::{FileStorage, OpenMode};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Opens every path; a path named twice (or two names for one file) is an error.
pub fn open_all(paths: &[PathBuf], mode: OpenMode) -> Result<Vec<DynStorage>> {
    let mut seen = Vec::new();
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("cannot open {}", p.display()))?;
        let id = if meta.file_type().is_block_device() { (meta.rdev(), 0) } else { (meta.dev(), meta.ino()) };
        if seen.contains(&id) {
            bail!("{} is named twice", p.display());
        }
        seen.push(id);
        let s = open_one(p, mode).map_err(|e| match e.raw_os_error() {
            Some(libc::EBUSY) => {
                anyhow::anyhow!("{} is in use (mounted, or opened by another hammer2 process)", p.display())
            }
            _ => anyhow::anyhow!("cannot open {}: {e}", p.display()),
        })?;
        out.push(Arc::new(s) as DynStorage);
    }
    Ok(out)
}

/// How long to wait for a daemon that is still writing its final commit.
const FINISHING_WAIT: Duration = Duration::from_secs(60);

/// Opens one device. An image still locked by a hammer2 daemon whose mount is already gone
/// (umount returns before the daemon's final commit is on disk) is waited for, so that
/// `umount && hammer2 mount ...` works; a device in use by a live mount is refused at once.
fn open_one(p: &Path, mode: OpenMode) -> std::io::Result<FileStorage> {
    let deadline = Instant::now() + FINISHING_WAIT;
    let mut told = false;
    loop {
        match FileStorage::open(p, mode) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && !in_a_mount(p) && Instant::now() < deadline => {
                if !told {
                    eprintln!("waiting for the previous hammer2 daemon of {} to finish its final commit", p.display());
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

/// True when a mounted hammer2 filesystem names `p` among its devices (mount sources are
/// the device paths joined by ':').
fn in_a_mount(p: &Path) -> bool {
    let Ok(canon) = std::fs::canonicalize(p) else { return false };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return true };
    info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else { return false };
        f.get(sep + 1) == Some(&"fuse.hammer2")
            && f.get(sep + 2).is_some_and(|src| {
                src.split(':').any(|d| std::fs::canonicalize(d.replace("\\040", " ")).ok().as_deref() == Some(&*canon))
            })
    })
}
