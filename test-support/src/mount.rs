//! Real FUSE mounts for the tests: images made with the library, `hammer2 mount` run the way
//! a user runs it, and unmounts that wait until the daemon has made its final commit and
//! exited. If FUSE cannot be used here the tests fail and say why; they never skip.

use hammer2::format::{FormatOptions, format};
use hammer2::storage::DynStorage;
use hammer2::storage::file::{FileStorage, OpenMode};
use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use super::bins::HAMMER2;

/// How long a daemon may take to finish its final commit and exit.
const EXIT_WAIT: Duration = Duration::from_secs(120);

/// Panics (the test fails) with the reason when this machine cannot mount FUSE.
pub fn require_fuse() {
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        panic!(
            "FUSE is not usable here: cannot open /dev/fuse: {e}. These tests mount for real: run them as \
             root on a machine with the fuse module (modprobe fuse)."
        );
    }
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").is_file()))
        .unwrap_or(false);
    if !found {
        panic!("FUSE is not usable here: fusermount3 is not on PATH (install the fuse3 package).");
    }
}

/// One or more image files holding a fresh filesystem, and a directory to mount it on.
pub struct Image {
    pub dir: tempfile::TempDir,
    pub devices: Vec<PathBuf>,
}

// No `Default`: making one creates image files and formats them, which `new` says.
#[allow(clippy::new_without_default)]
impl Image {
    /// One 256 MiB image (sparse on the host).
    pub fn new() -> Image {
        Image::with(1, 256 << 20, None)
    }

    pub fn with(n: usize, size: u64, copies: Option<u8>) -> Image {
        require_fuse();
        let dir = tempfile::Builder::new().prefix("h2fuse").tempdir().expect("temp dir");
        let devices: Vec<PathBuf> = (0..n).map(|i| dir.path().join(format!("dev{i}.img"))).collect();
        let storages: Vec<DynStorage> = devices
            .iter()
            .map(|p| {
                let f = std::fs::File::options().read(true).write(true).create_new(true).open(p).expect("create image");
                f.set_len(size).expect("size image");
                Arc::new(Unlocked(f, p.display().to_string())) as DynStorage
            })
            .collect();
        format(storages, &FormatOptions { copies, ..Default::default() }).expect("format");
        std::fs::create_dir(dir.path().join("mnt")).expect("mount point");
        Image { dir, devices }
    }

    /// `n` image files of `size` bytes formatted by the real `mkfs.hammer2` (as
    /// `mkfs.hammer2 --size SIZE --copies N dev0.img dev1.img ...`).
    pub fn by_mkfs(n: usize, size: u64, copies: u8) -> Image {
        require_fuse();
        let dir = tempfile::Builder::new().prefix("h2fuse").tempdir().expect("temp dir");
        let devices: Vec<PathBuf> = (0..n).map(|i| dir.path().join(format!("dev{i}.img"))).collect();
        let out = super::image::mkfs(
            ["--size".to_string(), size.to_string(), "--copies".to_string(), copies.to_string()]
                .iter()
                .map(OsStr::new)
                .chain(devices.iter().map(|d| d.as_os_str())),
        );
        super::image::ok(&out);
        std::fs::create_dir(dir.path().join("mnt")).expect("mount point");
        Image { dir, devices }
    }

