//! Attributes, truncation, statfs, and the open/lookup reference counts.

use super::data::{dirty_block, present, round_unit};
use super::{Attr, Fs, SetAttr, StatFs, acl};
use crate::error::{Error, Result};
use crate::fs::FsInner;
use crate::inode::{InodeRef, InodeState};
use hammer2_format::inode::S_IFMT;
use hammer2_format::{Timespec, UNIT};

use std::sync::atomic::Ordering;

impl Fs {
    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        let inode = self.inner.inode(ino)?;
        let st = inode.state.read();
        Ok(Attr::from_meta(ino, &st.meta))
    }

    pub fn setattr(&self, ino: u64, set: &SetAttr) -> Result<Attr> {
        let fs = &self.inner;
        fs.check_writable()?;
        self.throttle();
        let mut retried = false;
        loop {
            match self.setattr_once(ino, set) {
                Err(Error::NoSpace) if !retried => {
                    retried = true;
                    self.sync()?;
                }
                r => return r,
            }
        }
    }

    /// Drops what a write or fallocate by `caller` costs the set-id bits (see
    /// [`super::killed_mode`]); returns whether the mode changed. Changes nothing (not even
    /// ctime) and does not ask who the caller is for a mode without those bits, which is
    /// nearly always, so a writer can call it on every write.
    pub fn kill_suidgid(&self, ino: u64, caller: impl FnOnce() -> super::Caller) -> Result<bool> {
        let inode = self.inner.inode(ino)?;
        if inode.state.read().meta.mode & (libc::S_ISUID | libc::S_ISGID) == 0 {
            return Ok(false);
        }
        let caller = caller();
        let (mode, gid) = {
            let st = inode.state.read();
            (st.meta.mode, st.meta.gid)
        };
        if super::killed_mode(mode, gid, &caller, false).is_none() {
            return Ok(false);
        }
        self.setattr(ino, &SetAttr { kill_suidgid: Some(caller), ..Default::default() })?;
        Ok(true)
    }

    fn setattr_once(&self, ino: u64, set: &SetAttr) -> Result<Attr> {
        let fs = &self.inner;
        let _g = fs.gate.read();
        let inode = fs.inode(ino)?;
        let mut st = inode.state.write();
        let now = Timespec::now();
        // A chmod moves the access ACL with the mode: computed first, so a failure leaves
        // both as they were.
        let acl = match set.mode {
            Some(mode) if self.posix_acl() && !st.meta.is_symlink() => chmod_acl(fs, ino, &st, mode)?,
            _ => None,
        };
        if let Some((_, units)) = &acl {
            // Accounted to the inode at once: its commit releases it whatever happens here.
            if !fs.space.try_reserve(*units) {
                return Err(Error::NoSpace);
            }
            st.dirty.reserved += units;
        }
        let acl = acl.map(|(value, _)| value);
        if let Some(size) = set.size {
            if st.meta.is_dir() {
                return Err(Error::IsDir);
            }
            if !st.meta.is_reg() {
                return Err(Error::invalid("truncate of a special file"));
            }
            if size > hammer2_format::layout::MAX_FILE_SIZE {
                return Err(Error::FileTooBig);
            }
            truncate(fs, &inode, &mut st, size)?;
            st.meta.mtime = now;
        }
        if let Some(mode) = set.mode {
            st.meta.mode = (st.meta.mode & S_IFMT) | (mode & 0o7777);
        }
        if let Some(value) = acl {
            super::xattr::put(fs, ino, &mut st, acl::ACCESS, value)?;
        }
        // Whether the caller is in the file's group is judged before a chown changes it.
        let gid_before = st.meta.gid;
        if let Some(uid) = set.uid {
            st.meta.uid = uid;
        }
        if let Some(gid) = set.gid {
            st.meta.gid = gid;
        }
        if let Some(caller) = &set.kill_suidgid {
            let chown = set.uid.is_some() || set.gid.is_some();
            if let Some(m) = super::killed_mode(st.meta.mode, gid_before, caller, chown) {
                st.meta.mode = m;
            }
        }
        if let Some(t) = set.atime {
            st.meta.atime = t.resolve();
        }
        if let Some(t) = set.mtime {
            st.meta.mtime = t.resolve();
        }
        st.meta.ctime = set.ctime.unwrap_or(now);
        st.meta.version += 1;
        fs.touch(&inode, &mut st);
        Ok(Attr::from_meta(ino, &st.meta))
    }

    /// S5 (DESIGN §10): free and available blocks count every free unit, in a whole free
    /// slot or not, less what is reserved (and, for available, the reserve): exact, so a
    /// delete gives back to `df` exactly what the write took. Reservations (ENOSPC) still
    /// count whole free slots (S1).
    pub fn statfs(&self) -> StatFs {
        let fs = &self.inner;
        let total = fs.vol.placement_total_units();
        let free = fs.space.free().saturating_sub(fs.space.reserved());
        let avail = free.saturating_sub(fs.space.meta_reserve());
        StatFs {
            block_size: UNIT as u32,
            blocks: total,
            blocks_free: free.min(total),
            blocks_avail: avail.min(total),
            files: u64::from(u32::MAX),
            files_free: u64::from(u32::MAX).saturating_sub(fs.next_inum.load(Ordering::SeqCst)),
            name_max: hammer2_format::layout::MAX_NAME_LEN as u32,
        }
    }

    /// An open file handle was created.
    pub fn open(&self, ino: u64) -> Result<()> {
        self.inner.check_not_receiving()?;
        let inode = self.inner.inode(ino)?;
        inode.state.write().opens += 1;
        Ok(())
    }

    /// An open file handle was closed: an unlinked inode goes away with its last one.
    pub fn release(&self, ino: u64) -> Result<()> {
        let fs = &self.inner;
        let _g = fs.gate.read();
        let inode = fs.inode(ino)?;
        let mut st = inode.state.write();
        st.opens = st.opens.saturating_sub(1);
        if st.opens == 0 && st.meta.nlink == 0 && !st.deleted {
            st.deleted = true;
            fs.touch(&inode, &mut st);
        }
        Ok(())
    }

    /// The kernel took a reference to `ino` (FUSE lookup count).
    pub fn lookup_ref(&self, ino: u64) {
        if let Ok(inode) = self.inner.inode(ino) {
            inode.state.write().lookups += 1;
        }
    }

    /// The kernel dropped `n` references.
    pub fn forget(&self, ino: u64, n: u64) {
        let fs = &self.inner;
        let Some(inode) = fs.inodes.get(ino) else {
            return;
        };
        let mut st = inode.state.write();
        st.lookups = st.lookups.saturating_sub(n);
        if st.lookups == 0 && st.deleted && !st.queued && st.flushing.is_none() {
            drop(st);
            fs.inodes.remove(ino);
        }
    }
}

