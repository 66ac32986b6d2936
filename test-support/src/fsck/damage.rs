//! Precise damage, one kind at a time: through the engine's test hooks
//! (`hammer2::testing`: what a buggy engine would commit) or by writing bytes over
//! a block's copies (what a disk would do).

use super::image::{Img, lookup};
use super::raw::{Node, Raw, Tree, find};
use hammer2::Fs;
use hammer2::testing;
use hammer2_format::{BlockType, Blockref};

/// Mounts, lets `f` change the in-memory state, commits with unmount.
pub fn with_engine(img: &Img, f: impl FnOnce(&Fs)) {
    let fs = img.mount();
    f(&fs);
    fs.unmount().expect("unmount");
}

/// The committed reference of the data block at `offset` of `path`.
pub fn data_ref(fs: &Fs, path: &str, offset: u64) -> Blockref {
    testing::data_ref(fs, lookup(fs, path), offset)
}

/// Sets the link count of `path` behind the engine's back.
pub fn set_nlink(fs: &Fs, path: &str, nlink: u32) {
    testing::set_nlink(fs, lookup(fs, path), nlink);
}

/// Adds an entry `name` -> `target` in directory `dir`, as if created (size and, for a
/// directory target, link count follow).
pub fn add_entry(fs: &Fs, dir: &str, name: &[u8], target: u64, dt: u8) {
    testing::add_entry(fs, lookup(fs, dir), name, target, dt);
}

/// Removes the entry `name` from `dir` without touching the inode it names (size and, for
/// a directory, link count follow).
pub fn remove_entry(fs: &Fs, dir: &str, name: &[u8]) {
    testing::remove_entry(fs, lookup(fs, dir), name);
}

pub fn set_parent(fs: &Fs, path: &str, parent: u64) {
    testing::set_parent(fs, lookup(fs, path), parent);
}

/// Marks `count` units from `offset` of device 0 as used, with nothing using them.
pub fn leak(fs: &Fs, units: u64) -> u64 {
    testing::leak(fs, units)
}

/// Marks the units of a block free in the free map while the block stays in use.
pub fn free_map_hole(fs: &Fs, br: &Blockref) {
    testing::free_map_hole(fs, br);
}

/// Overwrites copy `slot` of a block with garbage (the check value no longer matches).
pub fn spoil_copy(img: &Img, br: &Blockref, slot: usize) {
    let raw = Raw::open(&img.paths);
    let p = br.ptr().expect("block");
    let l = p.copies.as_slice()[slot];
    let mut bytes = raw.read_at(l.device, l.offset, p.size as usize);
    for b in bytes.iter_mut().step_by(97) {
        *b ^= 0x5a;
    }
    raw.write_at(l.device, l.offset, &bytes);
}

/// Spoils every copy.
pub fn spoil_all(img: &Img, br: &Blockref) {
    for slot in 0..br.ptr().expect("block").copies.len() {
        spoil_copy(img, br, slot);
    }
}

/// The reference of a block found in the raw trees.
pub fn raw_ref(img: &Img, f: impl Fn(&Node) -> bool) -> Blockref {
    let raw = Raw::open(&img.paths);
    let nodes = raw.walk();
    nodes[find(&nodes, f)].br
}

/// The inode block of inode `inum`.
pub fn inode_block(img: &Img, inum: u64) -> Blockref {
    raw_ref(img, |n| n.tree == Tree::Inodes && n.br.btype == BlockType::Inode && n.br.key == inum)
}

/// An indirect block of inode `inum`'s tree (the `nth`).
pub fn indirect_of(img: &Img, inum: u64, nth: usize) -> Blockref {
    let raw = Raw::open(&img.paths);
    let nodes = raw.walk();
    let v: Vec<&Node> =
        nodes.iter().filter(|n| n.tree == Tree::Inode(inum) && n.br.btype == BlockType::Indirect).collect();
    v.get(nth).unwrap_or_else(|| panic!("inode {inum} has {} indirect blocks", v.len())).br
}

/// Adds an entry under an explicit key (bypassing the name hash).
pub fn add_entry_at(fs: &Fs, dir: &str, key: u64, name: &[u8], target: u64, dt: u8) {
    testing::add_entry_at(fs, lookup(fs, dir), key, name, target, dt);
}

/// Sets the size of a file without dropping its data (what a lost truncate would leave).
pub fn set_size(fs: &Fs, path: &str, size: u64) {
    testing::set_size(fs, lookup(fs, path), size);
}

/// The raw node of the data block at `offset` of inode `inum` (ROOT's, or the only PFS).
fn data_node(nodes: &[Node], inum: u64, offset: u64) -> usize {
    find(nodes, |n| n.tree == Tree::Inode(inum) && n.br.btype == BlockType::Data && n.br.key == offset)
}

/// Stores the data block at `offset` of inode `inum` lz4-compressed (the frame, then zeros
/// to its size; same size and place, so the free map stays right) and reseals everything
/// above it: what a writer that compresses leaves, whatever the header says.
pub fn store_compressed(img: &Img, inum: u64, offset: u64) {
    let mut raw = Raw::open(&img.paths);
    let mut nodes = raw.walk();
    let i = data_node(&nodes, inum, offset);
    let content = raw.block(&nodes[i].br);
    let frame = lz4_flex::block::compress(&content);
    assert!(frame.len() < content.len(), "the block's content does not compress");
    let mut bytes = frame.clone();
    bytes.resize(content.len(), 0);
    nodes[i].br.payload = hammer2_format::Payload::Compressed(hammer2_format::blockref::Compression {
        method: hammer2_format::blockref::CompressionMethod::Lz4,
        logical_size: 0,
        frame_len: frame.len() as u32,
    });
    raw.reseal(&mut nodes, i, &bytes);
}

/// Keeps only the first copy of the data block at `offset` of inode `inum` (resealed
/// above it): what a writer of per-file copies leaves. The other copies' units stay marked
/// in the free map.
pub fn keep_one_copy(img: &Img, inum: u64, offset: u64) {
    let mut raw = Raw::open(&img.paths);
    let mut nodes = raw.walk();
    let i = data_node(&nodes, inum, offset);
    let mut br = nodes[i].br;
    let p = br.ptr_mut().expect("a block");
    let first = p.copies.as_slice()[0];
    p.copies = hammer2_format::blockref::Copies::new();
    p.copies.push(first);
    raw.set_ref(&mut nodes, i, br);
}

/// Clears feature bits in every device's newest header (check code kept valid).
pub fn clear_features(img: &Img, bits: u64) {
    Raw::open(&img.paths).edit_headers(|h| h.incompat_features &= !bits);
}
