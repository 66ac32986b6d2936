//! Golden bytes: every on-disk structure, as one fixed and fully populated value, encodes to
//! exactly the bytes of a file checked into `tests/golden/`, and those bytes decode back to
//! the value.
//!
//! `known_answers.rs` rebuilds each structure from FORMAT.md's tables; this file pins what
//! the encoder wrote on the day the format was frozen, so any change of a byte (an offset, a
//! width, a code, an order, a padding rule) fails here even when encoder, decoder and the
//! hand-built expectation were changed together.
//!
//! **Never regenerate a golden file to make this test pass.** Filesystems written by earlier
//! builds contain these bytes; a different encoding is a format change, which needs a new
//! format version or a feature bit (FORMAT.md §14), a new golden file under a new name, and
//! the old file kept for the reader of the old version. A file that is absent is written by
//! the test (which then fails): check it byte by byte against FORMAT.md's offset tables
//! before committing it.

use hammer2_format::blockref::{Copies, FLAG_DEGRADED, decode_blockset, encode_blockset};
use hammer2_format::volume::FLAG_CLEAN;
use hammer2_format::*;

mod golden {
    include!("common/golden.rs");
}
use golden::assert_golden;

/// Two valid copies and a missing one, on three devices: every copy-location field used.
fn three_copies() -> Copies {
    let mut c = Copies::new();
    c.push(Location::valid(0, RESERVED_BYTES + 0x0123_4000));
    c.push(Location::valid(1, RESERVED_BYTES + 0x0567_8000));
    c.push(Location::missing(2));
    c
}

fn crc_ptr(size: u32) -> BlockPtr {
    BlockPtr { size, check: CheckMethod::Crc32c.compute(b"golden crc32c"), copies: three_copies() }
}

fn blake3_ptr(size: u32) -> BlockPtr {
    BlockPtr { size, check: CheckMethod::Blake3.compute(b"golden blake3"), copies: three_copies() }
}

/// One reference of every type, each with every field it may carry set to a distinct value.
fn references() -> Vec<(&'static str, Blockref)> {
    let base = Blockref {
        btype: BlockType::Data,
        keybits: 0,
        level: 0,
        flags: FLAG_DEGRADED,
        key: 0,
        modify_tid: 0x0102_0304_0506_0708,
        mirror_tid: 0x1112_1314_1516_1718,
        data: BlockData::None,
        payload: Payload::None,
    };
    vec![
        ("blockref_empty", Blockref::EMPTY),
        (
            "blockref_inode",
            Blockref { btype: BlockType::Inode, key: 0x2a, data: BlockData::Block(crc_ptr(4096)), ..base },
        ),
        (
            "blockref_indirect",
            Blockref {
                btype: BlockType::Indirect,
                level: 3,
                key: 0x8000,
                data: BlockData::Block(blake3_ptr(65536)),
                ..base
            },
        ),
        (
            "blockref_data",
            Blockref {
                btype: BlockType::Data,
                keybits: 14,
                key: 7 << 14,
                data: BlockData::Block(crc_ptr(12288)),
                ..base
            },
        ),
        (
            "blockref_dirent_inline",
            Blockref {
                btype: BlockType::Dirent,
                flags: 0,
                key: dirent::dirent_key_base(b"golden-name") | 3,
                data: BlockData::Inline(dirent::inline_name(b"golden-name").unwrap()),
                payload: Payload::Dirent { inum: 0x0a0b_0c0d_0e0f_1011, name_len: 11, dtype: dtype::LNK },
                ..base
            },
        ),
        (
            "blockref_dirent_block",
            Blockref {
                btype: BlockType::Dirent,
                key: dirent::dirent_key_base(&[b'L'; 100]),
                data: BlockData::Block(crc_ptr(4096)),
                payload: Payload::Dirent { inum: 77, name_len: 100, dtype: dtype::DIR },
                ..base
            },
        ),
        (
            "blockref_xattr",
            Blockref {
                btype: BlockType::Xattr,
                key: dirent::xattr_key_base(b"user.golden") | 1,
                data: BlockData::Block(blake3_ptr(8192)),
                payload: Payload::Xattr { name_len: 11, value_len: 5000 },
                ..base
            },
        ),
        (
            "blockref_freemap_leaf",
            Blockref {
                btype: BlockType::FreemapLeaf,
                key: layout::freemap_key(2, 5),
                data: BlockData::Block(crc_ptr(16384)),
                payload: Payload::FreemapLeaf { free_units: 131_000 },
                ..base
            },
        ),
        ("blockref_orphan", Blockref { btype: BlockType::Orphan, flags: 0, key: 0x99, ..base }),
    ]
}

