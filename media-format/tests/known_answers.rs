//! Known answers: every on-disk structure, built byte by byte from the offsets and codes
//! that `FORMAT.md` gives, must equal what the encoder writes, and must decode back to the
//! value it came from. The expected bytes are written here from the specification, not
//! taken from the encoder, so a change to a field's offset, width, code or order fails
//! here even when encoder and decoder were changed together.

use hammer2_format::blockref::{Copies, FLAG_DEGRADED};
use hammer2_format::*;

/// A little-endian image under construction, written at the specification's offsets.
struct Spec(Vec<u8>);

impl Spec {
    fn new(len: usize) -> Spec {
        Spec(vec![0; len])
    }
    fn put(&mut self, off: usize, bytes: &[u8]) -> &mut Spec {
        self.0[off..off + bytes.len()].copy_from_slice(bytes);
        self
    }
    fn u8(&mut self, off: usize, v: u8) -> &mut Spec {
        self.put(off, &[v])
    }
    fn u16(&mut self, off: usize, v: u16) -> &mut Spec {
        self.put(off, &v.to_le_bytes())
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Spec {
        self.put(off, &v.to_le_bytes())
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Spec {
        self.put(off, &v.to_le_bytes())
    }
}

/// FORMAT.md §5: a copy location is `offset / 4096` in bits 0..48, the device in 48..56
/// and the state (1 VALID, 2 MISSING) in 56..64.
fn location(state: u64, device: u64, offset: u64) -> u64 {
    (offset / 4096) | (device << 48) | (state << 56)
}

/// FORMAT.md §4's test vector: CRC-32C of ASCII `123456789`.
const VECTOR: &[u8] = b"123456789";
const VECTOR_CRC32C: u32 = 0xE306_9283;
/// BLAKE3 of the empty input (the reference implementation's published vector).
const BLAKE3_EMPTY: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn two_copies() -> Copies {
    let mut copies = Copies::new();
    copies.push(Location::valid(0, RESERVED_BYTES + 4096));
    copies.push(Location::valid(1, RESERVED_BYTES + 8192));
    copies
}

fn assert_known(what: &str, encoded: &[u8], spec: &Spec) {
    if let Some(at) = encoded.iter().zip(&spec.0).position(|(a, b)| a != b) {
        panic!(
            "{what}: byte {at} is {:#04x}, FORMAT.md says {:#04x} (encoded {} bytes, spec {})",
            encoded[at],
            spec.0[at],
            encoded.len(),
            spec.0.len()
        );
    }
    assert_eq!(encoded.len(), spec.0.len(), "{what}: length");
}

/// The 32-byte check field (reference bytes 72..104) a method stores for `content`.
fn check_field(method: CheckMethod, content: &[u8]) -> Vec<u8> {
    let ptr = BlockPtr { size: 4096, check: method.compute(content), copies: two_copies() };
    let br = Blockref { btype: BlockType::Data, data: BlockData::Block(ptr), ..Blockref::EMPTY };
    br.encode()[72..104].to_vec()
}

#[test]
fn check_values_are_the_published_vectors() {
    let mut want = vec![0u8; 32];
    want[..4].copy_from_slice(&VECTOR_CRC32C.to_le_bytes());
    assert_eq!(check_field(CheckMethod::Crc32c, VECTOR), want, "crc32c: bytes 0..4, little-endian, the rest zero");
    assert_eq!(check_field(CheckMethod::Blake3, b""), hex(BLAKE3_EMPTY), "blake3: all 32 bytes");
}

#[test]
fn data_reference_with_two_copies() {
    let br = Blockref {
        btype: BlockType::Data,
        keybits: 14,
        level: 0,
        flags: 0,
        key: 3 << 14,
        modify_tid: 5,
        mirror_tid: 6,
        data: BlockData::Block(BlockPtr {
            size: 16384,
            check: CheckMethod::Crc32c.compute(VECTOR),
            copies: two_copies(),
        }),
        payload: Payload::None,
    };
    let mut s = Spec::new(128);
    s.u8(0, 3).u8(1, 1).u8(2, 14).u8(3, 0).u8(4, 0);
    s.u64(8, 3 << 14).u64(16, 5).u64(24, 6).u32(32, 16384);
    s.u64(40, location(1, 0, (8 << 20) + 4096)).u64(48, location(1, 1, (8 << 20) + 8192));
    s.u32(72, VECTOR_CRC32C);
    assert_known("DATA reference", &br.encode(), &s);
    assert_eq!(Blockref::decode(&s.0).unwrap(), br);
}

#[test]
fn degraded_indirect_reference_with_a_missing_copy_and_blake3() {
    let mut copies = Copies::new();
    copies.push(Location::valid(2, 64 << 20));
    copies.push(Location::missing(3));
    let br = Blockref {
        btype: BlockType::Indirect,
        keybits: 0,
        level: 2,
        flags: FLAG_DEGRADED,
        key: 0x1234,
        modify_tid: 7,
        mirror_tid: 9,
        data: BlockData::Block(BlockPtr { size: 65536, check: CheckMethod::Blake3.compute(b""), copies }),
        payload: Payload::None,
    };
    let mut s = Spec::new(128);
    s.u8(0, 2).u8(1, 2).u8(3, 2).u8(4, 1).u64(8, 0x1234).u64(16, 7).u64(24, 9).u32(32, 65536);
    s.u64(40, location(1, 2, 64 << 20)).u64(48, location(2, 3, 0));
    s.put(72, &hex(BLAKE3_EMPTY));
    assert_known("INDIRECT reference", &br.encode(), &s);
    assert_eq!(Blockref::decode(&s.0).unwrap(), br);
}

#[test]
fn inline_directory_entry() {
    let key = dirent::dirent_key_base(b"hello") | 2;
    let br = Blockref {
        btype: BlockType::Dirent,
        keybits: 0,
        level: 0,
        flags: 0,
        key,
        modify_tid: 4,
        mirror_tid: 4,
        data: BlockData::Inline(dirent::inline_name(b"hello").unwrap()),
        payload: Payload::Dirent { inum: 77, name_len: 5, dtype: dtype::REG },
    };
    let mut s = Spec::new(128);
    s.u8(0, 4).u64(8, key).u64(16, 4).u64(24, 4).put(40, b"hello");
    s.u64(104, 77).u16(112, 5).u8(114, 8);
    assert_known("inline DIRENT", &br.encode(), &s);
    assert_eq!(Blockref::decode(&s.0).unwrap(), br);
}

#[test]
fn xattr_freemap_leaf_and_orphan_payloads() {
    let ptr = BlockPtr { size: 4096, check: CheckMethod::Crc32c.compute(VECTOR), copies: two_copies() };
    let xattr = Blockref {
        btype: BlockType::Xattr,
        keybits: 0,
        level: 0,
        flags: 0,
        key: dirent::xattr_key_base(b"user.a"),
        modify_tid: 2,
        mirror_tid: 2,
        data: BlockData::Block(ptr),
        payload: Payload::Xattr { name_len: 6, value_len: 10 },
    };
    let mut s = Spec::new(128);
    s.u8(0, 5).u8(1, 1).u64(8, xattr.key).u64(16, 2).u64(24, 2).u32(32, 4096);
    s.u64(40, location(1, 0, (8 << 20) + 4096)).u64(48, location(1, 1, (8 << 20) + 8192));
    s.u32(72, VECTOR_CRC32C).u16(104, 6).u32(108, 10);
    assert_known("XATTR reference", &xattr.encode(), &s);
    assert_eq!(Blockref::decode(&s.0).unwrap(), xattr);

    let leaf = Blockref {
        btype: BlockType::FreemapLeaf,
        key: layout::freemap_key(1, 3),
        data: BlockData::Block(BlockPtr { size: 16384, ..ptr }),
        payload: Payload::FreemapLeaf { free_units: 131_000 },
        ..xattr
    };
    s.u8(0, 6).u64(8, (1 << 32) | 3).u32(32, 16384).u16(104, 0).u32(108, 0).u64(104, 131_000);
    assert_known("FREEMAP_LEAF reference", &leaf.encode(), &s);
    assert_eq!(Blockref::decode(&s.0).unwrap(), leaf);

    let orphan = Blockref { btype: BlockType::Orphan, key: 42, data: BlockData::None, payload: Payload::None, ..xattr };
    let mut s = Spec::new(128);
    s.u8(0, 7).u64(8, 42).u64(16, 2).u64(24, 2);
    assert_known("ORPHAN reference", &orphan.encode(), &s);
    assert_eq!(Blockref::decode(&s.0).unwrap(), orphan);
    assert_eq!(Blockref::EMPTY.encode(), [0u8; 128], "EMPTY is 128 zero bytes");
}

fn sample_inode(content: InodeContent) -> InodeBlock {
    InodeBlock {
        inum: 42,
        parent: 0,
        mode: 0o100644,
        uid: 1000,
        gid: 1001,
        nlink: 1,
        size: 10,
        rdev: 0,
        atime: Timespec { sec: 1, nsec: 2 },
        mtime: Timespec { sec: 3, nsec: 4 },
        ctime: Timespec { sec: 5, nsec: 6 },
        btime: Timespec { sec: -7, nsec: 999_999_999 },
        version: 9,
        create_tid: 3,
        blocks: 0,
        policy: InodePolicy::default(),
        content,
    }
}

/// FORMAT.md §7: the 256-byte inode header.
fn inode_header(s: &mut Spec, content: u8, root_level: u8, size: u64, blocks: u64) {
    s.put(0, b"INOD").u16(4, 1).u8(6, content).u8(7, root_level);
    s.u64(8, 42).u64(16, 0).u32(24, 0o100644).u32(28, 1000).u32(32, 1001).u32(36, 1);
    s.u64(40, size).u64(48, 0);
    s.u64(56, 1).u32(64, 2); // atime
    s.u64(68, 3).u32(76, 4); // mtime
    s.u64(80, 5).u32(88, 6); // ctime
    s.u64(92, (-7i64) as u64).u32(100, 999_999_999); // btime
    s.u64(104, 9).u64(112, 0).u64(120, 3).u64(128, blocks);
}

#[test]
fn embedded_inode() {
    let ino = sample_inode(InodeContent::Embedded(b"small file".to_vec()));
    let mut s = Spec::new(4096);
    inode_header(&mut s, 1, 0, 10, 0);
    s.put(256, b"small file");
    assert_known("embedded inode", &ino.encode(), &s);
    assert_eq!(InodeBlock::decode(&s.0).unwrap(), ino);
}

#[test]
fn inode_with_a_tree_root_blockset() {
    let leaf = |k: u64| Blockref {
        btype: BlockType::Data,
        keybits: 14,
        level: 0,
        flags: 0,
        key: k << 14,
        modify_tid: 3,
        mirror_tid: 3,
        data: BlockData::Block(BlockPtr {
            size: 16384,
            check: CheckMethod::Crc32c.compute(VECTOR),
            copies: two_copies(),
        }),
        payload: Payload::None,
    };
    let mut ino = sample_inode(InodeContent::Tree { root_level: 0, entries: vec![leaf(0), leaf(1)] });
    ino.size = 32768;
    ino.blocks = 32768;
    let mut s = Spec::new(4096);
    inode_header(&mut s, 0, 0, 32768, 32768);
    s.put(256, &leaf(0).encode()).put(384, &leaf(1).encode());
    assert_known("tree inode", &ino.encode(), &s);
    assert_eq!(InodeBlock::decode(&s.0).unwrap(), ino);
}

#[test]
fn indirect_block_is_its_entries_then_zeros() {
    let a = Blockref { btype: BlockType::Orphan, key: 5, modify_tid: 1, mirror_tid: 1, ..Blockref::EMPTY };
    let b = Blockref { key: 9, ..a };
    let mut s = Spec::new(4096);
    s.put(0, &a.encode()).put(128, &b.encode());
    assert_known("indirect block", &indirect::encode(&[a, b], 4096), &s);
    assert_eq!(indirect::decode(&s.0, 1).unwrap(), vec![a, b]);
}

#[test]
fn xattr_and_name_blocks() {
    let mut s = Spec::new(4096);
    s.u16(0, 6).u16(2, 0).u32(4, 10).put(8, b"user.a").put(14, b"0123456789");
    assert_known("xattr block", &xattr::encode(b"user.a", b"0123456789"), &s);
    assert_eq!(xattr::decode(&s.0).unwrap(), (b"user.a".to_vec(), b"0123456789".to_vec()));

    let name = [b'n'; 100];
    let mut s = Spec::new(4096);
    s.put(0, &name);
    assert_known("name block", &dirent::encode_name_block(&name), &s);
    assert_eq!(dirent::decode_name_block(&s.0, 100).unwrap(), name.to_vec());
}

#[test]
fn freemap_bits_and_keys() {
    // Bit i of a leaf is bit i % 8 of byte i / 8; set = allocated.
    let mut bits = vec![0u8; FREEMAP_LEAF_SIZE];
    freemap::set(&mut bits, 0, true);
    freemap::set(&mut bits, 9, true);
    freemap::set(&mut bits, 131_071, true);
    let mut s = Spec::new(FREEMAP_LEAF_SIZE);
    s.u8(0, 0b0000_0001).u8(1, 0b0000_0010).u8(16383, 0b1000_0000);
    assert_known("free-map leaf", &bits, &s);
    assert_eq!(freemap::count_free(&bits), 131_072 - 3);
    assert_eq!(layout::freemap_key(2, 7), (2 << 32) | 7);
    assert_eq!(freemap::leaves_for(24 << 20), 1);
    assert_eq!(freemap::leaves_for((512 << 20) + 4096), 2);
}

#[test]
fn names_hash_to_the_documented_keys() {
    assert_eq!(dirent::name_hash(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(dirent::name_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(dirent::name_hash(b"foo"), 0xdcb2_7518_fed9_d577);
    assert_eq!(dirent::dirent_key_base(b"a"), 0x2f63_dc4c_8601_8000);
    assert_eq!(dirent::xattr_key_base(b"a"), 0xaf63_dc4c_8601_8000);
}

fn sample_header() -> VolumeHeader {
    let dev = |i: u8, state| DeviceEntry {
        uuid: [0x10 + i; 16],
        size: 1 << 30,
        synced_tid: 10 - u64::from(i),
        free_units: 1000 + u64::from(i),
        missed_since: u64::from(i) * 8,
        read_errors: 1,
        write_errors: 2,
        check_errors: 3,
        repaired: 4,
        regions: 1,
        state,
    };
    let root = Blockref {
        btype: BlockType::Indirect,
        keybits: 0,
        level: 1,
        flags: 0,
        key: 1,
        modify_tid: 10,
        mirror_tid: 10,
        data: BlockData::Block(BlockPtr {
            size: 4096,
            check: CheckMethod::Crc32c.compute(VECTOR),
            copies: two_copies(),
        }),
        payload: Payload::None,
    };
    VolumeHeader {
        tid: 10,
        fs_uuid: [9; 16],
        device_uuid: [0x11; 16],
        device_index: 1,
        copies: 2,
        check: CheckMethod::Blake3,
        slot: 2,
        flags: 1,
        device_size: 1 << 30,
        next_inum: 100,
        commit_time_ns: 123_456,
        mkfs_time_ns: 100_000,
        data_block_shift: 14,
        indirect_block_shift: 16,
        version: FORMAT_VERSION,
        default_compression: 0,
        default_zstd_level: 0,
        incompat_features: 0,
        compat_features: 0,
        label: "demo".into(),
        sroot: [root, Blockref { key: 0, ..root }, Blockref::EMPTY, Blockref::EMPTY],
        devices: vec![dev(0, DeviceState::Online), dev(1, DeviceState::Stale)],
    }
}

#[test]
fn volume_header_and_device_table() {
    let h = sample_header();
    let mut s = Spec::new(4096);
    s.put(0, b"HMR2LIKE").u32(8, 1).u32(12, 4096).u64(16, 10).put(24, &[9; 16]).put(40, &[0x11; 16]);
    s.u16(56, 1).u16(58, 2).u8(60, 2).u8(61, 2).u8(62, 2).u8(63, 1);
    s.u64(64, 1 << 30).u64(72, 100).u64(80, 123_456).u64(88, 100_000).u8(96, 14).u8(97, 16);
    s.put(128, b"demo");
    s.put(256, &h.sroot[0].encode()).put(384, &h.sroot[1].encode());
    for (i, state) in [(0usize, 1u8), (1, 3)] {
        let o = 768 + 80 * i;
        let n = i as u64;
        s.put(o, &[0x10 + i as u8; 16]).u64(o + 16, 1 << 30).u64(o + 24, 10 - n).u64(o + 32, 1000 + n);
        s.u64(o + 40, n * 8)
            .u32(o + 48, 1)
            .u32(o + 52, 2)
            .u32(o + 56, 3)
            .u32(o + 60, 4)
            .u8(o + 64, 1)
            .u8(o + 65, state);
    }
    let crc = crc32c::crc32c(&s.0[..4092]);
    s.u32(4092, crc);
    assert_known("volume header", &h.encode(), &s);
    assert_eq!(VolumeHeader::decode(&s.0).unwrap(), h);
}

#[test]
fn a_label_is_cut_at_a_character_boundary() {
    // 63 ASCII bytes and a 2-byte character: 65 bytes, one more than the field holds. The
    // character must go whole, or the header would not decode (its label is not UTF-8).
    let mut h = sample_header();
    h.label = format!("{}é", "x".repeat(63));
    let back = VolumeHeader::decode(&h.encode()).expect("a cut label still decodes");
    assert_eq!(back.label, "x".repeat(63));
}

#[test]
fn device_sizes_are_whole_units() {
    let mut h = sample_header();
    h.devices[0].size += 512;
    assert!(VolumeHeader::decode(&h.encode()).is_err(), "a device table size that is not a multiple of 4096");
    let mut h = sample_header();
    h.devices[1].size += 512;
    h.device_size += 512;
    assert!(VolumeHeader::decode(&h.encode()).is_err(), "the header's own device size");
}

#[test]
fn a_label_cut_inside_any_character_stays_valid_utf8() {
    // Characters of two, three and four bytes straddling the 64-byte field at every offset:
    // the stored label is the longest prefix that ends on a character boundary.
    for ch in ['é', '€', '😀'] {
        for ascii in 54..64 {
            let mut h = sample_header();
            h.label = format!("{}{}", "x".repeat(ascii), ch.to_string().repeat(5));
            let bytes = h.encode();
            let back = VolumeHeader::decode(&bytes).expect("a cut label still decodes").label;
            assert!(back.len() <= LABEL_MAX && h.label.starts_with(&back), "{ch} after {ascii}: {back}");
            let next = h.label[back.len()..].chars().next().map_or(0, char::len_utf8);
            assert!(back == h.label || back.len() + next > LABEL_MAX, "{ch} after {ascii}: cut shorter than needed");
        }
    }
}

#[test]
fn freemap_words_are_the_leaf_bits_in_little_endian_u64s() {
    let mut bits = vec![0u8; FREEMAP_LEAF_SIZE];
    for i in [0, 7, 8, 63, 64, 65, 1000, 131_071] {
        freemap::set(&mut bits, i, true);
    }
    let words: Vec<u64> = freemap::words(&bits).collect();
    assert_eq!(words.len(), freemap::LEAF_WORDS);
    assert_eq!(words[0], (1 << 0) | (1 << 7) | (1 << 8) | (1 << 63));
    assert_eq!(words[1], 0b11);
    for i in 0..FREEMAP_LEAF_UNITS {
        let w = words[(i / freemap::WORD_BITS) as usize];
        assert_eq!(w & (1 << (i % freemap::WORD_BITS)) != 0, freemap::get(&bits, i), "bit {i}");
    }
    assert_eq!(freemap::word(&bits, 15), words[15]);
    assert_eq!(freemap::bytes_of_words(&words), bits);
}
