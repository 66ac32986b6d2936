//! The tree repairs, made through the engine: the filesystem is opened with its free map
//! rebuilt from the reachable blocks (`hammer2::repair::open_with_used`), the plan is
//! applied to in-memory inodes (their attributes and their directory-entry overlays, as
//! the VOP layer does), and one commit writes it all, free map included.

use crate::plan::{EntryChange, ParentRef, Plan};
use hammer2::alloc::Extent;
use hammer2::alloc::bitmap::Bitmap;
use hammer2::copies::read::ReadCtx;
use hammer2::fs::FsInner;
use hammer2::inode::{CommittedInode, Content, Inode, InodeRef, InodeState, Leaf, Meta};
use hammer2::storage::DynStorage;
use hammer2::tree::Root;
use hammer2::vnops::dirent::{free_key, leaf_of};
use hammer2::walk::{Ctx, TreeKind, Visitor, walk_tree};
use hammer2::{Creds, Fs};
use hammer2_format::layout::ROOT_INUM;
use hammer2_format::{BlockType, Blockref, Timespec, dirent, dtype};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Applies the plan and commits (the free map is rewritten whatever the plan holds).
pub fn commit_plan(storages: &[DynStorage], used: Vec<Bitmap>, plan: &Plan) -> hammer2::Result<()> {
    let opts = hammer2::Options {
        background_sync: false,
        degraded: true,
        read_only: false,
        cache_bytes: 64 << 20,
        dirty_limit: u64::MAX,
        ..Default::default()
    };
    let fs = hammer2::repair::open_with_used(storages.to_vec(), opts, used)?;
    apply(&fs, plan)?;
    fs.unmount()
}

fn apply(fs: &Fs, plan: &Plan) -> hammer2::Result<()> {
    let inner = fs.inner();
    if let Some(n) = plan.next_inum {
        // Before anything allocates an inode number (lost+found).
        inner.next_inum.fetch_max(n, Ordering::SeqCst);
    }
    for &(inum, br, orphan) in &plan.remove_inodes {
        remove_inode(inner, inum, Some(br), orphan);
    }
    for &inum in &plan.drop_orphans {
        remove_inode(inner, inum, None, true);
    }
    for &dir in &plan.rebuild_dirs {
        rebuild_dir(inner, dir)?;
    }
    for (&dir, changes) in &plan.entries {
        let inode = inner.inode(dir)?;
        let mut st = inode.state.write();
        for c in changes {
            match c {
                EntryChange::Drop { key } => {
                    st.dirty.leaves.insert(*key, None);
                }
                EntryChange::Retype { key, name, target, dtype } => {
                    st.dirty
                        .leaves
                        .insert(*key, Some(Leaf::Dirent { name: name.clone(), inum: *target, dtype: *dtype }));
                }
                EntryChange::Rekey { key, name, target, dtype } => {
                    st.dirty.leaves.insert(*key, None);
                    let k = free_key(inner, dir, &st, dirent::dirent_key_base(name))?;
                    st.dirty.leaves.insert(k, Some(Leaf::Dirent { name: name.clone(), inum: *target, dtype: *dtype }));
                }
            }
        }
        inner.touch(&inode, &mut st);
    }
    let lf = match &plan.lost_found {
        None => None,
        Some(l) => {
            let lf = match l.existing {
                Some(i) => i,
                None => fs.mkdir(ROOT_INUM, &l.name, 0o700, Creds::default())?.ino,
            };
            let inode = inner.inode(lf)?;
            let mut st = inode.state.write();
            for (name, target, dt) in &l.links {
                let k = free_key(inner, lf, &st, dirent::dirent_key_base(name))?;
                st.dirty.leaves.insert(k, Some(Leaf::Dirent { name: name.clone(), inum: *target, dtype: *dt }));
                if l.existing.is_none() {
                    // A new lost+found counts its own entries; an existing one is set from
                    // the plan below.
                    st.meta.size += 1;
                    if *dt == dtype::DIR {
                        st.meta.nlink += 1;
                    }
                }
            }
            inner.touch(&inode, &mut st);
            Some(lf)
        }
    };
    for (&inum, fix) in &plan.inodes {
        let inode = inner.inode(inum)?;
        let mut st = inode.state.write();
        if let Some(n) = fix.nlink {
            st.meta.nlink = n;
        }
        if let Some(s) = fix.size {
            st.meta.size = s;
        }
        match fix.parent {
            Some(ParentRef::Inode(p)) => st.meta.parent = p,
            Some(ParentRef::LostFound) => st.meta.parent = lf.unwrap_or(ROOT_INUM),
            None => {}
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
            zero_tail(inner, inum, &mut st, key)?;
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
        inner.touch(&inode, &mut st);
    }
    Ok(())
}

/// Puts the file's last block (at `key`) into the overlay with zeros past the end of the
/// file, so the commit rewrites it (stored up to the unit holding the end, as the engine
/// writes tails).
fn zero_tail(inner: &FsInner, inum: u64, st: &mut InodeState, key: u64) -> hammer2::Result<()> {
    let bs = inner.block_size();
    let size = st.meta.size;
    let Content::Tree(root) = &st.committed.content else { return Ok(()) };
    if key >= size || size - key >= bs {
        return Ok(());
    }
    let Some(br) = hammer2::tree::lookup(&inner.vol, root, key)? else { return Ok(()) };
    let data = inner.vol.read_block(&br, &ReadCtx::file(inum, key))?;
    let mut buf = vec![0u8; bs as usize];
    let n = data.len().min(buf.len());
    buf[..n].copy_from_slice(&data[..n]);
    buf[(size - key) as usize..].fill(0);
    st.dirty.data.insert(key / bs, Arc::new(buf));
    Ok(())
}

/// Removes an index entry whose inode cannot be read (or an orphan-list entry naming no
/// inode): an in-memory inode marked deleted, with an empty committed tree (what lay below
/// is unknown, and not in the rebuilt free map either), makes the commit delete the entry.
fn remove_inode(inner: &FsInner, inum: u64, br: Option<Blockref>, orphan: bool) {
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
    };
    let committed = CommittedInode { inode_ref: br, content: Content::Tree(Root::empty()), orphan, blocks: 0 };
    let mut st = InodeState::new(meta, committed);
    st.deleted = true;
    let inode: InodeRef = inner.inodes.insert(Arc::new(Inode { inum, state: parking_lot::RwLock::new(st) }));
    let mut st = inode.state.write();
    st.deleted = true;
    inner.touch(&inode, &mut st);
}

