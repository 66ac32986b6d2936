//! The version-2 part of a commit: a new record for the served PFS, holding the commit's
//! inode index, orphan list, dead list and inode counter, put into the PFS table
//! (copy-on-write: the old record and the table path above it are freed like any replaced
//! block). Every commit writes one, so the record and the table never lag behind the trees
//! they name.
//!
//! A commit may also carry one change of the PFS table ([`PfsOp`]): a new PFS, a snapshot
//! of the served PFS, or the deletion of a PFS or snapshot. It is part of the commit, so it
//! is as atomic as the commit: every crash state has it whole or not at all.
//!
//! The rules (FORMAT-V2 "Shared blocks and the rule that frees them", SN1..SN3 in
//! docs/DESIGN.md): blocks the served PFS drops that its newest snapshot holds go to its
//! dead list (collected by `Builder::free_ref`); a snapshot takes the live roots and dead
//! list; deleting snapshot Si frees the range `birth > prev.create_tid` of the next dead
//! list and merges Si's list into it, without walking Si's trees.

use super::builder::Builder;
use super::deadlist;
use crate::error::{Error, Result};
use crate::fs::PfsRoots;
use crate::inode::Meta;
use crate::tree::Root;
use crate::tree::modify::{Change, PEntry, PRoot, apply};
use hammer2_format::blockref::dead_key;
use hammer2_format::layout::{ROOT_INUM, feature};
use hammer2_format::pfs::{PfsKind, name_problem};
use hammer2_format::{BlockType, Blockref, InodeContent, PfsRecord};
use std::collections::BTreeMap;

/// A change of the PFS table a commit makes with its trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PfsOp {
    /// A new, empty, writable PFS (a root directory only).
    Create { name: String },
    /// A read-only snapshot of the served PFS: everything this commit holds, nothing later.
    Snapshot { name: String },
    /// Deletes a snapshot (range free and merge) or a PFS without snapshots (its trees
    /// freed). Never the served PFS.
    Delete { name: String },
    /// A writable clone of snapshot `origin`: its trees are the snapshot's (SN5).
    Clone { origin: String, name: String },
    /// A snapshot of the served PFS after it received a send stream: as `Snapshot`, and the
    /// PFS and the snapshot record that they equal the sender's snapshot `from_tid` of its
    /// PFS `from_uuid` (the base the next incremental stream needs; SR5).
    Received { name: String, from_uuid: [u8; 16], from_tid: u64 },
    /// The served PFS's resume token (all zero: none), committed with what the receive
    /// applied so far (SR8).
    Progress { token: [u8; hammer2_format::pfs::RESUME_TOKEN_SIZE] },
}

