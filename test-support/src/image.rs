//! Image files, loop devices and the real binaries, for the command-line tests.

use super::bins;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `hammer2` binary of this build.
pub fn hammer2_bin() -> PathBuf {
    bins::HAMMER2.path().to_path_buf()
}

/// `mkfs-hammer2` (installed as `mkfs.hammer2`), of the `mkfs` workspace member.
pub fn mkfs_bin() -> PathBuf {
    bins::MKFS.path().to_path_buf()
}

/// `fsck-hammer2` (installed as `fsck.hammer2`), of the `fsck` workspace member.
pub fn fsck_bin() -> PathBuf {
    bins::FSCK.path().to_path_buf()
}

pub fn mkfs<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(&mkfs_bin(), args)
}

pub fn fsck<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(&fsck_bin(), args)
}

pub fn hammer2<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(&hammer2_bin(), args)
}

fn run<I, S>(bin: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(bin).args(args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "command failed ({}): {}{}", o.status, stderr(o), stdout(o));
    stdout(o)
}

/// Asserts the command failed with exactly one line on stderr, starting with `prefix` and
/// containing `needle`, and returns that line.
#[track_caller]
pub fn one_line_error(o: &Output, prefix: &str, needle: &str) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "expected a failure, got success: {}{err}", stdout(o));
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {err:?}");
    assert!(lines[0].starts_with(prefix), "{:?} does not start with {prefix:?}", lines[0]);
    assert!(lines[0].contains(needle), "{:?} does not mention {needle:?}", lines[0]);
    lines[0].to_string()
}

/// A sparse file of `size` bytes.
pub fn sparse_file(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    let f = std::fs::File::create(&p).unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
    f.set_len(size).expect("set_len");
    p
}

/// Writes `bytes` at `offset` of an existing file or device.
pub fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).expect("open for poke");
    f.write_all_at(bytes, offset).expect("poke");
    f.sync_all().expect("sync");
}

/// What each of the four volume header slots of an image holds: the tid of a valid header,
/// `Slot::Empty` for an unwritten (all-zero) slot, `Slot::Damaged` for anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Tid(u64),
    Empty,
    Damaged,
}

pub fn header_slots(path: &Path) -> Vec<Slot> {
    use hammer2_format::layout::{HEADER_SIZE, HEADER_SLOTS, header_offset};
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (0..HEADER_SLOTS)
        .map(|slot| {
            let mut buf = vec![0u8; HEADER_SIZE];
            f.read_exact_at(&mut buf, header_offset(slot)).expect("read a header slot");
            match hammer2_format::VolumeHeader::decode(&buf) {
                Ok(h) => Slot::Tid(h.tid),
                Err(_) if buf.iter().all(|&b| b == 0) => Slot::Empty,
                Err(_) => Slot::Damaged,
            }
        })
        .collect()
}

/// The newest valid volume header of an image, as a mount would pick it on that device.
pub fn newest_header(path: &Path) -> hammer2_format::VolumeHeader {
    use hammer2_format::layout::{HEADER_SIZE, HEADER_SLOTS, header_offset};
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (0..HEADER_SLOTS)
        .filter_map(|slot| {
            let mut buf = vec![0u8; HEADER_SIZE];
            f.read_exact_at(&mut buf, header_offset(slot)).expect("read a header slot");
            hammer2_format::VolumeHeader::decode(&buf).ok()
        })
        .max_by_key(|h| h.tid)
        .unwrap_or_else(|| panic!("{} holds no valid header", path.display()))
}

/// A hash of every byte of a file or block device.
pub fn content_hash(path: &Path) -> blake3::Hash {
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize()
}

/// A loop device over an image file, detached when dropped. Loop devices are part of what
/// the tests promise, so a machine without them fails the test with the reason.
pub struct LoopDev {
    pub path: PathBuf,
}

impl LoopDev {
    #[track_caller]
    pub fn attach(file: &Path) -> LoopDev {
        let o = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .unwrap_or_else(|e| panic!("loop devices are needed and `losetup` cannot run: {e}"));
        assert!(
            o.status.success(),
            "loop devices are needed and `losetup --find --show {}` failed: {}",
            file.display(),
            stderr(&o)
        );
        let path = PathBuf::from(stdout(&o).trim());
        assert!(path.starts_with("/dev/"), "losetup printed {path:?}");
        LoopDev { path }
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

/// Parses `hammer2 info --json` output.
#[track_caller]
pub fn info_json<I, S>(args: I) -> serde_json::Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut all: Vec<std::ffi::OsString> = vec!["info".into(), "--json".into()];
    all.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
    let out = ok(&hammer2(&all));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("info --json is not JSON ({e}): {out}"))
}

/// Runs `hammer2 SUBCOMMAND --json ARGS...` (scrub, resync, info) and returns its exit status
/// and the report it printed; panics with the output if it printed no JSON (an operational
/// error, a crash).
#[track_caller]
pub fn hammer2_json<I, S>(sub: &str, args: I) -> (i32, serde_json::Value)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut all: Vec<std::ffi::OsString> = vec![sub.into(), "--json".into()];
    all.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
    let o = hammer2(&all);
    let code = o.status.code().unwrap_or_else(|| panic!("hammer2 {all:?} was killed: {}", o.status));
    let out = stdout(&o);
    let j = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("hammer2 {all:?} (exit {code}) printed no JSON ({e}): {out}{}", stderr(&o)));
    (code, j)
}

/// The exit status of a command that was not killed by a signal.
#[track_caller]
pub fn exit_code(o: &Output) -> i32 {
    o.status.code().unwrap_or_else(|| panic!("killed by a signal: {}{}", stdout(o), stderr(o)))
}
