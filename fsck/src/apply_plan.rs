//! The tree repairs, made through the engine's repair session
//! (`hammer2::repair::Session`): opened on one PFS, with the free map rebuilt from the
//! reachable blocks (the first session of a run) or as the previous session's commit
//! wrote it, the plan is applied change by change (each under the engine's locks, as a VOP
//! would), and one commit writes it all.

use crate::plan::{EntryChange, ParentRef, Plan};
use hammer2::repair::{Bitmap, EntryCount, InodeFix, RepairError, Session};
use hammer2::storage::DynStorage;
use hammer2_format::layout::ROOT_INUM;

/// Applies the plan of PFS `pfs` (None: ROOT) and commits. With `used`, the free map is
/// rebuilt from it whatever the plan holds; `features` are set in the header.
pub fn commit_plan(
    storages: &[DynStorage],
    pfs: Option<&str>,
    used: Option<Vec<Bitmap>>,
    plan: &Plan,
    features: u64,
) -> Result<(), RepairError> {
    let s = Session::open_pfs(storages, pfs.unwrap_or(hammer2_format::layout::ROOT_PFS_NAME), used)?;
    if features != 0 {
        s.set_features(features)?;
    }
    apply(&s, plan)?;
    s.commit()
}

fn apply(s: &Session, plan: &Plan) -> Result<(), RepairError> {
    if let Some(n) = plan.next_inum {
        // Before anything allocates an inode number (lost+found).
        s.reserve_inums(n);
    }
    for &(inum, br, orphan) in &plan.remove_inodes {
        s.remove_inode(inum, Some(br), orphan);
    }
    for &inum in &plan.drop_orphans {
        s.remove_inode(inum, None, true);
    }
    for &dir in &plan.rebuild_dirs {
        s.rebuild_dir(dir)?;
    }
    for (&dir, changes) in &plan.entries {
        for c in changes {
            match c {
                EntryChange::Drop { key } => s.drop_entry(dir, *key)?,
                EntryChange::Retype { key, name, target, dtype } => s.retype_entry(dir, *key, name, *target, *dtype)?,
                EntryChange::Rekey { key, name, target, dtype } => s.rekey_entry(dir, *key, name, *target, *dtype)?,
            }
        }
    }
    let lf = match &plan.lost_found {
        None => None,
        Some(l) => {
            let (lf, count) = match l.existing {
                // An existing lost+found's size and link count are set from the plan below.
                Some(i) => (i, EntryCount::Keep),
                // A new one counts its own entries.
                None => (s.make_dir(ROOT_INUM, &l.name, 0o700)?, EntryCount::Count),
            };
            for (name, target, dt) in &l.links {
                s.add_entry(lf, name, *target, *dt, count)?;
            }
            Some(lf)
        }
    };
    for (&inum, fix) in &plan.inodes {
        let parent = fix.parent.map(|p| match p {
            ParentRef::Inode(p) => p,
            ParentRef::LostFound => lf.unwrap_or(ROOT_INUM),
        });
        let fix = InodeFix {
            nlink: fix.nlink,
            size: fix.size,
            parent,
            blocks: fix.blocks,
            truncate: fix.truncate,
            zero_tail: fix.zero_tail,
            unorphan: fix.unorphan,
            drop_xattrs: fix.drop_xattrs.clone(),
        };
        s.fix_inode(inum, &fix)?;
    }
    Ok(())
}
