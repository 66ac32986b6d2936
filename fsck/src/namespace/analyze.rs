//! The namespace checks, over everything the walk recorded, and the repairs they plan.
//!
//! Counting rule (why some differences are not findings): for every inode the analysis
//! knows the value its attributes should have now (C, from the entries as they are) and
//! after a full repair (T, once dangling entries are dropped and orphans linked into
//! lost+found). A recorded value equal to C is consistent with the image as it is; one
//! equal to T is what the repair will make anyway. Only a value that is neither is a
//! finding of its own; when it is merely C but T differs, setting T is part of the repair
//! of the finding that causes the difference (a dropped entry, a lost+found link).

use super::paths::Paths;
use super::{Entry, InodeInfo, Namespace};
use crate::plan::{EntryChange, LostFound, ParentRef, Plan};
use crate::report::{EntryAt, FindingId, Findings, Problem, Repair};
use hammer2_format::layout::{HASH_ITER_MASK, MAX_SYMLINK_LEN, ROOT_INUM};
use hammer2_format::{dirent, dtype};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Keep,
    /// Dropped by a full repair.
    Drop,
    /// Not a link at all (an entry in an inode that is not a directory).
    Ignore,
}

/// What the analysis needs besides the records.
pub struct Input<'a> {
    pub ns: &'a Namespace,
    /// Plan repairs that are not safe without asking (`-y`); else only safe ones (`-p`).
    pub allow_unsafe: bool,
    pub next_inum: u64,
}

const UNSAFE_TREE: &str = "its tree is damaged: fsck does not change it";

pub fn analyze(input: &Input<'_>, findings: &mut Findings) -> (Plan, Paths) {
    let mut a = Analysis {
        ns: input.ns,
        unsafe_ok: input.allow_unsafe,
        f: findings,
        plan: Plan::default(),
        paths: Paths::default(),
        st: vec![St::Keep; input.ns.entries.len()],
        order: Vec::new(),
        parent_entry: HashMap::new(),
        lf_links: Vec::new(),
        lf_parent: HashSet::new(),
        cut: HashSet::new(),
        orphans: input.ns.orphans.iter().copied().collect(),
    };
    a.order = (0..a.ns.entries.len()).collect();
    a.order.sort_by_key(|&i| (a.ns.entries[i].dir, a.ns.entries[i].key));
    a.name_links();
    a.lost_inodes();
    if !a.root_ok() {
        a.next_inum(input.next_inum);
        return (a.plan, a.paths);
    }
    a.entries();
    a.parents();
    a.reachability();
    let lf = a.lost_found();
    a.counts(lf);
    a.orphan_list();
    a.damaged_trees();
    a.next_inum(input.next_inum);
    (a.plan, a.paths)
}

struct Analysis<'a> {
    ns: &'a Namespace,
    unsafe_ok: bool,
    f: &'a mut Findings,
    plan: Plan,
    paths: Paths,
    st: Vec<St>,
    /// Entry indexes sorted by (directory, key).
    order: Vec<usize>,
    /// Directory -> index of the entry kept as its parent link.
    parent_entry: HashMap<u64, usize>,
    /// Inodes linked into lost+found by a full repair: (inum, DT_* type).
    lf_links: Vec<(u64, u8)>,
    /// Directories that get lost+found as parent.
    lf_parent: HashSet<u64>,
    /// Entries dropped to break a directory loop.
    cut: HashSet<usize>,
    /// The orphan list, as a set.
    orphans: HashSet<u64>,
}

