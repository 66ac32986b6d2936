//! mount(2) and umount of a FUSE connection of a filesystem of the tests' own (the faulty
//! device here, the floor in `tools/`), as `hammer2 mount` mounts as root: with
//! `default_permissions`, nosuid and nodev, for root alone.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a path or name"))
}

/// Mounts a new FUSE connection of type `fstype` (`fuse.NAME`) on `mountpoint`, showing
/// `source` as its device; returns the connection to serve.
pub fn mount(mountpoint: &Path, source: &str, fstype: &str) -> io::Result<OwnedFd> {
    let dev = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open /dev/fuse: {e}")))?;
    let root_mode = std::fs::metadata(mountpoint)?.mode();
    let data = format!("fd={},rootmode={root_mode:o},user_id=0,group_id=0,default_permissions", dev.as_raw_fd());
    let (src, target, fstype, data) = (
        cstr(source.as_bytes())?,
        cstr(mountpoint.as_os_str().as_bytes())?,
        cstr(fstype.as_bytes())?,
        cstr(data.as_bytes())?,
    );
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    // SAFETY: NUL-terminated strings that outlive the call.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, data.as_ptr().cast()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(dev.into())
}

/// Unmounts `mountpoint`; a mount still busy is detached (it goes when its last user does).
pub fn unmount(mountpoint: &Path) -> io::Result<()> {
    let target = cstr(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: a NUL-terminated path that outlives the calls.
    if unsafe { libc::umount2(target.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let first = io::Error::last_os_error();
    // SAFETY: as above.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    Err(first)
}
