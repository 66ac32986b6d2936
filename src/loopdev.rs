//! Loop devices and their backing files: which loop devices a regular file backs, and which
//! file a loop device reads (the device claims of `storage::claim` reach across them).
//!
//! Formatting an image underneath an attached loop device would change a block device the
//! kernel (and maybe a mounted filesystem) believes it owns, and the file's own lock does
//! not protect against that: the loop driver never takes it. So the claim asks the kernel.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `/dev/loopN` for every attached loop device whose backing file is the file `meta`
/// describes (same device and inode, so renames and second names are caught too).
pub fn backed_by(meta: &std::fs::Metadata) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = std::fs::read_to_string(e.path().join("loop/backing_file")) else {
            continue;
        };
        let backing = backing.trim_end_matches('\n');
        // A backing file that was deleted shows as "path (deleted)"; it cannot be our file.
        let same = std::fs::metadata(Path::new(backing)).is_ok_and(|b| b.dev() == meta.dev() && b.ino() == meta.ino());
        if same {
            out.push(format!("/dev/{name}"));
        }
    }
    out.sort();
    out
}

/// The backing file of the loop device with device number `rdev`, if it is an attached
/// loop device (None for any other block device, a detached loop device, or a backing file
/// that was deleted).
pub fn backing_file(rdev: u64) -> Option<std::path::PathBuf> {
    let sys = format!("/sys/dev/block/{}:{}/loop/backing_file", libc::major(rdev), libc::minor(rdev));
    let backing = std::fs::read_to_string(sys).ok()?;
    let backing = backing.trim_end_matches('\n');
    (!backing.ends_with(" (deleted)")).then(|| std::path::PathBuf::from(backing))
}
