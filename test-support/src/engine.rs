//! Engine-level helpers: in-memory or file devices, formatting, mounting, and a
//! consistency check of the allocator against the blocks the trees reach.

use hammer2::format::{FormatOptions, format};
use hammer2::inspect::{Ctx, TreeKind, Visitor, walk};
use hammer2::storage::DynStorage;
use hammer2::storage::mem::MemStorage;
use hammer2::testing;
use hammer2::{Fs, Options};
use hammer2_format::Blockref;
use hammer2_format::layout::UNIT;
use std::collections::HashMap;
use std::sync::Arc;

pub fn mem_devices(n: usize, size: u64) -> Vec<DynStorage> {
    (0..n).map(|i| Arc::new(MemStorage::new(size, &format!("mem{i}"))) as DynStorage).collect()
}

pub fn format_copies(devs: &[DynStorage], copies: u8) {
    format(devs.to_vec(), &FormatOptions { copies: Some(copies), ..Default::default() }).expect("format");
}

/// Options for deterministic tests: no background commits, commits only when asked.
pub fn quiet_options() -> Options {
    Options { background_sync: false, dirty_limit: 1 << 40, ..Options::default() }
}

/// Formats with `copies` in format `version` and new data stored raw (no compression):
/// for tests that count the bytes blocks take (version 2 compresses with lz4 by default).
pub fn format_raw(devs: &[DynStorage], copies: u8, version: u32) {
    let opts =
        FormatOptions { copies: Some(copies), format_version: version, compression: Some(None), ..Default::default() };
    format(devs.to_vec(), &opts).expect("format");
}

/// `quiet_options` with new data stored raw whatever the header's default: for tests that
/// count the bytes blocks take.
pub fn raw_options() -> Options {
    Options { compression: Some(None), ..quiet_options() }
}

/// Two devices formatted with 2 copies, the second behind a fault injector: (the plain
/// devices, the injector, the devices to mount).
pub fn two_copies_second_faulty(
    size: u64,
    seed: u64,
) -> (Vec<DynStorage>, Arc<hammer2::storage::faulty::FaultyStorage>, Vec<DynStorage>) {
    let base = mem_devices(2, size);
    format_copies(&base, 2);
    let faulty = Arc::new(hammer2::storage::faulty::FaultyStorage::new(base[1].clone(), seed));
    let devs: Vec<DynStorage> = vec![base[0].clone(), faulty.clone()];
    (base, faulty, devs)
}

pub fn mount(devs: &[DynStorage]) -> Fs {
    Fs::mount(devs.to_vec(), quiet_options()).expect("mount")
}

/// Every block the committed trees reach, with its size and type. Panics (with a
/// description) if a block is reachable twice.
pub fn reachable(fs: &Fs) -> HashMap<(u8, u64), (u64, &'static str)> {
    struct Collect<'a> {
        fs: &'a Fs,
        seen: HashMap<(u8, u64), (u64, &'static str)>,
    }
    impl Visitor for Collect<'_> {
        fn visit(&mut self, br: &Blockref, _ctx: &Ctx) -> hammer2::Result<Option<Arc<[u8]>>> {
            let Some(p) = br.ptr() else { return Ok(None) };
            for l in p.copies.iter().filter(|l| l.is_valid()) {
                if let Some(prev) = self.seen.insert((l.device, l.offset), (u64::from(p.size), br.btype.name())) {
                    panic!(
                        "block at device {} offset {} reachable twice ({} and {})",
                        l.device,
                        l.offset,
                        prev.1,
                        br.btype.name()
                    );
                }
            }
            Ok(Some(testing::read_block(self.fs, br)?))
        }
        fn malformed(&mut self, br: &Blockref, ctx: &Ctx, why: &str) -> hammer2::Result<()> {
            panic!("malformed {} block in {:?}: {why}", br.btype.name(), ctx.tree);
        }
        fn more_copies(&mut self, br: &Blockref, _: &Ctx, copies: &[hammer2_format::Location]) -> hammer2::Result<()> {
            let size = u64::from(br.ptr().map_or(0, |p| p.size));
            for l in copies {
                self.seen.insert((l.device, l.offset), (size, br.btype.name()));
            }
            Ok(())
        }
    }
    let roots = testing::committed_roots(fs);
    let mut c = Collect { fs, seen: HashMap::new() };
    walk(&roots, &mut c).expect("walk");
    c.seen
}

/// The allocator's view must equal the reachable set: every reachable block allocated,
/// and nothing else allocated except pending frees (none after a clean mount).
pub fn assert_consistent(fs: &Fs) {
    let seen = reachable(fs);
    let mut reachable_units: HashMap<u8, std::collections::HashSet<u64>> = HashMap::new();
    for ((dev, off), (size, what)) in &seen {
        assert!(
            testing::is_allocated(fs, *dev, *off, *size),
            "reachable {what} block at device {dev} offset {off} is not allocated"
        );
        let set = reachable_units.entry(*dev).or_default();
        for u in off / UNIT..off / UNIT + size.div_ceil(UNIT) {
            assert!(set.insert(u), "unit {u} of device {dev} used by two blocks");
        }
    }
    testing::for_each_unit(fs, &mut |d, u, allocated| {
        let used = reachable_units.get(&d).is_some_and(|s| s.contains(&u));
        assert_eq!(allocated, used, "device {d} unit {u}: allocated={allocated} but reachable={used}");
    });
}

