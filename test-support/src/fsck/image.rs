//! Building real image files with the engine, filling them the way a user would, and
//! reading them back.

use crate::engine::{format_copies, quiet_options};
use crate::image::sparse_file;
use crate::rng::Rng;
use hammer2::storage::DynStorage;
use hammer2::storage::file::{FileStorage, OpenMode};
use hammer2::{Creds, Fs, Options, RenameFlags, SetAttr, XattrFlags};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const MIB: u64 = 1 << 20;

/// Image files in a temporary directory.
pub struct Img {
    pub dir: tempfile::TempDir,
    pub paths: Vec<PathBuf>,
}

impl Img {
    /// `ndev` sparse image files of `size` bytes, formatted with `copies`.
    pub fn new(ndev: usize, size: u64, copies: u8) -> Img {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths: Vec<PathBuf> = (0..ndev).map(|i| sparse_file(dir.path(), &format!("dev{i}.img"), size)).collect();
        let img = Img { dir, paths };
        format_copies(&img.storages(), copies);
        img
    }

    pub fn storages(&self) -> Vec<DynStorage> {
        storages(&self.paths)
    }

    pub fn mount(&self) -> Fs {
        mount(&self.paths, false)
    }

    /// The paths as command-line arguments.
    pub fn args(&self) -> Vec<String> {
        self.paths.iter().map(|p| p.display().to_string()).collect()
    }

    /// A hash of every byte of every image.
    pub fn hash(&self) -> Vec<blake3::Hash> {
        self.paths.iter().map(|p| blake3::hash(&std::fs::read(p).expect("read image"))).collect()
    }
}

pub fn storages(paths: &[PathBuf]) -> Vec<DynStorage> {
    paths
        .iter()
        .map(|p| Arc::new(FileStorage::open(p, OpenMode::Exclusive).expect("open image")) as DynStorage)
        .collect()
}

/// The shared deterministic options (`engine::quiet_options`), degraded or not.
pub fn quiet(degraded: bool) -> Options {
    Options { degraded, ..quiet_options() }
}

pub fn mount(paths: &[PathBuf], degraded: bool) -> Fs {
    Fs::mount(storages(paths), quiet(degraded)).expect("mount")
}

/// Deterministic bytes: the same seed gives the same bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

/// The inode of `path` ("/a/b").
pub fn lookup(fs: &Fs, path: &str) -> u64 {
    let mut ino = fs.root();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        ino = fs.lookup(ino, part.as_bytes()).unwrap_or_else(|e| panic!("lookup {path}: {e}")).ino;
    }
    ino
}

pub fn read_all(fs: &Fs, ino: u64) -> Vec<u8> {
    let size = fs.getattr(ino).expect("getattr").size;
    fs.read(ino, 0, size as usize).expect("read")
}

/// What the standard content holds: path -> bytes (regular files), for checking later.
pub type Expected = BTreeMap<String, Vec<u8>>;

fn put(fs: &Fs, parent: u64, name: &str, data: &[u8], exp: &mut Expected, dir: &str) -> u64 {
    let f = fs.create(parent, name.as_bytes(), 0o644, Creds::default()).expect("create");
    if !data.is_empty() {
        fs.write(f.ino, 0, data).expect("write");
    }
    exp.insert(format!("{dir}/{name}"), data.to_vec());
    f.ino
}

