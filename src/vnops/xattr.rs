//! Extended attributes: one XATTR leaf per attribute in the inode's own tree.

use super::dirent::{find, free_key, scan};
use super::settings::Setting;
use super::{Caller, Fs, acl};
use crate::error::{Error, Result};
use crate::fs::FsInner;
use crate::inode::{InodeRef, InodeState, Leaf};
use hammer2_format::layout::{MAX_NAME_LEN, MAX_XATTR_VALUE, XATTR_KEY_BIT};
use hammer2_format::{Timespec, dirent};
use libc::S_ISGID;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

#[derive(Debug, Clone, Copy, Default)]
pub struct XattrFlags {
    /// XATTR_CREATE: fail if it exists.
    pub create: bool,
    /// XATTR_REPLACE: fail if it does not exist.
    pub replace: bool,
}

const NAMESPACES: [&[u8]; 4] = [b"user.", b"trusted.", b"security.", b"system."];

fn check_xattr_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Error::Range);
    }
    if name.contains(&0) {
        return Err(Error::invalid("attribute name contains NUL"));
    }
    if !NAMESPACES.iter().any(|p| name.starts_with(p) && name.len() > p.len()) {
        return Err(Error::NotSupported);
    }
    Ok(())
}

impl Fs {
    /// Whether POSIX ACLs are kept. The FUSE daemon turns them off when the kernel does not
    /// take FUSE_POSIX_ACL (it would not enforce them); `system.posix_acl_*` is then
    /// EOPNOTSUPP, so programs fall back to the mode bits.
    pub fn set_posix_acl(&self, on: bool) {
        self.posix_acl.store(on, Ordering::Relaxed);
    }

    pub fn posix_acl(&self) -> bool {
        self.posix_acl.load(Ordering::Relaxed)
    }

    /// Which ACL `name` is, if any; EOPNOTSUPP for an ACL while ACLs are off.
    fn acl_kind(&self, name: &[u8]) -> Result<Option<acl::Kind>> {
        match acl::kind(name) {
            Some(_) if !self.posix_acl() => Err(Error::NotSupported),
            k => Ok(k),
        }
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        // `hammer2.rewrite`: the bytes one rewrite call covers (`rewrite.rs`); the live tree
        // only (a snapshot is never rewritten).
        if name == super::rewrite::XATTR {
            self.inner.inode(ino)?;
            return Ok(super::rewrite::RANGE.to_string().into_bytes());
        }
        self.read_xattr(&self.inner.inode(ino)?, name)
    }

    pub fn listxattr(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        self.xattr_names(&self.inner.inode(ino)?)
    }

    /// The value of attribute `name` of `inode`, read from any tree (the served PFS's or a
    /// snapshot's).
    pub(crate) fn read_xattr(&self, inode: &InodeRef, name: &[u8]) -> Result<Vec<u8>> {
        // `hammer2.NAME`: a setting kept in the inode (`settings.rs`).
        if let Some(s) = Setting::of_xattr(name) {
            return Ok(self.setting_of(inode, s?).into_bytes());
        }
        check_xattr_name(name)?;
        self.acl_kind(name)?;
        let st = inode.state.read();
        match get(&self.inner, inode.inum, &st, name)? {
            Some((_, value)) => Ok(value),
            None => Err(Error::NoAttr),
        }
    }

