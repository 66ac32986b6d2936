//! Random device faults under a long mixed workload, at the engine level.
//!
//! The promise: with N copies, faults on at most N-1 copies of any block lose nothing. Every
//! read returns exactly what was written, every commit succeeds, and once the faults stop a
//! resync and a scrub leave every copy of every block good.
//!
//! Faults (I/O errors on reads, silent bit flips on reads, occasional write errors) are
//! injected by `FaultyStorage` at random on the devices, or the region, holding the *first*
//! copy slots: reads try slot 0 first, so that is where a fault is met by ordinary reads and
//! not only by scrub. The device or region of the last slot stays clean. A write error
//! takes a device out of service for the rest of that mount (its copies of newer blocks are
//! recorded as MISSING); remounts bring it back stale and resyncs catch it up.
//!
//! A vanishing device is covered separately: it disappears mid-workload, the workload goes
//! on (remounts included, degraded), and once it is back a resync makes it able to carry
//! the whole filesystem alone.
//!
//! `HAMMER2_FAULT_OPS` sets the operations per test (default 2,500); `HAMMER2_FAULT_SEED`
//! shifts the seeds. Run with `--nocapture` to see the counts of operations and injected faults.

use hammer2_test_support as common;

use common::engine::{
    all_blocks, assert_consistent, assert_every_copy_verifies, format_copies, mem_devices, quiet_options,
};
use common::rng::{Rng, env_u64};
use hammer2::storage::DynStorage;
use hammer2::storage::faulty::{FaultPlan, FaultyStorage};
use hammer2::{Fs, Options, RenameFlags, SetAttr, XattrFlags, testing};
use hammer2_format::layout::{RESERVED_BYTES, region_bounds};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

const MIB: u64 = 1 << 20;
/// Offsets are drawn around multiples of this, which are block boundaries for every data
/// block size up to 64 KiB (the default is 16 KiB).
const BLOCK: u64 = 64 << 10;
/// Directories the files live in (index 0 is the root).
const DIRS: [&str; 4] = ["", "alpha", "beta", "a-directory-with-a-rather-long-name"];
const XNAMES: [&str; 3] = ["user.a", "user.b", "user.an-attribute-name-long-enough-to-vary-the-layout"];
/// Upper bound of the bytes all files may span (holes included), well inside the devices.
const DATA_BUDGET: u64 = 28 * MIB;
const MAX_FILES: usize = 48;

fn ops() -> u64 {
    env_u64("HAMMER2_FAULT_OPS", 2500)
}

/// Each test's own seed, shifted by `HAMMER2_FAULT_SEED` (so one variable gives every test
/// a new, still distinct seed; the seed printed is the one used).
fn seed(own: u64) -> u64 {
    own.wrapping_add(env_u64("HAMMER2_FAULT_SEED", 0).wrapping_mul(1000))
}

/// File names: short ones (inline in the directory entry) and long ones (their own block).
fn names() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = (0..24).map(|i| format!("f{i}").into_bytes()).collect();
    for i in 0..6 {
        v.push(format!("a-file-name-longer-than-sixty-four-bytes-so-it-needs-its-own-block-{i}").into_bytes());
    }
    v
}

#[derive(Clone, Default, Debug)]
struct MFile {
    data: Vec<u8>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

type Files = BTreeMap<(usize, Vec<u8>), MFile>;

/// The devices: every one wrapped in a `FaultyStorage` (so any can vanish), with the plan it
/// gets while faults are on.
struct Rig {
    devs: Vec<DynStorage>,
    faulty: Vec<Arc<FaultyStorage>>,
    plans: Vec<FaultPlan>,
    /// Copy slots that may also rot on the medium (garbage written under a committed
    /// block, found only by a read of that copy or by scrub).
    rot_slots: Vec<usize>,
}

impl Rig {
    fn new(ndev: usize, size: u64, copies: u8, seed: u64) -> Rig {
        let base = mem_devices(ndev, size);
        format_copies(&base, copies);
        let faulty: Vec<Arc<FaultyStorage>> = base
            .iter()
            .enumerate()
            .map(|(i, d)| Arc::new(FaultyStorage::new(d.clone(), seed.wrapping_mul(7919) + i as u64)))
            .collect();
        let devs = faulty.iter().map(|f| f.clone() as DynStorage).collect();
        Rig { devs, faulty, plans: vec![FaultPlan::default(); ndev], rot_slots: Vec::new() }
    }

