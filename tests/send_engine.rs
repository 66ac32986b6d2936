//! Send and receive in the engine (issue 25, docs/SEND-STREAM.md): a snapshot sent whole
//! and then incrementally to a filesystem with another number of copies and devices, where
//! it becomes a read-only snapshot equal to the sender's (names, inode numbers, hard links,
//! modes, owners, times, xattrs, symlinks, special files, sparse files); chains of 20
//! incrementals after random changes; damaged streams refused before anything changes;
//! the refusals of a send or receive that cannot be right.

use hammer2_test_support as common;

use common::engine::{assert_consistent, mem_devices, quiet_options};
use common::rng::Rng;
use hammer2::format::{FormatOptions, format};
use hammer2::send::{self, stream};
use hammer2::storage::DynStorage;
use hammer2::{Creds, Fs, Options, RenameFlags, SetAttr, TimeSet, Whence, XattrFlags};
use hammer2_format::Timespec;
use std::collections::BTreeMap;

const MIB: u64 = 1 << 20;
const DT_DIR: u8 = 4;
const DT_REG: u8 = 8;
const ROOT: Creds = Creds { uid: 0, gid: 0, umask: 0o022 };

/// `n` in-memory devices formatted version 2 with `copies` copies.
fn fresh(n: usize, copies: u8) -> Vec<DynStorage> {
    let devs = mem_devices(n, 128 * MIB);
    format(devs.clone(), &FormatOptions { copies: Some(copies), format_version: 2, ..Default::default() })
        .expect("format");
    devs
}

fn mount(devs: &[DynStorage]) -> Fs {
    Fs::mount(devs.to_vec(), quiet_options()).expect("mount")
}

/// What a file looks like from outside, everything send must keep.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    size: u64,
    rdev: u64,
    times: [Timespec; 4],
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// File content (blake3), or a symlink's target.
    content: Vec<u8>,
    /// Where the data is: the (start, end) of each data run SEEK_DATA/SEEK_HOLE find.
    extents: Vec<(u64, u64)>,
}

/// Every name under the root and what it leads to. Attributes are taken before any
/// content is read (reading moves atime under relatime).
fn dump(fs: &Fs) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(fs.root(), String::new())];
    let root = fs.getattr(fs.root()).expect("getattr root");
    out.insert("/".to_string(), node(fs, &root));
    while let Some((dir, path)) = stack.pop() {
        let mut ents = Vec::new();
        fs.readdir(dir, 2, |e| {
            ents.push(e.clone());
            false
        })
        .expect("readdir");
        for e in ents {
            let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
            let a = fs.getattr(e.ino).expect("getattr");
            if a.is_dir() {
                stack.push((e.ino, p.clone()));
            }
            out.insert(p, node(fs, &a));
        }
    }
    for n in out.values_mut() {
        match n.mode & 0o170000 {
            0o100000 => {
                n.content = blake3::hash(&fs.read(n.ino, 0, n.size as usize).expect("read")).as_bytes().to_vec();
                let mut off = 0;
                while let Ok(start) = fs.seek(n.ino, off, Whence::Data) {
                    let end = fs.seek(n.ino, start, Whence::Hole).expect("seek hole");
                    n.extents.push((start, end));
                    off = end;
                }
            }
            0o120000 => n.content = fs.readlink(n.ino).expect("readlink"),
            _ => {}
        }
    }
    out
}

fn node(fs: &Fs, a: &hammer2::Attr) -> Node {
    let mut xattrs = BTreeMap::new();
    for name in fs.listxattr(a.ino).expect("listxattr") {
        let v = fs.getxattr(a.ino, &name).expect("getxattr");
        xattrs.insert(name, v);
    }
    Node {
        ino: a.ino,
        mode: a.mode,
        uid: a.uid,
        gid: a.gid,
        nlink: a.nlink,
        size: a.size,
        rdev: a.rdev,
        times: [a.atime, a.mtime, a.ctime, a.btime],
        xattrs,
        content: Vec::new(),
        extents: Vec::new(),
    }
}

fn stream_of(fs: &Fs, snap: &str, from: Option<&str>) -> (Vec<u8>, send::Summary) {
    let mut out = Vec::new();
    let sum = send::send(fs, snap, from, &mut out, &mut |_| {}).expect("send");
    assert_eq!(sum.bytes, out.len() as u64, "the summary counts the bytes written");
    (out, sum)
}

/// What `hammer2 receive` does: the stream is checked whole, then applied.
fn receive(fs: &Fs, s: &[u8], name: Option<&str>) -> Result<String, String> {
    stream::verify(s).map_err(|e| e.to_string())?;
    send::receive(fs, &mut &s[..], name, false, &mut |_| {}).map(|r| r.name).map_err(|e| e.to_string())
}

fn snapshots(fs: &Fs) -> Vec<String> {
    hammer2::snapshot::list(fs).expect("list").into_iter().filter(|p| p.kind == "snapshot").map(|p| p.name).collect()
}

fn at(sec: i64) -> TimeSet {
    TimeSet::At(Timespec { sec, nsec: 123_456_789 })
}

/// A tree with one of everything send must carry.
fn build_rich(fs: &Fs) {
    let r = fs.root();
    let d = fs.mkdir(r, b"dir", 0o750, ROOT).expect("mkdir");
    let sub = fs.mkdir(d.ino, b"sub", 0o700, ROOT).expect("mkdir sub");
    let mut rng = Rng::new(7);
    for (name, len) in [("empty", 0usize), ("small", 100), ("five-k", 5000), ("big", 300_000)] {
        let f = fs.create(d.ino, name.as_bytes(), 0o644, ROOT).expect("create");
        fs.write(f.ino, 0, &rng.bytes(len)).expect("write");
    }
    // Sparse: data at 0 and at 10 MiB, a hole between; and a hole punched in a file.
    let sparse = fs.create(r, b"sparse", 0o600, ROOT).expect("create sparse");
    fs.write(sparse.ino, 0, &rng.bytes(70_000)).expect("write");
    fs.write(sparse.ino, 10 * MIB, &rng.bytes(5000)).expect("write far");
    let punched = fs.create(sub.ino, b"punched", 0o640, ROOT).expect("create punched");
    fs.write(punched.ino, 0, &rng.bytes(1_000_000)).expect("write");
    fs.sync().expect("sync");
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    fs.fallocate(punched.ino, 262_144, 262_144, punch).expect("punch");
    // Links, special files, owners, modes, times, xattrs.
    let big = fs.lookup(d.ino, b"big").expect("lookup");
    fs.link(big.ino, sub.ino, b"big-link").expect("link");
    fs.symlink(d.ino, b"to-big", b"../dir/big", ROOT).expect("symlink");
    fs.mknod(r, b"fifo", 0o010644, 0, ROOT).expect("fifo");
    fs.mknod(r, b"chr", 0o020600, (4 << 8) | 5, ROOT).expect("char device");
    fs.setattr(d.ino, &SetAttr { uid: Some(1000), gid: Some(100), ..Default::default() }).expect("chown");
    let small = fs.lookup(d.ino, b"small").expect("lookup");
    fs.setattr(small.ino, &SetAttr { mode: Some(0o4755), uid: Some(1234), gid: Some(5678), ..Default::default() })
        .expect("chmod");
    fs.setxattr(small.ino, b"user.colour", b"blue", XattrFlags::default()).expect("setxattr");
    fs.setxattr(d.ino, b"user.big", &rng.bytes(9000), XattrFlags::default()).expect("setxattr big");
    fs.setxattr(sparse.ino, b"trusted.t", b"", XattrFlags::default()).expect("setxattr empty");
    for (i, name) in ["empty", "small", "five-k", "big"].iter().enumerate() {
        let a = fs.lookup(d.ino, name.as_bytes()).expect("lookup");
        let when =
            SetAttr { atime: Some(at(1_600_000_000 + i as i64)), mtime: Some(at(1_500_000_000)), ..Default::default() };
        fs.setattr(a.ino, &when).expect("utimes");
    }
    fs.sync().expect("sync");
}

