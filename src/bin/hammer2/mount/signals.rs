//! SIGTERM, SIGINT and SIGHUP end the mount the way `umount` does: the kernel writes back
//! its cached pages, the session ends, and the final commit leaves a clean filesystem.

use fuser::SessionUnmounter;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

const SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the set we own.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        for sig in SIGNALS {
            libc::sigaddset(&mut s, sig);
        }
        s
    }
}

/// Blocks the signals in the calling thread and in every thread it starts later, so only
/// the waiter below ever receives them. Call before any thread exists.
pub fn block() {
    let s = set();
    // SAFETY: a valid set; the old mask is not wanted.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut()) };
}

/// Starts the thread that turns a signal into an unmount of `mountpoint`.
pub fn spawn_waiter(mut unmounter: SessionUnmounter, mountpoint: PathBuf) -> std::io::Result<()> {
    std::thread::Builder::new().name("hammer2-signals".into()).spawn(move || {
        loop {
            let mut sig = 0;
            // SAFETY: a valid set and an integer to receive the signal number.
            if unsafe { libc::sigwait(&set(), &mut sig) } != 0 {
                continue;
            }
            tracing::info!("signal {sig}: unmounting {}", mountpoint.display());
            match unmounter.unmount() {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => detach(&mountpoint),
                Err(e) => tracing::error!("unmounting {}: {e}", mountpoint.display()),
            }
        }
    })?;
    Ok(())
}

/// The mount point is in use: detach it now; the kernel ends the session (and we commit and
/// exit) when the last open file or working directory inside it goes away.
fn detach(mountpoint: &std::path::Path) {
    tracing::warn!(
        "{} is busy: detached; the final commit happens when the last file in it is closed",
        mountpoint.display()
    );
    let Ok(c) = CString::new(mountpoint.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = std::io::Error::last_os_error();
        // Not root: fusermount3 may unmount what we mounted through it.
        let ok = std::process::Command::new("fusermount3")
            .args(["-u", "-z", "--"])
            .arg(mountpoint)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            tracing::error!("cannot detach {}: {e}", mountpoint.display());
        }
    }
}