    fn faults_on(&self) {
        for (f, p) in self.faulty.iter().zip(&self.plans) {
            f.set_plan(p.clone());
        }
    }

    fn faults_off(&self) {
        for f in &self.faulty {
            f.set_plan(FaultPlan::default());
        }
    }

    fn injected(&self) -> Injected {
        let mut t = Injected::default();
        for f in &self.faulty {
            t.read_errors += f.counts.read_errors.load(Ordering::Relaxed);
            t.write_errors += f.counts.write_errors.load(Ordering::Relaxed);
            t.bitflips += f.counts.bitflips.load(Ordering::Relaxed);
            t.flush_errors += f.counts.flush_errors.load(Ordering::Relaxed);
        }
        t
    }
}

#[derive(Debug, Default)]
struct Injected {
    read_errors: u64,
    write_errors: u64,
    bitflips: u64,
    flush_errors: u64,
}

impl Injected {
    fn total(&self) -> u64 {
        self.read_errors + self.write_errors + self.bitflips + self.flush_errors
    }
}

/// Random read errors, bit flips and (if `writes`) write errors on I/O inside `ranges` of a
/// device (or anywhere past the header slots when `ranges` is empty).
fn random_faults(ranges: Vec<(u64, u64)>, writes: bool) -> FaultPlan {
    FaultPlan {
        read_error_rate: 0.04,
        bitflip_rate: 0.04,
        // Rare: the first one takes the device out of service until the next mount.
        write_error_rate: if writes { 0.004 } else { 0.0 },
        random_floor: RESERVED_BYTES,
        random_ranges: ranges,
        ..Default::default()
    }
}

#[derive(Debug, Default)]
struct Counts {
    ops: u64,
    reads_checked: u64,
    bytes_written: u64,
    syncs: u64,
    remounts: u64,
    crashes: u64,
    resyncs: u64,
    rotted: u64,
}

struct Workload {
    rig: Rig,
    fs: Option<Fs>,
    rng: Rng,
    seed: u64,
    names: Vec<Vec<u8>>,
    files: Files,
    /// The state of the last commit: what a crash must come back to.
    durable: Files,
    /// Mount without every device (one has vanished).
    degraded: bool,
    log: VecDeque<String>,
    n: Counts,
}

fn options(degraded: bool) -> Options {
    // The smallest block cache (its floor is 1 MiB per shard), also dropped now and then,
    // so reads keep reaching the devices.
    Options { cache_bytes: 0, degraded, ..quiet_options() }
}

impl Workload {
    fn new(rig: Rig, seed: u64) -> Workload {
        let fs = Fs::mount(rig.devs.clone(), options(false)).expect("mount");
        for d in &DIRS[1..] {
            fs.mkdir(fs.root(), d.as_bytes(), 0o755, Default::default()).expect("mkdir");
        }
        fs.sync().expect("sync");
        Workload {
            rig,
            fs: Some(fs),
            rng: Rng::new(seed),
            seed,
            names: names(),
            files: Files::new(),
            durable: Files::new(),
            degraded: false,
            log: VecDeque::new(),
            n: Counts::default(),
        }
    }

    fn fs(&self) -> &Fs {
        self.fs.as_ref().expect("mounted")
    }

    fn note(&mut self, s: String) {
        if self.log.len() == 60 {
            self.log.pop_front();
        }
        self.log.push_back(s);
    }

