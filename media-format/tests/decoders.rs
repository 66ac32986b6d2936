//! Every decoder: round-trips what its encoder wrote, and answers any byte sequence with a
//! value or an error, never a panic (the fuzz-like half runs on random and mutated bytes).

use hammer2_format::blockref::{Copies, FLAG_DEGRADED, decode_blockset};
use hammer2_format::*;
use proptest::prelude::*;

mod common {
    include!("common/samples.rs");
}
use common::*;

#[test]
fn blockref_round_trips_for_every_shape() {
    let mut dirent = Blockref {
        btype: BlockType::Dirent,
        keybits: 0,
        level: 0,
        flags: 0,
        key: 0x8000,
        modify_tid: 1,
        mirror_tid: 1,
        data: BlockData::Inline(dirent::inline_name(b"hello").unwrap()),
        payload: Payload::Dirent { inum: 5, name_len: 5, dtype: dtype::REG },
    };
    for br in [sample_data_ref(65536), dirent] {
        assert_eq!(Blockref::decode(&br.encode()).unwrap(), br);
    }
    dirent.data = BlockData::Block(BlockPtr { size: 4096, ..sample_ptr(4096) });
    dirent.payload = Payload::Dirent { inum: 5, name_len: 100, dtype: dtype::DIR };
    assert_eq!(Blockref::decode(&dirent.encode()).unwrap(), dirent);
    assert_eq!(Blockref::decode(&[0u8; 128]).unwrap(), Blockref::EMPTY);
}

#[test]
fn a_missing_copy_requires_the_degraded_flag() {
    let mut br = sample_data_ref(0);
    let mut copies = Copies::new();
    copies.push(Location::valid(0, RESERVED_BYTES));
    copies.push(Location::missing(1));
    br.data = BlockData::Block(BlockPtr { copies, ..sample_ptr(65536) });
    assert!(Blockref::decode(&br.encode()).is_err());
    br.flags = FLAG_DEGRADED;
    assert_eq!(Blockref::decode(&br.encode()).unwrap(), br);
}

#[test]
fn a_copy_pointing_into_the_header_area_is_rejected() {
    let mut br = sample_data_ref(0);
    let mut copies = Copies::new();
    copies.push(Location::valid(0, 4096));
    br.data = BlockData::Block(BlockPtr { copies, ..sample_ptr(65536) });
    assert!(Blockref::decode(&br.encode()).is_err());
}

#[test]
fn inode_round_trips_embedded_and_tree() {
    let a = sample_inode(InodeContent::Embedded(b"small file".to_vec()));
    assert_eq!(InodeBlock::decode(&a.encode()).unwrap(), a);
    let b =
        sample_inode(InodeContent::Tree { root_level: 0, entries: vec![sample_data_ref(0), sample_data_ref(65536)] });
    assert_eq!(InodeBlock::decode(&b.encode()).unwrap(), b);
}

#[test]
fn inode_tree_with_unsorted_keys_is_rejected() {
    let b =
        sample_inode(InodeContent::Tree { root_level: 0, entries: vec![sample_data_ref(65536), sample_data_ref(0)] });
    assert!(InodeBlock::decode(&b.encode()).is_err());
}

#[test]
fn volume_header_round_trips_and_detects_any_flipped_bit() {
    let h = sample_header();
    let bytes = h.encode();
    assert_eq!(VolumeHeader::decode(&bytes).unwrap(), h);
    for bit in [0usize, 8 * 100, 8 * 300 + 3, 8 * 4000, 8 * 4095 + 7] {
        let mut b = bytes;
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(VolumeHeader::decode(&b).is_err(), "bit {bit}");
    }
}

#[test]
fn xattr_and_name_blocks_round_trip() {
    let b = xattr::encode(b"user.k", b"value");
    assert_eq!(xattr::decode(&b).unwrap(), (b"user.k".to_vec(), b"value".to_vec()));
    let long = vec![b'n'; 200];
    assert_eq!(dirent::decode_name_block(&dirent::encode_name_block(&long), 200).unwrap(), long);
}

#[test]
fn name_hash_is_the_documented_fnv1a() {
    assert_eq!(dirent::name_hash(b""), 0xcbf29ce484222325);
    assert_eq!(dirent::name_hash(b"a"), 0xaf63dc4c8601ec8c);
    assert!(dirent::dirent_key_base(b"x") >= 0x8000);
    assert!(dirent::dirent_key_base(b"x") < XATTR_KEY_BIT);
    assert!(dirent::xattr_key_base(b"x") >= XATTR_KEY_BIT);
}

