//! Extended attributes: one XATTR leaf per attribute in the inode's own tree.

use super::Fs;
use super::dirent::{find, free_key, scan};
use crate::error::{Error, Result};
use crate::inode::Leaf;
use hammer2_format::layout::{MAX_NAME_LEN, MAX_XATTR_VALUE, XATTR_KEY_BIT};
use hammer2_format::{Timespec, dirent};
use std::ops::ControlFlow;

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
    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        check_xattr_name(name)?;
        let fs = &self.inner;
        let inode = fs.inode(ino)?;
        let st = inode.state.read();
        match find(fs, ino, &st, dirent::xattr_key_base(name), name)? {
            Some((_, Leaf::Xattr { value, .. })) => Ok(value),
            _ => Err(Error::NoAttr),
        }
    }

    pub fn listxattr(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        let fs = &self.inner;
        let inode = fs.inode(ino)?;
        let st = inode.state.read();
        let mut names = Vec::new();
        scan(fs, ino, &st, XATTR_KEY_BIT, u64::MAX, &mut |_, leaf| {
            if let Leaf::Xattr { name, .. } = leaf {
                names.push(name.clone());
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(names)
    }

    pub fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: XattrFlags) -> Result<()> {
        let fs = &self.inner;
        fs.check_writable()?;
        check_xattr_name(name)?;
        if value.len() > MAX_XATTR_VALUE {
            return Err(Error::TooBig);
        }
        // S2: the attribute's own block, if it needs one, and the inode.
        let units = fs.space.meta_blocks(2);
        self.reserve_or_sync(units)?;
        let _g = fs.gate.read();
        let r = (|| {
            let inode = fs.inode(ino)?;
            let mut st = inode.state.write();
            let base = dirent::xattr_key_base(name);
            let key = match find(fs, ino, &st, base, name)? {
                Some((k, _)) if !flags.create => k,
                Some(_) => return Err(Error::Exists),
                None if flags.replace => return Err(Error::NoAttr),
                None => free_key(fs, ino, &st, base)?,
            };
            st.dirty.leaves.insert(key, Some(Leaf::Xattr { name: name.to_vec(), value: value.to_vec() }));
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
        fs.check_writable()?;
        check_xattr_name(name)?;
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
