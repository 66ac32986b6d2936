//! Going to the background: `hammer2 mount` forks before it opens anything; the child
//! validates, mounts and then reports through a pipe, so the command returns 0 only once the
//! mount is ready and prints the child's one-line error (exit 1) when it is not.

use anyhow::{Result, anyhow, bail};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Who we are after `fork`.
pub enum Role {
    /// The command the user ran: the child's verdict.
    Parent(Result<()>),
    /// The daemon, holding the means to report readiness.
    Child(Readiness),
}

/// How the serving process tells whoever started it that the mount is usable.
pub enum Readiness {
    /// `-f`: nobody waits; errors are printed by the caller itself.
    Foreground,
    /// The write end of the parent's pipe (None once used).
    Pipe(Option<File>),
}

/// Forks. Must run before any thread exists: only the calling thread survives a fork.
pub fn fork() -> Result<Role> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("cannot create a pipe: {}", std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the process is single-threaded here (see above), so the child is complete.
    match unsafe { libc::fork() } {
        -1 => bail!("cannot fork: {}", std::io::Error::last_os_error()),
        0 => {
            drop(r);
            // A session of its own: the terminal's ^C and hangup no longer reach the daemon.
            // SAFETY: setsid has no memory-safety preconditions.
            unsafe { libc::setsid() };
            Ok(Role::Child(Readiness::Pipe(Some(File::from(w)))))
        }
        pid => {
            drop(w);
            Ok(Role::Parent(wait_for_child(File::from(r), pid)))
        }
    }
}

fn dup_onto(from: &File, to: i32) -> Result<()> {
    // SAFETY: dup2 onto a standard descriptor, from a descriptor we own.
    if unsafe { libc::dup2(from.as_raw_fd(), to) } < 0 {
        bail!("cannot redirect stdio: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn wait_for_child(mut pipe: File, pid: libc::pid_t) -> Result<()> {
    let mut msg = String::new();
    let _ = pipe.read_to_string(&mut msg);
    if msg == "ready\n" {
        return Ok(());
    }
    if let Some(e) = msg.strip_prefix("error: ") {
        let _ = reap(pid);
        bail!("{}", e.trim_end());
    }
    match reap(pid) {
        Some(status) => bail!("the mount daemon died before the mount was ready ({status})"),
        None => bail!("the mount daemon died before the mount was ready"),
    }
}

/// Waits for the child and describes how it ended.
fn reap(pid: libc::pid_t) -> Option<String> {
    let mut status = 0;
    // SAFETY: waitpid writes the status into the integer we pass.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return None;
    }
    Some(if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exit status {}", libc::WEXITSTATUS(status))
    })
}

impl Readiness {
    pub fn is_background(&self) -> bool {
        matches!(self, Readiness::Pipe(_))
    }

    /// A background daemon with a `logfile=` logs there from the start (the parent still
    /// gets errors through the pipe).
    pub fn log_to(&self, logfile: Option<&Path>) -> Result<()> {
        if let (Readiness::Pipe(_), Some(p)) = (self, logfile) {
            let f = File::options()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| anyhow!("cannot open log file {}: {e}", p.display()))?;
            dup_onto(&f, 2)?;
        }
        Ok(())
    }

    /// The mount is usable: detach from the terminal's stdio (stderr too, unless the log
    /// still goes there: a log file, or nothing better, see `logging::detach`) and release
    /// the waiting parent.
    pub fn ready(&mut self, keep_stderr: bool) -> Result<()> {
        let Readiness::Pipe(pipe) = self else {
            return Ok(());
        };
        let Some(mut pipe) = pipe.take() else {
            return Ok(());
        };
        let null = File::options().read(true).write(true).open("/dev/null")?;
        dup_onto(&null, 0)?;
        dup_onto(&null, 1)?;
        if !keep_stderr {
            dup_onto(&null, 2)?;
        }
        // The daemon must not keep a directory busy (the cwd the user ran us from).
        let _ = std::env::set_current_dir("/");
        pipe.write_all(b"ready\n")?;
        Ok(())
    }

    /// The mount failed before it was ready: the parent prints `err` and exits 1.
    /// Returns false when nobody waits (foreground, or already reported ready).
    pub fn fail(&mut self, err: &anyhow::Error) -> bool {
        match self {
            Readiness::Pipe(Some(pipe)) => {
                let line = hammer2_cli::one_line(err);
                let _ = pipe.write_all(format!("error: {line}\n").as_bytes());
                *self = Readiness::Pipe(None);
                true
            }
            _ => false,
        }
    }
}
