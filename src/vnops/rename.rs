//! rename(2) and renameat2(2): replace, RENAME_NOREPLACE, RENAME_EXCHANGE, directories
//! moving across the tree, and the refusal to move a directory into its own subtree.

use super::dir::check_name;
use super::dirent::{free_key, is_empty_dir, lookup_dirent};
use super::{Fs, RenameFlags, guard, lock_all};
use crate::error::{Error, Result};
use crate::fs::FsInner;
use crate::inode::{InodeState, Leaf};
use hammer2_format::layout::ROOT_INUM;
use hammer2_format::{Timespec, dirent};
use parking_lot::RwLockWriteGuard;

/// Blocks a rename may write besides tree nodes: the moved name's and a replaced inode (S2).
const RENAME_BLOCKS: u64 = 2;

impl Fs {
    pub fn rename(&self, parent: u64, name: &[u8], newparent: u64, newname: &[u8], flags: RenameFlags) -> Result<()> {
        let fs = &self.inner;
        fs.check_writable()?;
        self.throttle();
        check_name(name)?;
        check_name(newname)?;
        if flags.noreplace && flags.exchange {
            return Err(Error::invalid("RENAME_NOREPLACE with RENAME_EXCHANGE"));
        }
        self.force_reserve_after_sync(fs.space.meta_blocks(RENAME_BLOCKS));
        let _g = fs.gate.read();
        // Moves between directories change parent links; serializing them makes the
        // subtree check below see a tree no other rename is changing.
        let _moves = (parent != newparent).then(|| fs.rename_lock.lock());
        let r = rename_locked(fs, parent, name, newparent, newname, flags);
        if r.is_err() {
            fs.space.release(fs.space.meta_blocks(RENAME_BLOCKS));
        }
        r
    }
}

