//! `.snapshots`: the snapshots of the served PFS, read-only, under the PFS's root
//! (DESIGN §13 "Snapshots under the mount"). The engine reads a snapshot's trees
//! (`hammer2::SnapshotView`); this file gives its inodes FUSE inode numbers, answers for the
//! virtual directory itself, and refuses every change inside it.
//!
//! Inode numbers (SD4): the live tree keeps its own numbers (slot 0: below 2^48, which the
//! counter never reaches); an inode of a snapshot is `slot << 48 | its number in the
//! snapshot`, where the slot (1 to 0xFFFE) is given to the snapshot the first time this
//! mount shows it and kept until the daemon ends; `.snapshots` itself is slot 0xFFFF.

use super::Hammer2Fuse;
use hammer2::{Attr, DirEntry, Error, Fs};
use hammer2_format::dtype;
use hammer2_format::layout::ROOT_INUM;
use parking_lot::Mutex;
use std::collections::HashMap;

/// The name of the virtual directory in the served PFS's root.
pub const NAME: &[u8] = b".snapshots";
const SLOT_SHIFT: u32 = 48;
const INUM_MASK: u64 = (1 << SLOT_SHIFT) - 1;
/// `.snapshots` itself.
pub const DIR_INO: u64 = 0xFFFF << SLOT_SHIFT;
/// Slots for snapshots: 1 to this.
const MAX_SLOT: usize = 0xFFFE;
/// Readdir cookies of `.snapshots`: a snapshot's is its create tid plus this (tids are
/// unique and at least 1), so a listing resumed after a deletion neither skips nor repeats.
const COOKIE_BASE: u64 = 2;

/// `-o snapdir=`: whether the root's listing shows `.snapshots`; `off` serves no virtual
/// directory at all (a real `.snapshots` in the root is then reachable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    Off,
    #[default]
    Hidden,
    Visible,
}

/// What a FUSE inode number names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// The served PFS's inode.
    Live(u64),
    /// `.snapshots`.
    Dir,
    /// Inode `ino` of snapshot `id`.
    Snap { id: u64, ino: u64 },
}

#[derive(Default)]
pub struct SnapDir {
    mode: Mode,
    /// Slot `i + 1` belongs to snapshot `ids[i]` (by record id, never reused).
    slots: Mutex<(Vec<u64>, HashMap<u64, u64>)>,
}

fn read_only() -> Error {
    Error::ReadOnly
}

fn stale() -> Error {
    Error::Io(std::io::Error::from_raw_os_error(libc::ESTALE))
}

impl SnapDir {
    pub fn new(mode: Mode) -> SnapDir {
        SnapDir { mode, slots: Mutex::default() }
    }

    /// What `ino` names. A slot no snapshot holds is ESTALE (a number from another run).
    pub fn node(&self, ino: u64) -> hammer2::Result<Node> {
        if self.mode == Mode::Off || ino >> SLOT_SHIFT == 0 {
            return Ok(Node::Live(ino));
        }
        if ino == DIR_INO {
            return Ok(Node::Dir);
        }
        let slot = (ino >> SLOT_SHIFT) as usize;
        let id = self.slots.lock().0.get(slot - 1).copied().ok_or_else(stale)?;
        Ok(Node::Snap { id, ino: ino & INUM_MASK })
    }

    /// True when `ino` is not the served PFS's (a change there is EROFS).
    pub fn is_virtual(&self, ino: u64) -> bool {
        self.mode != Mode::Off && ino >> SLOT_SHIFT != 0
    }