    /// The names of the attributes of `inode`, read from any tree.
    pub(crate) fn xattr_names(&self, inode: &InodeRef) -> Result<Vec<Vec<u8>>> {
        let st = inode.state.read();
        let mut names = Vec::new();
        let acls = self.posix_acl();
        scan(&self.inner, inode.inum, &st, XATTR_KEY_BIT, u64::MAX, &mut |_, leaf| {
            if let Leaf::Xattr { name, .. } = leaf {
                if acls || acl::kind(name).is_none() {
                    names.push(name.clone());
                }
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(names)
    }

    /// Sets an attribute. An access ACL also sets the mode's permission bits to what it
    /// grants, and is dropped rather than stored when the mode says as much (so `cp -p`,
    /// which sets a plain ACL to give a file its mode, gets that mode). A default ACL is for
    /// directories only. An ACL without entries removes it. (Invariant acl-mode, DESIGN §12.)
    pub fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: XattrFlags) -> Result<()> {
        self.setxattr_by(ino, name, value, flags, || Caller { fsetid: true, groups: Vec::new() })
    }

    /// [`Self::setxattr`] on behalf of `caller`: an access ACL set by a caller outside the
    /// file's group and without CAP_FSETID also drops set-group-ID, as a chmod by it would
    /// (Linux's `posix_acl_update_mode`). The caller is asked for only then.
    pub fn setxattr_by(
        &self,
        ino: u64,
        name: &[u8],
        value: &[u8],
        flags: XattrFlags,
        caller: impl FnOnce() -> Caller,
    ) -> Result<()> {
        let fs = &self.inner;
        // `hammer2.rewrite=OFFSET`: rewrite one range of the file (`rewrite.rs`).
        if name == super::rewrite::XATTR {
            let from = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim_end_matches(['\0', '\n']).parse::<u64>().ok())
                .ok_or_else(|| Error::invalid("hammer2.rewrite takes a byte offset"))?;
            return self.rewrite_range(ino, from, super::rewrite::RANGE).map(|_| ());
        }
        if let Some(s) = Setting::of_xattr(name) {
            let value = std::str::from_utf8(value).map_err(|_| Error::invalid("setting value is not UTF-8"))?;
            return self.set_setting(ino, s?, value.trim_end_matches(['\0', '\n']));
        }
        fs.check_writable()?;
        check_xattr_name(name)?;
        if value.len() > MAX_XATTR_VALUE {
            return Err(Error::TooBig);
        }
        let kind = self.acl_kind(name)?;
        let parsed = match kind {
            Some(_) => acl::Acl::parse(value)?,
            None => None,
        };
        // S2: the attribute's own block, if it needs one, and the inode.
        let units = fs.space.meta_blocks(2);
        self.reserve_or_sync(units)?;
        let _g = fs.gate.read();
        let r = (|| {
            let inode = fs.inode(ino)?;
            let mut st = inode.state.write();
            let base = dirent::xattr_key_base(name);
            let found = find(fs, ino, &st, base, name)?.map(|(k, _)| k);
            match found {
                Some(_) if flags.create => return Err(Error::Exists),
                None if flags.replace => return Err(Error::NoAttr),
                _ => {}
            }
            let mut store = Some(value.to_vec());
            match kind {
                Some(acl::Kind::Access) => {
                    store = None;
                    if let Some(a) = &parsed {
                        let (mut mode, extended) = a.equiv_mode(st.meta.mode);
                        if mode & S_ISGID != 0 {
                            let c = caller();
                            if !c.fsetid && !c.groups.contains(&st.meta.gid) {
                                mode &= !S_ISGID;
                            }
                        }
                        st.meta.mode = mode;
                        store = extended.then(|| a.to_xattr());
                    }
                }
                Some(acl::Kind::Default) => {
                    if !st.meta.is_dir() {
                        return match parsed {
                            Some(_) => Err(Error::Io(std::io::Error::from_raw_os_error(libc::EACCES))),
                            None => Ok(()),
                        };
                    }
                    store = parsed.as_ref().map(acl::Acl::to_xattr);
                }
                None => {}
            }
            match (store, found) {
                (Some(v), k) => {
                    let key = match k {
                        Some(k) => k,
                        None => free_key(fs, ino, &st, base)?,
                    };
                    st.dirty.leaves.insert(key, Some(Leaf::Xattr { name: name.to_vec(), value: v }));
                }
                (None, Some(k)) => {
                    st.dirty.leaves.insert(k, None);
                }
                (None, None) => {}
            }
            st.dirty.reserved += units;
            st.meta.ctime = Timespec::now();
            st.meta.version += 1;
            fs.touch(&inode, &mut st);
            Ok(())
        })();
        if r.is_err() {
            fs.space.release(units);
        }
        r
    }

    pub fn removexattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        let fs = &self.inner;
        if let Some(s) = Setting::of_xattr(name) {
            return self.set_setting(ino, s?, "default");
        }
        fs.check_writable()?;
        check_xattr_name(name)?;
        self.acl_kind(name)?;
        let _g = fs.gate.read();
        let inode = fs.inode(ino)?;
        let mut st = inode.state.write();
        let Some((key, _)) = find(fs, ino, &st, dirent::xattr_key_base(name), name)? else {
            return Err(Error::NoAttr);
        };
        st.dirty.leaves.insert(key, None);
        st.meta.ctime = Timespec::now();
        st.meta.version += 1;
        fs.touch(&inode, &mut st);
        Ok(())
    }
}

/// Space to reserve for writing one attribute beside an operation's other blocks: its own
/// block, a whole slot like every block that is not file data (S2; the tree above it comes
/// from the reserve, S3).
pub(crate) fn xattr_units(fs: &FsInner) -> u64 {
    fs.space.meta_blocks(1)
}

/// An attribute of an inode locked by the caller: its key and value.
pub(crate) fn get(fs: &FsInner, ino: u64, st: &InodeState, name: &[u8]) -> Result<Option<(u64, Vec<u8>)>> {
    match find(fs, ino, st, dirent::xattr_key_base(name), name)? {
        Some((k, Leaf::Xattr { value, .. })) => Ok(Some((k, value))),
        _ => Ok(None),
    }
}

/// Stores an attribute of an inode write-locked by the caller, who has reserved its space
/// ([`xattr_units`]) and accounted it to the inode.
pub(crate) fn put(fs: &FsInner, ino: u64, st: &mut InodeState, name: &[u8], value: Vec<u8>) -> Result<()> {
    let base = dirent::xattr_key_base(name);
    let key = match find(fs, ino, st, base, name)? {
        Some((k, _)) => k,
        None => free_key(fs, ino, st, base)?,
    };
    st.dirty.leaves.insert(key, Some(Leaf::Xattr { name: name.to_vec(), value }));
    Ok(())
}
