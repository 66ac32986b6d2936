//! Compression at the engine level (FORMAT-V2 "Compression", Z1-Z3 in docs/DESIGN.md):
//! compressible blocks are stored compressed in whole units, incompressible ones raw; the
//! check value covers the stored bytes, so a damaged copy is healed from another without
//! being decompressed, and with every copy damaged the read fails (EIO), never returns
//! garbage. A model-based property test writes compressible, incompressible and mixed
//! data at random offsets and compares every byte after commits, cache drops and remounts.

use hammer2_test_support as common;

use common::engine::*;
use hammer2::compression::Codec;
use hammer2::format::{FormatOptions, format};
use hammer2::storage::DynStorage;
use hammer2::{Creds, Error, Fs, Options, testing};
use hammer2_format::layout::{FORMAT_VERSION, feature};
use hammer2_format::{BlockType, CompressionMethod};
use proptest::prelude::*;

const DEV: u64 = 96 << 20;

/// Source-code-like text: lz4 shrinks a 16 KiB block to well under 12 KiB.
fn text(len: usize, seed: u64) -> Vec<u8> {
    let words = ["fn ", "let ", "mut ", "self", "();\n", "    ", "match ", "=> ", "Some(", "None", "{\n", "}\n"];
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % words.len() as u64) as usize].as_bytes());
    }
    out.truncate(len);
    out
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    common::damage::garbage(len, seed)
}

fn fs_with(devs: &[DynStorage], copies: u8, compression: Option<Option<Codec>>) -> Fs {
    format(devs.to_vec(), &FormatOptions { copies: Some(copies), compression, ..Default::default() }).expect("format");
    mount(devs)
}

fn file(fs: &Fs, name: &str, data: &[u8]) -> u64 {
    let f = fs.create(fs.root(), name.as_bytes(), 0o644, Creds::default()).expect("create");
    fs.write(f.ino, 0, data).expect("write");
    f.ino
}

fn methods(fs: &Fs, ino: u64) -> Vec<Option<CompressionMethod>> {
    data_blocks(fs, ino).iter().map(|b| b.compression().map(|c| c.method)).collect()
}

fn read_all(fs: &Fs, ino: u64) -> hammer2::Result<Vec<u8>> {
    let size = fs.getattr(ino)?.size;
    fs.read(ino, 0, size as usize)
}

#[test]
fn compressible_data_is_stored_in_fewer_units_and_reads_back() {
    let devs = mem_devices(2, DEV);
    let fs = fs_with(&devs, 2, None);
    let data = text(1 << 20, 1);
    let ino = file(&fs, "text", &data);
    testing::commit(&fs).unwrap();

    let blocks = data_blocks(&fs, ino);
    assert_eq!(blocks.len(), 64);
    assert!(blocks.iter().all(|b| b.compression().is_some_and(|c| c.method == CompressionMethod::Lz4)));
    let stored: u64 = blocks.iter().map(|b| u64::from(b.size())).sum();
    assert!(stored <= (1 << 20) * 3 / 4, "stored {stored}");
    for b in &blocks {
        assert_eq!(b.logical_size(), 16384);
        assert_eq!(u64::from(b.size()) % 4096, 0);
    }
    // st_blocks counts the stored bytes (one copy), the size the logical ones.
    let a = fs.getattr(ino).unwrap();
    assert_eq!(a.size, 1 << 20);
    assert_eq!(a.blocks * 512, stored);
    // The commit that wrote them set the feature bit.
    let roots = testing::committed_roots(&fs);
    assert!(roots.pfs.as_ref().unwrap().features & feature::COMPRESSED != 0);

    testing::clear_cache(&fs);
    assert_eq!(read_all(&fs, ino).unwrap(), data);
    // Unaligned reads inside compressed blocks.
    assert_eq!(fs.read(ino, 12345, 40000).unwrap(), data[12345..52345]);
    assert_every_copy_verifies(&fs);
    assert_consistent(&fs);
    fs.unmount().unwrap();

    let fs = mount(&devs);
    assert_eq!(read_all(&fs, ino).unwrap(), data);
    assert_eq!(fs.getattr(ino).unwrap().blocks * 512, stored);
    let report = testing::scrub(&fs, &mut |_| {}).expect("scrub");
    let bad: u64 = report.devices.iter().map(|d| d.check_errors + d.read_errors).sum();
    assert_eq!(bad, 0, "{report:?}");
    assert!(report.unrepairable.is_empty() && report.malformed.is_empty(), "{report:?}");
}