    /// The FUSE number of inode `ino` of snapshot `id`, giving the snapshot a slot the first
    /// time (SD4).
    fn encode(&self, id: u64, ino: u64) -> hammer2::Result<u64> {
        if ino > INUM_MASK {
            return Err(Error::Io(std::io::Error::from_raw_os_error(libc::EOVERFLOW)));
        }
        let mut slots = self.slots.lock();
        let slot = match slots.1.get(&id) {
            Some(s) => *s,
            None => {
                if slots.0.len() >= MAX_SLOT {
                    tracing::error!("more than {MAX_SLOT} snapshots shown since mount: remount to show more");
                    return Err(Error::Io(std::io::Error::from_raw_os_error(libc::EOVERFLOW)));
                }
                slots.0.push(id);
                let s = slots.0.len() as u64;
                slots.1.insert(id, s);
                s
            }
        };
        Ok(slot << SLOT_SHIFT | ino)
    }

    /// `name` in directory `parent` is `.snapshots` in the root.
    pub fn names_dir(&self, parent: u64, name: &[u8]) -> bool {
        self.mode != Mode::Off && parent == ROOT_INUM && name == NAME
    }

    /// Refuses a change of name `name` in `parent`: inside `.snapshots` or a snapshot
    /// EROFS, and `.snapshots` itself in the root EEXIST when `creating` it, else EROFS
    /// (SD5).
    pub fn check_change(&self, parent: u64, name: &[u8], creating: bool) -> hammer2::Result<()> {
        if self.is_virtual(parent) {
            return Err(read_only());
        }
        if self.names_dir(parent, name) {
            return Err(if creating { Error::Exists } else { read_only() });
        }
        Ok(())
    }

    /// Refuses a change of inode `ino` when it is not the served PFS's (SD5).
    pub fn check_inode(&self, ino: u64) -> hammer2::Result<()> {
        if self.is_virtual(ino) { Err(read_only()) } else { Ok(()) }
    }
}

impl Hammer2Fuse {
    /// `.snapshots`'s attributes: read-only for everyone, the root's birth time (so its
    /// generation never changes), changed when the newest snapshot was taken.
    fn dir_attr(&self, fs: &Fs) -> hammer2::Result<Attr> {
        let root = fs.getattr(ROOT_INUM)?;
        let snaps = fs.snapshots()?;
        let changed = snaps.iter().map(|s| s.created).max().unwrap_or(root.btime);
        Ok(Attr {
            ino: DIR_INO,
            mode: libc::S_IFDIR | 0o555,
            nlink: 2 + snaps.len() as u32,
            uid: 0,
            gid: 0,
            size: snaps.len() as u64,
            blocks: 0,
            rdev: 0,
            atime: changed,
            mtime: changed,
            ctime: changed,
            btime: root.btime,
        })
    }

    /// The attributes of FUSE inode `ino`, whichever tree holds it.
    pub(super) fn attr_of(&self, fs: &Fs, ino: u64) -> hammer2::Result<Attr> {
        match self.snapdir.node(ino)? {
            Node::Live(i) => fs.getattr(i),
            Node::Dir => self.dir_attr(fs),
            Node::Snap { id, ino } => {
                let mut a = fs.snapshot_view(id).map_err(gone)?.getattr(ino)?;
                a.ino = self.snapdir.encode(id, a.ino)?;
                Ok(a)
            }
        }
    }

