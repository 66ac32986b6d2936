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
//! waited for, as a mount waits for it. A device may be an NBD URI (see
//! `hammer2::storage::spec`); a remote export has no claim.

use crate::{FsckError, Mode};
use hammer2::storage::claim::{OpenError, OpenMode};
use hammer2::storage::{self, DeviceSpec, DynStorage, OpenSettings};
use std::path::PathBuf;

/// Open devices (each holding its claim for as long as it lives).
pub struct Opened {
    pub storages: Vec<DynStorage>,
    pub notes: Vec<String>,
}

pub fn open_all(paths: &[PathBuf], mode: Mode, force: bool) -> Result<Opened, FsckError> {
    let mut seen = Vec::new();
    let mut out = Opened { storages: Vec::new(), notes: Vec::new() };
    for p in paths {
        let spec = DeviceSpec::parse(p.as_os_str()).map_err(|e| FsckError::Usage(e.to_string()))?;
        let key = spec.key().map_err(|e| FsckError::Open { path: p.clone(), why: e.to_string() })?;
        if seen.contains(&key) {
            return Err(FsckError::Usage(format!("{} is named twice", p.display())));
        }
        seen.push(key);
        let claim = if mode == Mode::Check { OpenMode::Shared } else { OpenMode::Exclusive };
        let opened = storage::open(&spec, OpenSettings::new(claim), &mut |p| {
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
                storage::open(&spec, OpenSettings::new(OpenMode::ReadOnly), &mut |_| {})
                    .map_err(|e| open_error(p, e))?
            }
            Err(e) => return Err(open_error(p, e)),
        };
        out.storages.push(s);
    }
    Ok(out)
}

fn open_error(p: &std::path::Path, e: OpenError) -> FsckError {
    match e {
        OpenError::InUse { why, .. } => FsckError::InUse { path: p.to_path_buf(), why: why.to_string() },
        OpenError::Io { source, .. } => FsckError::Open { path: p.to_path_buf(), why: source.to_string() },
        OpenError::Nbd(e) => {
            // The NBD error names the URI itself; the message names it once.
            let msg = e.to_string();
            let why = msg.strip_prefix(&format!("{}: ", p.display())).unwrap_or(&msg).to_string();
            FsckError::Open { path: p.to_path_buf(), why }
        }
    }
}
