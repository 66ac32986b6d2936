//! Making the repairs, in an order that is safe at every step:
//!
//! 1. Bad copies are rewritten in place from a good copy (`hammer2::repair::rewrite_copy`):
//!    the check value vouches for the content, and no reference changes. A copy whose
//!    location is shared with another block is left alone (rewriting it would damage the
//!    other block).
//! 2. Everything that changes the tree (the namespace plan) and the free map goes through
//!    an engine repair session and its commit (`apply_plan.rs`): copy-on-write, so a crash
//!    leaves the previous commit intact. ROOT's session comes first and writes the rebuilt
//!    free map; every other writable PFS whose namespace needs repairs gets a session and a
//!    commit of its own after it (a commit serves one PFS), opened on the free map the
//!    commit before wrote. Snapshots are never changed (FK1).
//! 3. Damaged header slots are cleared last (they never hide a newer commit).

use crate::Checker;
use crate::blocks::read_good;
use crate::namespace::{InodeInfo, Namespace};
use crate::plan::Plan;
use crate::report::{FindingId, Repair};
use crate::space::Differences;
use hammer2::inspect::{Assembly, MemberState};
use hammer2::repair::{CopyRewrite, clear_header_slot, rewrite_copy};
use hammer2::storage::DynStorage;
use hammer2_format::layout::UNIT;
use std::collections::HashSet;

/// What the checks found to repair beyond bad copies.
pub struct Work<'a> {
    pub storages: &'a [DynStorage],
    pub asm: &'a Assembly,
    /// ROOT's namespace repairs (its namespace is `Checker::ns`).
    pub plan: Plan,
    /// Every other PFS, clone and snapshot (version 2), with its namespace repairs (none for
    /// a snapshot: FK1).
    pub others: Vec<OtherPfs>,
    pub diff: Differences,
    /// Damaged header slots: (device name, slot, finding).
    pub clear: Vec<(String, usize, FindingId)>,
    /// Devices that lack the newest header (a note, not a finding): the repair commit, if
    /// one runs, writes it to them.
    pub behind: Vec<String>,
    /// Feature bits the header lacks for what the filesystem holds (Z3), each with the
    /// finding setting it resolves: the first repair commit sets them.
    pub features: Vec<(u64, FindingId)>,
}

/// A PFS other than ROOT, as the namespace analysis left it.
pub struct OtherPfs {
    pub name: String,
    pub snapshot: bool,
    pub plan: Plan,
    pub ns: Namespace,
}

/// Whether blocks stay referenced but unknown in a namespace after its plan (below an
/// unreadable node the repair keeps): the rebuilt free map must not free what they use.
fn unknown_below(ns: &Namespace, plan: &Plan) -> bool {
    let rebuilt: HashSet<u64> = plan.rebuild_dirs.iter().copied().collect();
    let removed: HashSet<u64> = plan.remove_inodes.iter().map(|r| r.0).collect();
    ns.index_incomplete
        || ns.orphans_incomplete
        || ns.inodes.iter().any(|(i, info): (&u64, &InodeInfo)| info.tree_damaged && !rebuilt.contains(i))
        || ns.lost.keys().any(|i| !removed.contains(i))
}

/// A plan that cannot be applied because part of the inode index or orphan list cannot be
/// read: its findings are marked, and an empty plan is returned.
fn unless_incomplete(ck: &mut Checker<'_>, ns: &Namespace, plan: Plan) -> Plan {
    if (ns.index_incomplete || ns.orphans_incomplete) && !plan.is_empty() {
        let why = "part of the inode index or orphan list cannot be read: fsck does not change the tree";
        for (id, _) in &plan.resolves {
            ck.findings.set(*id, Repair::Unrepairable { why: why.into() });
        }
        return Plan::default();
    }
    plan
}

/// One repair commit: a PFS (None: the one a mount serves by default, ROOT) and its plan.
struct Commit {
    pfs: Option<String>,
    plan: Plan,
}