    /// Seed, operation number and the last operations, for failure messages.
    fn ctx(&self) -> String {
        let tail: Vec<&str> = self.log.iter().map(String::as_str).collect();
        format!("seed {} op {}; last operations:\n  {}", self.seed, self.n.ops, tail.join("\n  "))
    }

    fn dir_ino(&self, d: usize) -> u64 {
        let fs = self.fs();
        if d == 0 {
            return fs.root();
        }
        fs.lookup(fs.root(), DIRS[d].as_bytes())
            .unwrap_or_else(|e| panic!("lookup {}: {e}; {}", DIRS[d], self.ctx()))
            .ino
    }

    fn ino(&self, key: &(usize, Vec<u8>)) -> u64 {
        let dir = self.dir_ino(key.0);
        self.fs()
            .lookup(dir, &key.1)
            .unwrap_or_else(|e| panic!("lookup {:?}: {e}; {}", String::from_utf8_lossy(&key.1), self.ctx()))
            .ino
    }

    fn random_file(&mut self) -> Option<(usize, Vec<u8>)> {
        if self.files.is_empty() {
            return None;
        }
        let i = self.rng.below(self.files.len() as u64) as usize;
        self.files.keys().nth(i).cloned()
    }

    fn span(&self) -> u64 {
        self.files.values().map(|f| f.data.len() as u64).sum()
    }

    fn write_len(&mut self) -> u64 {
        match self.rng.weighted(&[25, 25, 15, 25, 10]) {
            0 => self.rng.range(1, 512),
            1 => self.rng.range(513, 8192),
            2 => BLOCK - 16 + self.rng.below(33),
            3 => self.rng.range(8193, 300_000),
            _ => self.rng.range(300_001, 1_500_000),
        }
    }

    fn write_off(&mut self, size: u64, len: u64) -> u64 {
        match self.rng.weighted(&[40, 20, 20, 15, 5]) {
            0 => self.rng.below(size + 1),
            // Straddling a block boundary at or below the end of the file.
            1 => {
                let k = self.rng.range(1, size / BLOCK + 1);
                (k * BLOCK).saturating_sub(self.rng.range(1, len.min(BLOCK)))
            }
            2 => size,
            // Past the end: leaves a hole.
            3 => size + self.rng.range(1, 2 * MIB),
            _ => self.rng.range(4 * MIB, 12 * MIB),
        }
    }

    fn step(&mut self) {
        self.n.ops += 1;
        let op = self.rng.weighted(&[
            6,  // 0 create
            24, // 1 write
            14, // 2 read a range
            4,  // 3 read a whole file
            6,  // 4 truncate
            5,  // 5 rename
            4,  // 6 unlink
            4,  // 7 setxattr
            2,  // 8 removexattr
            2,  // 9 fallocate
            4,  // 10 sync
            2,  // 11 drop the block cache
            1,  // 12 remount
            1,  // 13 crash
            1,  // 14 resync
            1,  // 15 rot copies on the medium
        ]);
        match op {
            0 => self.create(),
            1 => self.write(),
            2 => self.read_range(),
            3 => {
                if let Some(k) = self.random_file() {
                    self.note(format!("check {}/{} whole", k.0, String::from_utf8_lossy(&k.1)));
                    self.check_file(&k);
                }
            }
            4 => self.truncate(),
            5 => self.rename(),
            6 => self.unlink(),
            7 => self.setxattr(),
            8 => self.removexattr(),
            9 => self.fallocate(),
            10 => self.sync(),
            11 => {
                self.note("drop cache".into());
                testing::clear_cache(self.fs());
            }
            12 => self.remount(),
            13 => self.crash(),
            14 => self.resync(),
            _ => self.rot(),
        }
        if self.n.ops % 500 == 0 {
            self.verify_all();
        }
    }