fn rename_locked(
    fs: &FsInner,
    parent: u64,
    name: &[u8],
    newparent: u64,
    newname: &[u8],
    flags: RenameFlags,
) -> Result<()> {
    let sdir = fs.inode(parent)?;
    let ddir = fs.inode(newparent)?;
    loop {
        let src = {
            let st = sdir.state.read();
            if !st.meta.is_dir() {
                return Err(Error::NotDir);
            }
            lookup_dirent(fs, parent, &st, name)?.ok_or(Error::NotFound)?
        };
        let dst = {
            let st = ddir.state.read();
            if !st.meta.is_dir() {
                return Err(Error::NotDir);
            }
            if st.meta.nlink == 0 {
                return Err(Error::NotFound);
            }
            lookup_dirent(fs, newparent, &st, newname)?
        };
        if flags.exchange && dst.is_none() {
            return Err(Error::NotFound);
        }
        if flags.noreplace && dst.is_some() {
            return Err(Error::Exists);
        }
        // Both names already link to the same inode: POSIX says do nothing.
        if dst.is_some_and(|d| d.1 == src.1) {
            return Ok(());
        }
        let sino = fs.inode(src.1)?;
        let dino = match dst {
            Some(d) => Some(fs.inode(d.1)?),
            None => None,
        };
        // The subtree check walks up parent links, reading one directory at a time, before
        // any inode is locked: walking while holding the lock set could wait on an ancestor
        // that an operation holding it (and waiting on our set) will not release. The rename
        // lock keeps every parent link fixed from here until the move is done.
        if parent != newparent {
            if sino.state.read().meta.is_dir() && is_ancestor(fs, src.1, newparent)? {
                return Err(Error::invalid("cannot move a directory into its own subtree"));
            }
            if flags.exchange
                && let (Some(d), Some(dn)) = (dst, &dino)
                && dn.state.read().meta.is_dir()
                && is_ancestor(fs, d.1, parent)?
            {
                return Err(Error::invalid("cannot move a directory into its own subtree"));
            }
        }
        let mut set = vec![sdir.clone(), ddir.clone(), sino.clone()];
        set.extend(dino.clone());
        let mut locks = lock_all(&set);
        let src_now = lookup_dirent(fs, parent, guard(&mut locks, parent), name)?;
        let dst_now = lookup_dirent(fs, newparent, guard(&mut locks, newparent), newname)?;
        if src_now != Some(src) || dst_now != dst {
            continue;
        }
        let (skey, sinum, sdt) = src;
        let s_dir = guard(&mut locks, sinum).meta.is_dir();
        let d_dir = dst.is_some_and(|d| guard(&mut locks, d.1).meta.is_dir());
        let now = Timespec::now();
        if flags.exchange {
            let (dkey, dinum, ddt) = dst.expect("exchange checked above");
            guard(&mut locks, parent)
                .dirty
                .leaves
                .insert(skey, Some(Leaf::Dirent { name: name.to_vec(), inum: dinum, dtype: ddt }));
            guard(&mut locks, newparent)
                .dirty
                .leaves
                .insert(dkey, Some(Leaf::Dirent { name: newname.to_vec(), inum: sinum, dtype: sdt }));
            if parent != newparent {
                if s_dir {
                    move_dir(&mut locks, sinum, parent, newparent);
                }
                if d_dir {
                    move_dir(&mut locks, dinum, newparent, parent);
                }
            }
            guard(&mut locks, dinum).meta.ctime = now;
        } else {
            if let Some((_, dinum, _)) = dst {
                if s_dir && !d_dir {
                    return Err(Error::NotDir);
                }
                if !s_dir && d_dir {
                    return Err(Error::IsDir);
                }
                if d_dir && !is_empty_dir(fs, dinum, guard(&mut locks, dinum))? {
                    return Err(Error::NotEmpty);
                }
            }
            {
                let s = guard(&mut locks, parent);
                s.dirty.leaves.insert(skey, None);
                s.meta.size = s.meta.size.saturating_sub(1);
            }
            let dkey = match dst {
                Some((k, _, _)) => k,
                None => free_key(fs, newparent, guard(&mut locks, newparent), dirent::dirent_key_base(newname))?,
            };
            {
                let d = guard(&mut locks, newparent);
                d.dirty.leaves.insert(dkey, Some(Leaf::Dirent { name: newname.to_vec(), inum: sinum, dtype: sdt }));
                d.meta.size += 1;
            }
            if let Some((_, dinum, _)) = dst {
                guard(&mut locks, newparent).meta.size -= 1;
                let victim = guard(&mut locks, dinum);
                victim.meta.nlink = if d_dir { 0 } else { victim.meta.nlink.saturating_sub(1) };
                victim.meta.ctime = now;
                victim.meta.version += 1;
                if victim.meta.nlink == 0 && victim.opens == 0 {
                    victim.deleted = true;
                }
                if d_dir {
                    let d = guard(&mut locks, newparent);
                    d.meta.nlink = d.meta.nlink.saturating_sub(1);
                }
            }
            if s_dir && parent != newparent {
                move_dir(&mut locks, sinum, parent, newparent);
            }
        }
        guard(&mut locks, sinum).meta.ctime = now;
        for inum in [parent, newparent] {
            let st = guard(&mut locks, inum);
            st.meta.mtime = now;
            st.meta.ctime = now;
        }
        for ino in &set {
            let st = guard(&mut locks, ino.inum);
            st.meta.version += 1;
            fs.touch(ino, st);
        }
        guard(&mut locks, parent).dirty.reserved += fs.space.meta_blocks(RENAME_BLOCKS);
        return Ok(());
    }
}

/// Re-parents directory `inum` from `from` to `to`, moving its `..` link count.
fn move_dir(locks: &mut [(u64, RwLockWriteGuard<'_, InodeState>)], inum: u64, from: u64, to: u64) {
    guard(locks, inum).meta.parent = to;
    let f = guard(locks, from);
    f.meta.nlink = f.meta.nlink.saturating_sub(1);
    guard(locks, to).meta.nlink += 1;
}

/// True when `dir` is `candidate` or lies below it. Parent links only change under the
/// rename lock, which the caller holds; no inode lock may be held (each directory on the way
/// up is locked for reading in turn).
fn is_ancestor(fs: &FsInner, candidate: u64, dir: u64) -> Result<bool> {
    let mut cur = dir;
    for _ in 0..100_000 {
        if cur == candidate {
            return Ok(true);
        }
        if cur == ROOT_INUM {
            return Ok(false);
        }
        cur = fs.inode(cur)?.state.read().meta.parent;
    }
    Err(Error::Corrupt(format!("directory {dir} has a parent loop")))
}
