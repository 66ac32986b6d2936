//! Many processes changing names at once on a real mount: six `hammer2-fsx meta` workers
//! create, mkdir, rename (files, and directories between and into each other), link,
//! unlink and rmdir in three shared directories, drawing from one small pool of names so
//! they collide all the time. No operation may fail with an errno it cannot legitimately
//! return (the workers check). Afterwards the tree must be coherent:
//!
//! - every directory's st_nlink is 2 + its subdirectories, its "." is itself and its ".."
//!   its parent;
//! - every file's st_nlink is the number of names it has in the tree;
//! - no name appears twice in a directory, and readdir and lookup agree on every name of
//!   the pool in every directory (with the kernel's caches dropped, so lookups reach the
//!   filesystem);
//! - a remount shows the same tree (names, inode numbers, link counts), and the image then
//!   passes the library's consistency checks (allocator against reachable blocks, every
//!   copy verified).
//!
//! `HAMMER2_META_OPS` sets the operations per worker (default 20,000), or
//! `HAMMER2_META_SECONDS` the seconds per worker for a long run.

use hammer2_test_support as common;

use common::mount::*;
use common::rng::env_u64;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const WORKERS: u64 = 6;
const SHARED_DIRS: u64 = 3;

/// The names the workers use (hammer2-fsx meta: n0..n11 for files, s0..s3 for directories).
fn pool() -> Vec<String> {
    (0..12).map(|i| format!("n{i}")).chain((0..4).map(|i| format!("s{i}"))).collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    dir: bool,
    ino: u64,
    nlink: u64,
    size: u64,
}

fn cname(name: &str) -> CString {
    CString::new(name).expect("name without NUL")
}

