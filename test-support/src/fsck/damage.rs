//! Precise damage, one kind at a time: through the engine's in-memory state (what a buggy
//! engine would commit) or by writing bytes over a block's copies (what a disk would do).

use super::image::{Img, lookup};
use super::raw::{Node, Raw, Tree, find};
use hammer2::Fs;
use hammer2::inode::{Content, Leaf};
use hammer2::vnops::dirent::{free_key, lookup_dirent};
use hammer2_format::layout::{FREEMAP_LEAF_UNITS, UNIT};
use hammer2_format::{BlockType, Blockref, dirent, dtype};

/// Mounts, lets `f` change the in-memory state, commits with unmount.
pub fn with_engine(img: &Img, f: impl FnOnce(&Fs)) {
    let fs = img.mount();
    f(&fs);
    fs.unmount().expect("unmount");
}

/// The committed reference of the data block at `offset` of `path`.
pub fn data_ref(fs: &Fs, path: &str, offset: u64) -> Blockref {
    let ino = lookup(fs, path);
    let inner = fs.inner();
    let inode = inner.inode(ino).expect("inode");
    let st = inode.state.read();
    let Content::Tree(root) = &st.committed.content else { panic!("{path} has no tree") };
    hammer2::tree::lookup(&inner.vol, root, offset).expect("lookup").expect("a data block there")
}

/// Sets the link count of `path` behind the engine's back.
pub fn set_nlink(fs: &Fs, path: &str, nlink: u32) {
    let inner = fs.inner();
    let inode = inner.inode(lookup(fs, path)).expect("inode");
    let mut st = inode.state.write();
    st.meta.nlink = nlink;
    inner.touch(&inode, &mut st);
}

/// Adds an entry `name` -> `target` in directory `dir`, as if created (size and, for a
/// directory target, link count follow).
pub fn add_entry(fs: &Fs, dir: &str, name: &[u8], target: u64, dt: u8) {
    let inner = fs.inner();
    let d = lookup(fs, dir);
    let inode = inner.inode(d).expect("inode");
    let mut st = inode.state.write();
    let key = free_key(inner, d, &st, dirent::dirent_key_base(name)).expect("free key");
    st.dirty.leaves.insert(key, Some(Leaf::Dirent { name: name.to_vec(), inum: target, dtype: dt }));
    st.meta.size += 1;
    if dt == dtype::DIR {
        st.meta.nlink += 1;
    }
    inner.touch(&inode, &mut st);
}

/// Removes the entry `name` from `dir` without touching the inode it names (size and, for
/// a directory, link count follow).
pub fn remove_entry(fs: &Fs, dir: &str, name: &[u8]) {
    let inner = fs.inner();
    let d = lookup(fs, dir);
    let inode = inner.inode(d).expect("inode");
    let mut st = inode.state.write();
    let (key, _, dt) = lookup_dirent(inner, d, &st, name).expect("lookup").expect("entry");
    st.dirty.leaves.insert(key, None);
    st.meta.size -= 1;
    if dt == dtype::DIR {
        st.meta.nlink -= 1;
    }
    inner.touch(&inode, &mut st);
}

pub fn set_parent(fs: &Fs, path: &str, parent: u64) {
    let inner = fs.inner();
    let inode = inner.inode(lookup(fs, path)).expect("inode");
    let mut st = inode.state.write();
    st.meta.parent = parent;
    inner.touch(&inode, &mut st);
}

/// Marks `count` units from `offset` of device 0 as used, with nothing using them.
pub fn leak(fs: &Fs, units: u64) -> u64 {
    let inner = fs.inner();
    let mut a = inner.alloc.lock();
    let e = a.alloc(0, 0, hammer2::alloc::Class::Data, units).expect("alloc");
    e.offset()
}

/// Marks the units of a block free in the free map while the block stays in use.
pub fn free_map_hole(fs: &Fs, br: &Blockref) {
    let inner = fs.inner();
    let p = br.ptr().expect("block");
    let l = p.copies.as_slice()[0];
    let (unit, n) = (l.offset / UNIT, u64::from(p.size).div_ceil(UNIT));
    let mut a = inner.alloc.lock();
    let d = &mut a.devs[usize::from(l.device)];
    d.bits.set_range(unit, n, false);
    if let Some(r) = d.regions.iter_mut().find(|r| unit >= r.start && unit < r.end) {
        r.free += n;
    }
    d.dirty_leaves.insert((unit / FREEMAP_LEAF_UNITS) as u32);
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
    let inner = fs.inner();
    let inode = inner.inode(lookup(fs, dir)).expect("inode");
    let mut st = inode.state.write();
    st.dirty.leaves.insert(key, Some(Leaf::Dirent { name: name.to_vec(), inum: target, dtype: dt }));
    st.meta.size += 1;
    inner.touch(&inode, &mut st);
}

/// Sets the size of a file without dropping its data (what a lost truncate would leave).
pub fn set_size(fs: &Fs, path: &str, size: u64) {
    let inner = fs.inner();
    let inode = inner.inode(lookup(fs, path)).expect("inode");
    let mut st = inode.state.write();
    st.meta.size = size;
    inner.touch(&inode, &mut st);
}
