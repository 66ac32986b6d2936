//! The repair session's changes. Each method is one kind of change fsck makes; each takes
//! the gate shared and then the inode's lock, as a VOP does (DESIGN §4), changes the
//! in-memory inode (its attributes and its directory-entry overlay) and queues it for the
//! commit. Nothing is written before [`Session::commit`].

use super::RepairError;
use super::rebuilt_freemap::open_with_used;
use crate::alloc::bitmap::Bitmap;
use crate::copies::read::ReadCtx;
use crate::fs::{FsInner, Options};
use crate::inode::{CommittedInode, Content, Inode, InodeRef, InodeState, Leaf, Meta};
use crate::storage::DynStorage;
use crate::tree::Root;
use crate::vnops::dirent::{free_key, leaf_of};
use crate::vnops::{Creds, Fs};
use crate::walk::{Ctx, TreeKind, Visitor, walk_tree};
use hammer2_format::{BlockType, Blockref, Timespec, dirent, dtype};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

type Result<T> = std::result::Result<T, RepairError>;

/// An open repair session: the filesystem with its free map rebuilt from the reachable
/// blocks, no background committer and no mount-time orphan removal.
pub struct Session {
    fs: Fs,
}

/// Attribute fixes of one inode, applied together (absolute target values).
#[derive(Debug, Clone, Default)]
pub struct InodeFix {
    pub nlink: Option<u32>,
    pub size: Option<u64>,
    pub parent: Option<u64>,
    /// The block count; the commit derives it from the committed count, so that is set.
    pub blocks: Option<u64>,
    /// Drop the data at and past this size.
    pub truncate: Option<u64>,
    /// Rewrite the file's last block (at this key) with zeros past the end of the file.
    pub zero_tail: Option<u64>,
    /// Take the inode off the orphan list (it is still linked).
    pub unorphan: bool,
    /// Extended attributes (by key) whose blocks cannot be read: dropped.
    pub drop_xattrs: Vec<u64>,
}

/// Whether adding an entry also counts it in the directory's size and link count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryCount {
    /// The directory counts its own entries (it was made by this session).
    Count,
    /// Its size and link count are set by an [`InodeFix`].
    Keep,
}

impl Session {
    /// Opens the filesystem on `storages` (all its devices) with an allocator whose used
    /// units are exactly `used[d]` for device `d` (see [`super::used_bitmap`]); the commit
    /// writes a whole new free map.
    pub fn open(storages: &[DynStorage], used: Vec<Bitmap>) -> Result<Session> {
        Self::open_pfs(storages, hammer2_format::layout::ROOT_PFS_NAME, Some(used))
    }

    /// Opens the filesystem on `storages` serving PFS `pfs` (a snapshot is refused: it
    /// mounts read-only). With `used`, as [`Session::open`]; without, the allocator is the
    /// free map on the devices (a session after another one's commit wrote a rebuilt one).
    pub fn open_pfs(storages: &[DynStorage], pfs: &str, used: Option<Vec<Bitmap>>) -> Result<Session> {
        let opts = Options {
            background_sync: false,
            degraded: true,
            read_only: false,
            cache_bytes: 64 << 20,
            dirty_limit: u64::MAX,
            pfs: pfs.to_string(),
            ..Default::default()
        };
        let inner = match used {
            Some(used) => return Ok(Session { fs: open_with_used(storages.to_vec(), opts, used)? }),
            // No orphan removal and no committer: `mount::open`, not `Fs::mount`.
            None => crate::mount::open(storages.to_vec(), opts)?,
        };
        Ok(Session { fs: Fs { inner: Arc::new(inner), syncer: parking_lot::Mutex::new(None), posix_acl: true.into() } })
    }

    /// Sets feature bits in the header the commit writes (a block the filesystem holds
    /// needs them: fsck found it without). A bit is never cleared (FORMAT-V2). Version 1
    /// has no feature bits: refused with the format-version error.
    pub fn set_features(&self, bits: u64) -> Result<()> {
        let fs = self.inner();
        let _g = fs.gate.read();
        let mut roots = fs.roots.write();
        let Some(p) = roots.pfs.as_mut() else { return Err(crate::Error::FormatVersion1.into()) };
        p.features |= bits;
        Ok(())
    }

