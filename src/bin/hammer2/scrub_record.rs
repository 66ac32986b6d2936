//! The last scrub's date and result, kept across mounts for `hammer2 status`: one JSON file
//! per filesystem, `/var/lib/hammer2/scrub.status.<fs uuid>` (`HAMMER2_STATE_DIR` names
//! another directory), as btrfs-progs keeps `/var/lib/btrfs/scrub.status.<uuid>`. Not in
//! the filesystem: a scrub then writes nothing to the devices it checks. Written by whoever
//! ran the scrub (the daemon for a mount point, the command for devices); a filesystem
//! carried to another machine starts without one there. A file that cannot be written or
//! read costs only the line in `status` (logged, never an error of the scrub).

use hammer2::scan::LastScrub;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

#[derive(Serialize, Deserialize)]
struct Saved {
    /// When it ended, seconds since the Unix epoch.
    ended: u64,
    seconds: f64,
    bytes_read: u64,
    errors: u64,
    repaired: u64,
    unrepairable: u64,
    cancelled: bool,
}

fn path(fs_uuid: &str) -> PathBuf {
    let dir = std::env::var_os("HAMMER2_STATE_DIR").map_or_else(|| PathBuf::from("/var/lib/hammer2"), PathBuf::from);
    dir.join(format!("scrub.status.{fs_uuid}"))
}

/// Records `last` as the last scrub of filesystem `fs_uuid`.
pub fn save(fs_uuid: &str, last: &LastScrub) {
    let saved = Saved {
        ended: last.ended.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        seconds: last.seconds,
        bytes_read: last.bytes,
        errors: last.errors,
        repaired: last.repaired,
        unrepairable: last.unrepairable,
        cancelled: last.cancelled,
    };
    let p = path(fs_uuid);
    let write = || -> std::io::Result<()> {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Whole or not at all: a new file renamed over the old one.
        let tmp = p.with_extension("new");
        std::fs::write(&tmp, serde_json::to_vec(&saved)?)?;
        std::fs::rename(&tmp, &p)
    };
    if let Err(e) = write() {
        tracing::warn!(path = %p.display(), "the last scrub's result is not kept for status: {e}");
    }
}

/// Records the last scrub `fs` ran (just now), if any.
pub fn save_of(fs: &impl hammer2::Mounted) {
    let live = hammer2::info::live(fs, String::new());
    if let Some(last) = &live.last_scrub {
        save(&uuid::Uuid::from_bytes(live.assembly.master.fs_uuid).to_string(), last);
    }
}

/// The last scrub recorded for filesystem `fs_uuid`, if any.
pub fn load(fs_uuid: &str) -> Option<LastScrub> {
    let s: Saved = serde_json::from_slice(&std::fs::read(path(fs_uuid)).ok()?).ok()?;
    Some(LastScrub {
        ended: UNIX_EPOCH + Duration::from_secs(s.ended),
        seconds: s.seconds,
        bytes: s.bytes_read,
        errors: s.errors,
        repaired: s.repaired,
        unrepairable: s.unrepairable,
        cancelled: s.cancelled,
    })
}

/// The newer of the mount's own last scrub and the recorded one.
pub fn newest(live: Option<LastScrub>, fs_uuid: &str) -> Option<LastScrub> {
    match (live, load(fs_uuid)) {
        (Some(l), Some(r)) if r.ended > l.ended => Some(r),
        (Some(l), _) => Some(l),
        (None, r) => r,
    }
}