    fn create(&mut self) {
        if self.files.len() >= MAX_FILES {
            return;
        }
        let d = self.rng.below(DIRS.len() as u64) as usize;
        let name = self.rng.pick(&self.names).clone();
        self.note(format!("create {d}/{}", String::from_utf8_lossy(&name)));
        let r = self.fs().create(self.dir_ino(d), &name, 0o644, Default::default());
        let key = (d, name);
        if self.files.contains_key(&key) {
            assert_eq!(r.map(|_| ()).map_err(|e| e.errno()), Err(libc::EEXIST), "{}", self.ctx());
        } else {
            r.unwrap_or_else(|e| panic!("create: {e}; {}", self.ctx()));
            self.files.insert(key, MFile::default());
        }
    }

    fn write(&mut self) {
        let Some(k) = self.random_file() else { return };
        let size = self.files[&k].data.len() as u64;
        let len = self.write_len();
        let off = self.write_off(size, len);
        if self.span() - size + (off + len).max(size) > DATA_BUDGET {
            return self.truncate();
        }
        let data = self.rng.bytes(len as usize);
        self.note(format!("write {}/{} off {off} len {len}", k.0, String::from_utf8_lossy(&k.1)));
        let ino = self.ino(&k);
        let n = self.fs().write(ino, off, &data).unwrap_or_else(|e| panic!("write: {e}; {}", self.ctx()));
        assert_eq!(n, data.len(), "{}", self.ctx());
        let f = &mut self.files.get_mut(&k).expect("picked").data;
        let end = (off + len) as usize;
        if f.len() < end {
            f.resize(end, 0);
        }
        f[off as usize..end].copy_from_slice(&data);
        self.n.bytes_written += len;
        // Read back what was just written, plus a little on both sides.
        self.check_range(&k, off.saturating_sub(100), len + 200);
    }

    fn read_range(&mut self) {
        let Some(k) = self.random_file() else { return };
        let size = self.files[&k].data.len() as u64;
        let off = self.rng.below(size + BLOCK);
        let len = self.write_len();
        self.note(format!("read {}/{} off {off} len {len}", k.0, String::from_utf8_lossy(&k.1)));
        self.check_range(&k, off, len);
    }

    fn check_range(&mut self, k: &(usize, Vec<u8>), off: u64, len: u64) {
        let ino = self.ino(k);
        let got = self.fs().read(ino, off, len as usize).unwrap_or_else(|e| panic!("read: {e}; {}", self.ctx()));
        let data = &self.files[k].data;
        let s = (off as usize).min(data.len());
        let e = (off as usize + len as usize).min(data.len());
        if got != data[s..e] {
            let want = &data[s..e];
            let first = got.iter().zip(want).position(|(a, b)| a != b);
            // Which file blocks differ, and how: garbage, zeros, or an older version.
            let mut blocks = Vec::new();
            for (i, (g, w)) in got.chunks(BLOCK as usize).zip(want.chunks(BLOCK as usize)).enumerate() {
                if g != w {
                    let zeros = g.iter().all(|b| *b == 0);
                    let n = g.iter().zip(w).filter(|(a, b)| a != b).count();
                    blocks.push(format!(
                        "block {} ({n} bytes differ{})",
                        (off / BLOCK) + i as u64,
                        if zeros { ", got zeros" } else { "" }
                    ));
                }
            }
            panic!(
                "read of {}/{} at {off} len {len}: {} bytes back, {} expected, first difference at {:?}; differing: {}; {}",
                k.0,
                String::from_utf8_lossy(&k.1),
                got.len(),
                e - s,
                first.map(|i| off + i as u64),
                blocks.join(", "),
                self.ctx()
            );
        }
        self.n.reads_checked += 1;
    }