    pub fn mountpoint(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// The daemon's log so far (every mount of this image appends to it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits up to 5 s for `needle` in the log (a daemon logs some lines only after it has
    /// reported ready); returns whether it came.
    pub fn log_shows(&self, needle: &str) -> bool {
        eventually(|| self.log().contains(needle))
    }

    pub fn mount(&self) -> Mount {
        self.mount_with("")
    }

    /// Mounts with new data stored raw (`-o compression=none`): for tests that count the
    /// bytes blocks take (version 2 compresses with lz4 by default).
    pub fn mount_raw(&self) -> Mount {
        self.mount_with("compression=none")
    }

    /// Mounts with extra `-o` options; panics with the command's stderr if it fails.
    pub fn mount_with(&self, opts: &str) -> Mount {
        let out = self.try_mount(&self.mountpoint(), opts);
        assert!(
            out.status.success(),
            "hammer2 mount failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        Mount::attach(&self.mountpoint(), self.log_path())
    }

    /// Runs `hammer2 mount -o logfile=...,OPTS DEVICES... MOUNTPOINT` and returns its result.
    pub fn try_mount(&self, mountpoint: &Path, opts: &str) -> Output {
        let all: Vec<&Path> = self.devices.iter().map(PathBuf::as_path).collect();
        self.try_mount_devices(&all, mountpoint, opts, &[])
    }

    /// `hammer2 mount` of only some devices (e.g. `-o degraded` with one of two) on the
    /// image's mount point, with extra environment for the daemon; panics if it fails.
    pub fn mount_devices(&self, devices: &[&Path], opts: &str, env: &[(&str, &str)]) -> Mount {
        let out = self.try_mount_devices(devices, &self.mountpoint(), opts, env);
        assert!(
            out.status.success(),
            "hammer2 mount {devices:?} -o {opts} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        Mount::attach(&self.mountpoint(), self.log_path())
    }

    /// Runs `hammer2 mount -o logfile=...,OPTS DEVICES... MOUNTPOINT` with `env` added to the
    /// command's (and so the daemon's) environment, and returns its result.
    pub fn try_mount_devices(&self, devices: &[&Path], mountpoint: &Path, opts: &str, env: &[(&str, &str)]) -> Output {
        let mut o = format!("logfile={}", self.log_path().display());
        if !opts.is_empty() {
            o = format!("{o},{opts}");
        }
        Command::new(HAMMER2)
            .arg("mount")
            .arg("-o")
            .arg(o)
            .args(devices)
            .arg(mountpoint)
            .envs(env.iter().copied())
            .output()
            .expect("run hammer2")
    }

    /// No daemon that served this image panicked (the log of every mount so far).
    #[track_caller]
    pub fn assert_no_panics(&self) {
        let log = self.log();
        assert!(!log.contains("panicked"), "a hammer2 daemon panicked:\n{log}");
    }

    /// Every byte of every device (to prove nothing was written).
    pub fn contents(&self) -> Vec<Vec<u8>> {
        self.devices.iter().map(|d| std::fs::read(d).expect("read image")).collect()
    }
}

/// An image file as a storage, without the exclusive flock `FileStorage` takes: tests run in
/// threads that spawn processes, and a child inherits (until its exec) every descriptor open
/// at the time, flock included, which would make the next mount of that image find it busy.
struct Unlocked(std::fs::File, String);

impl hammer2::storage::Storage for Unlocked {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, buf, offset)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }
    fn size(&self) -> u64 {
        self.0.metadata().map(|m| m.len()).unwrap_or(0)
    }
    fn name(&self) -> String {
        self.1.clone()
    }
}

/// A live mount served by a `hammer2 mount` daemon.
pub struct Mount {
    pub path: PathBuf,
    pub pid: i32,
    log: PathBuf,
    done: bool,
}

impl Mount {
    /// Takes charge of the mount on `path` that a daemon just reported ready.
    pub fn attach(path: &Path, log: PathBuf) -> Mount {
        assert!(is_mounted(path), "{} is not mounted after hammer2 mount returned 0", path.display());
        let Some(pid) = daemon_pid_logging_to(path, &log).or_else(|| daemon_pid(path)) else {
            force_unmount(path);
            panic!("no hammer2 daemon serves {}", path.display());
        };
        if crate::uring::ring_under_test() {
            assert_serves_through_the_ring(path, pid, &log);
        }
        Mount { path: path.to_path_buf(), pid, log, done: false }
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }

    /// `umount MOUNTPOINT`, then waits for the daemon's final commit and exit.
    pub fn unmount(self) {
        self.unmount_with(&["umount"]);
    }

