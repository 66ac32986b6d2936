//! Compressed DATA references (format version 2, feature `COMPRESSED`; FORMAT.md
//! "Compression"): golden bytes, a known answer rebuilt from the offset table, the
//! decoder's refusals, and round trips of random compressed references.

use hammer2_format::blockref::{Copies, off};
use hammer2_format::*;
use proptest::prelude::*;

mod golden {
    include!("common/golden.rs");
}
use golden::assert_golden;

fn ptr(size: u32) -> BlockPtr {
    let mut c = Copies::new();
    c.push(Location::valid(0, RESERVED_BYTES + 0x0abc_d000));
    c.push(Location::valid(1, RESERVED_BYTES + 0x0123_4000));
    BlockPtr { size, check: CheckMethod::Crc32c.compute(b"golden compressed"), copies: c }
}

/// A 16 KiB block of a file stored in 8 KiB: an lz4 frame of 5000 bytes.
fn compressed(method: CompressionMethod) -> Blockref {
    Blockref {
        btype: BlockType::Data,
        keybits: 14,
        level: 0,
        flags: 0,
        key: 3 << 14,
        modify_tid: 0x0102_0304_0506_0708,
        mirror_tid: 0x1112_1314_1516_1718,
        data: BlockData::Block(ptr(8192)),
        payload: Payload::Compressed(Compression { method, logical_size: 16384, frame_len: 5000 }),
    }
}

#[test]
fn compressed_data_reference_golden_bytes() {
    for (name, m) in [("blockref_data_lz4", CompressionMethod::Lz4), ("blockref_data_zstd", CompressionMethod::Zstd)] {
        let br = compressed(m);
        let bytes = assert_golden(name, &br.encode());
        assert_eq!(Blockref::decode(&bytes).unwrap(), br);
    }
}

#[test]
fn compressed_data_reference_known_answer() {
    let br = compressed(CompressionMethod::Zstd);
    let mut raw = Blockref { payload: Payload::None, ..br }.encode();
    // What the table of FORMAT.md §5 adds to an uncompressed reference: byte 5 the method,
    // u32 @36 the logical size, u32 @104 the frame length; nothing else changes.
    raw[5] = 2;
    raw[36..40].copy_from_slice(&16384u32.to_le_bytes());
    raw[104..108].copy_from_slice(&5000u32.to_le_bytes());
    assert_eq!(br.encode(), raw);
    assert_eq!(br.logical_size(), 16384);
    assert_eq!(br.size(), 8192);
    assert_eq!(compressed(CompressionMethod::Lz4).encode()[5], 1);
}

#[test]
fn logical_size_zero_means_the_stored_size() {
    let mut br = compressed(CompressionMethod::Lz4);
    br.payload = Payload::Compressed(Compression { method: CompressionMethod::Lz4, logical_size: 0, frame_len: 100 });
    let back = Blockref::decode(&br.encode()).unwrap();
    assert_eq!(back.logical_size(), 8192);
    assert_eq!(back.encode(), br.encode());
}

fn refused(raw: &[u8], field: &str) {
    match Blockref::decode(raw) {
        Err(DecodeError::BadField { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected refusal {field:?}, got {other:?}"),
    }
}

#[test]
fn decoder_refuses_bad_combinations() {
    let good = compressed(CompressionMethod::Lz4).encode();

    // A method on a reference that is not DATA (an INODE reference of 4 KiB).
    let inode = Blockref {
        btype: BlockType::Inode,
        keybits: 0,
        key: 5,
        data: BlockData::Block(ptr(4096)),
        payload: Payload::None,
        ..compressed(CompressionMethod::Lz4)
    };
    let mut raw = inode.encode();
    raw[off::COMPRESSION] = 1;
    refused(&raw, "compression on a non-DATA reference");

    // An unknown method.
    let mut raw = good;
    raw[off::COMPRESSION] = 3;
    refused(&raw, "compression method");

    // Frame longer than the stored bytes, or empty.
    let mut raw = good;
    raw[off::FRAME_LEN..off::FRAME_LEN + 4].copy_from_slice(&8193u32.to_le_bytes());
    refused(&raw, "compressed length");
    let mut raw = good;
    raw[off::FRAME_LEN..off::FRAME_LEN + 4].copy_from_slice(&0u32.to_le_bytes());
    refused(&raw, "compressed length");

    // Logical size above the data block size (keybits 14: 16 KiB).
    let mut raw = good;
    raw[off::LOGICAL_SIZE..off::LOGICAL_SIZE + 4].copy_from_slice(&16385u32.to_le_bytes());
    refused(&raw, "logical size");

    // An uncompressed reference keeps bytes 36..40 and the payload zero (as in version 1).
    let plain = Blockref { payload: Payload::None, ..compressed(CompressionMethod::Lz4) }.encode();
    let mut raw = plain;
    raw[off::LOGICAL_SIZE] = 1;
    assert!(matches!(Blockref::decode(&raw), Err(DecodeError::Reserved { .. })));
    let mut raw = plain;
    raw[off::FRAME_LEN] = 1;
    assert!(matches!(Blockref::decode(&raw), Err(DecodeError::Reserved { .. })));
    // Bytes 6..8 stay reserved.
    let mut raw = good;
    raw[6] = 1;
    assert!(matches!(Blockref::decode(&raw), Err(DecodeError::Reserved { .. })));
    // Bytes past the frame length are reserved.
    let mut raw = good;
    raw[off::FRAME_END] = 1;
    assert!(matches!(Blockref::decode(&raw), Err(DecodeError::Reserved { .. })));
}

proptest! {
    #[test]
    fn compressed_references_round_trip(
        units in 1u32..=4,
        frame in 1u32..=16384,
        logical in 0u32..=16384,
        zstd in any::<bool>(),
    ) {
        let size = units * 4096;
        let method = if zstd { CompressionMethod::Zstd } else { CompressionMethod::Lz4 };
        let br = Blockref {
            data: BlockData::Block(ptr(size)),
            payload: Payload::Compressed(Compression { method, logical_size: logical, frame_len: frame }),
            ..compressed(method)
        };
        let decoded = Blockref::decode(&br.encode());
        if frame <= size {
            prop_assert_eq!(decoded.unwrap(), br);
        } else {
            prop_assert!(decoded.is_err());
        }
    }

    #[test]
    fn decoder_never_panics_on_mutations_of_a_compressed_reference(at in 0usize..128, v in any::<u8>()) {
        let mut b = compressed(CompressionMethod::Lz4).encode();
        b[at] = v;
        if let Ok(r) = Blockref::decode(&b) {
            prop_assert_eq!(r.encode(), b);
        }
    }
}
