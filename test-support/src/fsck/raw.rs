//! The trees of an image read directly with the format crate (no engine), for finding a
//! block's copies and damaging it precisely. `reseal` rewrites a block *and* the check
//! values above it up to the volume headers, so damage can get past the check values
//! (what a buggy writer would leave behind), not only be caught by them.

use hammer2_format::layout::{
    HEADER_SIZE, HEADER_SLOTS, SROOT_FREEMAP, SROOT_INODES, SROOT_ORPHANS, SROOT_PFS_TABLE, feature, header_offset,
};
use hammer2_format::pfs::off as pfs_off;
use hammer2_format::{BlockType, Blockref, InodeBlock, InodeContent, PfsRecord, VolumeHeader, indirect};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    Inodes,
    Freemap,
    Orphans,
    /// Format version 2: the PFS table (its records lead to the inode index and orphans).
    PfsTable,
    Inode(u64),
}

/// Where a reference is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// Root reference `n` of the volume header.
    Header(usize),
    /// Slot `slot` of the block of node `idx` (an indirect block, or an inode's blockset).
    Block { idx: usize, slot: usize },
    /// The root at byte `offset` of the PFS record of node `idx` (format version 2).
    Record { idx: usize, offset: usize },
}

#[derive(Debug, Clone)]
pub struct Node {
    pub br: Blockref,
    pub tree: Tree,
    pub parent: Parent,
}

pub struct Raw {
    pub paths: Vec<PathBuf>,
    files: Vec<std::fs::File>,
    pub header: VolumeHeader,
}

impl Raw {
    pub fn open(paths: &[PathBuf]) -> Raw {
        let files: Vec<std::fs::File> = paths
            .iter()
            .map(|p| std::fs::OpenOptions::new().read(true).write(true).open(p).expect("open image"))
            .collect();
        let header =
            files.iter().filter_map(|f| newest_of(f).map(|x| x.1)).max_by_key(|h| h.tid).expect("a valid header");
        Raw { paths: paths.to_vec(), files, header }
    }

    /// The newest valid header of device `d`: (slot, header).
    pub fn newest(&self, d: usize) -> Option<(usize, VolumeHeader)> {
        newest_of(&self.files[d])
    }

    pub fn read_at(&self, device: u8, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.files[usize::from(device)].read_exact_at(&mut buf, offset).expect("read");
        buf
    }

    pub fn write_at(&self, device: u8, offset: u64, bytes: &[u8]) {
        let f = &self.files[usize::from(device)];
        f.write_all_at(bytes, offset).expect("write");
        f.sync_all().expect("sync");
    }

    /// The content of a block (its first copy that verifies, else its first copy).
    pub fn block(&self, br: &Blockref) -> Vec<u8> {
        let p = br.ptr().expect("a block");
        let copies: Vec<Vec<u8>> = p
            .copies
            .iter()
            .filter(|l| l.is_valid())
            .map(|l| self.read_at(l.device, l.offset, p.size as usize))
            .collect();
        let first = copies.first().cloned().expect("a valid copy");
        copies.into_iter().find(|c| p.check.verify(c)).unwrap_or(first)
    }

    /// Every reference of every tree, parents before children.
    pub fn walk(&self) -> Vec<Node> {
        let mut out = Vec::new();
        let roots = if self.header.has_feature(feature::PFS_TABLE) {
            vec![(SROOT_FREEMAP, Tree::Freemap), (SROOT_PFS_TABLE, Tree::PfsTable)]
        } else {
            vec![(SROOT_INODES, Tree::Inodes), (SROOT_FREEMAP, Tree::Freemap), (SROOT_ORPHANS, Tree::Orphans)]
        };
        for (r, tree) in roots {
            let br = self.header.sroot[r];
            if !br.is_empty() {
                self.walk_ref(br, tree, Parent::Header(r), &mut out);
            }
        }
        out
    }

