//! The check value of a whole tree (SR10): what the end record carries and what the
//! receiver computes over the tree it made, so a received snapshot that differs from the
//! sender's in anything the stream carries (a file changed in the mirror between two
//! receives, a record applied wrong) is refused instead of kept.
//!
//! The value of a PFS tree is a sum, lane-wise modulo 2^64 over four u64 lanes, of one
//! blake3 per *item*: each inode with links (its attributes but atime, which reading the
//! mirror moves), each directory entry, each extended attribute, and each data block with
//! content (its bytes up to the file's size, trailing zeros dropped: a block of zeros and a
//! hole are the same, and neither side's block size, units or compression show). A sum,
//! not a hash of a walk, because it can be moved by differences: both sides compute only
//! `value(snapshot) - value(base)` from the subtrees born after the base (the walk of
//! `diff.rs`, SR2), adding the items born after it and subtracting the base's items they
//! replace or that are gone. So the check costs what the change costs, on both sides, and
//! needs no value stored anywhere: the receiver's base is the snapshot it verified when it
//! received it, by induction from the full stream (whose base is the empty tree, value 0).
//!
//! The sum is a check against accidents and bugs (every item's hash is 256 bits, and a
//! difference in one item changes the sum), not against someone forging a stream: the
//! stream's own blake3 (SR1) is what binds the bytes received to the bytes sent.

use super::diff::{Diff, diff};
use crate::copies::read::ReadCtx;
use crate::error::{Error, Result};
use crate::fs::FsInner;
use crate::inode::Leaf;
use crate::tree::{self, Root};
use hammer2_format::{BlockType, Blockref, InodeBlock, InodeContent};

/// A sum of item hashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sum([u64; 4]);

impl Sum {
    fn add(&mut self, h: &blake3::Hash) {
        for (lane, chunk) in self.0.iter_mut().zip(h.as_bytes().chunks_exact(8)) {
            *lane = lane.wrapping_add(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        }
    }

    fn sub(&mut self, h: &blake3::Hash) {
        for (lane, chunk) in self.0.iter_mut().zip(h.as_bytes().chunks_exact(8)) {
            *lane = lane.wrapping_sub(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        }
    }

    fn bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (o, lane) in out.chunks_exact_mut(8).zip(self.0) {
            o.copy_from_slice(&lane.to_le_bytes());
        }
        out
    }
}

/// The hash of an inode's attributes (all the stream carries but atime and the per-file
/// settings, which a receiver may lower).
fn attrs(b: &InodeBlock) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"inode");
    for v in
        [b.inum, u64::from(b.mode), u64::from(b.uid), u64::from(b.gid), u64::from(b.nlink), b.size, b.rdev, b.parent]
    {
        h.update(&v.to_le_bytes());
    }
    for t in [b.mtime, b.ctime, b.btime] {
        h.update(&t.sec.to_le_bytes());
        h.update(&t.nsec.to_le_bytes());
    }
    h.finalize()
}

/// The hash of a data block's content at `offset` of a file of `size` bytes; None for a
/// block that reads as zeros (the same as a hole).
fn data(inum: u64, offset: u64, size: u64, bytes: &[u8]) -> Option<blake3::Hash> {
    let within = &bytes[..(size.saturating_sub(offset).min(bytes.len() as u64)) as usize];
    let end = within.iter().rposition(|&b| b != 0)? + 1;
    let mut h = blake3::Hasher::new();
    h.update(b"data");
    h.update(&inum.to_le_bytes());
    h.update(&offset.to_le_bytes());
    h.update(&within[..end]);
    Some(h.finalize())
}

fn leaf(inum: u64, key: u64, l: &Leaf) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    match l {
        Leaf::Dirent { name, inum: child, dtype } => {
            h.update(b"dirent");
            h.update(&inum.to_le_bytes());
            h.update(&key.to_le_bytes());
            h.update(&child.to_le_bytes());
            h.update(&[*dtype]);
            h.update(&(name.len() as u64).to_le_bytes());
            h.update(name);
        }
        Leaf::Xattr { name, value } => {
            h.update(b"xattr");
            h.update(&inum.to_le_bytes());
            h.update(&key.to_le_bytes());
            h.update(&(name.len() as u64).to_le_bytes());
            h.update(name);
            h.update(value);
        }
    }
    h.finalize()
}

fn inode_block(fs: &FsInner, br: &Blockref) -> Result<InodeBlock> {
    super::sender::inode_block(fs, br)
}