    /// The entry `name` in directory `parent` (`.` and `..` included, as file handles ask
    /// for them), taking the kernel's lookup reference for a live inode.
    pub(super) fn lookup_node(&self, fs: &Fs, parent: u64, name: &[u8]) -> hammer2::Result<Attr> {
        let a = match self.snapdir.node(parent)? {
            Node::Live(p) if name == b"." => fs.lookup_inode(p)?,
            Node::Live(p) if self.snapdir.names_dir(p, name) => return self.dir_attr(fs),
            Node::Live(p) => fs.lookup(p, name)?,
            Node::Dir => {
                return match name {
                    b"." => self.dir_attr(fs),
                    b".." => {
                        let a = fs.getattr(ROOT_INUM)?;
                        fs.lookup_ref(ROOT_INUM);
                        Ok(a)
                    }
                    _ => {
                        let v = fs.snapshot_named(name)?;
                        let mut a = v.getattr(ROOT_INUM)?;
                        a.ino = self.snapdir.encode(v.id(), a.ino)?;
                        Ok(a)
                    }
                };
            }
            Node::Snap { id, ino } => {
                let v = fs.snapshot_view(id).map_err(gone)?;
                let mut a = match name {
                    b"." => v.lookup_inode(ino)?,
                    b".." if ino == ROOT_INUM => return self.dir_attr(fs),
                    _ => v.lookup(ino, name)?,
                };
                a.ino = self.snapdir.encode(id, a.ino)?;
                return Ok(a);
            }
        };
        if self.snapdir.is_virtual(a.ino) {
            // A live number past 2^48 would read as a snapshot's (SD4).
            return Err(Error::Io(std::io::Error::from_raw_os_error(libc::EOVERFLOW)));
        }
        fs.lookup_ref(a.ino);
        Ok(a)
    }

    /// The kernel holds one more reference to `ino` (readdirplus): kept for live inodes
    /// only; a snapshot's are read again whenever needed.
    pub(super) fn entry_ref(&self, fs: &Fs, ino: u64) {
        if !self.snapdir.is_virtual(ino) {
            fs.lookup_ref(ino);
        }
    }

    /// Lists directory `ino` from `cookie`, with FUSE inode numbers: the root without a
    /// real `.snapshots` (the virtual one wins) and with the virtual one when visible,
    /// `.snapshots` as its snapshots, a snapshot's directories as it holds them.
    pub(super) fn entries(
        &self,
        fs: &Fs,
        ino: u64,
        cookie: u64,
        f: &mut dyn FnMut(&DirEntry) -> bool,
    ) -> hammer2::Result<()> {
        match self.snapdir.node(ino)? {
            Node::Live(i) if i == ROOT_INUM && self.snapdir.mode != Mode::Off => {
                let visible = self.snapdir.mode == Mode::Visible;
                let dir = DirEntry { ino: DIR_INO, name: NAME.to_vec(), dtype: dtype::DIR, next: 3 };
                // After `..` (cookie 2) and before the first name (keys start at 0x8000).
                if cookie == 2 && visible && f(&dir) {
                    return Ok(());
                }
                fs.readdir(i, if cookie == 2 { 3 } else { cookie }, |e| {
                    if e.name == NAME {
                        return false;
                    }
                    f(e) || (e.next == 2 && visible && f(&dir))
                })
            }
            Node::Live(i) => fs.readdir(i, cookie, f),
            Node::Dir => {
                if cookie == 0 && f(&DirEntry { ino: DIR_INO, name: b".".to_vec(), dtype: dtype::DIR, next: 1 }) {
                    return Ok(());
                }
                if cookie <= 1 && f(&DirEntry { ino: ROOT_INUM, name: b"..".to_vec(), dtype: dtype::DIR, next: 2 }) {
                    return Ok(());
                }
                for s in fs.snapshots()? {
                    let at = s.create_tid + COOKIE_BASE;
                    if at < cookie.max(2) {
                        continue;
                    }
                    let e = DirEntry {
                        ino: self.snapdir.encode(s.id, ROOT_INUM)?,
                        name: s.name.into_bytes(),
                        dtype: dtype::DIR,
                        next: at + 1,
                    };
                    if f(&e) {
                        break;
                    }
                }
                Ok(())
            }
            Node::Snap { id, ino } => {
                let v = fs.snapshot_view(id).map_err(gone)?;
                let mut err = None;
                v.readdir(ino, cookie, |e| {
                    let mapped =
                        if e.name == b".." && ino == ROOT_INUM { Ok(DIR_INO) } else { self.snapdir.encode(id, e.ino) };
                    match mapped {
                        Ok(n) => f(&DirEntry { ino: n, ..e.clone() }),
                        Err(x) => {
                            err = Some(x);
                            true
                        }
                    }
                })?;
                err.map_or(Ok(()), Err)
            }
        }
    }