#[test]
fn incompressible_and_small_blocks_stay_raw() {
    let devs = mem_devices(1, DEV);
    let fs = fs_with(&devs, 1, None);
    let noise = random(1 << 20, 5);
    let a = file(&fs, "noise", &noise);
    // A file of one unit beyond the embedded size: nothing to save.
    let small = file(&fs, "small", &text(4000, 2));
    // Compressible head, random rest in every block: tried, then stored raw.
    let mut mixed = Vec::new();
    for i in 0..16 {
        mixed.extend(text(4096, i));
        mixed.extend(random(12288, i));
    }
    let m = file(&fs, "mixed", &mixed);
    testing::commit(&fs).unwrap();
    assert!(methods(&fs, a).iter().all(Option::is_none));
    assert!(methods(&fs, m).iter().all(Option::is_none));
    assert_eq!(fs.getattr(a).unwrap().blocks * 512, 1 << 20);
    assert_eq!(fs.getattr(m).unwrap().blocks * 512, mixed.len() as u64);
    testing::clear_cache(&fs);
    assert_eq!(read_all(&fs, a).unwrap(), noise);
    assert_eq!(read_all(&fs, m).unwrap(), mixed);
    assert_eq!(read_all(&fs, small).unwrap(), text(4000, 2));
    // Nothing compressed: the header says nothing of compression.
    let roots = testing::committed_roots(&fs);
    assert_eq!(roots.pfs.as_ref().unwrap().features & feature::COMPRESSED, 0);
}

#[test]
fn zstd_from_mkfs_and_none_from_the_mount_option() {
    let devs = mem_devices(1, DEV);
    let fs = fs_with(&devs, 1, Some(Some(Codec::Zstd(9))));
    let data = text(256 << 10, 3);
    let z = file(&fs, "z", &data);
    testing::commit(&fs).unwrap();
    assert!(methods(&fs, z).iter().all(|m| *m == Some(CompressionMethod::Zstd)));
    fs.unmount().unwrap();

    // `-o compression=none` overrides the header's default for new blocks; old ones read.
    let fs = Fs::mount(devs.clone(), Options { compression: Some(None), ..quiet_options() }).unwrap();
    let n = file(&fs, "n", &data);
    testing::commit(&fs).unwrap();
    assert!(methods(&fs, n).iter().all(Option::is_none));
    assert_eq!(read_all(&fs, z).unwrap(), data);
    assert_eq!(read_all(&fs, n).unwrap(), data);
    // An overwrite of part of a compressed block rewrites it, compressed or not by the
    // mount's setting, with the rest of its old content.
    fs.write(z, 100, b"patched").unwrap();
    testing::commit(&fs).unwrap();
    testing::clear_cache(&fs);
    let mut want = data.clone();
    want[100..107].copy_from_slice(b"patched");
    assert_eq!(read_all(&fs, z).unwrap(), want);
    assert_eq!(methods(&fs, z)[0], None);
    assert_eq!(methods(&fs, z)[1], Some(CompressionMethod::Zstd));
}

#[test]
fn a_damaged_copy_is_healed_from_the_other_and_all_damaged_is_eio() {
    let devs = mem_devices(2, DEV);
    let fs = fs_with(&devs, 2, None);
    let data = text(64 << 10, 4);
    let ino = file(&fs, "f", &data);
    fs.unmount().unwrap();

    let fs = mount(&devs);
    let blocks = data_blocks(&fs, ino);
    assert!(blocks.iter().all(|b| b.compression().is_some()));
    // A read tries the first copy (slot 0 for the start of a file), finds it bad, reads
    // the other and rewrites the bad one; one block alone, then two in one bulk read.
    corrupt_copy(&devs, &blocks[0], 0);
    corrupt_copy(&devs, &blocks[1], 0);
    testing::clear_cache(&fs);
    assert_eq!(fs.read(ino, 0, 100).unwrap(), data[..100]);
    assert_eq!(read_all(&fs, ino).unwrap(), data);
    // Healed: every copy verifies again.
    assert_every_copy_verifies(&fs);
    assert!(fs.devices().iter().map(|d| d.repaired).sum::<u64>() >= 2);

    // Every copy of block 2 damaged: that range fails, the others still read.
    corrupt_copy(&devs, &blocks[2], 0);
    corrupt_copy(&devs, &blocks[2], 1);
    testing::clear_cache(&fs);
    let err = fs.read(ino, 2 * 16384 + 5, 100).unwrap_err();
    assert!(matches!(err, Error::Unrecoverable { .. }), "{err}");
    assert_eq!(err.errno(), libc::EIO);
    assert_eq!(fs.read(ino, 3 * 16384, 16384).unwrap(), data[3 * 16384..4 * 16384]);
    // The bulk path (many blocks at once) fails the same way, returning nothing.
    assert!(read_all(&fs, ino).is_err());
}

