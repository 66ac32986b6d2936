//! Format version 2 (FORMAT.md "Version 2"): golden bytes and known answers for every new
//! structure (the PFS record, the version-2 header, inode layout 2, the PFS reference),
//! the decoders' refusals, and version 1 unchanged: a version-1 header still decodes as
//! version 1 and encodes back byte for byte.

use hammer2_format::blockref::Copies;
use hammer2_format::layout::feature;
use hammer2_format::pfs::{FLAG_HIDDEN, FLAG_RECEIVING, RESUME_TOKEN_SIZE, off};
use hammer2_format::volume::FLAG_CLEAN;
use hammer2_format::*;
use proptest::prelude::*;

mod golden {
    include!("common/golden.rs");
}
use golden::assert_golden;

fn ptr(size: u32, what: &[u8]) -> BlockPtr {
    let mut c = Copies::new();
    c.push(Location::valid(0, RESERVED_BYTES + 0x0abc_d000));
    c.push(Location::valid(1, RESERVED_BYTES + 0x0123_4000));
    BlockPtr { size, check: CheckMethod::Crc32c.compute(what), copies: c }
}

fn indirect(key: u64, level: u8, tid: u64) -> Blockref {
    Blockref {
        btype: BlockType::Indirect,
        keybits: 0,
        level,
        flags: 0,
        key,
        modify_tid: tid,
        mirror_tid: tid + 1,
        data: BlockData::Block(ptr(16384, &key.to_le_bytes())),
        payload: Payload::None,
    }
}

/// A record with every field set to a distinct value.
fn record() -> PfsRecord {
    let mut token = [0u8; RESUME_TOKEN_SIZE];
    for (i, b) in token.iter_mut().enumerate() {
        *b = i as u8 ^ 0x5a;
    }
    PfsRecord {
        kind: PfsKind::Clone,
        flags: FLAG_RECEIVING | FLAG_HIDDEN,
        id: 0x0102_0304_0506_0708,
        origin: 0x1112_1314_1516_1718,
        create_tid: 0x2122_2324_2526_2728,
        create_time_ns: 0x3132_3334_3536_3738,
        next_inum: 0x4142_4344_4546_4748,
        prev_snapshot: 0x5152_5354_5556_5758,
        referenced_logical: 0x6162_6364_6566_6768,
        referenced_physical: 0x7172_7374_7576_7778,
        dead_bytes: 0x0a0b_0c0d_0e0f_1011,
        uuid: [0xa1; 16],
        received_uuid: [0xb2; 16],
        received_tid: 0x1a1b_1c1d_1e1f_2021,
        resume_token: token,
        // 63 bytes: ASCII, a two-byte and a three-byte character; the field is 64.
        name: format!("pfs-é-€-{}", "n".repeat(52)),
        inode_root: indirect(1, 3, 7),
        orphan_root: indirect(0x99, 1, 5),
        dead_root: indirect(0x42 << 24, 2, 6),
    }
}

#[test]
fn pfs_record_golden_bytes() {
    let r = record();
    assert_eq!(r.name.len(), 63);
    let golden = assert_golden("pfs_record", &r.encode());
    assert_eq!(PfsRecord::decode(&golden).unwrap(), r);
}

