//! Per-file and per-directory settings (format version 2, inode layout 2): what
//! `hammer2 set NAME=VALUE PATH` and `hammer2 get [NAME] PATH` change and show.
//!
//! They travel as virtual extended attributes `hammer2.NAME` (FUSE hands every namespace
//! to the daemon, as ceph-fuse's `ceph.*` attributes use; the kernel checks write
//! permission on the file for a set): no socket, no root, and the kernel's permission
//! checks apply. They are kept in the inode, never as XATTR leaves, and not listed. A
//! setting applies to data written from then on; a directory's settings are inherited by
//! what is made in it (`dir.rs`): `compression` and `copies`. Data written before a
//! change is brought to it by a rewrite (`rewrite.rs`).

use super::Fs;
use crate::copies::compress;
use crate::error::{Error, Result};
use hammer2_format::Timespec;

/// The namespace of the settings' virtual attributes.
pub const PREFIX: &[u8] = b"hammer2.";

/// One setting a file or directory can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// `none`, `lz4`, `zstd[:LEVEL]`, or `default` (what the mount uses).
    Compression,
    /// `1`..`4`, or `default` (the filesystem's N): how many copies new data blocks get
    /// (VC2); metadata keeps N whatever a file says (VC1).
    Copies,
}

impl Setting {
    pub const ALL: [Setting; 2] = [Setting::Compression, Setting::Copies];

    pub fn name(self) -> &'static str {
        match self {
            Setting::Compression => "compression",
            Setting::Copies => "copies",
        }
    }

    /// The setting an attribute name `hammer2.NAME` stands for; `None` for any other
    /// name, an error for an unknown `hammer2.` one.
    pub fn of_xattr(name: &[u8]) -> Option<Result<Setting>> {
        let rest = name.strip_prefix(PREFIX)?;
        Some(Setting::ALL.into_iter().find(|s| s.name().as_bytes() == rest).ok_or(Error::NoAttr))
    }
}

impl Fs {
    /// The value of `setting` on `ino`: its own (`zstd:5`), or `default (lz4)` when it
    /// inherits the mount's.
    pub fn get_setting(&self, ino: u64, setting: Setting) -> Result<String> {
        Ok(self.setting_of(&self.inner.inode(ino)?, setting))
    }

    /// The value of `setting` on `inode`, read from any tree (a snapshot's inherits the
    /// mount's default too).
    pub(crate) fn setting_of(&self, inode: &crate::inode::InodeRef, setting: Setting) -> String {
        let fs = &self.inner;
        let policy = inode.state.read().meta.policy;
        match setting {
            Setting::Compression => match compress::from_inode(policy.compression, policy.zstd_level) {
                Some(own) => compress::name(own),
                None => format!("default ({})", compress::name(fs.default_codec(&fs.roots.read()))),
            },
            Setting::Copies => match policy.copies {
                0 => format!("default ({})", fs.vol.params.copies),
                n => n.to_string(),
            },
        }
    }

    /// Sets `setting` on `ino` to `value` (`default` removes the file's own). Format
    /// version 2 only: a version-1 inode has no place for it.
    pub fn set_setting(&self, ino: u64, setting: Setting, value: &str) -> Result<()> {
        let fs = &self.inner;
        fs.check_writable()?;
        if fs.roots.read().pfs.is_none() {
            return Err(Error::FormatVersion1);
        }
        #[derive(Clone, Copy)]
        enum Change {
            Compression(u8, u8),
            Copies(u8),
        }
        let change = match setting {
            Setting::Compression if value == "default" => Change::Compression(0, 0),
            Setting::Compression => {
                let (m, l) = compress::to_inode(compress::parse(value).map_err(|e| Error::invalid(e.to_string()))?);
                Change::Compression(m, l)
            }
            Setting::Copies if value == "default" => Change::Copies(0),
            Setting::Copies => Change::Copies(parse_copies(value, fs.vol.max_copies().max(fs.vol.params.copies))?),
        };
        // VC4: data dirtied before a raise of the count was charged for the old count; it is
        // committed with that count first.
        if let Change::Copies(n) = change {
            let inode = fs.inode(ino)?;
            let raises = {
                let st = inode.state.read();
                !st.dirty.data.is_empty() && fs.vol.data_copies(n) > fs.vol.data_copies(st.meta.policy.copies)
            };
            if raises {
                self.sync()?;
            }
        }
        // The inode block the next commit rewrites.
        let units = fs.space.meta_blocks(1);
        self.reserve_or_sync(units)?;
        let _g = fs.gate.read();
        let inode = match fs.inode(ino) {
            Ok(i) => i,
            Err(e) => {
                fs.space.release(units);
                return Err(e);
            }
        };
        let mut st = inode.state.write();
        match change {
            Change::Compression(method, level) => {
                st.meta.policy.compression = method;
                st.meta.policy.zstd_level = level;
            }
            Change::Copies(n) => st.meta.policy.copies = n,
        }
        st.dirty.reserved += units;
        st.meta.ctime = Timespec::now();
        st.meta.version += 1;
        fs.touch(&inode, &mut st);
        Ok(())
    }
}

/// A copies value: 1..=4 and at most `max` (VC1: one copy per domain the filesystem has).
pub fn parse_copies(value: &str, max: u8) -> Result<u8> {
    let n: u8 = value.parse().map_err(|_| Error::invalid(format!("copies {value:?}: expected 1 to 4 or default")))?;
    if n == 0 || usize::from(n) > hammer2_format::layout::MAX_COPIES {
        return Err(Error::invalid(format!("copies {n}: expected 1 to 4 or default")));
    }
    if n > max {
        return Err(Error::invalid(format!("copies {n}: this filesystem has room for {max} copies of a block")));
    }
    Ok(n)
}