#[test]
fn version_1_never_compresses_and_refuses_the_setting() {
    let devs = mem_devices(1, DEV);
    let v1 = FormatOptions { copies: Some(1), format_version: FORMAT_VERSION, ..Default::default() };
    let refused = format(devs.clone(), &FormatOptions { compression: Some(Some(Codec::Lz4)), ..v1.clone() });
    assert!(matches!(refused, Err(Error::FormatVersion1)));
    format(devs.clone(), &v1).unwrap();
    let fs = mount(&devs);
    let ino = file(&fs, "t", &text(1 << 20, 6));
    testing::commit(&fs).unwrap();
    assert!(methods(&fs, ino).iter().all(Option::is_none));
    fs.unmount().unwrap();
    let e = Fs::mount(devs.clone(), Options { compression: Some(Some(Codec::Lz4)), ..quiet_options() });
    assert!(matches!(e, Err(Error::FormatVersion1)));
}

#[derive(Debug, Clone)]
enum Op {
    Write { off: u32, len: u32, kind: u8, seed: u64 },
    Truncate(u32),
    Commit,
    Remount,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u32..400_000, 1u32..100_000, 0u8..3, any::<u64>())
            .prop_map(|(off, len, kind, seed)| Op::Write { off, len, kind, seed }),
        1 => (0u32..500_000).prop_map(Op::Truncate),
        2 => Just(Op::Commit),
        1 => Just(Op::Remount),
    ]
}

fn content(kind: u8, len: usize, seed: u64) -> Vec<u8> {
    match kind {
        0 => text(len, seed),
        1 => random(len, seed),
        // Mixed: alternating 3000-byte runs of each.
        _ => (0..len.div_ceil(3000))
            .flat_map(|i| if i % 2 == 0 { text(3000, seed + i as u64) } else { random(3000, seed + i as u64) })
            .take(len)
            .collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The file reads as the model after any mix of writes, truncates, commits and
    /// remounts, whatever each block was stored as; every copy verifies and the allocator
    /// agrees with the trees.
    #[test]
    fn model_of_one_file_with_mixed_data(ops in proptest::collection::vec(op(), 1..24), zstd in any::<bool>()) {
        let devs = mem_devices(2, DEV);
        let codec = if zstd { Codec::Zstd(3) } else { Codec::Lz4 };
        let mut fs = fs_with(&devs, 2, Some(Some(codec)));
        let ino = file(&fs, "m", b"");
        let mut model: Vec<u8> = Vec::new();
        for op in ops {
            match op {
                Op::Write { off, len, kind, seed } => {
                    let data = content(kind, len as usize, seed);
                    fs.write(ino, u64::from(off), &data).unwrap();
                    let end = off as usize + data.len();
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..end].copy_from_slice(&data);
                }
                Op::Truncate(n) => {
                    fs.setattr(ino, &hammer2::SetAttr { size: Some(u64::from(n)), ..Default::default() }).unwrap();
                    model.resize(n as usize, 0);
                }
                Op::Commit => {
                    testing::commit(&fs).unwrap();
                    testing::clear_cache(&fs);
                }
                Op::Remount => {
                    fs.unmount().unwrap();
                    fs = mount(&devs);
                }
            }
            prop_assert_eq!(read_all(&fs, ino).unwrap(), model.clone());
        }
        testing::commit(&fs).unwrap();
        let stored: u64 = data_blocks(&fs, ino).iter().map(|b| u64::from(b.size())).sum();
        prop_assert_eq!(fs.getattr(ino).unwrap().blocks * 512, stored);
        for b in data_blocks(&fs, ino) {
            prop_assert_eq!(b.btype, BlockType::Data);
            if let Some(c) = b.compression() {
                prop_assert!(c.frame_len <= b.size());
                prop_assert!(b.size() + 4096 <= b.logical_size());
            }
        }
        assert_every_copy_verifies(&fs);
        assert_consistent(&fs);
        fs.unmount().unwrap();
        let fs = mount(&devs);
        prop_assert_eq!(read_all(&fs, ino).unwrap(), model);
    }
}