#[test]
fn full_and_incremental_streams_make_equal_snapshots_on_a_filesystem_with_other_copies() {
    let a_devs = fresh(2, 2);
    let b_devs = fresh(3, 1);
    let a = mount(&a_devs);
    build_rich(&a);
    hammer2::snapshot::snapshot(&a, Some("s1")).expect("snapshot");
    let want1 = dump(&a);
    let (full, sum) = stream_of(&a, "s1", None);
    assert!(sum.records > 20 && sum.inodes == 12, "{sum:?}");
    assert!(sum.data_bytes >= 1_000_000, "{sum:?}");

    let b = mount(&b_devs);
    assert_eq!(receive(&b, &full, None).expect("receive"), "s1");
    assert_eq!(dump(&b), want1, "the receiving PFS equals the sender's snapshot");
    assert_eq!(snapshots(&b), ["s1"]);

    // An incremental: a change here and there.
    let d = a.lookup(a.root(), b"dir").expect("dir").ino;
    let big = a.lookup(d, b"big").expect("big").ino;
    a.write(big, 4096, b"changed in the middle").expect("overwrite");
    a.unlink(d, b"five-k").expect("unlink");
    a.rename(d, b"small", a.root(), b"small-moved", RenameFlags::default()).expect("rename");
    a.removexattr(d, b"user.big").expect("removexattr");
    let sparse = a.lookup(a.root(), b"sparse").expect("sparse").ino;
    a.setattr(sparse, &SetAttr { size: Some(6000), ..Default::default() }).expect("truncate");
    let n = a.create(d, b"new", 0o600, ROOT).expect("create");
    a.write(n.ino, 0, b"new file").expect("write");
    a.sync().expect("sync");
    hammer2::snapshot::snapshot(&a, Some("s2")).expect("snapshot s2");
    let want2 = dump(&a);
    let (inc, isum) = stream_of(&a, "s2", Some("s1"));
    assert!(isum.bytes * 10 < sum.bytes, "the incremental stream ({isum:?}) is a fraction of the full one ({sum:?})");
    assert_eq!(receive(&b, &inc, None).expect("receive incremental"), "s2");
    assert_eq!(strip_atime(dump(&b)), strip_atime(want2.clone()));
    assert_eq!(snapshots(&b), ["s1", "s2"]);
    assert_consistent(&b);
    b.unmount().expect("unmount b");

    // The received snapshots mount read-only and hold what the sender's held.
    for (name, want) in [("s1", &want1), ("s2", &want2)] {
        let ro = Fs::mount(b_devs.clone(), Options { read_only: true, pfs: name.into(), ..quiet_options() })
            .expect("mount received snapshot");
        let got = dump(&ro);
        ro.unmount().expect("unmount");
        // atime of the root differs only by what reading it here did: compare the rest.
        assert_eq!(strip_atime(got), strip_atime(want.clone()), "snapshot {name}");
    }
    a.unmount().expect("unmount a");
}

/// Asserts two dumps equal, naming only the entries that differ.
#[track_caller]
fn assert_same(got: &BTreeMap<String, Node>, want: &BTreeMap<String, Node>, what: &str) {
    let keys: std::collections::BTreeSet<&String> = got.keys().chain(want.keys()).collect();
    let diff: Vec<String> = keys
        .into_iter()
        .filter(|k| got.get(*k) != want.get(*k))
        .map(|k| format!("{k}:\n  got  {:?}\n  want {:?}", got.get(k), want.get(k)))
        .collect();
    assert!(diff.is_empty(), "{what}: {} entries differ:\n{}", diff.len(), diff.join("\n"));
}

fn strip_atime(mut m: BTreeMap<String, Node>) -> BTreeMap<String, Node> {
    for n in m.values_mut() {
        n.times[0] = Timespec::ZERO;
    }
    m
}

/// The name `ino` has in directory `dir`.
fn names_of(fs: &Fs, dir: u64, ino: u64) -> Vec<u8> {
    let mut name = Vec::new();
    fs.readdir(dir, 2, |e| {
        if e.ino == ino {
            name = e.name.clone();
        }
        false
    })
    .expect("readdir");
    name
}

/// Random changes: creates, overwrites, truncates, renames, links, unlinks, xattrs.
fn random_changes(fs: &Fs, rng: &mut Rng, round: u64) {
    let r = fs.root();
    for i in 0..12 {
        // The root and its subdirectories, as they are now (an earlier step may remove one).
        let mut dirs = vec![r];
        fs.readdir(r, 2, |e| {
            if e.dtype == DT_DIR {
                dirs.push(e.ino);
            }
            false
        })
        .expect("readdir");
        let dir = *rng.pick(&dirs);
        let mut names = Vec::new();
        fs.readdir(dir, 2, |e| {
            names.push((e.name.clone(), e.ino, e.dtype));
            false
        })
        .expect("readdir");
        let files: Vec<_> = names.iter().filter(|n| n.2 == DT_REG).collect();
        match rng.below(12) {
            0 | 1 => {
                let f = fs.create(dir, format!("r{round}-{i}").as_bytes(), 0o644, ROOT).expect("create");
                let len = rng.below(200_000) as usize;
                fs.write(f.ino, rng.below(100_000), &rng.bytes(len)).expect("write");
            }
            2 if !files.is_empty() => {
                let f = rng.pick(&files);
                let len = rng.range(1, 70_000) as usize;
                fs.write(f.1, rng.below(300_000), &rng.bytes(len)).expect("overwrite");
            }
            3 if !files.is_empty() => {
                let f = rng.pick(&files);
                let size = rng.below(400_000);
                fs.setattr(f.1, &SetAttr { size: Some(size), ..Default::default() }).expect("truncate");
            }
            4 if !files.is_empty() => {
                let f = rng.pick(&files);
                let to = *rng.pick(&dirs);
                let _ = fs.rename(dir, &f.0, to, format!("m{round}-{i}").as_bytes(), RenameFlags::default());
            }
            5 if !files.is_empty() => {
                let f = rng.pick(&files);
                fs.unlink(dir, &f.0).expect("unlink");
            }
            6 if !files.is_empty() => {
                let f = rng.pick(&files);
                let to = *rng.pick(&dirs);
                let _ = fs.link(f.1, to, format!("l{round}-{i}").as_bytes());
            }
            7 if !files.is_empty() => {
                let f = rng.pick(&files);
                if rng.chance(0.5) {
                    let n = rng.below(300) as usize;
                    let v = rng.bytes(n);
                    fs.setxattr(f.1, b"user.x", &v, XattrFlags::default()).expect("setxattr");
                } else {
                    let _ = fs.removexattr(f.1, b"user.x");
                }
            }
            8 => {
                let _ = fs.mkdir(dir, format!("d{round}-{i}").as_bytes(), 0o755, ROOT);
            }
            9 if dir != r => {
                // A directory moves (with what it holds), or goes when it is empty.
                let name = names_of(fs, r, dir);
                if rng.chance(0.5) {
                    let _ = fs.rmdir(r, &name);
                } else {
                    let _ = fs.rename(r, &name, r, format!("moved{round}-{i}").as_bytes(), RenameFlags::default());
                }
            }
            10 => {
                let target = format!("target-{}", rng.below(1000));
                let _ = fs.symlink(dir, format!("s{round}-{i}").as_bytes(), target.as_bytes(), ROOT);
            }
            11 if !files.is_empty() => {
                let f = rng.pick(&files);
                let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
                fs.fallocate(f.1, rng.below(4) * 65536, 65536, punch).expect("punch");
            }
            _ => {}
        }
    }
    fs.sync().expect("sync");
}

