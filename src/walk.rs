//! One walk over every block reachable from a commit's roots, shared by scrub, resync, fsck
//! and the tests. The visitor decides how to read a block (one copy, every copy, only
//! degraded branches) and whether to descend; the walker knows the shape of the trees.
//!
//! The walk always terminates, whatever the media holds: levels strictly decrease inside
//! a tree (the decoders enforce it), inode trees are entered only from an inode index, and
//! inode indexes only from the header or the PFS table, so no chain of references can lead
//! back to where it started.

use crate::error::Result;
use crate::fs::Roots;
use crate::tree::Root;
use hammer2_format::layout::feature;
use hammer2_format::{BlockType, Blockref, DecodeError, InodeBlock, InodeContent, PfsRecord, indirect};
use std::collections::HashMap;

/// Which tree a block belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TreeKind {
    /// The inode index (INODE leaves).
    Inodes,
    /// The free map.
    Freemap,
    /// The orphan list.
    Orphans,
    /// The PFS table (format version 2): PFS leaves, each a record naming a PFS's inode
    /// index and orphan list.
    PfsTable,
    /// The tree of inode `inum` (data, directory entries, xattrs).
    Inode(u64),
    /// A PFS's dead list (format version 2, `SHARED_BLOCKS`): DEAD leaves, each naming a
    /// block an older snapshot still holds.
    Dead,
}

#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub tree: TreeKind,
    /// For INDIRECT references: their level; 0 for leaves.
    pub level: u8,
}

impl TreeKind {
    /// Whether a leaf of type `t` belongs in this tree: the one table of which leaves each
    /// tree holds (the walk reports any other as malformed; fsck's read-ahead relies on it).
    pub fn holds_leaf(self, t: BlockType) -> bool {
        match self {
            TreeKind::Inodes => t == BlockType::Inode,
            TreeKind::Freemap => t == BlockType::FreemapLeaf,
            TreeKind::Orphans => t == BlockType::Orphan,
            TreeKind::PfsTable => t == BlockType::Pfs,
            TreeKind::Inode(_) => matches!(t, BlockType::Data | BlockType::Dirent | BlockType::Xattr),
            TreeKind::Dead => t == BlockType::Dead,
        }
    }
}

impl Ctx {
    pub fn inum(&self) -> Option<u64> {
        match self.tree {
            TreeKind::Inode(i) => Some(i),
            _ => None,
        }
    }
}

pub trait Visitor {
    /// Called for every reference. Return its verified content to descend below it
    /// (INDIRECT nodes and INODE blocks; content of other types is ignored), or None to
    /// skip what lies below.
    fn visit(&mut self, br: &Blockref, ctx: &Ctx) -> Result<Option<std::sync::Arc<[u8]>>>;

    /// A block that was read fine but does not decode, or a reference of a type that does
    /// not belong where it was found. The walk goes on with the rest.
    fn malformed(&mut self, br: &Blockref, ctx: &Ctx, why: &str) -> Result<()> {
        let _ = (br, ctx, why);
        Ok(())
    }

    /// An inode block was decoded (called before its tree is walked).
    fn inode(&mut self, ino: &InodeBlock, br: &Blockref) -> Result<()> {
        let _ = (ino, br);
        Ok(())
    }

    /// A shared block reached again (a walk that visits each block once) through a
    /// reference naming copies the first one did not: a resync or remove stopped between
    /// two roots of the block (AR1 in docs/DESIGN.md). They are the block's too, in use.
    fn more_copies(&mut self, br: &Blockref, ctx: &Ctx, copies: &[hammer2_format::Location]) -> Result<()> {
        let _ = (br, ctx, copies);
        Ok(())
    }

    /// A PFS record was decoded (called before its trees are walked).
    fn pfs(&mut self, rec: &PfsRecord, br: &Blockref) -> Result<()> {
        let _ = (rec, br);
        Ok(())
    }

    /// Takes a dead list's root to walk it later (true), or has the walk go into it now.
    /// A walk that visits each block once walks the dead lists last: an entry stands for a
    /// block some tree holds, and that tree's reference is the one to descend through.
    fn defer_dead_list(&mut self, root: &Blockref) -> bool {
        let _ = root;
        false
    }
}

