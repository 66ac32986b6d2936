//! Benchmarks of the hot paths: block reference encode/decode, check values, tree
//! lookup/insert/delete at a million keys, the allocator, a full commit, and the read that
//! picks a good copy.
//!
//! `cargo bench --bench hot_paths` (criterion; reports in target/criterion).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use hammer2::format::{FormatOptions, format};
use hammer2::storage::DynStorage;
use hammer2::storage::mem::MemStorage;
use hammer2::testing::alloc::{Allocator, Class, DeviceSpace};
use hammer2::{Creds, Fs, Options};
use hammer2_format::blockref::Copies;
use hammer2_format::{BlockData, BlockPtr, BlockType, Blockref, CheckMethod, Location, Payload, RESERVED_BYTES};
use std::hint::black_box;
use std::sync::Arc;

fn sample_ref(key: u64) -> Blockref {
    let mut copies = Copies::new();
    copies.push(Location::valid(0, RESERVED_BYTES + key * 4096));
    copies.push(Location::valid(1, RESERVED_BYTES + key * 4096));
    Blockref {
        btype: BlockType::Data,
        keybits: 16,
        level: 0,
        flags: 0,
        key,
        modify_tid: 7,
        mirror_tid: 7,
        data: BlockData::Block(BlockPtr {
            size: 65536,
            check: CheckMethod::Crc32c.compute(&key.to_le_bytes()),
            copies,
        }),
        payload: Payload::None,
    }
}

fn blockrefs(c: &mut Criterion) {
    let br = sample_ref(12345);
    let bytes = br.encode();
    c.bench_function("blockref/encode", |b| b.iter(|| black_box(black_box(&br).encode())));
    c.bench_function("blockref/decode", |b| b.iter(|| black_box(Blockref::decode(black_box(&bytes)).unwrap())));
}

fn checks(c: &mut Criterion) {
    let mut g = c.benchmark_group("check");
    for size in [4096usize, 16384, 65536] {
        let data: Vec<u8> = (0..size).map(|i| i as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        for m in [CheckMethod::Crc32c, CheckMethod::Blake3] {
            g.bench_function(format!("{}/{}KiB", m.name(), size / 1024), |b| {
                b.iter(|| black_box(m.compute(black_box(&data))))
            });
        }
    }
    g.finish();
}

fn quiet() -> Options {
    Options { background_sync: false, dirty_limit: 1 << 40, cache_bytes: 512 << 20, ..Options::default() }
}

fn fresh_fs(size: u64) -> Fs {
    let dev: DynStorage = Arc::new(MemStorage::new(size, "bench"));
    format(vec![dev.clone()], &FormatOptions::default()).unwrap();
    Fs::mount(vec![dev], quiet()).unwrap()
}

/// A directory of a million entries: its tree has a million leaves, three levels deep.
fn tree(c: &mut Criterion) {
    let fs = fresh_fs(6 << 30);
    let d = fs.mkdir(fs.root(), b"big", 0o755, Creds::default()).unwrap();
    let n = 1_000_000u64;
    for i in 0..n {
        fs.create(d.ino, format!("f{i}").as_bytes(), 0o644, Creds::default()).unwrap();
        if i % 100_000 == 99_999 {
            fs.sync().unwrap();
        }
    }
    fs.sync().unwrap();
    let mut i = 0u64;
    c.bench_function("tree/lookup (1e6 entries)", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            black_box(fs.lookup(d.ino, format!("f{i}").as_bytes()).unwrap())
        })
    });
    let mut k = 0u64;
    c.bench_function("tree/insert+delete+commit (1e6 entries)", |b| {
        b.iter(|| {
            k += 1;
            let name = format!("new{k}");
            fs.create(d.ino, name.as_bytes(), 0o644, Creds::default()).unwrap();
            fs.unlink(d.ino, name.as_bytes()).unwrap();
            fs.sync().unwrap();
        })
    });
}

fn allocator(c: &mut Criterion) {
    c.bench_function("alloc/allocate+free 64KiB", |b| {
        b.iter_batched(
            || Allocator::new(vec![DeviceSpace::new(1 << 30, 1, None)]),
            |mut a| {
                for _ in 0..1000 {
                    let e = a.alloc(0, 0, Class::Data, 16).unwrap();
                    a.free(e);
                }
                a
            },
            BatchSize::LargeInput,
        )
    });
}

fn commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("commit");
    let blocks = 256u64;
    g.throughput(Throughput::Bytes(blocks * 65536));
    g.sample_size(20);
    let fs = fresh_fs(2 << 30);
    let f = fs.create(fs.root(), b"f", 0o644, Creds::default()).unwrap();
    let data = vec![0x5au8; 65536];
    let mut round = 0u8;
    g.bench_function(format!("{blocks} dirty 64KiB blocks"), |b| {
        b.iter(|| {
            round = round.wrapping_add(1);
            for k in 0..blocks {
                let mut d = data.clone();
                d[0] = round;
                fs.write(f.ino, k * 65536, &d).unwrap();
            }
            fs.sync().unwrap();
        })
    });
    g.finish();
}

fn read_copies(c: &mut Criterion) {
    let devs: Vec<DynStorage> =
        (0..2).map(|i| Arc::new(MemStorage::new(256 << 20, &format!("d{i}"))) as DynStorage).collect();
    format(devs.clone(), &FormatOptions { copies: Some(2), ..Default::default() }).unwrap();
    let fs = Fs::mount(devs.clone(), Options { cache_bytes: 1 << 20, ..quiet() }).unwrap();
    let f = fs.create(fs.root(), b"f", 0o644, Creds::default()).unwrap();
    fs.write(f.ino, 0, &vec![7u8; 64 << 20]).unwrap();
    fs.sync().unwrap();
    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Bytes(65536));
    let mut k = 0u64;
    g.bench_function("64KiB block, first copy good (uncached)", |b| {
        b.iter(|| {
            k = (k + 97) % 1024;
            black_box(fs.read(f.ino, k * 65536, 65536).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, blockrefs, checks, allocator, commit, read_copies, tree);
criterion_main!(benches);