#[test]
fn a_chain_of_incrementals_follows_random_changes() {
    // HAMMER2_SEND_CHAINS=N runs N seeded chains (default 3).
    // HAMMER2_SEND_SEED=S runs the one chain of seed S.
    if let Ok(seed) = std::env::var("HAMMER2_SEND_SEED") {
        return chain(seed.parse().expect("HAMMER2_SEND_SEED: a number"));
    }
    for i in 0..common::rng::env_u64("HAMMER2_SEND_CHAINS", 3) {
        chain(2025 + i * 7919);
    }
}

/// Incrementals in each chain (the issue asks for chains of 20).
const CHAIN_ROUNDS: u64 = 20;

fn chain(seed: u64) {
    let a = mount(&fresh(1, 1));
    let b_devs = fresh(2, 2);
    let b = mount(&b_devs);
    let mut rng = Rng::new(seed);
    build_rich(&a);
    hammer2::snapshot::snapshot(&a, Some("c0")).expect("snapshot");
    receive(&b, &stream_of(&a, "c0", None).0, None).expect("receive full");
    for round in 1..=CHAIN_ROUNDS {
        random_changes(&a, &mut rng, round);
        let name = format!("c{round}");
        hammer2::snapshot::snapshot(&a, Some(&name)).expect("snapshot");
        let want = dump(&a);
        let (s, sum) = stream_of(&a, &name, Some(&format!("c{}", round - 1)));
        receive(&b, &s, None).unwrap_or_else(|e| panic!("seed {seed} round {round}: {e}"));
        assert_same(&strip_atime(dump(&b)), &strip_atime(want), &format!("seed {seed} round {round} ({sum:?})"));
    }
    assert_eq!(snapshots(&b), (0..=CHAIN_ROUNDS).map(|i| format!("c{i}")).collect::<Vec<_>>());
    assert_consistent(&b);
}

/// Trees several levels deep (a directory of 3,000 entries, a file of 640 blocks, an inode
/// index of 3,000 inodes): a few changes send a few records, and the result is equal (SR2).
#[test]
fn a_few_changes_in_deep_trees_send_a_few_records() {
    let a = mount(&fresh(1, 1));
    let b = mount(&fresh(1, 1));
    let mut rng = Rng::new(5);
    let d = a.mkdir(a.root(), b"many", 0o755, ROOT).expect("mkdir");
    for i in 0..3000 {
        let f = a.create(d.ino, format!("file-{i}").as_bytes(), 0o644, ROOT).expect("create");
        a.write(f.ino, 0, format!("content {i}").as_bytes()).expect("write");
    }
    let big = a.create(a.root(), b"big", 0o644, ROOT).expect("create");
    a.write(big.ino, 0, &rng.bytes(40 * MIB as usize)).expect("write");
    a.sync().expect("sync");
    hammer2::snapshot::snapshot(&a, Some("s0")).expect("snapshot");
    let (full, fsum) = stream_of(&a, "s0", None);
    receive(&b, &full, None).expect("receive");
    for k in [3u64, 300, 600] {
        a.write(big.ino, k * 65536 + 100, b"changed").expect("overwrite");
    }
    for i in (0..3000).step_by(300) {
        a.unlink(d.ino, format!("file-{i}").as_bytes()).expect("unlink");
        a.create(d.ino, format!("new-{i}").as_bytes(), 0o600, ROOT).expect("create");
    }
    a.rename(d.ino, b"file-1", a.root(), b"moved", RenameFlags::default()).expect("rename");
    a.sync().expect("sync");
    hammer2::snapshot::snapshot(&a, Some("s1")).expect("snapshot");
    let want = strip_atime(dump(&a));
    let (inc, sum) = stream_of(&a, "s1", Some("s0"));
    // The root, the directory, the big file, 10 new files, 10 deletes and the moved file.
    assert!(sum.inodes <= 15, "{sum:?}");
    assert!(sum.data_bytes <= 3 * 65536 + 200, "three blocks of data and the new files: {sum:?}");
    assert!(sum.records < 100, "{sum:?}");
    assert!(inc.len() * 100 < full.len(), "{} of {} bytes ({fsum:?})", inc.len(), full.len());
    receive(&b, &inc, None).expect("receive incremental");
    assert_eq!(strip_atime(dump(&b)), want);
    assert_consistent(&b);
}

#[test]
fn a_damaged_stream_is_refused_before_anything_changes() {
    let a = mount(&fresh(1, 1));
    build_rich(&a);
    hammer2::snapshot::snapshot(&a, Some("s")).expect("snapshot");
    let (good, _) = stream_of(&a, "s", None);
    let b_devs = fresh(1, 1);
    let b = mount(&b_devs);
    let before = dump(&b);
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    let mut extra = good.clone();
    extra.push(0);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "not a hammer2 send stream"),
        ("not a stream", b"hello, world, this is not a stream at all".to_vec(), "not a hammer2 send stream"),
        ("cut in half", good[..good.len() / 2].to_vec(), "truncated"),
        ("last byte missing", good[..good.len() - 1].to_vec(), "truncated"),
        ("end record missing", good[..good.len() - 45].to_vec(), "truncated"),
        ("a flipped bit", flipped, "corrupt"),
        ("bytes after the end", extra, "corrupt"),
    ];
    for (what, s, needle) in cases {
        let e = receive(&b, &s, None).expect_err(what);
        assert!(e.contains(needle), "{what}: {e}");
        assert!(!e.contains('\n'), "{what}: one line: {e}");
        assert_eq!(strip_atime(dump(&b)), strip_atime(before.clone()), "{what}: nothing changed");
        assert!(snapshots(&b).is_empty(), "{what}: no snapshot");
    }
    // The good stream goes in.
    receive(&b, &good, None).expect("receive");
    assert_eq!(snapshots(&b), ["s"]);
    // Even applied without the check first, a damaged stream never becomes a snapshot.
    let c = mount(&fresh(1, 1));
    let mut flipped = good.clone();
    flipped[good.len() - 100] ^= 1;
    let e = send::receive(&c, &mut &flipped[..], None, false, &mut |_| {}).expect_err("refused halfway");
    assert!(e.to_string().contains("corrupt"), "{e}");
    assert!(snapshots(&c).is_empty());
    assert_consistent(&c);
}

