//! The attributes an inode's entries imply: link counts, directory sizes and `..`, then
//! `blocks`, data past the end, file types, the orphan list, damaged trees and the next
//! inode number. See `analyze.rs` for the counting rule.

use super::InodeInfo;
use super::analyze::{Analysis, St, UNSAFE_TREE};
use crate::plan::ParentRef;
use crate::report::{Problem, Repair};
use hammer2_format::dtype;
use hammer2_format::layout::{MAX_SYMLINK_LEN, ROOT_INUM};
use std::collections::{HashMap, HashSet};

impl Analysis<'_> {
    /// Link counts, directory sizes, `..`, `blocks`, data past the end, inode sanity.
    pub(super) fn counts(&mut self, lf: Option<u64>) {
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
            if let Some(key) = info.dirty_tail {
                let id = self.f.add(Problem::TailNotZero { inum, path: None, size: info.size });
                if info.tree_damaged {
                    self.f.set(id, Repair::Unrepairable { why: UNSAFE_TREE.into() });
                } else {
                    self.plan.fix(inum).zero_tail = Some(key);
                    self.plan.resolves(id, "rewrote the last block with zeros past the end");
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

    pub(super) fn orphan_list(&mut self) {
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
                let id = self
                    .f
                    .add(Problem::OrphanEntry { inum: o, why: "no such inode: the next mount drops the entry".into() });
                self.plan.drop_orphans.push(o);
                self.plan.resolves(id, "dropped the orphan-list entry");
            }
        }
    }

    /// Directories with unreadable nodes are rebuilt from what can be read; files keep
    /// their damage (fsck cannot recover lost data).
    pub(super) fn damaged_trees(&mut self) {
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

    pub(super) fn next_inum(&mut self, recorded: u64) {
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
