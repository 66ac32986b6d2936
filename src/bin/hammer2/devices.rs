//! Opening device paths given on the command line, with one clear error per failure.

use anyhow::{Context, Result, bail};
use hammer2::storage::DynStorage;
use hammer2::storage::claim::{self, Identity, OpenMode};
use std::path::PathBuf;
use std::sync::Arc;

/// Opens every path for `mode` (the engine's locking rule, waiting for a daemon that is
/// finishing after umount); a path named twice (or two names for one file) is an error.
pub fn open_all(paths: &[PathBuf], mode: OpenMode) -> Result<Vec<DynStorage>> {
    let mut seen = Vec::new();
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("cannot open {}", p.display()))?;
        let id = Identity::of(&meta);
        if seen.contains(&id) {
            bail!("{} is named twice", p.display());
        }
        seen.push(id);
        let s = claim::open_when_released(p, mode, &mut |p| {
            eprintln!("waiting for the previous hammer2 daemon of {} to finish its final commit", p.display())
        })?;
        out.push(Arc::new(s) as DynStorage);
    }
    Ok(out)
}