/// A receive that stopped halfway (here: a stream cut short, applied without the check)
/// leaves no snapshot; the same incremental stream received again completes it, since
/// every record sets a value rather than changing one (SR6).
#[test]
fn an_incremental_receive_that_stopped_halfway_completes_when_run_again() {
    let a = mount(&fresh(1, 1));
    let b = mount(&fresh(1, 1));
    let mut rng = Rng::new(99);
    build_rich(&a);
    hammer2::snapshot::snapshot(&a, Some("s0")).expect("snapshot");
    receive(&b, &stream_of(&a, "s0", None).0, None).expect("receive full");
    random_changes(&a, &mut rng, 1);
    random_changes(&a, &mut rng, 2);
    hammer2::snapshot::snapshot(&a, Some("s1")).expect("snapshot");
    let want = strip_atime(dump(&a));
    let (s, _) = stream_of(&a, "s1", Some("s0"));
    for cut in [s.len() / 3, 2 * s.len() / 3] {
        let e = send::receive(&b, &mut &s[..cut], None, false, &mut |_| {}).expect_err("cut short");
        assert!(e.to_string().contains("truncated"), "{e}");
        assert_eq!(snapshots(&b), ["s0"], "no snapshot of a half-applied stream");
        b.sync().expect("commit what was applied");
    }
    receive(&b, &s, None).expect("the same stream again");
    assert_eq!(strip_atime(dump(&b)), want);
    assert_eq!(snapshots(&b), ["s0", "s1"]);
    assert_consistent(&b);
}

/// A file unlinked while open when the snapshot was taken has no name: it is not sent,
/// and an incremental stream deletes one the receiver had.
#[test]
fn a_file_unlinked_while_open_is_not_received() {
    let a = mount(&fresh(1, 1));
    let b = mount(&fresh(1, 1));
    let f = a.create(a.root(), b"open", 0o644, ROOT).expect("create");
    a.write(f.ino, 0, b"still open").expect("write");
    a.sync().expect("sync");
    hammer2::snapshot::snapshot(&a, Some("s0")).expect("snapshot");
    receive(&b, &stream_of(&a, "s0", None).0, None).expect("receive");
    assert!(b.lookup_inode(f.ino).is_ok());
    a.open(f.ino).expect("open");
    a.unlink(a.root(), b"open").expect("unlink");
    a.sync().expect("sync");
    hammer2::snapshot::snapshot(&a, Some("s1")).expect("snapshot");
    receive(&b, &stream_of(&a, "s1", Some("s0")).0, None).expect("receive");
    b.sync().expect("sync");
    assert!(b.lookup_inode(f.ino).is_err(), "the orphan is gone on the receiver");
    let c = mount(&fresh(1, 1));
    let (full, sum) = stream_of(&a, "s1", None);
    assert_eq!(sum.inodes, 1, "only the root: {sum:?}");
    receive(&c, &full, None).expect("receive");
    assert!(c.lookup_inode(f.ino).is_err());
    a.release(f.ino).expect("release");
}

/// A small file's content lives in its inode; when the file grows with a hole where that
/// content was, the receiver must drop it too (found by the seeded chains, seed 999819).
#[test]
fn embedded_content_that_became_a_hole_is_a_hole_on_the_receiver() {
    let a = mount(&fresh(1, 1));
    let b = mount(&fresh(1, 1));
    let f = a.create(a.root(), b"tiny", 0o644, ROOT).expect("create");
    a.write(f.ino, 0, b"hello").expect("write");
    a.sync().expect("sync");
    hammer2::snapshot::snapshot(&a, Some("s0")).expect("snapshot");
    receive(&b, &stream_of(&a, "s0", None).0, None).expect("receive");
    a.setattr(f.ino, &SetAttr { size: Some(0), ..Default::default() }).expect("truncate");
    a.write(f.ino, 131_072, b"far away").expect("write far");
    a.sync().expect("sync");
    hammer2::snapshot::snapshot(&a, Some("s1")).expect("snapshot");
    let want = strip_atime(dump(&a));
    assert_eq!(want["/tiny"].extents, [(131_072, 131_080)]);
    receive(&b, &stream_of(&a, "s1", Some("s0")).0, None).expect("receive");
    assert_same(&strip_atime(dump(&b)), &want, "after the incremental");
}

#[test]
fn what_cannot_be_right_is_refused() {
    let a = mount(&fresh(1, 1));
    build_rich(&a);
    hammer2::snapshot::snapshot(&a, Some("s1")).expect("snapshot");
    a.create(a.root(), b"later", 0o644, ROOT).expect("create");
    a.sync().expect("sync");
    hammer2::snapshot::snapshot(&a, Some("s2")).expect("snapshot");
    let send_err = |snap: &str, from: Option<&str>| {
        send::send(&a, snap, from, &mut Vec::new(), &mut |_| {}).expect_err("refused").to_string()
    };
    assert!(send_err("nope", None).contains("no snapshot named \"nope\""));
    assert!(send_err("ROOT", None).contains("writable PFS"));
    assert!(send_err("s1", Some("s2")).contains("not an older snapshot"));
    let (full2, _) = stream_of(&a, "s2", None);
    let (inc, _) = stream_of(&a, "s2", Some("s1"));

    let b = mount(&fresh(1, 1));
    // An incremental stream whose base the receiver does not hold.
    let e = receive(&b, &inc, None).expect_err("no base");
    assert!(e.contains("does not hold the stream's base"), "{e}");
    // A full stream into a PFS that holds files.
    b.create(b.root(), b"mine", 0o644, ROOT).expect("create");
    let e = receive(&b, &full2, None).expect_err("not empty");
    assert!(e.contains("is not new"), "{e}");
    // Nor into one that held files once: their inode numbers may be the sender's.
    b.unlink(b.root(), b"mine").expect("unlink");
    let e = receive(&b, &full2, None).expect_err("used");
    assert!(e.contains("is not new"), "{e}");
    let b = mount(&fresh(1, 1));
    receive(&b, &full2, Some("copy")).expect("receive");
    // The name is taken now.
    let e = receive(&b, &inc, Some("copy")).expect_err("name taken");
    assert!(e.contains("exists"), "{e}");
    assert!(snapshots(&b) == ["copy"]);

    // A version-1 filesystem has no snapshots to send nor PFS to receive into.
    let v1 = mem_devices(1, 64 * MIB);
    format(v1.clone(), &FormatOptions { format_version: 1, ..Default::default() }).expect("format v1");
    let v1 = mount(&v1);
    let e = send::send(&v1, "s", None, &mut Vec::new(), &mut |_| {}).expect_err("v1").to_string();
    assert!(e.contains("format version 1"), "{e}");
    let e = receive(&v1, &full2, None).expect_err("v1");
    assert!(e.contains("format version 1"), "{e}");
}

