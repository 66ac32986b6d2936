//! `hammer2 device online|offline MOUNTPOINT DEVICE`: a device back in service while
//! mounted (a disk that came back, a restarted NBD server), or out of it, through the
//! daemon's control socket; `hammer2 device add MOUNTPOINT DEVICE...`: new devices join
//! the mounted filesystem (format version 2); `hammer2 device rebalance MOUNTPOINT DEVICE`
//! (or `device add --rebalance`): copies move onto it until it holds its share. The daemon opens the devices itself, with
//! the one opener (`devices::open_all`). Exit status: 0 done, 8 operational error (one
//! line).

use crate::control::{Done, Op, Request};
use hammer2::FsRef;
use hammer2::storage::claim::OpenMode;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Print the result as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Take a device of the mounted filesystem back: it rejoins as stale and is caught up
    /// by a resync (which starts by itself unless mounted with -o autoresync=off).
    Online(Target),
    /// Take a device out of service as a failure would (refused when some block would be
    /// left without a good copy).
    Offline(Target),
    /// Add new devices to the mounted filesystem (format version 2): new writes use them at
    /// once; from then on the filesystem is mounted with them too.
    Add(AddTarget),
    /// Move copies onto a device (e.g. one just added) until it holds its share of the
    /// allocated space, each verified against its check value; blocks a snapshot shares
    /// stay where they are. Not needed for correctness, only for balance.
    Rebalance(Target),
    /// Remove a device from the mounted filesystem (format version 2): every copy on it
    /// moves to the other devices, each verified against its check value, while the
    /// filesystem stays in use; then it leaves the device table. Refused when the other
    /// devices cannot hold the copies. Interrupted (a kill, an unmount), run it again.
    Remove(Target),
    /// Replace a device of the mounted filesystem by a new one (format version 2): NEW is
    /// added, then every copy OLD holds moves to the others (rebuilt from the good copies
    /// when OLD is dead), and OLD leaves. OLD is a path, or the device index `hammer2 info`
    /// shows (for a missing device).
    Replace(ReplaceTarget),
}

#[derive(clap::Args)]
pub struct ReplaceTarget {
    /// The mount point of the mounted filesystem.
    pub mountpoint: PathBuf,
    /// The device to replace (a path, or its device index).
    pub old: PathBuf,
    /// The new device; anything on it is lost.
    pub new: PathBuf,
}

#[derive(clap::Args)]
pub struct AddTarget {
    /// The mount point of the mounted filesystem.
    pub mountpoint: PathBuf,
    /// The devices to add (block devices, image files or NBD specs); anything on them is
    /// lost. A device holding another filesystem or signature is refused.
    #[arg(required = true)]
    pub devices: Vec<PathBuf>,
    /// Then move copies onto each new device until it holds its share (as `device
    /// rebalance`).
    #[arg(long)]
    pub rebalance: bool,
}

#[derive(clap::Args)]
pub struct Target {
    /// The mount point of the mounted filesystem.
    pub mountpoint: PathBuf,
    /// The device (a path as given to mount, or another name for it).
    pub device: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    crate::init_logging(false);
    let (op, t) = match a.action {
        Action::Online(t) => (Op::DeviceOnline, t),
        Action::Offline(t) => (Op::DeviceOffline, t),
        Action::Remove(t) => (Op::DeviceRemove, t),
        Action::Replace(t) => {
            let req = Request {
                device: Some(client_spec(&t.old)),
                devices: vec![client_spec(&t.new)],
                ..Request::from(Op::DeviceReplace)
            };
            return Ok(crate::control::client::request(&t.mountpoint, req, a.json).unwrap_or_else(|e| {
                eprintln!("hammer2 device replace: {e:#}");
                8
            }));
        }
        Action::Add(t) => {
            let devices: Vec<String> = t.devices.iter().map(|d| client_spec(d)).collect();
            let req = Request { devices: devices.clone(), ..Request::from(Op::DeviceAdd) };
            let code = crate::control::client::request(&t.mountpoint, req, a.json).unwrap_or_else(|e| {
                eprintln!("hammer2 device add: {e:#}");
                8
            });
            if code != 0 || !t.rebalance {
                return Ok(code);
            }
            for d in devices {
                let req = Request { device: Some(d), ..Request::from(Op::DeviceRebalance) };
                let code = crate::control::client::request(&t.mountpoint, req, a.json).unwrap_or_else(|e| {
                    eprintln!("hammer2 device add --rebalance: {e:#}");
                    8
                });
                if code != 0 {
                    return Ok(code);
                }
            }
            return Ok(0);
        }
        Action::Rebalance(t) => (Op::DeviceRebalance, t),
    };
    let cmd = match op {
        Op::DeviceOnline => "device online",
        Op::DeviceRemove => "device remove",
        Op::DeviceRebalance => "device rebalance",
        _ => "device offline",
    };
    let req = Request { device: Some(client_spec(&t.device)), ..Request::from(op) };
    Ok(crate::control::client::request(&t.mountpoint, req, a.json).unwrap_or_else(|e| {
        eprintln!("hammer2 {cmd}: {e:#}");
        8
    }))
}