    /// Unmounts with the given command (e.g. `fusermount3 -u`) and waits for the daemon.
    /// A busy mount is retried for a while: the tests run in threads that spawn processes,
    /// and a child holds copies of every open descriptor (another test's open files on this
    /// mount included) until its exec.
    pub fn unmount_with(mut self, cmd: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new(cmd[0]).args(&cmd[1..]).arg(&self.path).output().expect("run unmount command");
            if out.status.success() {
                break;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("busy") && Instant::now() < deadline, "{cmd:?} {} failed: {err}", self.path.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_exit();
    }

    /// `umount MOUNTPOINT` without waiting for the daemon's final commit; returns its pid.
    pub fn unmount_no_wait(mut self) -> i32 {
        let out = Command::new("umount").arg(&self.path).output().expect("run umount");
        assert!(out.status.success(), "umount {}: {}", self.path.display(), String::from_utf8_lossy(&out.stderr));
        self.done = true;
        self.pid
    }

    /// Sends `sig` to the daemon and waits for it to exit.
    pub fn signal(mut self, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.pid, sig) }, 0, "kill {}", self.pid);
        self.wait_exit();
    }

    /// Kills the daemon with SIGKILL (a crash) and clears the dead mount away.
    pub fn kill9(mut self) {
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(self.pid, libc::SIGKILL) }, 0, "kill -9 {}", self.pid);
        wait_pid_gone(self.pid, &self.log);
        force_unmount(&self.path);
        self.done = true;
    }

    /// Kills the daemon with SIGKILL and leaves its mount behind, disconnected, as a crashed
    /// daemon leaves it (every access answers ENOTCONN). The returned guard clears it away.
    pub fn kill9_leaving_mount(mut self) -> DeadMount {
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(self.pid, libc::SIGKILL) }, 0, "kill -9 {}", self.pid);
        wait_pid_gone(self.pid, &self.log);
        self.done = true;
        DeadMount { path: self.path.clone() }
    }

    /// Waits until the daemon has exited (its final commit is done then).
    pub fn wait_exit(&mut self) {
        wait_pid_gone(self.pid, &self.log);
        self.done = true;
        assert!(!is_mounted(&self.path), "{} still mounted after the daemon exited", self.path.display());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // A failing test: detach the mount so the temp dir can go. The daemon finishes on
        // its own once the test's open files are closed (waiting here could deadlock with
        // files the failing test still holds).
        if !self.done {
            force_unmount(&self.path);
        }
    }
}

/// The mount a killed daemon left behind; dropping it clears the mount away.
pub struct DeadMount {
    pub path: PathBuf,
}

impl Drop for DeadMount {
    fn drop(&mut self) {
        force_unmount(&self.path);
    }
}

fn force_unmount(path: &Path) {
    let _ = Command::new("umount").arg("-l").arg(path).output();
}

pub fn wait_pid_gone(pid: i32, log: &Path) {
    let deadline = Instant::now() + EXIT_WAIT;
    while pid_alive(pid) {
        if Instant::now() > deadline {
            panic!(
                "the hammer2 daemon (pid {pid}) did not exit within {EXIT_WAIT:?}; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Alive: exists and is not a zombie (the daemon's parent exited; nobody may reap it).
/// True while any thread of `pid` is running: a process whose main thread already is a
/// zombie can still have threads tearing down, with its files still open.
pub fn pid_alive(pid: i32) -> bool {
    let running = |stat: &Path| {
        std::fs::read_to_string(stat).is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
    };
    match std::fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(tasks) => tasks.filter_map(|t| t.ok()).any(|t| running(&t.path().join("stat"))),
        Err(_) => false,
    }
}

/// The pid of the `hammer2 mount` (or `mount.fuse.hammer2`) daemon whose command line names
/// `mountpoint`.
pub fn daemon_pid(mountpoint: &Path) -> Option<i32> {
    let want = mountpoint.as_os_str().as_bytes();
    daemons().into_iter().find_map(|(pid, args)| args.iter().any(|a| a == want).then_some(pid))
}

/// Every live hammer2 daemon (`hammer2 mount` or the mount helper) with its arguments.
fn daemons() -> Vec<(i32, Vec<Vec<u8>>)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<Vec<u8>> = cmd.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
        let a0 = args.first()?;
        let ours = a0.ends_with(b"mount.fuse.hammer2")
            || a0.ends_with(b"hammer2") && args.get(1).is_some_and(|a| a == b"mount");
        (ours && pid_alive(pid)).then_some((pid, args))
    })
    .collect()
}

