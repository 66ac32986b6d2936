//! One worker of the many-process metadata stress. Several of these run at once on the same
//! shared directories (`DIR/d0`, `DIR/d1`, ...), drawing names from one small pool so they
//! collide constantly: creates race with unlinks, renames move files and whole directories
//! between the shared directories and into each other, links add names to files other
//! workers are renaming, and now and then a whole subtree is removed while others work in
//! it. Each operation may fail only with an errno that its system call can
//! legitimately return for a name that another worker just changed; anything else (EIO
//! above all) stops the worker with exit status 1. The tree left behind is checked by the
//! caller (link counts, names, readdir against lookup, a remount).

use crate::os::{Outcomes, cpath, sys};
use crate::{Limits, OpLog};
use hammer2_test_support::rng::Rng;
use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// The directory holding the shared directories d0, d1, ... (created if missing).
    dir: PathBuf,
    #[command(flatten)]
    limits: Limits,
    /// Number of shared directories.
    #[arg(long, default_value_t = 3)]
    dirs: u64,
}

/// Names of files (n*) and of directories (s*); either kind may end up under either name.
const FILE_NAMES: u64 = 12;
const DIR_NAMES: u64 = 4;

struct Worker {
    root: PathBuf,
    dirs: u64,
    rng: Rng,
    seed: u64,
    op: u64,
    log: OpLog,
    outcomes: Outcomes,
}

