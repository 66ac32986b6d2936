//! Mounting and unmounting in the kernel.
//!
//! As root we call mount(2) ourselves and serve the connection it was given. Without root,
//! mount(2) is not allowed: fusermount3 (set-user-ID root) mounts and hands the connection
//! back over a socket, as libfuse does. Either way nothing unmounts the mount point by path
//! after our final commit (a filesystem mounted on the same directory in the meantime would
//! go instead).

use super::options::MountOptions;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// What mount(2) needs besides the connection: flags and the fuse options.
fn flags_and_data(opts: &MountOptions, fd: i32, root_mode: u32) -> (libc::c_ulong, String) {
    use super::options::MountOption as M;
    let has = |o: M| opts.vfs_flags.contains(&o);
    let named = |name: &str| opts.vfs_flags.contains(&M::Named(name.to_string()));
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

/// Mounts through fusermount3, for a user without the right to call mount(2): it mounts
/// and sends the connection back through the socket named by `_FUSE_COMMFD`.
pub fn mount_user(mountpoint: &Path, source: &str, opts: &MountOptions) -> io::Result<OwnedFd> {
    use super::options::MountOption as M;
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors socketpair writes.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two new descriptors nothing else owns. Ours must not leak into the child
    // (theirs is inherited on purpose).
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: F_SETFD on our own open descriptor.
    unsafe { libc::fcntl(ours.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    // fusermount3 takes a source with commas only escaped; ours are paths joined by ':'.
    let mut o = format!("fsname={},subtype=hammer2,default_permissions", source.replace(',', "\\,"));
    if opts.read_only {
        o.push_str(",ro");
    }
    if opts.allow_other {
        o.push_str(",allow_other");
    }
    for f in &opts.vfs_flags {
        let name = match f {
            M::Exec => "exec",
            M::NoExec => "noexec",
            M::Dev => "dev",
            M::NoDev => "nodev",
            M::Suid => "suid",
            M::NoSuid => "nosuid",
            M::Atime => "atime",
            M::NoAtime => "noatime",
            M::Sync => "sync",
            M::Async => "async",
            M::DirSync => "dirsync",
            M::Named(s) => s.as_str(),
        };
        o.push(',');
        o.push_str(name);
    }
    let status = Command::new("fusermount3")
        .arg("-o")
        .arg(&o)
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", theirs.as_raw_fd().to_string())
        .status()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run fusermount3: {e}")))?;
    drop(theirs);
    if !status.success() {
        return Err(io::Error::other(format!("fusermount3 failed ({status})")));
    }
    receive_fd(&ours)
}

/// The descriptor fusermount3 sent (SCM_RIGHTS).
fn receive_fd(sock: &OwnedFd) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // Room for one descriptor's control message, aligned as cmsghdr wants.
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr is valid; it names iov and control, which outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: as above.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR and CMSG_DATA stay within `control`
    // (checked against msg_controllen by the macros), and an SCM_RIGHTS message of this
    // length carries one int.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_level != libc::SOL_SOCKET || (*c).cmsg_type != libc::SCM_RIGHTS {
            return Err(io::Error::other("fusermount3 sent no FUSE connection"));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
        Ok(OwnedFd::from_raw_fd(fd))
    }
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
