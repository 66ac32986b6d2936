//! Reading the walk's metadata ahead of it.
//!
//! The walk meets metadata blocks one at a time, in key order. On a filesystem of many
//! small files the inode blocks of neighbouring inodes lie close together on disk, but
//! between the files' data, so each one read alone is a random read of its own: the
//! kernel's readahead does not follow a stride. So when the walk learns a node's children
//! (a decoded indirect node, an inode's root entries, a tree's root), the copies of the
//! metadata blocks among them are read here in sorted, merged runs per device (small gaps
//! read through, one thread per device), and held until the walk reaches each block and
//! `read_all` takes its bytes.
//!
//! Only raw bytes are held, never a verdict: `read_all` verifies a copy it takes from here
//! exactly as one it reads itself, so a bad copy is reported as before and never served as
//! good. A copy whose read fails is not held: the walk reads it again when it reaches it,
//! so it gets the error of its own read.
//!
//! Memory: at most `LIMIT` bytes of blocks are held (plus one run's buffer per device while
//! reading); children beyond that are read when reached, as before. Only blocks the walk
//! will read through `read_all` are read ahead (children of a type the walk visits in that
//! tree, with a block, not data: the data pass reads data in its own runs), so whatever is
//! held is taken, and freed, by the end of the walk.

use hammer2::inspect::{CopyRead, TreeKind, Volume, copy_reader, on_each_device, read_runs};
use hammer2::storage::DynStorage;
use hammer2_format::{BlockType, Blockref, Location};
use std::collections::HashMap;

/// Bytes of blocks held at once.
pub const LIMIT: u64 = 64 << 20;

/// Bytes one node's children may claim. Nodes nest (the walk is inside a node of every
/// level at once) and the deepest ones, whose children are read soonest, must still find
/// room while their ancestors' later children are held.
const BATCH: u64 = LIMIT / 4;

/// Copies read ahead, by (device, offset), until the walk takes them.
#[derive(Default)]
pub struct ReadAhead {
    held: HashMap<(u8, u64), Vec<u8>>,
    bytes: u64,
}

/// Whether the walk reads a `btype` child of a node of `tree` through `read_all` (the walk
/// visits indirect nodes and the leaves the tree allows; the visitor reads all but data).
/// What the walk would not visit (a type that does not belong in the tree) must not be
/// held: nothing would take it.
fn read_by_walk(tree: TreeKind, btype: BlockType) -> bool {
    match btype {
        BlockType::Indirect => true,
        // Data is read in the data pass's own runs; an orphan entry has no block.
        BlockType::Data | BlockType::Orphan => false,
        t => tree.holds_leaf(t),
    }
}

impl ReadAhead {
    /// Bytes held now.
    pub fn held_bytes(&self) -> u64 {
        self.bytes
    }

    /// Reads ahead the metadata blocks among `children`, the entries of a node of `tree`
    /// the walk is about to descend into, as far as they fit (in walk order, the next
    /// needed first).
    pub fn children(&mut self, vol: &Volume, tree: TreeKind, children: &[Blockref]) {
        let room = LIMIT.saturating_sub(self.bytes).min(BATCH);
        let mut want: Vec<(u8, u64, u32)> = Vec::new();
        let mut claimed = 0u64;
        for br in children.iter().filter(|b| read_by_walk(tree, b.btype)) {
            let Some(p) = br.ptr() else { continue };
            let before = want.len();
            for l in p.copies.iter().filter(|l| self.wanted(vol, l, p.size)) {
                want.push((l.device, l.offset, p.size));
            }
            let cost = u64::from(p.size) * (want.len() - before) as u64;
            if claimed + cost > room {
                want.truncate(before);
                break;
            }
            claimed += cost;
        }
        if want.is_empty() {
            return;
        }
        want.sort_unstable();
        // Two references to one location (damage, or a shared block) are read once; the
        // first to reach it takes it, the other reads it itself.
        want.dedup_by_key(|w| (w.0, w.1));
        let mut per_dev: Vec<Vec<CopyRead>> = (0..vol.devices.len()).map(|_| Vec::new()).collect();
        for (d, o, s) in want {
            per_dev[usize::from(d)].push(CopyRead { offset: o, size: s, tag: 0 });
        }
        // A reader only reads and copies; should one panic anyway, its blocks are simply
        // read again when the walk reaches them.
        let got: Vec<(u8, Blocks)> = on_each_device(&vol.devices, per_dev, &mut || {}, |_, st, items| {
            st.map(|st| read_device(&st, items)).unwrap_or_default()
        })
        .into_iter()
        .map(|(d, b)| (d, b.unwrap_or_default()))
        .collect();
        for (d, blocks) in got {
            for (o, b) in blocks {
                let len = b.len() as u64;
                if let std::collections::hash_map::Entry::Vacant(e) = self.held.entry((d, o)) {
                    e.insert(b);
                    self.bytes += len;
                }
            }
        }
    }

    /// Whether to read the copy at `l` of a block of `size` bytes ahead: a copy `read_all`
    /// will read (valid, on a readable device), that a run can hold (inside the device: a
    /// copy past its end would fail the whole run), not held already.
    fn wanted(&self, vol: &Volume, l: &Location, size: u32) -> bool {
        l.is_valid()
            && copy_reader(vol).readable(l).is_ok_and(|s| l.offset.saturating_add(u64::from(size)) <= s.size())
            && !self.held.contains_key(&(l.device, l.offset))
    }