    fn check_file(&mut self, k: &(usize, Vec<u8>)) {
        let ino = self.ino(k);
        let a = self.fs().getattr(ino).unwrap_or_else(|e| panic!("getattr: {e}; {}", self.ctx()));
        let want = self.files[k].data.len() as u64;
        assert_eq!(a.size, want, "size of {}/{}; {}", k.0, String::from_utf8_lossy(&k.1), self.ctx());
        self.check_range(k, 0, want + 10);
        let mut names = self.fs().listxattr(ino).unwrap_or_else(|e| panic!("listxattr: {e}; {}", self.ctx()));
        names.sort();
        let f = &self.files[k];
        assert_eq!(names, f.xattrs.keys().cloned().collect::<Vec<_>>(), "xattr names; {}", self.ctx());
        for (n, v) in &f.xattrs {
            let got = self.fs().getxattr(ino, n).unwrap_or_else(|e| panic!("getxattr: {e}; {}", self.ctx()));
            assert!(
                got == *v,
                "xattr {} of {}; {}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(&k.1),
                self.ctx()
            );
        }
    }

    /// Every directory lists exactly the model's names, and every file reads back whole.
    fn verify_all(&mut self) {
        testing::clear_cache(self.fs());
        for d in 0..DIRS.len() {
            let mut got = Vec::new();
            self.fs()
                .readdir(self.dir_ino(d), 0, |e| {
                    got.push(e.name.clone());
                    false
                })
                .unwrap_or_else(|e| panic!("readdir: {e}; {}", self.ctx()));
            got.retain(|n| n != b"." && n != b".." && !DIRS.iter().any(|d| d.as_bytes() == n.as_slice()));
            got.sort();
            let want: Vec<Vec<u8>> = self.files.keys().filter(|k| k.0 == d).map(|k| k.1.clone()).collect();
            assert_eq!(got, want, "entries of directory {d}; {}", self.ctx());
        }
        let keys: Vec<_> = self.files.keys().cloned().collect();
        for k in keys {
            self.check_file(&k);
        }
    }

    fn truncate(&mut self) {
        let Some(k) = self.random_file() else { return };
        let size = self.files[&k].data.len() as u64;
        let new = match self.rng.below(4) {
            0 => 0,
            1 => self.rng.below(size + 1),
            2 => (self.rng.below(size / BLOCK + 1)) * BLOCK,
            _ => size + self.rng.range(1, MIB),
        };
        if new > size && self.span() + (new - size) > DATA_BUDGET {
            return;
        }
        self.note(format!("truncate {}/{} {size} -> {new}", k.0, String::from_utf8_lossy(&k.1)));
        let ino = self.ino(&k);
        self.fs()
            .setattr(ino, &SetAttr { size: Some(new), ..Default::default() })
            .unwrap_or_else(|e| panic!("truncate: {e}; {}", self.ctx()));
        self.files.get_mut(&k).expect("picked").data.resize(new as usize, 0);
        self.check_range(&k, new.saturating_sub(BLOCK), 2 * BLOCK);
    }

    fn fallocate(&mut self) {
        let Some(k) = self.random_file() else { return };
        let size = self.files[&k].data.len() as u64;
        let off = self.rng.below(size + MIB);
        let len = self.rng.range(1, MIB);
        let grow = (off + len).saturating_sub(size);
        if self.span() + grow > DATA_BUDGET {
            return;
        }
        self.note(format!("fallocate {}/{} off {off} len {len}", k.0, String::from_utf8_lossy(&k.1)));
        let ino = self.ino(&k);
        self.fs().fallocate(ino, off, len, 0).unwrap_or_else(|e| panic!("fallocate: {e}; {}", self.ctx()));
        let f = &mut self.files.get_mut(&k).expect("picked").data;
        if grow > 0 {
            f.resize((off + len) as usize, 0);
        }
        self.check_range(&k, off, len);
    }