/// With the FUSE tests run through the ring (`HAMMER2_TEST_TRANSPORT=ring`), a mount that
/// did not ask for `nouring` must really be served through it: a daemon that fell back to
/// /dev/fuse would pass every test through the wrong transport.
fn assert_serves_through_the_ring(path: &Path, pid: i32, log: &Path) {
    let cmd = std::fs::read(Path::new("/proc").join(pid.to_string()).join("cmdline")).unwrap_or_default();
    if cmd.windows(b"nouring".len()).any(|w| w == b"nouring") {
        return;
    }
    if !eventually(|| crate::uring::ring_threads(pid) > 0) {
        force_unmount(path);
        panic!(
            "HAMMER2_TEST_TRANSPORT=ring, but the daemon serving {} has no ring queue; its log:\n{}",
            path.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

/// The daemon serving `mountpoint` whose options name `log` as its log file: another
/// daemon that served the same directory may still be finishing its final commit.
fn daemon_pid_logging_to(mountpoint: &Path, log: &Path) -> Option<i32> {
    let want = mountpoint.as_os_str().as_bytes();
    let log = log.as_os_str().as_bytes();
    daemons().into_iter().find_map(|(pid, args)| {
        let mentions = |needle: &[u8]| args.iter().any(|a| a.windows(needle.len()).any(|w| w == needle));
        (args.iter().any(|a| a == want) && mentions(log)).then_some(pid)
    })
}

/// True when something is mounted exactly on `path`.
pub fn is_mounted(path: &Path) -> bool {
    mount_count(path) > 0
}

/// How many mounts are stacked exactly on `path`.
pub fn mount_count(path: &Path) -> usize {
    let canon = std::fs::canonicalize(path).unwrap_or(path.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|mp| Path::new(&mp.replace("\\040", " ")) == canon).count()
}

/// The filesystem type of the mount on `path` as /proc/self/mounts shows it.
pub fn mount_type(path: &Path) -> Option<String> {
    let canon = std::fs::canonicalize(path).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| Path::new(f[1]) == canon)
        .map(|f| f[2].to_string())
}

/// What a file looks like from outside, for comparing a tree before and after a remount.
/// (atime is left out: reading a file may move it.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    pub kind: &'static str,
    pub mode: u32,
    pub ino: u64,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub blocks: u64,
    pub rdev: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Symlink target, or a hash of a regular file's content.
    pub content: Vec<u8>,
}

/// Every entry under `root` (relative path -> what it looks like).
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Snap> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display())) {
            let p = e.expect("dirent").path();
            let m = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
            let ft = m.file_type();
            let (kind, content) = if ft.is_dir() {
                stack.push(p.clone());
                ("dir", Vec::new())
            } else if ft.is_symlink() {
                ("symlink", std::fs::read_link(&p).expect("readlink").into_os_string().into_vec())
            } else if ft.is_file() {
                ("file", hash_file(&p).to_vec())
            } else if ft.is_fifo() {
                ("fifo", Vec::new())
            } else if ft.is_socket() {
                ("socket", Vec::new())
            } else {
                ("device", Vec::new())
            };
            let snap = Snap {
                kind,
                mode: m.mode(),
                ino: m.ino(),
                nlink: m.nlink(),
                uid: m.uid(),
                gid: m.gid(),
                size: m.size(),
                blocks: m.blocks(),
                rdev: m.rdev(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
                xattrs: xattrs(&p),
                content,
            };
            out.insert(p.strip_prefix(root).expect("under root").to_path_buf(), snap);
        }
    }
    out
}

use std::os::unix::ffi::OsStringExt;

