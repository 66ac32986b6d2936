//! Opening the devices given on the command line (paths or NBD URIs), with one clear error
//! per failure.

use anyhow::{Result, anyhow, bail};
use hammer2::storage::claim::OpenMode;
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
    let waiting = &mut |p: &Path| {
        eprintln!("waiting for the previous hammer2 daemon of {} to finish its final commit", p.display())
    };
    specs.iter().map(|s| storage::open(s, settings, waiting).map_err(anyhow::Error::from)).collect()
}