    fn rename(&mut self) {
        let Some(k) = self.random_file() else { return };
        let d = self.rng.below(DIRS.len() as u64) as usize;
        let name = self.rng.pick(&self.names).clone();
        let to = (d, name);
        self.note(format!(
            "rename {}/{} -> {}/{}",
            k.0,
            String::from_utf8_lossy(&k.1),
            to.0,
            String::from_utf8_lossy(&to.1)
        ));
        let (sd, dd) = (self.dir_ino(k.0), self.dir_ino(to.0));
        self.fs()
            .rename(sd, &k.1, dd, &to.1, RenameFlags::default())
            .unwrap_or_else(|e| panic!("rename: {e}; {}", self.ctx()));
        if to != k {
            let f = self.files.remove(&k).expect("picked");
            self.files.insert(to, f);
        }
    }

    fn unlink(&mut self) {
        let Some(k) = self.random_file() else { return };
        self.note(format!("unlink {}/{}", k.0, String::from_utf8_lossy(&k.1)));
        let d = self.dir_ino(k.0);
        self.fs().unlink(d, &k.1).unwrap_or_else(|e| panic!("unlink: {e}; {}", self.ctx()));
        self.files.remove(&k);
    }

    fn setxattr(&mut self) {
        let Some(k) = self.random_file() else { return };
        let name = self.rng.pick(&XNAMES).as_bytes().to_vec();
        let len = if self.rng.chance(0.2) { self.rng.range(4000, 40_000) } else { self.rng.below(3000) };
        let value = self.rng.bytes(len as usize);
        self.note(format!(
            "setxattr {}/{} {} len {len}",
            k.0,
            String::from_utf8_lossy(&k.1),
            String::from_utf8_lossy(&name)
        ));
        let ino = self.ino(&k);
        self.fs()
            .setxattr(ino, &name, &value, XattrFlags::default())
            .unwrap_or_else(|e| panic!("setxattr: {e}; {}", self.ctx()));
        self.files.get_mut(&k).expect("picked").xattrs.insert(name, value);
    }

    fn removexattr(&mut self) {
        let Some(k) = self.random_file() else { return };
        let name = self.rng.pick(&XNAMES).as_bytes().to_vec();
        self.note(format!("removexattr {}/{} {}", k.0, String::from_utf8_lossy(&k.1), String::from_utf8_lossy(&name)));
        let ino = self.ino(&k);
        let got = self.fs().removexattr(ino, &name).map_err(|e| e.errno());
        let had = self.files.get_mut(&k).expect("picked").xattrs.remove(&name).is_some();
        assert_eq!(got, if had { Ok(()) } else { Err(libc::ENODATA) }, "{}", self.ctx());
    }

    fn sync(&mut self) {
        self.note("sync".into());
        self.fs().sync().unwrap_or_else(|e| panic!("sync: {e}; {}", self.ctx()));
        self.durable = self.files.clone();
        self.n.syncs += 1;
    }

    fn mount(&mut self) {
        let fs = Fs::mount(self.rig.devs.clone(), options(self.degraded))
            .unwrap_or_else(|e| panic!("mount: {e}; {}", self.ctx()));
        self.fs = Some(fs);
    }

    fn remount(&mut self) {
        self.note("remount".into());
        let fs = self.fs.take().expect("mounted");
        fs.unmount().unwrap_or_else(|e| panic!("unmount: {e}; {}", self.ctx()));
        self.durable = self.files.clone();
        self.mount();
        self.n.remounts += 1;
    }

    fn crash(&mut self) {
        self.note("crash".into());
        self.fs.take().expect("mounted").crash();
        self.files = self.durable.clone();
        self.mount();
        self.n.crashes += 1;
        self.verify_all();
    }

    fn resync(&mut self) {
        self.note("resync".into());
        testing::resync(self.fs(), &mut |_| {}).unwrap_or_else(|e| panic!("resync: {e}; {}", self.ctx()));
        self.durable = self.files.clone();
        self.n.resyncs += 1;
    }

