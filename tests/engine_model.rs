//! Model-based property test of the engine: random sequences of operations run against
//! the engine and against an in-memory model; every result and the final tree must
//! agree. Random "crash" points drop everything not committed and mount again: then
//! exactly the state of the last sync must be there, and the allocator must agree with
//! the blocks the trees reach.
//!
//! `HAMMER2_MODEL_CASES` sets the number of cases (default 40 × 250 operations = 10,000
//! operations per run); `HAMMER2_MODEL_OPS` the operations per case.

use hammer2_test_support as common;

use common::engine::{assert_consistent, format_copies, mem_devices, mount};
use common::model::{Kind, Model, ROOT};
use hammer2::storage::DynStorage;
use hammer2::{Creds, Fs, RenameFlags, SetAttr, XattrFlags};
use proptest::prelude::*;
use std::collections::HashMap;

const NAMES: &[&str] = &[
    "a",
    "b",
    "c",
    "dir",
    "file.txt",
    "zz",
    "a-name-that-is-longer-than-sixty-four-bytes-so-it-lives-in-its-own-block-x",
];
const XNAMES: &[&str] = &["user.a", "user.b", "user.a-much-longer-attribute-name-for-variety"];

#[derive(Debug, Clone)]
enum Op {
    Create { dir: u16, name: u8 },
    Mkdir { dir: u16, name: u8 },
    Symlink { dir: u16, name: u8, len: u16 },
    Write { file: u16, off: u32, len: u32, seed: u8, far: bool },
    Truncate { file: u16, size: u32 },
    Read { file: u16, off: u32, len: u32 },
    Unlink { path: u16 },
    Rmdir { path: u16 },
    Rename { src: u16, dir: u16, name: u8, flags: u8 },
    Link { src: u16, dir: u16, name: u8 },
    SetXattr { path: u16, name: u8, len: u16 },
    RemoveXattr { path: u16, name: u8 },
    Sync,
    Crash,
    Remount,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let n = || 0..NAMES.len() as u8;
    prop_oneof![
        6 => (any::<u16>(), n()).prop_map(|(dir, name)| Op::Create { dir, name }),
        3 => (any::<u16>(), n()).prop_map(|(dir, name)| Op::Mkdir { dir, name }),
        1 => (any::<u16>(), n(), 1..5000u16).prop_map(|(dir, name, len)| Op::Symlink { dir, name, len }),
        10 => (any::<u16>(), 0..300_000u32, 1..150_000u32, any::<u8>(), prop::bool::weighted(0.05))
            .prop_map(|(file, off, len, seed, far)| Op::Write { file, off, len, seed, far }),
        3 => (any::<u16>(), 0..400_000u32).prop_map(|(file, size)| Op::Truncate { file, size }),
        4 => (any::<u16>(), 0..400_000u32, 1..200_000u32).prop_map(|(file, off, len)| Op::Read { file, off, len }),
        3 => any::<u16>().prop_map(|path| Op::Unlink { path }),
        2 => any::<u16>().prop_map(|path| Op::Rmdir { path }),
        4 => (any::<u16>(), any::<u16>(), n(), 0..3u8).prop_map(|(src, dir, name, flags)| Op::Rename { src, dir, name, flags }),
        2 => (any::<u16>(), any::<u16>(), n()).prop_map(|(src, dir, name)| Op::Link { src, dir, name }),
        2 => (any::<u16>(), 0..XNAMES.len() as u8, 0..3000u16).prop_map(|(path, name, len)| Op::SetXattr { path, name, len }),
        1 => (any::<u16>(), 0..XNAMES.len() as u8).prop_map(|(path, name)| Op::RemoveXattr { path, name }),
        2 => Just(Op::Sync),
        1 => Just(Op::Crash),
        1 => Just(Op::Remount),
    ]
}

fn pattern(seed: u8, len: usize, off: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (seed as u64).wrapping_mul(31).wrapping_add(off + i as u64).wrapping_mul(2654435761) as u8)
        .collect()
}

struct Harness {
    devs: Vec<DynStorage>,
    fs: Option<Fs>,
    model: Model,
    durable: Model,
    /// model inode -> engine inode, learned as inodes are created
    map: HashMap<u64, u64>,
    durable_map: HashMap<u64, u64>,
}

fn errno<T>(r: hammer2::Result<T>) -> Result<T, i32> {
    r.map_err(|e| e.errno())
}

impl Harness {
    fn new(copies: u8) -> Harness {
        let devs = mem_devices(copies.max(1) as usize, 96 << 20);
        format_copies(&devs, copies);
        let fs = mount(&devs);
        let mut map = HashMap::new();
        map.insert(ROOT, fs.root());
        Harness { devs, fs: Some(fs), model: Model::new(), durable: Model::new(), durable_map: map.clone(), map }
    }

    fn fs(&self) -> &Fs {
        self.fs.as_ref().expect("mounted")
    }

