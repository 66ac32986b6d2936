//! How much file data a filesystem holds as written (logical) and as stored (one copy, and
//! every copy), and by copy count: the compression and copies figures of `hammer2 info`. One walk over the metadata of
//! every PFS (nodes and inode blocks, through the block cache), never over the data.

use crate::error::Result;
use crate::fs::FsInner;
use hammer2_format::BlockType;

/// File data by its size as written and as stored (FORMAT.md "Compression").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DataUsage {
    /// DATA blocks.
    pub blocks: u64,
    /// Of them, stored compressed.
    pub compressed_blocks: u64,
    /// Bytes of the blocks' content (what reads return, up to each block's end).
    pub logical_bytes: u64,
    /// Bytes stored, one copy (what `st_blocks` counts).
    pub stored_bytes: u64,
    /// Bytes stored, every valid copy.
    pub physical_bytes: u64,
    /// By the number of copies a block has (index n - 1; VC2): (blocks, stored bytes of
    /// one copy).
    pub by_copies: [(u64, u64); 4],
}

impl DataUsage {
    /// Logical bytes per stored byte (1.0 without data).
    pub fn ratio(&self) -> f64 {
        if self.stored_bytes == 0 { 1.0 } else { self.logical_bytes as f64 / self.stored_bytes as f64 }
    }
}

/// The data usage of the committed state of `fs` (every PFS).
pub fn data_usage(fs: &FsInner) -> Result<DataUsage> {
    let mut u = DataUsage::default();
    crate::walk::each_reference(fs, |br| {
        let Some(p) = br.ptr().filter(|_| br.btype == BlockType::Data) else { return };
        u.blocks += 1;
        u.compressed_blocks += u64::from(br.compression().is_some());
        u.logical_bytes += u64::from(br.logical_size());
        u.stored_bytes += u64::from(p.size);
        u.physical_bytes += u64::from(p.size) * p.copies.iter().filter(|l| l.is_valid()).count() as u64;
        if let Some(c) = u.by_copies.get_mut(p.copies.len().saturating_sub(1)) {
            c.0 += 1;
            c.1 += u64::from(p.size);
        }
    })?;
    Ok(u)
}