/// Every block reference reachable from the committed roots, with the tree it is in.
pub fn all_blocks(fs: &Fs) -> Vec<(Blockref, TreeKind)> {
    struct All<'a> {
        fs: &'a Fs,
        out: Vec<(Blockref, TreeKind)>,
    }
    impl Visitor for All<'_> {
        fn visit(&mut self, br: &Blockref, ctx: &Ctx) -> hammer2::Result<Option<Arc<[u8]>>> {
            if br.ptr().is_none() {
                return Ok(None);
            }
            self.out.push((*br, ctx.tree));
            Ok(Some(testing::read_block(self.fs, br)?))
        }
    }
    let roots = testing::committed_roots(fs);
    let mut a = All { fs, out: Vec::new() };
    walk(&roots, &mut a).expect("walk");
    a.out
}

/// The INDIRECT nodes of inode `ino`'s committed tree in the mounted PFS (top down).
pub fn tree_nodes(fs: &Fs, ino: u64) -> Vec<Blockref> {
    let Some(root) = testing::committed_tree(fs, ino).expect("committed tree") else { return Vec::new() };
    let mut out = Vec::new();
    let mut todo: Vec<Blockref> = root.entries.to_vec();
    while let Some(br) = todo.pop() {
        if br.btype == hammer2_format::BlockType::Indirect {
            todo.extend(testing::read_node(fs, &br).expect("read node").iter().copied());
            out.push(br);
        }
    }
    out
}

/// The data blocks of inode `inum` (committed), by file offset.
pub fn data_blocks(fs: &Fs, inum: u64) -> Vec<Blockref> {
    all_blocks(fs)
        .into_iter()
        .filter(|(b, t)| *t == TreeKind::Inode(inum) && b.btype == hammer2_format::BlockType::Data)
        .map(|(b, _)| b)
        .collect()
}

/// Overwrites copy `slot` of a block on its device with garbage.
pub fn corrupt_copy(devs: &[DynStorage], br: &Blockref, slot: usize) {
    let p = br.ptr().expect("block");
    let loc = p.copies.as_slice()[slot];
    let garbage: Vec<u8> = (0..p.size).map(|i| (i as u8) ^ 0xa5).collect();
    devs[usize::from(loc.device)].write_at(&garbage, loc.offset).expect("corrupt");
}

/// Every byte of every file under the root, by path (depth first).
pub fn snapshot_files(fs: &Fs) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![(fs.root(), String::new())];
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
                stack.push((e.ino, p));
            } else if a.mode & 0o170000 == 0o100000 {
                out.insert(p, fs.read(e.ino, 0, a.size as usize).expect("read"));
            }
        }
    }
    out
}

/// A tree of files with varied sizes (embedded, one block, many blocks, a deep tree).
pub fn populate(fs: &Fs, seed: u64, files: usize) {
    let c = hammer2::Creds::default();
    let d = fs.mkdir(fs.root(), format!("d{seed}").as_bytes(), 0o755, c).expect("mkdir");
    for i in 0..files {
        let size = match i % 5 {
            0 => 100,
            1 => 5000,
            2 => 70_000,
            3 => 300_000,
            _ => 2_500_000,
        };
        // Incompressible (format version 2 compresses by default): the tests count the
        // bytes of copies they move, resync or verify.
        let data = crate::rng::Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(i as u64)).bytes(size);
        let f = fs.create(d.ino, format!("f{i}").as_bytes(), 0o644, c).expect("create");
        fs.write(f.ino, 0, &data).expect("write");
    }
}

/// Every copy of every reachable block matches its check value (C1: no live block is ever
/// overwritten, so this holds after any crash). Reads every copy directly, healing nothing.
pub fn assert_every_copy_verifies(fs: &Fs) {
    struct Verify<'a> {
        fs: &'a Fs,
        devices: usize,
        bad: Vec<String>,
    }
    impl Visitor for Verify<'_> {
        fn visit(&mut self, br: &Blockref, ctx: &Ctx) -> hammer2::Result<Option<Arc<[u8]>>> {
            let Some(p) = br.ptr() else { return Ok(None) };
            let mut good = None;
            for loc in p.copies.iter().filter(|l| l.is_valid()) {
                assert!(usize::from(loc.device) < self.devices, "member");
                let Some(st) = testing::device_storage(self.fs, loc.device) else { continue };
                let mut buf = vec![0u8; p.size as usize];
                st.read_at(&mut buf, loc.offset).expect("read copy");
                if p.check.verify(&buf) {
                    good = Some(Arc::from(buf));
                } else {
                    self.bad.push(format!(
                        "{} block in {:?}, copy on device {} at {}",
                        br.btype.name(),
                        ctx.tree,
                        loc.device,
                        loc.offset
                    ));
                }
            }
            Ok(good)
        }
    }
    let roots = testing::committed_roots(fs);
    let mut v = Verify { fs, devices: fs.devices().len(), bad: Vec::new() };
    walk(&roots, &mut v).expect("walk");
    assert!(v.bad.is_empty(), "copies that fail their check: {:?}", v.bad);
}

/// Wraps a device and counts the requests it receives and their bytes (a vectored write
/// is one request, as it is one system call on a file).
pub struct CountingStorage {
    pub inner: DynStorage,
    pub writes: std::sync::atomic::AtomicU64,
    pub bytes: std::sync::atomic::AtomicU64,
    pub read_bytes: std::sync::atomic::AtomicU64,
}

impl CountingStorage {
    pub fn new(inner: DynStorage) -> CountingStorage {
        CountingStorage { inner, writes: Default::default(), bytes: Default::default(), read_bytes: Default::default() }
    }
}

impl hammer2::storage::Storage for CountingStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.read_bytes.fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.write_vectored_at(&[buf], offset)
    }
    fn write_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> std::io::Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        self.writes.fetch_add(1, Relaxed);
        self.bytes.fetch_add(bufs.iter().map(|b| b.len() as u64).sum(), Relaxed);
        self.inner.write_vectored_at(bufs, offset)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.inner.flush()
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}