    fn pick(&self, i: u16, want: impl Fn(&Model, u64) -> bool) -> Option<(Vec<Vec<u8>>, u64)> {
        let all: Vec<_> = self.model.paths().into_iter().filter(|(_, ino)| want(&self.model, *ino)).collect();
        if all.is_empty() { None } else { Some(all[i as usize % all.len()].clone()) }
    }

    fn parent_of(&self, path: &[Vec<u8>]) -> u64 {
        let mut ino = ROOT;
        for c in &path[..path.len() - 1] {
            match &self.model.get(ino).kind {
                Kind::Dir(d) => ino = d[c],
                _ => unreachable!(),
            }
        }
        ino
    }

    fn e(&self, m: u64) -> u64 {
        self.map[&m]
    }

    fn apply(&mut self, op: &Op) {
        let creds = Creds::default();
        match op.clone() {
            Op::Create { dir, name } | Op::Mkdir { dir, name } => {
                let Some((_, d)) = self.pick(dir, |_, _| true) else { return };
                let name = NAMES[name as usize].as_bytes();
                let is_dir = matches!(op, Op::Mkdir { .. });
                let want = self.model.create(
                    d,
                    name,
                    if is_dir { Kind::Dir(Default::default()) } else { Kind::File(Vec::new()) },
                );
                let got = if is_dir {
                    errno(self.fs().mkdir(self.e(d), name, 0o755, creds))
                } else {
                    errno(self.fs().create(self.e(d), name, 0o644, creds))
                };
                match (&want, &got) {
                    (Ok(m), Ok(a)) => {
                        self.map.insert(*m, a.ino);
                    }
                    (Err(w), Err(g)) => assert_eq!(w, g, "{op:?}"),
                    _ => panic!("{op:?}: model {want:?} engine {:?}", got.map(|a| a.ino)),
                }
            }
            Op::Symlink { dir, name, len } => {
                let Some((_, d)) = self.pick(dir, |_, _| true) else { return };
                let name = NAMES[name as usize].as_bytes();
                let target: Vec<u8> = (0..len as usize).map(|i| b'a' + (i % 26) as u8).collect();
                let target = &target[..target.len().min(4095)];
                let want = self.model.create(d, name, Kind::Symlink(target.to_vec()));
                let got = errno(self.fs().symlink(self.e(d), name, target, creds));
                match (&want, &got) {
                    (Ok(m), Ok(a)) => {
                        self.map.insert(*m, a.ino);
                    }
                    (Err(w), Err(g)) => assert_eq!(w, g, "{op:?}"),
                    _ => panic!("{op:?}: model {want:?} engine {:?}", got.map(|a| a.ino)),
                }
            }
            Op::Write { file, off, len, seed, far } => {
                let Some((_, f)) = self.pick(file, |m, i| matches!(m.get(i).kind, Kind::File(_))) else { return };
                let off = if far { u64::from(off) + (40 << 20) } else { u64::from(off) };
                let data = pattern(seed, len as usize, off);
                let n = self.fs().write(self.e(f), off, &data).expect("write");
                assert_eq!(n, data.len());
                self.model.write(f, off, &data);
            }
            Op::Truncate { file, size } => {
                let Some((_, f)) = self.pick(file, |m, i| matches!(m.get(i).kind, Kind::File(_))) else { return };
                self.fs()
                    .setattr(self.e(f), &SetAttr { size: Some(u64::from(size)), ..Default::default() })
                    .expect("truncate");
                self.model.truncate(f, u64::from(size));
            }
            Op::Read { file, off, len } => {
                let Some((_, f)) = self.pick(file, |m, i| matches!(m.get(i).kind, Kind::File(_))) else { return };
                let got = self.fs().read(self.e(f), u64::from(off), len as usize).expect("read");
                let Kind::File(data) = &self.model.get(f).kind else { unreachable!() };
                let s = (off as usize).min(data.len());
                let e = (off as usize + len as usize).min(data.len());
                assert!(got == data[s..e], "{op:?}: read mismatch (len {} vs {})", got.len(), e - s);
            }
            Op::Unlink { path } | Op::Rmdir { path } => {
                let Some((p, _)) = self.pick(path, |_, i| i != ROOT) else { return };
                let parent = self.parent_of(&p);
                let name = p.last().expect("non-root");
                let rm = matches!(op, Op::Rmdir { .. });
                let want = if rm { self.model.rmdir(parent, name) } else { self.model.unlink(parent, name) };
                let got = if rm {
                    errno(self.fs().rmdir(self.e(parent), name))
                } else {
                    errno(self.fs().unlink(self.e(parent), name))
                };
                assert_eq!(want, got, "{op:?} {p:?}");
            }
            Op::Rename { src, dir, name, flags } => {
                let Some((p, _)) = self.pick(src, |_, i| i != ROOT) else { return };
                let Some((_, d)) = self.pick(dir, |_, _| true) else { return };
                let sparent = self.parent_of(&p);
                let sname = p.last().expect("non-root").clone();
                let dname = NAMES[name as usize].as_bytes();
                let (noreplace, exchange) = (flags == 1, flags == 2);
                let want = self.model.rename(sparent, &sname, d, dname, noreplace, exchange);
                let got = errno(self.fs().rename(
                    self.e(sparent),
                    &sname,
                    self.e(d),
                    dname,
                    RenameFlags { noreplace, exchange },
                ));
                assert_eq!(want, got, "{op:?} {p:?}");
            }
            Op::Link { src, dir, name } => {
                let Some((_, s)) = self.pick(src, |_, i| i != ROOT) else { return };
                let Some((_, d)) = self.pick(dir, |_, _| true) else { return };
                let dname = NAMES[name as usize].as_bytes();
                let want = self.model.link(s, d, dname);
                let got = errno(self.fs().link(self.e(s), self.e(d), dname)).map(|_| ());
                assert_eq!(want, got, "{op:?}");
            }
            Op::SetXattr { path, name, len } => {
                let Some((_, i)) = self.pick(path, |_, _| true) else { return };
                let name = XNAMES[name as usize].as_bytes();
                let value = pattern(len as u8, len as usize, 7);
                self.fs().setxattr(self.e(i), name, &value, XattrFlags::default()).expect("setxattr");
                self.model.inodes.get_mut(&i).unwrap().xattrs.insert(name.to_vec(), value);
            }
            Op::RemoveXattr { path, name } => {
                let Some((_, i)) = self.pick(path, |_, _| true) else { return };
                let name = XNAMES[name as usize].as_bytes();
                let want = self.model.inodes.get_mut(&i).unwrap().xattrs.remove(name).map(|_| ()).ok_or(libc::ENODATA);
                let got = errno(self.fs().removexattr(self.e(i), name));
                assert_eq!(want, got, "{op:?}");
            }
            Op::Sync => {
                self.fs().sync().expect("sync");
                self.durable = self.model.clone();
                self.durable_map = self.map.clone();
            }
            Op::Crash => {
                self.fs.take().expect("mounted").crash();
                self.fs = Some(mount(&self.devs));
                self.model = self.durable.clone();
                self.map = self.durable_map.clone();
                self.compare();
                assert_consistent(self.fs());
            }
            Op::Remount => {
                self.fs.take().expect("mounted").unmount().expect("unmount");
                self.fs = Some(mount(&self.devs));
                self.durable = self.model.clone();
                self.durable_map = self.map.clone();
                self.compare();
                assert_consistent(self.fs());
            }
        }
    }