fn decode_all(bytes: &[u8]) {
    let _ = Blockref::decode(bytes);
    let _ = InodeBlock::decode(bytes);
    let _ = InodeBlock::decode_within(bytes, 2);
    let _ = VolumeHeader::decode(bytes);
    let _ = xattr::decode(bytes);
    let _ = dirent::decode_name_block(bytes, 100);
    for level in 0..3 {
        let _ = indirect::decode(bytes, level);
        let _ = decode_blockset(bytes, bytes.len() / 128, level);
        let _ = indirect::decode_within(bytes, level, 1);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_any_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..9000)) {
        decode_all(&bytes);
    }

    #[test]
    fn mutated_valid_structures_never_panic(seed in 0usize..4, flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..16)) {
        let mut bytes = match seed {
            0 => sample_header().encode().to_vec(),
            1 => sample_inode(InodeContent::Tree { root_level: 0, entries: vec![sample_data_ref(0)] }).encode(),
            2 => { let mut v = sample_data_ref(0).encode().to_vec(); v.resize(4096, 0); v }
            _ => xattr::encode(b"user.a", &[1; 300]),
        };
        for (at, x) in flips {
            let i = at % bytes.len();
            bytes[i] ^= x;
        }
        decode_all(&bytes);
        // A header whose check code was recomputed exercises the field validation behind it.
        if bytes.len() == HEADER_SIZE {
            let crc = crc32c::crc32c(&bytes[..HEADER_SIZE - 4]);
            bytes[HEADER_SIZE - 4..].copy_from_slice(&crc.to_le_bytes());
            let _ = VolumeHeader::decode(&bytes);
        }
    }

    #[test]
    fn blockrefs_round_trip(key in any::<u64>(), tid in 1u64..1000, off in 2048u64..(1 << 40), dev in 0u8..16, size_units in 1u32..16) {
        let mut copies = Copies::new();
        copies.push(Location::valid(dev, off * UNIT));
        let br = Blockref {
            btype: BlockType::Data, keybits: 20, level: 0, flags: 0, key,
            modify_tid: tid, mirror_tid: tid + 1,
            data: BlockData::Block(BlockPtr { size: size_units * 4096, check: CheckMethod::Blake3.compute(&key.to_le_bytes()), copies }),
            payload: Payload::None,
        };
        prop_assert_eq!(Blockref::decode(&br.encode()).unwrap(), br);
    }
}

#[test]
fn a_copy_on_a_device_the_filesystem_does_not_have_is_rejected() {
    // FORMAT.md §5: a copy's device index is below the device count, VALID or MISSING.
    let copy_device = |e: DecodeError| matches!(e, DecodeError::BadField { field: "copy device", .. });
    let on = |copies: &[Location]| {
        let mut br = sample_data_ref(0);
        br.flags = FLAG_DEGRADED;
        br.data = BlockData::Block(BlockPtr { copies: copies.iter().copied().collect(), ..sample_ptr(65536) });
        br
    };
    for br in [
        on(&[Location::valid(0, RESERVED_BYTES), Location::valid(2, RESERVED_BYTES)]),
        on(&[Location::valid(0, RESERVED_BYTES), Location::missing(2)]),
    ] {
        let bytes = br.encode();
        assert_eq!(Blockref::decode_within(&bytes, 3).unwrap(), br, "device 2 of 3");
        assert!(copy_device(Blockref::decode_within(&bytes, 2).unwrap_err()), "device 2 of 2");
        assert_eq!(Blockref::decode(&bytes).unwrap(), br, "without a device count: any index below 16");

        let node = indirect::encode(&[br], 4096);
        assert!(indirect::decode_within(&node, 1, 3).is_ok());
        assert!(copy_device(indirect::decode_within(&node, 1, 2).unwrap_err()), "an entry of an indirect block");
        let ino = sample_inode(InodeContent::Tree { root_level: 0, entries: vec![br] }).encode();
        assert!(InodeBlock::decode_within(&ino, 3).is_ok());
        assert!(copy_device(InodeBlock::decode_within(&ino, 2).unwrap_err()), "an entry of an inode's root");
    }

    // A header knows its device count: its roots are checked against it.
    let mut h = sample_header();
    let ok = h.encode();
    assert_eq!(VolumeHeader::decode(&ok).unwrap(), h);
    h.sroot[0].ptr_mut().unwrap().copies.as_mut_slice()[1] = Location::valid(2, RESERVED_BYTES + 8192);
    assert!(copy_device(VolumeHeader::decode(&h.encode()).unwrap_err()), "a root copy on device 2 of 2");
}

#[test]
fn a_damaged_header_still_tells_its_identity() {
    let h = sample_header();
    let mut bytes = h.encode();
    bytes[HEADER_SIZE - 1] ^= 1;
    assert!(VolumeHeader::decode(&bytes).is_err());
    let raw = VolumeHeader::raw_identity(&bytes).expect("the magic is intact");
    assert_eq!((raw.tid, raw.fs_uuid, raw.device_uuid), (h.tid, h.fs_uuid, h.device_uuid));
    bytes[0] ^= 1;
    assert_eq!(VolumeHeader::raw_identity(&bytes), None, "no magic");
    assert_eq!(VolumeHeader::raw_identity(&h.encode()[..100]), None, "short");
}
