//! SIGTERM, SIGINT and SIGHUP end the mount the way `umount` does: the kernel writes back
//! its cached pages, the session ends, and the final commit leaves a clean filesystem.

use super::kernel;
use std::os::fd::OwnedFd;
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

/// Starts the thread that turns a signal into an unmount of `mountpoint`, as long as `conn`
/// (a copy of the session's connection) shows it is still ours to unmount.
pub fn spawn_waiter(conn: OwnedFd, mountpoint: PathBuf) -> std::io::Result<()> {
    std::thread::Builder::new().name("hammer2-signals".into()).spawn(move || {
        loop {
            let mut sig = 0;
            // SAFETY: a valid set and an integer to receive the signal number.
            if unsafe { libc::sigwait(&set(), &mut sig) } != 0 {
                continue;
            }
            if kernel::connected(&conn) {
                tracing::info!("signal {sig}: unmounting {}", mountpoint.display());
                kernel::unmount(&mountpoint);
            } else {
                tracing::info!("signal {sig}: already unmounted, finishing the final commit");
            }
        }
    })?;
    Ok(())
}
