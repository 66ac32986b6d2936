//! File data across the three layers (dirty overlay, flushing overlay, committed tree).
//!
//! Invariant relied on by truncate and sparse writes: in every layer, the bytes of a block
//! past the file size are zero.
//!
//! An empty buffer in an overlay is a punched block (fallocate PUNCH_HOLE): a hole over
//! whatever the layers below hold, which the commit deletes from the tree (invariant P1,
//! docs/DESIGN.md §4).

use crate::copies::runs::MAX_GAP;
use crate::copies::{BulkBlock, OnBadCopy, ReadCtx};
use crate::error::{Error, Result};
use crate::fs::FsInner;
use crate::inode::{Content, InodeState};
use crate::tree;
use hammer2_format::{BlockPtr, BlockType, Blockref, UNIT};
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
            let data = fs.vol.read_data(&br, &ReadCtx::file(inum, k * bs))?;
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
        Source::Committed(br) => fs.vol.read_data(&br, &ReadCtx::file(inum, k * fs.block_size()))?.to_vec(),
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
        // is written now or later. Capacity counts blocks of N copies; a file with more
        // copies is charged in proportion (VC4).
        let (n, base_n) = (u64::from(fs.vol.data_copies(st.meta.policy.copies)), u64::from(fs.vol.params.copies));
        let units = (fs.space.data_blocks(1) * n.max(base_n)).div_ceil(base_n);
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

/// Fills `out` with bytes `[off, end)` of the file. Committed blocks not in the cache are
/// read through the copy-I/O layer's bulk read (merged runs per device, each block
/// verified; a bad copy is counted, the block read from another copy and the bad copy
/// healed, as on every read). Every `SPREAD` bytes the copy read first moves to the next
/// device, spreading large reads over the devices.
pub fn read_range(fs: &FsInner, inum: u64, st: &InodeState, off: u64, end: u64, out: &mut [u8]) -> Result<()> {
    let bs = fs.block_size();
    let part = |k: u64| {
        let from = off.max(k * bs);
        let to = end.min((k + 1) * bs);
        ((from - k * bs) as usize, (from - off) as usize, (to - from) as usize)
    };
    let mut fetch: Vec<(u64, Blockref)> = Vec::new();
    for k in off / bs..=(end - 1) / bs {
        let (within, o, n) = part(k);
        match source(fs, st, k)? {
            Source::Committed(br) if !fs.vol.is_cached(&br) && br.ptr().is_some() => fetch.push((k, br)),
            _ => read_into(fs, inum, st, k, within, &mut out[o..o + n])?,
        }
    }
    if fetch.len() <= 1 {
        // One block: the ordinary read, which also caches it.
        for (k, _) in fetch {
            let (within, o, n) = part(k);
            read_into(fs, inum, st, k, within, &mut out[o..o + n])?;
        }
        return Ok(());
    }
    let blocks: Vec<BulkBlock<'_>> = fetch
        .iter()
        .map(|(k, br)| {
            // `fetch` only holds references with a block pointer.
            let p = br.ptr().expect("fetched blocks have pointers");
            BulkBlock { btype: br.btype, ptr: p, slot: first_slot(fs, *k, p), ctx: ReadCtx::file(inum, k * bs) }
        })
        .collect();
    let mut failed: Option<(u64, Error)> = None;
    fs.vol.copy_io().read_blocks(&blocks, OnBadCopy::Recover, &mut |i, r| {
        let (k, br) = &fetch[i];
        let k = *k;
        // Verified stored bytes; a compressed block is decompressed only now (Z2).
        let r = r.and_then(|stored| match br.compression() {
            None => Ok(std::borrow::Cow::Borrowed(stored)),
            Some(_) => {
                let ctx = ReadCtx::file(inum, k * bs);
                crate::volume::content_of(br, Arc::from(stored), &ctx).map(|v| std::borrow::Cow::Owned(v.to_vec()))
            }
        });
        match r {
            Ok(data) => {
                let (within, o, n) = part(k);
                // A stored block may end before `within` (see `read_into`): the rest is zero.
                let avail = data.len().saturating_sub(within).min(n);
                if avail > 0 {
                    out[o..o + avail].copy_from_slice(&data[within..within + avail]);
                }
                out[o + avail..o + n].fill(0);
            }
            // The error of the first block that failed, as a block-by-block read gives.
            Err(e) if failed.as_ref().is_none_or(|(f, _)| k < *f) => failed = Some((k, e)),
            Err(_) => {}
        }
    });
    match failed {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// Bytes of a file read from one copy before the next copy takes its turn. Longer than
/// `MAX_GAP`, so the runs of one device never read through the blocks another device
/// serves (which would read them twice), and a read of up to this much, aligned, is one
/// request to one device.
const SPREAD: u64 = 4 * MAX_GAP;

/// The copy slot to read block `k` from first: its valid copies on readable devices take
/// turns every `SPREAD` bytes of the file.
pub(crate) fn first_slot(fs: &FsInner, k: u64, p: &BlockPtr) -> usize {
    let readable: Vec<usize> = p
        .copies
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_valid() && fs.vol.devices.get(l.device).is_some_and(|m| m.readable()))
        .map(|(slot, _)| slot)
        .collect();
    readable.get((k * fs.block_size() / SPREAD) as usize % readable.len().max(1)).copied().unwrap_or(0)
}
