//! `hammer2-fsx`: exercisers for a mounted filesystem, in the spirit of fsx.
//!
//! - `hammer2-fsx data DIR`: random reads, writes (small and large, straddling block
//!   boundaries, far past the end), truncates, mmap reads and writes, fallocate (allocate, keep-size, punch-hole, zero-range), fsync,
//!   close/reopen and SEEK_DATA/SEEK_HOLE on a few files, each result checked against an
//!   in-memory copy of every file. `--model-dir` saves that copy at the end and, when it
//!   already holds one, first checks the files against it and continues from it (runs that
//!   span a remount).
//! - `hammer2-fsx meta DIR`: one worker of a many-process metadata stress: random create,
//!   mkdir, rename (of files and directories), link, unlink, rmdir, stat and readdir in the
//!   shared directories `DIR/d0..`; any errno the operation cannot legitimately return is a
//!   failure.
//! - `hammer2-fsx fill DIR`: one worker of the fill stress: creates with data, writes,
//!   truncates, links, renames, xattrs, unlinks and fsyncs in `DIR` until the filesystem is
//!   full and on; only space-taking operations may fail, with ENOSPC.
//!
//! Both stop after `--ops` operations or `--seconds`, whichever comes first, print one JSON
//! line of counts on stdout, and exit 1 on the first mismatch or unexpected error, with the
//! tail of their operation log on stderr.

mod data;
mod fill;
mod meta;
mod os;

use clap::{Parser, Subcommand};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "hammer2-fsx", about = "Exercisers that check a mounted filesystem against a model")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// File content exerciser (reads, writes, truncates, mmap, fallocate, seeks).
    Data(data::Args),
    /// One worker of the metadata stress (create, rename, link, unlink, mkdir, rmdir).
    Meta(meta::Args),
    /// One worker of the fill stress (data and metadata changes until full, and on).
    Fill(fill::Args),
}

/// The seed and when to stop, the same for every exerciser.
#[derive(clap::Args)]
pub struct Limits {
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this many operations (default 10,000 when --seconds is not given either).
    #[arg(long)]
    ops: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<u64>,
}

impl Limits {
    pub fn budget(&self) -> Budget {
        Budget::new(self.ops, self.seconds)
    }
}

/// When to stop: after `ops` operations or at `until`, whichever comes first.
#[derive(Clone, Copy)]
pub struct Budget {
    ops: Option<u64>,
    until: Option<Instant>,
}

impl Budget {
    pub fn new(ops: Option<u64>, seconds: Option<u64>) -> Budget {
        let ops = if ops.is_none() && seconds.is_none() { Some(10_000) } else { ops };
        Budget { ops, until: seconds.map(|s| Instant::now() + Duration::from_secs(s)) }
    }

    pub fn more(&self, done: u64) -> bool {
        self.ops.is_none_or(|n| done < n) && self.until.is_none_or(|t| Instant::now() < t)
    }
}

/// The last operations, printed when something goes wrong.
#[derive(Default)]
pub struct OpLog {
    tail: VecDeque<String>,
}

impl OpLog {
    const KEEP: usize = 60;

    pub fn push(&mut self, s: String) {
        if self.tail.len() == Self::KEEP {
            self.tail.pop_front();
        }
        self.tail.push_back(s);
    }

    /// Prints the failure and the log tail, and exits 1.
    pub fn fail(&self, what: &str, seed: u64, op: u64) -> ! {
        eprintln!("hammer2-fsx: MISMATCH or unexpected error at operation {op} (seed {seed}): {what}");
        eprintln!("last {} operations (oldest first):", self.tail.len());
        for l in &self.tail {
            eprintln!("  {l}");
        }
        std::process::exit(1);
    }
}

fn main() {
    match Cli::parse().cmd {
        Cmd::Data(a) => data::run(a),
        Cmd::Meta(a) => meta::run(a),
        Cmd::Fill(a) => fill::run(a),
    }
}
