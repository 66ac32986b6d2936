//! `hammer2 snapshot MOUNTPOINT [NAME] [--writable]`: a read-only snapshot of the mounted
//! PFS, through the daemon's control socket (the daemon's side is `pfs::serve`). Everything
//! written before the command is in it, nothing written after it returns. Mount it with
//! `-o ro,pfs=NAME`. `--writable` makes a clone (a writable PFS) of a snapshot `NAME@origin`
//! taken for it. Exit status: 0 done, 8 operational error.

use crate::control::{Op, Request};
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(after_help = "Exit status: 0 done, 8 operational error.")]
pub struct Args {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// The mount point of the mounted filesystem.
    pub mountpoint: PathBuf,
    /// The snapshot's name (default: PFSNAME@<RFC 3339 UTC time>).
    pub name: Option<String>,
    /// Make it writable: a clone NAME of a read-only snapshot NAME@origin taken for it
    /// (which cannot be deleted while the clone exists).
    #[arg(long)]
    pub writable: bool,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let op = if a.writable { Op::SnapshotWritable } else { Op::Snapshot };
    let req = Request { name: a.name, ..Request::from(op) };
    Ok(crate::offline::online("snapshot", &a.mountpoint, req, a.json))
}
