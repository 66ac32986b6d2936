//! The snapshots of the served PFS, read-only, through the mounted filesystem (issue 24;
//! DESIGN §13 "Snapshots under the mount"). A view reads a snapshot's trees through the
//! mount's volume and block cache with the same code that reads the live tree
//! (`dir::list`, `file::read_locked`, `xattr`), from an inode cache of its own: a
//! snapshot's inode numbers are its own and may equal live ones. Nothing here changes
//! anything; the front end refuses every change inside a snapshot with EROFS and maps the
//! inode numbers (the FUSE daemon's `snapdir.rs`).

use super::dir::{child, list};
use super::file::{Whence, read_locked, read_locked_into, seek_locked};
use super::{Attr, DirEntry, Fs};
use crate::error::{Error, Result};
use crate::fs::snapviews::View;
use crate::fs::{locate_inode, read_inode};
use crate::inode::InodeRef;
use hammer2_format::Timespec;
use hammer2_format::pfs::PfsKind;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A snapshot of the served PFS, as `.snapshots` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// The snapshot's record id (never reused).
    pub id: u64,
    pub name: String,
    pub create_tid: u64,
    pub created: Timespec,
}

/// A read-only view of one snapshot of the served PFS. Every call answers ESTALE once the
/// snapshot is deleted (SD2).
pub struct SnapshotView<'a> {
    fs: &'a Fs,
    view: Arc<View>,
}

fn stale() -> Error {
    Error::Io(std::io::Error::from_raw_os_error(libc::ESTALE))
}

impl Fs {
    /// The snapshots of the served PFS in the committed PFS table, oldest first: records of
    /// kind snapshot whose origin is the served PFS (SD1). None on a version-1 filesystem,
    /// and none of a snapshot served by itself (`-o pfs=SNAPSHOT`). A snapshot named `.` or
    /// `..` (a PFS name may be) cannot be a directory entry and is left out.
    pub fn snapshots(&self) -> Result<Vec<SnapshotEntry>> {
        let fs = &self.inner;
        let (table, served) = {
            let roots = fs.roots.read();
            match roots.pfs.as_ref() {
                Some(p) => (p.table.clone(), p.served.as_ref().map(|r| r.id)),
                None => return Ok(Vec::new()),
            }
        };
        let Some(served) = served else { return Ok(Vec::new()) };
        let mut out: Vec<SnapshotEntry> = crate::pfs::records(&fs.vol, &table, fs.vol.devices.len())?
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| r.kind == PfsKind::Snapshot && r.origin == served && r.name != "." && r.name != "..")
            .map(|r| SnapshotEntry {
                id: r.id,
                name: r.name,
                create_tid: r.create_tid,
                created: Timespec {
                    sec: (r.create_time_ns / 1_000_000_000) as i64,
                    nsec: (r.create_time_ns % 1_000_000_000) as u32,
                },
            })
            .collect();
        out.sort_by_key(|s| s.create_tid);
        Ok(out)
    }

    /// Whether the served PFS can have snapshots (format version 2, a PFS table): a
    /// version-1 filesystem has none, and the front end then serves no `.snapshots`.
    pub fn has_snapshots(&self) -> bool {
        self.inner.roots.read().pfs.is_some()
    }

    /// A read-only view of snapshot `id` of the served PFS; NotFound when there is no such
    /// snapshot (any more). Views are kept while the mount lasts, so the same snapshot gives
    /// the same inodes.
    pub fn snapshot_view(&self, id: u64) -> Result<SnapshotView<'_>> {
        let fs = &self.inner;
        let mut views = fs.snapviews.by_id.lock();
        if let Some(v) = views.get(&id) {
            return Ok(SnapshotView { fs: self, view: v.clone() });
        }
        // Under the views' lock: a deletion holds it from its check to its commit's end.
        let (table, served) = {
            let roots = fs.roots.read();
            let p = roots.pfs.as_ref().ok_or(Error::NotFound)?;
            (p.table.clone(), p.served.as_ref().map(|r| r.id).ok_or(Error::NotFound)?)
        };
        let record = crate::pfs::records(&fs.vol, &table, fs.vol.devices.len())?
            .into_iter()
            .map(|(_, r)| r)
            .find(|r| r.id == id && r.kind == PfsKind::Snapshot && r.origin == served)
            .ok_or(Error::NotFound)?;
        let view = Arc::new(View::new(record));
        views.insert(id, view.clone());
        Ok(SnapshotView { fs: self, view })
    }

    /// Calls `hook` with the name of every snapshot deleted from now on, once its deletion
    /// is committed (the FUSE daemon invalidates the kernel's entry `.snapshots/NAME`).
    pub fn on_snapshot_deleted(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        *self.inner.snapviews.on_delete.lock() = Some(Box::new(hook));
    }

    /// [`Fs::snapshot_view`] of the snapshot of the served PFS named `name`.
    pub fn snapshot_named(&self, name: &[u8]) -> Result<SnapshotView<'_>> {
        let entry = self.snapshots()?.into_iter().find(|s| s.name.as_bytes() == name).ok_or(Error::NotFound)?;
        self.snapshot_view(entry.id)
    }
}

