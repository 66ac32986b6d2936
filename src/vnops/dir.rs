//! Names: lookup, create, mknod, mkdir, symlink, link, unlink, rmdir, readdir.

use super::dirent::{is_empty_dir, lookup_dirent, scan};
use super::{Attr, Creds, DirEntry, Fs, acl, guard, lock_all};
use crate::error::{Error, Result};
use crate::fs::FsInner;
use crate::inode::{CommittedInode, Inode, InodeRef, InodeState, Leaf, Meta};
use hammer2_format::inode::{S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use hammer2_format::layout::{MAX_NAME_LEN, MAX_SYMLINK_LEN, XATTR_KEY_BIT};
use hammer2_format::{Timespec, dirent, dtype};
use parking_lot::RwLock;
use std::ops::ControlFlow;
use std::sync::Arc;

/// Most hard links one inode may have.
pub const LINK_MAX: u32 = 65000;
/// An attribute a new inode is born with: name and value.
type Xattr = (&'static [u8], Vec<u8>);

/// Units reserved for the metadata a new name and inode need at commit.
/// Blocks a new name may write besides tree nodes: the inode and a long name (S2).
const CREATE_BLOCKS: u64 = 2;

pub(crate) fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > MAX_NAME_LEN {
        return Err(Error::NameTooLong);
    }
    if !dirent::valid_name(name) {
        return Err(Error::invalid("names may not be empty, '.', '..', or contain '/' or NUL"));
    }
    Ok(())
}

impl Fs {
    /// Attributes of `name` in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Attr> {
        let fs = &self.inner;
        if name.len() > MAX_NAME_LEN {
            return Err(Error::NameTooLong);
        }
        fs.check_not_receiving()?;
        let inum = child(fs, &fs.inode(parent)?, name)?;
        self.getattr(inum)
    }

    /// Attributes of inode `ino` found by its number alone, as a file handle names it (see
    /// DESIGN §12, "File handles"). An inode with no name left is gone: NotFound, never its
    /// data, even while its removal is not yet committed or it is still open (the kernel
    /// serves handles of inodes it still caches without asking). Inode numbers are never
    /// reused, so a number cannot come to name another file.
    pub fn lookup_inode(&self, ino: u64) -> Result<Attr> {
        self.inner.check_not_receiving()?;
        let inode = self.inner.inode(ino)?;
        let st = inode.state.read();
        if st.meta.nlink == 0 || st.deleted {
            return Err(Error::NotFound);
        }
        Ok(Attr::from_meta(ino, &st.meta))
    }

    pub fn create(&self, parent: u64, name: &[u8], mode: u32, creds: Creds) -> Result<Attr> {
        self.make_node(parent, name, S_IFREG | (mode & 0o7777), 0, creds, None)
    }

    pub fn mknod(&self, parent: u64, name: &[u8], mode: u32, rdev: u64, creds: Creds) -> Result<Attr> {
        if dtype::from_mode(mode).is_none() || mode & S_IFMT == S_IFDIR || mode & S_IFMT == S_IFLNK {
            return Err(Error::invalid("mknod of an unsupported file type"));
        }
        let mode = if mode & S_IFMT == 0 { S_IFREG | mode } else { mode };
        self.make_node(parent, name, mode, rdev, creds, None)
    }

    pub fn mkdir(&self, parent: u64, name: &[u8], mode: u32, creds: Creds) -> Result<Attr> {
        self.make_node(parent, name, S_IFDIR | (mode & 0o7777), 0, creds, None)
    }

    pub fn symlink(&self, parent: u64, name: &[u8], target: &[u8], creds: Creds) -> Result<Attr> {
        if target.is_empty() || target.contains(&0) {
            return Err(Error::invalid("symlink target"));
        }
        if target.len() > MAX_SYMLINK_LEN {
            return Err(Error::NameTooLong);
        }
        self.make_node(parent, name, S_IFLNK | 0o777, 0, creds, Some(target))
    }

    fn make_node(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        rdev: u64,
        creds: Creds,
        symlink: Option<&[u8]>,
    ) -> Result<Attr> {
        let fs = &self.inner;
        fs.check_writable()?;
        check_name(name)?;
        self.throttle();
        let data_blocks = symlink.map_or(0, |t| t.len().div_ceil(fs.block_size() as usize) as u64);
        let units = fs.space.meta_blocks(CREATE_BLOCKS + data_blocks);
        self.reserve_or_sync(units)?;
        // What inherited ACLs take (see `inherit`), reserved once known, under the lock.
        let mut acl_units = 0;
        let _g = fs.gate.read();
        let result = (|| {
            let dir = fs.inode(parent)?;
            let mut dst = dir.state.write();
            if !dst.meta.is_dir() {
                return Err(Error::NotDir);
            }
            if dst.meta.nlink == 0 {
                return Err(Error::NotFound);
            }
            let is_dir = mode & S_IFMT == S_IFDIR;
            if is_dir && dst.meta.nlink >= LINK_MAX {
                return Err(Error::TooManyLinks);
            }
            let key = super::dirent::free_key_for(fs, parent, &dst, dirent::dirent_key_base(name), name)?;
            let inum = fs.alloc_inum();
            let now = Timespec::now();
            let gid = if dst.meta.mode & 0o2000 != 0 { dst.meta.gid } else { creds.gid };
            let mut mode = mode;
            if is_dir && dst.meta.mode & 0o2000 != 0 {
                mode |= 0o2000;
            }
            let (mode, acls) =
                if symlink.is_some() { (mode, Vec::new()) } else { self.inherit(parent, &dst, mode, creds)? };
            acl_units = acls.len() as u64 * super::xattr::xattr_units(fs);
            if acl_units > 0 && !fs.space.try_reserve(acl_units) {
                acl_units = 0;
                return Err(Error::NoSpace);
            }
            let meta = Meta {
                mode,
                uid: creds.uid,
                gid,
                nlink: if is_dir { 2 } else { 1 },
                size: 0,
                rdev,
                atime: now,
                mtime: now,
                ctime: now,
                btime: now,
                parent: if is_dir { parent } else { 0 },
                version: 1,
                create_tid: fs.roots.read().tid + 1,
                blocks: 0,
                // Settings are inherited (FORMAT-V2 "Compression"): what a directory says
                // holds for everything made in it.
                policy: dst.meta.policy,
            };
            let mut st = InodeState::new(meta, CommittedInode::new_empty());
            st.dirty.reserved = units + acl_units;
            for (name, value) in acls {
                super::xattr::put(fs, inum, &mut st, name, value)?;
            }
            if let Some(target) = symlink {
                let mut buf = target.to_vec();
                buf.resize(super::data::round_unit(target.len()), 0);
                st.dirty.dirty_bytes = buf.len() as u64;
                fs.dirty_bytes.fetch_add(buf.len() as u64, std::sync::atomic::Ordering::SeqCst);
                st.dirty.data.insert(0, Arc::new(buf));
                st.meta.size = target.len() as u64;
            }
            let inode = Arc::new(Inode { inum, state: RwLock::new(st) });
            fs.inodes.insert(inode.clone());
            let attr = {
                let mut st = inode.state.write();
                fs.touch(&inode, &mut st);
                Attr::from_meta(inum, &st.meta)
            };
            let dt = dtype::from_mode(mode).unwrap_or(dtype::REG);
            dst.dirty.leaves.insert(key, Some(Leaf::Dirent { name: name.to_vec(), inum, dtype: dt }));
            dst.meta.size += 1;
            if is_dir {
                dst.meta.nlink += 1;
            }
            dst.meta.mtime = now;
            dst.meta.ctime = now;
            dst.meta.version += 1;
            fs.touch(&dir, &mut dst);
            Ok(attr)
        })();
        if result.is_err() {
            fs.space.release(units + acl_units);
        }
        result
    }

    /// The mode and ACLs of a new inode in `parent` (locked by the caller), as Linux's
    /// `posix_acl_create`: with a default ACL on the parent, the umask does not apply; the
    /// mode asked for narrows the default ACL, which becomes the new inode's access ACL (kept
    /// only when the mode cannot say it), and a new directory inherits the default ACL
    /// itself. Without one, the umask applies.
    fn inherit(&self, parent: u64, dst: &InodeState, mode: u32, creds: Creds) -> Result<(u32, Vec<Xattr>)> {
        let default = match self.posix_acl() {
            true => super::xattr::get(&self.inner, parent, dst, acl::DEFAULT)?,
            false => None,
        };
        // A stored default ACL was validated when it was set; one that no longer parses
        // (damage) is ignored like none, the umask then applying.
        let Some(default) = default.and_then(|(_, v)| acl::Acl::parse(&v).ok().flatten()) else {
            return Ok((mode & !(creds.umask & 0o777), Vec::new()));
        };
        let (mode, access) = default.create_masq(mode);
        let mut acls = Vec::new();
        if let Some(a) = access {
            acls.push((acl::ACCESS, a.to_xattr()));
        }
        if mode & S_IFMT == S_IFDIR {
            acls.push((acl::DEFAULT, default.to_xattr()));
        }
        Ok((mode, acls))
    }

    /// Adds the name `newname` in `newparent` for the inode `ino`.
    pub fn link(&self, ino: u64, newparent: u64, newname: &[u8]) -> Result<Attr> {
        let fs = &self.inner;
        fs.check_writable()?;
        check_name(newname)?;
        self.throttle();
        self.reserve_or_sync(fs.space.meta_blocks(CREATE_BLOCKS))?;
        let _g = fs.gate.read();
        let r = (|| {
            let target = fs.inode(ino)?;
            let dir = fs.inode(newparent)?;
            let set = [dir.clone(), target.clone()];
            let mut locks = lock_all(&set);
            let t = guard(&mut locks, ino);
            if t.meta.is_dir() {
                return Err(Error::NotPermitted);
            }
            if t.meta.nlink == 0 {
                return Err(Error::NotFound);
            }
            if t.meta.nlink >= LINK_MAX {
                return Err(Error::TooManyLinks);
            }
            let dt = dtype::from_mode(t.meta.mode).unwrap_or(dtype::REG);
            let d = guard(&mut locks, newparent);
            if !d.meta.is_dir() {
                return Err(Error::NotDir);
            }
            if d.meta.nlink == 0 {
                return Err(Error::NotFound);
            }
            let key = super::dirent::free_key_for(fs, newparent, d, dirent::dirent_key_base(newname), newname)?;
            let now = Timespec::now();
            d.dirty.leaves.insert(key, Some(Leaf::Dirent { name: newname.to_vec(), inum: ino, dtype: dt }));
            d.dirty.reserved += fs.space.meta_blocks(CREATE_BLOCKS);
            d.meta.size += 1;
            d.meta.mtime = now;
            d.meta.ctime = now;
            d.meta.version += 1;
            fs.touch(&dir, d);
            let t = guard(&mut locks, ino);
            t.meta.nlink += 1;
            t.meta.ctime = now;
            t.meta.version += 1;
            fs.touch(&target, t);
            Ok(Attr::from_meta(ino, &t.meta))
        })();
        if r.is_err() {
            fs.space.release(fs.space.meta_blocks(CREATE_BLOCKS));
        }
        r
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.remove(parent, name, false)
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.remove(parent, name, true)
    }

    fn remove(&self, parent: u64, name: &[u8], want_dir: bool) -> Result<()> {
        let fs = &self.inner;
        fs.check_writable()?;
        if name.len() > MAX_NAME_LEN {
            return Err(Error::NameTooLong);
        }
        if want_dir && name == b"." {
            return Err(Error::invalid("cannot remove '.'"));
        }
        if want_dir && name == b".." {
            return Err(Error::NotEmpty);
        }
        check_name(name)?;
        self.throttle();
        // Removing never fails for lack of space: the commit that frees the space must run.
        // Past the limit, the changes waiting are committed first (freeing what earlier
        // removals released), so forced reservations never pile up beyond one operation's
        // worth in the metadata reserve (S3).
        self.force_reserve_after_sync(fs.space.meta_blocks(CREATE_BLOCKS));
        let _g = fs.gate.read();
        let r = (|| {
            let dir = fs.inode(parent)?;
            loop {
                // Lock the directory and find the name. A child numbered above its directory
                // (the usual case: created after it) can be locked next without breaking the
                // inode-number order, and the name cannot change meanwhile.
                {
                    let mut d = dir.state.write();
                    if !d.meta.is_dir() {
                        return Err(Error::NotDir);
                    }
                    let (key, child_inum, _) = lookup_dirent(fs, parent, &d, name)?.ok_or(Error::NotFound)?;
                    if child_inum > parent {
                        let child = fs.inode(child_inum)?;
                        let mut c = child.state.write();
                        return remove_locked(fs, want_dir, key, (&dir, &mut d), (&child, &mut c));
                    }
                }
                // Otherwise lock both in order, and check the name still leads there.
                let (key, child_inum) = {
                    let st = dir.state.read();
                    let (k, i, _) = lookup_dirent(fs, parent, &st, name)?.ok_or(Error::NotFound)?;
                    (k, i)
                };
                let child = fs.inode(child_inum)?;
                let set = [dir.clone(), child.clone()];
                let mut locks = lock_all(&set);
                if lookup_dirent(fs, parent, guard(&mut locks, parent), name)?.map(|(k, i, _)| (k, i))
                    != Some((key, child_inum))
                {
                    continue;
                }
                let (a, b) = locks.split_at_mut(1);
                let (d, c) = if a[0].0 == parent { (&mut a[0].1, &mut b[0].1) } else { (&mut b[0].1, &mut a[0].1) };
                return remove_locked(fs, want_dir, key, (&dir, d), (&child, c));
            }
        })();
        if r.is_err() {
            fs.space.release(fs.space.meta_blocks(CREATE_BLOCKS));
        }
        r
    }

    /// Lists directory `ino` from `cookie` (0 to start). `f` returns true to stop (its
    /// buffer is full); the entry it stopped on is not consumed.
    pub fn readdir(&self, ino: u64, cookie: u64, mut f: impl FnMut(&DirEntry) -> bool) -> Result<()> {
        self.inner.check_not_receiving()?;
        list(&self.inner, &self.inner.inode(ino)?, cookie, &mut f)
    }
}