/// The access ACL of a locked inode after a chmod to `mode` (invariant acl-mode, DESIGN
/// §12), and the space its rewrite takes; None without an ACL. A stored ACL that no longer
/// parses fails the chmod (EINVAL) rather than be rewritten blindly.
fn chmod_acl(fs: &FsInner, ino: u64, st: &InodeState, mode: u32) -> Result<Option<(Vec<u8>, u64)>> {
    let Some((_, value)) = super::xattr::get(fs, ino, st, acl::ACCESS)? else {
        return Ok(None);
    };
    let Some(mut a) = acl::Acl::parse(&value)? else {
        return Ok(None);
    };
    a.chmod(mode);
    let value = a.to_xattr();
    let units = super::xattr::xattr_units(fs);
    Ok(Some((value, units)))
}

/// Sets the size of a regular file, under its write lock.
pub(crate) fn truncate(fs: &FsInner, inode: &InodeRef, st: &mut InodeState, new: u64) -> Result<()> {
    let bs = fs.block_size();
    let old = st.meta.size;
    if new < old {
        let k = new / bs;
        let within = (new % bs) as usize;
        if within != 0 && present(fs, st, k)? {
            // The block that keeps the new end: bytes past it must read as zero.
            let buf = dirty_block(fs, inode.inum, st, k, within, false)?;
            buf[within..].fill(0);
            let keep = round_unit(within);
            let shrink = (buf.len() - keep) as u64;
            buf.truncate(keep);
            st.dirty.dirty_bytes = st.dirty.dirty_bytes.saturating_sub(shrink);
            fs.dirty_bytes.fetch_sub(shrink, Ordering::SeqCst);
        }
        let first_gone = new.div_ceil(bs);
        let gone: Vec<u64> = st.dirty.data.range(first_gone..).map(|(k, _)| *k).collect();
        for g in gone {
            let len = st.dirty.data.remove(&g).map_or(0, |b| b.len() as u64);
            st.dirty.dirty_bytes = st.dirty.dirty_bytes.saturating_sub(len);
            fs.dirty_bytes.fetch_sub(len, Ordering::SeqCst);
        }
        st.dirty.trunc = Some(st.dirty.trunc.map_or(new, |t| t.min(new)));
        st.meta.blocks = st.meta.blocks.min(new.div_ceil(UNIT) * UNIT);
    }
    st.meta.size = new;
    Ok(())
}
