//! One worker of the fill stress: random metadata-heavy changes in a directory of its own
//! (creates with data, appends, overwrites, truncates, hard links, renames, extended
//! attributes, unlinks, fsync) on a filesystem that fills up and stays full. Operations that
//! need space may fail with ENOSPC; nothing else may fail, and in particular:
//!
//! - unlink and rename never fail with ENOSPC (removing must work on a full filesystem);
//! - fsync never fails (what was accepted can always be committed);
//! - close never fails.
//!
//! Whatever the worker leaves behind is compared by the caller before and after a remount.

use crate::os::{Outcomes, cpath, errno, sys};
use crate::{Limits, OpLog};
use hammer2_test_support::rng::Rng;
use std::ffi::CString;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// The worker's own directory (created if missing).
    dir: PathBuf,
    #[command(flatten)]
    limits: Limits,
    /// Largest write, in KiB.
    #[arg(long, default_value_t = 256)]
    max_kib: u64,
    /// Names the worker uses (f0, f1, ...): with more, the directory holds more data.
    #[arg(long, default_value_t = 64)]
    names: u64,
}

struct Worker {
    root: PathBuf,
    rng: Rng,
    seed: u64,
    op: u64,
    max: u64,
    names: u64,
    log: OpLog,
    outcomes: Outcomes,
}

pub fn run(a: Args) {
    let mut w = Worker {
        root: a.dir.clone(),
        rng: Rng::new(a.limits.seed),
        seed: a.limits.seed,
        op: 0,
        max: a.max_kib.max(1) << 10,
        names: a.names.max(1),
        log: OpLog::default(),
        outcomes: Outcomes::default(),
    };
    if let Err(e) = std::fs::create_dir_all(&w.root) {
        w.log.fail(&format!("mkdir {}: {e}", w.root.display()), a.limits.seed, 0);
    }
    let budget = a.limits.budget();
    while budget.more(w.op) {
        w.step();
    }
    let (ok, nospc) = (w.outcomes.ended("ok"), w.outcomes.ended("ENOSPC"));
    let summary = serde_json::json!({
        "mode": "fill",
        "seed": a.limits.seed,
        "ops": w.op,
        "succeeded": ok,
        "enospc": nospc,
        "outcomes": w.outcomes,
        "unexpected": 0,
    });
    println!("{summary}");
}

impl Worker {
    fn name(&mut self) -> PathBuf {
        self.root.join(format!("f{}", self.rng.below(self.names)))
    }

    fn outcome(&mut self, what: &'static str, desc: String, r: Result<(), i32>, allowed: &[i32]) {
        self.outcomes.record(&mut self.log, self.seed, self.op, what, desc, r, allowed);
    }

    /// Opens `p` with `flags`, writes `len` bytes at `off` (one write(2) per 64 KiB),
    /// optionally fsyncs, and closes. ENOSPC may end the writes early; fsync and close
    /// must then still succeed.
    fn write_file(&mut self, p: &Path, flags: i32, off: u64, len: u64, fsync: bool) -> Result<(), i32> {
        let c = cpath(p);
        // SAFETY: a valid C string; the descriptor is closed below.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_WRONLY | libc::O_CLOEXEC, 0o644) };
        if fd < 0 {
            return Err(errno());
        }
        let data = self.rng.bytes(len as usize);
        let mut result = Ok(());
        let mut done = 0usize;
        while done < data.len() {
            let n = (data.len() - done).min(64 << 10);
            // SAFETY: the buffer holds at least `n` bytes from `done`.
            let w = unsafe { libc::pwrite(fd, data[done..].as_ptr().cast(), n, (off + done as u64) as libc::off_t) };
            if w < 0 {
                result = Err(errno());
                break;
            }
            done += w as usize;
        }
        if fsync {
            // SAFETY: an open descriptor.
            if let Err(e) = sys(unsafe { libc::fsync(fd) }) {
                let d = format!("fsync {} after {done} bytes", p.display());
                self.outcome("fsync", d, Err(e), &[]);
            }
        }
        // SAFETY: closing the descriptor opened above.
        if let Err(e) = sys(unsafe { libc::close(fd) }) {
            self.outcome("close", format!("close {}", p.display()), Err(e), &[]);
        }
        result
    }