#[test]
fn pfs_record_known_answer() {
    // Built from FORMAT.md's table, not from the encoder.
    let r = record();
    let mut want = vec![0u8; 4096];
    let mut put = |o: usize, b: &[u8]| want[o..o + b.len()].copy_from_slice(b);
    put(0, b"PFS2");
    put(4, &1u16.to_le_bytes());
    put(6, &[3]); // clone
    put(7, &[3]); // receiving | hidden
    put(8, &r.id.to_le_bytes());
    put(16, &r.origin.to_le_bytes());
    put(24, &r.create_tid.to_le_bytes());
    put(32, &r.create_time_ns.to_le_bytes());
    put(40, &r.next_inum.to_le_bytes());
    put(48, &r.prev_snapshot.to_le_bytes());
    put(56, &r.referenced_logical.to_le_bytes());
    put(64, &r.referenced_physical.to_le_bytes());
    put(72, &r.dead_bytes.to_le_bytes());
    put(80, &[0xa1; 16]);
    put(96, &[0xb2; 16]);
    put(112, &r.received_tid.to_le_bytes());
    put(120, &r.resume_token);
    put(256, r.name.as_bytes());
    put(320, &r.inode_root.encode());
    put(448, &r.orphan_root.encode());
    put(576, &r.dead_root.encode());
    let crc = crc32c::crc32c(&want[..4092]);
    want[4092..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(r.encode(), want);
    assert_eq!((off::NAME, off::INODE_ROOT, off::RESERVED, off::CRC), (256, 320, 704, 4092));
}

/// The version-2 header of a two-device filesystem: every new field set, every defined
/// feature bit (so each bit's position is pinned).
fn header_v2() -> VolumeHeader {
    let dev = |i: u8| DeviceEntry {
        uuid: [0x40 + i; 16],
        size: 1 << 30,
        synced_tid: 9,
        free_units: 0x100 + u64::from(i),
        missed_since: 0,
        read_errors: 1,
        write_errors: 2,
        check_errors: 3,
        repaired: 4,
        regions: 1,
        state: DeviceState::Online,
    };
    VolumeHeader {
        version: FORMAT_VERSION_2,
        tid: 9,
        fs_uuid: [0xf2; 16],
        device_uuid: [0x41; 16],
        device_index: 1,
        copies: 2,
        check: CheckMethod::Crc32c,
        slot: 1,
        flags: FLAG_CLEAN,
        device_size: 1 << 30,
        next_inum: 0,
        commit_time_ns: 0x3132_3334_3536_3738,
        mkfs_time_ns: 0x4142_4344_4546_4748,
        data_block_shift: 14,
        indirect_block_shift: 16,
        default_compression: 2,
        default_zstd_level: 19,
        incompat_features: feature::ALL,
        compat_features: 0,
        label: "v2".into(),
        sroot: [Blockref::EMPTY, indirect(0, 1, 8), Blockref::EMPTY, indirect(1, 1, 8)],
        devices: vec![dev(0), dev(1)],
    }
}

#[test]
fn version2_header_golden_bytes_and_offsets() {
    let h = header_v2();
    let bytes = h.encode();
    let golden = assert_golden("volume_header_v2", &bytes);
    assert_eq!(VolumeHeader::decode(&golden).unwrap(), h);
    // FORMAT.md "Version 2": version @8, compression @98, zstd level @99, features @104,
    // the PFS table @640 (sroot[3]).
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 2);
    assert_eq!((bytes[98], bytes[99]), (2, 19));
    assert_eq!(&bytes[100..104], &[0; 4]);
    assert_eq!(u64::from_le_bytes(bytes[104..112].try_into().unwrap()), 0x1f);
    assert_eq!(&bytes[640..768], &h.sroot[3].encode()[..]);
    assert!(bytes[256..384].iter().all(|&b| b == 0) && bytes[512..640].iter().all(|&b| b == 0));
}

#[test]
fn version1_header_still_decodes_as_version1_byte_for_byte() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/volume_header.bin");
    let golden = std::fs::read(path).unwrap();
    let h = VolumeHeader::decode(&golden).unwrap();
    assert_eq!((h.version, h.incompat_features, h.default_compression, h.default_zstd_level), (1, 0, 0, 0));
    assert_eq!(&h.encode()[..], &golden[..]);
}

/// Re-seals a header image after a field was changed by hand.
fn reseal(mut b: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&b[..4092]);
    b[4092..].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn header_refusals() {
    let good = header_v2().encode().to_vec();
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        VolumeHeader::decode(&reseal(b))
    };
    // An unknown feature bit.
    assert!(with(&|b| b[104] = 0x20).is_err());
    // PFS_TABLE with an inode index in the header.
    assert!(with(&|b| b[256..384].copy_from_slice(&indirect(1, 1, 8).encode())).is_err());
    // PFS_TABLE without a table.
    assert!(with(&|b| b[640..768].fill(0)).is_err());
    // PFS_TABLE with a counter in the header.
    assert!(with(&|b| b[72] = 5).is_err());
    // Out-of-range defaults.
    assert!(with(&|b| b[98] = 3).is_err());
    assert!(with(&|b| b[99] = 0).is_err());
    assert!(with(&|b| b[99] = 20).is_err());
    assert!(with(&|b| b[100] = 1).is_err());
    // Version 2 without PFS_TABLE: sroot[3] is reserved again.
    assert!(with(&|b| b[104] = 0x1e).is_err());
    // Version 1 with any version-2 field.
    let v1 = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        b[8] = 1;
        b[98] = 0;
        b[99] = 0;
        b[104] = 0;
        b[640..768].fill(0);
        b[256..384].copy_from_slice(&indirect(1, 1, 8).encode());
        b[72] = 2;
        f(&mut b);
        VolumeHeader::decode(&reseal(b))
    };
    assert_eq!(v1(&|_| {}).unwrap().version, 1);
    assert!(v1(&|b| b[104] = 1).is_err());
    assert!(v1(&|b| b[98] = 1).is_err());
    assert!(v1(&|b| b[99] = 3).is_err());
    assert!(v1(&|b| b[640..768].copy_from_slice(&indirect(1, 1, 8).encode())).is_err());
    // A version that does not exist.
    assert!(with(&|b| b[8] = 3).is_err());
}

