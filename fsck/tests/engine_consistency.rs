//! fsck as an oracle for the engine: random sequences of operations (creates, writes,
//! truncates, links, renames, removals, xattrs, files unlinked while open, commits,
//! crashes and remounts), then fsck must find nothing, whether the filesystem was
//! unmounted or crashed (a crash leaves the last commit, which must be consistent too).
//!
//! `HAMMER2_FSCK_ENGINE_CASES` sets the number of cases (default 24).

use hammer2_test_support::fsck as common;

use common::image::pattern;
use hammer2::format::{FormatOptions, format};
use hammer2::storage::DynStorage;
use hammer2::storage::mem::MemStorage;
use hammer2::{Creds, Fs, Options, RenameFlags, SetAttr};
use hammer2_fsck::{Mode, run_devices};
use proptest::prelude::*;
use std::sync::Arc;

const NAMES: &[&str] =
    &["a", "b", "c", "d", "e", "long-name-that-needs-its-own-block-because-it-is-longer-than-64-bytes-x"];

#[derive(Debug, Clone)]
enum Op {
    Create(u8, u8),
    Mkdir(u8, u8),
    Symlink(u8, u8, u16),
    Write(u8, u32, u32),
    Truncate(u8, u32),
    /// fallocate PUNCH_HOLE | KEEP_SIZE (whole blocks leave the tree).
    Punch(u8, u32, u32),
    Unlink(u8),
    Rmdir(u8),
    Rename(u8, u8, u8),
    Link(u8, u8, u8),
    Xattr(u8, u8, u16),
    RemoveXattr(u8, u8),
    /// Open, unlink, keep open until the next crash or remount.
    OpenUnlink(u8),
    /// Many entries at once (node splits), or removing every n-th of them (merges).
    Many(u8, u16),
    Thin(u8, u8),
    Sync,
    Crash,
    Remount,
}

fn op() -> impl Strategy<Value = Op> {
    let n = || 0..NAMES.len() as u8;
    prop_oneof![
        5 => (any::<u8>(), n()).prop_map(|(d, x)| Op::Create(d, x)),
        3 => (any::<u8>(), n()).prop_map(|(d, x)| Op::Mkdir(d, x)),
        1 => (any::<u8>(), n(), 1..4095u16).prop_map(|(d, x, l)| Op::Symlink(d, x, l)),
        8 => (any::<u8>(), 0..400_000u32, 1..200_000u32).prop_map(|(f, o, l)| Op::Write(f, o, l)),
        2 => (any::<u8>(), 0..500_000u32).prop_map(|(f, s)| Op::Truncate(f, s)),
        2 => (any::<u8>(), 0..400_000u32, 1..200_000u32).prop_map(|(f, o, l)| Op::Punch(f, o, l)),
        3 => any::<u8>().prop_map(Op::Unlink),
        1 => any::<u8>().prop_map(Op::Rmdir),
        2 => (any::<u8>(), any::<u8>(), n()).prop_map(|(s, d, x)| Op::Rename(s, d, x)),
        2 => (any::<u8>(), any::<u8>(), n()).prop_map(|(s, d, x)| Op::Link(s, d, x)),
        2 => (any::<u8>(), 0..3u8, 0..9000u16).prop_map(|(f, x, l)| Op::Xattr(f, x, l)),
        1 => (any::<u8>(), 0..3u8).prop_map(|(f, x)| Op::RemoveXattr(f, x)),
        1 => any::<u8>().prop_map(Op::OpenUnlink),
        1 => (any::<u8>(), 1..1500u16).prop_map(|(d, n)| Op::Many(d, n)),
        1 => (any::<u8>(), 1..5u8).prop_map(|(d, k)| Op::Thin(d, k)),
        3 => Just(Op::Sync),
        1 => Just(Op::Crash),
        1 => Just(Op::Remount),
    ]
}

/// Every (parent, name, inode, is_dir) reachable from the root.
fn tree(fs: &Fs) -> Vec<(u64, Vec<u8>, u64, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![fs.root()];
    while let Some(d) = stack.pop() {
        let mut ents = Vec::new();
        let _ = fs.readdir(d, 0, |e| {
            if e.name != b"." && e.name != b".." {
                ents.push((e.name.clone(), e.ino, e.dtype == hammer2_format::dtype::DIR));
            }
            false
        });
        for (name, ino, dir) in ents {
            if dir {
                stack.push(ino);
            }
            out.push((d, name, ino, dir));
        }
    }
    out
}

fn opts() -> Options {
    Options { background_sync: false, dirty_limit: 1 << 40, ..Options::default() }
}

fn fsck_finds_nothing(devs: &[DynStorage], when: &str) -> Result<(), TestCaseError> {
    let out = run_devices(devs.to_vec(), &hammer2_fsck::Options { mode: Mode::Check, ..Default::default() });
    let msgs: Vec<String> = out.report.findings.iter().map(|f| f.message.clone()).collect();
    prop_assert_eq!(out.status, 0, "fsck after {}: {:?} {:?}", when, msgs, out.report.operational_error);
    Ok(())
}