/// Makes the repairs; returns true when anything was written.
pub fn run(ck: &mut Checker<'_>, w: Work<'_>) -> bool {
    let mut wrote = heal_copies(ck);
    let absent = w.asm.members.iter().any(|m| m.2 == MemberState::Absent);
    // The engine sizes its allocator from the device table: a device smaller than its
    // entry (or an entry claiming an absurd size) must not reach it.
    let sizes_ok =
        w.asm.members.iter().zip(&w.asm.master.devices).all(|(m, e)| m.0.as_ref().is_some_and(|s| s.size() >= e.size));
    let mut free_ids = w.diff.ids.clone();
    free_ids.extend(ck.freemap_damage.iter().map(|id| (*id, false)));

    // A commit frees the blocks it replaces; one that another reference still uses would
    // be handed out again. So no tree repair while any block is shared (a block a snapshot
    // shares is one block, SN4, not a finding: the commit keeps it by SN1).
    let shared = !ck.space.shared.is_empty();
    if absent || !sizes_ok || shared {
        let why = if absent {
            "a device of the filesystem is missing: give every device to repair the tree"
        } else if !sizes_ok {
            "a device is smaller than the filesystem records: fsck does not change the tree"
        } else {
            "some blocks are used by two references: fsck does not change the tree while they are"
        };
        let ids: Vec<FindingId> = w
            .plan
            .resolves
            .iter()
            .chain(w.others.iter().flat_map(|o| &o.plan.resolves))
            .map(|r| r.0)
            .chain(free_ids.iter().map(|r| r.0))
            .chain(w.features.iter().map(|f| f.1))
            .collect();
        for id in ids {
            ck.findings.set(id, Repair::Unrepairable { why: why.into() });
        }
        return clear_slots(ck, w.storages, &w.clear, false) || wrote;
    }
    let root_ns = std::mem::take(&mut ck.ns);
    let root_plan = unless_incomplete(ck, &root_ns, w.plan);
    let mut unknown = unknown_below(&root_ns, &root_plan);
    ck.ns = root_ns;
    let mut commits = Vec::new();
    let root_needs = !root_plan.is_empty() || !free_ids.is_empty() || !w.behind.is_empty() || !w.features.is_empty();
    if root_needs {
        commits.push(Commit { pfs: None, plan: root_plan });
    }
    for o in w.others {
        let plan = unless_incomplete(ck, &o.ns, o.plan);
        unknown |= unknown_below(&o.ns, &plan);
        if !o.snapshot && !plan.is_empty() {
            commits.push(Commit { pfs: Some(o.name), plan });
        }
    }
    if commits.is_empty() {
        return clear_slots(ck, w.storages, &w.clear, false) || wrote;
    }

    // The first commit rebuilds the free map from the reachable blocks (and sets the
    // missing feature bits); each later one, one per other PFS whose namespace needs
    // repairs, opens that PFS with the free map the commit before it wrote.
    let mut used = Some(ck.space.used_bitmaps(&ck.geo, unknown));
    let features: u64 = w.features.iter().fold(0, |a, f| a | f.0);
    let mut committed = false;
    let mut failed: Option<String> = None;
    for c in commits {
        if let Some(why) = &failed {
            let why = format!("not attempted: an earlier repair commit failed ({why})");
            for (id, _) in &c.plan.resolves {
                ck.findings.set(*id, Repair::Failed { why: why.clone() });
            }
            continue;
        }
        let first = used.is_some();
        let maps = used.take();
        let bits = if first { features } else { 0 };
        // The commit runs engine code on a damaged filesystem: a panic there fails the repair
        // (and is reported), it does not take the run down.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::apply_plan::commit_plan(w.storages, c.pfs.as_deref(), maps, &c.plan, bits).map_err(|e| e.to_string())
        }))
        .unwrap_or_else(|p| Err(format!("internal error in the engine: {}", crate::panic_message(&*p))));
        let in_pfs = c.pfs.as_ref().map_or(String::new(), |n| format!(" of PFS {n:?}"));
        match r {
            Ok(()) => {
                wrote = true;
                committed = true;
                for (id, how) in &c.plan.resolves {
                    ck.findings.set(*id, Repair::Repaired { how: how.clone() });
                }
                if !first {
                    continue;
                }
                for (id, leak) in &free_ids {
                    let r = if *leak && unknown {
                        Repair::Unrepairable {
                            why: "part of the tree cannot be read, so these units may still be in use: not freed"
                                .into(),
                        }
                    } else {
                        Repair::Repaired { how: "rebuilt the free map from the reachable blocks".into() }
                    };
                    ck.findings.set(*id, r);
                }
                for (bit, id) in &w.features {
                    let name = hammer2_format::layout::feature::names(*bit).join(", ");
                    ck.findings.set(*id, Repair::Repaired { how: format!("set {name} in the volume header") });
                }
                for name in &w.behind {
                    ck.notes.push(format!("{name}: wrote the current volume header"));
                }
            }
            Err(e) => {
                let why = format!("the repair commit{in_pfs} failed: {e}");
                let mut ids: Vec<FindingId> = c.plan.resolves.iter().map(|r| r.0).collect();
                if first {
                    ids.extend(free_ids.iter().map(|r| r.0).chain(w.features.iter().map(|f| f.1)));
                }
                for id in ids {
                    ck.findings.set(id, Repair::Failed { why: why.clone() });
                }
                failed = Some(e);
            }
        }
    }
    clear_slots(ck, w.storages, &w.clear, committed) || wrote
}

