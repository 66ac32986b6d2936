//! `hammer2 clear MOUNTPOINT [DEVICE]`: resets the error counters (READ WRITE CHECK
//! REPAIRED of `status`) of one device or of all, through the daemon's control socket; the
//! daemon commits so the headers keep the reset. Exit status: 0 done, 8 operational error.

use crate::control::{Op, Request};
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(
    after_help = "Exit status: 0 cleared, 8 operational error (nothing mounted on MOUNTPOINT, not a device of it)."
)]
pub struct Args {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// The mount point of the mounted filesystem.
    pub mountpoint: PathBuf,
    /// The device whose counters to reset (a path as given to mount, another name for it,
    /// or its index); none: every device.
    pub device: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    // The daemon runs in another working directory: a local path goes as an absolute one.
    let device = a.device.map(|d| if d.exists() { std::path::absolute(&d).unwrap_or(d) } else { d });
    let req = Request { device: device.map(|d| d.to_string_lossy().into_owned()), ..Request::from(Op::Clear) };
    Ok(crate::offline::online("clear", &a.mountpoint, req, a.json))
}
