//! A progress bar on stderr when it is a terminal (and only then): bytes read against the
//! bytes the headers say are allocated (every copy).

use crate::blocks::IoStats;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub struct Progress {
    bar: Option<ProgressBar>,
    last: Instant,
}

impl Progress {
    pub fn new(enabled: bool, total_bytes: u64) -> Progress {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(total_bytes.max(1));
            let style = ProgressStyle::with_template(
                "{spinner} {msg:12} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            b.set_style(style);
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress { bar, last: Instant::now() }
    }

    pub fn phase(&self, msg: &'static str) {
        if let Some(b) = &self.bar {
            b.set_message(msg);
        }
    }

    /// Cheap to call per block: updates at most ten times a second.
    pub fn tick(&mut self, io: &IoStats) {
        if let Some(b) = &self.bar
            && self.last.elapsed() >= Duration::from_millis(100)
        {
            self.last = Instant::now();
            let n = io.bytes.load(Ordering::Relaxed);
            if n > b.length().unwrap_or(0) {
                b.set_length(n);
            }
            b.set_position(n);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