/// A filesystem after real use, over several commits: small (embedded), medium and large
/// files, a sparse file, a directory with enough entries for indirect nodes, nested
/// directories, long names, hard links, symlinks (short and long), extended attributes,
/// and then deletions, a truncation and a rename.
pub fn standard_content(fs: &Fs) -> Expected {
    let mut exp = Expected::new();
    let root = fs.root();
    let c = Creds::default();
    put(fs, root, "small.txt", b"hello, hammer2\n", &mut exp, "");
    let medium = put(fs, root, "medium.bin", &pattern(1, 200 << 10), &mut exp, "");
    put(fs, root, "big.bin", &pattern(2, 3 << 20), &mut exp, "");
    fs.sync().expect("sync");

    let sparse = fs.create(root, b"sparse.bin", 0o644, c).expect("create");
    let tail = pattern(3, 10 << 10);
    fs.write(sparse.ino, 5 << 20, &tail).expect("write");
    let mut s = vec![0u8; 5 << 20];
    s.extend_from_slice(&tail);
    exp.insert("/sparse.bin".into(), s);

    let dir = fs.mkdir(root, b"dir", 0o755, c).expect("mkdir");
    for i in 0..60 {
        put(fs, dir.ino, &format!("f{i}"), &pattern(100 + i, 1000 + 97 * i as usize), &mut exp, "/dir");
    }
    let sub = fs.mkdir(dir.ino, b"sub", 0o755, c).expect("mkdir");
    let deeper = fs.mkdir(sub.ino, b"deeper", 0o700, c).expect("mkdir");
    put(fs, deeper.ino, "file", &pattern(4, 70_000), &mut exp, "/dir/sub/deeper");
    fs.sync().expect("sync");

    let long = fs.mkdir(root, b"longnames", 0o755, c).expect("mkdir");
    for i in 0..3 {
        let name = format!("{i}-{}", "n".repeat(100));
        put(fs, long.ino, &name, &pattern(200 + i, 5000), &mut exp, "/longnames");
    }
    let f1 = lookup(fs, "/dir/f1");
    fs.link(f1, root, b"hardlink").expect("link");
    exp.insert("/hardlink".into(), exp["/dir/f1"].clone());
    fs.symlink(root, b"sym", b"dir/f2", c).expect("symlink");
    fs.symlink(root, b"longsym", "x/".repeat(1900).as_bytes(), c).expect("symlink");
    fs.setxattr(medium, b"user.small", b"value", XattrFlags::default()).expect("setxattr");
    fs.setxattr(medium, b"user.big", &pattern(5, 10_000), XattrFlags::default()).expect("setxattr");
    fs.sync().expect("sync");

    for i in 50..60 {
        fs.unlink(dir.ino, format!("f{i}").as_bytes()).expect("unlink");
        exp.remove(&format!("/dir/f{i}"));
    }
    fs.setattr(medium, &SetAttr { size: Some(150 << 10), ..Default::default() }).expect("truncate");
    exp.get_mut("/medium.bin").expect("medium").truncate(150 << 10);
    fs.rename(dir.ino, b"sub", root, b"moved", RenameFlags::default()).expect("rename");
    exp.insert("/moved/deeper/file".into(), exp["/dir/sub/deeper/file"].clone());
    exp.remove("/dir/sub/deeper/file");
    exp
}

/// Formats, fills with the standard content, unmounts.
pub fn standard(ndev: usize, size: u64, copies: u8) -> (Img, Expected) {
    let img = Img::new(ndev, size, copies);
    let fs = img.mount();
    let exp = standard_content(&fs);
    fs.unmount().expect("unmount");
    (img, exp)
}

/// Asserts that every expected file (except those in `skip`) reads back intact.
pub fn assert_intact(paths: &[PathBuf], exp: &Expected, skip: &[&str]) {
    let fs = mount(paths, false);
    for (p, want) in exp {
        if skip.contains(&p.as_str()) {
            continue;
        }
        let ino = lookup(&fs, p);
        let got = read_all(&fs, ino);
        assert!(got == *want, "{p}: content differs ({} bytes read, {} expected)", got.len(), want.len());
    }
    fs.unmount().expect("unmount");
}

/// Content of lost+found entries: name -> bytes (regular files only).
pub fn lost_found(paths: &[PathBuf]) -> BTreeMap<String, Vec<u8>> {
    let fs = mount(paths, false);
    let mut out = BTreeMap::new();
    if let Ok(lf) = fs.lookup(fs.root(), b"lost+found") {
        let mut names = Vec::new();
        fs.readdir(lf.ino, 0, |e| {
            if e.name != b"." && e.name != b".." {
                names.push((String::from_utf8_lossy(&e.name).into_owned(), e.ino));
            }
            false
        })
        .expect("readdir");
        for (n, ino) in names {
            if !fs.getattr(ino).expect("getattr").is_dir() {
                out.insert(n, read_all(&fs, ino));
            }
        }
    }
    fs.unmount().expect("unmount");
    out
}

pub fn path_of(p: &Path) -> String {
    p.display().to_string()
}