/// The roots of a filesystem, the one list every whole-filesystem walk starts from: the
/// inode index, the free map and the orphan list of version 1; the free map and the PFS
/// table of version 2 (whose records lead to every PFS's inode index and orphan list, the
/// served one's included: it is the same tree as `roots.inodes`).
pub fn filesystem_roots(roots: &Roots) -> Vec<(TreeKind, &[Blockref])> {
    match &roots.pfs {
        None => vec![
            (TreeKind::Inodes, &roots.inodes.entries[..]),
            (TreeKind::Freemap, &roots.freemap.entries[..]),
            (TreeKind::Orphans, &roots.orphans.entries[..]),
        ],
        Some(p) => vec![(TreeKind::Freemap, &roots.freemap.entries[..]), (TreeKind::PfsTable, &p.table.entries[..])],
    }
}

/// Walks every tree of the filesystem ([`filesystem_roots`]). With `SHARED_BLOCKS` a
/// block reachable from several trees (a snapshot and its PFS, a dead list) is visited
/// once: the first reference to reach it; a later reference naming one of its units must
/// be the same block (SN4 in docs/DESIGN.md), or the visitor hears of it as malformed.
pub fn walk(roots: &Roots, v: &mut dyn Visitor) -> Result<()> {
    let shared = roots.pfs.as_ref().is_some_and(|p| p.features & feature::SHARED_BLOCKS != 0);
    if !shared {
        for (tree, entries) in filesystem_roots(roots) {
            walk_tree(entries, tree, v)?;
        }
        return Ok(());
    }
    let mut once = Once { inner: v, seen: HashMap::new(), deferred: Vec::new() };
    for (tree, entries) in filesystem_roots(roots) {
        walk_tree(entries, tree, &mut once)?;
    }
    for root in std::mem::take(&mut once.deferred) {
        walk_tree(&Root::from_ref(&root).entries, TreeKind::Dead, &mut once)?;
    }
    Ok(())
}

/// Walks every tree of the filesystem ([`filesystem_roots`]) through every reference,
/// also into a subtree that several trees share, once per tree that holds it (fsck: each
/// PFS's namespace is whole; it tells shared blocks apart itself).
pub fn walk_every_reference(roots: &Roots, v: &mut dyn Visitor) -> Result<()> {
    for (tree, entries) in filesystem_roots(roots) {
        walk_tree(entries, tree, v)?;
    }
    Ok(())
}

/// Calls `f` with every reference of the committed trees of `fs` (every PFS, each shared
/// block once) and reads the nodes below each, verified, to go on. For the walks that only
/// count or look at references (data usage, a device remove's room check, what only one
/// device holds). The trees are pinned while walked: a commit running meanwhile frees
/// blocks of them but cannot reuse the space before the walk is done, so every node read
/// is one of these trees' and never a block written since.
pub(crate) fn each_reference(fs: &crate::fs::FsInner, f: impl FnMut(&Blockref)) -> Result<()> {
    struct Each<'a, F> {
        fs: &'a crate::fs::FsInner,
        f: F,
    }
    impl<F: FnMut(&Blockref)> Visitor for Each<'_, F> {
        fn visit(&mut self, br: &Blockref, _: &Ctx) -> Result<Option<std::sync::Arc<[u8]>>> {
            (self.f)(br);
            if br.btype.names_blocks() && br.ptr().is_some() {
                return Ok(Some(self.fs.vol.read_block(br, &crate::copies::read::ReadCtx::meta())?));
            }
            Ok(None)
        }
    }
    walk(&fs.pinned_roots(), &mut Each { fs, f })
}

/// What identifies a block among references that share it: stored size, check value,
/// birth (FORMAT-V2: type, logical size and compression too, which a DEAD entry does not
/// keep; the check value over the stored bytes covers them).
type Identity = (u32, hammer2_format::Check, u64);

/// The visitor of a walk over shared trees: passes each block on once.
struct Once<'v> {
    inner: &'v mut dyn Visitor,
    /// Every valid copy location seen, with the block found there.
    seen: HashMap<(u8, u64), Identity>,
    /// Dead lists, walked after every tree.
    deferred: Vec<Blockref>,
}