/// The inode number `name` names in directory `dir` (`.` and `..` included), in whichever
/// tree `dir` was read from (the served PFS's or a snapshot's).
pub(crate) fn child(fs: &FsInner, dir: &InodeRef, name: &[u8]) -> Result<u64> {
    let st = dir.state.read();
    if !st.meta.is_dir() {
        return Err(Error::NotDir);
    }
    Ok(match name {
        b"." => dir.inum,
        b".." => st.meta.parent,
        _ => lookup_dirent(fs, dir.inum, &st, name)?.ok_or(Error::NotFound)?.1,
    })
}

/// Lists directory `dir` from `cookie` (0 to start). `f` returns true to stop (its buffer
/// is full); the entry it stopped on is not consumed.
pub(crate) fn list(fs: &FsInner, dir: &InodeRef, cookie: u64, f: &mut dyn FnMut(&DirEntry) -> bool) -> Result<()> {
    let ino = dir.inum;
    let st = dir.state.read();
    if !st.meta.is_dir() {
        return Err(Error::NotDir);
    }
    if cookie == 0 && f(&DirEntry { ino, name: b".".to_vec(), dtype: dtype::DIR, next: 1 }) {
        return Ok(());
    }
    if cookie <= 1 && f(&DirEntry { ino: st.meta.parent, name: b"..".to_vec(), dtype: dtype::DIR, next: 2 }) {
        return Ok(());
    }
    scan(fs, ino, &st, cookie.max(2), XATTR_KEY_BIT, &mut |k, leaf| {
        if let Leaf::Dirent { name, inum, dtype } = leaf
            && f(&DirEntry { ino: *inum, name: name.clone(), dtype: *dtype, next: k + 1 })
        {
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(()))
    })
}

