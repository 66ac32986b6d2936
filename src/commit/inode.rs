//! Committing one inode: its flushing overlay is applied to its committed tree (or embedded
//! content), producing a new inode block.

use super::builder::Builder;
use super::writeout::STREAM_MIN_FILE;
use crate::copies::compress::{self, Codec};
use crate::copies::read::ReadCtx;
use crate::error::Result;
use crate::inode::{CommittedInode, Content, Flushing, Leaf};
use crate::tree::modify::{Change, PEntry, PRoot, apply};
use crate::tree::{self, Root};
use hammer2_format::layout::{INODE_EMBED_MAX, INODE_ROOT_ENTRIES, UNIT, XATTR_KEY_BIT};
use hammer2_format::{BlockData, BlockType, Blockref, InodeContent, Payload, dirent, xattr};
use std::ops::ControlFlow;
use std::sync::Arc;

/// What the new tree/content of an inode is, before finalize resolves pending entries.
pub enum PendingContent {
    Embedded(Arc<Vec<u8>>),
    Tree(PRoot),
}

pub struct InodeCommit {
    /// The inode tree change: the new INODE leaf, or Delete.
    pub change: Change,
    /// None when the inode was deleted.
    pub content: Option<PendingContent>,
    pub blocks: u64,
}

/// `codec`: what the mount compresses files without a setting of their own with.
pub fn commit_inode(
    b: &mut Builder,
    inum: u64,
    committed: &CommittedInode,
    fl: &Flushing,
    codec: Option<Codec>,
) -> Result<InodeCommit> {
    if fl.deleted {
        if let Content::Tree(root) = &committed.content {
            b.free_tree(root)?;
        }
        return Ok(InodeCommit { change: Change::Delete, content: None, blocks: 0 });
    }
    let bs = b.vol.params.block_size();
    let codec = compress::effective(fl.meta.policy.compression, fl.meta.policy.zstd_level, codec);
    let copies = b.vol.data_copies(fl.meta.policy.copies);
    let mut changes: Vec<(u64, Change)> = Vec::new();
    for (key, leaf) in &fl.overlay.leaves {
        changes.push((*key, leaf_change(b, *key, leaf.as_ref())?));
    }

    b.released_data = 0;
    let mut written = 0u64;
    let mut committed_blocks = committed.blocks;
    let content = if fl.meta.has_data() {
        let size = fl.meta.size;
        let root = match &committed.content {
            Content::Tree(r) => r.clone(),
            Content::Embedded(_) => Root::empty(),
        };
        if size as usize <= INODE_EMBED_MAX && !has_xattrs(b, &root, fl)? {
            let bytes = block0(b, inum, committed, fl, size as usize)?;
            b.free_tree(&root)?;
            committed_blocks = 0;
            b.released_data = 0;
            PendingContent::Embedded(Arc::new(bytes))
        } else {
            let mut data: std::collections::BTreeMap<u64, Change> = Default::default();
            // The embedded bytes become block 0, unless the overlay rewrote block 0; a
            // truncate since the last commit cut them at its size (bytes past it read zero).
            let keep = |bytes: &[u8]| {
                fl.overlay.trunc.map_or(bytes.len(), |t| bytes.len().min(usize::try_from(t).unwrap_or(usize::MAX)))
            };
            if let Content::Embedded(bytes) = &committed.content
                && keep(bytes) > 0
                && !fl.overlay.data.contains_key(&0)
            {
                let n = keep(bytes);
                let mut buf = bytes[..n].to_vec();
                buf.resize(n.div_ceil(UNIT as usize) * UNIT as usize, 0);
                let len = data_len(bs, size, 0).min(buf.len());
                let packed = codec.and_then(|c| compress::compress(c, &buf[..len]));
                let (e, stored) = b.new_data(0, Arc::new(buf), len, false, packed, copies)?;
                written += stored as u64;
                data.insert(0, Change::Put(e));
            }
            if let Some(t) = fl.overlay.trunc {
                let first = t.div_ceil(bs) * bs;
                tree::scan(b.vol, &root, first, &mut |br| {
                    if br.key >= XATTR_KEY_BIT {
                        return Ok(ControlFlow::Break(()));
                    }
                    data.insert(br.key, Change::Delete);
                    Ok(ControlFlow::Continue(()))
                })?;
            }
            let stream = fl.overlay.dirty_bytes >= STREAM_MIN_FILE;
            let mut puts = Vec::new();
            for (&k, buf) in &fl.overlay.data {
                let key = k * bs;
                if key >= size {
                    continue;
                }
                // A buffer holds the block up to its last written unit; past it, zeros. An
                // empty one is a punched block (invariant P1): deleting it frees every copy.
                let len = data_len(bs, size, key).min(buf.len());
                if len == 0 {
                    data.insert(key, Change::Delete);
                    continue;
                }
                puts.push((key, buf, len));
            }
            // Compressed together (on several threads for a large file), then placed in key
            // order so that a file's blocks stay adjacent on the devices.
            let mut packed = match codec {
                Some(c) => {
                    let contents: Vec<&[u8]> = puts.iter().map(|(_, buf, len)| &buf[..*len]).collect();
                    compress::compress_all(c, &contents)
                }
                None => Vec::new(),
            }
            .into_iter();
            for (key, buf, len) in puts {
                let (e, stored) = b.new_data(key, buf.clone(), len, stream, packed.next().flatten(), copies)?;
                written += stored as u64;
                data.insert(key, Change::Put(e));
            }
            changes.extend(data);
            changes.sort_by_key(|c| c.0);
            PendingContent::Tree(apply(b, PRoot::from(&root), INODE_ROOT_ENTRIES, false, &changes)?)
        }
    } else {
        let root = match &committed.content {
            Content::Tree(r) => r.clone(),
            Content::Embedded(_) => Root::empty(),
        };
        PendingContent::Tree(apply(b, PRoot::from(&root), INODE_ROOT_ENTRIES, false, &changes)?)
    };
    let blocks = (committed_blocks + written).saturating_sub(b.released_data);

    let mut meta = fl.meta.clone();
    meta.blocks = blocks;
    let (block, root) = match &content {
        PendingContent::Embedded(bytes) => (meta.to_block(inum, InodeContent::Embedded(bytes.to_vec())), None),
        PendingContent::Tree(r) => {
            (meta.to_block(inum, InodeContent::Tree { root_level: 0, entries: Vec::new() }), Some(r.clone()))
        }
    };
    let entry = b.new_inode(block, root)?;
    Ok(InodeCommit { change: Change::Put(entry), content: Some(content), blocks })
}