    fn walk_ref(&self, br: Blockref, tree: Tree, parent: Parent, out: &mut Vec<Node>) {
        let idx = out.len();
        out.push(Node { br, tree, parent });
        match br.btype {
            BlockType::Indirect => {
                let entries = indirect::decode(&self.block(&br), br.level).expect("indirect");
                for (slot, e) in entries.into_iter().enumerate() {
                    self.walk_ref(e, tree, Parent::Block { idx, slot }, out);
                }
            }
            BlockType::Pfs => {
                let rec = PfsRecord::decode(&self.block(&br)).expect("pfs record");
                for (offset, root, tree) in [
                    (pfs_off::INODE_ROOT, rec.inode_root, Tree::Inodes),
                    (pfs_off::ORPHAN_ROOT, rec.orphan_root, Tree::Orphans),
                ] {
                    if !root.is_empty() {
                        self.walk_ref(root, tree, Parent::Record { idx, offset }, out);
                    }
                }
            }
            BlockType::Inode => {
                let ino = InodeBlock::decode(&self.block(&br)).expect("inode");
                if let InodeContent::Tree { entries, .. } = ino.content {
                    for (slot, e) in entries.into_iter().enumerate() {
                        self.walk_ref(e, Tree::Inode(ino.inum), Parent::Block { idx, slot }, out);
                    }
                }
            }
            _ => {}
        }
    }

    /// Writes `bytes` over every valid copy of node `idx`, recomputes its check value and
    /// reseals every reference above it up to the volume headers.
    pub fn reseal(&mut self, nodes: &mut [Node], idx: usize, bytes: &[u8]) {
        let mut br = nodes[idx].br;
        let method = self.header.check;
        let p = br.ptr_mut().expect("a block");
        assert_eq!(bytes.len(), p.size as usize, "reseal keeps the block size");
        for l in p.copies.iter().filter(|l| l.is_valid()) {
            self.write_at(l.device, l.offset, bytes);
        }
        p.check = method.compute(bytes);
        self.set_ref(nodes, idx, br);
    }

    /// Replaces the reference of node `idx` where it is stored (resealing above it).
    pub fn set_ref(&mut self, nodes: &mut [Node], idx: usize, br: Blockref) {
        nodes[idx].br = br;
        match nodes[idx].parent {
            Parent::Header(r) => {
                self.header.sroot[r] = br;
                for d in 0..self.files.len() {
                    let Some((slot, mut h)) = self.newest(d) else { continue };
                    h.sroot[r] = br;
                    self.write_at(d as u8, header_offset(slot), &h.encode());
                }
            }
            Parent::Block { idx: p, slot } => {
                let parent = nodes[p].br;
                let mut bytes = self.block(&parent);
                let off = if parent.btype == BlockType::Inode { 256 } else { 0 } + slot * 128;
                br.encode_into(&mut bytes[off..]);
                self.reseal(nodes, p, &bytes);
            }
            Parent::Record { idx: p, offset } => {
                let parent = nodes[p].br;
                let mut bytes = self.block(&parent);
                br.encode_into(&mut bytes[offset..]);
                let crc = crc32c::crc32c(&bytes[..pfs_off::CRC]);
                bytes[pfs_off::CRC..].copy_from_slice(&crc.to_le_bytes());
                self.reseal(nodes, p, &bytes);
            }
        }
    }

    /// Rewrites the header of every device through `f` (with a valid check code).
    pub fn edit_headers(&mut self, f: impl Fn(&mut VolumeHeader)) {
        for d in 0..self.files.len() {
            let Some((slot, mut h)) = self.newest(d) else { continue };
            f(&mut h);
            self.write_at(d as u8, header_offset(slot), &h.encode());
        }
        self.header =
            (0..self.files.len()).filter_map(|d| self.newest(d).map(|x| x.1)).max_by_key(|h| h.tid).expect("header");
    }
}

fn newest_of(f: &std::fs::File) -> Option<(usize, VolumeHeader)> {
    (0..HEADER_SLOTS)
        .filter_map(|s| {
            let mut buf = vec![0u8; HEADER_SIZE];
            f.read_exact_at(&mut buf, header_offset(s)).ok()?;
            VolumeHeader::decode(&buf).ok().map(|h| (s, h))
        })
        .max_by_key(|(_, h)| h.tid)
}

/// Index of the first node matching.
pub fn find(nodes: &[Node], f: impl Fn(&Node) -> bool) -> usize {
    nodes.iter().position(f).expect("no such block in the image")
}
