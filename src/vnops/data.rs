//! File data across the three layers (dirty overlay, flushing overlay, committed tree).
//!
//! Invariant relied on by truncate and sparse writes: in every layer, the bytes of a block
//! past the file size are zero.

use crate::copies::read::ReadCtx;
use crate::error::Result;
use crate::fs::FsInner;
use crate::inode::{Content, InodeState};
use crate::tree;
use hammer2_format::{BlockType, Blockref};
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
        return Ok(Source::Buf(b.clone()));
    }
    if st.dirty.trunc.is_some_and(|t| k * bs >= t) {
        return Ok(Source::Zero);
    }
    if let Some(fl) = &st.flushing {
        if let Some(b) = fl.overlay.data.get(&k) {
            return Ok(Source::Buf(b.clone()));
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
    let copy = |src: &[u8], out: &mut [u8]| {
        let avail = src.len().saturating_sub(from).min(out.len());
        out[..avail].copy_from_slice(&src[from..from + avail]);
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

/// A full block-size buffer with the current content of block `k`.
pub fn load_block(fs: &FsInner, inum: u64, st: &InodeState, k: u64) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; fs.block_size() as usize];
    read_into(fs, inum, st, k, 0, &mut buf)?;
    Ok(buf)
}

/// True when block `k` has content in some layer (is not a hole).
pub fn present(fs: &FsInner, st: &InodeState, k: u64) -> Result<bool> {
    Ok(!matches!(source(fs, st, k)?, Source::Zero))
}