/// Rebuilds a directory's tree from the entries and attributes that can still be read:
/// its committed tree is replaced by an empty one, every readable leaf is put back, and
/// the old tree's blocks are freed.
fn rebuild_dir(inner: &FsInner, dir: u64) -> hammer2::Result<()> {
    let inode = inner.inode(dir)?;
    let mut st = inode.state.write();
    let Content::Tree(root) = st.committed.content.clone() else { return Ok(()) };

    struct Collect<'a> {
        inner: &'a FsInner,
        dir: u64,
        leaves: Vec<(u64, Leaf)>,
        extents: Vec<Extent>,
        seen: HashSet<Extent>,
    }
    impl Visitor for Collect<'_> {
        fn visit(&mut self, br: &Blockref, _ctx: &Ctx) -> hammer2::Result<Option<Arc<[u8]>>> {
            if let Some(p) = br.ptr() {
                for l in p.copies.iter().filter(|l| l.is_valid()) {
                    let e = Extent::from_bytes(l.device, l.offset, u64::from(p.size));
                    if self.seen.insert(e) {
                        self.extents.push(e);
                    }
                }
            }
            match br.btype {
                BlockType::Indirect => {
                    Ok(self.inner.vol.read_block_uncached(br, &ReadCtx::inode(self.dir)).ok().map(Arc::from))
                }
                BlockType::Dirent | BlockType::Xattr => {
                    if let Ok(leaf) = leaf_of(self.inner, self.dir, br) {
                        self.leaves.push((br.key, leaf));
                    }
                    Ok(None)
                }
                _ => Ok(None),
            }
        }
    }
    let mut c = Collect { inner, dir, leaves: Vec::new(), extents: Vec::new(), seen: HashSet::new() };
    walk_tree(&root.entries, TreeKind::Inode(dir), &mut c)?;
    let mut committed = (*st.committed).clone();
    committed.content = Content::Tree(Root::empty());
    committed.blocks = 0;
    st.committed = Arc::new(committed);
    for (k, l) in c.leaves {
        st.dirty.leaves.entry(k).or_insert(Some(l));
    }
    {
        let mut alloc = inner.alloc.lock();
        for e in c.extents {
            let inside = alloc
                .devs
                .get(usize::from(e.device))
                .is_some_and(|d| d.regions.iter().any(|r| e.unit >= r.start && e.unit + e.count <= r.end));
            if inside && alloc.is_allocated(&e) {
                alloc.free(e);
            }
        }
    }
    inner.touch(&inode, &mut st);
    Ok(())
}
