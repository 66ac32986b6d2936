//! The command side of the control channel.

use super::{Done, Op, Progress, Reply, Request, socket_path};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

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
    let mp = mount_point(mountpoint)?;
    let uid = mount_owner(&mp);
    let path = socket_path(&mp, uid);
    if let Some(dir) = path.parent()
        && let Err(why) = super::trusted_dir(dir, uid)
    {
        bail!("cannot reach the daemon serving {}: {why}", mp.display());
    }
    let mut conn = match UnixStream::connect(&path) {
        Ok(conn) => conn,
        // The socket is there and nobody listens: its daemon has exited, although the mount
        // may still stat fine for a moment (through FUSE over io_uring the kernel aborts the
        // connection only once the dead daemon's rings are torn down).
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => bail!(daemon_gone(&mp, &e)),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot reach the daemon serving {} ({})", mp.display(), path.display()));
        }
    };
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

/// `path` made canonical, when it is the mount point of a hammer2 filesystem. A mount whose
/// daemon has died is named as such: the kernel answers every access with ENOTCONN until the
/// mount is cleared away.
pub fn mount_point(path: &Path) -> Result<PathBuf> {
    let gone = |e: &std::io::Error| e.raw_os_error() == Some(libc::ENOTCONN);
    let mp = match std::fs::canonicalize(path) {
        Ok(mp) => mp,
        Err(e) if gone(&e) => bail!(daemon_gone(path, &e)),
        // A user's mount (through fusermount3) lets no one else look inside, root
        // included; its mount point as mountinfo lists it is canonical already.
        Err(_) if std::path::absolute(path).is_ok_and(|a| is_hammer2_mount(&a)) => std::path::absolute(path)?,
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    if !is_hammer2_mount(&mp) {
        bail!("{} is not a mounted hammer2 filesystem", mp.display());
    }
    // realpath(3) need not touch the mount's root, so a dead daemon shows only here.
    if let Err(e) = std::fs::metadata(&mp)
        && gone(&e)
    {
        bail!(daemon_gone(&mp, &e));
    }
    Ok(mp)
}

/// Whether a command's path argument names a mount point rather than a device: a directory,
/// a FUSE mount whose daemon has gone (it stats as nothing, only ENOTCONN), which the
/// command then names as such instead of failing to open it as a device, or another user's
/// hammer2 mount (which only that user may look into).
pub fn names_a_mount_point(p: &Path) -> bool {
    match std::fs::metadata(p) {
        Ok(m) => m.is_dir(),
        // ENOTCONN: a mount whose daemon has gone; EACCES: another user's mount.
        Err(e) => {
            e.raw_os_error() == Some(libc::ENOTCONN) || std::path::absolute(p).is_ok_and(|a| is_hammer2_mount(&a))
        }
    }
}

fn daemon_gone(mp: &Path, e: &std::io::Error) -> String {
    format!("the daemon serving {0} has gone ({e}): `umount {0}` clears the mount, then mount again", mp.display())
}

/// True when `mp` (canonical) is the mount point of a fuse.hammer2 mount.
pub fn is_hammer2_mount(mp: &Path) -> bool {
    hammer2_mounts().iter().any(|m| m == mp)
}

/// The mount points of every mounted hammer2 filesystem, as /proc/self/mountinfo lists them
/// (absolute and canonical).
pub fn hammer2_mounts() -> Vec<PathBuf> {
    mounts().into_iter().map(|(mp, _)| mp).collect()
}

/// The user whose daemon serves the mount at `mp` (canonical): the kernel records who
/// mounted a FUSE filesystem as its `user_id` (0 for a mount made as root).
fn mount_owner(mp: &Path) -> u32 {
    mounts().into_iter().find(|(m, _)| m == mp).map_or(0, |(_, uid)| uid)
}

/// Every fuse.hammer2 mount: its mount point and the `user_id` of its superblock options.
fn mounts() -> Vec<(PathBuf, u32)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let mp = f.get(4)?;
            if f.get(sep + 1) != Some(&"fuse.hammer2") {
                return None;
            }
            let uid = f
                .get(sep + 3)
                .and_then(|opts| opts.split(',').find_map(|o| o.strip_prefix("user_id=")?.parse().ok()))
                .unwrap_or(0);
            Some((PathBuf::from(unescape(mp)), uid))
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash in a path as octal escapes.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}
