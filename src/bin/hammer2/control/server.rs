//! The daemon side of the control channel.

use super::{Done, Op, Reply, Request, socket_path};
use hammer2::maintenance::RunOptions;
use hammer2::maintenance::ScanCommand;
use hammer2::{FsRef, WeakFs};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

/// Removes the socket when the daemon stops serving, if it is still this daemon's.
pub struct Control {
    path: PathBuf,
    /// (device, inode) of the socket this daemon bound.
    bound: Option<(u64, u64)>,
}

/// (device, inode) of the file at `path`.
fn identity(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl Drop for Control {
    fn drop(&mut self) {
        // The socket's name comes from the mount point: a new daemon mounted on the same
        // directory while this one made its final commit has bound a socket of the same
        // name, which this daemon must not remove (its mount would lose `info`, `status`,
        // `scrub` and the rest).
        if self.bound.is_some() && identity(&self.path) == self.bound {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What the daemon tells its control channel about the mount it serves.
pub struct Served {
    /// The device list as the mount was given it (for info and status).
    pub devices: String,
    pub mountpoint: PathBuf,
    /// The mount's `-o nbd_timeout`: a remote device brought in by `device online` gets
    /// the same reconnect grace as those named at mount.
    pub nbd_timeout: Option<std::time::Duration>,
    /// The FUSE session's notifier, once it exists: a receive changes files behind the
    /// kernel's caches and tells it which.
    pub kernel: std::sync::Arc<std::sync::OnceLock<crate::fuse::Notifier>>,
}

/// Listens for control requests for the mount at `mountpoint` (best effort: a mount works
/// without it, only online info/scrub/resync are then unavailable). It holds the engine
/// weakly: the final commit closes the devices when the session ends, whatever the control
/// thread is doing.
pub fn start(fs: WeakFs, served: Served) -> Option<Control> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let path = socket_path(&served.mountpoint, uid);
    let dir = path.parent()?;
    if let Err(e) = std::fs::create_dir_all(dir) {
        tracing::warn!("no control socket ({}): {e}", dir.display());
        return None;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Err(why) = super::trusted_dir(dir, uid) {
        tracing::warn!("no control socket: {why}");
        return None;
    }
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("no control socket ({}): {e}", path.display());
            return None;
        }
    };
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    let bound = identity(&path);
    let served = std::sync::Arc::new(served);
    let spawned = std::thread::Builder::new().name("hammer2-control".into()).spawn(move || {
        for conn in listener.incoming().flatten() {
            let fs = fs.clone();
            let served = served.clone();
            let _ = std::thread::Builder::new().name("hammer2-control-conn".into()).spawn(move || match fs.upgrade() {
                Some(fs) => serve(&fs, &served, conn),
                None => {
                    let mut out = conn;
                    send(&mut out, &Reply::Error("the filesystem is being unmounted".into()));
                }
            });
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("no control socket thread: {e}");
        return None;
    }
    Some(Control { path, bound })
}

fn send(out: &mut UnixStream, r: &Reply) -> bool {
    serde_json::to_string(r).is_ok_and(|line| writeln!(out, "{line}").is_ok())
}

fn serve(fs: &FsRef, served: &Served, conn: UnixStream) {
    let Ok(mut out) = conn.try_clone() else { return };
    // The request line, and the descriptor `send` and `receive` pass with it.
    let Ok((line, fd)) = super::fdpass::recv_line(&conn) else { return };
    let reply = match serde_json::from_str::<Request>(&line) {
        Err(e) => Reply::Error(format!("bad request: {e}")),
        Ok(req) if matches!(req.op, Op::Send | Op::Receive) => {
            match crate::send::serve(fs, &req, fd, &served.kernel, &mut |p| {
                send(&mut out, &Reply::Progress(p));
            }) {
                Ok(done) => Reply::Done(done),
                Err(e) => Reply::Error(format!("{e:#}")),
            }
        }
        Ok(req) => match run(fs, served, &req, &mut out) {
            Ok(done) => Reply::Done(done),
            Err(e) => Reply::Error(format!("{e:#}")),
        },
    };
    send(&mut out, &reply);
}

fn run(fs: &FsRef, served: &Served, req: &Request, out: &mut UnixStream) -> anyhow::Result<Done> {
    let devices = served.devices.as_str();
    let opts = RunOptions { rate: req.rate };
    match req.op {
        Op::Info => {
            let r = crate::info::live_report(fs, devices);
            Ok(Done { exit: 0, text: crate::info::render(&r), json: serde_json::to_value(&r)? })
        }
        Op::Status => {
            let s = crate::status::live(fs, devices, &served.mountpoint);
            Ok(Done { exit: 0, text: crate::status::render(&s), json: serde_json::to_value(&s)? })
        }
        Op::Clear => {
            let cleared = hammer2::maintenance::clear_counters(fs, req.device.as_deref())?;
            tracing::info!("error counters cleared on {}", cleared.join(", "));
            Ok(Done {
                exit: 0,
                text: format!("error counters cleared on {}\n", cleared.join(", ")),
                json: serde_json::json!({ "cleared": cleared }),
            })
        }
        Op::Scrub => {
            let rep = hammer2::maintenance::scrub(fs, opts, &mut |p| {
                send(out, &Reply::Progress(crate::scrub::progress(&p)));
            })?;
            crate::scrub_record::save_of(fs);
            Ok(Done { exit: rep.exit_code(), text: crate::scrub::render(&rep), json: serde_json::to_value(&rep)? })
        }
        Op::Resync => {
            let rep = hammer2::maintenance::resync(fs, opts, &mut |p| {
                send(out, &Reply::Progress(crate::resync::progress(p)));
            })?;
            Ok(Done { exit: rep.exit_code(), text: crate::resync::render(&rep), json: serde_json::to_value(&rep)? })
        }
        Op::ScrubPause | Op::ScrubResume | Op::ScrubCancel | Op::ResyncPause | Op::ResyncResume | Op::ResyncCancel => {
            let (cmd, now) = match req.op {
                Op::ScrubPause | Op::ResyncPause => (ScanCommand::Pause, "paused"),
                Op::ScrubResume | Op::ResyncResume => (ScanCommand::Resume, "resumed"),
                _ => (ScanCommand::Cancel, "cancelled"),
            };
            let scan = if matches!(req.op, Op::ScrubPause | Op::ScrubResume | Op::ScrubCancel) {
                hammer2::maintenance::scrub_command(fs, cmd)?;
                "scrub"
            } else {
                hammer2::maintenance::resync_command(fs, cmd)?;
                "resync"
            };
            tracing::info!("{scan} {now}");
            Ok(Done { exit: 0, text: format!("{scan} {now}\n"), json: serde_json::json!({ scan: now }) })
        }
        Op::ReadOnly | Op::ReadWrite => {
            let read_only = req.op == Op::ReadOnly;
            fs.remount(read_only)?;
            tracing::info!("remounted {}", if read_only { "read-only" } else { "read-write" });
            Ok(Done { exit: 0, text: String::new(), json: serde_json::json!({ "read_only": read_only }) })
        }
        Op::PfsCreate | Op::PfsList | Op::PfsDelete | Op::Snapshot | Op::SnapshotWritable => crate::pfs::serve(fs, req),
        Op::Send | Op::Receive => anyhow::bail!("bad request: no descriptor"),
        Op::DeviceAdd => crate::device::add(fs, &req.devices, served.nbd_timeout),
        Op::DeviceReplace => {
            let old = req.device.as_deref().ok_or_else(|| anyhow::anyhow!("bad request: no device named"))?;
            let new = req.devices.first().ok_or_else(|| anyhow::anyhow!("bad request: no new device named"))?;
            crate::device::replace(fs, old, new, served.nbd_timeout, &mut |p| {
                send(out, &Reply::Progress(p));
            })
        }
        Op::DeviceRemove => {
            let spec = req.device.as_deref().ok_or_else(|| anyhow::anyhow!("bad request: no device named"))?;
            crate::device::remove(fs, spec, &mut |p| {
                send(out, &Reply::Progress(p));
            })
        }
        Op::DeviceRebalance => {
            let spec = req.device.as_deref().ok_or_else(|| anyhow::anyhow!("bad request: no device named"))?;
            crate::device::rebalance(fs, spec, &mut |p| {
                send(out, &Reply::Progress(p));
            })
        }
        Op::DeviceOnline | Op::DeviceOffline => {
            let spec = req.device.as_deref().ok_or_else(|| anyhow::anyhow!("bad request: no device named"))?;
            if req.op == Op::DeviceOnline {
                crate::device::online(fs, spec, served.nbd_timeout)
            } else {
                crate::device::offline(fs, spec)
            }
        }
    }
}