#[test]
fn pfs_record_refusals() {
    let good = record().encode();
    let with = |f: &dyn Fn(&mut Vec<u8>), reseal_it: bool| {
        let mut b = good.clone();
        f(&mut b);
        if reseal_it {
            let crc = crc32c::crc32c(&b[..4092]);
            b[4092..].copy_from_slice(&crc.to_le_bytes());
        }
        PfsRecord::decode(&b)
    };
    assert_eq!(with(&|b| b[100] ^= 1, false), Err(DecodeError::BadCheck { what: "pfs record" }));
    assert_eq!(with(&|b| b[0] = b'X', true), Err(DecodeError::BadMagic { what: "pfs record" }));
    assert!(matches!(with(&|b| b[4] = 2, true), Err(DecodeError::BadVersion { .. })));
    assert!(with(&|b| b[6] = 0, true).is_err(), "kind 0");
    assert!(with(&|b| b[6] = 4, true).is_err(), "kind 4");
    assert!(with(&|b| b[7] = 4, true).is_err(), "unknown flag");
    assert!(with(&|b| b[8..16].fill(0), true).is_err(), "id 0");
    assert!(with(&|b| b[256..320].fill(0), true).is_err(), "empty name");
    assert!(with(&|b| b[258] = b'/', true).is_err(), "'/' in the name");
    assert!(with(&|b| b[256] = 0xff, true).is_err(), "name not UTF-8");
    assert!(with(&|b| b[300] = 0, true).is_err(), "name bytes after a NUL");
    assert_eq!(with(&|b| b[319] = b'x', true).unwrap().name.len(), 64, "a 64-byte name has no NUL");
    assert!(with(&|b| b[1000] = 1, true).is_err(), "reserved byte");
    assert!(with(&|b| b[320..448].fill(0), true).is_err(), "no inode index");
    // A root of a type other than INDIRECT.
    let mut leaf = indirect(1, 1, 8);
    leaf.btype = BlockType::Pfs;
    leaf.level = 0;
    leaf.data = BlockData::Block(ptr(4096, b"x"));
    assert!(with(&|b| b[448..576].copy_from_slice(&leaf.encode()), true).is_err(), "orphan root type");
    // A copy naming a device the filesystem does not have.
    assert!(PfsRecord::decode_within(&good, 1).is_err());
    assert!(PfsRecord::decode_within(&good, 2).is_ok());
    // Name rules, as mkfs and mount check them.
    assert!(pfs::name_problem("ROOT").is_none());
    for bad in ["", "a/b", "nul\0", &"x".repeat(65)] {
        assert!(pfs::name_problem(bad).is_some(), "{bad:?}");
    }
    assert!(pfs::name_problem(&"é".repeat(32)).is_none(), "64 bytes");
}

#[test]
fn pfs_reference_golden_bytes_and_shape() {
    let br = Blockref {
        btype: BlockType::Pfs,
        keybits: 0,
        level: 0,
        flags: 0,
        key: 1,
        modify_tid: 0x0102_0304_0506_0708,
        mirror_tid: 0x1112_1314_1516_1718,
        data: BlockData::Block(ptr(4096, b"golden pfs")),
        payload: Payload::None,
    };
    let golden = assert_golden("blockref_pfs", &br.encode());
    assert_eq!(golden[0], 8, "PFS leaf type code");
    assert_eq!(Blockref::decode(&golden).unwrap(), br);
    // A PFS reference points to one 4096-byte record at level 0.
    let mut big = br;
    big.data = BlockData::Block(ptr(8192, b"x"));
    assert!(Blockref::decode(&big.encode()).is_err());
}