    /// The engine's whole tree equals the model's, including hard-link identity.
    fn compare(&self) {
        let fs = self.fs();
        for (path, m) in self.model.paths() {
            let mut e = fs.root();
            for c in &path {
                e = fs.lookup(e, c).unwrap_or_else(|err| panic!("lookup {path:?}: {err}")).ino;
            }
            assert_eq!(e, self.e(m), "inode number of {path:?}");
            let mi = self.model.get(m);
            let attr = fs.getattr(e).expect("getattr");
            assert_eq!(attr.nlink, mi.nlink, "nlink of {path:?}");
            match &mi.kind {
                Kind::File(d) => {
                    assert_eq!(attr.size, d.len() as u64, "size of {path:?}");
                    assert!(fs.read(e, 0, d.len() + 10).expect("read") == *d, "content of {path:?}");
                }
                Kind::Symlink(t) => assert_eq!(&fs.readlink(e).expect("readlink"), t),
                Kind::Dir(d) => {
                    let mut names = Vec::new();
                    fs.readdir(e, 0, |ent| {
                        names.push(ent.name.clone());
                        false
                    })
                    .expect("readdir");
                    names.sort();
                    let mut want: Vec<Vec<u8>> = d.keys().cloned().collect();
                    want.push(b".".to_vec());
                    want.push(b"..".to_vec());
                    want.sort();
                    assert_eq!(names, want, "entries of {path:?}");
                }
            }
            let mut x = fs.listxattr(e).expect("listxattr");
            x.sort();
            assert_eq!(x, mi.xattrs.keys().cloned().collect::<Vec<_>>(), "xattrs of {path:?}");
            for (k, v) in &mi.xattrs {
                assert_eq!(&fs.getxattr(e, k).expect("getxattr"), v);
            }
        }
    }
}

fn cases() -> u32 {
    std::env::var("HAMMER2_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(40)
}
fn ops_per_case() -> usize {
    std::env::var("HAMMER2_MODEL_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(250)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: shrink_iters(), ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_the_model_across_crashes(copies in 1u8..=2, ops in prop::collection::vec(op_strategy(), ops_per_case())) {
        let mut h = Harness::new(copies);
        for op in &ops {
            h.apply(op);
        }
        h.fs().sync().expect("final sync");
        h.durable = h.model.clone();
        h.durable_map = h.map.clone();
        h.apply(&Op::Crash);
    }
}

fn shrink_iters() -> u32 {
    std::env::var("HAMMER2_MODEL_SHRINK").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}
