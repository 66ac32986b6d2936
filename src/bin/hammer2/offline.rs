//! Opening a filesystem's devices for an offline tool (scrub, resync): exclusively, with a
//! blank replacement device adopted, and with a progress bar when stderr is a terminal.

use anyhow::{Context, Result};
use hammer2::storage::file::OpenMode;
use hammer2::{Fs, Options};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;

pub fn open(paths: &[PathBuf]) -> Result<Fs> {
    if paths.is_empty() {
        anyhow::bail!("give the filesystem's devices");
    }
    if paths.len() == 1 && paths[0].is_dir() {
        anyhow::bail!(
            "{} is a directory: online operation on a mount point needs the running daemon's control socket",
            paths[0].display()
        );
    }
    let storages = crate::devices::open_all(paths, OpenMode::Exclusive)?;
    let opts = Options { degraded: true, replace: true, background_sync: false, ..Options::default() };
    Fs::mount(storages, opts).context("cannot open the filesystem")
}

/// A byte progress bar on a terminal, hidden otherwise.
pub fn bar(what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix} {msg} [{elapsed_precise}] {binary_bytes} ({binary_bytes_per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_prefix(what.to_string());
    pb
}