#[test]
fn every_block_reference_type() {
    for (name, br) in references() {
        let golden = assert_golden(name, &br.encode());
        assert_eq!(Blockref::decode(&golden).unwrap(), br, "{name}: decode");
    }
}

fn leaf(k: u64) -> Blockref {
    Blockref {
        btype: BlockType::Data,
        keybits: 14,
        level: 0,
        flags: 0,
        key: k << 14,
        modify_tid: 3 + k,
        mirror_tid: 4 + k,
        data: BlockData::Block(BlockPtr {
            size: 16384,
            check: CheckMethod::Crc32c.compute(&k.to_le_bytes()),
            copies: Copies::from_iter([Location::valid(0, RESERVED_BYTES + k * 16384)]),
        }),
        payload: Payload::None,
    }
}

#[test]
fn blockset_of_eight_slots() {
    let entries: Vec<Blockref> = (0..5).map(leaf).collect();
    let mut out = vec![0u8; 8 * BLOCKREF_SIZE];
    encode_blockset(&entries, 8, &mut out);
    let golden = assert_golden("blockset", &out);
    assert_eq!(decode_blockset(&golden, 8, 0).unwrap(), entries);
}

#[test]
fn indirect_block() {
    let entries: Vec<Blockref> = (0..3)
        .map(|k| Blockref {
            btype: BlockType::Indirect,
            level: 1,
            key: k << 20,
            modify_tid: 5,
            mirror_tid: 6 + k,
            data: BlockData::Block(BlockPtr { size: 4096, ..crc_ptr(4096) }),
            flags: FLAG_DEGRADED,
            ..Blockref::EMPTY
        })
        .collect();
    let golden = assert_golden("indirect", &indirect::encode(&entries, 4096));
    assert_eq!(indirect::decode(&golden, 2).unwrap(), entries);
}

fn inode(content: InodeContent, size: u64, blocks: u64, mode: u32, parent: u64) -> InodeBlock {
    InodeBlock {
        inum: 0x0102_0304,
        parent,
        mode,
        uid: 0x1112_1314,
        gid: 0x2122_2324,
        nlink: 0x3132_3334,
        size,
        rdev: 0x4142_4344_4546_4748,
        atime: Timespec { sec: 0x5152_5354_5556_5758, nsec: 0x0102_0304 },
        mtime: Timespec { sec: -0x6162_6364, nsec: 999_999_999 },
        ctime: Timespec { sec: 0x7172_7374, nsec: 1 },
        btime: Timespec { sec: -1, nsec: 0x0a0b_0c0d },
        version: 0x8182_8384_8586_8788,
        create_tid: 0x9192_9394_9596_9798,
        blocks,
        policy: InodePolicy::default(),
        content,
    }
}

#[test]
fn inode_with_embedded_data() {
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 1) as u8).collect();
    let ino = inode(InodeContent::Embedded(data), 3000, 0, 0o100_754, 0);
    let golden = assert_golden("inode_embedded", &ino.encode());
    assert_eq!(InodeBlock::decode(&golden).unwrap(), ino);
}

#[test]
fn inode_with_a_tree_root() {
    let entries: Vec<Blockref> = (0..30).map(leaf).collect();
    let ino = inode(InodeContent::Tree { root_level: 0, entries }, 30 * 16384, 30 * 16384, 0o104_755, 0);
    let golden = assert_golden("inode_tree", &ino.encode());
    assert_eq!(InodeBlock::decode(&golden).unwrap(), ino);

    let dir = inode(InodeContent::Tree { root_level: 3, entries: vec![references()[2].1] }, 12, 0, 0o041_777, 9);
    let golden = assert_golden("inode_directory_level3", &dir.encode());
    assert_eq!(InodeBlock::decode(&golden).unwrap(), dir);
}