/// Known answer: the framing of docs/SEND-STREAM.md, byte for byte (a change here is a new
/// stream version).
#[test]
fn the_stream_framing_is_pinned() {
    let f = stream::Record::Delete { inum: 0x0102_0304_0506_0708 }.frame();
    let hex: String = f.iter().map(|b| format!("{b:02x}")).collect();
    // len 8, kind 7 (delete), the inode number little-endian, crc32c of the 13 bytes before.
    assert_eq!(hex, "08000000070807060504030201b16e9752");
    let h = stream::Header {
        stream_id: [1; 16],
        pfs_uuid: [2; 16],
        snapshot_uuid: [3; 16],
        snapshot_tid: 4,
        snapshot_name: "s".into(),
        base_tid: 5,
        base_uuid: [6; 16],
        next_inum: 7,
        resume_from: 0,
        resume_after: stream::RecordId::default(),
    };
    let f = stream::Record::Header(h.clone()).frame();
    assert_eq!(&f[..5], &[128, 0, 0, 0, 1], "len 128, kind 1");
    assert_eq!(&f[5..15], b"H2SEND\0\0\x02\x00", "magic, version 2");
    // A checkpoint: kind 9, records before it, the blake3 of their frames, the position.
    let c = stream::Record::Checkpoint { records: 1, hash: [0xab; 32], position: 2 }.frame();
    assert_eq!(&c[..5], &[48, 0, 0, 0, 9]);
    assert_eq!(&c[5..13], &1u64.to_le_bytes());
    assert_eq!(&c[45..53], &2u64.to_le_bytes());
    // A version-1 stream is refused with one line naming the versions.
    let mut v1 = f.clone();
    v1[13] = 1;
    let crc = crc32c::crc32c(&v1[..v1.len() - 4]).to_le_bytes();
    let n = v1.len();
    v1[n - 4..].copy_from_slice(&crc);
    let e = stream::verify(&v1[..]).expect_err("version 1").to_string();
    assert_eq!(e, "send stream version 1 is not supported (this build reads version 2)");
    let (got, records) = stream::verify(
        &[
            f,
            stream::Record::End {
                records: 1,
                hash: *blake3::hash(&stream::Record::Header(h.clone()).frame()).as_bytes(),
                position: 0,
                tree: [0; 32],
            }
            .frame(),
        ]
        .concat()[..],
    )
    .expect("a stream of a header and an end");
    assert_eq!((got, records), (h, 2), "two records, the end one included");
}

/// A writer that, at its first write, says so and then waits until it is let go: a send
/// held in the middle.
struct Stalled {
    started: std::sync::mpsc::Sender<()>,
    go: std::sync::mpsc::Receiver<()>,
    waited: bool,
    out: Vec<u8>,
}