    /// Writes garbage over the copy in a faulty slot of a few committed blocks, underneath
    /// the filesystem (these are not counted as injected faults, but as rotted copies).
    fn rot(&mut self) {
        if self.rig.rot_slots.is_empty() {
            return;
        }
        let blocks = all_blocks(self.fs());
        for _ in 0..3 {
            let (br, _) = *self.rng.pick(&blocks);
            let slot = *self.rng.pick(&self.rig.rot_slots);
            let Some(p) = br.ptr() else { continue };
            let loc = p.copies.as_slice()[slot];
            if !loc.is_valid() {
                continue;
            }
            let garbage = self.rng.bytes(p.size as usize);
            self.note(format!(
                "rot {} block, copy {slot} at device {} offset {}",
                br.btype.name(),
                loc.device,
                loc.offset
            ));
            self.rig.faulty[usize::from(loc.device)].inner().write_at(&garbage, loc.offset).expect("rot");
            self.n.rotted += 1;
        }
    }

    /// With the faults off: a resync fills every copy a failed device missed, a scrub
    /// repairs every copy a fault left bad (bit flips are in what was read, not on the
    /// medium, but rotted copies are), and a second scrub finds nothing.
    fn settle(&mut self) {
        self.rig.faults_off();
        let rep = testing::resync(self.fs(), &mut |_| {}).unwrap_or_else(|e| panic!("resync: {e}; {}", self.ctx()));
        assert!(rep.still_missing.is_empty(), "devices still missing copies after the resync: {rep:?}");
        self.durable = self.files.clone();
        self.verify_all();
        let first = testing::scrub(self.fs(), &mut |_| {}).expect("scrub");
        assert!(first.unrepairable.is_empty() && first.malformed.is_empty(), "scrub: {first:?}");
        assert!(first.exit_code() <= 1, "scrub left errors: {first:?}");
        let second = testing::scrub(self.fs(), &mut |_| {}).expect("scrub");
        assert_eq!(second.errors(), 0, "a second scrub is clean: {second:?}");
        let missing: u64 = second.devices.iter().map(|d| d.missing).sum();
        assert_eq!(missing, 0, "no copy is missing after the resync: {second:?}");
        assert_consistent(self.fs());
        assert_every_copy_verifies(self.fs());
        self.verify_all();
    }

    /// Mounts each device alone (read-only, degraded) and checks every file on it.
    fn each_device_alone_holds_everything(&mut self) {
        for i in 0..self.rig.devs.len() {
            let fs = Fs::mount(vec![self.rig.devs[i].clone()], Options { read_only: true, ..options(true) })
                .unwrap_or_else(|e| panic!("mount device {i} alone: {e}"));
            self.fs = Some(fs);
            self.note(format!("device {i} alone"));
            self.verify_all();
            self.fs.take().expect("mounted").unmount().expect("unmount");
        }
    }

