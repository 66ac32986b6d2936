//! The command side of the control channel.

use super::{Done, Op, Progress, Reply, Request, socket_path};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Sends `req` to the daemon serving `mountpoint`, shows progress, prints the report.
/// Returns the command's exit status.
pub fn request(mountpoint: &Path, req: impl Into<Request>, json: bool) -> Result<i32> {
    let req = req.into();
    let pb = crate::progress::Bar::new(
        match req.op {
            Op::Info => "info",
            Op::Scrub | Op::ScrubPause | Op::ScrubResume | Op::ScrubCancel => "scrub",
            Op::Resync | Op::ResyncPause | Op::ResyncResume | Op::ResyncCancel => "resync",
            Op::ReadOnly | Op::ReadWrite => "remount",
            Op::DeviceOnline
            | Op::DeviceOffline
            | Op::DeviceAdd
            | Op::DeviceRemove
            | Op::DeviceReplace
            | Op::DeviceRebalance => "device",
            Op::Status => "status",
            Op::Clear => "clear",
            Op::PfsCreate | Op::PfsList | Op::PfsDelete => "pfs",
            Op::Snapshot | Op::SnapshotWritable => "snapshot",
            Op::Send => "send",
            Op::Receive => "receive",
        },
        json,
    );
    let done = call(mountpoint, req, &mut |p| pb.update(p.bytes, p.total, p.message));
    pb.finish();
    let d = done?;
    if json {
        println!("{}", hammer2_cli::json::document(d.json));
    } else {
        print!("{}", d.text);
    }
    Ok(d.exit)
}

/// Sends `req` to the daemon serving `mountpoint` and returns its final answer.
pub fn call(mountpoint: &Path, req: impl Into<Request>, progress: &mut dyn FnMut(Progress)) -> Result<Done> {
    call_with(mountpoint, req.into(), None, progress)
}

/// As [`call`], passing `fd` to the daemon with the request (SCM_RIGHTS).
pub fn call_with(
    mountpoint: &Path,
    req: Request,
    fd: Option<std::os::fd::BorrowedFd<'_>>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Done> {
    let mp = std::fs::canonicalize(mountpoint).with_context(|| format!("cannot open {}", mountpoint.display()))?;
    if !is_hammer2_mount(&mp) {
        bail!("{} is not a mounted hammer2 filesystem", mp.display());
    }
    let path = socket_path(&mp);
    let mut conn = UnixStream::connect(&path)
        .with_context(|| format!("cannot reach the daemon serving {} ({})", mp.display(), path.display()))?;
    let line = format!("{}\n", serde_json::to_string(&req)?);
    match fd {
        Some(fd) => super::fdpass::send_with_fd(&conn, line.as_bytes(), fd)?,
        None => conn.write_all(line.as_bytes())?,
    }
    for line in BufReader::new(conn).lines() {
        let line = line.context("the daemon closed the connection")?;
        match serde_json::from_str::<Reply>(&line)? {
            Reply::Progress(p) => progress(p),
            Reply::Done(d) => return Ok(d),
            Reply::Error(e) => bail!("{e}"),
        }
    }
    bail!("the daemon closed the connection without an answer")
}

/// True when `mp` (canonical) is the mount point of a fuse.hammer2 mount.
pub fn is_hammer2_mount(mp: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|info| {
        info.lines().any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-");
            f.len() > 4 && Path::new(f[4]) == mp && sep.and_then(|s| f.get(s + 1)).is_some_and(|t| *t == "fuse.hammer2")
        })
    })
}
