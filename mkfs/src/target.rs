//! One device named on the command line: what it is, whether it may be formatted, and
//! (only once every device passed every check) making it ready for the format.
//!
//! A device may be an NBD URI: it is used as it is (like a block device), and since
//! libblkid cannot look at a remote export, any data on it that is not a hammer2
//! filesystem counts as something to keep unless `-f` is given.

use anyhow::{Context, Result, anyhow, bail};
use hammer2::signatures::Signature;
use hammer2::storage::claim::{InUse, OpenError, OpenMode};
use hammer2::storage::file::FileStorage;
use hammer2::storage::nbd::uri::Endpoint;
use hammer2::storage::{self, DeviceSpec, DynStorage, OpenSettings, Storage};
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What one path names, decided from `stat` alone (nothing is opened yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Block {
        rdev: u64,
    },
    File {
        dev: u64,
        ino: u64,
    },
    /// A file to be created, by its canonical parent directory and name.
    New(PathBuf),
    /// An NBD export: the server and the export name.
    Remote(Endpoint, String),
}

/// What mkfs will do to a path before formatting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Use the device or file as it is.
    Use,
    /// Create a sparse file of this many bytes.
    Create(u64),
    /// Grow an existing file to this many bytes (`--size` larger than the file).
    Extend(u64),
}

/// Signatures found on a device before it is formatted.
#[derive(Debug, Default)]
pub struct Existing {
    pub hammer2: bool,
    pub foreign: Vec<Signature>,
    /// A remote export whose start holds data that is not a hammer2 filesystem.
    pub unknown_data: bool,
}

impl Existing {
    /// "a btrfs filesystem at offset 65600, ..." or None when the device holds nothing.
    pub fn describe(&self) -> Option<String> {
        let mut what: Vec<String> = self.foreign.iter().map(Signature::describe).collect();
        if self.hammer2 {
            what.insert(0, "a hammer2 filesystem".into());
        } else if self.unknown_data {
            what.push("data (a remote export: what it is cannot be told)".into());
        }
        (!what.is_empty()).then(|| what.join(", "))
    }
}

pub struct Target {
    pub path: PathBuf,
    pub identity: Identity,
    pub plan: Plan,
    spec: DeviceSpec,
    /// Held from the in-use check until the format ends, so nobody can claim the device in
    /// between (O_EXCL for block devices, an exclusive flock for files).
    storage: Option<DynStorage>,
}

/// Bytes at the start of a remote export looked at for data (every common filesystem,
/// RAID and LVM signature, and partition tables, lie in the first MiB).
const REMOTE_LOOK: usize = 1 << 20;