    fn inner(&self) -> &FsInner {
        &self.fs.inner
    }

    /// Inode numbers below `next` are taken: call before anything allocates one (lost+found).
    pub fn reserve_inums(&self, next: u64) {
        let fs = self.inner();
        let _g = fs.gate.read();
        fs.next_inum.fetch_max(next, Ordering::SeqCst);
    }

    /// Removes an index entry whose inode cannot be read (`br`, its reference), or with
    /// `br` None an orphan-list entry naming no inode: an in-memory inode marked deleted,
    /// with an empty committed tree (what lay below is unknown, and not in the rebuilt free
    /// map either), makes the commit delete the entry. `orphan`: it is in the orphan list.
    pub fn remove_inode(&self, inum: u64, br: Option<Blockref>, orphan: bool) {
        let fs = self.inner();
        let _g = fs.gate.read();
        let meta = Meta {
            mode: hammer2_format::inode::S_IFREG,
            uid: 0,
            gid: 0,
            nlink: 0,
            size: 0,
            rdev: 0,
            atime: Timespec::ZERO,
            mtime: Timespec::ZERO,
            ctime: Timespec::ZERO,
            btime: Timespec::ZERO,
            parent: 0,
            version: 0,
            create_tid: 0,
            blocks: 0,
            policy: Default::default(),
        };
        let committed = CommittedInode { inode_ref: br, content: Content::Tree(Root::empty()), orphan, blocks: 0 };
        let mut st = InodeState::new(meta, committed);
        st.deleted = true;
        let inode: InodeRef = fs.inodes.insert(Arc::new(Inode { inum, state: parking_lot::RwLock::new(st) }));
        let mut st = inode.state.write();
        st.deleted = true;
        fs.touch(&inode, &mut st);
    }