/// Removes the entry `key` of directory `d` naming `c`, both locked.
fn remove_locked(
    fs: &FsInner,
    want_dir: bool,
    key: u64,
    (dir, d): (&InodeRef, &mut InodeState),
    (child, c): (&InodeRef, &mut InodeState),
) -> Result<()> {
    match (want_dir, c.meta.is_dir()) {
        (false, true) => return Err(Error::IsDir),
        (true, false) => return Err(Error::NotDir),
        _ => {}
    }
    if want_dir && !is_empty_dir(fs, child.inum, c)? {
        return Err(Error::NotEmpty);
    }
    let now = Timespec::now();
    c.meta.nlink = if want_dir { 0 } else { c.meta.nlink.saturating_sub(1) };
    c.meta.ctime = now;
    c.meta.version += 1;
    if c.meta.nlink == 0 && c.opens == 0 {
        c.deleted = true;
    }
    fs.touch(child, c);
    d.dirty.leaves.insert(key, None);
    d.dirty.reserved += fs.space.meta_blocks(CREATE_BLOCKS);
    d.meta.size = d.meta.size.saturating_sub(1);
    if want_dir {
        d.meta.nlink = d.meta.nlink.saturating_sub(1);
    }
    d.meta.mtime = now;
    d.meta.ctime = now;
    d.meta.version += 1;
    fs.touch(dir, d);
    Ok(())
}