pub fn hash_file(p: &Path) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    let mut f = std::fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    std::io::copy(&mut f, &mut h).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    *h.finalize().as_bytes()
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// Extended attributes of `p` itself (not following symlinks), sorted by name.
pub fn xattrs(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let c = cpath(p);
    let mut buf = vec![0u8; 65536];
    // SAFETY: the buffer is as long as we say.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "llistxattr {}: {}", p.display(), std::io::Error::last_os_error());
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = buf[..n as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|name| {
            let cname = CString::new(name).expect("name");
            let mut v = vec![0u8; 65536];
            // SAFETY: as above.
            let n = unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
            assert!(n >= 0, "lgetxattr {}: {}", p.display(), std::io::Error::last_os_error());
            v.truncate(n as usize);
            (name.to_vec(), v)
        })
        .collect();
    out.sort();
    out
}

/// Installs the mount helper into `dir` the way the README says (the hammer2 binary under the
/// name mount(8) looks for) and returns its path.
pub fn install_helper(dir: &Path) -> PathBuf {
    let p = dir.join("mount.fuse.hammer2");
    std::os::unix::fs::symlink(HAMMER2, &p).expect("install the helper");
    p
}

/// Deterministic test data: `len` bytes that differ with `seed` and with the position (a
/// prefix of a longer pattern of the same seed). Incompressible, so that a filesystem made
/// with compression (the version-2 default) stores and copies as many bytes as a test
/// writes, which is what the tests that count bytes mean; compression has tests of its own.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    crate::rng::Rng::new(u64::from(seed)).bytes(len)
}

