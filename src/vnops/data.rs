//! File data across the three layers (dirty overlay, flushing overlay, committed tree).
//!
//! Invariant relied on by truncate and sparse writes: in every layer, the bytes of a block
//! past the file size are zero.
//!
//! An empty buffer in an overlay is a punched block (fallocate PUNCH_HOLE): a hole over
//! whatever the layers below hold, which the commit deletes from the tree (invariant P1,
//! docs/DESIGN.md §4).

use crate::copies::read::ReadCtx;
use crate::error::{Error, Result};
use crate::fs::FsInner;
use crate::inode::{Content, InodeState};
use crate::tree;
use hammer2_format::{BlockType, Blockref, UNIT};
use std::sync::atomic::Ordering;

use std::sync::Arc;

pub enum Source {
    Buf(Arc<Vec<u8>>),
    Zero,
    Committed(Blockref),
    Embedded(Arc<Vec<u8>>),
}

/// Where the current content of block `k` comes from.
pub fn source(fs: &FsInner, st: &InodeState, k: u64) -> Result<Source> {
    let bs = fs.block_size();
    if let Some(b) = st.dirty.data.get(&k) {
        return Ok(if b.is_empty() { Source::Zero } else { Source::Buf(b.clone()) });
    }
    if st.dirty.trunc.is_some_and(|t| k * bs >= t) {
        return Ok(Source::Zero);
    }
    if let Some(fl) = &st.flushing {
        if let Some(b) = fl.overlay.data.get(&k) {
            return Ok(if b.is_empty() { Source::Zero } else { Source::Buf(b.clone()) });
        }
        if fl.overlay.trunc.is_some_and(|t| k * bs >= t) {
            return Ok(Source::Zero);
        }
    }
    Ok(match &st.committed.content {
        Content::Embedded(b) if k == 0 => Source::Embedded(b.clone()),
        Content::Embedded(_) => Source::Zero,
        Content::Tree(root) => match tree::lookup(&fs.vol, root, k * bs)? {
            Some(br) if br.btype == BlockType::Data => Source::Committed(br),
            _ => Source::Zero,
        },
    })
}

/// Copies bytes `[from, from + out.len())` of block `k` into `out`.
pub fn read_into(fs: &FsInner, inum: u64, st: &InodeState, k: u64, from: usize, out: &mut [u8]) -> Result<()> {
    // Stored blocks may be shorter than the block size (a file's last block is stored up
    // to the unit holding its end); what lies past the stored bytes reads as zero.
    let copy = |src: &[u8], out: &mut [u8]| {
        let avail = src.len().saturating_sub(from).min(out.len());
        if avail > 0 {
            out[..avail].copy_from_slice(&src[from..from + avail]);
        }
        out[avail..].fill(0);
    };
    match source(fs, st, k)? {
        Source::Buf(b) => copy(&b, out),
        Source::Embedded(b) => copy(&b, out),
        Source::Zero => out.fill(0),
        Source::Committed(br) => {
            let bs = fs.block_size();
            let data = fs.vol.read_block(&br, &ReadCtx::file(inum, k * bs))?;
            copy(&data, out);
        }
    }
    Ok(())
}

/// The current bytes of block `k` as stored: up to the unit holding its last non-zero
/// part (shorter than the block when its end is zero), empty for a hole.
pub fn current_content(fs: &FsInner, inum: u64, st: &InodeState, k: u64) -> Result<Vec<u8>> {
    Ok(match source(fs, st, k)? {
        Source::Buf(b) => b.to_vec(),
        Source::Zero => Vec::new(),
        Source::Embedded(b) => {
            let mut v = b.to_vec();
            v.resize(round_unit(v.len()), 0);
            v
        }
        Source::Committed(br) => fs.vol.read_block(&br, &ReadCtx::file(inum, k * fs.block_size()))?.to_vec(),
    })
}

pub fn round_unit(n: usize) -> usize {
    n.div_ceil(UNIT as usize) * UNIT as usize
}

/// Makes block `k` part of the open overlay with at least `need` bytes of buffer (rounded up
/// to whole units), loading its current content unless `whole` says the caller overwrites
/// all of it. Space is reserved and dirty bytes are counted for what the buffer holds; on
/// ENOSPC nothing changes. Buffers hold bytes `[0, len)` of the block; the rest is zero.
pub fn dirty_block<'a>(
    fs: &FsInner,
    inum: u64,
    st: &'a mut InodeState,
    k: u64,
    need: usize,
    whole: bool,
) -> Result<&'a mut Vec<u8>> {
    let bs = fs.block_size() as usize;
    let need = round_unit(need.max(1)).min(bs);
    let count = |st: &mut InodeState, bytes: usize| {
        st.dirty.dirty_bytes += bytes as u64;
        fs.dirty_bytes.fetch_add(bytes as u64, Ordering::SeqCst);
    };
    // A punched block (empty buffer) is a hole like any other.
    if st.dirty.data.get(&k).is_none_or(|b| b.is_empty()) {
        let hole = !present(fs, st, k)?;
        let mut base = if whole || hole { Vec::new() } else { current_content(fs, inum, st, k)? };
        let len = base.len().max(need);
        // S2: a data block is charged whole when it enters the overlay, however much of it
        // is written now or later.
        let units = fs.space.data_blocks(1);
        if !fs.space.try_reserve(units) {
            return Err(Error::NoSpace);
        }
        st.dirty.reserved += units;
        count(st, len);
        base.resize(len, 0);
        if hole {
            st.meta.blocks += len as u64;
        }
        st.dirty.data.insert(k, Arc::new(base));
    } else {
        let have = st.dirty.data.get(&k).map_or(0, |b| b.len());
        if have < need {
            count(st, need - have);
        }
    }
    // Just inserted or checked above.
    let buf = Arc::make_mut(st.dirty.data.get_mut(&k).expect("dirty block present"));
    if buf.len() < need {
        buf.resize(need, 0);
    }
    Ok(buf)
}

