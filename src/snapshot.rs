//! PFSs and snapshots of a mounted filesystem (format version 2): `hammer2 pfs
//! create|list|delete` and `hammer2 snapshot` call these through the daemon. Each change is
//! one commit carrying one [`PfsOp`] (`commit/pfs.rs` holds the rules); listing reads the
//! committed PFS table.

use crate::Mounted;
use crate::commit::{self, PfsOp};
use crate::error::{Error, Result};
use crate::tree::{self, Root};
use hammer2_format::blockref::dead_key;
use hammer2_format::pfs::PfsKind;
use std::ops::ControlFlow;

/// One PFS or snapshot, as `hammer2 pfs list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PfsInfo {
    pub name: String,
    pub id: u64,
    /// "pfs", "snapshot" or "clone".
    pub kind: &'static str,
    /// For a snapshot: the name of the PFS it was taken of; for a clone: its snapshot.
    pub origin: Option<String>,
    pub create_tid: u64,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// The PFS this mount serves.
    pub mounted: bool,
    /// Bytes its trees reference: logical (each block once) and physical (every copy).
    pub referenced_bytes: u64,
    pub referenced_physical_bytes: u64,
    /// Physical bytes of this record's dead list (blocks dropped since the previous
    /// snapshot that older snapshots hold).
    pub dead_list_bytes: u64,
    /// For a snapshot: the physical bytes deleting it frees now (the blocks it alone holds).
    pub would_free_bytes: Option<u64>,
    /// An interrupted receive into this PFS: the token `hammer2 send --resume-token`
    /// continues it with (SR8).
    pub resume_token: Option<String>,
}

