//! The free map on disk: a tree keyed by (device, leaf) whose leaves are 16 KiB bitmaps.
//! This half loads it into the allocator's in-memory bitmaps; writing it back is the
//! commit's (`commit/freemap.rs`), which sits above the allocator.

use super::{Allocator, DeviceSpace, bitmap::Bitmap};
use crate::copies::read::ReadCtx;
use crate::error::{Error, Result};
use crate::tree::{self, Root};
use crate::volume::Volume;
use hammer2_format::layout::{FREEMAP_LEAF_SIZE, FREEMAP_LEAF_UNITS, freemap_key_split};
use hammer2_format::{BlockType, freemap::leaves_for};
use std::ops::ControlFlow;

/// Loads every device's bitmap from the free-map tree.
pub fn load(vol: &Volume, root: &Root) -> Result<Vec<DeviceSpace>> {
    let mut maps: Vec<(Bitmap, u32, bool)> = vol
        .devices
        .iter()
        .map(|m| {
            let n = leaves_for(m.size);
            (Bitmap::full(u64::from(n) * FREEMAP_LEAF_UNITS), n, false)
        })
        .collect();
    let mut seen: Vec<Vec<bool>> = maps.iter().map(|(_, n, _)| vec![false; *n as usize]).collect();
    tree::scan(vol, root, 0, &mut |br| {
        let (d, l) = freemap_key_split(br.key);
        if br.btype != BlockType::FreemapLeaf || d as usize >= maps.len() || l >= u64::from(maps[d as usize].1) {
            return Err(Error::Corrupt(format!("free map has an unexpected entry (key {:#x})", br.key)));
        }
        let bytes = vol.read_block_uncached(br, &ReadCtx::meta())?;
        if bytes.len() != FREEMAP_LEAF_SIZE {
            return Err(Error::Corrupt("free-map leaf of the wrong size".into()));
        }
        maps[d as usize].0.load_bytes(l * FREEMAP_LEAF_UNITS, &bytes);
        seen[d as usize][l as usize] = true;
        maps[d as usize].2 = true;
        Ok(ControlFlow::Continue(()))
    })?;
    for (d, s) in seen.iter().enumerate() {
        if let Some(l) = s.iter().position(|x| !x) {
            return Err(Error::Corrupt(format!("free map lacks leaf {l} of device {d}")));
        }
    }
    Ok(vol.devices.iter().zip(maps).map(|(m, (bits, _, _))| DeviceSpace::new(m.size, m.regions, Some(bits))).collect())
}

/// The space of a device added while mounted (`devchange`): all free, every leaf marked
/// for writing, so the commit that adds it puts its whole free map into the tree.
pub fn fresh_device(size: u64, regions: u8) -> DeviceSpace {
    let mut d = DeviceSpace::new(size, regions, None);
    for l in 0..leaves_for(size) {
        d.dirty_leaves.insert(l);
    }
    d
}

/// A fresh allocator for a new filesystem, with every leaf marked for writing.
pub fn fresh(sizes: &[(u64, u8)]) -> Allocator {
    let devs = sizes
        .iter()
        .map(|&(size, regions)| {
            let mut d = DeviceSpace::new(size, regions, None);
            for l in 0..leaves_for(size) {
                d.dirty_leaves.insert(l);
            }
            d
        })
        .collect();
    Allocator::new(devs)
}