impl Analysis<'_> {
    fn live(&self, inum: u64) -> Option<&InodeInfo> {
        self.ns.inodes.get(&inum)
    }

    fn is_live_dir(&self, inum: u64) -> bool {
        self.live(inum).is_some_and(InodeInfo::is_dir)
    }

    fn entry(&self, i: usize) -> &Entry {
        &self.ns.entries[i]
    }

    fn entry_at(&self, i: usize) -> EntryAt {
        let e = self.entry(i);
        let name = e.name.as_deref().map_or_else(|| format!("<entry {:#x}>", e.key), lossy);
        EntryAt { dir: e.dir, dir_path: None, name }
    }

    /// Marks an entry dropped by a full repair, planning the drop when allowed.
    fn drop_entry(&mut self, i: usize, id: Option<FindingId>, how: &str) {
        self.st[i] = St::Drop;
        if self.unsafe_ok {
            let e = self.entry(i);
            let (dir, key) = (e.dir, e.key);
            self.plan.entry(dir, EntryChange::Drop { key });
            if let Some(id) = id {
                self.plan.resolves(id, how);
            }
        }
    }

    /// Provisional links for naming inodes in messages (refined by `parents`).
    fn name_links(&mut self) {
        for &i in &self.order {
            let e = &self.ns.entries[i];
            if let Some(n) = &e.name {
                let wanted = self.ns.inodes.get(&e.target).is_none_or(|t| !t.is_dir() || t.parent == e.dir);
                if wanted {
                    self.paths.add(e.target, e.dir, n);
                }
            }
        }
        for &i in &self.order {
            let e = &self.ns.entries[i];
            if let Some(n) = &e.name {
                self.paths.add(e.target, e.dir, n);
            }
        }
    }

    fn root_ok(&mut self) -> bool {
        match self.live(ROOT_INUM) {
            Some(r) if r.is_dir() => true,
            Some(_) => {
                let id = self.f.add(Problem::NoRoot { why: "inode 1 is not a directory".into() });
                self.f.set(id, Repair::Unrepairable { why: "fsck does not rebuild the root directory".into() });
                false
            }
            None => {
                let why = if self.ns.lost.contains_key(&ROOT_INUM) {
                    "its inode block cannot be used"
                } else {
                    "inode 1 does not exist"
                };
                let id = self.f.add(Problem::NoRoot { why: why.into() });
                self.f.set(id, Repair::Unrepairable { why: "fsck does not rebuild the root directory".into() });
                false
            }
        }
    }

    /// Index entries whose inode block cannot be used: removed with their entries.
    fn lost_inodes(&mut self) {
        for (&inum, (br, id)) in &self.ns.lost {
            if inum == ROOT_INUM {
                continue;
            }
            if self.unsafe_ok {
                let orphan = self.orphans.contains(&inum);
                self.plan.remove_inodes.push((inum, *br, orphan));
                self.plan.resolves(*id, format!("removed inode {inum} (its content is lost) and its entries"));
            }
        }
    }

    /// Per-entry checks: names, targets, keys, types, duplicates.
    fn entries(&mut self) {
        let mut names: HashSet<Vec<u8>> = HashSet::new();
        let mut cur_dir = None;
        for oi in 0..self.order.len() {
            let i = self.order[oi];
            let e = self.entry(i).clone();
            if cur_dir != Some(e.dir) {
                cur_dir = Some(e.dir);
                names.clear();
            }
            if !self.is_live_dir(e.dir) {
                self.st[i] = St::Ignore;
                continue;
            }
            let Some(name) = e.name.clone() else {
                self.drop_entry(i, e.name_finding, "dropped the entry (its name is lost)");
                continue;
            };
            if !dirent::valid_name(&name) {
                let id = self.f.add(Problem::BadName { entry: self.entry_at(i), key: e.key });
                self.drop_entry(i, Some(id), "dropped the entry");
                continue;
            }
            if self.ns.lost.contains_key(&e.target) {
                self.drop_entry(i, None, "");
                continue;
            }
            let Some(t) = self.live(e.target).cloned() else {
                let id = self.f.add(Problem::DanglingEntry { entry: self.entry_at(i), target: e.target });
                if self.ns.index_incomplete {
                    self.f.set(
                        id,
                        Repair::Unrepairable {
                            why: "part of the inode index cannot be read: the inode may exist".into(),
                        },
                    );
                    self.st[i] = St::Ignore;
                } else {
                    self.drop_entry(i, Some(id), "dropped the entry");
                }
                continue;
            };
            if e.target == ROOT_INUM {
                let id = self.f.add(Problem::DirLinkedTwice { inum: ROOT_INUM, path: None, extra: self.entry_at(i) });
                self.drop_entry(i, Some(id), "dropped the entry");
                continue;
            }
            if !names.insert(name.clone()) {
                let id = self.f.add(Problem::DuplicateName { entry: self.entry_at(i), key: e.key });
                self.drop_entry(i, Some(id), "dropped the second entry of that name");
                continue;
            }
            let want = dtype::from_mode(t.mode);
            let retype = want.filter(|w| *w != e.dtype);
            let dt = retype.unwrap_or(e.dtype);
            let type_id = retype
                .map(|w| self.f.add(Problem::EntryType { entry: self.entry_at(i), recorded: e.dtype, actual: w }));
            let base = dirent::dirent_key_base(&name);
            let dir_damaged = self.live(e.dir).is_some_and(|d| d.tree_damaged);
            if e.key & !HASH_ITER_MASK != base {
                let id = self.f.add(Problem::EntryKey { entry: self.entry_at(i), key: e.key, expected: base });
                if self.unsafe_ok {
                    self.plan.entry(
                        e.dir,
                        EntryChange::Rekey { key: e.key, name: name.clone(), target: e.target, dtype: dt },
                    );
                    self.plan.resolves(id, "moved the entry to the key its name hashes to");
                    if let Some(tid) = type_id {
                        self.plan.resolves(tid, "set the entry's type");
                    }
                }
            } else if let Some(tid) = type_id {
                if dir_damaged && !self.unsafe_ok {
                    self.f.set(tid, Repair::Unrepairable { why: format!("the directory's {UNSAFE_TREE}") });
                } else {
                    self.plan.entry(
                        e.dir,
                        EntryChange::Retype { key: e.key, name: name.clone(), target: e.target, dtype: dt },
                    );
                    self.plan.resolves(tid, "set the entry's type");
                }
            }
        }
    }

    /// Chooses each directory's parent entry; further entries naming it are dropped.
    fn parents(&mut self) {
        let mut naming: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for &i in &self.order {
            let e = self.entry(i);
            if self.st[i] == St::Keep && self.is_live_dir(e.target) {
                naming.entry(e.target).or_default().push(i);
            }
        }
        for (d, idxs) in naming {
            let recorded = self.live(d).map_or(0, |x| x.parent);
            let chosen = idxs.iter().copied().find(|&i| self.entry(i).dir == recorded).unwrap_or(idxs[0]);
            self.parent_entry.insert(d, chosen);
            if let Some(n) = self.entry(chosen).name.clone() {
                let dir = self.entry(chosen).dir;
                // The chosen link names the directory in messages.
                self.paths.set(d, dir, &n);
            }
            for &i in idxs.iter().filter(|&&i| i != chosen) {
                let id = self.f.add(Problem::DirLinkedTwice { inum: d, path: None, extra: self.entry_at(i) });
                self.drop_entry(i, Some(id), "dropped the extra entry");
            }
        }
    }

    /// Inodes the root does not reach go to lost+found; directory loops are cut.
    fn reachability(&mut self) {
        let mut children: HashMap<u64, Vec<usize>> = HashMap::new();
        for &i in &self.order {
            if self.st[i] == St::Keep {
                children.entry(self.entry(i).dir).or_default().push(i);
            }
        }
        let mut seen: HashSet<u64> = HashSet::new();
        self.bfs(ROOT_INUM, &children, &mut seen);
        let mut unreached: Vec<u64> = self.ns.inodes.keys().copied().filter(|i| !seen.contains(i)).collect();
        unreached.sort_unstable();
        for &d in &unreached {
            if seen.contains(&d) || !self.is_live_dir(d) {
                continue;
            }
            // Climb the parent entries to the top of this detached part, or around a loop.
            let mut chain: HashSet<u64> = HashSet::from([d]);
            let mut cur = d;
            let (top, cut) = loop {
                match self.parent_entry.get(&cur) {
                    None => break (cur, None),
                    Some(&idx) => {
                        let p = self.entry(idx).dir;
                        if chain.contains(&p) || seen.contains(&p) {
                            break (cur, Some(idx));
                        }
                        chain.insert(p);
                        cur = p;
                    }
                }
            };
            let why = match cut {
                Some(idx) => format!("its entry {} closes a directory loop", self.entry_at(idx).name),
                None => "no directory names it".to_string(),
            };
            let id = self.f.add(Problem::Unreachable { inum: top, file_type: "directory", why });
            if let Some(idx) = cut {
                self.cut.insert(idx);
                self.drop_entry(idx, None, "");
            }
            self.link_lf(top, dtype::DIR, id);
            self.bfs(top, &children, &mut seen);
        }
        let named: HashSet<u64> =
            self.order.iter().filter(|&&x| self.st[x] == St::Keep).map(|&x| self.entry(x).target).collect();
        for &i in &unreached {
            if seen.contains(&i) || self.is_live_dir(i) {
                continue;
            }
            if !named.contains(&i) && self.orphans.contains(&i) {
                continue; // Unlinked while open: the next mount removes it.
            }
            let Some(info) = self.live(i) else { continue };
            let dt = dtype::from_mode(info.mode).unwrap_or(dtype::REG);
            let kind = if info.kind() == hammer2_format::inode::S_IFLNK { "symlink" } else { "file" };
            let id = self.f.add(Problem::Unreachable {
                inum: i,
                file_type: kind,
                why: "no directory entry names it".into(),
            });
            self.link_lf(i, dt, id);
            seen.insert(i);
        }
    }

    fn bfs(&self, from: u64, children: &HashMap<u64, Vec<usize>>, seen: &mut HashSet<u64>) {
        let mut q = VecDeque::from([from]);
        seen.insert(from);
        while let Some(d) = q.pop_front() {
            for &i in children.get(&d).map(Vec::as_slice).unwrap_or(&[]) {
                if self.st[i] != St::Keep || self.cut.contains(&i) {
                    continue;
                }
                let t = self.entry(i).target;
                if self.live(t).is_some() && seen.insert(t) && self.is_live_dir(t) {
                    q.push_back(t);
                }
            }
        }
    }

    fn link_lf(&mut self, inum: u64, dt: u8, id: FindingId) {
        self.lf_links.push((inum, dt));
        if dt == dtype::DIR {
            self.lf_parent.insert(inum);
        }
        if self.unsafe_ok {
            self.plan.resolves(id, format!("linked into lost+found as #{inum}"));
        }
    }

    /// Finds or names the lost+found directory. Returns its inode when it exists already.
    fn lost_found(&mut self) -> Option<u64> {
        if self.lf_links.is_empty() {
            return None;
        }
        let root_names: Vec<(Vec<u8>, u64)> = self
            .order
            .iter()
            .filter(|&&i| self.st[i] == St::Keep && self.entry(i).dir == ROOT_INUM)
            .filter_map(|&i| self.entry(i).name.clone().map(|n| (n, self.entry(i).target)))
            .collect();
        let existing =
            root_names.iter().find(|(n, t)| n == b"lost+found" && self.is_live_dir(*t) && *t != ROOT_INUM).map(|x| x.1);
        let name = match existing {
            Some(_) => b"lost+found".to_vec(),
            None => (0..)
                .map(|k| if k == 0 { b"lost+found".to_vec() } else { format!("lost+found.{k}").into_bytes() })
                .find(|n| !root_names.iter().any(|(x, _)| x == n))
                .unwrap_or_default(),
        };
        let taken: HashSet<Vec<u8>> = match existing {
            Some(lf) => self
                .order
                .iter()
                .filter(|&&i| self.st[i] == St::Keep && self.entry(i).dir == lf)
                .filter_map(|&i| self.entry(i).name.clone())
                .collect(),
            None => HashSet::new(),
        };
        let mut links = Vec::new();
        for &(inum, dt) in &self.lf_links {
            let mut n = format!("#{inum}").into_bytes();
            let mut k = 1;
            while taken.contains(&n) {
                n = format!("#{inum}.{k}").into_bytes();
                k += 1;
            }
            links.push((n, inum, dt));
        }
        if self.unsafe_ok {
            self.plan.lost_found = Some(LostFound { existing, name, links });
        }
        existing
    }

    /// Link counts, directory sizes, `..`, `blocks`, data past the end, inode sanity.
    fn counts(&mut self, lf: Option<u64>) {
        let mut t_links: HashMap<u64, u32> = HashMap::new();
        let mut c_links: HashMap<u64, u32> = HashMap::new();
        let mut t_sub: HashMap<u64, u32> = HashMap::new();
        let mut c_sub: HashMap<u64, u32> = HashMap::new();
        let mut t_size: HashMap<u64, u64> = HashMap::new();
        let mut c_size: HashMap<u64, u64> = HashMap::new();
        for &i in &self.order {
            let e = self.entry(i);
            if self.st[i] == St::Ignore {
                continue;
            }
            let is_dir = match self.live(e.target) {
                Some(t) => t.is_dir(),
                None => e.dtype == dtype::DIR,
            };
            *c_links.entry(e.target).or_default() += 1;
            *c_size.entry(e.dir).or_default() += 1;
            if is_dir {
                *c_sub.entry(e.dir).or_default() += 1;
            }
            if self.st[i] == St::Keep {
                *t_links.entry(e.target).or_default() += 1;
                *t_size.entry(e.dir).or_default() += 1;
                if is_dir {
                    *t_sub.entry(e.dir).or_default() += 1;
                }
            }
        }
        let lf_key = lf.unwrap_or(u64::MAX);
        for &(inum, dt) in &self.lf_links {
            *t_links.entry(inum).or_default() += 1;
            *t_size.entry(lf_key).or_default() += 1;
            if dt == dtype::DIR {
                *t_sub.entry(lf_key).or_default() += 1;
            }
        }
        if !self.lf_links.is_empty() && lf.is_none() {
            // A new lost+found in the root.
            *t_size.entry(ROOT_INUM).or_default() += 1;
            *t_sub.entry(ROOT_INUM).or_default() += 1;
        }
        let mut inums: Vec<u64> = self.ns.inodes.keys().copied().collect();
        inums.sort_unstable();
        for inum in inums {
            let Some(info) = self.live(inum).cloned() else { continue };
            let legit_orphan = self.orphans.contains(&inum) && t_links.get(&inum).copied().unwrap_or(0) == 0;
            if legit_orphan {
                continue;
            }
            // A damaged tree is left alone: changing the inode would make the commit read it.
            let touchable = !info.tree_damaged || (info.is_dir() && self.unsafe_ok);
            let (t, c, damaged_c) = if info.is_dir() {
                let t = 2 + t_sub.get(&inum).copied().unwrap_or(0);
                (t, 2 + c_sub.get(&inum).copied().unwrap_or(0), info.tree_damaged)
            } else {
                (t_links.get(&inum).copied().unwrap_or(0), c_links.get(&inum).copied().unwrap_or(0), false)
            };
            let r = info.nlink;
            self.value(inum, touchable, r.into(), t.into(), c.into(), damaged_c, Field::Nlink);
            if info.is_dir() {
                let t = t_size.get(&inum).copied().unwrap_or(0);
                let c = c_size.get(&inum).copied().unwrap_or(0);
                self.value(inum, touchable, info.size, t, c, info.tree_damaged, Field::Size);
                self.dotdot(inum, &info, touchable);
            }
            if !info.tree_damaged && info.blocks != info.data_bytes {
                let id = self.f.add(Problem::BlocksCount {
                    inum,
                    path: None,
                    recorded: info.blocks,
                    actual: info.data_bytes,
                });
                self.plan.fix(inum).blocks = Some(info.data_bytes);
                self.plan.resolves(id, format!("set to {}", info.data_bytes));
            }
            if let Some(off) = info.past_eof {
                let id = self.f.add(Problem::DataPastEof { inum, path: None, size: info.size, offset: off });
                if info.tree_damaged {
                    self.f.set(id, Repair::Unrepairable { why: UNSAFE_TREE.into() });
                } else if self.unsafe_ok {
                    self.plan.fix(inum).truncate = Some(info.size);
                    self.plan.resolves(id, "dropped the data past the end of the file");
                }
            }
            if dtype::from_mode(info.mode).is_none() {
                let id = self.f.add(Problem::BadInode {
                    inum,
                    path: None,
                    why: format!("mode {:o} is not a known file type", info.mode),
                });
                self.f.set(id, Repair::Unrepairable { why: "fsck cannot tell what the file was".into() });
            }
            if info.kind() == hammer2_format::inode::S_IFLNK && (info.size == 0 || info.size > MAX_SYMLINK_LEN as u64) {
                let id = self.f.add(Problem::BadInode {
                    inum,
                    path: None,
                    why: format!("symbolic link of {} bytes", info.size),
                });
                self.f.set(id, Repair::Unrepairable { why: "fsck cannot tell what the link pointed to".into() });
            }
            if !info.bad_xattrs.is_empty() && self.unsafe_ok && touchable {
                for (key, id) in &info.bad_xattrs {
                    self.plan.fix(inum).drop_xattrs.push(*key);
                    self.plan.resolves(*id, "dropped the extended attribute");
                }
            }
        }
    }

    /// One attribute: finding and repair per the counting rule (module comment).
    #[allow(clippy::too_many_arguments)]
    fn value(&mut self, inum: u64, touchable: bool, r: u64, t: u64, c: u64, c_unknown: bool, field: Field) {
        if r == t {
            return;
        }
        let finding = !c_unknown && r != c;
        let id = finding.then(|| {
            self.f.add(match field {
                Field::Nlink => Problem::LinkCount { inum, path: None, recorded: r as u32, actual: t as u32 },
                Field::Size => Problem::DirSize { inum, path: None, recorded: r, actual: t },
            })
        });
        if !touchable {
            if let Some(id) = id {
                self.f.set(id, Repair::Unrepairable { why: UNSAFE_TREE.into() });
            }
            return;
        }
        // A full repair sets T. Without it (-p), T is only right when no unsafe repair
        // is involved, i.e. when T equals C.
        if self.unsafe_ok || (!c_unknown && t == c) {
            match field {
                Field::Nlink => self.plan.fix(inum).nlink = Some(t as u32),
                Field::Size => self.plan.fix(inum).size = Some(t),
            }
            if let Some(id) = id {
                self.plan.resolves(id, format!("set to {t}"));
            }
        }
    }

    fn dotdot(&mut self, inum: u64, info: &InodeInfo, touchable: bool) {
        let current = self.parent_entry.get(&inum).map(|&i| self.entry(i).dir);
        let target = if inum == ROOT_INUM {
            ParentRef::Inode(ROOT_INUM)
        } else if self.lf_parent.contains(&inum) {
            ParentRef::LostFound
        } else {
            match current {
                Some(p) => ParentRef::Inode(p),
                None => return,
            }
        };
        if target == ParentRef::Inode(info.parent) {
            return;
        }
        let consequence = inum != ROOT_INUM && (self.lf_parent.contains(&inum) || current == Some(info.parent));
        let id = (!consequence).then(|| {
            let actual = match target {
                ParentRef::Inode(p) => p,
                ParentRef::LostFound => 0,
            };
            self.f.add(Problem::DotDot { inum, path: None, recorded: info.parent, actual })
        });
        if !touchable {
            if let Some(id) = id {
                self.f.set(id, Repair::Unrepairable { why: UNSAFE_TREE.into() });
            }
            return;
        }
        if self.unsafe_ok {
            self.plan.fix(inum).parent = Some(target);
            if let Some(id) = id {
                self.plan.resolves(id, "set '..'");
            }
        }
    }

    fn orphan_list(&mut self) {
        let mut linked: HashSet<u64> = HashSet::new();
        for &i in &self.order {
            if self.st[i] == St::Keep {
                linked.insert(self.entry(i).target);
            }
        }
        for &(inum, _) in &self.lf_links {
            linked.insert(inum);
        }
        let mut seen = HashSet::new();
        for &o in &self.ns.orphans {
            if !seen.insert(o) {
                continue;
            }
            if let Some(info) = self.live(o).cloned() {
                if linked.contains(&o) {
                    let id = self.f.add(Problem::OrphanEntry {
                        inum: o,
                        why: "the inode is still linked: the next mount would delete it".into(),
                    });
                    if info.tree_damaged {
                        self.f.set(id, Repair::Unrepairable { why: UNSAFE_TREE.into() });
                    } else {
                        self.plan.fix(o).unorphan = true;
                        self.plan.resolves(id, "took the inode off the orphan list");
                    }
                }
            } else if !self.ns.lost.contains_key(&o) && !self.ns.index_incomplete {
                let id = self.f.add(Problem::OrphanEntry {
                    inum: o,
                    why: "no such inode: the next mount would fail on it".into(),
                });
                self.plan.drop_orphans.push(o);
                self.plan.resolves(id, "dropped the orphan-list entry");
            }
        }
    }

    /// Directories with unreadable nodes are rebuilt from what can be read; files keep
    /// their damage (fsck cannot recover lost data).
    fn damaged_trees(&mut self) {
        let mut inums: Vec<u64> = self.ns.inodes.iter().filter(|(_, i)| i.tree_damaged).map(|(k, _)| *k).collect();
        inums.sort_unstable();
        for inum in inums {
            let Some(info) = self.live(inum).cloned() else { continue };
            if info.is_dir() {
                if self.unsafe_ok {
                    self.plan.rebuild_dirs.push(inum);
                    for id in &info.damage {
                        self.plan.resolves(*id, "rebuilt the directory from the entries that can be read");
                    }
                }
            } else {
                for id in &info.damage {
                    let why = "the file's data below this block is lost (restore the file from a backup)";
                    self.f.set(*id, Repair::Unrepairable { why: why.into() });
                }
            }
        }
    }

    fn next_inum(&mut self, recorded: u64) {
        let max = self
            .ns
            .inodes
            .keys()
            .chain(self.ns.lost.keys())
            .chain(self.ns.orphans.iter())
            .copied()
            .max()
            .unwrap_or(ROOT_INUM);
        let needed = max.saturating_add(1);
        if needed > recorded {
            let id = self.f.add(Problem::NextInum { recorded, needed });
            self.plan.next_inum = Some(needed);
            self.plan.resolves(id, format!("set to {needed}"));
        }
    }
}

#[derive(Clone, Copy)]
enum Field {
    Nlink,
    Size,
}

fn lossy(n: &[u8]) -> String {
    String::from_utf8_lossy(n).into_owned()
}
