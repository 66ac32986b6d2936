//! Bringing data already written to a file's current settings (`hammer2 rewrite PATH`,
//! `hammer2 set copies=N --apply PATH`): its committed DATA blocks whose copy count or
//! compression differ from what the file's settings want now are put back into the open
//! overlay with their current content, so the normal commit path writes them again with
//! the file's settings (copies VC2, compression Z1) and frees the old copies (or leaves
//! them to a snapshot that holds them: SN1). Only those blocks are read and written, so a
//! rewrite costs in proportion to the data concerned (VC5).
//!
//! One call covers one range of the file and ends with a commit: memory stays bounded by
//! the range, and a rewrite killed between calls has committed whole blocks of unchanged
//! content (every file reads the same at every instant); run again, it skips the blocks
//! already right. The caller (the `hammer2` command, through the virtual attribute
//! `hammer2.rewrite`) walks a file range by range and reports progress.

use super::Fs;
use super::data::{self, Source};
use crate::copies::compress::{self, Codec};
use crate::copies::{BulkBlock, OnBadCopy, ReadCtx};
use crate::error::{Error, Result};
use crate::inode::Content;
use crate::tree;
use hammer2_format::layout::XATTR_KEY_BIT;
use hammer2_format::{BlockType, Blockref};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The virtual attribute a set of which rewrites one range: its value is the range's start
/// (a byte offset, decimal); the range is [`RANGE`] bytes long.
pub const XATTR: &[u8] = b"hammer2.rewrite";

/// Bytes of a file one call covers: what it reads and holds dirty at most.
pub const RANGE: u64 = 32 << 20;

/// What one call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    /// Blocks put back into the overlay and written by the commit.
    pub blocks: u64,
    /// Their logical bytes.
    pub bytes: u64,
    /// Blocks looked at in the range (committed DATA blocks).
    pub seen: u64,
}

/// Whether a committed block of a file wanting `copies` copies and `codec` needs a rewrite
/// without reading it: its copy count differs, or it is compressed otherwise than wanted.
/// A raw block under a compressing setting may be incompressible: `None` (read it and try).
fn differs(br: &Blockref, copies: u8, codec: Option<Codec>) -> Option<bool> {
    let p = br.ptr()?;
    if p.copies.len() != usize::from(copies) {
        return Some(true);
    }
    match (br.compression(), codec) {
        (Some(_), None) => Some(true),
        (Some(c), Some(want)) => Some(c.method != want.method()),
        (None, None) => Some(false),
        (None, Some(_)) => None,
    }
}

impl Fs {
    /// Rewrites the blocks of file `ino` in `[from, from + len)` (`len` at most [`RANGE`])
    /// whose copies or compression differ from the file's settings (see the module
    /// comment), then commits.
    pub fn rewrite_range(&self, ino: u64, from: u64, len: u64) -> Result<Rewritten> {
        let fs = &self.inner;
        fs.check_writable()?;
        self.throttle();
        let bs = fs.block_size();
        let from = from / bs * bs;
        let end = from.saturating_add(len.clamp(1, RANGE)).min(XATTR_KEY_BIT);
        let inode = fs.inode(ino)?;
        // 1. The committed blocks of the range and what the file wants, under the read lock.
        let (candidates, copies, codec) = {
            let st = inode.state.read();
            if st.meta.is_dir() {
                return Err(Error::IsDir);
            }
            if !st.meta.is_reg() {
                return Ok(Rewritten::default());
            }
            let copies = fs.vol.data_copies(st.meta.policy.copies);
            let codec = compress::effective(
                st.meta.policy.compression,
                st.meta.policy.zstd_level,
                fs.default_codec(&fs.roots.read()),
            );
            let Content::Tree(root) = &st.committed.content else { return Ok(Rewritten::default()) };
            let mut found: Vec<(Blockref, Option<bool>)> = Vec::new();
            tree::scan(&fs.vol, root, from, &mut |br| {
                if br.key >= end {
                    return Ok(ControlFlow::Break(()));
                }
                // Every DATA reference names a block (FORMAT §5); `differs` needs one.
                if br.btype == BlockType::Data && br.ptr().is_some() {
                    found.push((*br, differs(br, copies, codec)));
                }
                Ok(ControlFlow::Continue(()))
            })?;
            (found, copies, codec)
        };
        let mut done = Rewritten { seen: candidates.len() as u64, ..Default::default() };
        let wanted: Vec<(Blockref, Option<bool>)> = candidates.into_iter().filter(|(_, d)| *d != Some(false)).collect();
        if wanted.is_empty() {
            return Ok(done);
        }
        // 2. Their content, read without a lock on the file; a raw block under a
        // compressing setting is kept only if compressing it now saves a unit (Z1).
        // Indexed like `wanted`: every entry has a block (step 1).
        let blocks: Vec<BulkBlock<'_>> = wanted
            .iter()
            .filter_map(|(br, _)| {
                let p = br.ptr()?;
                let k = br.key / bs;
                Some(BulkBlock {
                    btype: br.btype,
                    ptr: p,
                    slot: data::first_slot(fs, k, p),
                    ctx: ReadCtx::file(ino, br.key),
                })
            })
            .collect();
        let mut contents: Vec<(Blockref, Vec<u8>)> = Vec::with_capacity(wanted.len());
        let mut failed: Option<Error> = None;
        fs.vol.copy_io().read_blocks(&blocks, OnBadCopy::Recover, &mut |i, r| {
            let (br, d) = &wanted[i];
            // Verified stored bytes; a compressed block is decompressed here (Z2).
            let r = r.and_then(|stored| {
                crate::volume::content_of(br, Arc::from(stored), &ReadCtx::file(ino, br.key)).map(|v| v.to_vec())
            });
            match r {
                Ok(bytes) if d.is_some() || codec.is_some_and(|c| compress::compress(c, &bytes).is_some()) => {
                    contents.push((*br, bytes))
                }
                Ok(_) => {}
                Err(e) => failed = failed.take().or(Some(e)),
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if contents.is_empty() {
            return Ok(done);
        }
        // 3. Into the overlay, each only if the file still has that very block there (a
        // write since step 1 already gave it new content, written with the settings).
        {
            let _g = fs.gate.read();
            let mut st = inode.state.write();
            let (n, base_n) = (u64::from(copies), u64::from(fs.vol.params.copies));
            let units_each = (fs.space.data_blocks(1) * n.max(base_n)).div_ceil(base_n);
            for (br, bytes) in contents {
                let k = br.key / bs;
                match data::source(fs, &st, k)? {
                    Source::Committed(now) if now == br => {}
                    _ => continue,
                }
                // S2 as for a write; out of space, the blocks so far are committed and the
                // caller hears ENOSPC (a rerun continues).
                if !fs.space.try_reserve(units_each) {
                    if done.blocks == 0 {
                        return Err(Error::NoSpace);
                    }
                    break;
                }
                st.dirty.reserved += units_each;
                let len = bytes.len() as u64;
                st.dirty.dirty_bytes += len;
                fs.dirty_bytes.fetch_add(len, Ordering::SeqCst);
                st.dirty.data.insert(k, Arc::new(bytes));
                done.blocks += 1;
                done.bytes += len;
            }
            if done.blocks > 0 {
                // Content and times are unchanged: only where the blocks are is new.
                fs.touch(&inode, &mut st);
            }
        }
        if done.blocks > 0 {
            self.sync()?;
        }
        Ok(done)
    }
}