    /// A file or directory opened: inside a snapshot, read-only (EROFS for any other
    /// access) and counted, so the snapshot is not deleted under it (SD3).
    pub(super) fn open_node(&self, fs: &Fs, ino: u64, flags: i32) -> hammer2::Result<Node> {
        let node = self.snapdir.node(ino)?;
        match node {
            Node::Live(i) => fs.open(i)?,
            Node::Dir => {}
            Node::Snap { id, ino } => {
                if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
                    return Err(read_only());
                }
                fs.snapshot_view(id).map_err(gone)?.open(ino)?;
            }
        }
        Ok(node)
    }

    /// The open of `open_node` was released.
    pub(super) fn release_node(&self, fs: &Fs, ino: u64) -> hammer2::Result<()> {
        match self.snapdir.node(ino)? {
            Node::Live(i) => fs.release(i),
            Node::Dir => Ok(()),
            Node::Snap { id, .. } => {
                if let Ok(v) = fs.snapshot_view(id) {
                    v.release();
                }
                Ok(())
            }
        }
    }

    pub(super) fn read_node_into(&self, fs: &Fs, ino: u64, off: u64, out: &mut [u8]) -> hammer2::Result<usize> {
        match self.snapdir.node(ino)? {
            Node::Live(i) => fs.read_into(i, off, out),
            Node::Dir => Err(Error::IsDir),
            Node::Snap { id, ino } => fs.snapshot_view(id).map_err(gone)?.read_into(ino, off, out),
        }
    }

    pub(super) fn readlink_node(&self, fs: &Fs, ino: u64) -> hammer2::Result<Vec<u8>> {
        match self.snapdir.node(ino)? {
            Node::Live(i) => fs.readlink(i),
            Node::Dir => Err(Error::invalid("not a symlink")),
            Node::Snap { id, ino } => fs.snapshot_view(id).map_err(gone)?.readlink(ino),
        }
    }

    pub(super) fn seek_node(&self, fs: &Fs, ino: u64, off: u64, whence: hammer2::Whence) -> hammer2::Result<u64> {
        match self.snapdir.node(ino)? {
            Node::Live(i) => fs.seek(i, off, whence),
            Node::Dir => Err(Error::IsDir),
            Node::Snap { id, ino } => fs.snapshot_view(id).map_err(gone)?.seek(ino, off, whence),
        }
    }

    pub(super) fn getxattr_node(&self, fs: &Fs, ino: u64, name: &[u8]) -> hammer2::Result<Vec<u8>> {
        match self.snapdir.node(ino)? {
            Node::Live(i) => fs.getxattr(i, name),
            Node::Dir => Err(Error::NoAttr),
            Node::Snap { id, ino } => fs.snapshot_view(id).map_err(gone)?.getxattr(ino, name),
        }
    }

    pub(super) fn listxattr_node(&self, fs: &Fs, ino: u64) -> hammer2::Result<Vec<Vec<u8>>> {
        match self.snapdir.node(ino)? {
            Node::Live(i) => fs.listxattr(i),
            Node::Dir => Ok(Vec::new()),
            Node::Snap { id, ino } => fs.snapshot_view(id).map_err(gone)?.listxattr(ino),
        }
    }
}

/// A snapshot's inode whose snapshot was deleted: ESTALE, never its old data (SD2).
fn gone(e: Error) -> Error {
    match e {
        Error::NotFound => stale(),
        e => e,
    }
}

/// Warns once at mount when a real `.snapshots` in the root is hidden by the virtual one.
pub fn warn_shadowed(fs: &Fs, mode: Mode) {
    if mode != Mode::Off && fs.lookup(ROOT_INUM, NAME).is_ok() {
        tracing::warn!(
            "the root holds a real .snapshots, hidden by the snapshot directory; mount with -o snapdir=off to reach it"
        );
    }
}