    fn step(&mut self) {
        self.op += 1;
        use libc::{EEXIST, EISDIR, EMLINK, ENODATA, ENOENT, ENOSPC};
        let rel = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match self.rng.weighted(&[20, 10, 8, 6, 8, 6, 6, 2, 14, 4]) {
            0 => {
                // A new file with data, written and closed (fsync'd now and then).
                let p = self.name();
                let len = self.rng.below(self.max + 1);
                let fsync = self.rng.chance(0.2);
                let r = self.write_file(&p, libc::O_CREAT | libc::O_TRUNC, 0, len, fsync);
                self.outcome("create", format!("create {} {len} bytes", rel(&p)), r, &[ENOSPC, EISDIR]);
            }
            1 => {
                let p = self.name();
                let len = self.rng.below(self.max / 4 + 1);
                let off = self.rng.below(self.max);
                let r = self.write_file(&p, 0, off, len, false);
                self.outcome("write", format!("write {} {len} at {off}", rel(&p)), r, &[ENOENT, ENOSPC, EISDIR]);
            }
            2 => {
                let p = self.name();
                let len = self.rng.below(self.max + 1);
                let c = cpath(&p);
                // SAFETY: a valid C string.
                let r = sys(unsafe { libc::truncate(c.as_ptr(), len as libc::off_t) });
                self.outcome("truncate", format!("truncate {} {len}", rel(&p)), r, &[ENOENT, ENOSPC, EISDIR]);
            }
            3 => {
                let (a, b) = (self.name(), self.name());
                let (ca, cb) = (cpath(&a), cpath(&b));
                // SAFETY: valid C strings.
                let r = sys(unsafe { libc::link(ca.as_ptr(), cb.as_ptr()) });
                self.outcome("link", format!("link {} {}", rel(&a), rel(&b)), r, &[ENOENT, EEXIST, ENOSPC, EMLINK]);
            }
            4 => {
                let (a, b) = (self.name(), self.name());
                let (ca, cb) = (cpath(&a), cpath(&b));
                // SAFETY: valid C strings.
                let r = sys(unsafe { libc::rename(ca.as_ptr(), cb.as_ptr()) });
                self.outcome("rename", format!("rename {} {}", rel(&a), rel(&b)), r, &[ENOENT]);
            }
            5 => {
                let p = self.name();
                let c = cpath(&p);
                let name = CString::new(format!("user.x{}", self.rng.below(4))).expect("name");
                let vlen = self.rng.below(2048) as usize;
                let v = self.rng.bytes(vlen);
                // SAFETY: valid C strings and a buffer as long as we say.
                let r = sys(unsafe { libc::setxattr(c.as_ptr(), name.as_ptr(), v.as_ptr().cast(), v.len(), 0) });
                self.outcome("setxattr", format!("setxattr {}", rel(&p)), r, &[ENOENT, ENOSPC]);
            }
            6 => {
                let p = self.name();
                let c = cpath(&p);
                let name = CString::new(format!("user.x{}", self.rng.below(4))).expect("name");
                // SAFETY: valid C strings.
                let r = sys(unsafe { libc::removexattr(c.as_ptr(), name.as_ptr()) });
                self.outcome("removexattr", format!("removexattr {}", rel(&p)), r, &[ENOENT, ENODATA]);
            }
            7 => {
                let p = self.name();
                let len = self.rng.below(self.max + 1);
                let r = self.write_file(&p, 0, 0, len, true);
                self.outcome("overwrite", format!("overwrite+fsync {} {len}", rel(&p)), r, &[ENOENT, ENOSPC]);
            }
            8 => {
                let p = self.name();
                let c = cpath(&p);
                // SAFETY: a valid C string.
                let r = sys(unsafe { libc::unlink(c.as_ptr()) });
                self.outcome("unlink", format!("unlink {}", rel(&p)), r, &[ENOENT]);
            }
            _ => {
                let p = self.name();
                let r = std::fs::read(&p).map(|_| ()).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO));
                self.outcome("read", format!("read {}", rel(&p)), r, &[ENOENT]);
            }
        }
    }
}
