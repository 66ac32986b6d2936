//! Opening a filesystem for a repair session with a free map rebuilt from the blocks a
//! checker found reachable, instead of the one on disk.
//!
//! Why it exists: fsck makes its tree repairs (link counts, dropped entries, lost+found)
//! through the ordinary commit path, which needs an allocator. Loading the on-disk free map
//! would let a damaged or wrong free map block the very repair that fixes it, so the
//! allocator is built from `used` (the units of every reachable block, per device) and the
//! next commit writes a whole new free-map tree: every leaf is marked dirty and the tree
//! starts empty. The old free-map tree's blocks are released like any block a commit
//! replaces: they stay allocated (and are not reused) until that commit is durable, so a
//! crash during a repair leaves the previous commit intact.
//!
//! What this does not do: mount-time orphan removal and the background committer. The
//! session (`session.rs`) changes in-memory inodes and then commits through `Fs::unmount`.

use super::RepairError;
use crate::alloc::bitmap::Bitmap;
use crate::alloc::{Allocator, DeviceSpace, Extent};
use crate::copies::read::ReadCtx;
use crate::error::{Error, Result};
use crate::fs::{FsInner, Options};
use crate::mount::{Probe, assemble, probe, volume};
use crate::storage::DynStorage;
use crate::tree::Root;
use crate::vnops::Fs;
use crate::walk::{Ctx, TreeKind, Visitor, walk_tree};
use hammer2_format::freemap::leaves_for;
use hammer2_format::layout::{FREEMAP_LEAF_UNITS, SROOT_FREEMAP};
use hammer2_format::{BlockType, Blockref};
use std::collections::HashSet;
use std::sync::Arc;

/// An empty bitmap of the size `open_with_used` expects for a device of `device_size`
/// bytes: one bit per unit of every free-map leaf the device has.
pub fn used_bitmap(device_size: u64) -> Bitmap {
    Bitmap::empty(u64::from(leaves_for(device_size)) * FREEMAP_LEAF_UNITS)
}

/// Opens the filesystem on `storages` (all its devices, any order) with an allocator whose
/// allocated units are exactly `used[d]` for device `d` (plus the units outside every
/// region), and with every free-map leaf marked for writing. `used[d]` must hold at least
/// the units of `used_bitmap(size of device d)`; it must include the blocks of the old
/// free-map tree (they are reachable), which this function then frees for the next commit.
pub(crate) fn open_with_used(storages: Vec<DynStorage>, opts: Options, used: Vec<Bitmap>) -> Result<Fs, RepairError> {
    let probes: Vec<Probe> = storages.into_iter().map(probe).collect();
    let asm = assemble(probes, &opts)?;
    let vol = volume(&asm, &opts);
    let mh = &asm.master;
    if used.len() != vol.devices.len() {
        return Err(RepairError::UsedMaps { maps: used.len(), devices: vol.devices.len() });
    }
    let (mut roots, next_inum) = crate::pfs::load(&vol, mh, &opts.pfs)?;
    let (inodes, orphans) = (roots.inodes.clone(), roots.orphans.clone());
    let old_freemap = Root::from_ref(&mh.sroot[SROOT_FREEMAP]);
    for (what, r) in [("inode", &inodes), ("orphan", &orphans)] {
        if let Some(br) = r.entries.first() {
            vol.read_node(br).map_err(|e| Error::Mount(format!("the {what} tree does not validate: {e}")))?;
        }
    }
    if inodes.is_empty() {
        return Err(Error::Mount(format!("{}: the volume header has no inode tree", asm.master_name)).into());
    }

    let mut devs = Vec::with_capacity(used.len());
    for (m, bits) in vol.devices.iter().zip(used) {
        let need = u64::from(leaves_for(m.size)) * FREEMAP_LEAF_UNITS;
        if bits.units() < need {
            return Err(RepairError::UsedMapTooSmall { device: m.index });
        }
        let mut d = DeviceSpace::new(m.size, m.regions, Some(bits));
        d.dirty_leaves.extend(0..leaves_for(m.size));
        devs.push(d);
    }
    let mut alloc = Allocator::new(devs);
    for e in old_tree_extents(&vol, &old_freemap) {
        alloc.free_if_allocated_inside(e);
    }
    roots.freemap = Root::empty();
    let inner = FsInner::new(vol, alloc, roots, next_inum, opts);
    Ok(Fs { inner: Arc::new(inner), syncer: parking_lot::Mutex::new(None), posix_acl: true.into() })
}

/// Every distinct extent (valid copies) of the blocks of a tree, as far as it can be read.
fn old_tree_extents(vol: &crate::volume::Volume, root: &Root) -> Vec<Extent> {
    struct Collect<'a> {
        vol: &'a crate::volume::Volume,
        seen: HashSet<Extent>,
        out: Vec<Extent>,
    }
    impl Visitor for Collect<'_> {
        fn visit(&mut self, br: &Blockref, _ctx: &Ctx) -> Result<Option<Arc<[u8]>>> {
            let Some(p) = br.ptr() else { return Ok(None) };
            for l in p.copies.iter().filter(|l| l.is_valid()) {
                let e = Extent::from_bytes(l.device, l.offset, u64::from(p.size));
                if self.seen.insert(e) {
                    self.out.push(e);
                }
            }
            if br.btype != BlockType::Indirect {
                return Ok(None);
            }
            // A node that cannot be read hides its children: they are not in `used`
            // either (the checker could not reach them), so there is nothing to free.
            Ok(self.vol.read_block_uncached(br, &ReadCtx::meta()).ok().map(Arc::from))
        }
    }
    let mut c = Collect { vol, seen: HashSet::new(), out: Vec::new() };
    // The visitor never returns an error, so neither does the walk.
    let _ = walk_tree(&root.entries, TreeKind::Freemap, &mut c);
    c.out
}