/// Opens directory `name` in the directory `parent` (not following symlinks).
fn open_dir_at(parent: &OwnedFd, name: &str, shown: &Path) -> OwnedFd {
    let c = cname(name);
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a valid descriptor and C string; the new descriptor is owned below.
    let fd = unsafe { libc::openat(parent.as_raw_fd(), c.as_ptr(), flags) };
    assert!(fd >= 0, "open directory {}: {}", shown.display(), std::io::Error::last_os_error());
    // SAFETY: fd was just opened and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// lstat of `name` in the directory `dir`.
fn stat_at(dir: &OwnedFd, name: &str) -> std::io::Result<libc::stat> {
    let c = cname(name);
    // SAFETY: fstatat fills the struct we pass.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor, C string and struct.
    if unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } == 0 {
        Ok(st)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The entries of an open directory as readdir returns them (name, d_ino), "." and ".."
/// included.
fn read_dir_at(dir: &OwnedFd, shown: &Path) -> Vec<(String, u64)> {
    // SAFETY: duplicating a valid descriptor; the stream below owns the copy.
    let fd = unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    assert!(fd >= 0, "dup: {}", std::io::Error::last_os_error());
    // SAFETY: fd is an open directory; the stream owns it and closedir closes it.
    let d = unsafe { libc::fdopendir(fd) };
    assert!(!d.is_null(), "fdopendir {}: {}", shown.display(), std::io::Error::last_os_error());
    // SAFETY: rewinding the fresh stream (the duplicate shares the offset of earlier reads).
    unsafe { libc::rewinddir(d) };
    let mut out = Vec::new();
    loop {
        // SAFETY: d is an open directory stream; the entry is copied before the next call.
        let e = unsafe { libc::readdir64(d) };
        if e.is_null() {
            break;
        }
        // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated.
        let (name, ino) = unsafe { (CStr::from_ptr((*e).d_name.as_ptr()).to_string_lossy().into_owned(), (*e).d_ino) };
        out.push((name, ino));
    }
    // SAFETY: closing the stream opened above.
    unsafe { libc::closedir(d) };
    out
}

/// Walks the tree under `root`, checking every directory on the way (see the module
/// comment), and returns every entry by relative path. Directory renames can nest
/// subtrees deeper than a path may be long, so the walk goes from open directory to open
/// directory (on a thread with a stack for that depth).
fn walk_and_check(root: &Path) -> BTreeMap<PathBuf, Node> {
    let root = root.to_path_buf();
    std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(move || {
            let c = CString::new(root.as_os_str().as_bytes()).expect("path without NUL");
            // SAFETY: a valid C string; the descriptor is owned below.
            let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
            assert!(fd >= 0, "open {}: {}", root.display(), std::io::Error::last_os_error());
            // SAFETY: fd was just opened and nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let ino = std::fs::symlink_metadata(&root).expect("stat root").ino();
            let mut out = BTreeMap::new();
            check_dir(&fd, &PathBuf::new(), ino, None, &mut out);
            check_link_counts(&out);
            out
        })
        .expect("walker thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

fn check_dir(fd: &OwnedFd, rel: &Path, ino: u64, parent: Option<u64>, out: &mut BTreeMap<PathBuf, Node>) {
    let entries = read_dir_at(fd, rel);
    let mut names = BTreeSet::new();
    let mut subdirs = Vec::new();
    for (name, d_ino) in &entries {
        assert!(names.insert(name.clone()), "{} lists {name:?} twice: {entries:?}", rel.display());
        match name.as_str() {
            "." => assert_eq!(*d_ino, ino, "\".\" of /{} is not itself", rel.display()),
            ".." => {
                if let Some(p) = parent {
                    assert_eq!(*d_ino, p, "\"..\" of /{} is not its parent", rel.display());
                }
            }
            _ => {
                let p = rel.join(name);
                let m = stat_at(fd, name)
                    .unwrap_or_else(|e| panic!("readdir lists /{} but lookup fails: {e}", p.display()));
                assert_eq!(m.st_ino, *d_ino, "readdir and lookup disagree on the inode of /{}", p.display());
                let dir = m.st_mode & libc::S_IFMT == libc::S_IFDIR;
                let node = Node { dir, ino: m.st_ino, nlink: m.st_nlink, size: m.st_size as u64 };
                if dir {
                    subdirs.push((name.clone(), m.st_ino));
                }
                out.insert(p, node);
            }
        }
    }
    assert!(names.contains(".") && names.contains(".."), "/{} lacks . or ..: {entries:?}", rel.display());
    let me = stat_at(fd, ".").expect("stat dir");
    assert_eq!(
        me.st_nlink,
        2 + subdirs.len() as u64,
        "st_nlink of /{} with {} subdirectories",
        rel.display(),
        subdirs.len()
    );
    // Lookup of every pool name agrees with readdir: present iff listed.
    for n in pool() {
        let listed = names.contains(&n);
        let found = stat_at(fd, &n).is_ok();
        assert_eq!(found, listed, "/{}/{n}: lookup finds it = {found}, readdir lists it = {listed}", rel.display());
    }
    for (name, child) in subdirs {
        let p = rel.join(&name);
        let cfd = open_dir_at(fd, &name, &p);
        check_dir(&cfd, &p, child, Some(ino), out);
    }
}

/// A file's link count is the number of names it has, and all its names show the same file.
fn check_link_counts(out: &BTreeMap<PathBuf, Node>) {
    let mut names_of: HashMap<u64, Vec<&PathBuf>> = HashMap::new();
    for (p, n) in out.iter().filter(|(_, n)| !n.dir) {
        names_of.entry(n.ino).or_default().push(p);
    }
    for (ino, paths) in &names_of {
        let n = &out[paths[0]];
        assert_eq!(
            n.nlink,
            paths.len() as u64,
            "inode {ino} has st_nlink {} but {} names: {paths:?}",
            n.nlink,
            paths.len()
        );
        assert!(paths.iter().all(|p| out[*p] == *n), "the names of inode {ino} disagree: {paths:?}");
    }
}

fn drop_caches() {
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop_caches (the tests run as root)");
}

/// Runs the workers at once and returns their summaries.
fn run_workers(img: &Image, dir: &Path) -> Vec<serde_json::Value> {
    let (len, limit) = match std::env::var("HAMMER2_META_SECONDS") {
        Ok(s) => {
            let secs: u64 = s.parse().unwrap_or_else(|_| panic!("HAMMER2_META_SECONDS={s:?} is not a number"));
            (vec!["--seconds".to_string(), secs.to_string()], Duration::from_secs(secs + 600))
        }
        Err(_) => {
            (vec!["--ops".to_string(), env_u64("HAMMER2_META_OPS", 20_000).to_string()], Duration::from_secs(1200))
        }
    };
    fsx_workers(img, "meta", WORKERS, limit, |w| {
        let (seed, dirs) = ((100 + w).to_string(), SHARED_DIRS.to_string());
        [dir.display().to_string(), "--seed".into(), seed, "--dirs".into(), dirs]
            .into_iter()
            .chain(len.clone())
            .collect()
    })
}

#[test]
fn many_processes_renaming_linking_and_removing_in_shared_directories_leave_a_coherent_tree() {
    let img = Image::with(2, 256 << 20, Some(2));
    let m = img.mount();
    let dir = m.join("stress");
    std::fs::create_dir(&dir).expect("mkdir");
    for d in 0..SHARED_DIRS {
        std::fs::create_dir(dir.join(format!("d{d}"))).expect("mkdir shared");
    }
    let summaries = run_workers(&img, &dir);

    drop_caches();
    let before = walk_and_check(&m.path);
    m.unmount();
    let m = img.mount();
    let after = walk_and_check(&m.path);
    assert!(before == after, "the tree differs after a remount");
    m.unmount();
    img.assert_consistent();

    let ops: u64 = summaries.iter().map(|s| s["ops"].as_u64().unwrap_or(0)).sum();
    let ok: u64 = summaries.iter().map(|s| s["succeeded"].as_u64().unwrap_or(0)).sum();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for s in &summaries {
        for (k, v) in s["outcomes"].as_object().into_iter().flatten() {
            *outcomes.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
        }
    }
    let dirs = after.values().filter(|n| n.dir).count();
    let files: BTreeSet<u64> = after.values().filter(|n| !n.dir).map(|n| n.ino).collect();
    eprintln!(
        "metadata stress: {WORKERS} processes, {ops} operations ({ok} succeeded), 0 unexpected errors; \
         final tree: {} names, {dirs} directories, {} files; outcomes: {outcomes:?}",
        after.len(),
        files.len()
    );
    assert!(ok > ops / 10, "most operations only failed; the stress did little: {outcomes:?}");
}