/// Waits up to 5 s for `cond` to hold (something a daemon does just after it reported
/// ready); returns whether it did.
pub fn eventually(cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Runs a shell command line, panicking with its output if it fails or hangs for 10 minutes.
pub fn sh(script: &str) -> Output {
    let out = output_within(Command::new("sh").arg("-c").arg(script), Duration::from_secs(600));
    assert!(
        out.status.success(),
        "sh -c {script:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// True when the newest volume header of `device` carries the clean flag (written by a
/// final commit at unmount).
pub fn is_clean(device: &Path) -> bool {
    let s = FileStorage::open(device, OpenMode::ReadOnly).expect("open image read-only");
    let p = hammer2::inspect::probe(Arc::new(s));
    let h = p.header.unwrap_or_else(|| panic!("{} holds no valid header", device.display()));
    h.flags & hammer2_format::volume::FLAG_CLEAN != 0
}

/// Waits until no process has `device` open: the daemon that served it has finished.
pub fn wait_released(device: &Path) {
    let device = std::fs::canonicalize(device).expect("device path");
    let deadline = Instant::now() + EXIT_WAIT;
    while holders(&device) > 0 {
        assert!(Instant::now() < deadline, "{} is still open after {EXIT_WAIT:?}", device.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many open descriptors, in all processes, refer to `path`.
fn holders(path: &Path) -> usize {
    let Ok(procs) = std::fs::read_dir("/proc") else { return 0 };
    procs
        .filter_map(|p| std::fs::read_dir(p.ok()?.path().join("fd")).ok())
        .flat_map(|fds| fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok()))
        .filter(|target| target == path)
        .count()
}

impl Image {
    /// Opens the (unmounted) image with the library and checks it: the allocator agrees with
    /// the blocks the trees reach, and every copy of every block matches its check value.
    pub fn assert_consistent(&self) {
        for d in &self.devices {
            wait_released(d);
        }
        let storages: Vec<DynStorage> = self
            .devices
            .iter()
            .map(|p| {
                Arc::new(
                    FileStorage::open(p, OpenMode::Exclusive).unwrap_or_else(|e| panic!("open {}: {e}", p.display())),
                ) as DynStorage
            })
            .collect();
        let fs =
            hammer2::Fs::mount(storages, super::engine::quiet_options()).expect("mount the image with the library");
        super::engine::assert_consistent(&fs);
        super::engine::assert_every_copy_verifies(&fs);
        fs.crash();
    }
}

/// Runs `cmd` to completion, collecting its output, but for at most `limit`: past it the
/// process is killed and the test fails saying what hung.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    use std::io::Read;
    use std::process::Stdio;
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    // Drain both pipes while waiting, so a chatty child never blocks on a full pipe.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for child") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let e = err.join().unwrap_or_default();
            panic!(
                "{what} did not finish within {limit:?}; it was killed. Its stderr:\n{}",
                String::from_utf8_lossy(&e)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
}

/// A tmpfs of the test's own (a device that runs out of space on cue), unmounted when
/// dropped: declare it after what lives on it, so it is dropped first.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes on `path` (created if missing).
    pub fn mount(path: &Path, size: u64) -> Tmpfs {
        std::fs::create_dir_all(path).expect("tmpfs mount point");
        sh(&format!("mount -t tmpfs -o size={size} tmpfs '{}'", path.display()));
        Tmpfs { path: path.to_path_buf() }
    }

    /// Grows (or shrinks) it to `size` bytes, keeping its files.
    pub fn resize(&self, size: u64) {
        sh(&format!("mount -o remount,size={size} '{}'", self.path.display()));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// One round of asynchronous direct writes with a reader alongside: `path` is filled with
/// 0xaa through the page cache; then, while a thread keeps re-reading it buffered, fio
/// writes every 4 KiB block once with 0xbb, in random order, 16 direct writes in flight
/// through `engine` (libaio or io_uring). Returns the offsets of the blocks that a fresh
/// buffered open then reads without 0xbb throughout.
pub fn stale_after_direct_writes(path: &Path, size: usize, engine: &str) -> Vec<usize> {
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    std::fs::write(path, vec![0xaa; size]).unwrap();
    let stop = AtomicBool::new(false);
    // The reader stops however this ends (a failed fio included): a failure, not a hang.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut buf = vec![0u8; 1 << 20];
            while !stop.load(Ordering::Relaxed) {
                let file = std::fs::File::open(path).unwrap();
                for off in (0..size).step_by(buf.len()) {
                    let n = buf.len().min(size - off);
                    file.read_exact_at(&mut buf[..n], off as u64).unwrap();
                }
            }
        });
        // `sh` fails the test if fio fails or runs past its bound; the guard then stops the
        // reader, so the scope ends and the failure is reported (it used to hang here).
        let _stop = Stop(&stop);
        sh(&format!(
            "fio --name=dio --filename={} --size={size} --rw=randwrite --bs=4k --direct=1 --ioengine={engine} \
             --iodepth=16 --buffer_pattern=0xbb --output=/dev/null",
            path.display()
        ));
    });
    let data = std::fs::read(path).unwrap();
    data.chunks(4096).enumerate().filter(|(_, b)| b.iter().any(|x| *x != 0xbb)).map(|(i, _)| i * 4096).collect()
}

/// Bytes free for unprivileged users on the filesystem holding `path`, as df shows them
/// (statvfs f_bavail in f_frsize units).
pub fn available_bytes(path: &Path) -> u64 {
    let p = CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: statvfs fills the zeroed struct we pass; the path outlives the call.
    let s = unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(p.as_ptr(), &mut s), 0, "statvfs {}", path.display());
        s
    };
    s.f_bavail * s.f_frsize
}

pub use super::bins::FSX;

/// Runs one `hammer2-fsx` process (`cmd`) for at most `limit` and returns the summary it
/// printed last; fails the test with its report (the mismatch and the tail of its
/// operation log) and the daemon's log if it found anything or printed no summary.
pub fn fsx_summary(img: &Image, cmd: &mut Command, limit: Duration) -> serde_json::Value {
    let out = output_within(cmd, limit);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\ndaemon log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        img.log()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{cmd:?} printed no summary ({e}): {stdout}"))
}

/// Runs `workers` `hammer2-fsx MODE` workers at once, worker `w` with the arguments
/// `args(w)`, each for at most `limit` (see `fsx_summary`), and returns their summaries.
pub fn fsx_workers(
    img: &Image,
    mode: &str,
    workers: u64,
    limit: Duration,
    args: impl Fn(u64) -> Vec<String> + Sync,
) -> Vec<serde_json::Value> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let args = &args;
                s.spawn(move || fsx_summary(img, Command::new(FSX).arg(mode).args(args(w)), limit))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker thread")).collect()
    })
}
