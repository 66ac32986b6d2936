//! Opening a filesystem's devices for an offline tool (scrub, resync): exclusively, with a
//! blank replacement device adopted.

use anyhow::{Result, anyhow};
use hammer2::storage::claim::OpenMode;
use hammer2::{Fs, Options};
use std::path::PathBuf;

/// Opens the filesystem on `paths`. A missing member is refused unless `degraded` (as a
/// mount refuses it without `-o degraded`): run on one device of a pair, a scrub or resync
/// would commit with the other marked missing, and doing each in turn diverges the pair.
pub fn open(paths: &[PathBuf], degraded: bool) -> Result<Fs> {
    if paths.is_empty() {
        anyhow::bail!("give the filesystem's devices");
    }
    if paths.len() == 1 && crate::control::client::names_a_mount_point(&paths[0]) {
        anyhow::bail!(
            "{} is a directory: online operation on a mount point needs the running daemon's control socket",
            paths[0].display()
        );
    }
    let storages = crate::devices::open_all(paths, OpenMode::Exclusive)?;
    let opts = Options {
        degraded,
        replace: true,
        background_sync: false,
        resync_slice_bytes: crate::resync_slice_bytes(),
        ..Options::default()
    };
    // The engine's refusal names the mount option; these commands spell it --degraded.
    Fs::mount(storages, opts).map_err(|e| {
        anyhow!("cannot open the filesystem: {}", e.to_string().replace("mount with -o degraded", "give --degraded"))
    })
}

/// Runs an online operation on the daemon serving `mountpoint`. Not reaching one (nothing
/// mounted there, a daemon gone) is an operational error: one line, exit status 8.
pub fn online(cmd: &str, mountpoint: &std::path::Path, req: impl Into<crate::control::Request>, json: bool) -> i32 {
    crate::control::client::request(mountpoint, req, json).unwrap_or_else(|e| operational(cmd, &e, json))
}

/// An operational error of scrub or resync: one line on stderr (and the JSON error document
/// with `--json`), exit status 8.
/// A scan command (`scrub`, `resync`) given a mount point or an operator's word: `run` on
/// the daemon serving the one mount point among `paths`, or `control` (pause, resume or
/// cancel, which need a mount point) sent to it. None: devices were given, the command runs
/// here.
pub fn scan_online(
    cmd: &str,
    paths: &[std::path::PathBuf],
    run: crate::control::Request,
    control: Option<crate::control::Op>,
    json: bool,
) -> Option<i32> {
    let mountpoint = match paths {
        [p] if crate::control::client::names_a_mount_point(p) => Some(p),
        _ => None,
    };
    match (control, mountpoint) {
        (Some(op), Some(p)) => Some(online(cmd, p, op, json)),
        (Some(_), None) => {
            let e = anyhow::anyhow!("--pause, --resume and --cancel need the mount point of a mounted filesystem");
            Some(operational(cmd, &e, json))
        }
        (None, Some(p)) => Some(online(cmd, p, run, json)),
        (None, None) => None,
    }
}

pub fn operational(cmd: &str, e: &anyhow::Error, json: bool) -> i32 {
    let msg = hammer2_cli::one_line(e);
    eprintln!("hammer2 {cmd}: {msg}");
    if json {
        println!("{}", hammer2_cli::json::error(&msg, 8));
    }
    8
}

/// A report as `--json` prints it.
pub fn json_document(report: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(hammer2_cli::json::document(serde_json::to_value(report)?))
}