    fn report(&self, name: &str) {
        let inj = self.rig.injected();
        let repaired: u64 = self.fs.as_ref().map_or(0, |fs| fs.devices().iter().map(|d| d.repaired).sum());
        eprintln!(
            "{name}: seed {}, {} operations ({} reads checked, {} bytes written, {} syncs, {} remounts, {} crashes, \
             {} resyncs, {} copies rotted on the medium); faults injected: {} ({} read errors, {} bit flips, {} write errors, {} flush errors); \
             {repaired} copies repaired since the last mount; 0 mismatches",
            self.seed,
            self.n.ops,
            self.n.reads_checked,
            self.n.bytes_written,
            self.n.syncs,
            self.n.remounts,
            self.n.crashes,
            self.n.resyncs,
            self.n.rotted,
            inj.total(),
            inj.read_errors,
            inj.bitflips,
            inj.write_errors,
            inj.flush_errors,
        );
    }
}

fn run_with_random_faults(name: &str, rig: Rig, seed: u64) {
    let mut w = Workload::new(rig, seed);
    w.rig.faults_on();
    for _ in 0..ops() {
        w.step();
    }
    w.verify_all();
    let inj = w.rig.injected();
    assert!(inj.read_errors > 0 && inj.bitflips > 0, "the run injected faults: {inj:?}");
    w.settle();
    w.report(name);
    w.fs.take().expect("mounted").unmount().expect("unmount");
    if w.rig.devs.len() > 1 {
        w.each_device_alone_holds_everything();
    }
}

#[test]
fn two_copies_on_two_devices_lose_nothing_with_random_faults_on_one_device() {
    let mut rig = Rig::new(2, 128 * MIB, 2, seed(21));
    rig.plans[0] = random_faults(Vec::new(), true);
    rig.rot_slots = vec![0];
    run_with_random_faults("copies=2, 2 devices, faults on device 0", rig, seed(21));
}

#[test]
fn three_copies_on_three_devices_lose_nothing_with_random_faults_on_two_devices() {
    let mut rig = Rig::new(3, 128 * MIB, 3, seed(31));
    rig.plans[0] = random_faults(Vec::new(), true);
    rig.plans[1] = random_faults(Vec::new(), true);
    rig.rot_slots = vec![0, 1];
    run_with_random_faults("copies=3, 3 devices, faults on devices 0 and 1", rig, seed(31));
}

#[test]
fn two_copies_in_two_regions_of_one_device_lose_nothing_with_random_faults_in_one_region() {
    let size = 256 * MIB;
    let mut rig = Rig::new(1, size, 2, seed(12));
    // Slot 0 lives in region 0. No write errors here: any write error fails the whole
    // device, and with it both copies.
    rig.plans[0] = random_faults(vec![region_bounds(size, 2, 0)], false);
    rig.rot_slots = vec![0];
    run_with_random_faults("copies=2, 1 device, faults in region 0", rig, seed(12));
}

#[test]
fn three_copies_in_three_regions_of_one_device_lose_nothing_with_random_faults_in_two_regions() {
    let size = 384 * MIB;
    let mut rig = Rig::new(1, size, 3, seed(13));
    rig.plans[0] = random_faults(vec![region_bounds(size, 3, 0), region_bounds(size, 3, 1)], false);
    rig.rot_slots = vec![0, 1];
    run_with_random_faults("copies=3, 1 device, faults in regions 0 and 1", rig, seed(13));
}

/// Device `gone` vanishes a third of the way in and comes back at two thirds; the workload
/// (remounts and crashes included, degraded while it is away) never notices. A resync then
/// catches it up, and it alone holds every file.
fn run_with_a_vanishing_device(name: &str, rig: Rig, gone: usize, seed: u64) {
    rig.faults_on();
    let mut w = Workload::new(rig, seed);
    let total = ops();
    for i in 0..total {
        if i == total / 3 {
            w.note(format!("device {gone} vanishes"));
            w.rig.faulty[gone].vanish();
            w.degraded = true;
        }
        if i == 2 * total / 3 {
            w.note(format!("device {gone} reappears"));
            w.rig.faulty[gone].reappear();
            // It is stale now: the next mount (or resync) takes it back in.
            w.degraded = false;
        }
        w.step();
    }
    w.verify_all();
    w.settle();
    w.report(name);
    w.fs.take().expect("mounted").unmount().expect("unmount");
    w.each_device_alone_holds_everything();
}

#[test]
fn two_copies_survive_a_device_that_vanishes_mid_workload_and_resync_restores_it() {
    let rig = Rig::new(2, 128 * MIB, 2, seed(22));
    run_with_a_vanishing_device("copies=2, device 1 vanishes", rig, 1, seed(22));
}

#[test]
fn three_copies_survive_a_vanishing_device_plus_random_faults_on_another() {
    let mut rig = Rig::new(3, 128 * MIB, 3, seed(33));
    rig.plans[0] = random_faults(Vec::new(), true);
    rig.rot_slots = vec![0];
    run_with_a_vanishing_device("copies=3, device 2 vanishes, faults on device 0", rig, 2, seed(33));
}