/// Stored length of the data block at `key` of a file of `size` bytes: whole units up to
/// the end of the file, at most one block.
fn data_len(bs: u64, size: u64, key: u64) -> usize {
    (size - key).div_ceil(UNIT).saturating_mul(UNIT).min(bs) as usize
}

fn leaf_change(b: &mut Builder, key: u64, leaf: Option<&Leaf>) -> Result<Change> {
    let tid = b.tid;
    Ok(match leaf {
        None => Change::Delete,
        Some(Leaf::Dirent { name, inum, dtype }) => {
            let payload = Payload::Dirent { inum: *inum, name_len: name.len() as u16, dtype: *dtype };
            match dirent::inline_name(name) {
                Some(inline) => Change::Put(PEntry::Ref(Blockref {
                    btype: BlockType::Dirent,
                    keybits: 0,
                    level: 0,
                    flags: 0,
                    key,
                    modify_tid: tid,
                    mirror_tid: tid,
                    data: BlockData::Inline(inline),
                    payload,
                })),
                None => {
                    let buf = Arc::new(dirent::encode_name_block(name));
                    Change::Put(b.new_bytes(BlockType::Dirent, key, 0, payload, buf, UNIT as usize, false)?)
                }
            }
        }
        Some(Leaf::Xattr { name, value }) => {
            let buf = xattr::encode(name, value);
            let len = buf.len();
            let payload = Payload::Xattr { name_len: name.len() as u16, value_len: value.len() as u32 };
            Change::Put(b.new_bytes(BlockType::Xattr, key, 0, payload, Arc::new(buf), len, false)?)
        }
    })
}

/// Whether the inode will have extended attributes after this commit (such an inode keeps
/// a tree: the embedded form has no room for references).
fn has_xattrs(b: &Builder, root: &Root, fl: &Flushing) -> Result<bool> {
    if fl.overlay.leaves.values().any(|l| matches!(l, Some(Leaf::Xattr { .. }))) {
        return Ok(true);
    }
    let mut found = false;
    tree::scan(b.vol, root, XATTR_KEY_BIT, &mut |br| {
        if !matches!(fl.overlay.leaves.get(&br.key), Some(None)) {
            found = true;
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(found)
}

/// The first `len` bytes of the file as of the flushing state (len <= INODE_EMBED_MAX).
fn block0(b: &Builder, inum: u64, committed: &CommittedInode, fl: &Flushing, len: usize) -> Result<Vec<u8>> {
    if let Some(buf) = fl.overlay.data.get(&0) {
        let mut out = buf[..len.min(buf.len())].to_vec();
        out.resize(len, 0);
        return Ok(out);
    }
    let mut out = vec![0u8; len];
    if fl.overlay.trunc == Some(0) {
        return Ok(out);
    }
    match &committed.content {
        Content::Embedded(bytes) => {
            let n = bytes.len().min(len);
            out[..n].copy_from_slice(&bytes[..n]);
        }
        Content::Tree(root) => {
            if let Some(br) = tree::lookup(b.vol, root, 0)? {
                let data = b.vol.read_data(&br, &ReadCtx::file(inum, 0))?;
                let n = data.len().min(len);
                out[..n].copy_from_slice(&data[..n]);
            }
        }
    }
    Ok(out)
}
