//! Pins the encoded size of every on-disk structure: a change here is a format change.

use hammer2_format::*;

#[test]
fn blockref_encodes_to_128_bytes() {
    assert_eq!(Blockref::EMPTY.encode().len(), 128);
    assert_eq!(BLOCKREF_SIZE, 128);
}

#[test]
fn inode_block_encodes_to_4096_bytes_with_30_root_slots() {
    let ino = common::sample_inode(InodeContent::Embedded(vec![7; 100]));
    assert_eq!(ino.encode().len(), 4096);
    assert_eq!(INODE_ROOT_ENTRIES, 30);
    assert_eq!(INODE_EMBED_MAX, 3840);
}

#[test]
fn volume_header_encodes_to_4096_bytes() {
    assert_eq!(common::sample_header().encode().len(), 4096);
}

#[test]
fn freemap_leaf_covers_512_mib() {
    assert_eq!(FREEMAP_LEAF_SIZE, 16384);
    assert_eq!(FREEMAP_LEAF_UNITS * UNIT, 512 << 20);
}

#[test]
fn indirect_block_of_64k_has_512_slots() {
    assert_eq!(hammer2_format::indirect::slots(65536), 512);
    assert_eq!(hammer2_format::indirect::encode(&[], 65536).len(), 65536);
}

#[test]
fn xattr_block_sizes_round_up_to_units() {
    assert_eq!(hammer2_format::xattr::block_size(4, 10), Some(4096));
    assert_eq!(hammer2_format::xattr::block_size(255, 65536), Some(69632));
    assert_eq!(hammer2_format::xattr::block_size(0, 1), None);
}

#[test]
fn header_slots_sit_at_fixed_offsets_inside_the_reserved_area() {
    let offs: Vec<u64> = (0..HEADER_SLOTS).map(header_offset).collect();
    assert_eq!(offs, vec![0, 2 << 20, 4 << 20, 6 << 20]);
    assert_eq!(RESERVED_BYTES, 8 << 20);
}

mod common {
    include!("common/samples.rs");
}

#[test]
fn named_offsets_end_where_format_md_says() {
    use hammer2_format::{blockref, inode, volume, xattr};
    assert_eq!(volume::off::DEVICE_TABLE_END, 2048, "device table: 16 entries of 80 bytes from 768");
    assert_eq!(volume::off::CRC, 4092);
    assert_eq!(volume::off::SROOT + SROOT_COUNT * BLOCKREF_SIZE, volume::off::DEVICE_TABLE);
    assert_eq!(blockref::off::COPIES + MAX_COPIES * blockref::off::COPY_SIZE, blockref::off::CHECK);
    assert_eq!(blockref::off::CHECK + blockref::off::CHECK_SIZE, blockref::off::PAYLOAD);
    assert_eq!(blockref::off::PAYLOAD_SIZE, 24);
    assert_eq!(blockref::off::INLINE_NAME + INLINE_NAME_MAX, blockref::off::PAYLOAD);
    assert_eq!(inode::off::TIMES + inode::off::TIMES_COUNT * inode::off::TIME_SIZE, inode::off::VERSION);
    assert_eq!(inode::off::UNION, 256);
    assert_eq!(xattr::off::NAME, 8);
}
