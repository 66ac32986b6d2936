//! Mounting and unmounting in the kernel.
//!
//! As root we call mount(2) ourselves and hand fuser the connection (`Session::from_fd`).
//! A session fuser mounts itself unmounts the mount point *by path* when it ends, and it ends
//! only after our final commit: a filesystem the user mounted on the same directory in the
//! meantime (after `umount` returned, while we were still committing) would be unmounted.
//! Without root, mount(2) is not allowed; fuser then mounts through fusermount3 and that
//! narrow race remains.

use super::options::MountOptions;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// What mount(2) needs besides the connection: flags and the fuse options.
fn flags_and_data(opts: &MountOptions, fd: i32, root_mode: u32) -> (libc::c_ulong, String) {
    use fuser::MountOption as M;
    let has = |o: M| opts.vfs_flags.contains(&o);
    let named = |name: &str| opts.vfs_flags.contains(&M::CUSTOM(name.to_string()));
    let mut flags = 0;
    for (set, flag) in [
        (!has(M::Suid), libc::MS_NOSUID),
        (!has(M::Dev), libc::MS_NODEV),
        (opts.read_only, libc::MS_RDONLY),
        (has(M::NoExec), libc::MS_NOEXEC),
        (has(M::NoAtime), libc::MS_NOATIME),
        (has(M::Sync), libc::MS_SYNCHRONOUS),
        (has(M::DirSync), libc::MS_DIRSYNC),
        (named("nodiratime"), libc::MS_NODIRATIME),
        (named("relatime"), libc::MS_RELATIME),
        (named("strictatime"), libc::MS_STRICTATIME),
        (named("lazytime"), libc::MS_LAZYTIME),
        (named("nosymfollow"), libc::MS_NOSYMFOLLOW),
    ] {
        if set {
            flags |= flag;
        }
    }
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut data = format!("fd={fd},rootmode={root_mode:o},user_id={uid},group_id={gid},default_permissions");
    if opts.allow_other {
        data.push_str(",allow_other");
    }
    (flags, data)
}

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path or name"))
}

/// Mounts a new FUSE connection of type fuse.hammer2 on `mountpoint`; `source` is what
/// /proc/mounts shows as the device.
pub fn mount(mountpoint: &Path, source: &str, opts: &MountOptions) -> io::Result<OwnedFd> {
    let dev =
        File::options().read(true).write(true).open("/dev/fuse").map_err(|e| {
            io::Error::new(e.kind(), format!("cannot open /dev/fuse: {e} (is the fuse module loaded?)"))
        })?;
    let root_mode = std::fs::metadata(mountpoint)?.mode();
    let (flags, data) = flags_and_data(opts, dev.as_raw_fd(), root_mode);
    let (src, target) = (cstr(source.as_bytes())?, cstr(mountpoint.as_os_str().as_bytes())?);
    let (fstype, data) = (c"fuse.hammer2", cstr(data.as_bytes())?);
    // SAFETY: NUL-terminated strings that outlive the call.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, data.as_ptr().cast()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(dev.into())
}

/// Applies the flags `opts` gives (read-only, nosuid, nodev, noexec, the atime flags, ...) to
/// the live mount on `mountpoint`, as `mount -o remount` does: the kernel changes these on a
/// FUSE mount itself (the connection's own options cannot change, and it ignores them).
pub fn remount(mountpoint: &Path, opts: &MountOptions) -> io::Result<()> {
    let (flags, _) = flags_and_data(opts, -1, 0);
    let target = cstr(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: a NUL-terminated path that outlives the call; a remount takes no source, type
    // or data.
    let rc = unsafe {
        libc::mount(std::ptr::null(), target.as_ptr(), std::ptr::null(), flags | libc::MS_REMOUNT, std::ptr::null())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// True while the kernel still serves `conn` (a copy of the session's /dev/fuse descriptor):
/// once the filesystem is unmounted the connection reports an error.
pub fn connected(conn: &OwnedFd) -> bool {
    let mut p = libc::pollfd { fd: conn.as_fd().as_raw_fd(), events: 0, revents: 0 };
    // SAFETY: one pollfd, no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    !(n == 1 && p.revents & libc::POLLERR != 0)
}

/// Unmounts `mountpoint` the way `umount` does; when it is busy, detaches it instead (the
/// session then ends when the last user lets go). Without root, through fusermount3.
pub fn unmount(mountpoint: &Path) {
    let detached = || {
        tracing::warn!(
            "{} is busy: detached; the final commit happens when the last file in it is closed",
            mountpoint.display()
        )
    };
    let Ok(target) = cstr(mountpoint.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::umount2(target.as_ptr(), 0) } == 0 {
        return;
    }
    let e = io::Error::last_os_error();
    // SAFETY: as above.
    if e.raw_os_error() == Some(libc::EBUSY) && unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == 0 {
        return detached();
    }
    let fusermount = |args: &[&str]| {
        Command::new("fusermount3").args(args).arg("--").arg(mountpoint).status().is_ok_and(|s| s.success())
    };
    if fusermount(&["-u", "-q"]) {
        return;
    }
    if fusermount(&["-u", "-q", "-z"]) {
        return detached();
    }
    tracing::error!("cannot unmount {}: {e}", mountpoint.display());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mount::options;

    #[test]
    fn mount_data_carries_permissions_and_the_flags_follow_the_options() {
        let o = options::parse(&["ro,allow_other,noexec,suid".into()]).unwrap();
        let (flags, data) = flags_and_data(&o, 7, 0o40755);
        assert_eq!(flags, libc::MS_NODEV | libc::MS_RDONLY | libc::MS_NOEXEC);
        assert!(data.starts_with("fd=7,rootmode=40755,"), "{data}");
        assert!(data.ends_with(",default_permissions,allow_other"), "{data}");
        let (flags, data) = flags_and_data(&MountOptions::default(), 3, 0o40700);
        assert_eq!(flags, libc::MS_NOSUID | libc::MS_NODEV);
        assert!(!data.contains("allow_other"));
    }
}