    /// Rebuilds a directory's tree from the entries and attributes that can still be read:
    /// its committed tree is replaced by an empty one, every readable leaf is put back, and
    /// the commit drops the old tree's blocks by the freeing rule (SN1, SN5: a block a
    /// snapshot or a clone's origin still holds is listed or left, not freed; FK2).
    pub fn rebuild_dir(&self, dir: u64) -> Result<()> {
        let fs = self.inner();
        let _g = fs.gate.read();
        let inode = fs.inode(dir)?;
        let mut st = inode.state.write();
        let Content::Tree(root) = st.committed.content.clone() else { return Ok(()) };

        struct Collect<'a> {
            fs: &'a FsInner,
            dir: u64,
            leaves: Vec<(u64, Leaf)>,
            blocks: Vec<Blockref>,
            seen: HashSet<(u8, u64)>,
        }
        impl Visitor for Collect<'_> {
            fn visit(&mut self, br: &Blockref, _ctx: &Ctx) -> crate::Result<Option<Arc<[u8]>>> {
                if let Some(l) = br.ptr().and_then(|p| p.copies.iter().find(|l| l.is_valid()))
                    && self.seen.insert((l.device, l.offset))
                {
                    self.blocks.push(*br);
                }
                match br.btype {
                    BlockType::Indirect => {
                        Ok(self.fs.vol.read_block_uncached(br, &ReadCtx::inode(self.dir)).ok().map(Arc::from))
                    }
                    BlockType::Dirent | BlockType::Xattr => {
                        if let Ok(leaf) = leaf_of(self.fs, self.dir, br) {
                            self.leaves.push((br.key, leaf));
                        }
                        Ok(None)
                    }
                    _ => Ok(None),
                }
            }
        }
        let mut c = Collect { fs, dir, leaves: Vec::new(), blocks: Vec::new(), seen: HashSet::new() };
        walk_tree(&root.entries, TreeKind::Inode(dir), &mut c)?;
        let mut committed = (*st.committed).clone();
        committed.content = Content::Tree(Root::empty());
        committed.blocks = 0;
        st.committed = Arc::new(committed);
        for (k, l) in c.leaves {
            st.dirty.leaves.entry(k).or_insert(Some(l));
        }
        // The commit frees them through `Builder::free_ref`, where the freeing rule lives;
        // they stay allocated on disk until that commit is durable.
        fs.dropped_blocks.lock().extend(c.blocks);
        fs.touch(&inode, &mut st);
        Ok(())
    }

    /// Runs `f` on directory `dir`'s locked state, then queues it.
    fn with_dir(&self, dir: u64, f: impl FnOnce(&FsInner, &mut InodeState) -> crate::Result<()>) -> Result<()> {
        let fs = self.inner();
        let _g = fs.gate.read();
        let inode = fs.inode(dir)?;
        let mut st = inode.state.write();
        let r = f(fs, &mut st);
        fs.touch(&inode, &mut st);
        Ok(r?)
    }

    /// Drops the directory entry at `key` of `dir`.
    pub fn drop_entry(&self, dir: u64, key: u64) -> Result<()> {
        self.with_dir(dir, |_, st| {
            st.dirty.leaves.insert(key, None);
            Ok(())
        })
    }

    /// Rewrites the entry at `key` of `dir` with the same name and target, type `dtype`.
    pub fn retype_entry(&self, dir: u64, key: u64, name: &[u8], target: u64, dtype: u8) -> Result<()> {
        self.with_dir(dir, |_, st| {
            st.dirty.leaves.insert(key, Some(Leaf::Dirent { name: name.to_vec(), inum: target, dtype }));
            Ok(())
        })
    }

    /// Moves the entry at `key` of `dir` to a free key of its name's hash range.
    pub fn rekey_entry(&self, dir: u64, key: u64, name: &[u8], target: u64, dtype: u8) -> Result<()> {
        self.with_dir(dir, |fs, st| {
            st.dirty.leaves.insert(key, None);
            let k = free_key(fs, dir, st, dirent::dirent_key_base(name))?;
            st.dirty.leaves.insert(k, Some(Leaf::Dirent { name: name.to_vec(), inum: target, dtype }));
            Ok(())
        })
    }

    /// Makes a directory (lost+found) through the VOP; returns its inode number.
    pub fn make_dir(&self, parent: u64, name: &[u8], mode: u32) -> Result<u64> {
        Ok(self.fs.mkdir(parent, name, mode, Creds::default())?.ino)
    }

    /// Adds the entry `name` -> `target` to `dir` at a free key of its name's hash range
    /// (re-homing an orphan into lost+found).
    pub fn add_entry(&self, dir: u64, name: &[u8], target: u64, dt: u8, count: EntryCount) -> Result<()> {
        self.with_dir(dir, |fs, st| {
            let k = free_key(fs, dir, st, dirent::dirent_key_base(name))?;
            st.dirty.leaves.insert(k, Some(Leaf::Dirent { name: name.to_vec(), inum: target, dtype: dt }));
            if count == EntryCount::Count {
                st.meta.size += 1;
                if dt == dtype::DIR {
                    st.meta.nlink += 1;
                }
            }
            Ok(())
        })
    }

    /// Applies the attribute fixes of one inode; its ctime and version move once.
    pub fn fix_inode(&self, inum: u64, fix: &InodeFix) -> Result<()> {
        let fs = self.inner();
        let _g = fs.gate.read();
        let inode = fs.inode(inum)?;
        let mut st = inode.state.write();
        if let Some(n) = fix.nlink {
            st.meta.nlink = n;
        }
        if let Some(s) = fix.size {
            st.meta.size = s;
        }
        if let Some(p) = fix.parent {
            st.meta.parent = p;
        }
        if let Some(b) = fix.blocks {
            // The commit derives `blocks` from the committed count: correct that one.
            st.meta.blocks = b;
            let mut c = (*st.committed).clone();
            c.blocks = b;
            st.committed = Arc::new(c);
        }
        if let Some(t) = fix.truncate {
            st.dirty.trunc = Some(st.dirty.trunc.map_or(t, |x| x.min(t)));
        }
        if let Some(key) = fix.zero_tail {
            zero_tail(fs, inum, &mut st, key)?;
        }
        if fix.unorphan {
            // The commit takes an inode off the orphan list when its committed state says
            // it is listed and its link count is no longer zero.
            let mut c = (*st.committed).clone();
            c.orphan = true;
            st.committed = Arc::new(c);
        }
        for key in &fix.drop_xattrs {
            st.dirty.leaves.insert(*key, None);
        }
        st.meta.ctime = Timespec::now();
        st.meta.version += 1;
        fs.touch(&inode, &mut st);
        Ok(())
    }

    /// Writes every change, and the rebuilt free map, in one commit (the engine's own, as
    /// at unmount).
    pub fn commit(self) -> Result<()> {
        Ok(self.fs.unmount()?)
    }
}

