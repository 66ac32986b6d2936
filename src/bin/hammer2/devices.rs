//! Opening device paths given on the command line, with one clear error per failure.

use anyhow::{Context, Result, bail};
use hammer2::storage::DynStorage;
use hammer2::storage::file::{FileStorage, OpenMode};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;
use std::sync::Arc;

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
        let s = FileStorage::open(p, mode).map_err(|e| match e.raw_os_error() {
            Some(libc::EBUSY) => {
                anyhow::anyhow!("{} is in use (mounted, or opened by another hammer2 process)", p.display())
            }
            _ => anyhow::anyhow!("cannot open {}: {e}", p.display()),
        })?;
        out.push(Arc::new(s) as DynStorage);
    }
    Ok(out)
}
