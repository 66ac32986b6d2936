//! Opening the devices given on the command line (paths or NBD URIs), with one clear error
//! per failure.

use anyhow::{Result, anyhow, bail};
use hammer2::storage::claim::{OpenError, OpenMode};
use hammer2::storage::nbd::NbdError;
use hammer2::storage::{self, DeviceSpec, DynStorage, OpenSettings};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The device specs of the command line: a path, or an NBD URI (which must parse).
pub fn specs(args: &[PathBuf]) -> Result<Vec<DeviceSpec>> {
    args.iter().map(|a| DeviceSpec::parse(a.as_os_str()).map_err(|e| anyhow!("{e}"))).collect()
}

/// Opens every device for `mode` (the engine's locking rule, waiting for a daemon that is
/// finishing after umount); a device named twice (or two names for one file) is an error.
pub fn open_all(args: &[PathBuf], mode: OpenMode) -> Result<Vec<DynStorage>> {
    open_specs(&specs(args)?, mode, None)
}

/// `open_all` for parsed specs; `nbd_timeout` overrides the remote devices' reconnect grace.
pub fn open_specs(specs: &[DeviceSpec], mode: OpenMode, nbd_timeout: Option<Duration>) -> Result<Vec<DynStorage>> {
    let settings = settings(specs, mode, nbd_timeout)?;
    specs.iter().map(|s| open_one(s, settings)).collect()
}

/// A remote device left out of a degraded mount: its spec, how to open it, and why it did
/// not open.
pub type Unreachable = (DeviceSpec, OpenSettings, String);

/// `open_specs` for a degraded mount: a remote device whose server does not answer is left
/// out (returned with why, for the engine to wait for: `Fs::await_device`) rather than
/// refusing the mount, as long as some device opens. Any other failure (a wrong export, a
/// busy or missing path) still refuses it.
pub fn open_specs_degraded(
    specs: &[DeviceSpec],
    mode: OpenMode,
    nbd_timeout: Option<Duration>,
) -> Result<(Vec<DynStorage>, Vec<Unreachable>)> {
    let settings = settings(specs, mode, nbd_timeout)?;
    let (mut opened, mut left_out) = (Vec::new(), Vec::new());
    let mut first_unreachable = None;
    for s in specs {
        match storage::open(s, settings, &mut waiting) {
            Ok(st) => opened.push(st),
            Err(OpenError::Nbd(e @ NbdError::Connect { .. })) => {
                let why = e.to_string();
                first_unreachable.get_or_insert_with(|| anyhow::Error::from(e));
                left_out.push((s.clone(), settings, why));
            }
            Err(e) => return Err(e.into()),
        }
    }
    match first_unreachable {
        Some(e) if opened.is_empty() => Err(e),
        _ => Ok((opened, left_out)),
    }
}

/// The opener's settings, after refusing a device named twice.
fn settings(specs: &[DeviceSpec], mode: OpenMode, nbd_timeout: Option<Duration>) -> Result<OpenSettings> {
    let mut seen = Vec::new();
    for s in specs {
        let key = s.key().map_err(|e| anyhow!("cannot open {}: {e}", s.name()))?;
        if seen.contains(&key) {
            bail!("{} is named twice", s.name());
        }
        seen.push(key);
    }
    let mut settings = OpenSettings::new(mode);
    if let Some(t) = nbd_timeout {
        settings.nbd_timeout = t;
    }
    Ok(settings)
}

fn waiting(p: &Path) {
    eprintln!("waiting for the previous hammer2 daemon of {} to finish its final commit", p.display())
}

fn open_one(s: &DeviceSpec, settings: OpenSettings) -> Result<DynStorage> {
    storage::open(s, settings, &mut waiting).map_err(anyhow::Error::from)
}
