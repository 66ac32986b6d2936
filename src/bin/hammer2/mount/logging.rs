//! The daemon's log: stderr while someone may be watching (foreground, or a background
//! daemon until the mount is ready), then, once a background daemon detaches, the first of:
//! the `logfile=` file, the systemd journal, syslog (/dev/log), or the stderr it was started
//! with. No line is ever dropped for want of a destination: a daemon whose stderr is a pipe
//! (a caller reading it to the end would wait for the daemon to exit) and that has neither a
//! journal nor syslog appends to `/run/hammer2/hammer2.log` instead, and says so first.
//! Panics are logged like any other error (the FUSE layer turns them into EIO and keeps
//! serving).

use std::ffi::CString;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::FileTypeExt;
use std::sync::atomic::{AtomicU8, Ordering};
use tracing::{Level, Metadata};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// Where log lines go now (`STDERR`, `SYSLOG` or `JOURNAL`); switched once, when a
/// background daemon without a log file detaches.
static MODE: AtomicU8 = AtomicU8::new(STDERR);
const STDERR: u8 = 0;
const SYSLOG: u8 = 1;
const JOURNAL: u8 = 2;
/// Whether the journal answered when logging started (its layer exists only then).
static HAVE_JOURNAL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Where a background daemon's log goes when nothing else takes it and stderr is a pipe.
const FALLBACK: &str = "/run/hammer2/hammer2.log";

/// Starts logging to stderr, with colours only on a terminal that stays ours (a background
/// daemon's lines end in a file or the system log). `debug` also shows every FUSE request
/// (`ops.rs` logs each one's opcode and node at debug level).
pub fn init(debug: bool, background: bool) {
    let default = if debug { "debug" } else { "warn,hammer2=info" };
    let text = tracing_subscriber::fmt::layer()
        .with_ansi(!background && std::io::stderr().is_terminal())
        .with_writer(&SINK)
        .with_filter(filter_fn(|_| MODE.load(Ordering::Relaxed) != JOURNAL));
    // Connected now: it is the same socket later, when the daemon detaches.
    let journal = tracing_journald::layer().ok().map(|l| {
        HAVE_JOURNAL.store(true, Ordering::SeqCst);
        l.with_syslog_identifier("hammer2".into()).with_filter(filter_fn(|_| MODE.load(Ordering::Relaxed) == JOURNAL))
    });
    let _ = tracing_subscriber::registry().with(crate::log_filter(default)).with(text).with(journal).try_init();
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        tracing::error!("thread {} panicked: {info}", thread.name().unwrap_or("?"));
    }));
}

/// A background daemon without `logfile=` is about to detach: picks where its lines go
/// from now on. Returns whether stderr must stay open (it is still the destination).
pub fn detach() -> bool {
    if HAVE_JOURNAL.load(Ordering::SeqCst) {
        MODE.store(JOURNAL, Ordering::SeqCst);
        return false;
    }
    if syslog_listens() {
        // SAFETY: the identity is a static C string; openlog keeps the pointer.
        unsafe { libc::openlog(c"hammer2".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
        MODE.store(SYSLOG, Ordering::SeqCst);
        return false;
    }
    if stderr_is_pipe() {
        match open_fallback() {
            Ok(f) => {
                tracing::warn!("no journal and no syslog (/dev/log): the daemon logs to {FALLBACK}");
                // SAFETY: dup2 onto stderr from a descriptor we own.
                if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&f), 2) } >= 0 {
                    return true;
                }
            }
            Err(e) => tracing::warn!("no journal, no syslog, and {FALLBACK}: {e}: logging to stderr"),
        }
    }
    true
}

/// Whether a syslog daemon listens on /dev/log (the socket may exist with nobody behind it).
fn syslog_listens() -> bool {
    let dgram = std::os::unix::net::UnixDatagram::unbound().and_then(|s| s.connect("/dev/log"));
    dgram.is_ok() || std::os::unix::net::UnixStream::connect("/dev/log").is_ok()
}

fn stderr_is_pipe() -> bool {
    use std::os::fd::AsFd;
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.file_type().is_fifo())
}

fn open_fallback() -> std::io::Result<std::fs::File> {
    std::fs::create_dir_all("/run/hammer2")?;
    std::fs::File::options().create(true).append(true).open(FALLBACK)
}

/// The text layer's destination: stderr (whatever it points at), or syslog.
pub struct Sink;

static SINK: Sink = Sink;

/// One log event, written out as a whole when the formatter drops it.
pub struct Line {
    buf: Vec<u8>,
    priority: libc::c_int,
}

impl<'a> MakeWriter<'a> for &'static Sink {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line { buf: Vec::new(), priority: libc::LOG_INFO }
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        let priority = match *meta.level() {
            Level::ERROR => libc::LOG_ERR,
            Level::WARN => libc::LOG_WARNING,
            Level::INFO => libc::LOG_INFO,
            _ => libc::LOG_DEBUG,
        };
        Line { buf: Vec::new(), priority }
    }
}

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if MODE.load(Ordering::SeqCst) != SYSLOG {
            let _ = std::io::stderr().write_all(&self.buf);
            return;
        }
        let text = String::from_utf8_lossy(&self.buf).replace('\0', " ");
        if let Ok(c) = CString::new(text.trim_end()) {
            // SAFETY: a constant format string and one NUL-terminated argument.
            unsafe { libc::syslog(self.priority, c"%s".as_ptr(), c.as_ptr()) };
        }
    }
}
