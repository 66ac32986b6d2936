//! Naming a device: a path (image file, block device) or an NBD URI, and the one opener
//! every front end turns either into a storage with.
//!
//! A command-line argument is an NBD URI when it starts with an NBD scheme (`nbd://`,
//! `nbd+unix://`, and the refused TLS forms), and a path otherwise: a file whose name
//! starts with `nbd://` can still be named as `./nbd:/...`.

use super::DynStorage;
use super::claim::{self, OpenError, OpenMode};
use super::nbd::{self, NbdStorage, NbdUri, UriError};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    Path(PathBuf),
    Nbd(NbdUri),
}

/// What tells two specs apart as devices: the file or block device behind a path (so two
/// names of one file are one device), the server and export behind a URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKey {
    Local(claim::Identity),
    Remote(nbd::uri::Endpoint, String),
}

impl DeviceSpec {
    pub fn parse(arg: &OsStr) -> Result<DeviceSpec, UriError> {
        match arg.to_str() {
            Some(s) if nbd::uri::looks_like_nbd(s) => Ok(DeviceSpec::Nbd(NbdUri::parse(s)?)),
            _ => Ok(DeviceSpec::Path(PathBuf::from(arg))),
        }
    }

    /// The spec as the user wrote it (the path, or the URI).
    pub fn name(&self) -> String {
        match self {
            DeviceSpec::Path(p) => p.display().to_string(),
            DeviceSpec::Nbd(u) => u.to_string(),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            DeviceSpec::Path(p) => Some(p),
            DeviceSpec::Nbd(_) => None,
        }
    }

    /// The device behind the spec, for refusing one named twice. Stats a path.
    pub fn key(&self) -> std::io::Result<DeviceKey> {
        Ok(match self {
            DeviceSpec::Path(p) => DeviceKey::Local(claim::Identity::of(&std::fs::metadata(p)?)),
            DeviceSpec::Nbd(u) => DeviceKey::Remote(u.endpoint.clone(), u.export.clone()),
        })
    }
}

/// How the opener treats what it opens.
#[derive(Debug, Clone, Copy)]
pub struct OpenSettings {
    pub mode: OpenMode,
    /// How long a request to a remote device waits for a lost connection to come back.
    pub nbd_timeout: Duration,
}

impl OpenSettings {
    pub fn new(mode: OpenMode) -> OpenSettings {
        OpenSettings { mode, nbd_timeout: nbd::DEFAULT_GRACE }
    }
}

/// Opens a device for `settings.mode`. A path gets the claim the locking rule asks for
/// (waiting, with one call of `waiting`, for a daemon finishing its final commit); an NBD
/// export is connected to and checked (size a multiple of 4 KiB, writable when written).
/// A remote export has no claim: keeping other clients away is the server's business.
pub fn open(
    spec: &DeviceSpec,
    settings: OpenSettings,
    waiting: &mut dyn FnMut(&Path),
) -> Result<DynStorage, OpenError> {
    match spec {
        DeviceSpec::Path(p) => Ok(Arc::new(claim::open_when_released(p, settings.mode, waiting)?)),
        DeviceSpec::Nbd(u) => {
            let writable = settings.mode == OpenMode::Exclusive;
            Ok(Arc::new(NbdStorage::connect(u, writable, settings.nbd_timeout)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_paths_are_told_apart() {
        assert!(matches!(DeviceSpec::parse(OsStr::new("nbd://h/e")), Ok(DeviceSpec::Nbd(_))));
        assert!(matches!(DeviceSpec::parse(OsStr::new("./nbd:/h/e")), Ok(DeviceSpec::Path(_))));
        assert!(matches!(DeviceSpec::parse(OsStr::new("/dev/sdb")), Ok(DeviceSpec::Path(_))));
        let e = DeviceSpec::parse(OsStr::new("nbds://h/e")).unwrap_err();
        assert!(e.to_string().contains("TLS is not supported yet"));
        let a = DeviceSpec::parse(OsStr::new("nbd://h:10809/e")).unwrap().key().unwrap();
        let b = DeviceSpec::parse(OsStr::new("nbd://h/e")).unwrap().key().unwrap();
        assert_eq!(a, b, "the default port is the same device");
    }
}