/// Units used by more than one block (their copies must not be rewritten).
fn shared_units(ck: &Checker<'_>) -> HashSet<(u8, u64)> {
    let mut out = HashSet::new();
    for &(d, unit, count) in &ck.space.shared {
        for u in unit..unit.saturating_add(count).min(unit + 256) {
            out.insert((d, u));
        }
    }
    out
}

fn heal_copies(ck: &mut Checker<'_>) -> bool {
    let jobs = std::mem::take(&mut ck.heals);
    let shared_units = shared_units(ck);
    let mut wrote = false;
    for job in jobs {
        let loc = job.ptr.copies.as_slice()[job.slot];
        let unit = loc.offset / UNIT;
        let count = u64::from(job.ptr.size).div_ceil(UNIT);
        let shared = (unit..unit + count).any(|u| shared_units.contains(&(loc.device, u)));
        if shared {
            ck.findings
                .set(job.finding, Repair::Unrepairable { why: "its location is shared with another block".into() });
            continue;
        }
        let Some(good) = read_good(ck.vol, &job.ptr) else {
            ck.findings.set(job.finding, Repair::Failed { why: "no good copy could be read again".into() });
            continue;
        };
        let r = match rewrite_copy(ck.vol, &job.ptr, job.slot, &good) {
            CopyRewrite::Failed => {
                ck.findings.set(job.finding, Repair::Failed { why: "the rewrite failed".into() });
                continue;
            }
            // The repair is only reported when the copy, read back, now verifies.
            CopyRewrite::Verified => Repair::Repaired { how: "rewritten from a good copy".into() },
            CopyRewrite::StillBad => Repair::Failed { why: "rewritten, but it still does not verify".into() },
        };
        wrote = true;
        ck.findings.set(job.finding, r);
    }
    wrote
}

/// Clears damaged header slots (or notes that the repair commit rewrote them).
fn clear_slots(
    ck: &mut Checker<'_>,
    storages: &[DynStorage],
    clear: &[(String, usize, FindingId)],
    committed: bool,
) -> bool {
    let mut wrote = false;
    for (name, slot, id) in clear {
        let Some(s) = storages.iter().find(|s| s.name() == *name) else { continue };
        let now = crate::headers::read_slots(s);
        if committed
            && matches!(now.slots.get(*slot), Some(crate::headers::Slot::Valid(_, u)) if *u == ck.master.fs_uuid)
        {
            ck.findings.set(*id, Repair::Repaired { how: "rewritten by the repair commit".into() });
            continue;
        }
        match clear_header_slot(s, *slot) {
            Ok(()) => {
                wrote = true;
                ck.findings.set(*id, Repair::Repaired { how: "cleared the slot".into() });
            }
            Err(e) => ck.findings.set(*id, Repair::Failed { why: format!("write error: {e}") }),
        }
    }
    wrote
}
