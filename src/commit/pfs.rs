//! The version-2 part of a commit: a new record for the served PFS, holding the commit's
//! inode index, orphan list and inode counter, put into the PFS table (copy-on-write: the
//! old record and the table path above it are freed like any replaced block). Every
//! commit writes one, so the record and the table never lag behind the trees they name.

use super::builder::Builder;
use crate::error::{Error, Result};
use crate::fs::PfsRoots;
use crate::tree::modify::{Change, PRoot, apply};

/// The new PFS table root and the record template (roots filled in at finalize).
pub(super) struct PendingPfs {
    pub table: PRoot,
    pub roots: PfsRoots,
}

pub(super) fn write_record(
    b: &mut Builder,
    old: &PfsRoots,
    inodes: &PRoot,
    orphans: &PRoot,
    next_inum: u64,
) -> Result<PendingPfs> {
    let mut roots = old.clone();
    let Some(record) = roots.served.as_mut() else {
        return Err(Error::Corrupt("a commit of roots that serve no PFS".into()));
    };
    record.next_inum = next_inum;
    let (id, record) = (record.id, record.clone());
    let entry = b.new_pfs_record(record, inodes.clone(), orphans.clone())?;
    let table = apply(b, PRoot::from(&old.table), 1, true, &[(id, Change::Put(entry))])?;
    Ok(PendingPfs { table, roots })
}