/// A dead-list entry (type 9): a copy of a dropped block's reference, keyed by birth tid
/// and sequence, its original type at byte 104.
#[test]
fn dead_reference_known_answer() {
    let br = Blockref {
        btype: BlockType::Dead,
        keybits: 0,
        level: 0,
        flags: 0,
        key: blockref::dead_key(0x0102_0304, 5),
        modify_tid: 0x0102_0304,
        mirror_tid: 0x0102_0305,
        data: BlockData::Block(ptr(65536, b"golden dead")),
        payload: Payload::Dead { original: BlockType::Data.code() },
    };
    let golden = assert_golden("blockref_dead", &br.encode());
    assert_eq!(golden[0], blockref::DEAD_TYPE_CODE, "DEAD type code");
    assert_eq!(golden[104], 3, "original type (DATA) at byte 104");
    assert_eq!(u64::from_le_bytes(golden[8..16].try_into().unwrap()), 0x0102_0304 << 24 | 5, "key");
    assert_eq!(Blockref::decode(&golden).unwrap(), br);
    assert_eq!(blockref::dead_key_birth(br.key), 0x0102_0304);
    // It stands for a tree block with content: not for a PFS record, a free-map leaf,
    // another dead entry, or nothing.
    for bad in [BlockType::Pfs.code(), BlockType::FreemapLeaf.code(), blockref::DEAD_TYPE_CODE, 0, 77] {
        let mut b = golden.clone();
        b[104] = bad;
        assert!(Blockref::decode(&b).is_err(), "original type {bad}");
    }
    let mut b = golden.clone();
    b[105] = 1;
    assert!(Blockref::decode(&b).is_err(), "payload past byte 104 is reserved");
}

fn inode_v2() -> InodeBlock {
    InodeBlock {
        inum: 0x0102_0304,
        parent: 1,
        mode: 0o100644,
        uid: 1,
        gid: 2,
        nlink: 1,
        size: 5,
        rdev: 0,
        atime: Timespec { sec: 1, nsec: 2 },
        mtime: Timespec { sec: 3, nsec: 4 },
        ctime: Timespec { sec: 5, nsec: 6 },
        btime: Timespec { sec: 7, nsec: 8 },
        version: 9,
        create_tid: 10,
        blocks: 0,
        policy: InodePolicy { copies: 3, compression: 3, zstd_level: 19 },
        content: InodeContent::Embedded(b"hello".to_vec()),
    }
}

#[test]
fn inode_layout2_golden_bytes() {
    let ino = inode_v2();
    let bytes = ino.encode();
    let golden = assert_golden("inode_layout2", &bytes);
    assert_eq!(InodeBlock::decode(&golden).unwrap(), ino);
    assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 2);
    assert_eq!(&bytes[136..140], &[3, 3, 19, 0]);
    // Default settings are written as layout 1, byte for byte what version 1 writes.
    let plain = InodeBlock { policy: InodePolicy::default(), ..ino.clone() };
    let b1 = plain.encode();
    assert_eq!(u16::from_le_bytes([b1[4], b1[5]]), 1);
    assert!(b1[136..256].iter().all(|&b| b == 0));
    assert_eq!(InodeBlock::decode(&b1).unwrap().policy, InodePolicy::default());
    // Layout 1 with a layout-2 field set, and layout 2 out of range, are refused.
    let mut bad = b1.clone();
    bad[136] = 2;
    assert!(InodeBlock::decode(&bad).is_err());
    for (at, v) in [(136, 5), (137, 4), (138, 20), (139, 1)] {
        let mut b = bytes.clone();
        b[at] = v;
        assert!(InodeBlock::decode(&b).is_err(), "byte {at} = {v}");
    }
}

proptest! {
    #[test]
    fn pfs_record_decoder_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4200)) {
        let _ = PfsRecord::decode(&bytes);
    }

    #[test]
    fn pfs_record_decoder_never_panics_on_mutations(at in 0usize..4092, v in any::<u8>()) {
        let mut b = record().encode();
        b[at] = v;
        let crc = crc32c::crc32c(&b[..4092]);
        b[4092..].copy_from_slice(&crc.to_le_bytes());
        if let Ok(r) = PfsRecord::decode(&b) {
            prop_assert_eq!(PfsRecord::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn version2_header_decoder_never_panics_on_mutations(at in 0usize..4092, v in any::<u8>()) {
        let mut b = header_v2().encode().to_vec();
        b[at] = v;
        let b = reseal(b);
        let _ = VolumeHeader::decode(&b);
    }
}
