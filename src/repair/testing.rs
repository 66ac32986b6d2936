//! Test hooks: damage a mounted filesystem the way a buggy engine would, so the next commit
//! writes state fsck must find and repair. For tests only; nothing here keeps the
//! filesystem consistent, which is the point.
//!
//! Each hook takes the gate and the inode lock like a VOP, so a background commit captures
//! the damage whole or not at all.

use crate::Fs;
use crate::alloc::Class;
use crate::fs::FsInner;
use crate::inode::{Content, InodeState, Leaf};
use crate::vnops::dirent::{free_key, lookup_dirent};
use hammer2_format::layout::{FREEMAP_LEAF_UNITS, UNIT};
use hammer2_format::{Blockref, Timespec, dirent, dtype};
use std::sync::Arc;

/// Runs `f` on inode `ino`'s locked state, then queues it for the next commit.
fn change<T>(fs: &Fs, ino: u64, f: impl FnOnce(&FsInner, &mut InodeState) -> T) -> T {
    let inner = &fs.inner;
    let _g = inner.gate.read();
    let inode = inner.inode(ino).expect("inode");
    let mut st = inode.state.write();
    let r = f(inner, &mut st);
    inner.touch(&inode, &mut st);
    r
}

/// The committed reference of the data block at `offset` of file `ino`.
pub fn data_ref(fs: &Fs, ino: u64, offset: u64) -> Blockref {
    let inner = &fs.inner;
    let inode = inner.inode(ino).expect("inode");
    let st = inode.state.read();
    let Content::Tree(root) = &st.committed.content else { panic!("inode {ino} has no tree") };
    crate::tree::lookup(&inner.vol, root, offset).expect("lookup").expect("a data block there")
}

/// Sets the link count.
pub fn set_nlink(fs: &Fs, ino: u64, nlink: u32) {
    change(fs, ino, |_, st| st.meta.nlink = nlink);
}

/// Sets the parent link.
pub fn set_parent(fs: &Fs, ino: u64, parent: u64) {
    change(fs, ino, |_, st| st.meta.parent = parent);
}

/// Sets the size of a file without dropping its data (what a lost truncate would leave).
pub fn set_size(fs: &Fs, ino: u64, size: u64) {
    change(fs, ino, |_, st| st.meta.size = size);
}

/// Adds an entry `name` -> `target` in directory `dir`, as if created (size and, for a
/// directory target, link count follow).
pub fn add_entry(fs: &Fs, dir: u64, name: &[u8], target: u64, dt: u8) {
    change(fs, dir, |inner, st| {
        let key = free_key(inner, dir, st, dirent::dirent_key_base(name)).expect("free key");
        st.dirty.leaves.insert(key, Some(Leaf::Dirent { name: name.to_vec(), inum: target, dtype: dt }));
        st.meta.size += 1;
        if dt == dtype::DIR {
            st.meta.nlink += 1;
        }
    });
}

/// Adds an entry under an explicit key (bypassing the name hash); the size follows.
pub fn add_entry_at(fs: &Fs, dir: u64, key: u64, name: &[u8], target: u64, dt: u8) {
    change(fs, dir, |_, st| {
        st.dirty.leaves.insert(key, Some(Leaf::Dirent { name: name.to_vec(), inum: target, dtype: dt }));
        st.meta.size += 1;
    });
}

/// Removes the entry `name` from `dir` without touching the inode it names (size and, for
/// a directory, link count follow).
pub fn remove_entry(fs: &Fs, dir: u64, name: &[u8]) {
    change(fs, dir, |inner, st| {
        let (key, _, dt) = lookup_dirent(inner, dir, st, name).expect("lookup").expect("entry");
        st.dirty.leaves.insert(key, None);
        st.meta.size -= 1;
        if dt == dtype::DIR {
            st.meta.nlink -= 1;
        }
    });
}

/// Adds `extra` to the committed block count (the commit derives the stored count from
/// it) and moves mtime, so the inode is written again with a wrong count.
pub fn inflate_blocks(fs: &Fs, ino: u64, extra: u64) {
    change(fs, ino, |_, st| {
        let mut c = (*st.committed).clone();
        c.blocks += extra;
        st.committed = Arc::new(c);
        st.meta.mtime = Timespec::now();
    });
}

/// A lost update: the inode is deleted but its orphan-list entry stays (the committed
/// state no longer says it is listed, so the commit does not remove the entry).
pub fn delete_keeping_orphan_entry(fs: &Fs, ino: u64) {
    change(fs, ino, |_, st| {
        forget_listed(st);
        st.deleted = true;
    });
}

/// Linked again behind the engine's back: link count `nlink`, and the orphan-list entry
/// stays (the committed state no longer says it is listed).
pub fn relink_keeping_orphan_entry(fs: &Fs, ino: u64, nlink: u32) {
    change(fs, ino, |_, st| {
        st.meta.nlink = nlink;
        forget_listed(st);
    });
}

fn forget_listed(st: &mut InodeState) {
    let mut c = (*st.committed).clone();
    c.orphan = false;
    st.committed = Arc::new(c);
}

/// Marks `units` units of device 0 as used, with nothing using them; returns their offset.
pub fn leak(fs: &Fs, units: u64) -> u64 {
    let inner = &fs.inner;
    let _g = inner.gate.read();
    let mut a = inner.alloc.lock();
    let e = a.alloc(0, 0, Class::Data, units).expect("alloc");
    e.offset()
}

/// Marks the units of a block (its first copy) free in the free map while the block stays
/// in use.
pub fn free_map_hole(fs: &Fs, br: &Blockref) {
    let inner = &fs.inner;
    let _g = inner.gate.read();
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