/// The daemon runs elsewhere (another working directory): a local path goes as an absolute
/// one; anything else (a device spec that names no local file) as given.
fn client_spec(device: &Path) -> String {
    let d = if device.exists() { std::path::absolute(device).unwrap_or(device.to_path_buf()) } else { device.into() };
    d.to_string_lossy().into_owned()
}

/// Daemon side of `device add`: opens the devices like the mount's and adds them.
pub fn add(fs: &FsRef, specs: &[String], nbd_timeout: Option<std::time::Duration>) -> anyhow::Result<Done> {
    let paths: Vec<PathBuf> = specs.iter().map(PathBuf::from).collect();
    let specs = crate::devices::specs(&paths)?;
    let storages = crate::devices::open_specs(&specs, OpenMode::Exclusive, nbd_timeout)?;
    let r = fs.device_add(storages)?;
    let names: Vec<&str> = r.devices.iter().map(|d| d.name.as_str()).collect();
    let all: Vec<String> = fs.devices().into_iter().map(|d| d.name).collect();
    let text = format!(
        "added {} (now {} devices, commit {}): new writes use it at once; mount with every device from now on: {}\n",
        names.join(", "),
        r.device_count,
        r.tid,
        all.join(" ")
    );
    Ok(Done { exit: 0, text, json: serde_json::to_value(&r)? })
}

/// Daemon side of `device remove`: progress after every commit, then the report.
pub fn remove(fs: &FsRef, spec: &str, progress: &mut dyn FnMut(crate::control::Progress)) -> anyhow::Result<Done> {
    let d = member_or_index(fs, spec)?;
    let r = fs.device_remove(d.index, &mut |p| {
        progress(crate::control::Progress {
            bytes: p.moved_bytes,
            total: p.total,
            message: format!("{} copies moved, {} commits", p.moved_blocks, p.commits),
        })
    })?;
    let text = format!(
        "device {} ({}) removed: {} copies ({} MiB) moved in {} commits, {:.1} s ({:.0} MiB/s); {} devices left: \
         mount without it from now on\n",
        r.index,
        r.name,
        r.moved_blocks,
        r.moved_bytes >> 20,
        r.commits,
        r.seconds,
        r.moved_bytes as f64 / (1u64 << 20) as f64 / r.seconds.max(1e-9),
        r.devices_left
    );
    Ok(Done { exit: 0, text, json: serde_json::to_value(&r)? })
}

/// Daemon side of `device rebalance`: progress after every commit, then the report.
pub fn rebalance(fs: &FsRef, spec: &str, progress: &mut dyn FnMut(crate::control::Progress)) -> anyhow::Result<Done> {
    let d = member_or_index(fs, spec)?;
    let r = fs.device_rebalance(d.index, &mut |moved, target| {
        progress(crate::control::Progress { bytes: moved, total: target, message: "copies moved".into() })
    })?;
    let text = format!(
        "device {} ({}) rebalanced: {} copies ({} MiB of the {} MiB it lacked of its share) moved in {} commits, {:.1} s\n",
        r.index,
        r.name,
        r.moved_blocks,
        r.moved_bytes >> 20,
        r.target >> 20,
        r.commits,
        r.seconds
    );
    Ok(Done { exit: 0, text, json: serde_json::to_value(&r)? })
}