impl Target {
    /// Stats `path`. `want` is `--size`: it allows creating a missing file and growing a
    /// smaller one; it never shrinks a file and does not apply to block devices.
    pub fn identify(path: &Path, want: Option<u64>) -> Result<Target> {
        let shown = path.display();
        let spec = DeviceSpec::parse(path.as_os_str()).map_err(|e| anyhow!("{e}"))?;
        if let DeviceSpec::Nbd(u) = &spec {
            let identity = Identity::Remote(u.endpoint.clone(), u.export.clone());
            return Ok(Target { path: path.to_path_buf(), identity, plan: Plan::Use, spec, storage: None });
        }
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if std::fs::symlink_metadata(path).is_ok() {
                    bail!("{shown} is a symbolic link to a file that does not exist");
                }
                let Some(size) = want else {
                    bail!("{shown} does not exist (give --size to create it as an image file)");
                };
                return Ok(Target {
                    path: path.to_path_buf(),
                    identity: Identity::New(new_file_identity(path)?),
                    plan: Plan::Create(size),
                    spec,
                    storage: None,
                });
            }
            Err(e) => bail!("cannot access {shown}: {e}"),
        };
        let ft = meta.file_type();
        let (identity, plan) = if ft.is_block_device() {
            (Identity::Block { rdev: meta.rdev() }, Plan::Use)
        } else if ft.is_file() {
            let plan = match want {
                Some(size) if size > meta.len() => Plan::Extend(size),
                _ => Plan::Use,
            };
            (Identity::File { dev: meta.dev(), ino: meta.ino() }, plan)
        } else if ft.is_dir() {
            bail!("{shown} is a directory");
        } else {
            bail!("{shown} is not a regular file or block device");
        };
        Ok(Target { path: path.to_path_buf(), identity, plan, spec, storage: None })
    }

    /// Opens an existing device exclusively (the in-use check) and returns its size in
    /// bytes as the format will see it. A file to be created just reports its planned size.
    pub fn claim(&mut self) -> Result<u64> {
        let shown = self.path.display();
        if matches!(self.identity, Identity::New(_)) {
            return Ok(self.planned_size());
        }
        let storage = storage::open(&self.spec, OpenSettings::new(OpenMode::Exclusive), &mut |p| {
            eprintln!(
                "mkfs.hammer2: waiting for the previous hammer2 daemon of {} to finish its final commit",
                p.display()
            )
        })
        .map_err(|e| match e {
            OpenError::InUse { why: why @ InUse::BacksLoop(_), .. } => {
                anyhow!("{shown} is in use: {why} (format that device, or detach it with losetup -d)")
            }
            OpenError::InUse { why, .. } => anyhow!("{shown} is in use ({why})"),
            OpenError::Io { source, .. } => anyhow!("cannot open {shown}: {source}"),
            OpenError::Nbd(e) => anyhow!("{e}"),
        })?;
        let size = storage.size();
        self.storage = Some(storage);
        Ok(match self.plan {
            Plan::Extend(want) => want,
            _ => size,
        })
    }

    fn planned_size(&self) -> u64 {
        match self.plan {
            Plan::Create(s) | Plan::Extend(s) => s,
            Plan::Use => 0,
        }
    }

    /// What the device already holds: a hammer2 filesystem (our own check) and every
    /// signature libblkid finds (filesystems, RAID members, LVM2 physical volumes, swap,
    /// partition tables with their backups). Nothing for a file mkfs is to create.
    pub fn existing(&self) -> Result<Existing> {
        let Some(s) = &self.storage else { return Ok(Existing::default()) };
        if self.spec.path().is_none() {
            let hammer2 = hammer2::signatures::is_hammer2(s);
            let mut head = vec![0u8; REMOTE_LOOK.min(s.size() as usize)];
            s.read_at(&mut head, 0).with_context(|| format!("cannot read {}", self.path.display()))?;
            let unknown_data = !hammer2 && head.iter().any(|b| *b != 0);
            return Ok(Existing { hammer2, foreign: Vec::new(), unknown_data });
        }
        let foreign =
            hammer2::signatures::find(&self.path).with_context(|| format!("cannot examine {}", self.path.display()))?;
        Ok(Existing { hammer2: hammer2::signatures::is_hammer2(s), foreign, unknown_data: false })
    }

    /// Creates or grows the file as planned and returns the storage to format. Called only
    /// after every device passed every check. Returns whether a new file was created, so a
    /// failure later on can remove it again.
    pub fn prepare(mut self) -> Result<(DynStorage, bool)> {
        let shown = self.path.display().to_string();
        match self.plan {
            Plan::Use => {
                let s = self.storage.take().ok_or_else(|| anyhow!("internal error: {shown} was not opened"))?;
                Ok((s, false))
            }
            Plan::Create(size) => {
                let f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&self.path)
                    .with_context(|| format!("cannot create {shown}"))?;
                let grown = f.set_len(size).with_context(|| format!("cannot size {shown} to {size} bytes"));
                drop(f);
                if let Err(e) = grown {
                    let _ = std::fs::remove_file(&self.path);
                    return Err(e);
                }
                let s = reopen(&self.path).inspect_err(|_| {
                    let _ = std::fs::remove_file(&self.path);
                })?;
                Ok((Arc::new(s), true))
            }
            Plan::Extend(size) => {
                // Grown through a second handle while the lock is still held (flock is
                // advisory, set_len does not take it); the storage is then reopened so it
                // sees the new size. Only the reopen leaves a window without the lock.
                OpenOptions::new()
                    .write(true)
                    .open(&self.path)
                    .and_then(|f| f.set_len(size))
                    .with_context(|| format!("cannot grow {shown} to {size} bytes"))?;
                drop(self.storage.take());
                Ok((Arc::new(reopen(&self.path)?), false))
            }
        }
    }
}

fn reopen(path: &Path) -> Result<FileStorage> {
    FileStorage::open(path, OpenMode::Exclusive).map_err(|e| match e {
        OpenError::InUse { .. } => anyhow!("{} was taken by another program while mkfs prepared it", path.display()),
        OpenError::Io { source, .. } => anyhow!("cannot open {}: {source}", path.display()),
        OpenError::Nbd(e) => anyhow!("{e}"),
    })
}

/// A path that does not exist yet, named by its canonical directory so that `x.img` and
/// `./x.img` count as the same device.
fn new_file_identity(path: &Path) -> Result<PathBuf> {
    let shown = path.display();
    let name = path.file_name().ok_or_else(|| anyhow!("{shown} does not name a file"))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir =
        parent.canonicalize().map_err(|e| anyhow!("cannot create {shown}: directory {}: {e}", parent.display()))?;
    if !dir.is_dir() {
        bail!("cannot create {shown}: {} is not a directory", parent.display());
    }
    Ok(dir.join(name))
}