fn run_ops(ops: &[Op], copies: u8) -> Result<(), TestCaseError> {
    let devs: Vec<DynStorage> =
        (0..copies).map(|i| Arc::new(MemStorage::new(64 << 20, &format!("mem{i}"))) as DynStorage).collect();
    format(devs.clone(), &FormatOptions { copies: Some(copies), ..Default::default() }).expect("format");
    let mut fs = Fs::mount(devs.clone(), opts()).expect("mount");
    let c = Creds::default();
    for (step, op) in ops.iter().enumerate() {
        let t = tree(&fs);
        let dirs: Vec<u64> = std::iter::once(fs.root()).chain(t.iter().filter(|x| x.3).map(|x| x.2)).collect();
        let files: Vec<&(u64, Vec<u8>, u64, bool)> = t.iter().filter(|x| !x.3).collect();
        let dir = |i: u8| dirs[usize::from(i) % dirs.len()];
        let name = |i: u8| NAMES[usize::from(i) % NAMES.len()].as_bytes();
        let file = |i: u8| (!files.is_empty()).then(|| files[usize::from(i) % files.len()]);
        let any = |i: u8| (!t.is_empty()).then(|| &t[usize::from(i) % t.len()]);
        match op {
            Op::Create(d, n) => drop(fs.create(dir(*d), name(*n), 0o644, c)),
            Op::Mkdir(d, n) => drop(fs.mkdir(dir(*d), name(*n), 0o755, c)),
            Op::Symlink(d, n, l) => drop(fs.symlink(dir(*d), name(*n), &vec![b'x'; usize::from(*l)], c)),
            Op::Write(f, o, l) => {
                if let Some(f) = file(*f) {
                    let _ = fs.write(f.2, u64::from(*o), &pattern(step as u64, *l as usize));
                }
            }
            Op::Truncate(f, s) => {
                if let Some(f) = file(*f) {
                    let _ = fs.setattr(f.2, &SetAttr { size: Some(u64::from(*s)), ..Default::default() });
                }
            }
            Op::Punch(f, o, l) => {
                if let Some(f) = file(*f) {
                    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
                    let _ = fs.fallocate(f.2, u64::from(*o), u64::from(*l), mode);
                }
            }
            Op::Unlink(i) => {
                if let Some(f) = file(*i) {
                    let _ = fs.unlink(f.0, &f.1);
                }
            }
            Op::Rmdir(i) => {
                if let Some(x) = any(*i).filter(|x| x.3) {
                    let _ = fs.rmdir(x.0, &x.1);
                }
            }
            Op::Rename(s, d, n) => {
                if let Some(x) = any(*s) {
                    let _ = fs.rename(x.0, &x.1, dir(*d), name(*n), RenameFlags::default());
                }
            }
            Op::Link(s, d, n) => {
                if let Some(f) = file(*s) {
                    let _ = fs.link(f.2, dir(*d), name(*n));
                }
            }
            Op::Xattr(f, x, l) => {
                if let Some(f) = any(*f) {
                    let _ = fs.setxattr(
                        f.2,
                        format!("user.x{x}").as_bytes(),
                        &pattern(7, usize::from(*l)),
                        Default::default(),
                    );
                }
            }
            Op::RemoveXattr(f, x) => {
                if let Some(f) = any(*f) {
                    let _ = fs.removexattr(f.2, format!("user.x{x}").as_bytes());
                }
            }
            Op::OpenUnlink(i) => {
                if let Some(f) = file(*i) {
                    if fs.open(f.2).is_ok() {
                        let _ = fs.unlink(f.0, &f.1);
                    }
                }
            }
            Op::Many(d, n) => {
                let d = dir(*d);
                for i in 0..*n {
                    let _ = fs.create(d, format!("m{i}").as_bytes(), 0o644, c);
                }
            }
            Op::Thin(d, k) => {
                let d = dir(*d);
                for i in (0..1500).step_by(usize::from(*k) + 1) {
                    let _ = fs.unlink(d, format!("m{i}").as_bytes());
                }
            }
            Op::Sync => fs.sync().expect("sync"),
            Op::Crash => {
                fs.crash();
                fsck_finds_nothing(&devs, &format!("a crash at step {step}"))?;
                fs = Fs::mount(devs.clone(), opts()).expect("mount after crash");
            }
            Op::Remount => {
                fs.unmount().expect("unmount");
                fsck_finds_nothing(&devs, &format!("an unmount at step {step}"))?;
                fs = Fs::mount(devs.clone(), opts()).expect("mount");
            }
        }
    }
    fs.unmount().expect("unmount");
    fsck_finds_nothing(&devs, "the final unmount")
}

fn cases() -> u32 {
    std::env::var("HAMMER2_FSCK_ENGINE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn whatever_the_engine_commits_fsck_finds_consistent(ops in prop::collection::vec(op(), 1..120), copies in 1..=2u8) {
        run_ops(&ops, copies)?;
    }
}