impl SnapshotView<'_> {
    pub fn id(&self) -> u64 {
        self.view.record.id
    }

    pub fn name(&self) -> &str {
        &self.view.record.name
    }

    pub fn create_tid(&self) -> u64 {
        self.view.record.create_tid
    }

    /// Runs `f` on inode `ino` of the snapshot while it exists (SD2).
    fn with<T>(&self, ino: u64, f: impl FnOnce(&InodeRef) -> Result<T>) -> Result<T> {
        let live = self.view.live.read();
        if !*live {
            return Err(stale());
        }
        let inode = match self.view.inodes.get(ino) {
            Some(i) => i,
            None => {
                let fs = &self.fs.inner;
                let inode = read_inode(&fs.vol, locate_inode(fs, &self.view.index, ino)?, ino)?;
                let inode = self.view.inodes.insert(Arc::new(inode));
                self.view.inodes.evict_clean();
                inode
            }
        };
        f(&inode)
    }

    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        self.with(ino, |i| Ok(Attr::from_meta(ino, &i.state.read().meta)))
    }

    /// Attributes of `name` in directory `parent` of the snapshot (`..` of its root is its
    /// root's own parent field: the front end answers that one itself).
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Attr> {
        let inum = self.with(parent, |dir| child(&self.fs.inner, dir, name))?;
        self.getattr(inum)
    }

    /// Attributes of `ino` found by its number alone (a file handle): NotFound for an inode
    /// the snapshot holds without a name (one that was open and unlinked when it was taken).
    pub fn lookup_inode(&self, ino: u64) -> Result<Attr> {
        let a = self.getattr(ino)?;
        if a.nlink == 0 {
            return Err(Error::NotFound);
        }
        Ok(a)
    }

    pub fn readdir(&self, ino: u64, cookie: u64, mut f: impl FnMut(&DirEntry) -> bool) -> Result<()> {
        self.with(ino, |dir| list(&self.fs.inner, dir, cookie, &mut f))
    }

    /// Reads the file as the snapshot holds it; its atime is not touched (nothing in a
    /// snapshot changes).
    pub fn read(&self, ino: u64, off: u64, len: usize) -> Result<Vec<u8>> {
        self.with(ino, |i| read_locked(&self.fs.inner, ino, &i.state.read(), off, len))
    }

    /// As `read`, into the caller's buffer; returns the count.
    pub fn read_into(&self, ino: u64, off: u64, out: &mut [u8]) -> Result<usize> {
        self.with(ino, |i| read_locked_into(&self.fs.inner, ino, &i.state.read(), off, out))
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        self.with(ino, |i| {
            let st = i.state.read();
            if !st.meta.is_symlink() {
                return Err(Error::invalid("not a symlink"));
            }
            read_locked(&self.fs.inner, ino, &st, 0, st.meta.size as usize)
        })
    }

    pub fn seek(&self, ino: u64, off: u64, whence: Whence) -> Result<u64> {
        self.with(ino, |i| seek_locked(&self.fs.inner, &i.state.read(), off, whence))
    }

    /// An attribute as the snapshot holds it: ACLs too, which the kernel then enforces
    /// inside the snapshot as in the live tree.
    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        self.with(ino, |i| self.fs.read_xattr(i, name))
    }

    pub fn listxattr(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        self.with(ino, |i| self.fs.xattr_names(i))
    }

    /// A file or directory of the snapshot was opened: the snapshot cannot be deleted
    /// until it is released (SD3).
    pub fn open(&self, ino: u64) -> Result<()> {
        self.with(ino, |_| {
            self.view.opens.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }

    /// An open of [`SnapshotView::open`] was released (also after the snapshot's deletion
    /// was refused for it, never after a deletion: none happens while one is open).
    pub fn release(&self) {
        let _ = self.view.opens.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
}