/// The errno of an error from std (EIO if it carries none: treated as unexpected).
fn code(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

pub fn run(a: Args) {
    let mut w = Worker {
        root: a.dir.clone(),
        dirs: a.dirs.max(1),
        rng: Rng::new(a.limits.seed),
        seed: a.limits.seed,
        op: 0,
        log: OpLog::default(),
        outcomes: Outcomes::default(),
    };
    for d in 0..w.dirs {
        let p = w.root.join(format!("d{d}"));
        if let Err(e) = std::fs::create_dir(&p)
            && e.kind() != io::ErrorKind::AlreadyExists
        {
            w.log.fail(&format!("mkdir {}: {e}", p.display()), a.limits.seed, 0);
        }
    }
    let budget = a.limits.budget();
    while budget.more(w.op) {
        w.step();
    }
    let ok = w.outcomes.ended("ok");
    let summary = serde_json::json!({
        "mode": "meta",
        "seed": a.limits.seed,
        "ops": w.op,
        "succeeded": ok,
        "outcomes": w.outcomes,
        "unexpected": 0,
    });
    println!("{summary}");
}

impl Worker {
    /// A directory: a shared one, or a subdirectory one or two levels below it.
    fn dir(&mut self) -> PathBuf {
        let mut p = self.root.join(format!("d{}", self.rng.below(self.dirs)));
        if self.rng.chance(0.4) {
            p.push(format!("s{}", self.rng.below(DIR_NAMES)));
            if self.rng.chance(0.3) {
                p.push(format!("s{}", self.rng.below(DIR_NAMES)));
            }
        }
        p
    }

    fn file_path(&mut self) -> PathBuf {
        let d = self.dir();
        d.join(format!("n{}", self.rng.below(FILE_NAMES)))
    }

    fn dir_path(&mut self) -> PathBuf {
        let d = self.dir();
        d.join(format!("s{}", self.rng.below(DIR_NAMES)))
    }

    /// Any name: mostly files, some directories.
    fn any_path(&mut self) -> PathBuf {
        if self.rng.chance(0.7) { self.file_path() } else { self.dir_path() }
    }

    fn rel<'a>(&self, p: &'a Path) -> std::path::Display<'a> {
        p.strip_prefix(&self.root).unwrap_or(p).display()
    }

    /// Records the outcome of one operation, failing on any errno not in `allowed`.
    fn outcome(&mut self, what: &'static str, desc: String, r: Result<(), i32>, allowed: &[i32]) {
        self.outcomes.record(&mut self.log, self.seed, self.op, what, desc, r, allowed);
    }

    /// Removes the tree at `p`, depth first, relative to open directories (directory
    /// renames nest subtrees deeper than any path may be long). Others change it meanwhile:
    /// a name that is gone (ENOENT), turned into a file (ENOTDIR) or a directory (EISDIR),
    /// or a directory that gained an entry (ENOTEMPTY) is left as it is; any other error
    /// stops the worker.
    fn remove_tree(&mut self, p: &Path) -> Result<(), i32> {
        let (parent, name) = match (p.parent(), p.file_name()) {
            (Some(parent), Some(name)) => (parent, name),
            _ => return Err(libc::EINVAL),
        };
        let c = cpath(parent);
        // SAFETY: a valid C string; the descriptor is closed below.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return sys(-1);
        }
        // A file name never contains a NUL byte.
        let name = CString::new(name.as_bytes()).expect("name without NUL");
        let r = self.remove_at(fd, &name, 0);
        // SAFETY: closing the descriptor opened above.
        unsafe { libc::close(fd) };
        r
    }

    fn remove_at(&mut self, parent: i32, name: &CStr, depth: usize) -> Result<(), i32> {
        use libc::{EISDIR, ENOENT, ENOTDIR, ENOTEMPTY};
        let raced = |e: i32| [ENOENT, ENOTDIR, ENOTEMPTY, EISDIR].contains(&e);
        // SAFETY: a valid descriptor and C string; the descriptor goes to fdopendir below.
        let fd = unsafe {
            libc::openat(parent, name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        };
        if fd < 0 {
            return sys(-1);
        }
        // SAFETY: fd is an open directory; the stream owns it from here and closedir closes it.
        let dir = unsafe { libc::fdopendir(fd) };
        if dir.is_null() {
            // SAFETY: fdopendir failed, so fd is still ours to close.
            unsafe { libc::close(fd) };
            return sys(-1);
        }
        let mut children = Vec::new();
        loop {
            // SAFETY: dir is an open stream; the name is copied before the next call.
            let e = unsafe { libc::readdir64(dir) };
            if e.is_null() {
                break;
            }
            // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated.
            let n = unsafe { CStr::from_ptr((*e).d_name.as_ptr()) }.to_owned();
            if n.as_bytes() != b"." && n.as_bytes() != b".." {
                children.push(n);
            }
        }
        // SAFETY: dirfd of an open stream.
        let dfd = unsafe { libc::dirfd(dir) };
        for child in &children {
            // SAFETY: valid descriptor and C string.
            let mut r = sys(unsafe { libc::unlinkat(dfd, child.as_ptr(), 0) });
            if r == Err(EISDIR) && depth < 10_000 {
                r = self.remove_at(dfd, child, depth + 1);
            }
            if let Err(code) = r
                && !raced(code)
            {
                let e = io::Error::from_raw_os_error(code);
                self.log.fail(&format!("removing {child:?} in a tree: unexpected error {e}"), self.seed, self.op);
            }
        }
        // SAFETY: closing the stream (and its descriptor).
        unsafe { libc::closedir(dir) };
        // SAFETY: valid descriptor and C string.
        sys(unsafe { libc::unlinkat(parent, name.as_ptr(), libc::AT_REMOVEDIR) })
    }

    fn step(&mut self) {
        self.op += 1;
        use libc::{EEXIST, EINVAL, EISDIR, EMLINK, ENOENT, ENOTDIR, ENOTEMPTY, EPERM};
        match self.rng.weighted(&[16, 8, 14, 8, 10, 14, 7, 8, 6, 1]) {
            0 => {
                let p = self.file_path();
                let c = cpath(&p);
                // SAFETY: a valid C string; the descriptor is closed at once.
                let fd = unsafe { libc::open(c.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, 0o644) };
                let r = if fd >= 0 {
                    // SAFETY: closing the descriptor just opened.
                    unsafe { libc::close(fd) };
                    Ok(())
                } else {
                    sys(-1)
                };
                let d = format!("create {}", self.rel(&p));
                self.outcome("create", d, r, &[ENOENT, EEXIST, ENOTDIR]);
            }
            1 => {
                let p = self.dir_path();
                let c = cpath(&p);
                // SAFETY: a valid C string.
                let r = sys(unsafe { libc::mkdir(c.as_ptr(), 0o755) });
                let d = format!("mkdir {}", self.rel(&p));
                self.outcome("mkdir", d, r, &[ENOENT, EEXIST, ENOTDIR, EMLINK]);
            }
            k @ (2 | 3) => {
                // 2: any name onto any name; 3: a directory onto a directory name, which
                // moves whole subtrees between (and into) the shared directories.
                let (a, b) =
                    if k == 2 { (self.any_path(), self.any_path()) } else { (self.dir_path(), self.dir_path()) };
                let (ca, cb) = (cpath(&a), cpath(&b));
                // SAFETY: valid C strings.
                let r = sys(unsafe { libc::rename(ca.as_ptr(), cb.as_ptr()) });
                let d = format!("rename {} -> {}", self.rel(&a), self.rel(&b));
                self.outcome("rename", d, r, &[ENOENT, EEXIST, ENOTEMPTY, EISDIR, ENOTDIR, EINVAL]);
            }
            4 => {
                let (a, b) = (self.file_path(), self.file_path());
                let (ca, cb) = (cpath(&a), cpath(&b));
                // SAFETY: valid C strings.
                let r = sys(unsafe { libc::link(ca.as_ptr(), cb.as_ptr()) });
                let d = format!("link {} -> {}", self.rel(&a), self.rel(&b));
                self.outcome("link", d, r, &[ENOENT, EEXIST, EPERM, ENOTDIR, EMLINK]);
            }
            5 => {
                let p = self.any_path();
                let c = cpath(&p);
                // SAFETY: a valid C string.
                let r = sys(unsafe { libc::unlink(c.as_ptr()) });
                let d = format!("unlink {}", self.rel(&p));
                self.outcome("unlink", d, r, &[ENOENT, EISDIR, ENOTDIR]);
            }
            6 => {
                let p = self.dir_path();
                let c = cpath(&p);
                // SAFETY: a valid C string.
                let r = sys(unsafe { libc::rmdir(c.as_ptr()) });
                let d = format!("rmdir {}", self.rel(&p));
                self.outcome("rmdir", d, r, &[ENOENT, ENOTDIR, ENOTEMPTY]);
            }
            7 => {
                let p = self.any_path();
                let r = std::fs::symlink_metadata(&p).map(|_| ()).map_err(|e| code(&e));
                let d = format!("stat {}", self.rel(&p));
                self.outcome("stat", d, r, &[ENOENT, ENOTDIR]);
            }
            8 => {
                let p = self.dir();
                let r =
                    std::fs::read_dir(&p).and_then(|mut it| it.try_for_each(|e| e.map(|_| ()))).map_err(|e| code(&e));
                let d = format!("readdir {}", self.rel(&p));
                self.outcome("readdir", d, r, &[ENOENT, ENOTDIR]);
            }
            _ => {
                // rm -rf of a subdirectory, racing with everyone else. Directory renames
                // bury subtrees deeper than the other operations reach; this keeps the
                // tree from growing without bound.
                let p = self.dir_path();
                let r = self.remove_tree(&p);
                let d = format!("remove tree {}", self.rel(&p));
                self.outcome("prune", d, r, &[ENOENT, ENOTDIR, ENOTEMPTY]);
            }
        }
    }
}