    /// The bytes read ahead for the copy at `loc` of a block of `size` bytes, unverified.
    pub fn take(&mut self, loc: &Location, size: u32) -> Option<Vec<u8>> {
        let b = self.held.remove(&(loc.device, loc.offset))?;
        self.bytes -= b.len() as u64;
        // Held for another reference to this place, of another size: those bytes are not
        // this block, whose reader reads it itself.
        (b.len() == size as usize).then_some(b)
    }
}

/// (offset, bytes) of the blocks read on one device.
type Blocks = Vec<(u64, Vec<u8>)>;

/// Reads the extents of one device in the engine's merged runs; returns the bytes of each
/// extent read (an extent whose read fails is not held: see the module comment).
fn read_device(storage: &DynStorage, mut want: Vec<CopyRead>) -> Blocks {
    let mut out = Vec::with_capacity(want.len());
    read_runs(&**storage, &mut want, None, &|| false, &mut |it, r| {
        if let Ok(b) = r {
            out.push((it.offset, b.to_vec()));
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hammer2::storage::mem::MemStorage;
    use hammer2_format::blockref::Copies;
    use hammer2_format::{BlockData, BlockPtr, CheckMethod, Payload};
    use std::sync::Arc;

    const DEV: u64 = 192 << 20;
    const BLOCK: u32 = 4096;

    fn volume() -> (Volume, DynStorage) {
        let st: DynStorage = Arc::new(MemStorage::new(DEV, "mem"));
        hammer2::format::format(vec![st.clone()], &Default::default()).expect("format");
        let (asm, _) = crate::headers::assemble_devices(std::slice::from_ref(&st)).expect("assemble");
        let vol = hammer2::inspect::volume(&asm, &hammer2::Options { read_only: true, ..Default::default() });
        (vol, st)
    }

    fn block_ref(btype: BlockType, offset: u64, size: u32, content: &[u8]) -> Blockref {
        let copies: Copies = [Location::valid(0, offset)].into_iter().collect();
        let check = CheckMethod::Crc32c.compute(content);
        Blockref {
            btype,
            data: BlockData::Block(BlockPtr { size, check, copies }),
            payload: Payload::None,
            ..Blockref::EMPTY
        }
    }

    /// `n` inode references at consecutive blocks from `from`.
    fn inodes(from: u64, n: u64) -> Vec<Blockref> {
        (0..n).map(|i| block_ref(BlockType::Inode, from + i * u64::from(BLOCK), BLOCK, &[])).collect()
    }

    #[test]
    fn what_is_held_stays_bounded_whatever_the_nodes_hold() {
        let (vol, _) = volume();
        let mut ra = ReadAhead::default();
        // One node's children beyond a batch: the first ones are held, the rest are not.
        let many = inodes(32 << 20, (2 * BATCH) / u64::from(BLOCK));
        ra.children(&vol, TreeKind::Inodes, &many);
        assert_eq!(ra.held_bytes(), BATCH);
        assert!(ra.take(&many[0].ptr().expect("ptr").copies.as_slice()[0], BLOCK).is_some());
        let last = many.last().expect("children");
        assert!(ra.take(&last.ptr().expect("ptr").copies.as_slice()[0], BLOCK).is_none(), "past the batch");
        // Nested nodes whose children are never taken: never more than LIMIT.
        for k in 0..8u64 {
            ra.children(&vol, TreeKind::Inodes, &inodes((64 << 20) + k * BATCH, BATCH / u64::from(BLOCK)));
            assert!(ra.held_bytes() <= LIMIT, "{} bytes held", ra.held_bytes());
        }
        assert!(ra.held_bytes() > LIMIT - BATCH);
    }

    #[test]
    fn only_blocks_the_walk_reads_are_held() {
        let (vol, _) = volume();
        let mut ra = ReadAhead::default();
        // Inode blocks do not belong in an inode's tree, data is the data pass's, and a
        // copy past the end of the device cannot be read.
        let refs = [
            block_ref(BlockType::Inode, 32 << 20, BLOCK, &[]),
            block_ref(BlockType::Data, 33 << 20, BLOCK, &[]),
            block_ref(BlockType::Xattr, DEV - u64::from(BLOCK) / 2, BLOCK, &[]),
        ];
        ra.children(&vol, TreeKind::Inode(7), &refs);
        assert_eq!(ra.held_bytes(), 0);
        ra.children(&vol, TreeKind::Inode(7), &[block_ref(BlockType::Dirent, 34 << 20, BLOCK, &[])]);
        assert_eq!(ra.held_bytes(), u64::from(BLOCK));
    }

    #[test]
    fn a_copy_is_handed_over_as_read_unverified_once_and_only_at_its_size() {
        let (vol, st) = volume();
        let good = vec![7u8; BLOCK as usize];
        let on_disk = vec![0x5au8; BLOCK as usize];
        st.write_at(&on_disk, 40 << 20).expect("write");
        // The reference's check value is that of other bytes: holding them is not vouching
        // for them (read_all verifies what it takes).
        let br = block_ref(BlockType::Inode, 40 << 20, BLOCK, &good);
        let p = *br.ptr().expect("ptr");
        assert!(!p.check.verify(&on_disk));
        let mut ra = ReadAhead::default();
        ra.children(&vol, TreeKind::Inodes, &[br]);
        let loc = p.copies.as_slice()[0];
        assert_eq!(ra.take(&loc, BLOCK), Some(on_disk));
        assert_eq!(ra.take(&loc, BLOCK), None, "taken once");
        ra.children(&vol, TreeKind::Inodes, &[br]);
        assert_eq!(ra.take(&loc, BLOCK / 2), None, "another size at the same place");
        assert_eq!(ra.held_bytes(), 0);
    }
}
