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
use crate::plan::{EntryChange, LostFound, Plan};
use crate::report::{EntryAt, FindingId, Findings, Problem, Repair};
use hammer2_format::layout::{HASH_ITER_MASK, ROOT_INUM};
use hammer2_format::{dirent, dtype};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum St {
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

pub(super) const UNSAFE_TREE: &str = "its tree is damaged: fsck does not change it";

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

pub(super) struct Analysis<'a> {
    pub(super) ns: &'a Namespace,
    pub(super) unsafe_ok: bool,
    pub(super) f: &'a mut Findings,
    pub(super) plan: Plan,
    pub(super) paths: Paths,
    pub(super) st: Vec<St>,
    /// Entry indexes sorted by (directory, key).
    pub(super) order: Vec<usize>,
    /// Directory -> index of the entry kept as its parent link.
    pub(super) parent_entry: HashMap<u64, usize>,
    /// Inodes linked into lost+found by a full repair: (inum, DT_* type).
    pub(super) lf_links: Vec<(u64, u8)>,
    /// Directories that get lost+found as parent.
    pub(super) lf_parent: HashSet<u64>,
    /// Entries dropped to break a directory loop.
    pub(super) cut: HashSet<usize>,
    /// The orphan list, as a set.
    pub(super) orphans: HashSet<u64>,
}

impl Analysis<'_> {
    pub(super) fn live(&self, inum: u64) -> Option<&InodeInfo> {
        self.ns.inodes.get(&inum)
    }

    pub(super) fn is_live_dir(&self, inum: u64) -> bool {
        self.live(inum).is_some_and(InodeInfo::is_dir)
    }

    pub(super) fn entry(&self, i: usize) -> &Entry {
        &self.ns.entries[i]
    }

    pub(super) fn entry_at(&self, i: usize) -> EntryAt {
        let e = self.entry(i);
        let name = e.name.as_deref().map_or_else(|| format!("<entry {:#x}>", e.key), lossy);
        EntryAt { dir: e.dir, dir_path: None, name }
    }

    /// Marks an entry dropped by a full repair, planning the drop when allowed.
    pub(super) fn drop_entry(&mut self, i: usize, id: Option<FindingId>, how: &str) {
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
}

fn lossy(n: &[u8]) -> String {
    String::from_utf8_lossy(n).into_owned()
}
