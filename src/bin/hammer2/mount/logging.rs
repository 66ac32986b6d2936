//! The daemon's log: stderr while someone may be watching (foreground, or a background
//! daemon until the mount is ready), then the `logfile=` file or syslog. Panics are logged
//! like any other error (the FUSE layer turns them into EIO and keeps serving).

use std::ffi::CString;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Where log lines go; switched once, when a background daemon without a log file detaches.
pub struct Sink {
    syslog: AtomicBool,
}

static SINK: Sink = Sink { syslog: AtomicBool::new(false) };

/// Starts logging to stderr. `debug` also shows every FUSE request (fuser's `log` output).
pub fn init(debug: bool) {
    // fuser::session warns on every clean unmount (it tries a second umount of its own).
    let default = if debug { "debug" } else { "warn,hammer2=info,fuser::session=error" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HAMMER2_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(&SINK)
        .try_init();
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        tracing::error!("thread {} panicked: {info}", thread.name().unwrap_or("?"));
    }));
}

/// From now on, log lines go to syslog (stderr is about to become /dev/null).
pub fn switch_to_syslog() {
    // SAFETY: the identity is a static C string; openlog keeps the pointer.
    unsafe { libc::openlog(c"hammer2".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
    SINK.syslog.store(true, Ordering::SeqCst);
}

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
        if !SINK.syslog.load(Ordering::SeqCst) {
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
