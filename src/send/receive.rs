//! `hammer2 receive`: applies a verified stream to the mounted PFS (the *mirror*) and takes
//! the snapshot it describes. The receiver keeps the sender's inode numbers and entry keys
//! (each PFS is its own inode-number space), so hard links and incrementals need no map,
//! and stores the content with its own copies, devices and compression.
//!
//! Records are held until the checkpoint (or end) after them verified, then applied and
//! committed together with the PFS's resume token (SR8): a stream cut or damaged anywhere
//! leaves whole verified chunks applied and the token saying how far, so the same stream
//! sent from there (`send --resume-token`) completes it (SR9). `hammer2 receive` also
//! checks a spooled stream whole first and refuses a damaged one before anything changes
//! (SR1). The snapshot is taken only after the end record, so a receive that fails leaves
//! no snapshot of a half-applied state (SR4).

use super::stream::{Header, InodeAttrs, Reader, Record, StreamError, Time};
use super::token::ResumeToken;
use super::{Received, SendError};
use crate::commit::{self, PfsOp};
use crate::error::Error;
use crate::fs::FsInner;
use crate::inode::{CommittedInode, Inode, InodeState, Leaf, Meta};
use crate::tree::Root;
use crate::vnops::data::{dirty_block, punch_block};
use hammer2_format::Timespec;
use hammer2_format::inode::{InodePolicy, S_IFMT, S_IFREG};
use hammer2_format::layout::ROOT_INUM;
use hammer2_format::pfs::PfsKind;
use parking_lot::RwLock;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Units a new inode reserves (its inode block and the index path's share), as a create.
const CREATE_BLOCKS: u64 = 2;

fn ts(t: Time) -> Timespec {
    Timespec { sec: t.sec, nsec: t.nsec }
}

/// Applies the stream from `input` to the PFS `fs` serves and takes snapshot `name` of it.
pub(super) fn receive(
    fs: &FsInner,
    input: &mut dyn Read,
    name: Option<&str>,
    resume: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<Received, SendError> {
    let started = std::time::Instant::now();
    fs.check_writable()?;
    let mut r = Reader::new(input);
    let Some(Record::Header(h)) = r.next_record()? else { return Err(StreamError::NotAStream.into()) };
    let name = name.map_or_else(|| h.snapshot_name.clone(), str::to_string);
    let token = check_resume(fs, &h, resume)?;
    check_target(fs, &h, &name, token.is_some())?;
    fs.next_inum.fetch_max(h.next_inum, Ordering::SeqCst);
    // The token the PFS record holds: what an interruption tells the user to resume with
    // (a whole stream sent again over a part keeps the part's token until its first
    // checkpoint; both are positions the PFS holds, but a resume must name the recorded one).
    let mut recorded = token.unwrap_or_else(|| ResumeToken::of(&h, 0, h.resume_after));
    if token.is_none() {
        // Before anything is applied (a commit for the dirty limit may come before the
        // first checkpoint): from here on the PFS says which stream it holds part of, so a
        // crash at any point resumes, and a full stream resumes into its no longer new PFS.
        commit::commit_pfs_op(fs, &PfsOp::Progress { token: recorded.to_record() })?;
    }
    let mut a = Applier { done: Received::default(), pending: None };
    // The records read since the last checkpoint: applied once the next one verifies.
    let mut chunk: Vec<Record> = Vec::new();
    let mut last = h.resume_after;
    // Stream bytes where the chunk being held began (SR8's memory bound).
    let mut chunk_start = r.bytes();
    loop {
        let rec = match r.next_record() {
            Ok(rec) => rec,
            Err(cause) => {
                // What is applied stays, committed with its token at the last checkpoint.
                let (position, token) = (recorded.position, recorded.to_text());
                return Err(SendError::Interrupted { cause, position, token });
            }
        };
        match rec {
            Some(Record::Checkpoint { position, .. }) => {
                last = chunk.iter().rev().find(|c| c.is_content()).map_or(last, Record::id);
                for c in chunk.drain(..) {
                    throttle(fs)?;
                    a.apply(fs, c)?;
                }
                // The inode in progress gets its attributes now: its record is before the
                // resume position, so a resumed stream would not set them (SR9).
                if let Some(p) = &a.pending {
                    finish_inode(fs, p)?;
                }
                chunk_start = r.bytes();
                recorded = ResumeToken::of(&h, position, last);
                commit::commit_pfs_op(fs, &PfsOp::Progress { token: recorded.to_record() })?;
                progress(r.bytes());
            }
            Some(c) => {
                if r.bytes() - chunk_start > super::stream::MAX_CHUNK_BYTES {
                    let cause = StreamError::Corrupt {
                        record: r.position(),
                        what: format!("no checkpoint within {} MiB of stream", super::stream::MAX_CHUNK_BYTES >> 20),
                    };
                    let (position, token) = (recorded.position, recorded.to_text());
                    return Err(SendError::Interrupted { cause, position, token });
                }
                chunk.push(c);
            }
            None => {
                for c in chunk.drain(..) {
                    throttle(fs)?;
                    a.apply(fs, c)?;
                }
                break;
            }
        }
    }
    let mut done = a.finish(fs)?;
    commit::commit(fs, false, false)?;
    let checking = std::time::Instant::now();
    verify_tree(fs, &h, r.tree().ok_or(StreamError::Truncated(r.position()))?)?;
    done.summary.check_seconds = checking.elapsed().as_secs_f64();
    let op = PfsOp::Received { name: name.clone(), from_uuid: h.pfs_uuid, from_tid: h.snapshot_tid };
    commit::commit_pfs_op(fs, &op)?;
    let sum = &mut done.summary;
    sum.records = r.position();
    sum.bytes = r.bytes();
    sum.seconds = started.elapsed().as_secs_f64();
    done.name = name;
    Ok(done)
}

/// The snapshot this PFS took when it received the stream's base (the earliest one stamped
/// with it: a user's later snapshot of the mirror carries the stamp too). None for a full
/// stream; an error when it was deleted (the tree could not be verified: SR10).
fn base_snapshot(fs: &FsInner, h: &Header) -> Result<Option<hammer2_format::PfsRecord>, SendError> {
    if !h.is_incremental() {
        return Ok(None);
    }
    let (table, served) = {
        let roots = fs.roots.read();
        let p = roots.pfs.as_ref().ok_or(Error::FormatVersion1)?;
        (p.table.clone(), p.served.as_ref().ok_or(Error::FormatVersion1)?.id)
    };
    let base = crate::pfs::records(&fs.vol, &table, fs.vol.devices.len())?
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| {
            r.kind == PfsKind::Snapshot
                && r.origin == served
                && r.received_uuid == h.pfs_uuid
                && r.received_tid == h.base_tid
        })
        .min_by_key(|r| r.create_tid);
    match base {
        Some(b) => Ok(Some(b)),
        None => Err(SendError::Refused(format!(
            "the snapshot this PFS received as the stream's base (sender's snapshot tid {}) was deleted here: the received tree could not be verified; receive a full stream into a new PFS",
            h.base_tid
        ))),
    }
}

/// SR10: the tree this PFS holds now (committed) has the check value the sender computed
/// for its snapshot, as a difference from the base snapshot on each side.
fn verify_tree(fs: &FsInner, h: &Header, want: [u8; 32]) -> Result<(), SendError> {
    let base = base_snapshot(fs, h)?;
    let (table, served) = {
        let roots = fs.roots.read();
        let p = roots.pfs.as_ref().ok_or(Error::FormatVersion1)?;
        (p.table.clone(), p.served.as_ref().ok_or(Error::FormatVersion1)?.id)
    };
    let records = crate::pfs::records(&fs.vol, &table, fs.vol.devices.len())?;
    let now = records
        .iter()
        .map(|(_, r)| r)
        .find(|r| r.id == served)
        .ok_or_else(|| Error::Corrupt("the served PFS is not in the PFS table".into()))?;
    let (old, tid) = base.map_or_else(|| (Root::empty(), 0), |b| (Root::from_ref(&b.inode_root), b.create_tid));
    let got = super::treesum::delta(fs, &Root::from_ref(&now.inode_root), &old, tid)?;
    if got != want {
        return Err(SendError::Refused(
            "the received tree does not match the sender's (its check value differs): the mirror PFS was changed since it received the base, or the receive went wrong; no snapshot taken ('hammer2 receive --abandon' shows its files)".into(),
        ));
    }
    Ok(())
}

/// The receive in progress in the PFS (its token), which the stream must continue (SR9):
/// a resumed stream only with `resume`, at the token's position, joining its last record;
/// a whole stream only when it is the same stream (sent again from its start) or none is
/// in progress.
fn check_resume(fs: &FsInner, h: &Header, resume: bool) -> Result<Option<ResumeToken>, SendError> {
    let token = super::token::ResumeToken::from_record(
        &fs.roots.read().pfs.as_ref().and_then(|p| p.served.as_ref()).ok_or(Error::FormatVersion1)?.resume_token,
    );
    if h.resume_from != 0 && !resume {
        return Err(SendError::Refused(format!(
            "this stream continues an interrupted one (from record {}): receive it with --resume",
            h.resume_from
        )));
    }
    match token {
        None if h.resume_from != 0 => {
            Err(SendError::Refused("this PFS has no interrupted receive to resume: send the stream whole".into()))
        }
        None => Ok(None),
        Some(t) if !t.same_stream(h) => Err(SendError::Refused(format!(
            "this PFS holds part of another stream (snapshot tid {} from base tid {}): resume it with 'hammer2 send --resume-token {}'",
            t.snapshot_tid,
            t.base_tid,
            t.to_text()
        ))),
        Some(t) if h.resume_from != 0 && (h.resume_from != t.position || h.resume_after != t.after) => {
            Err(SendError::Refused(format!(
                "the stream resumes at record {} but this PFS applied {} records of it: send with 'hammer2 send --resume-token {}'",
                h.resume_from,
                t.position,
                t.to_text()
            )))
        }
        Some(t) => Ok(Some(t)),
    }
}

/// Applies content records in order.
struct Applier {
    done: Received,
    /// The attributes of the inode being applied: set last, over what its data did.
    pending: Option<InodeAttrs>,
}

impl Applier {
    fn finish(mut self, fs: &FsInner) -> Result<Received, SendError> {
        if let Some(p) = self.pending.take() {
            finish_inode(fs, &p)?;
        }
        Ok(self.done)
    }

    fn apply(&mut self, fs: &FsInner, rec: Record) -> Result<(), SendError> {
        let (done, pending) = (&mut self.done, &mut self.pending);
        match rec {
            Record::Header(_) | Record::End { .. } | Record::Checkpoint { .. } => {}
            Record::Inode(a) => {
                if let Some(p) = pending.take() {
                    finish_inode(fs, &p)?;
                }
                start_inode(fs, &a)?;
                done.summary.inodes += 1;
                done.changed.push(a.inum);
                *pending = Some(a);
            }
            Record::Dirent { dir, key, name, inum, dtype } => {
                put_leaf(fs, dir, key, Some(Leaf::Dirent { name, inum, dtype }))?;
            }
            Record::Xattr { inum, key, name, value } => {
                put_leaf(fs, inum, key, Some(Leaf::Xattr { name, value }))?;
            }
            Record::Remove { inum, key, leaf: true } => {
                if let Some(name) = put_leaf(fs, inum, key, None)? {
                    done.removed.push((inum, name));
                }
            }
            Record::Remove { inum, key, leaf: false } => punch(fs, inum, key)?,
            Record::Data { inum, offset, bytes, .. } => {
                done.summary.data_bytes += bytes.len() as u64;
                put_data(fs, inum, offset, &bytes)?;
            }
            Record::Delete { inum } => {
                if let Some(p) = pending.take() {
                    finish_inode(fs, &p)?;
                }
                delete_inode(fs, inum)?;
                done.changed.push(inum);
            }
        }
        Ok(())
    }
}

/// A full stream needs an empty PFS; an incremental one the PFS that received its base
/// (SR5). The snapshot's name must be free.
fn check_target(fs: &FsInner, h: &Header, name: &str, resuming: bool) -> Result<(), SendError> {
    let served = {
        let roots = fs.roots.read();
        let Some(p) = roots.pfs.as_ref() else { return Err(Error::FormatVersion1.into()) };
        p.served.clone().ok_or(Error::FormatVersion1)?
    };
    if let Some(why) = hammer2_format::pfs::name_problem(name) {
        return Err(SendError::Refused(why.to_string()));
    }
    if crate::snapshot::list(fs)?.iter().any(|p| p.name == name) {
        return Err(SendError::Refused(format!("a PFS named {name:?} exists")));
    }
    if !h.is_incremental() {
        if resuming {
            // The PFS holds the part of this very stream its token names (SR9).
            return Ok(());
        }
        // The sender's inode numbers are kept: none of them may have been used here, so
        // the PFS must never have held anything but its root.
        let root = fs.inode(ROOT_INUM)?;
        let st = root.state.read();
        let fresh = fs.next_inum.load(Ordering::SeqCst) <= ROOT_INUM + 1;
        if !fresh || !crate::vnops::dirent::is_empty_dir(fs, ROOT_INUM, &st)? {
            return Err(SendError::Refused(format!(
                "PFS {:?} is not new: a full stream is received into a PFS that never held files ('hammer2 pfs create' makes one)",
                served.name
            )));
        }
        return Ok(());
    }
    if served.received_uuid != h.pfs_uuid || served.received_tid != h.base_tid {
        return Err(SendError::Refused(format!(
            "PFS {:?} does not hold the stream's base (snapshot tid {} of the sender): receive that first",
            served.name, h.base_tid
        )));
    }
    // Before anything is applied: the end's check needs the base snapshot (SR10).
    base_snapshot(fs, h)?;
    Ok(())
}

/// Commits when what waits for a commit passes the dirty limit (memory stays bounded).
fn throttle(fs: &FsInner) -> Result<(), Error> {
    if fs.dirty_load() > fs.opts.dirty_limit {
        commit::commit(fs, false, false)?;
    }
    Ok(())
}

fn reserve(fs: &FsInner, units: u64) -> Result<u64, Error> {
    if fs.space.try_reserve(units) {
        return Ok(units);
    }
    commit::commit(fs, false, false)?;
    if fs.space.try_reserve(units) { Ok(units) } else { Err(Error::NoSpace) }
}

/// The file's own settings as the stream carries them, as far as this filesystem has them:
/// a copies count above what it can place is lowered to what it can (the sender's count is
/// a wish for data safety, which this filesystem's own limit bounds).
fn policy_of(fs: &FsInner, a: &InodeAttrs) -> InodePolicy {
    let max = fs.vol.max_copies().max(fs.vol.params.copies);
    InodePolicy { copies: a.copies.min(max), compression: a.compression, zstd_level: a.zstd_level }
}

fn meta_of(a: &InodeAttrs, create_tid: u64) -> Meta {
    Meta {
        mode: a.mode,
        uid: a.uid,
        gid: a.gid,
        nlink: a.nlink,
        size: 0,
        rdev: a.rdev,
        atime: ts(a.atime),
        mtime: ts(a.mtime),
        ctime: ts(a.ctime),
        btime: ts(a.btime),
        parent: a.parent,
        version: 1,
        create_tid,
        blocks: 0,
        policy: Default::default(),
    }
}

/// Makes inode `a.inum` exist with the sender's type (a new one is empty until its
/// records come).
fn start_inode(fs: &FsInner, a: &InodeAttrs) -> Result<(), Error> {
    match fs.inode(a.inum) {
        Ok(inode) => {
            let st = inode.state.read();
            if st.meta.kind() != a.mode & S_IFMT {
                return Err(Error::Corrupt(format!(
                    "inode {} is a {:o} here and a {:o} in the stream: the PFS is not the stream's base",
                    a.inum,
                    st.meta.kind(),
                    a.mode & S_IFMT
                )));
            }
            // Before its data: new blocks get the file's copies and compression.
            let policy = policy_of(fs, a);
            if st.meta.policy != policy {
                drop(st);
                let _g = fs.gate.read();
                let mut st = inode.state.write();
                st.meta.policy = policy;
                fs.touch(&inode, &mut st);
            }
            Ok(())
        }
        Err(Error::NotFound) => {
            // Reserved before the gate: reserving may commit, which takes the gate.
            let units = reserve(fs, fs.space.meta_blocks(CREATE_BLOCKS))?;
            let _g = fs.gate.read();
            let meta = Meta { policy: policy_of(fs, a), ..meta_of(a, fs.roots.read().tid + 1) };
            let mut st = InodeState::new(meta, CommittedInode::new_empty());
            st.dirty.reserved = units;
            let inode = fs.inodes.insert(Arc::new(Inode { inum: a.inum, state: RwLock::new(st) }));
            let mut st = inode.state.write();
            fs.touch(&inode, &mut st);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Sets the sender's attributes exactly, after the inode's data (which moved its size and
/// times): a regular file is truncated or extended to the sender's size.
fn finish_inode(fs: &FsInner, a: &InodeAttrs) -> Result<(), Error> {
    let _g = fs.gate.read();
    let inode = fs.inode(a.inum)?;
    let mut st = inode.state.write();
    if st.meta.kind() == S_IFREG && st.meta.size != a.size {
        crate::vnops::attr::truncate(fs, &inode, &mut st, a.size)?;
    }
    let m = meta_of(a, st.meta.create_tid);
    st.meta =
        Meta { size: a.size, version: st.meta.version + 1, blocks: st.meta.blocks, policy: policy_of(fs, a), ..m };
    fs.touch(&inode, &mut st);
    Ok(())
}

/// Sets leaf `key` of inode `inum` (None: removes it). Returns the name of the directory
/// entry it replaced or removed, for the kernel's caches.
fn put_leaf(fs: &FsInner, inum: u64, key: u64, leaf: Option<Leaf>) -> Result<Option<Vec<u8>>, Error> {
    let units = match leaf {
        Some(_) => reserve(fs, crate::vnops::xattr::xattr_units(fs))?,
        None => 0,
    };
    let _g = fs.gate.read();
    let inode = fs.inode(inum)?;
    let mut st = inode.state.write();
    let old = match crate::vnops::dirent::range(fs, inum, &st, key, key)?.remove(&key) {
        Some(Leaf::Dirent { name, .. }) => Some(name),
        _ => None,
    };
    st.dirty.reserved += units;
    st.dirty.leaves.insert(key, leaf);
    fs.touch(&inode, &mut st);
    Ok(old)
}

/// The block at `offset` holds `bytes` (the rest of it zero). A symlink's target is its
/// block 0, as a create stores it.
fn put_data(fs: &FsInner, inum: u64, offset: u64, bytes: &[u8]) -> Result<(), Error> {
    let bs = fs.block_size();
    if offset % bs != 0 || bytes.len() as u64 > bs {
        return Err(Error::Corrupt(format!("a data record of inode {inum} at {offset} that is not one block")));
    }
    if bytes.is_empty() {
        return punch(fs, inum, offset);
    }
    let _g = fs.gate.read();
    let inode = fs.inode(inum)?;
    let mut st = inode.state.write();
    if !st.meta.has_data() {
        return Err(Error::Corrupt(format!("a data record for inode {inum}, which holds no data")));
    }
    let k = offset / bs;
    let buf = dirty_block(fs, inum, &mut st, k, bytes.len(), true)?;
    buf[..bytes.len()].copy_from_slice(bytes);
    buf[bytes.len()..].fill(0);
    st.meta.size = st.meta.size.max(offset + bytes.len() as u64);
    fs.touch(&inode, &mut st);
    Ok(())
}

fn punch(fs: &FsInner, inum: u64, offset: u64) -> Result<(), Error> {
    let _g = fs.gate.read();
    let inode = fs.inode(inum)?;
    let mut st = inode.state.write();
    punch_block(fs, &mut st, offset / fs.block_size())?;
    fs.touch(&inode, &mut st);
    Ok(())
}

/// An inode the snapshot no longer has: removed at the next commit (its entries went with
/// their directories' records), or when its last open on this mount ends.
fn delete_inode(fs: &FsInner, inum: u64) -> Result<(), Error> {
    let _g = fs.gate.read();
    let inode = match fs.inode(inum) {
        Ok(i) => i,
        Err(Error::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut st = inode.state.write();
    st.meta.nlink = 0;
    if st.opens == 0 {
        st.deleted = true;
    }
    fs.touch(&inode, &mut st);
    Ok(())
}