/// Daemon side of `device replace`.
pub fn replace(
    fs: &FsRef,
    old: &str,
    new: &str,
    nbd_timeout: Option<std::time::Duration>,
    progress: &mut dyn FnMut(crate::control::Progress),
) -> anyhow::Result<Done> {
    let d = member_or_index(fs, old)?;
    let specs = crate::devices::specs(&[PathBuf::from(new)])?;
    let storage = crate::devices::open_specs(&specs, OpenMode::Exclusive, nbd_timeout)?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("{new}: nothing opened"))?;
    let r = fs.device_replace(d.index, storage, &mut |p| {
        progress(crate::control::Progress {
            bytes: p.moved_bytes,
            total: p.total,
            message: format!("{} copies moved, {} commits", p.moved_blocks, p.commits),
        })
    })?;
    let text = format!(
        "device {} ({}) replaced by device {} ({}): {} copies ({} MiB) moved in {:.1} s; mount with {} from now on\n",
        r.removed.index,
        r.removed.name,
        r.added.devices[0].index,
        r.added.devices[0].name,
        r.removed.moved_blocks,
        r.removed.moved_bytes >> 20,
        r.removed.seconds,
        fs.devices()
            .into_iter()
            .filter(|d| d.state != hammer2::MemberState::Removed)
            .map(|d| d.name)
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(Done { exit: 0, text, json: serde_json::to_value(&r)? })
}

/// The member named `spec` (a path, another name for it), or the one whose index `spec` is
/// (a missing device has no path to name it by).
fn member_or_index(fs: &FsRef, spec: &str) -> anyhow::Result<hammer2::DeviceStatus> {
    let by_index = || spec.parse::<u8>().ok().and_then(|i| fs.devices().into_iter().find(|d| d.index == i));
    let by_name = || member_named(fs, spec);
    let path_like = Path::new(spec).exists();
    (if path_like { by_name().or_else(by_index) } else { by_index().or_else(by_name) })
        .ok_or_else(|| anyhow::anyhow!("{spec} is not a device of this mount"))
}

/// The member the mount holds under the name `spec`, or another name for the same file.
fn member_named(fs: &FsRef, spec: &str) -> Option<hammer2::DeviceStatus> {
    let canon = |p: &Path| std::fs::canonicalize(p).ok();
    let want = canon(Path::new(spec));
    fs.devices().into_iter().find(|d| d.name == spec || (want.is_some() && canon(Path::new(&d.name)) == want))
}

/// Daemon side of `device online`: a failed member the mount still holds is reopened
/// through its own storage (opening its path again would meet the claim it holds); any
/// other device is opened like the mount's and recognized by its header.
pub fn online(fs: &FsRef, spec: &str, nbd_timeout: Option<std::time::Duration>) -> anyhow::Result<Done> {
    let r = match member_named(fs, spec) {
        // In service already (refused), or failed and still held.
        Some(d) if d.present => fs.device_reopen(d.index)?,
        _ => {
            let specs = crate::devices::specs(&[PathBuf::from(spec)])?;
            let storage = crate::devices::open_specs(&specs, OpenMode::Exclusive, nbd_timeout)?
                .pop()
                .ok_or_else(|| anyhow::anyhow!("{spec}: nothing opened"))?;
            fs.device_online(storage)?
        }
    };
    let text = format!(
        "device {} ({}) is back in service, stale since commit {}: {}\n",
        r.index,
        r.name,
        r.missed_since,
        if r.resync_started {
            "a resync catches it up now (hammer2 info shows it resyncing)"
        } else {
            "run hammer2 resync to catch it up"
        }
    );
    Ok(Done { exit: 0, text, json: serde_json::to_value(&r)? })
}

/// Daemon side of `device offline`.
pub fn offline(fs: &FsRef, spec: &str) -> anyhow::Result<Done> {
    let d = member_named(fs, spec).ok_or_else(|| anyhow::anyhow!("{spec} is not a device of this mount"))?;
    let name = fs.device_offline(d.index)?;
    let text = format!("device {} ({name}) is out of service; hammer2 device online brings it back\n", d.index);
    Ok(Done { exit: 0, text, json: serde_json::json!({ "index": d.index, "name": name, "state": "failed" }) })
}
