//! `hammer2 send`: the stream of a snapshot, whole or from an older snapshot of the same
//! PFS. It reads the snapshot's committed trees, which nothing changes, so it runs beside a
//! mounted filesystem's work through any mount of it (the daemon of a writable mount).
//!
//! Order (what a resume token will name): inodes by number; for each, its attributes, then
//! its removed and changed leaves (entries, xattrs, data) by key. An inode the base had and
//! the snapshot lacks is a delete record in that same order (SR3).

use super::diff::{Diff, diff};
use super::stream::{Header, InodeAttrs, Record, RecordId, Time, Writer, data_hash};
use super::{SendError, SendOptions, Summary};
use crate::copies::read::ReadCtx;
use crate::error::Error;
use crate::fs::FsInner;
use crate::tree::{self, Root};
use hammer2_format::pfs::PfsKind;
use hammer2_format::{BlockType, Blockref, InodeBlock, InodeContent, PfsRecord, Timespec};
use std::io::Write;

fn time(t: Timespec) -> Time {
    Time { sec: t.sec, nsec: t.nsec }
}

/// Where the records go: skipped up to the resume position (counted, not read nor written:
/// SR9), then written, the header first.
struct Emitter<'a, W: Write> {
    w: Writer<W>,
    header: Option<Header>,
    /// Content records before this position are skipped.
    skip_until: u64,
    /// Position of the next content record.
    pos: u64,
    /// The last content record skipped, and the one the token says came before the resume
    /// position: they must be the same record.
    last: RecordId,
    want: RecordId,
    progress: &'a mut dyn FnMut(u64),
}

impl<W: Write> Emitter<'_, W> {
    fn skipping(&self) -> bool {
        self.pos < self.skip_until
    }

    /// Counts a record that is not sent (before the resume position).
    fn skip(&mut self, id: RecordId) {
        self.last = id;
        self.pos += 1;
    }

    fn put(&mut self, r: &Record) -> Result<(), SendError> {
        if self.skipping() {
            self.skip(r.id());
            return Ok(());
        }
        self.start()?;
        self.w.put(r).map_err(SendError::Output)?;
        self.pos += 1;
        (self.progress)(self.w.bytes());
        Ok(())
    }

    /// Writes the header once the resume position is reached, after checking that the
    /// stream joins there what the receiver applied (SR9).
    fn start(&mut self) -> Result<(), SendError> {
        let Some(h) = self.header.take() else { return Ok(()) };
        if self.pos != self.skip_until || self.last != self.want {
            return Err(SendError::Refused(format!(
                "the resume token does not join this stream: it names record {:?} before position {}, the stream has {:?} at position {}",
                self.want, self.skip_until, self.last, self.pos
            )));
        }
        self.w.put(&Record::Header(h)).map_err(SendError::Output)
    }
}

