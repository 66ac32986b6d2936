//! The walk: one pass over every reachable block with `hammer2::inspect::walk`, feeding each
//! concern (copies read, shape, space, namespace, copy placement) from one visitor.
//!
//! Termination and bounded work on any image: a block whose every copy was already marked
//! reachable is not read or descended into again, so each location is read at most once
//! per copy whatever the references say (a node listed twice, two trees sharing a
//! subtree, a reference back to an ancestor).

use crate::blocks::{CopyResult, DataProblem, read_all};
use crate::copies::placement;
use crate::namespace::Entry;
use crate::readahead::ReadAhead;
use crate::report::{BlockAt, FindingId, Problem, Repair};
use crate::structure::{Issue, Owner};
use crate::{Checker, HealJob};
use hammer2::inspect::{Ctx, TreeKind, Visitor};
use hammer2_format::inode::{S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use hammer2_format::layout::{HASH_ITER_MASK, ROOT_PFS_NAME};
use hammer2_format::{
    BlockData, BlockType, Blockref, InodeBlock, InodeContent, Payload, PfsRecord, dirent, indirect, xattr,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The error the visitor returns to stop the walk when the user cancels.
pub fn cancelled() -> hammer2::Error {
    hammer2::Error::Busy("cancelled".into())
}

pub fn at(br: &Blockref, ctx: &Ctx) -> BlockAt {
    let (tree, inum) = match ctx.tree {
        TreeKind::Inodes => ("inodes", (br.btype == BlockType::Inode).then_some(br.key)),
        TreeKind::Freemap => ("freemap", None),
        TreeKind::Orphans => ("orphans", None),
        TreeKind::PfsTable => ("pfs table", None),
        TreeKind::Inode(n) => ("inode", Some(n)),
        TreeKind::Dead => ("dead list", None),
    };
    BlockAt { block: br.btype.name(), tree, key: br.key, inum, path: None }
}

pub struct Scan<'c, 'v> {
    pub ck: &'c mut Checker<'v>,
    /// The reference `visit` saw last (so `malformed` can tell a decode failure of a block
    /// it read from a reference it never saw).
    last: Option<Blockref>,
    ahead: ReadAhead,
}

impl<'c, 'v> Scan<'c, 'v> {
    pub fn new(ck: &'c mut Checker<'v>) -> Self {
        Scan { ck, last: None, ahead: ReadAhead::default() }
    }

    /// Keeps what the inode block the walk was in told the namespace (`inode_facts`).
    pub fn close_inode(&mut self) {
        let Some((loc, inum, start)) = self.ck.open_inode.take() else { return };
        if let Some(info) = self.ck.ns.inodes.get(&inum) {
            let entries = self.ck.ns.entries.get(start..).unwrap_or_default().to_vec();
            self.ck.inode_facts.insert(loc, (info.clone(), entries));
        }
    }

    /// Reads ahead the metadata among the entries of a node of `tree` the walk descends into.
    pub fn read_ahead(&mut self, tree: TreeKind, entries: &[Blockref]) {
        self.ahead.children(self.ck.vol, tree, entries);
    }

    fn owner(&self, ctx: &Ctx) -> Option<Owner> {
        let TreeKind::Inode(n) = ctx.tree else { return None };
        let info = self.ck.ns.inodes.get(&n)?;
        Some(match info.mode & S_IFMT {
            S_IFDIR => Owner::Dir,
            S_IFREG | S_IFLNK => Owner::Data,
            _ => Owner::Special,
        })
    }

    /// Marks every valid copy reachable (a unit marked twice is a shared block). Returns
    /// false for a tree node (indirect or inode block) at a location already descended
    /// into: reading it again would be harmless, descending again could repeat without end.
    fn mark(&mut self, br: &Blockref, ctx: &Ctx) -> bool {
        self.mark_shared(br, ctx).1
    }

    /// [`Scan::mark`], telling also whether this is the first reference to the block: with
    /// `SHARED_BLOCKS`, a reference naming a location seen before with the same identity
    /// is the same block (SN4), already verified and marked; a node is still descended into
    /// once per PFS, whose namespace it belongs to.
    fn mark_shared(&mut self, br: &Blockref, ctx: &Ctx) -> (bool, bool) {
        let Some(p) = br.ptr() else { return (true, true) };
        let ndev = self.ck.geo.len();
        if self.ck.shared_ok {
            let id = identity(br);
            let valid: Vec<(u8, u64)> = p
                .copies
                .iter()
                .filter(|l| l.is_valid() && usize::from(l.device) < ndev)
                .map(|l| (l.device, l.offset))
                .collect();
            match valid.iter().find_map(|l| self.ck.identity.get(l).copied()) {
                Some(k) if k == id => {
                    // The same block reached again. A copy this reference names that the
                    // first did not (a resync or remove stopped between two roots of it,
                    // AR1 in docs/DESIGN.md) is this block's too: in use, not a leak.
                    let unseen: Vec<(u8, u64)> =
                        valid.iter().copied().filter(|l| !self.ck.identity.contains_key(l)).collect();
                    for (d, off) in unseen {
                        self.ck.identity.insert((d, off), id);
                        self.ck.space.mark(d, off, p.size);
                    }
                    let node = matches!(br.btype, BlockType::Indirect | BlockType::Inode);
                    let new = node && valid.iter().all(|l| !self.ck.descended.contains(l));
                    self.ck.descended.extend(valid);
                    return (false, new);
                }
                // Another block at a location of this one: the marks below report it.
                Some(_) => {}
                None => {
                    for l in valid {
                        self.ck.identity.insert(l, id);
                    }
                }
            }
        }
        (true, self.mark_first(br, ctx, p))
    }

    fn mark_first(&mut self, br: &Blockref, ctx: &Ctx, p: &hammer2_format::BlockPtr) -> bool {
        let ndev = self.ck.geo.len();
        let mut locs: Vec<(u8, u64)> = Vec::with_capacity(p.copies.len());
        for l in p.copies.iter().filter(|l| l.is_valid() && usize::from(l.device) < ndev) {
            let g = &self.ck.geo[usize::from(l.device)];
            if l.offset.saturating_add(u64::from(p.size)) > g.size {
                // Not marked: a location past the device cannot hold the block (the read
                // fails and says so), and marking it would cost memory for nothing.
                let why = format!("a copy lies at offset {}, past the end of {}", l.offset, g.name);
                placement(&mut self.ck.findings, at(br, ctx), why);
                continue;
            }
            if locs.contains(&(l.device, l.offset)) {
                let why = format!("two copies at offset {} of {}", l.offset, g.name);
                placement(&mut self.ck.findings, at(br, ctx), why);
                continue;
            }
            locs.push((l.device, l.offset));
            if self.ck.space.mark(l.device, l.offset, p.size) > 0 {
                let device = g.name.clone();
                let id = self.ck.findings.add(Problem::SharedBlock {
                    device,
                    offset: l.offset,
                    bytes: u64::from(p.size),
                    second: at(br, ctx),
                    first: None,
                });
                self.ck.findings.set(id, Repair::Unrepairable { why: "fsck does not copy shared blocks apart".into() });
                if self.ck.shared_findings.len() < crate::report::MAX_LISTED_PER_KIND as usize {
                    self.ck.shared_findings.push((l.device, l.offset, p.size, id));
                }
            }
        }
        if !matches!(br.btype, BlockType::Indirect | BlockType::Inode) {
            return true;
        }
        let new = locs.iter().all(|l| !self.ck.descended.contains(l));
        self.ck.descended.extend(locs);
        new
    }

    /// Findings for the copies of a metadata block; returns the finding of a block with no
    /// good copy.
    fn copy_findings(
        &mut self,
        br: &Blockref,
        ctx: &Ctx,
        copies: &[(usize, hammer2_format::Location, CopyResult)],
        good: bool,
    ) -> Option<FindingId> {
        let ptr = *br.ptr()?;
        if !good {
            let why = summarize(copies);
            if copies.iter().all(|c| !c.2.is_bad()) {
                // Nothing could be read: every copy is on a missing device (or was never
                // written). Not damage, but what lies below was not checked.
                let id = self.ck.findings.add(Problem::Incomplete { what: format!("the {}: {why}", at(br, ctx)) });
                self.ck.findings.set(id, Repair::Unrepairable { why: "give every device of the filesystem".into() });
                return Some(id);
            }
            return Some(self.ck.findings.add(Problem::Unreadable { at: at(br, ctx), why }));
        }
        for (slot, loc, r) in copies {
            if r.is_bad() {
                let device = self.ck.geo.get(usize::from(loc.device)).map_or("?".into(), |g| g.name.clone());
                let id = self.ck.findings.add(Problem::BadCopy {
                    at: at(br, ctx),
                    device,
                    copy: *slot,
                    offset: loc.offset,
                    why: r.why(),
                });
                self.ck.heal_job(HealJob { ptr, slot: *slot, finding: id });
            }
        }
        None
    }

    /// A block of the tree that cannot be used (no good copy, or does not decode): what
    /// that means depends on where it is.
    fn lost(&mut self, br: &Blockref, ctx: &Ctx, id: FindingId) {
        match (ctx.tree, br.btype) {
            (TreeKind::Inodes, BlockType::Inode) => self.ck.ns.lost_inode(br.key, *br, id),
            (TreeKind::Inodes, _) => {
                self.ck.ns.index_incomplete = true;
                self.ck.findings.set(
                    id,
                    Repair::Unrepairable {
                        why: "the inodes below this block are lost; fsck does not rebuild the inode index".into(),
                    },
                );
            }
            (TreeKind::Freemap, _) => {
                self.ck.space.freemap_incomplete = true;
                self.ck.freemap_damage.push(id);
            }
            (TreeKind::Orphans, _) => {
                self.ck.ns.orphans_incomplete = true;
                self.ck.findings.set(id, Repair::Unrepairable { why: "fsck does not rebuild the orphan list".into() });
            }
            // A PFS record or table node lost: so are the trees it names.
            (TreeKind::PfsTable, _) => {
                self.ck.ns.index_incomplete = true;
                self.ck.ns.orphans_incomplete = true;
                self.ck.findings.set(id, Repair::Unrepairable { why: "fsck does not rebuild the PFS table".into() });
            }
            // A dead-list block lost: the blocks its entries name are not marked, so the
            // free map cannot be proven either.
            (TreeKind::Dead, _) => {
                self.ck.space.freemap_incomplete = true;
                self.ck.findings.set(id, Repair::Unrepairable { why: "fsck does not rebuild dead lists".into() });
            }
            (TreeKind::Inode(n), BlockType::Dirent) => {
                if let Payload::Dirent { inum, dtype, .. } = br.payload {
                    self.ck.ns.entry(Entry {
                        dir: n,
                        key: br.key,
                        target: inum,
                        dtype,
                        name: None,
                        name_finding: Some(id),
                    });
                }
            }
            (TreeKind::Inode(n), BlockType::Xattr) => self.ck.ns.bad_xattr(n, br.key, id),
            (TreeKind::Inode(n), _) => self.ck.ns.tree_damaged(n, id),
        }
    }

    fn shape_issues(&mut self, issues: Vec<Issue>, br: &Blockref, ctx: &Ctx) {
        for i in issues {
            let id = match i {
                Issue::Shape(why) => self.ck.findings.add(Problem::Structure { at: at(br, ctx), why }),
                Issue::Degraded { key: _ } => self.ck.findings.add(Problem::DegradedFlag { at: at(br, ctx) }),
            };
            self.ck.findings.set(id, Repair::Unrepairable { why: "fsck does not rewrite tree nodes".into() });
        }
    }

    /// A metadata block's verified content, by type.
    fn content(&mut self, br: &Blockref, ctx: &Ctx, data: Vec<u8>) -> Option<Arc<[u8]>> {
        match br.btype {
            BlockType::Indirect => {
                if let Ok(entries) = indirect::decode(&data, br.level) {
                    let issues = self.ck.shape.node(br, &entries);
                    self.shape_issues(issues, br, ctx);
                    // The walk decodes these same bytes the same way: it visits them next.
                    self.read_ahead(ctx.tree, &entries);
                }
                Some(Arc::from(data))
            }
            // The walk decodes a record (and reports one that does not decode) and calls
            // `pfs` below with it.
            BlockType::Inode | BlockType::Pfs => Some(Arc::from(data)),
            BlockType::Dirent => {
                let (TreeKind::Inode(n), Payload::Dirent { inum, name_len, dtype }) = (ctx.tree, br.payload) else {
                    return None;
                };
                match dirent::decode_name_block(&data, usize::from(name_len)) {
                    Ok(name) => self.ck.ns.entry(Entry {
                        dir: n,
                        key: br.key,
                        target: inum,
                        dtype,
                        name: Some(name),
                        name_finding: None,
                    }),
                    Err(e) => {
                        let id = self.ck.findings.add(Problem::Malformed { at: at(br, ctx), why: e.to_string() });
                        self.lost(br, ctx, id);
                    }
                }
                None
            }
            BlockType::Xattr => {
                let TreeKind::Inode(n) = ctx.tree else { return None };
                match xattr::decode(&data) {
                    Ok((name, _)) => {
                        let base = dirent::xattr_key_base(&name);
                        if br.key & !HASH_ITER_MASK != base {
                            let why = format!("extended attribute key {:#x}, its name hashes to {base:#x}", br.key);
                            self.shape_issues(vec![Issue::Shape(why)], br, ctx);
                        }
                    }
                    Err(e) => {
                        let id = self.ck.findings.add(Problem::Malformed { at: at(br, ctx), why: e.to_string() });
                        self.ck.ns.bad_xattr(n, br.key, id);
                    }
                }
                None
            }
            BlockType::FreemapLeaf => {
                let free = match br.payload {
                    Payload::FreemapLeaf { free_units } => free_units,
                    _ => 0,
                };
                let key = hammer2_format::freemap_key_split(br.key);
                match crate::space::leaf_from(&data, free) {
                    Some(leaf) => {
                        self.ck.space.leaves.insert(key, leaf);
                    }
                    None => {
                        let id = self.ck.findings.add(Problem::Malformed {
                            at: at(br, ctx),
                            why: format!("free-map leaf of {} bytes", data.len()),
                        });
                        self.lost(br, ctx, id);
                    }
                }
                None
            }
            _ => None,
        }
    }
}

/// What identifies a block among the references that share it (SN4): stored size, check
/// value and birth.
fn identity(br: &Blockref) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Some(p) = br.ptr() {
        (p.size, p.check, br.modify_tid).hash(&mut h);
    }
    h.finish()
}

fn summarize(copies: &[(usize, hammer2_format::Location, CopyResult)]) -> String {
    copies.iter().map(|(s, _, r)| format!("copy {s}: {}", r.why())).collect::<Vec<_>>().join("; ")
}

impl Visitor for Scan<'_, '_> {
    fn visit(&mut self, br: &Blockref, ctx: &Ctx) -> hammer2::Result<Option<Arc<[u8]>>> {
        if self.ck.cancel.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
        self.last = Some(*br);
        let owner = self.owner(ctx);
        let issues: Vec<Issue> = self.ck.shape.leaf(br, ctx, owner).into_iter().map(Issue::Shape).collect();
        self.shape_issues(issues, br, ctx);
        if let Some(why) = self.ck.copies.note(br, &self.ck.geo) {
            placement(&mut self.ck.findings, at(br, ctx), why);
        }
        let ptr = match &br.data {
            BlockData::Block(p) => *p,
            BlockData::Inline(raw) => {
                if let (TreeKind::Inode(n), Payload::Dirent { inum, name_len, dtype }) = (ctx.tree, br.payload) {
                    let name = raw[..usize::from(name_len).min(raw.len())].to_vec();
                    self.ck.ns.entry(Entry {
                        dir: n,
                        key: br.key,
                        target: inum,
                        dtype,
                        name: Some(name),
                        name_finding: None,
                    });
                    self.ck.counts.entries += 1;
                }
                return Ok(None);
            }
            BlockData::None => {
                if ctx.tree == TreeKind::Orphans && br.btype == BlockType::Orphan {
                    self.ck.ns.orphan(br.key);
                }
                return Ok(None);
            }
        };
        let (first, descend) = self.mark_shared(br, ctx);
        if self.ck.shared_ok && br.btype == BlockType::Inode && ctx.tree == TreeKind::Inodes {
            self.close_inode();
            let loc = ptr.copies.iter().find(|l| l.is_valid()).map(|l| (l.device, l.offset));
            if let Some(loc) = loc {
                if !first {
                    if let Some((info, entries)) = self.ck.inode_facts.get(&loc) {
                        // The same inode block in another PFS: the same inode, the same tree.
                        self.ck.ns.inodes.insert(br.key, info.clone());
                        self.ck.ns.entries.extend(entries.iter().cloned());
                        return Ok(None);
                    }
                } else {
                    self.ck.open_inode = Some((loc, br.key, self.ck.ns.entries.len()));
                }
            }
        }
        if !first {
            // Verified, counted and marked at its first reference; what it tells this
            // PFS's namespace is taken again (a data block's extent, a long name, an
            // attribute, and the nodes below a node of this PFS's trees).
            match (br.btype, ctx.tree) {
                (BlockType::Data, TreeKind::Inode(n)) => {
                    self.ck.ns.data(n, br.key, ptr.size);
                    return Ok(None);
                }
                (BlockType::Dirent | BlockType::Xattr, _) => {}
                _ if descend => {}
                _ => return Ok(None),
            }
            let all = read_all(self.ck.vol, &ptr, &self.ck.io, &mut self.ahead);
            return Ok(all.data.and_then(|d| self.content(br, ctx, d)));
        }
        self.ck.counts.blocks += 1;
        self.ck.counts.bytes_allocated += u64::from(ptr.size);
        let ck = &mut *self.ck;
        let pfs = &ck.current_pfs;
        ck.features.note(br, ck.master.copies, || {
            (at(br, ctx), pfs.as_ref().map(|p| p.name.clone()).filter(|n| n != ROOT_PFS_NAME))
        });
        if br.btype == BlockType::Data {
            self.ck.counts.data_blocks += 1;
            if let TreeKind::Inode(n) = ctx.tree {
                self.ck.ns.data(n, br.key, ptr.size);
                let size = self.ck.ns.inodes.get(&n).map_or(0, |i| i.size);
                let tail = (br.key < size && size - br.key < u64::from(ptr.size)).then(|| (size - br.key) as u32);
                self.ck.queue_data(ptr, n, br.key, tail);
            }
            return Ok(None);
        }
        self.ck.counts.metadata_blocks += 1;
        if br.btype == BlockType::Dirent {
            self.ck.counts.entries += 1;
        }
        let all = read_all(self.ck.vol, &ptr, &self.ck.io, &mut self.ahead);
        self.ck.progress.tick(&self.ck.io);
        let good = all.data.is_some();
        if let Some(id) = self.copy_findings(br, ctx, &all.copies, good) {
            self.lost(br, ctx, id);
            return Ok(None);
        }
        if !descend {
            return Ok(None);
        }
        Ok(all.data.and_then(|d| self.content(br, ctx, d)))
    }

    fn malformed(&mut self, br: &Blockref, ctx: &Ctx, why: &str) -> hammer2::Result<()> {
        let read_before = self.last.as_ref() == Some(br);
        if !read_before {
            // A reference of a type that does not belong here: `visit` never saw it, so
            // its space is accounted for now (it is referenced, hence in use).
            self.mark(br, ctx);
        }
        let id = self.ck.findings.add(Problem::Malformed { at: at(br, ctx), why: why.to_string() });
        match (read_before, ctx.tree) {
            (true, _) | (false, TreeKind::Inode(_)) => self.lost(br, ctx, id),
            (false, _) => {
                self.ck.findings.set(id, Repair::Unrepairable { why: "fsck does not rewrite tree nodes".into() })
            }
        }
        Ok(())
    }

    fn pfs(&mut self, rec: &PfsRecord, br: &Blockref) -> hammer2::Result<()> {
        let ctx = Ctx { tree: TreeKind::PfsTable, level: 0 };
        // Each PFS and snapshot has its own namespace (inode numbers are per PFS), and
        // its trees are descended into whole even where they share nodes with another.
        self.close_inode();
        // The data blocks queued so far are the previous PFS's: verified now, their
        // findings and tails go to its namespace.
        self.ck.verify_data();
        self.ck.findings.pfs = (rec.name != ROOT_PFS_NAME).then(|| rec.name.clone());
        if let Some(mut p) = self.ck.current_pfs.take() {
            p.ns = std::mem::take(&mut self.ck.ns);
            self.ck.pfs_namespaces.push(p);
        }
        self.ck.current_pfs = Some(crate::checker::PfsNamespace {
            name: rec.name.clone(),
            snapshot: rec.kind == hammer2_format::pfs::PfsKind::Snapshot,
            receiving: rec.resume_token[0] != 0,
            next_inum: rec.next_inum,
            ns: Default::default(),
        });
        self.ck.descended.clear();
        if !self.ck.pfs_names.insert(rec.name.clone()) {
            let why = format!("a second PFS record named {:?}", rec.name);
            self.shape_issues(vec![Issue::Shape(why)], br, &ctx);
        }
        if rec.name == ROOT_PFS_NAME {
            self.ck.pfs_next_inum = Some(rec.next_inum);
        }
        for (tree, root) in [
            (TreeKind::Inodes, &rec.inode_root),
            (TreeKind::Orphans, &rec.orphan_root),
            (TreeKind::Dead, &rec.dead_root),
        ] {
            let entries: Vec<Blockref> = (!root.is_empty()).then_some(*root).into_iter().collect();
            // A record is the top of its PFS's trees, as a header is of version 1's.
            let issues = self.ck.shape.root_entries(&entries, br.mirror_tid, br.is_degraded());
            self.shape_issues(issues, br, &ctx);
            self.read_ahead(tree, &entries);
        }
        Ok(())
    }

    fn inode(&mut self, ino: &InodeBlock, br: &Blockref) -> hammer2::Result<()> {
        self.ck.ns.inode(ino);
        if let InodeContent::Tree { entries, .. } = &ino.content {
            let issues = self.ck.shape.root_entries(entries, br.mirror_tid, br.is_degraded());
            let ctx = Ctx { tree: TreeKind::Inodes, level: 0 };
            self.shape_issues(issues, br, &ctx);
            self.read_ahead(TreeKind::Inode(ino.inum), entries);
        }
        Ok(())
    }
}

/// Findings for the data blocks of one verified batch.
pub fn data_findings(ck: &mut Checker<'_>, problems: Vec<DataProblem>) {
    for p in problems {
        let b = &p.block;
        let br_at = BlockAt { block: "data", tree: "inode", key: b.key, inum: Some(b.inum), path: None };
        let good = p.copies.iter().any(|c| c.2 == CopyResult::Good);
        if !good && p.copies.iter().all(|c| !c.2.is_bad()) {
            let id = ck.findings.add(Problem::Incomplete { what: format!("the {br_at}: {}", summarize(&p.copies)) });
            ck.findings.set(id, Repair::Unrepairable { why: "give every device of the filesystem".into() });
            continue;
        }
        if !good {
            let id = ck.findings.add(Problem::Unreadable { at: br_at, why: summarize(&p.copies) });
            let why = "the data is lost: no copy is good (restore the file from a backup)";
            ck.findings.set(id, Repair::Unrepairable { why: why.into() });
            continue;
        }
        for (slot, loc, r) in &p.copies {
            if r.is_bad() {
                let device = ck.geo.get(usize::from(loc.device)).map_or("?".into(), |g| g.name.clone());
                let id = ck.findings.add(Problem::BadCopy {
                    at: br_at.clone(),
                    device,
                    copy: *slot,
                    offset: loc.offset,
                    why: r.why(),
                });
                ck.heal_job(HealJob { ptr: b.ptr, slot: *slot, finding: id });
            }
        }
    }
}