impl Visitor for Once<'_> {
    fn visit(&mut self, br: &Blockref, ctx: &Ctx) -> Result<Option<std::sync::Arc<[u8]>>> {
        let Some(p) = br.ptr() else { return self.inner.visit(br, ctx) };
        let id: Identity = (p.size, p.check, br.modify_tid);
        let mut known = None;
        for l in p.copies.iter().filter(|l| l.is_valid()) {
            if let Some(other) = self.seen.get(&(l.device, l.offset)) {
                known = Some(*other);
                break;
            }
        }
        match known {
            Some(other) if other == id => {
                let more: Vec<hammer2_format::Location> = p
                    .copies
                    .iter()
                    .filter(|l| l.is_valid() && !self.seen.contains_key(&(l.device, l.offset)))
                    .copied()
                    .collect();
                if !more.is_empty() {
                    for l in &more {
                        self.seen.insert((l.device, l.offset), id);
                    }
                    self.inner.more_copies(br, ctx, &more)?;
                }
                Ok(None)
            }
            Some(_) => {
                self.inner.malformed(
                    br,
                    ctx,
                    "names a unit of a different block (shared blocks must be the same block)",
                )?;
                Ok(None)
            }
            None => {
                for l in p.copies.iter().filter(|l| l.is_valid()) {
                    self.seen.insert((l.device, l.offset), id);
                }
                self.inner.visit(br, ctx)
            }
        }
    }
    fn malformed(&mut self, br: &Blockref, ctx: &Ctx, why: &str) -> Result<()> {
        self.inner.malformed(br, ctx, why)
    }
    fn inode(&mut self, ino: &InodeBlock, br: &Blockref) -> Result<()> {
        self.inner.inode(ino, br)
    }
    fn pfs(&mut self, rec: &PfsRecord, br: &Blockref) -> Result<()> {
        self.inner.pfs(rec, br)
    }
    fn more_copies(&mut self, br: &Blockref, ctx: &Ctx, copies: &[hammer2_format::Location]) -> Result<()> {
        self.inner.more_copies(br, ctx, copies)
    }
    fn defer_dead_list(&mut self, root: &Blockref) -> bool {
        self.deferred.push(*root);
        true
    }
}

/// Walks one tree given by its root entries.
pub fn walk_tree(entries: &[Blockref], tree: TreeKind, v: &mut dyn Visitor) -> Result<()> {
    for br in entries {
        walk_ref(br, tree, v)?;
    }
    Ok(())
}

fn walk_ref(br: &Blockref, tree: TreeKind, v: &mut dyn Visitor) -> Result<()> {
    let ctx = Ctx { tree, level: br.level };
    if br.btype != BlockType::Indirect && !tree.holds_leaf(br.btype) {
        return v.malformed(br, &ctx, &format!("a {} reference does not belong in this tree", br.btype.name()));
    }
    let Some(bytes) = v.visit(br, &ctx)? else { return Ok(()) };
    match br.btype {
        BlockType::Indirect => match indirect::decode(&bytes, br.level) {
            Ok(children) => {
                for c in &children {
                    walk_ref(c, tree, v)?;
                }
                Ok(())
            }
            Err(e) => v.malformed(br, &ctx, &e.to_string()),
        },
        BlockType::Pfs => match decode_record(&bytes, br) {
            Ok(rec) => {
                v.pfs(&rec, br)?;
                walk_tree(&Root::from_ref(&rec.inode_root).entries, TreeKind::Inodes, v)?;
                walk_tree(&Root::from_ref(&rec.orphan_root).entries, TreeKind::Orphans, v)?;
                if v.defer_dead_list(&rec.dead_root) {
                    return Ok(());
                }
                walk_tree(&Root::from_ref(&rec.dead_root).entries, TreeKind::Dead, v)
            }
            Err(e) => v.malformed(br, &ctx, &e.to_string()),
        },
        BlockType::Inode => match decode_inode(&bytes, br) {
            Ok(ino) => {
                v.inode(&ino, br)?;
                if let InodeContent::Tree { entries, .. } = &ino.content {
                    walk_tree(entries, TreeKind::Inode(ino.inum), v)?;
                }
                Ok(())
            }
            Err(e) => v.malformed(br, &ctx, &e.to_string()),
        },
        _ => Ok(()),
    }
}

fn decode_record(bytes: &[u8], br: &Blockref) -> std::result::Result<PfsRecord, DecodeError> {
    let rec = PfsRecord::decode(bytes)?;
    if rec.id != br.key {
        return Err(DecodeError::BadField { what: "pfs record", field: "id (differs from its key)", value: rec.id });
    }
    Ok(rec)
}

fn decode_inode(bytes: &[u8], br: &Blockref) -> std::result::Result<InodeBlock, DecodeError> {
    let ino = InodeBlock::decode(bytes)?;
    if ino.inum != br.key {
        return Err(DecodeError::BadField {
            what: "inode",
            field: "inode number (differs from its key)",
            value: ino.inum,
        });
    }
    Ok(ino)
}