fn rfc3339(ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Creates an empty writable PFS `name`; returns the commit that made it.
pub fn create_pfs(fs: &impl Mounted, name: &str) -> Result<u64> {
    Ok(commit::commit_pfs_op(fs.engine().0, &PfsOp::Create { name: name.to_string() })?.tid)
}

/// Takes a read-only snapshot of the served PFS, named `name` or `PFSNAME@<RFC3339 UTC>`:
/// everything written before the call is in it, nothing written after it returns.
/// Returns its name and create tid.
pub fn snapshot(fs: &impl Mounted, name: Option<&str>) -> Result<(String, u64)> {
    let inner = fs.engine().0;
    let name = match name {
        Some(n) => n.to_string(),
        None => default_name(inner)?,
    };
    let r = commit::commit_pfs_op(inner, &PfsOp::Snapshot { name: name.clone() })?;
    Ok((name, r.tid))
}

/// A writable snapshot of the served PFS: a read-only snapshot `NAME@origin` of it, then a
/// clone `NAME` of that snapshot (two commits: a crash between them leaves the read-only
/// snapshot alone). `NAME@origin` cannot be deleted while the clone exists. Returns the
/// clone's name and create tid.
pub fn snapshot_writable(fs: &impl Mounted, name: Option<&str>) -> Result<(String, u64)> {
    let inner = fs.engine().0;
    let name = match name {
        Some(n) => n.to_string(),
        None => default_name(inner)?,
    };
    let origin = format!("{name}@origin");
    if let Some(why) = hammer2_format::pfs::name_problem(&origin) {
        return Err(Error::Invalid(format!("{why} (the clone's origin snapshot is named {origin:?})")));
    }
    if list(fs)?.iter().any(|p| p.name == name) {
        return Err(Error::Invalid(format!("a PFS named {name:?} exists")));
    }
    commit::commit_pfs_op(inner, &PfsOp::Snapshot { name: origin.clone() })?;
    let r = commit::commit_pfs_op(inner, &PfsOp::Clone { origin, name: name.clone() })?;
    Ok((name, r.tid))
}

/// A writable clone `name` of snapshot `origin` (which cannot be deleted while it exists).
pub fn clone(fs: &impl Mounted, origin: &str, name: &str) -> Result<u64> {
    let op = PfsOp::Clone { origin: origin.to_string(), name: name.to_string() };
    Ok(commit::commit_pfs_op(fs.engine().0, &op)?.tid)
}

fn default_name(inner: &crate::fs::FsInner) -> Result<String> {
    let roots = inner.roots.read();
    let served = roots.pfs.as_ref().and_then(|p| p.served.as_ref()).ok_or(Error::FormatVersion1)?;
    Ok(format!("{}@{}", served.name, humantime::format_rfc3339_seconds(std::time::SystemTime::now())))
}

/// Deletes the snapshot or PFS `name` (a PFS only without snapshots; never the mounted one).
/// A snapshot with a file or directory open under `.snapshots` is refused (Busy, SD3), as
/// is one a send is reading (SR7); a
/// view of it is retired before the commit that frees its blocks (SD2).
pub fn delete(fs: &impl Mounted, name: &str) -> Result<u64> {
    let inner = fs.engine().0;
    // Held to the commit's end: no view of the snapshot is made meanwhile.
    let mut views = inner.snapviews.by_id.lock();
    // SR7: a send reading the snapshot would fail halfway (its blocks freed under it).
    if let Some(n) = inner.snapviews.sending.lock().get(name) {
        return Err(Error::Busy(format!("snapshot {name:?} is being sent ({n} send(s)); delete it when they end")));
    }
    let view = views.values().find(|v| v.record.name == name).cloned();
    let mut live = view.as_ref().map(|v| v.live.write());
    if let (Some(v), Some(live)) = (&view, live.as_mut()) {
        let open = v.opens.load(std::sync::atomic::Ordering::SeqCst);
        if open > 0 {
            return Err(Error::Busy(format!(
                "snapshot {name:?} has {open} file(s) or directories open under .snapshots; close them first"
            )));
        }
        **live = false;
    }
    match commit::commit_pfs_op(inner, &PfsOp::Delete { name: name.to_string() }) {
        Ok(r) => {
            if let Some(v) = &view {
                views.remove(&v.record.id);
            }
            // After the views' lock: the front end's hook may wait for requests that wait
            // for that lock (the kernel's lookup in `.snapshots`).
            drop(live);
            drop(views);
            if let Some(hook) = inner.snapviews.on_delete.lock().as_ref() {
                hook(name);
            }
            Ok(r.tid)
        }
        Err(e) => {
            // Still there: the view reads on.
            if let Some(live) = live.as_mut() {
                **live = true;
            }
            Err(e)
        }
    }
}

/// Every PFS and snapshot of the committed PFS table, by id.
pub fn list(fs: &impl Mounted) -> Result<Vec<PfsInfo>> {
    let inner = fs.engine().0;
    // Pinned: the table's nodes (and what the space figures read) stay what these roots name.
    let roots = inner.pinned_roots();
    let Some(p) = roots.pfs.as_ref() else { return Err(Error::FormatVersion1) };
    let served = p.served.as_ref().map(|r| r.id);
    let records: Vec<_> =
        crate::pfs::records(&inner.vol, &p.table, inner.vol.devices.len())?.into_iter().map(|(_, r)| r).collect();
    // The live record in memory is the newest (the table holds the same after every commit).
    let mut out = Vec::with_capacity(records.len());
    for r in &records {
        let would_free = if r.kind == PfsKind::Snapshot {
            let prev_tid =
                records.iter().find(|x| x.id == r.prev_snapshot && r.prev_snapshot != 0).map_or(0, |x| x.create_tid);
            let next = records
                .iter()
                .find(|x| x.kind == PfsKind::Snapshot && x.origin == r.origin && x.prev_snapshot == r.id)
                .or_else(|| records.iter().find(|x| x.id == r.origin));
            let mut bytes = 0u64;
            if let Some(next) = next {
                tree::scan(&inner.vol, &Root::from_ref(&next.dead_root), dead_key(prev_tid + 1, 0), &mut |br| {
                    bytes += br
                        .ptr()
                        .map_or(0, |p| u64::from(p.size) * p.copies.iter().filter(|l| l.is_valid()).count() as u64);
                    Ok(ControlFlow::Continue(()))
                })?;
            }
            Some(bytes)
        } else {
            None
        };
        out.push(PfsInfo {
            name: r.name.clone(),
            id: r.id,
            kind: r.kind.name(),
            origin: (r.origin != 0)
                .then(|| records.iter().find(|x| x.id == r.origin).map(|x| x.name.clone()))
                .flatten(),
            create_tid: r.create_tid,
            created: rfc3339(r.create_time_ns),
            mounted: Some(r.id) == served,
            referenced_bytes: r.referenced_logical,
            referenced_physical_bytes: r.referenced_physical,
            dead_list_bytes: r.dead_bytes,
            would_free_bytes: would_free,
            resume_token: crate::fs::resume::ResumeToken::from_record(&r.resume_token).map(|t| t.to_text()),
        });
    }
    Ok(out)
}