#[test]
fn xattr_block_and_name_block() {
    let value: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let golden = assert_golden("xattr_block", &xattr::encode(b"user.golden", &value));
    assert_eq!(xattr::decode(&golden).unwrap(), (b"user.golden".to_vec(), value));

    let name: Vec<u8> = (0..255u32).map(|i| b'a' + (i % 26) as u8).collect();
    let golden = assert_golden("name_block", &dirent::encode_name_block(&name));
    assert_eq!(dirent::decode_name_block(&golden, 255).unwrap(), name);
}

#[test]
fn freemap_leaf_bitmap() {
    let mut bits = vec![0u8; FREEMAP_LEAF_SIZE];
    // The header area of device 0 (8 MiB = 2048 units), a few scattered units, the last unit.
    for i in (0..2048).chain([2049, 4095, 65_537, 100_000, 131_071]) {
        freemap::set(&mut bits, i, true);
    }
    let golden = assert_golden("freemap_leaf", &bits);
    for i in 0..FREEMAP_LEAF_UNITS {
        assert_eq!(freemap::get(&golden, i), freemap::get(&bits, i), "bit {i}");
    }
    assert_eq!(freemap::count_free(&golden), FREEMAP_LEAF_UNITS - 2048 - 5);
}

/// A header of a three-device, three-copy filesystem, seen from device 2, every field set.
fn header() -> VolumeHeader {
    let dev = |i: u8, state| DeviceEntry {
        uuid: [0x30 + i; 16],
        size: (1 << 30) + u64::from(i) * UNIT,
        synced_tid: 0x0100 + u64::from(i),
        free_units: 0x0200 + u64::from(i),
        missed_since: 0x0300 + u64::from(i),
        read_errors: 0x0400 + u32::from(i),
        write_errors: 0x0500 + u32::from(i),
        check_errors: 0x0600 + u32::from(i),
        repaired: 0x0700 + u32::from(i),
        regions: 1 + i,
        state,
    };
    let root = |key: u64, level: u8| Blockref {
        btype: BlockType::Indirect,
        level,
        key,
        data: BlockData::Block(blake3_ptr(16384)),
        ..references()[2].1
    };
    VolumeHeader {
        tid: 0x1112_1314_1516_1718,
        fs_uuid: [0xf5; 16],
        device_uuid: [0x32; 16],
        device_index: 2,
        copies: 3,
        check: CheckMethod::Blake3,
        slot: 3,
        flags: FLAG_CLEAN,
        device_size: (1 << 30) + 2 * UNIT,
        next_inum: 0x2122_2324_2526_2728,
        commit_time_ns: 0x3132_3334_3536_3738,
        mkfs_time_ns: 0x4142_4344_4546_4748,
        data_block_shift: 15,
        indirect_block_shift: 13,
        version: FORMAT_VERSION,
        default_compression: 0,
        default_zstd_level: 0,
        incompat_features: 0,
        compat_features: 0x5152_5354_5556_5758,
        // 63 bytes: ASCII, a two-byte and a three-byte character; the field is 64 bytes.
        label: format!("golden-é-€-{}", "x".repeat(49)),
        sroot: [root(1, 2), root(0, 1), root(0x99, 1), Blockref::EMPTY],
        devices: vec![dev(0, DeviceState::Online), dev(1, DeviceState::Stale), dev(2, DeviceState::Diverged)],
    }
}

#[test]
fn volume_header_with_its_device_table() {
    let h = header();
    assert_eq!(h.label.len(), 63);
    let golden = assert_golden("volume_header", &h.encode());
    assert_eq!(VolumeHeader::decode(&golden).unwrap(), h);

    let mut failed = h.clone();
    failed.devices[0].state = DeviceState::Failed;
    failed.flags = 0;
    let golden = assert_golden("volume_header_failed_device", &failed.encode());
    assert_eq!(VolumeHeader::decode(&golden).unwrap(), failed);
}