/// The hash of leaf `br` of inode `b`'s tree (None: a data block of zeros).
fn leaf_hash(fs: &FsInner, b: &InodeBlock, br: &Blockref) -> Result<Option<blake3::Hash>> {
    match br.btype {
        BlockType::Data => {
            let bytes = fs.vol.read_data(br, &ReadCtx::file(b.inum, br.key))?;
            Ok(data(b.inum, br.key, b.size, &bytes))
        }
        BlockType::Dirent | BlockType::Xattr => {
            Ok(Some(leaf(b.inum, br.key, &crate::vnops::dirent::leaf_of(fs, b.inum, br)?)))
        }
        t => Err(Error::Corrupt(format!("a {} entry in the tree of inode {}", t.name(), b.inum))),
    }
}

/// The items of inode `b` that live in its inode block: its attributes and embedded
/// content (block 0 to the stream).
fn own(sum: &mut Sum, b: &InodeBlock, sign: bool) {
    let mut put = |h: &blake3::Hash| if sign { sum.add(h) } else { sum.sub(h) };
    put(&attrs(b));
    if let InodeContent::Embedded(bytes) = &b.content
        && let Some(h) = data(b.inum, 0, b.size, bytes)
    {
        put(&h);
    }
}

fn content_root(b: &InodeBlock) -> Root {
    super::sender::content_root(b)
}

/// Adds (or subtracts) every item of inode `b`.
fn whole(fs: &FsInner, sum: &mut Sum, b: &InodeBlock, sign: bool) -> Result<()> {
    if b.nlink == 0 {
        // An orphan (open when unlinked) is not part of the tree a user sees, nor sent.
        return Ok(());
    }
    own(sum, b, sign);
    let Diff { changed, .. } = diff(&fs.vol, &content_root(b), &Root::empty(), 0)?;
    for br in &changed {
        if let Some(h) = leaf_hash(fs, b, br)? {
            if sign { sum.add(&h) } else { sum.sub(&h) }
        }
    }
    Ok(())
}

/// Inodes whose items are hashed on parallel threads: the reads are mostly waits for the
/// devices (a full tree is read back whole), and the sum does not care about order.
const THREADS: usize = 4;

/// `value(new) - value(old)`, where `old` is the index of the same lineage as of
/// `base_tid` (0 and an empty root: the value of `new`). Reads what changed after the base
/// and the base's items it replaced.
pub(super) fn delta(fs: &FsInner, new: &Root, old: &Root, base_tid: u64) -> Result<[u8; 32]> {
    let inodes = diff(&fs.vol, new, old, base_tid)?;
    let mut sum = Sum::default();
    for br in &inodes.removed {
        whole(fs, &mut sum, &inode_block(fs, br)?, false)?;
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || -> Result<Sum> {
        let mut part = Sum::default();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(br) = inodes.changed.get(i) else { return Ok(part) };
            changed_inode(fs, &mut part, br, old, base_tid)?;
        }
    };
    let threads = THREADS.min(inodes.changed.len() / 16).max(1);
    let parts: Vec<Result<Sum>> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut parts = vec![work()];
        parts.extend(
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(Error::Corrupt("a tree check thread panicked".into())))),
        );
        parts
    });
    for p in parts {
        let p = p?;
        for (lane, v) in sum.0.iter_mut().zip(p.0) {
            *lane = lane.wrapping_add(v);
        }
    }
    Ok(sum.bytes())
}

/// The difference inode `br` of the newer index makes (born after the base).
fn changed_inode(fs: &FsInner, sum: &mut Sum, br: &Blockref, old: &Root, base_tid: u64) -> Result<()> {
    let nb = inode_block(fs, br)?;
    let ob = match base_tid {
        0 => None,
        _ => tree::lookup(&fs.vol, old, br.key)?.map(|o| inode_block(fs, &o)).transpose()?,
    };
    match ob {
        Some(ob) if ob.nlink > 0 && nb.nlink > 0 => {
            own(sum, &nb, true);
            own(sum, &ob, false);
            let (nroot, oroot) = (content_root(&nb), content_root(&ob));
            let Diff { changed, removed } = diff(&fs.vol, &nroot, &oroot, base_tid)?;
            for l in &changed {
                if let Some(h) = leaf_hash(fs, &nb, l)? {
                    sum.add(&h);
                }
                if let Some(o) = tree::lookup(&fs.vol, &oroot, l.key)?
                    && let Some(h) = leaf_hash(fs, &ob, &o)?
                {
                    sum.sub(&h);
                }
            }
            for o in &removed {
                if let Some(h) = leaf_hash(fs, &ob, o)? {
                    sum.sub(&h);
                }
            }
        }
        ob => {
            whole(fs, sum, &nb, true)?;
            if let Some(ob) = ob {
                whole(fs, sum, &ob, false)?;
            }
        }
    }
    Ok(())
}
