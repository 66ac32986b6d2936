//! Making the repairs, in an order that is safe at every step:
//!
//! 1. Bad copies are rewritten in place from a good copy (`hammer2::copies::read::heal`):
//!    the check value vouches for the content, and no reference changes. A copy whose
//!    location is shared with another block is left alone (rewriting it would damage the
//!    other block).
//! 2. Everything that changes the tree (the namespace plan) and the free map goes through
//!    one engine session and one commit (`session.rs`): copy-on-write, so a crash leaves
//!    the previous commit intact.
//! 3. Damaged header slots are cleared last (they never hide a newer commit).

use crate::Checker;
use crate::blocks::read_good;
use crate::namespace::InodeInfo;
use crate::plan::Plan;
use crate::report::{BlockAt, FindingId, Problem, Repair};
use crate::space::Differences;
use hammer2::devices::MemberState;
use hammer2::fs::Roots;
use hammer2::mount::Assembly;
use hammer2::storage::DynStorage;
use hammer2::walk::{Ctx, Visitor};
use hammer2_format::layout::{HEADER_SIZE, UNIT, header_offset};
use hammer2_format::{BlockType, Blockref};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What the checks found to repair beyond bad copies.
pub struct Work<'a> {
    pub storages: &'a [DynStorage],
    pub asm: &'a Assembly,
    pub plan: Plan,
    pub diff: Differences,
    /// Damaged header slots: (device name, slot, finding).
    pub clear: Vec<(String, usize, FindingId)>,
    /// Devices that lack the newest header (a note, not a finding): the repair commit, if
    /// one runs, writes it to them.
    pub behind: Vec<String>,
}

/// Makes the repairs; returns true when anything was written.
pub fn run(ck: &mut Checker<'_>, w: Work<'_>) -> bool {
    let mut wrote = heal_copies(ck);
    let absent = w.asm.members.iter().any(|m| m.2 == MemberState::Absent);
    // The engine sizes its allocator from the device table: a device smaller than its
    // entry (or an entry claiming an absurd size) must not reach it.
    let sizes_ok =
        w.asm.members.iter().zip(&w.asm.master.devices).all(|(m, e)| m.0.as_ref().is_some_and(|s| s.size() >= e.size));
    let tree_ok = !ck.ns.index_incomplete && !ck.ns.orphans_incomplete;
    let mut plan = w.plan;
    let mut free_ids = w.diff.ids.clone();
    free_ids.extend(ck.freemap_damage.iter().map(|id| (*id, false)));

    // A commit frees the blocks it replaces; one that another reference still uses would
    // be handed out again. So no tree repair while any block is shared.
    let shared = !ck.space.shared.is_empty();
    if absent || !sizes_ok || shared {
        let why = if absent {
            "a device of the filesystem is missing: give every device to repair the tree"
        } else if !sizes_ok {
            "a device is smaller than the filesystem records: fsck does not change the tree"
        } else {
            "some blocks are used by two references: fsck does not change the tree while they are"
        };
        let ids: Vec<FindingId> = plan.resolves.iter().map(|r| r.0).chain(free_ids.iter().map(|r| r.0)).collect();
        for id in ids {
            ck.findings.set(id, Repair::Unrepairable { why: why.into() });
        }
        return clear_slots(ck, w.storages, &w.clear, false) || wrote;
    }
    if !tree_ok && !plan.is_empty() {
        let why = "part of the inode index or orphan list cannot be read: fsck does not change the tree";
        for (id, _) in &plan.resolves {
            ck.findings.set(*id, Repair::Unrepairable { why: why.into() });
        }
        plan = Plan::default();
    }
    // Blocks that stay referenced but unknown (below an unreadable node that the repair
    // keeps): the rebuilt free map must not free what they might use.
    let rebuilt: HashSet<u64> = plan.rebuild_dirs.iter().copied().collect();
    let removed: HashSet<u64> = plan.remove_inodes.iter().map(|r| r.0).collect();
    let unknown_below = !tree_ok
        || ck.ns.inodes.iter().any(|(i, info): (&u64, &InodeInfo)| info.tree_damaged && !rebuilt.contains(i))
        || ck.ns.lost.keys().any(|i| !removed.contains(i));

    let need = !plan.is_empty() || !free_ids.is_empty() || !w.behind.is_empty();
    let mut committed = false;
    if need {
        let used = ck.space.used_bitmaps(&ck.geo, unknown_below);
        // The commit runs engine code on a damaged filesystem: a panic there fails the repair
        // (and is reported), it does not take the run down.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::session::commit_plan(w.storages, used, &plan).map_err(|e| e.to_string())
        }))
        .unwrap_or_else(|p| Err(format!("internal error in the engine: {}", crate::panic_message(&*p))));
        match r {
            Ok(()) => {
                wrote = true;
                committed = true;
                for (id, how) in &plan.resolves {
                    ck.findings.set(*id, Repair::Repaired { how: how.clone() });
                }
                for (id, leak) in &free_ids {
                    let r = if *leak && unknown_below {
                        Repair::Unrepairable {
                            why: "part of the tree cannot be read, so these units may still be in use: not freed"
                                .into(),
                        }
                    } else {
                        Repair::Repaired { how: "rebuilt the free map from the reachable blocks".into() }
                    };
                    ck.findings.set(*id, r);
                }
                for name in &w.behind {
                    ck.notes.push(format!("{name}: wrote the current volume header"));
                }
            }
            Err(e) => {
                let why = format!("the repair commit failed: {e}");
                for id in plan.resolves.iter().map(|r| r.0).chain(free_ids.iter().map(|r| r.0)) {
                    ck.findings.set(id, Repair::Failed { why: why.clone() });
                }
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
        if !hammer2::copies::heal(&ck.vol.devices, &job.ptr, job.slot, &good) {
            ck.findings.set(job.finding, Repair::Failed { why: "the rewrite failed".into() });
            continue;
        }
        wrote = true;
        // Read it back: the repair is only reported when the copy now verifies.
        let ok = crate::blocks::copy_io(ck.vol).copy_verifies(&job.ptr, job.slot);
        let r = if ok {
            Repair::Repaired { how: "rewritten from a good copy".into() }
        } else {
            Repair::Failed { why: "rewritten, but it still does not verify".into() }
        };
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
        let r = s.write_at(&[0u8; HEADER_SIZE], header_offset(*slot)).and_then(|_| s.flush());
        match r {
            Ok(()) => {
                wrote = true;
                ck.findings.set(*id, Repair::Repaired { how: "cleared the slot".into() });
            }
            Err(e) => ck.findings.set(*id, Repair::Failed { why: format!("write error: {e}") }),
        }
    }
    wrote
}

