//! The progress bar of scrub and resync, offline and on a mount point alike: a bar with
//! percent and ETA once the engine says how many bytes the operation will move, a spinner
//! before that; on stderr, and only when stderr is a terminal and the output is not JSON (a
//! log or a pipe gets no control characters).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub struct Bar {
    pb: ProgressBar,
    /// The bar style is set (a total is known).
    sized: std::cell::Cell<bool>,
}

impl Bar {
    pub fn new(what: &str, json: bool) -> Bar {
        let pb = if json || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix} {msg} [{elapsed_precise}] {binary_bytes} ({binary_bytes_per_sec})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb
        };
        pb.set_prefix(what.to_string());
        Bar { pb, sized: std::cell::Cell::new(false) }
    }

    /// `done` of `total` bytes (in the units of the command's summary: bytes of copies); a
    /// total of 0 is not known yet.
    pub fn update(&self, done: u64, total: u64, msg: String) {
        if total > 0 && !self.sized.replace(true) {
            self.pb.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{wide_bar}] {percent:>3}% {binary_bytes}/{binary_total_bytes} \
                     ({binary_bytes_per_sec}, ETA {eta}) {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
        }
        if total > 0 {
            // Blocks committed while the operation runs can take it past the first count.
            self.pb.set_length(total.max(done));
        }
        self.pb.set_position(done);
        self.pb.set_message(msg);
    }

    pub fn finish(self) {
        self.pb.finish_and_clear();
    }
}
