//! Directory entries and extended attributes across the layers: lookup by name, free
//! collision slots, and merged in-order scans (readdir, listxattr).

use crate::copies::read::ReadCtx;
use crate::error::{Error, Result};
use crate::fs::FsInner;
use crate::inode::{Content, InodeState, Leaf};
use crate::tree;
use hammer2_format::layout::{HASH_ITER_MASK, XATTR_KEY_BIT};
use hammer2_format::{BlockData, BlockType, Blockref, Payload, dirent, xattr};
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// Decodes a committed DIRENT or XATTR leaf.
pub fn leaf_of(fs: &FsInner, dir: u64, br: &Blockref) -> Result<Leaf> {
    match (br.btype, &br.data, br.payload) {
        (BlockType::Dirent, BlockData::Inline(raw), Payload::Dirent { inum, name_len, dtype }) => {
            Ok(Leaf::Dirent { name: raw[..usize::from(name_len)].to_vec(), inum, dtype })
        }
        (BlockType::Dirent, BlockData::Block(_), Payload::Dirent { inum, name_len, dtype }) => {
            let bytes = fs.vol.read_block(br, &ReadCtx::inode(dir))?;
            let name = dirent::decode_name_block(&bytes, usize::from(name_len))?;
            Ok(Leaf::Dirent { name, inum, dtype })
        }
        (BlockType::Xattr, BlockData::Block(_), _) => {
            let bytes = fs.vol.read_block(br, &ReadCtx::inode(dir))?;
            let (name, value) = xattr::decode(&bytes)?;
            Ok(Leaf::Xattr { name, value })
        }
        _ => Err(Error::Corrupt(format!("unexpected {} entry in inode {dir}", br.btype.name()))),
    }
}

fn leaf_name(l: &Leaf) -> &[u8] {
    match l {
        Leaf::Dirent { name, .. } | Leaf::Xattr { name, .. } => name,
    }
}

/// The effective leaves with keys in `[from, to]`, merged over the layers.
pub fn range(fs: &FsInner, inum: u64, st: &InodeState, from: u64, to: u64) -> Result<BTreeMap<u64, Leaf>> {
    let mut upper: BTreeMap<u64, Option<Leaf>> = BTreeMap::new();
    if let Some(fl) = &st.flushing {
        for (k, v) in fl.overlay.leaves.range(from..=to) {
            upper.insert(*k, v.clone());
        }
    }
    for (k, v) in st.dirty.leaves.range(from..=to) {
        upper.insert(*k, v.clone());
    }
    let mut out = BTreeMap::new();
    if let Content::Tree(root) = &st.committed.content {
        tree::scan(&fs.vol, root, from, &mut |br| {
            if br.key > to {
                return Ok(ControlFlow::Break(()));
            }
            if !upper.contains_key(&br.key) {
                out.insert(br.key, leaf_of(fs, inum, br)?);
            }
            Ok(ControlFlow::Continue(()))
        })?;
    }
    for (k, v) in upper {
        if let Some(l) = v {
            out.insert(k, l);
        }
    }
    Ok(out)
}

/// Finds `name` in the collision range starting at `base`: (key, leaf).
pub fn find(fs: &FsInner, inum: u64, st: &InodeState, base: u64, name: &[u8]) -> Result<Option<(u64, Leaf)>> {
    Ok(range(fs, inum, st, base, base | HASH_ITER_MASK)?.into_iter().find(|(_, l)| leaf_name(l) == name))
}

/// A key in the collision range of `base` that no entry uses.
pub fn free_key(fs: &FsInner, inum: u64, st: &InodeState, base: u64) -> Result<u64> {
    let used = range(fs, inum, st, base, base | HASH_ITER_MASK)?;
    (base..=base | HASH_ITER_MASK).find(|k| !used.contains_key(k)).ok_or(Error::NoSpace)
}

/// For a new name: the key it would take, or `Exists`, from one scan of its collision range.
pub fn free_key_for(fs: &FsInner, inum: u64, st: &InodeState, base: u64, name: &[u8]) -> Result<u64> {
    let used = range(fs, inum, st, base, base | HASH_ITER_MASK)?;
    if used.values().any(|l| leaf_name(l) == name) {
        return Err(Error::Exists);
    }
    (base..=base | HASH_ITER_MASK).find(|k| !used.contains_key(k)).ok_or(Error::NoSpace)
}

pub fn lookup_dirent(fs: &FsInner, dir: u64, st: &InodeState, name: &[u8]) -> Result<Option<(u64, u64, u8)>> {
    Ok(find(fs, dir, st, dirent::dirent_key_base(name), name)?.and_then(|(k, l)| match l {
        Leaf::Dirent { inum, dtype, .. } => Some((k, inum, dtype)),
        Leaf::Xattr { .. } => None,
    }))
}

/// Calls `f` with the effective leaves of keys in `[from, to)` in key order, until it
/// breaks; the overlays are merged over a streaming scan of the committed tree.
pub fn scan(
    fs: &FsInner,
    inum: u64,
    st: &InodeState,
    from: u64,
    to: u64,
    f: &mut dyn FnMut(u64, &Leaf) -> Result<ControlFlow<()>>,
) -> Result<()> {
    if from >= to {
        return Ok(());
    }
    let mut upper: BTreeMap<u64, Option<Leaf>> = BTreeMap::new();
    if let Some(fl) = &st.flushing {
        for (k, v) in fl.overlay.leaves.range(from..to) {
            upper.insert(*k, v.clone());
        }
    }
    for (k, v) in st.dirty.leaves.range(from..to) {
        upper.insert(*k, v.clone());
    }
    let mut pending = upper.into_iter().peekable();
    let mut stopped = false;
    if let Content::Tree(root) = &st.committed.content {
        tree::scan(&fs.vol, root, from, &mut |br| {
            if br.key >= to {
                return Ok(ControlFlow::Break(()));
            }
            while let Some((k, _)) = pending.peek() {
                if *k > br.key {
                    break;
                }
                let (k, v) = pending.next().expect("peeked");
                if let Some(l) = &v
                    && f(k, l)?.is_break()
                {
                    stopped = true;
                    return Ok(ControlFlow::Break(()));
                }
                if k == br.key {
                    return Ok(ControlFlow::Continue(()));
                }
            }
            let l = leaf_of(fs, inum, br)?;
            if f(br.key, &l)?.is_break() {
                stopped = true;
                return Ok(ControlFlow::Break(()));
            }
            Ok(ControlFlow::Continue(()))
        })?;
    }
    if stopped {
        return Ok(());
    }
    for (k, v) in pending {
        if let Some(l) = &v
            && f(k, l)?.is_break()
        {
            break;
        }
    }
    Ok(())
}

/// True when the directory has no entries.
pub fn is_empty_dir(fs: &FsInner, inum: u64, st: &InodeState) -> Result<bool> {
    let mut empty = true;
    scan(fs, inum, st, 0, XATTR_KEY_BIT, &mut |_, _| {
        empty = false;
        Ok(ControlFlow::Break(()))
    })?;
    Ok(empty)
}