/// For every shared-block finding, the block that reached the units first: a second walk
/// (only when some units are shared), reading one good copy of each node.
pub fn find_first_owners(ck: &mut Checker<'_>, roots: &Roots) {
    struct Owners<'a, 'v> {
        ck: &'a mut Checker<'v>,
        seen: HashSet<(u8, u64)>,
        found: Vec<Option<BlockAt>>,
        /// (device, unit) -> the shared-block findings (by index) that cover it.
        units: HashMap<(u8, u64), Vec<usize>>,
    }
    impl Visitor for Owners<'_, '_> {
        fn visit(&mut self, br: &Blockref, ctx: &Ctx) -> hammer2::Result<Option<Arc<[u8]>>> {
            let Some(p) = br.ptr() else { return Ok(None) };
            for l in p.copies.iter().filter(|l| l.is_valid()) {
                let unit = l.offset / UNIT;
                for u in unit..unit + u64::from(p.size).div_ceil(UNIT) {
                    for &k in self.units.get(&(l.device, u)).map(Vec::as_slice).unwrap_or(&[]) {
                        if self.found[k].is_none() {
                            self.found[k] = Some(crate::scan::at(br, ctx));
                        }
                    }
                }
            }
            let first = p.copies.iter().find(|l| l.is_valid()).map(|l| (l.device, l.offset));
            if !matches!(br.btype, BlockType::Indirect | BlockType::Inode)
                || !first.is_some_and(|f| self.seen.insert(f))
            {
                return Ok(None);
            }
            Ok(read_good(self.ck.vol, p).map(Arc::from))
        }
    }
    let n = ck.shared_findings.len();
    let mut units: HashMap<(u8, u64), Vec<usize>> = HashMap::new();
    for (k, (d, off, size, _)) in ck.shared_findings.iter().enumerate() {
        let unit = off / UNIT;
        for u in unit..unit + u64::from(*size).div_ceil(UNIT) {
            units.entry((*d, u)).or_default().push(k);
        }
    }
    let found = {
        let mut o = Owners { ck, seen: HashSet::new(), found: vec![None; n], units };
        let _ = hammer2::walk::walk(roots, &mut o);
        o.found
    };
    for (k, owner) in found.into_iter().enumerate() {
        let id = ck.shared_findings[k].3;
        if let Some(f) = ck.findings.get_mut(id)
            && let Problem::SharedBlock { first, .. } = &mut f.problem
        {
            *first = owner;
        }
    }
}