impl std::io::Write for Stalled {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if !self.waited {
            self.waited = true;
            let _ = self.started.send(());
            let _ = self.go.recv();
        }
        self.out.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// SR7: a snapshot (and its base) cannot be deleted while a send reads it; once the send
/// ends they can, and the stream it wrote is whole.
#[test]
fn deleting_a_snapshot_being_sent_is_refused_until_the_send_ends() {
    let a = mount(&fresh(1, 1));
    build_rich(&a);
    hammer2::snapshot::snapshot(&a, Some("s0")).expect("snapshot");
    a.create(a.root(), b"later", 0o644, ROOT).expect("create");
    a.sync().expect("sync");
    hammer2::snapshot::snapshot(&a, Some("s1")).expect("snapshot");
    let (started_tx, started) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel();
    let mut w = Stalled { started: started_tx, go: go_rx, waited: false, out: Vec::new() };
    std::thread::scope(|s| {
        let sending = s.spawn(|| {
            send::send(&a, "s1", Some("s0"), &mut w, &mut |_| {}).expect("send");
        });
        started.recv().expect("the send started");
        for name in ["s1", "s0"] {
            let e = hammer2::snapshot::delete(&a, name).expect_err("refused while sent").to_string();
            assert!(e.contains("is being sent"), "{name}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
            assert_eq!(hammer2::Error::Busy(String::new()).errno(), libc::EBUSY);
        }
        assert_eq!(snapshots(&a), ["s0", "s1"], "both still there");
        go.send(()).expect("let the send go");
        sending.join().expect("send thread");
    });
    let (header, records) = stream::verify(&w.out[..]).expect("the stream written is whole");
    assert_eq!(header.snapshot_name, "s1");
    assert!(records > 3);
    hammer2::snapshot::delete(&a, "s1").expect("deleted once the send ended");
    hammer2::snapshot::delete(&a, "s0").expect("deleted once the send ended");
    assert!(snapshots(&a).is_empty());
    assert_consistent(&a);
}

/// A stream with a checkpoint every `every` bytes (the default is 16 MiB: tests want many).
fn stream_every(fs: &Fs, snap: &str, from: Option<&str>, every: u64, resume: Option<send::ResumeToken>) -> Vec<u8> {
    let mut out = Vec::new();
    let opts = send::SendOptions { checkpoint_bytes: every, resume };
    send::send_with(fs, snap, from, &opts, &mut out, &mut |_| {}).expect("send");
    out
}

/// Receives `s` cut at `cut` bytes, then resumes from the token the PFS keeps until the
/// whole stream is in (cutting each resumed stream again at `again` of its length while
/// it is longer than that); returns how many resumes it took.
fn receive_cut_and_resume(a: &Fs, b: &Fs, snap: &str, from: Option<&str>, s: &[u8], cut: usize, every: u64) -> u32 {
    let e = send::receive(b, &mut &s[..cut], None, false, &mut |_| {}).expect_err("cut");
    let e = e.to_string();
    assert!(e.contains("truncated") || e.contains("not a hammer2 send stream"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
    assert!(!snapshots(b).contains(&snap.to_string()), "no snapshot of a cut stream");
    let mut resumes = 0;
    loop {
        let token = send::resume_token(b);
        let Some(token) = token else {
            // Cut inside the header: nothing happened; the stream whole goes in.
            receive(b, s, None).expect("whole");
            return resumes;
        };
        assert_hidden(b);
        let listed = hammer2::snapshot::list(b).expect("list");
        let mine = listed.iter().find(|p| p.mounted).expect("the mounted PFS is listed");
        assert_eq!(mine.resume_token.as_deref(), Some(token.to_text().as_str()), "pfs list shows the token");
        let rest = stream_every(a, snap, from, every, Some(token));
        assert!(rest.len() <= s.len(), "a resumed stream is never longer than the whole");
        resumes += 1;
        if resumes < 3 && rest.len() > 4096 {
            // Cut the resumed stream too, half way.
            let r = send::receive(b, &mut &rest[..rest.len() / 2], None, true, &mut |_| {});
            assert!(r.is_err(), "cut again");
            continue;
        }
        send::receive(b, &mut &rest[..], None, true, &mut |_| {}).expect("resumed receive");
        return resumes;
    }
}

/// SR8, SR9: a stream cut at a random byte offset leaves its verified chunks applied and a
/// token; the stream sent again from the token completes it, full and incremental, and the
/// received snapshot equals the sender's. Several seeds (HAMMER2_SEND_CUTS, default 4).
#[test]
fn a_stream_cut_anywhere_resumes_from_its_token_to_an_equal_snapshot() {
    for i in 0..common::rng::env_u64("HAMMER2_SEND_CUTS", 4) {
        let seed = 31 + i * 977;
        let mut rng = Rng::new(seed);
        let a = mount(&fresh(1, 1));
        let b = mount(&fresh(2, 2));
        build_rich(&a);
        random_changes(&a, &mut rng, 0);
        hammer2::snapshot::snapshot(&a, Some("s0")).expect("snapshot");
        let want0 = strip_atime(dump(&a));
        let every = 64 * 1024;
        let full = stream_every(&a, "s0", None, every, None);
        let cut = rng.below(full.len() as u64) as usize;
        let resumes = receive_cut_and_resume(&a, &b, "s0", None, &full, cut, every);
        assert_same(&strip_atime(dump(&b)), &want0, &format!("seed {seed}: full cut at {cut} ({resumes} resumes)"));
        assert_eq!(snapshots(&b), ["s0"]);
        assert!(send::resume_token(&b).is_none(), "no token once the receive is complete");

        random_changes(&a, &mut rng, 1);
        random_changes(&a, &mut rng, 2);
        hammer2::snapshot::snapshot(&a, Some("s1")).expect("snapshot");
        let want1 = strip_atime(dump(&a));
        let inc = stream_every(&a, "s1", Some("s0"), 4096, None);
        let cut = rng.below(inc.len() as u64) as usize;
        let resumes = receive_cut_and_resume(&a, &b, "s1", Some("s0"), &inc, cut, 4096);
        assert_same(&strip_atime(dump(&b)), &want1, &format!("seed {seed}: incremental cut at {cut} ({resumes})"));
        assert_eq!(snapshots(&b), ["s0", "s1"]);
        assert_consistent(&b);
        // The received snapshot mounts and equals the sender's.
        let got = hammer2::snapshot::list(&b).expect("list");
        assert!(got.iter().all(|p| p.resume_token.is_none()), "no snapshot inherits a token");
    }
}

/// SR9: a token is only good for its own stream and position: another snapshot, a mistyped
/// token, a token that does not join, a resumed stream without --resume or into a PFS with
/// no receive in progress, and a whole stream of another pair while one is in progress are
/// refused, each with one line; the PFS is unchanged by the refusals.
#[test]
fn a_resume_token_for_another_stream_or_position_is_refused() {
    let a = mount(&fresh(1, 1));
    build_rich(&a);
    hammer2::snapshot::snapshot(&a, Some("s0")).expect("snapshot");
    a.create(a.root(), b"later", 0o644, ROOT).expect("create");
    a.sync().expect("sync");
    hammer2::snapshot::snapshot(&a, Some("s1")).expect("snapshot");
    let b = mount(&fresh(1, 1));
    let full = stream_every(&a, "s0", None, 8192, None);
    let e = send::receive(&b, &mut &full[..full.len() / 2], None, false, &mut |_| {}).expect_err("cut");
    assert!(matches!(e, send::SendError::Interrupted { .. }), "{e}");
    assert!(e.to_string().contains("--resume-token"), "{e}");
    let token = send::resume_token(&b).expect("a token");
    assert!(token.position > 0, "{token:?}");
    assert!(e.to_string().contains(&token.to_text()), "the error names the recorded token: {e}");
    // The same stream whole again, cut before its first checkpoint: the PFS still holds
    // the first part's token, and that is the one the error names.
    let e = send::receive(&b, &mut &full[..3000], None, false, &mut |_| {}).expect_err("cut early");
    assert!(e.to_string().contains(&token.to_text()), "{e}");
    assert_eq!(send::resume_token(&b), Some(token));
    let sent_err = |snap: &str, from: Option<&str>, t: send::ResumeToken| {
        let opts = send::SendOptions { checkpoint_bytes: 8192, resume: Some(t) };
        let mut out = Vec::new();
        let e = send::send_with(&a, snap, from, &opts, &mut out, &mut |_| {}).expect_err("refused").to_string();
        assert!(out.is_empty(), "nothing written when refused");
        assert!(!e.contains('\n'), "{e}");
        e
    };
    assert!(sent_err("s1", None, token).contains("another stream"));
    assert!(sent_err("s1", Some("s0"), token).contains("another stream"));
    let mut wrong = token;
    wrong.after.key ^= 1;
    assert!(sent_err("s0", None, wrong).contains("does not join"));
    let mut far = token;
    far.position = u64::MAX / 2;
    assert!(sent_err("s0", None, far).contains("does not join"));
    let text = token.to_text();
    let mut typo = text.clone().into_bytes();
    typo[20] = if typo[20] == b'0' { b'1' } else { b'0' };
    let e = send::ResumeToken::parse(std::str::from_utf8(&typo).unwrap()).expect_err("typo").to_string();
    assert!(e.contains("check value"), "{e}");
    assert_eq!(send::ResumeToken::parse(&text).expect("parses"), token);

    // (The half-applied PFS has entries whose inodes come later in the stream: compare
    // what the refusals could change, the token and the snapshots, not a walk of it.)
    let before = (send::resume_token(&b), snapshots(&b));
    // A resumed stream needs --resume.
    let rest = stream_every(&a, "s0", None, 8192, Some(token));
    let e = send::receive(&b, &mut &rest[..], None, false, &mut |_| {}).expect_err("no --resume").to_string();
    assert!(e.contains("receive it with --resume"), "{e}");
    // A whole stream of another snapshot while this one is in progress.
    let other = stream_every(&a, "s1", None, 8192, None);
    let e = send::receive(&b, &mut &other[..], None, false, &mut |_| {}).expect_err("other").to_string();
    assert!(e.contains("holds part of another stream") && e.contains(&text), "{e}");
    // A resumed stream from an older position (the PFS moved on since).
    let c = mount(&fresh(1, 1));
    let _ = send::receive(&c, &mut &full[..full.len() / 4], None, false, &mut |_| {}).expect_err("cut");
    let older = send::resume_token(&c).expect("token");
    assert!(older.position < token.position);
    let stale = stream_every(&a, "s0", None, 8192, Some(older));
    let e = send::receive(&b, &mut &stale[..], None, true, &mut |_| {}).expect_err("stale").to_string();
    assert!(e.contains("applied") && e.contains("resumes at record"), "{e}");
    assert_eq!((send::resume_token(&b), snapshots(&b)), before, "the refusals changed nothing");
    // Into a PFS with no receive in progress.
    let d = mount(&fresh(1, 1));
    let e = send::receive(&d, &mut &rest[..], None, true, &mut |_| {}).expect_err("none").to_string();
    assert!(e.contains("no interrupted receive"), "{e}");
    // The right one completes it.
    send::receive(&b, &mut &rest[..], None, true, &mut |_| {}).expect("resume");
    assert_eq!(snapshots(&b), ["s0"]);
    assert_consistent(&b);
}

/// Per-file settings (`hammer2 set copies`, `compression`) travel with the file; a copies
/// count the receiver cannot place is lowered to what it can.
#[test]
fn per_file_copies_and_compression_are_received() {
    use hammer2::Setting;
    let a = mount(&fresh(3, 1));
    let f = a.create(a.root(), b"precious", 0o644, ROOT).expect("create");
    a.set_setting(f.ino, Setting::Copies, "3").expect("set copies");
    a.set_setting(f.ino, Setting::Compression, "zstd:7").expect("set compression");
    a.write(f.ino, 0, &vec![7u8; 200_000]).expect("write");
    let g = a.create(a.root(), b"plain", 0o644, ROOT).expect("create");
    a.set_setting(g.ino, Setting::Compression, "none").expect("set");
    a.sync().expect("sync");
    hammer2::snapshot::snapshot(&a, Some("s")).expect("snapshot");
    let s = stream_of(&a, "s", None).0;
    let b = mount(&fresh(3, 1));
    receive(&b, &s, None).expect("receive");
    assert_eq!(b.get_setting(f.ino, Setting::Copies).expect("get"), "3");
    assert_eq!(b.get_setting(f.ino, Setting::Compression).expect("get"), "zstd:7");
    assert_eq!(b.get_setting(g.ino, Setting::Compression).expect("get"), "none");
    assert!(b.get_setting(g.ino, Setting::Copies).expect("get").starts_with("default"));
    let c = mount(&fresh(2, 1));
    receive(&c, &s, None).expect("receive");
    assert_eq!(c.get_setting(f.ino, Setting::Copies).expect("get"), "2", "lowered to what two devices hold");
    assert_consistent(&b);
    assert_consistent(&c);
}

/// Known answer: the resume token's bytes in the PFS record (FORMAT.md bytes 120..256,
/// SEND-STREAM.md "Resuming") and its text (a change here changes what records hold).
#[test]
fn the_resume_token_layout_is_pinned() {
    let t = send::ResumeToken {
        pfs_uuid: [0x11; 16],
        snapshot_uuid: [0x22; 16],
        snapshot_tid: 0x0102,
        base_tid: 0x0304,
        position: 0x0506,
        after: stream::RecordId { kind: 5, inum: 0x0708, key: 0x090a },
    };
    let r = t.to_record();
    assert_eq!(r.len(), 136);
    assert_eq!(r[0], 1, "token version 1");
    assert_eq!(&r[1..17], &[0x11; 16]);
    assert_eq!(&r[17..33], &[0x22; 16]);
    assert_eq!(&r[33..41], &0x0102u64.to_le_bytes());
    assert_eq!(&r[41..49], &0x0304u64.to_le_bytes());
    assert_eq!(&r[49..57], &0x0506u64.to_le_bytes());
    assert_eq!(r[57], 5);
    assert_eq!(&r[58..66], &0x0708u64.to_le_bytes());
    assert_eq!(&r[66..74], &0x090au64.to_le_bytes());
    assert!(r[74..].iter().all(|&b| b == 0), "the rest zero");
    assert_eq!(send::ResumeToken::from_record(&r), Some(t));
    assert_eq!(send::ResumeToken::from_record(&[0; 136]), None, "zero: no token");
    let text = t.to_text();
    assert_eq!(text.len(), 156);
    let crc = crc32c::crc32c(&r[..74]).to_le_bytes();
    let want: String = r[..74].iter().chain(crc.iter()).map(|b| format!("{b:02x}")).collect();
    assert_eq!(text, want);
}

/// SR8: the receiving side crashes at points all through a receive (writes after the last
/// flush lost); each crash state mounts consistent, and resuming from the token it holds
/// (or, crashed before the first commit, receiving the stream whole) ends with a snapshot
/// equal to the sender's.
#[test]
fn a_receiver_that_crashed_mid_apply_resumes_from_its_token() {
    use common::crash::{Lost, crashed, images};
    use hammer2::storage::recording::{RecordLog, RecordingStorage};
    use std::sync::Arc;
    let a = mount(&fresh(1, 1));
    build_rich(&a);
    let mut rng = Rng::new(4242);
    random_changes(&a, &mut rng, 0);
    hammer2::snapshot::snapshot(&a, Some("s")).expect("snapshot");
    let want = strip_atime(dump(&a));
    let every = 32 * 1024;
    let full = stream_every(&a, "s", None, every, None);
    let mem = fresh(2, 2);
    let bases = images(&mem);
    let log = RecordLog::new();
    let devs: Vec<DynStorage> = mem
        .iter()
        .enumerate()
        .map(|(i, m)| Arc::new(RecordingStorage::new(m.clone(), i, log.clone())) as DynStorage)
        .collect();
    let b = Fs::mount(devs, quiet_options()).expect("mount");
    // A small dirty limit would commit between checkpoints too; the default is fine: the
    // checkpoints' commits are the crash points that matter.
    send::receive(&b, &mut &full[..], None, false, &mut |_| {}).expect("receive");
    b.crash();
    let events = log.events();
    let (mut resumed, mut whole, mut complete) = (0, 0, 0);
    let step = (events.len() / 24).max(1);
    for upto in (0..=events.len()).step_by(step).chain([events.len()]) {
        let c = Fs::mount(crashed(&bases, &events, upto, &mut Lost), quiet_options())
            .unwrap_or_else(|e| panic!("crash at event {upto}: {e}"));
        assert_consistent(&c);
        if snapshots(&c) == ["s"] {
            complete += 1;
        } else if let Some(t) = send::resume_token(&c) {
            assert_hidden(&c);
            let rest = stream_every(&a, "s", None, every, Some(t));
            send::receive(&c, &mut &rest[..], None, true, &mut |_| {})
                .unwrap_or_else(|e| panic!("crash at event {upto}: resume from {}: {e}", t.position));
            resumed += 1;
        } else {
            receive(&c, &full, None).unwrap_or_else(|e| panic!("crash at event {upto}: whole: {e}"));
            whole += 1;
        }
        assert_same(&strip_atime(dump(&c)), &want, &format!("crash at event {upto}"));
        assert_eq!(snapshots(&c), ["s"]);
        assert!(send::resume_token(&c).is_none());
        assert_consistent(&c);
        c.crash();
    }
    assert!(resumed >= 3 && whole >= 1 && complete >= 1, "resumed {resumed}, whole {whole}, complete {complete}");
}

/// SR10: the end record carries the check value of the sent tree and the receiver
/// computes the same over the tree it made. A mirror changed between two receives (a file
/// rewritten, a file added, an attribute changed, none of which the next stream touches)
/// ends in a refusal and no snapshot; reading the mirror (atime) is no change. A mirror
/// whose received base snapshot was deleted is refused before anything is applied.
#[test]
fn a_mirror_changed_between_incrementals_is_detected_and_no_snapshot_is_taken() {
    let a = mount(&fresh(1, 1));
    build_rich(&a);
    hammer2::snapshot::snapshot(&a, Some("s0")).expect("snapshot");
    let full = stream_of(&a, "s0", None).0;
    let d = a.lookup(a.root(), b"dir").expect("dir").ino;
    let n = a.create(d, b"new", 0o600, ROOT).expect("create");
    a.write(n.ino, 0, b"the change").expect("write");
    a.sync().expect("sync");
    hammer2::snapshot::snapshot(&a, Some("s1")).expect("snapshot");
    let inc = stream_of(&a, "s1", Some("s0")).0;
    type Change = Box<dyn Fn(&Fs)>;
    let changes: Vec<(&str, Change)> = vec![
        ("none, only reads", Box::new(|b: &Fs| drop(dump(b)))),
        (
            "a file rewritten",
            Box::new(|b: &Fs| {
                let big = b.lookup(b.lookup(b.root(), b"dir").unwrap().ino, b"big").unwrap();
                b.write(big.ino, 70_000, b"x").expect("write");
            }),
        ),
        (
            "a file added",
            Box::new(|b: &Fs| {
                b.create(b.root(), b"stray", 0o644, ROOT).expect("create");
            }),
        ),
        (
            "a mode changed",
            Box::new(|b: &Fs| {
                let s = b.lookup(b.root(), b"sparse").unwrap();
                b.setattr(s.ino, &SetAttr { mode: Some(0o666), ..Default::default() }).expect("chmod");
            }),
        ),
        (
            "a file in a hole written",
            Box::new(|b: &Fs| {
                let s = b.lookup(b.root(), b"sparse").unwrap();
                b.write(s.ino, 5 * MIB, b"y").expect("write");
            }),
        ),
    ];
    for (what, change) in changes {
        let b = mount(&fresh(2, 2));
        receive(&b, &full, None).expect("receive full");
        change(&b);
        b.sync().expect("sync");
        let r = receive(&b, &inc, None);
        if what.starts_with("none") {
            r.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(snapshots(&b), ["s0", "s1"]);
            continue;
        }
        let e = r.expect_err(what);
        assert!(e.contains("does not match the sender's"), "{what}: {e}");
        assert!(!e.contains('\n'), "{what}: one line: {e}");
        assert_eq!(snapshots(&b), ["s0"], "{what}: no snapshot");
        assert_consistent(&b);
    }
    // The base snapshot deleted on the mirror: refused before anything changes.
    let b = mount(&fresh(1, 1));
    receive(&b, &full, None).expect("receive full");
    hammer2::snapshot::delete(&b, "s0").expect("delete");
    let e = receive(&b, &inc, None).expect_err("no base snapshot");
    assert!(e.contains("was deleted here"), "{e}");
    assert!(send::resume_token(&b).is_none(), "nothing started");
}

/// SR11: a PFS with a receive in progress or interrupted shows no files: lookups, listings,
/// opens and finding an inode by number answer Busy, one line.
#[track_caller]
fn assert_hidden(fs: &Fs) {
    let busy = |r: Result<(), hammer2::Error>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.errno(), libc::EBUSY, "{what}: {e}");
        assert!(e.to_string().contains("is receiving a stream"), "{what}: {e}");
        assert!(!e.to_string().contains('\n'));
    };
    busy(fs.lookup(fs.root(), b"dir").map(drop), "lookup");
    busy(fs.readdir(fs.root(), 0, |_| false), "readdir");
    busy(fs.open(fs.root()), "open");
    busy(fs.lookup_inode(fs.root()).map(drop), "lookup_inode");
}

/// SR11: while an incremental receive is interrupted, the mirror's files are hidden and the
/// snapshot it received before stays readable; `abandon` gives the receive up and shows
/// the files again, and then another stream can be received.
#[test]
fn an_interrupted_receive_hides_the_mirror_until_it_completes_or_is_abandoned() {
    let a = mount(&fresh(1, 1));
    build_rich(&a);
    hammer2::snapshot::snapshot(&a, Some("s0")).expect("snapshot");
    let want0 = strip_atime(dump(&a));
    let mut rng = Rng::new(8);
    random_changes(&a, &mut rng, 1);
    hammer2::snapshot::snapshot(&a, Some("s1")).expect("snapshot");
    let b_devs = fresh(1, 1);
    let b = mount(&b_devs);
    receive(&b, &stream_of(&a, "s0", None).0, None).expect("receive");
    let inc = stream_every(&a, "s1", Some("s0"), 4096, None);
    let e = send::receive(&b, &mut &inc[..inc.len() / 2], None, false, &mut |_| {}).expect_err("cut");
    assert!(matches!(e, send::SendError::Interrupted { .. }), "{e}");
    assert_hidden(&b);
    // The snapshot received before is whole and readable (as `.snapshots/s0` shows it).
    let view = b.snapshot_named(b"s0").expect("view of s0");
    assert!(view.lookup(hammer2_format::layout::ROOT_INUM, b"dir").is_ok());
    b.unmount().expect("unmount");
    let ro = Fs::mount(b_devs.clone(), Options { read_only: true, pfs: "s0".into(), ..quiet_options() }).expect("ro");
    assert_same(&strip_atime(dump(&ro)), &want0, "the received snapshot while the next receive is interrupted");
    ro.unmount().expect("unmount");
    // Still hidden after a remount (the token is in the PFS record).
    let b = mount(&b_devs);
    assert_hidden(&b);
    let had = send::abandon(&b).expect("abandon").expect("a receive was in progress");
    assert!(had.position > 0);
    assert!(send::resume_token(&b).is_none());
    assert!(b.lookup(b.root(), b"dir").is_ok(), "shown again");
    assert!(send::abandon(&b).expect("abandon").is_none(), "nothing left to give up");
    // The same stream whole completes it over the part applied (SR6), and its check holds.
    let want1 = strip_atime(dump(&a));
    receive(&b, &inc, None).expect("the same stream again");
    assert_same(&strip_atime(dump(&b)), &want1, "after the stream again");
    assert_eq!(snapshots(&b), ["s0", "s1"]);
    assert_consistent(&b);
}

/// SR8's memory bound: a receiver holds at most 64 MiB of stream until a checkpoint
/// verifies it; a stream without checkpoints (no writer of ours makes one) is refused when
/// it passes that, with one line, instead of being held whole.
#[test]
fn a_stream_without_checkpoints_is_refused_past_the_chunk_bound() {
    let header = stream::Header {
        stream_id: [1; 16],
        pfs_uuid: [2; 16],
        snapshot_uuid: [3; 16],
        snapshot_tid: 10,
        snapshot_name: "big".into(),
        base_tid: 0,
        base_uuid: [0; 16],
        next_inum: 100,
        resume_from: 0,
        resume_after: stream::RecordId::default(),
    };
    let mut s = stream::Record::Header(header).frame();
    let block = vec![0x5au8; 65536];
    let hash = *blake3::hash(&block).as_bytes();
    let mut off = 0;
    while (s.len() as u64) < stream::MAX_CHUNK_BYTES + 2 * MIB {
        let r = stream::Record::Data { inum: 50, offset: off, hash, bytes: block.clone() };
        s.extend_from_slice(&r.frame());
        off += 65536;
    }
    let b = mount(&fresh(1, 1));
    let e = send::receive(&b, &mut &s[..], None, false, &mut |_| {}).expect_err("refused").to_string();
    assert!(e.contains("no checkpoint within 64 MiB"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    assert!(snapshots(&b).is_empty());
    assert_consistent(&b);
}
