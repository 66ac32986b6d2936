//! `hammer2 upgrade DEVICE...`: converts an unmounted version-1 filesystem to format
//! version 2 (a PFS table holding ROOT) in one commit; the engine does the work
//! (`hammer2::upgrade`). Every device must be given, in sync, and not mounted.
//! Exit status: 0 upgraded, or already version 2 (one line says which); 8 refused or
//! failed (one line, nothing written).

use hammer2::storage::claim::OpenMode;
use hammer2::upgrade::UpgradeOutcome;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Every device of the filesystem.
    #[arg(required = true, value_name = "DEVICE")]
    pub devices: Vec<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    crate::init_logging(false);
    let refuse = |e: &dyn std::fmt::Display| {
        eprintln!("hammer2 upgrade: {e:#}");
        Ok(8)
    };
    if let Some(d) = a.devices.iter().find(|d| d.is_dir()) {
        return refuse(&format!("{} is a directory: unmount the filesystem and give its devices", d.display()));
    }
    let storages = match crate::devices::open_all(&a.devices, OpenMode::Exclusive) {
        Ok(s) => s,
        Err(e) => return refuse(&e),
    };
    match hammer2::upgrade::upgrade(storages) {
        Ok(UpgradeOutcome::Upgraded { tid }) => {
            println!("upgraded to format version 2 (commit {tid}): PFS table with ROOT");
            Ok(0)
        }
        Ok(UpgradeOutcome::AlreadyVersion2) => {
            println!("already format version 2: nothing to do");
            Ok(0)
        }
        Err(e) => refuse(&e),
    }
}
