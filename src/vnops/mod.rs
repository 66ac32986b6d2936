//! The VOP layer: everything a POSIX filesystem offers, as methods on [`Fs`]. The FUSE
//! daemon is a thin translation of these calls; tests call them directly too.
//!
//! Every operation that changes state holds the snapshot gate shared for its whole
//! duration (so a commit sees it entirely or not at all) and locks the inodes it touches
//! in inode-number order (so two operations never wait on each other in a cycle).

pub mod acl;
pub mod attr;
pub mod data;
pub mod dir;
pub mod dirent;
pub mod file;
pub mod rename;
pub mod rewrite;
pub mod settings;
pub mod snapview;
pub mod xattr;

use crate::fs::FsInner;
use crate::inode::{InodeRef, InodeState, Meta};
use hammer2_format::Timespec;
use hammer2_format::inode::{S_IFDIR, S_IFMT, S_IFREG};
use libc::{S_ISGID, S_ISUID, S_IXGRP};
use parking_lot::RwLockWriteGuard;
use std::sync::Arc;

/// The public handle of a mounted filesystem.
pub struct Fs {
    pub(crate) inner: Arc<FsInner>,
    pub(crate) syncer: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Whether POSIX ACLs are kept (see `acl.rs`): only where whoever checks permissions
    /// enforces them. Otherwise `system.posix_acl_*` is refused, never stored unenforced.
    pub(crate) posix_acl: std::sync::atomic::AtomicBool,
}

/// File attributes, as `stat(2)` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// 512-byte blocks.
    pub blocks: u64,
    pub rdev: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub btime: Timespec,
}

impl Attr {
    pub fn from_meta(ino: u64, m: &Meta) -> Attr {
        Attr {
            ino,
            mode: m.mode,
            nlink: m.nlink,
            uid: m.uid,
            gid: m.gid,
            size: m.size,
            blocks: m.blocks.div_ceil(512),
            rdev: m.rdev,
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime,
            btime: m.btime,
        }
    }
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }

    /// What tells apart two inodes that had the same number, for file handles (DESIGN §12,
    /// "File handles"): taken from the creation time, which nothing changes. Numbers are
    /// not reused while the filesystem runs, but after a crash those of files created since
    /// the last commit are handed out again, to files created later. The kernel keeps 32
    /// bits; the root's is 0, as the kernel made it at mount.
    pub fn generation(&self) -> u64 {
        if self.ino == hammer2_format::layout::ROOT_INUM {
            return 0;
        }
        u64::from(self.btime.nsec ^ (self.btime.sec as u32).rotate_left(16))
    }
}

/// Changes requested by `setattr`; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    pub ctime: Option<Timespec>,
    /// Who truncates or changes the owner, for the set-user/group-ID bits that costs a
    /// non-directory (see [`killed_mode`]); None keeps them (a setattr from a caller that
    /// keeps them, or one that sets the mode itself).
    pub kill_suidgid: Option<Caller>,
}

/// The caller of a change that may cost a file its set-user/group-ID bits, as Linux judges
/// it: its CAP_FSETID and its groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// Holds CAP_FSETID (over the file's owner and group).
    pub fsetid: bool,
    /// Its filesystem group id and supplementary groups.
    pub groups: Vec<u32>,
}

/// What a change costs a file's set-id bits: the mode afterwards, None when it keeps them.
/// Linux's rules (`setattr_should_drop_suidgid`, `chown_common`), which ext4 follows:
/// - a write, truncate or fallocate by a caller without CAP_FSETID drops set-user-ID, and
///   set-group-ID when the group may execute or the caller is not in the file's group (it
///   could not have set it); a caller with CAP_FSETID keeps both;
/// - a chown (`chown` true) of any non-directory drops set-user-ID whoever asks, and
///   set-group-ID as above.
///
/// Never a directory: its set-group-ID is inheritance, not a privilege.
pub fn killed_mode(mode: u32, gid: u32, caller: &Caller, chown: bool) -> Option<u32> {
    let applies = if chown { mode & S_IFMT != S_IFDIR } else { mode & S_IFMT == S_IFREG };
    if !applies || (caller.fsetid && !chown) {
        return None;
    }
    let mut m = mode & !S_ISUID;
    if mode & S_IXGRP != 0 || (!caller.fsetid && !caller.groups.contains(&gid)) {
        m &= !S_ISGID;
    }
    (m != mode).then_some(m)
}

#[derive(Debug, Clone, Copy)]
pub enum TimeSet {
    Now,
    At(Timespec),
}

impl TimeSet {
    fn resolve(self) -> Timespec {
        match self {
            TimeSet::Now => Timespec::now(),
            TimeSet::At(t) => t,
        }
    }
}

/// The creator of a new inode.
#[derive(Debug, Clone, Copy, Default)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    /// The creator's umask: applied to the new inode's mode unless its directory has a
    /// default ACL (which then decides instead, see `Fs::inherit`).
    pub umask: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub name: Vec<u8>,
    pub dtype: u8,
    /// Cookie to pass to `readdir` to continue after this entry.
    pub next: u64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RenameFlags {
    pub noreplace: bool,
    pub exchange: bool,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct StatFs {
    pub block_size: u32,
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_avail: u64,
    pub files: u64,
    pub files_free: u64,
    pub name_max: u32,
}

/// Write-locks a set of inodes in inode-number order (duplicates locked once). The guards
/// borrow the caller's slice, which therefore outlives them.
pub(crate) fn lock_all(inodes: &[InodeRef]) -> Vec<(u64, RwLockWriteGuard<'_, InodeState>)> {
    let mut v: Vec<&InodeRef> = inodes.iter().collect();
    v.sort_by_key(|i| i.inum);
    v.dedup_by_key(|i| i.inum);
    v.into_iter().map(|i| (i.inum, i.state.write())).collect()
}

pub(crate) fn guard<'a, 'g>(locks: &'a mut [(u64, RwLockWriteGuard<'g, InodeState>)], inum: u64) -> &'a mut InodeState {
    // Callers only ask for inodes they passed to lock_all.
    let i = locks.iter().position(|(n, _)| *n == inum).expect("inode locked by lock_all");
    &mut locks[i].1
}