/// Puts the file's last block (at `key`) into the overlay with zeros past the end of the
/// file, so the commit rewrites it (stored up to the unit holding the end, as the engine
/// writes tails).
fn zero_tail(fs: &FsInner, inum: u64, st: &mut InodeState, key: u64) -> crate::Result<()> {
    let bs = fs.block_size();
    let size = st.meta.size;
    let Content::Tree(root) = &st.committed.content else { return Ok(()) };
    if key >= size || size - key >= bs {
        return Ok(());
    }
    let Some(br) = crate::tree::lookup(&fs.vol, root, key)? else { return Ok(()) };
    let data = fs.vol.read_data(&br, &ReadCtx::file(inum, key))?;
    let mut buf = vec![0u8; bs as usize];
    let n = data.len().min(buf.len());
    buf[..n].copy_from_slice(&data[..n]);
    buf[(size - key) as usize..].fill(0);
    st.dirty.data.insert(key / bs, Arc::new(buf));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::mem::MemStorage;
    use hammer2_format::layout::ROOT_INUM;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    /// A formatted one-device filesystem and the used units of each device (what a checker
    /// would find reachable: on a fresh filesystem, what its free map says).
    fn fresh() -> (Vec<DynStorage>, Vec<Bitmap>) {
        let st: DynStorage = Arc::new(MemStorage::new(192 << 20, "mem"));
        crate::format::format(vec![st.clone()], &Default::default()).expect("format");
        let fs = Fs::mount(vec![st.clone()], Options { background_sync: false, ..Default::default() }).expect("mount");
        let used = fs.inner.alloc.lock().devs.iter().map(|d| d.bits.clone()).collect();
        fs.unmount().expect("unmount");
        (vec![st], used)
    }

    #[test]
    fn a_change_waits_for_the_gate_like_a_vop_and_the_commit_writes_it() {
        let (storages, used) = fresh();
        let s = Session::open(&storages, used).expect("open");
        let done = AtomicBool::new(false);
        std::thread::scope(|t| {
            let gate = s.inner().gate.write();
            let h = t.spawn(|| {
                s.fix_inode(ROOT_INUM, &InodeFix { nlink: Some(7), ..Default::default() }).expect("fix");
                done.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(100));
            assert!(!done.load(Ordering::SeqCst), "the change ran while the gate was held exclusively");
            drop(gate);
            h.join().expect("join");
        });
        assert!(done.load(Ordering::SeqCst));
        s.commit().expect("commit");
        let fs = Fs::mount(storages, Options { background_sync: false, ..Default::default() }).expect("mount");
        assert_eq!(fs.getattr(ROOT_INUM).expect("getattr").nlink, 7);
        fs.unmount().expect("unmount");
    }

    #[test]
    fn used_maps_must_match_the_devices() {
        let (storages, mut used) = fresh();
        used.push(used[0].clone());
        assert!(matches!(Session::open(&storages, used), Err(RepairError::UsedMaps { maps: 2, devices: 1 })));
        let (storages, _) = fresh();
        let small = vec![Bitmap::empty(1)];
        assert!(matches!(Session::open(&storages, small), Err(RepairError::UsedMapTooSmall { device: 0 })));
    }
}
