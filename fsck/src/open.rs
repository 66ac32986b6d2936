//! Opening the devices named on the command line, and refusing a filesystem in use.
//!
//! The claims are the engine's (`hammer2::storage::claim`): repairs (`-y`, `-p`) open every
//! device exclusively, like a read-write mount; `-n` opens read-only with a shared claim held
//! for the whole check, since a filesystem that changes under the check gives a report that
//! means nothing (another `fsck -n` or a read-only mount may run beside it; no writer may
//! start). An image file backing an attached loop device is refused by both. `-n -f` checks
//! a device in use anyway, read-only and without a claim, and says so.
//!
//! A device still held by a hammer2 daemon finishing its final commit after umount is
//! waited for, as a mount waits for it.

use crate::{FsckError, Mode};
use hammer2::storage::DynStorage;
use hammer2::storage::claim::{self, Identity, OpenError, OpenMode};
use hammer2::storage::file::FileStorage;
use std::path::PathBuf;
use std::sync::Arc;

/// Open devices (each holding its claim for as long as it lives).
pub struct Opened {
    pub storages: Vec<DynStorage>,
    pub notes: Vec<String>,
}

pub fn open_all(paths: &[PathBuf], mode: Mode, force: bool) -> Result<Opened, FsckError> {
    let mut seen: Vec<Identity> = Vec::new();
    let mut out = Opened { storages: Vec::new(), notes: Vec::new() };
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| FsckError::Open { path: p.clone(), why: e.to_string() })?;
        let id = Identity::of(&meta);
        if seen.contains(&id) {
            return Err(FsckError::Usage(format!("{} is named twice", p.display())));
        }
        seen.push(id);
        let claim = if mode == Mode::Check { OpenMode::Shared } else { OpenMode::Exclusive };
        let opened = claim::open_when_released(p, claim, &mut |p| {
            eprintln!(
                "fsck.hammer2: waiting for the previous hammer2 daemon of {} to finish its final commit",
                p.display()
            )
        });
        let s = match opened {
            Ok(s) => s,
            Err(OpenError::InUse { why, .. }) if mode == Mode::Check && force => {
                out.notes.push(format!(
                    "{} is in use ({why}): checked anyway (-f), results may be inconsistent",
                    p.display()
                ));
                FileStorage::open(p, OpenMode::ReadOnly).map_err(|e| open_error(p, e))?
            }
            Err(e) => return Err(open_error(p, e)),
        };
        out.storages.push(Arc::new(s));
    }
    Ok(out)
}

fn open_error(p: &std::path::Path, e: OpenError) -> FsckError {
    match e {
        OpenError::InUse { why, .. } => FsckError::InUse { path: p.to_path_buf(), why: why.to_string() },
        OpenError::Io { source, .. } => FsckError::Open { path: p.to_path_buf(), why: source.to_string() },
    }
}