/// Punches block `k` (it has content): it reads as zeros, and the commit removes it from the
/// tree, freeing every copy. Its dirty bytes are given back at once; what it was counted for
/// in `st_blocks` leaves the estimate now (the commit recounts exactly).
pub fn punch_block(fs: &FsInner, st: &mut InodeState, k: u64) -> Result<()> {
    let stored = match source(fs, st, k)? {
        Source::Buf(b) | Source::Embedded(b) => round_unit(b.len()) as u64,
        Source::Committed(br) => br.ptr().map_or(0, |p| u64::from(p.size)),
        Source::Zero => return Ok(()),
    };
    let dirty = st.dirty.data.insert(k, Arc::new(Vec::new())).map_or(0, |b| b.len() as u64);
    st.dirty.dirty_bytes = st.dirty.dirty_bytes.saturating_sub(dirty);
    fs.dirty_bytes.fetch_sub(dirty, Ordering::SeqCst);
    st.meta.blocks = st.meta.blocks.saturating_sub(stored);
    Ok(())
}

/// True when block `k` has content in some layer (is not a hole).
pub fn present(fs: &FsInner, st: &InodeState, k: u64) -> Result<bool> {
    Ok(!matches!(source(fs, st, k)?, Source::Zero))
}

/// One committed block to fetch: block index and its reference.
struct Fetch {
    k: u64,
    br: Blockref,
}

/// Fills `out` with bytes `[off, end)` of the file. Committed blocks that lie back to back
/// on a device are read with one request and verified block by block; a block that fails
/// its check (or a failed request) falls back to the per-block read, which tries the other
/// copies and heals. Consecutive runs alternate between copies, spreading a large read over
/// the devices.
pub fn read_range(fs: &FsInner, inum: u64, st: &InodeState, off: u64, end: u64, out: &mut [u8]) -> Result<()> {
    let bs = fs.block_size();
    let part = |k: u64| {
        let from = off.max(k * bs);
        let to = end.min((k + 1) * bs);
        ((from - k * bs) as usize, (from - off) as usize, (to - from) as usize)
    };
    let mut fetch = Vec::new();
    for k in off / bs..=(end - 1) / bs {
        let (within, o, n) = part(k);
        match source(fs, st, k)? {
            Source::Committed(br) if !fs.vol.is_cached(&br) && br.ptr().is_some() => fetch.push(Fetch { k, br }),
            _ => read_into(fs, inum, st, k, within, &mut out[o..o + n])?,
        }
    }
    let mut i = 0;
    while i < fetch.len() {
        let run = run_at(fs, &fetch[i..]);
        let done = match run {
            Some((dev, start, len, count)) if count > 1 => {
                read_run(fs, &fetch[i..i + count], dev, start, len, &part, out)
            }
            _ => false,
        };
        let count = run.map_or(1, |r| r.3);
        if !done {
            for f in &fetch[i..i + count] {
                let (within, o, n) = part(f.k);
                read_into(fs, inum, st, f.k, within, &mut out[o..o + n])?;
            }
        }
        i += count;
    }
    Ok(())
}

/// The run starting at `fetch[0]`: (device, offset, bytes, blocks) of the longest sequence
/// of consecutive blocks whose chosen copies are back to back on one device (at most 8 MiB).
fn run_at(fs: &FsInner, fetch: &[Fetch]) -> Option<(u8, u64, usize, usize)> {
    let pick = |f: &Fetch| -> Option<(u8, u64, usize)> {
        let p = f.br.ptr()?;
        let valid: Vec<_> = p
            .copies
            .iter()
            .filter(|l| l.is_valid() && fs.vol.devices.get(l.device).is_some_and(|m| m.readable()))
            .collect();
        let l = valid.get((f.k / 16) as usize % valid.len().max(1))?;
        Some((l.device, l.offset, p.size as usize))
    };
    let (dev, start, size) = pick(&fetch[0])?;
    let (mut len, mut count) = (size, 1);
    while count < fetch.len() && len < 8 << 20 {
        let prev = &fetch[count - 1];
        let next = &fetch[count];
        match pick(next) {
            Some((d, o, s)) if next.k == prev.k + 1 && d == dev && o == start + len as u64 => {
                len += s;
                count += 1;
            }
            _ => break,
        }
    }
    Some((dev, start, len, count))
}

/// Reads a run with one request; true when every block verified and was copied out.
fn read_run(
    fs: &FsInner,
    run: &[Fetch],
    dev: u8,
    start: u64,
    len: usize,
    part: &dyn Fn(u64) -> (usize, usize, usize),
    out: &mut [u8],
) -> bool {
    let Some(storage) = fs.vol.devices.get(dev).and_then(|m| m.storage.as_ref()) else { return false };
    let mut buf = vec![0u8; len];
    if storage.read_at(&mut buf, start).is_err() {
        return false;
    }
    let mut pos = 0usize;
    let mut verified = Vec::with_capacity(run.len());
    for f in run {
        // `read_range` only queues references that have a block pointer.
        let p = f.br.ptr().expect("run blocks have pointers");
        let block = &buf[pos..pos + p.size as usize];
        if !p.check.verify(block) {
            return false;
        }
        verified.push((f.k, pos, p.size as usize));
        pos += p.size as usize;
    }
    for (k, at, size) in verified {
        let (within, o, n) = part(k);
        let avail = size.saturating_sub(within).min(n);
        out[o..o + avail].copy_from_slice(&buf[at + within..at + within + avail]);
        out[o + avail..o + n].fill(0);
    }
    true
}