/// The new PFS table root and the record template (roots filled in at finalize).
pub(super) struct PendingPfs {
    pub table: PRoot,
    pub roots: PfsRoots,
    /// The served PFS's dead list after this commit.
    pub dead: PRoot,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn proot(br: &Blockref) -> PRoot {
    PRoot::from(&Root::from_ref(br))
}

/// `relocated` and `relocated_dead` are what a maintenance hook rewrote (AR2 in
/// docs/DESIGN.md): new records of other PFSs, and the served PFS's dead list with its
/// entries' copies relocated (never together with `op`).
#[allow(clippy::too_many_arguments)]
pub(super) fn write_record(
    b: &mut Builder,
    old: &PfsRoots,
    inodes: &PRoot,
    orphans: &PRoot,
    next_inum: u64,
    op: Option<&PfsOp>,
    relocated: &[(u64, PEntry)],
    relocated_dead: Option<&(PRoot, i64)>,
) -> Result<PendingPfs> {
    // From here on, blocks dropped belong to no snapshot (the table, other records and
    // dead lists are never shared): they are freed.
    let dropped = b.dead.take().map(|d| d.entries).unwrap_or_default();
    let (logical, physical) = b.referenced.take().unwrap_or_default();
    let mut roots = old.clone();
    let Some(mut served) = roots.served.take() else {
        return Err(Error::Corrupt("a commit of roots that serve no PFS".into()));
    };
    served.referenced_logical = served.referenced_logical.saturating_add_signed(logical);
    served.referenced_physical = served.referenced_physical.saturating_add_signed(physical);
    served.next_inum = next_inum;
    let dead_before = match relocated_dead {
        Some((root, delta)) => {
            served.dead_bytes = served.dead_bytes.saturating_add_signed(*delta);
            root.clone()
        }
        None => proot(&served.dead_root),
    };
    let (mut live_dead, added) = deadlist::append(b, dead_before, &dropped)?;
    served.dead_bytes += added;
    let mut changes: BTreeMap<u64, Change> = relocated.iter().map(|(id, e)| (*id, Change::Put(*e))).collect();
    if let Some(op) = op {
        if !changes.is_empty() {
            return Err(Error::Corrupt("a PFS change and relocated records in one commit".into()));
        }
        let records = crate::pfs::records(b.vol, &old.table, b.vol.devices.len())?;
        let named = |name: &str| records.iter().map(|(_, r)| r).find(|r| r.name == name).cloned();
        match op {
            PfsOp::Create { name }
            | PfsOp::Snapshot { name }
            | PfsOp::Clone { name, .. }
            | PfsOp::Received { name, .. } => {
                if let Some(why) = name_problem(name) {
                    return Err(Error::Invalid(why.into()));
                }
                if named(name).is_some() {
                    return Err(Error::Invalid(format!("a PFS named {name:?} exists")));
                }
            }
            PfsOp::Delete { .. } | PfsOp::Progress { .. } => {}
        }
        // A new PFS's id is the tid of the commit that makes it: never reused, and one
        // table change per commit.
        let id = b.tid;
        let uuid = *uuid::Uuid::new_v4().as_bytes();
        match op {
            PfsOp::Create { name } => {
                b.referenced = Some((0, 0));
                let root_inodes = new_root_dir(b)?;
                let (logical, physical) = b.referenced.take().unwrap_or_default();
                let mut rec = PfsRecord::new(id, name, uuid, b.tid, now_ns(), ROOT_INUM + 1);
                rec.referenced_logical = logical.max(0) as u64;
                rec.referenced_physical = physical.max(0) as u64;
                let e = b.new_pfs_record(rec, root_inodes, PRoot::default(), PRoot::default())?;
                changes.insert(id, Change::Put(e));
            }
            PfsOp::Snapshot { name } | PfsOp::Received { name, .. } => {
                if let PfsOp::Received { from_uuid, from_tid, .. } = op {
                    served.received_uuid = *from_uuid;
                    served.received_tid = *from_tid;
                    // The receive is complete: nothing to resume (nor for the snapshot to
                    // inherit below).
                    served.resume_token = [0; hammer2_format::pfs::RESUME_TOKEN_SIZE];
                }
                let rec = PfsRecord {
                    kind: PfsKind::Snapshot,
                    flags: 0,
                    id,
                    origin: served.id,
                    create_tid: b.tid,
                    create_time_ns: now_ns(),
                    prev_snapshot: served.prev_snapshot,
                    uuid,
                    name: name.clone(),
                    // A receive in progress is the PFS's, never a snapshot's.
                    resume_token: [0; hammer2_format::pfs::RESUME_TOKEN_SIZE],
                    ..served.clone()
                };
                // The snapshot takes the live roots (shared, no copy) and the live dead
                // list; the live PFS starts an empty one relative to the snapshot.
                let e = b.new_pfs_record(rec, inodes.clone(), orphans.clone(), std::mem::take(&mut live_dead))?;
                changes.insert(id, Change::Put(e));
                served.prev_snapshot = id;
                served.dead_bytes = 0;
                roots.newest_snapshot_tid = b.tid;
                roots.features |= feature::SHARED_BLOCKS;
            }
            PfsOp::Clone { origin, name } => {
                let Some(s) = named(origin).filter(|r| r.kind == PfsKind::Snapshot) else {
                    return Err(Error::Invalid(format!("no snapshot named {origin:?}")));
                };
                let rec = PfsRecord {
                    kind: PfsKind::Clone,
                    flags: 0,
                    id,
                    origin: s.id,
                    create_tid: b.tid,
                    create_time_ns: now_ns(),
                    prev_snapshot: 0,
                    dead_bytes: 0,
                    uuid,
                    name: name.clone(),
                    ..s.clone()
                };
                let e = b.new_pfs_record(rec, proot(&s.inode_root), proot(&s.orphan_root), PRoot::default())?;
                changes.insert(id, Change::Put(e));
            }
            PfsOp::Delete { name } => {
                let Some(rec) = named(name) else { return Err(Error::Invalid(format!("no PFS named {name:?}"))) };
                if rec.id == served.id {
                    return Err(Error::Busy(format!("PFS {name:?} is the one mounted here")));
                }
                let all: Vec<PfsRecord> = records.into_iter().map(|(_, r)| r).collect();
                match rec.kind {
                    PfsKind::Snapshot => {
                        delete_snapshot(b, &rec, &all, &mut served, &mut live_dead, &mut roots, &mut changes)?
                    }
                    PfsKind::Pfs | PfsKind::Clone => {
                        if let Some(s) = all.iter().find(|r| r.kind == PfsKind::Snapshot && r.origin == rec.id) {
                            return Err(Error::Busy(format!(
                                "PFS {name:?} has snapshots (e.g. {:?}): delete them first",
                                s.name
                            )));
                        }
                        // A clone's blocks born up to its origin are the origin's (SN5).
                        let floor = match rec.kind {
                            PfsKind::Clone => all.iter().find(|r| r.id == rec.origin).map_or(0, |r| r.create_tid),
                            _ => 0,
                        };
                        free_pfs(b, &rec, floor)?;
                    }
                }
                changes.insert(rec.id, Change::Delete);
            }
            PfsOp::Progress { token } => served.resume_token = *token,
        }
    }
    let entry = b.new_pfs_record(served.clone(), inodes.clone(), orphans.clone(), live_dead.clone())?;
    changes.insert(served.id, Change::Put(entry));
    let changes: Vec<(u64, Change)> = changes.into_iter().collect();
    let table = apply(b, PRoot::from(&old.table), 1, true, &changes)?;
    roots.served = Some(served);
    Ok(PendingPfs { table, roots, dead: live_dead })
}

/// The inode index of a new PFS: its root directory, empty.
fn new_root_dir(b: &mut Builder) -> Result<PRoot> {
    let block =
        Meta::fresh_root_dir(b.tid).to_block(ROOT_INUM, InodeContent::Tree { root_level: 0, entries: Vec::new() });
    let e = b.new_inode(block, Some(PRoot::default()))?;
    apply(b, PRoot::default(), 1, true, &[(ROOT_INUM, Change::Put(e))])
}

/// Deletes snapshot `si`: in the next dead list (the next snapshot's, or the live PFS's),
/// the entries born after the previous snapshot were held by `si` alone: freed; `si`'s own
/// list joins the next one (SN3). Cost: `si`'s list and the freed range.
fn delete_snapshot(
    b: &mut Builder,
    si: &PfsRecord,
    all: &[PfsRecord],
    served: &mut PfsRecord,
    live_dead: &mut PRoot,
    roots: &mut PfsRoots,
    changes: &mut BTreeMap<u64, Change>,
) -> Result<()> {
    if let Some(c) = all.iter().find(|r| r.kind == PfsKind::Clone && r.origin == si.id) {
        return Err(Error::Busy(format!("snapshot {:?} is the origin of clone {:?}", si.name, c.name)));
    }
    let prev_tid = match si.prev_snapshot {
        0 => 0,
        p => all.iter().find(|r| r.id == p).map_or(0, |r| r.create_tid),
    };
    let next_snap =
        all.iter().find(|r| r.kind == PfsKind::Snapshot && r.origin == si.origin && r.prev_snapshot == si.id);
    let next_is_live = next_snap.is_none() && si.origin == served.id;
    let (mut next, mut dead) = match next_snap {
        Some(r) => (r.clone(), proot(&r.dead_root)),
        None if next_is_live => (served.clone(), std::mem::take(live_dead)),
        None => match all.iter().find(|r| r.id == si.origin) {
            Some(r) => (r.clone(), proot(&r.dead_root)),
            None => {
                return Err(Error::Corrupt(format!(
                    "snapshot {:?} names origin {} that is not there",
                    si.name, si.origin
                )));
            }
        },
    };
    let (d, freed) = deadlist::free_from(b, dead, dead_key(prev_tid + 1, 0))?;
    dead = d;
    let si_dead = proot(&si.dead_root);
    let moved = deadlist::leaves_from(b, &si_dead, 0)?;
    let (d, added) = deadlist::append(b, dead, &moved)?;
    dead = d;
    deadlist::free_nodes(b, &si_dead)?;
    next.dead_bytes = next.dead_bytes.saturating_sub(freed) + added;
    next.prev_snapshot = si.prev_snapshot;
    if next_is_live {
        *served = next;
        *live_dead = dead;
        roots.newest_snapshot_tid = prev_tid;
    } else {
        let e = b.new_pfs_record(next.clone(), proot(&next.inode_root), proot(&next.orphan_root), dead)?;
        changes.insert(next.id, Change::Put(e));
    }
    Ok(())
}

/// Frees every block of a PFS no snapshot holds: its inode index with every inode's tree,
/// its orphan list and its dead list (empty once its last snapshot is gone); for a clone,
/// only the blocks born after `floor`, its origin's create tid (a node is never older than
/// what is below it, so a branch born up to `floor` is the origin's whole).
fn free_pfs(b: &mut Builder, rec: &PfsRecord, floor: u64) -> Result<()> {
    let mut refs = Vec::new();
    let mut own = |br: &Blockref| {
        let mine = br.modify_tid > floor;
        if mine {
            refs.push(*br);
        }
        Ok(mine)
    };
    for root in [&rec.inode_root, &rec.orphan_root, &rec.dead_root] {
        crate::tree::for_each_ref(b.vol, &Root::from_ref(root), &mut own)?;
    }
    let mut i = 0;
    while i < refs.len() {
        let br = refs[i];
        i += 1;
        if br.btype == BlockType::Inode {
            let inode = b.vol.read_inode_block(&br, &crate::copies::read::ReadCtx::inode(br.key))?;
            if let InodeContent::Tree { root_level, entries } = &inode.content {
                let (root_level, entries) = (*root_level, entries.clone());
                crate::tree::for_each_ref(b.vol, &Root { level: root_level, entries }, &mut |c| {
                    let mine = c.modify_tid > floor;
                    if mine {
                        refs.push(*c);
                    }
                    Ok(mine)
                })?;
            }
        }
    }
    for br in &refs {
        b.free_now(br);
    }
    Ok(())
}