/// Writes the stream of snapshot `name` (from snapshot `from` when given) to `out`.
pub(super) fn send(
    fs: &FsInner,
    name: &str,
    from: Option<&str>,
    opts: &SendOptions,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<Summary, SendError> {
    let started = std::time::Instant::now();
    // Before the table is read: a deletion either committed before (the snapshot is not
    // found) or waits for the send's end (SR7).
    let _hold = fs.snapviews.hold_for_send(&[Some(name), from].into_iter().flatten().collect::<Vec<_>>());
    let table = {
        let roots = fs.roots.read();
        let Some(p) = roots.pfs.as_ref() else { return Err(Error::FormatVersion1.into()) };
        p.table.clone()
    };
    let records: Vec<PfsRecord> =
        crate::pfs::records(&fs.vol, &table, fs.vol.devices.len())?.into_iter().map(|(_, r)| r).collect();
    let find = |n: &str| records.iter().find(|r| r.name == n);
    let snap = find(name).ok_or_else(|| SendError::Refused(format!("no snapshot named {name:?}")))?;
    if snap.kind != PfsKind::Snapshot {
        return Err(SendError::Refused(format!(
            "{name:?} is a writable PFS: send a snapshot of it ('hammer2 snapshot' takes one)"
        )));
    }
    let base = match from {
        None => None,
        Some(b) => {
            let base = find(b).ok_or_else(|| SendError::Refused(format!("no snapshot named {b:?}")))?;
            if base.kind != PfsKind::Snapshot || base.origin != snap.origin || base.create_tid >= snap.create_tid {
                return Err(SendError::Refused(format!(
                    "{b:?} is not an older snapshot of the same PFS as {name:?}: an incremental stream needs one"
                )));
            }
            Some(base)
        }
    };
    let lineage = records.iter().find(|r| r.id == snap.origin).map_or(snap.uuid, |r| r.uuid);
    let header = Header {
        stream_id: *uuid::Uuid::new_v4().as_bytes(),
        pfs_uuid: lineage,
        snapshot_uuid: snap.uuid,
        snapshot_tid: snap.create_tid,
        snapshot_name: snap.name.clone(),
        base_tid: base.map_or(0, |b| b.create_tid),
        base_uuid: base.map_or([0; 16], |b| b.uuid),
        next_inum: snap.next_inum,
        resume_from: opts.resume.map_or(0, |t| t.position),
        resume_after: opts.resume.map_or_else(RecordId::default, |t| t.after),
    };
    if let Some(t) = &opts.resume
        && !t.same_stream(&header)
    {
        return Err(SendError::Refused(format!(
            "the resume token is for another stream (snapshot tid {} from base tid {}; this one is snapshot tid {} from base tid {})",
            t.snapshot_tid, t.base_tid, header.snapshot_tid, header.base_tid
        )));
    }
    let base_tid = header.base_tid;
    let position = header.resume_from;
    let want = header.resume_after;
    let mut w = Emitter {
        w: Writer::with_checkpoints(out, opts.checkpoint_bytes, position),
        header: Some(header),
        skip_until: position,
        pos: 0,
        last: RecordId::default(),
        want,
        progress,
    };
    let new_index = Root::from_ref(&snap.inode_root);
    let old_index = base.map_or_else(Root::empty, |b| Root::from_ref(&b.inode_root));
    let inodes = diff(&fs.vol, &new_index, &old_index, base_tid)?;
    let mut sum = Summary::default();
    // Changed and removed inodes merged by number.
    let (mut c, mut r) = (inodes.changed.iter().peekable(), inodes.removed.iter().peekable());
    loop {
        let next_changed = c.peek().map(|b| b.key);
        let next_removed = r.peek().map(|b| b.key);
        match (next_changed, next_removed) {
            (None, None) => break,
            (Some(a), Some(b)) if b < a => {
                w.put(&Record::Delete { inum: b })?;
                r.next();
            }
            (None, Some(b)) => {
                w.put(&Record::Delete { inum: b })?;
                r.next();
            }
            (Some(_), _) => {
                let br = *c.next().unwrap_or(&Blockref::EMPTY);
                if send_inode(fs, &br, &old_index, base_tid, &mut w, &mut sum)? {
                    sum.inodes += 1;
                }
            }
        }
    }
    w.start()?;
    // SR10: the check value of the snapshot's tree, as a difference from the base's.
    let checking = std::time::Instant::now();
    let tree = super::treesum::delta(fs, &new_index, &old_index, base_tid)?;
    sum.check_seconds = checking.elapsed().as_secs_f64();
    let (records, bytes) = w.w.finish(tree).map_err(SendError::Output)?;
    sum.records = records;
    sum.bytes = bytes;
    sum.seconds = started.elapsed().as_secs_f64();
    Ok(sum)
}

pub(super) fn inode_block(fs: &FsInner, br: &Blockref) -> Result<InodeBlock, Error> {
    if br.btype != BlockType::Inode {
        return Err(Error::Corrupt(format!("inode index entry {} is a {}", br.key, br.btype.name())));
    }
    let b = std::sync::Arc::unwrap_or_clone(fs.vol.read_inode_block(br, &ReadCtx::inode(br.key))?);
    if b.inum != br.key {
        return Err(Error::Corrupt(format!("inode index entry {} holds inode {}", br.key, b.inum)));
    }
    Ok(b)
}

/// The tree of an inode's content (empty for embedded content).
pub(super) fn content_root(b: &InodeBlock) -> Root {
    match &b.content {
        InodeContent::Tree { root_level, entries } => Root { level: *root_level, entries: entries.clone() },
        InodeContent::Embedded(_) => Root::empty(),
    }
}

fn send_inode<W: Write>(
    fs: &FsInner,
    br: &Blockref,
    old_index: &Root,
    base_tid: u64,
    w: &mut Emitter<'_, W>,
    sum: &mut Summary,
) -> Result<bool, SendError> {
    let inum = br.key;
    let b = inode_block(fs, br)?;
    if b.nlink == 0 {
        // Unlinked while open when the snapshot was taken (an orphan): no name leads to it,
        // and the receiver must not keep it. A delete of an inode it never had is nothing.
        w.put(&Record::Delete { inum })?;
        return Ok(false);
    }
    w.put(&Record::Inode(InodeAttrs {
        inum,
        mode: b.mode,
        uid: b.uid,
        gid: b.gid,
        nlink: b.nlink,
        size: b.size,
        rdev: b.rdev,
        parent: b.parent,
        atime: time(b.atime),
        mtime: time(b.mtime),
        ctime: time(b.ctime),
        btime: time(b.btime),
        copies: b.policy.copies,
        compression: b.policy.compression,
        zstd_level: b.policy.zstd_level,
    }))?;
    // The base's version of this inode, when it had one: only its changes are sent.
    let old = match base_tid {
        0 => None,
        _ => tree::lookup(&fs.vol, old_index, inum)?.map(|obr| inode_block(fs, &obr)).transpose()?,
    };
    let (old_root, tid) = match &old {
        Some(o) => (content_root(o), base_tid),
        None => (Root::empty(), 0),
    };
    if let InodeContent::Embedded(bytes) = &b.content {
        // At most a few KiB: sent whole; the receiver's truncate to the size drops the rest.
        let bytes = bytes[..bytes.len().min(b.size as usize)].to_vec();
        sum.data_bytes += bytes.len() as u64;
        w.put(&Record::Data { inum, offset: 0, hash: data_hash(&bytes), bytes })?;
        return Ok(true);
    }
    let Diff { changed, mut removed } = diff(&fs.vol, &content_root(&b), &old_root, tid)?;
    // Content the base embedded in the inode is block 0 to the receiver: gone unless the
    // tree has a block 0 now (born after the base, so among the changes).
    if matches!(old.as_ref().map(|o| &o.content), Some(InodeContent::Embedded(_)))
        && changed.first().is_none_or(|c| c.key != 0 || c.btype != BlockType::Data)
    {
        removed.insert(0, Blockref { key: 0, btype: BlockType::Data, ..Blockref::EMPTY });
    }
    let (mut c, mut r) = (changed.iter().peekable(), removed.iter().peekable());
    loop {
        let take_removed = match (c.peek(), r.peek()) {
            (None, None) => break,
            (Some(a), Some(x)) => x.key < a.key,
            (None, Some(_)) => true,
            (Some(_), None) => false,
        };
        if take_removed {
            // Never also a changed key: removed leaves are the keys the new walk did not see.
            let x = r.next().copied().unwrap_or(Blockref::EMPTY);
            w.put(&Record::Remove { inum, key: x.key, leaf: x.btype != BlockType::Data })?;
            continue;
        }
        let leaf = c.next().copied().unwrap_or(Blockref::EMPTY);
        if w.skipping() {
            // Before the resume position: counted without reading the leaf (SR9).
            let kind = match leaf.btype {
                BlockType::Data => super::stream::kind::DATA,
                BlockType::Dirent => super::stream::kind::DIRENT,
                _ => super::stream::kind::XATTR,
            };
            w.skip(RecordId { kind, inum, key: leaf.key });
            continue;
        }
        let rec = match leaf.btype {
            BlockType::Data => {
                let mut bytes = fs.vol.read_data(&leaf, &ReadCtx::file(inum, leaf.key))?.to_vec();
                // Stored blocks end on a whole unit; what lies past the file's size is zero.
                bytes.truncate(b.size.saturating_sub(leaf.key).min(bytes.len() as u64) as usize);
                sum.data_bytes += bytes.len() as u64;
                Record::Data { inum, offset: leaf.key, hash: data_hash(&bytes), bytes }
            }
            BlockType::Dirent | BlockType::Xattr => match crate::vnops::dirent::leaf_of(fs, inum, &leaf)? {
                crate::inode::Leaf::Dirent { name, inum: child, dtype } => {
                    Record::Dirent { dir: inum, key: leaf.key, name, inum: child, dtype }
                }
                crate::inode::Leaf::Xattr { name, value } => Record::Xattr { inum, key: leaf.key, name, value },
            },
            t => return Err(Error::Corrupt(format!("a {} entry in the tree of inode {inum}", t.name())).into()),
        };
        w.put(&rec)?;
    }
    Ok(true)
}
