//! What the check accumulates while it walks, and the walk itself (`scan.rs` is the
//! visitor; this drives it over every tree, then verifies the last data batch).

use crate::blocks::{DataQueue, IoStats};
use crate::copies::CopiesCheck;
use crate::namespace::Namespace;
use crate::progress::Progress;
use crate::report::{Counts, FindingId, Findings, Problem, Repair};
use crate::space::{Geometry, Space};
use crate::structure::Shape;
use crate::{FsckError, Options, display_name, first_owners, report, scan, structure};
use hammer2::inspect::{Assembly, Volume};
use hammer2_format::VolumeHeader;
use hammer2_format::blockref::BlockPtr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A bad copy to rewrite from a good one.
#[derive(Debug, Clone)]
pub struct HealJob {
    pub ptr: BlockPtr,
    pub slot: usize,
    pub finding: FindingId,
}

/// Bad copies remembered for one run; beyond this they are reported but left for the next
/// run (a whole bad device of a huge filesystem must not exhaust memory).
const MAX_HEAL_JOBS: usize = 1 << 20;

/// One PFS's namespace, as the walk recorded it (version 2: every record of the table).
#[derive(Default)]
pub struct PfsNamespace {
    pub name: String,
    /// A snapshot is read-only history: fsck reports its namespace and never changes it
    /// (FK1 in docs/DESIGN.md).
    pub snapshot: bool,
    /// A receive is being applied to it (its record holds a resume token): its names are
    /// partly applied (a directory may name an inode a later part brings), so they are
    /// checked once the receive completes, and never repaired meanwhile (SR11).
    pub receiving: bool,
    pub next_inum: u64,
    pub ns: Namespace,
}

/// Everything the check accumulates.
pub struct Checker<'v> {
    pub vol: &'v Volume,
    pub master: VolumeHeader,
    pub geo: Vec<Geometry>,
    pub opts: Options,
    pub findings: Findings,
    pub ns: Namespace,
    pub space: Space,
    pub shape: Shape,
    pub copies: CopiesCheck,
    pub data: DataQueue,
    pub io: IoStats,
    pub heals: Vec<HealJob>,
    pub counts: Counts,
    pub cancel: Arc<AtomicBool>,
    pub progress: Progress,
    /// Shared-block findings: (device, offset, size, finding), for the owner pass.
    pub shared_findings: Vec<(u8, u64, u32, FindingId)>,
    /// Findings about free-map blocks that cannot be used (a rebuild resolves them).
    pub freemap_damage: Vec<FindingId>,
    /// Locations of the tree nodes descended into (each is descended into once).
    pub descended: std::collections::HashSet<(u8, u64)>,
    pub notes: Vec<String>,
    /// ROOT's PFS has a receive in progress (`PfsNamespace::receiving`).
    pub root_receiving: bool,
    /// References that need a feature bit (FK3, FK4).
    pub features: crate::features::FeatureUse,
    /// Version 2: the PFS records seen, by name (names are unique in the table).
    pub pfs_names: std::collections::HashSet<String>,
    /// Version 2: the inode counter of the served PFS ROOT (the header's is 0).
    pub pfs_next_inum: Option<u64>,
    /// `SHARED_BLOCKS`: a reference naming a location seen before is the same block when
    /// its identity (size, check value, birth) is the same (SN4 in docs/DESIGN.md).
    pub shared_ok: bool,
    /// The identity hash of the block at each (device, offset) seen, with `shared_ok`.
    pub identity: std::collections::HashMap<(u8, u64), u64>,
    /// The PFS whose trees the walk is in: `ns` is its namespace (taken in `ns` when the
    /// walk reaches the next record).
    pub current_pfs: Option<PfsNamespace>,
    /// The namespaces of the PFSs walked before the current one; after the walk, of every
    /// PFS but ROOT (whose namespace is `ns`).
    pub pfs_namespaces: Vec<PfsNamespace>,
    /// With `shared_ok`: what each inode block told the namespace (its inode, the entries
    /// of its directory), by the location of its first copy, so that another PFS sharing
    /// the block takes the same facts without reading its tree again.
    pub inode_facts: std::collections::HashMap<(u8, u64), (crate::namespace::InodeInfo, Vec<crate::namespace::Entry>)>,
    /// The inode block whose tree the walk is in: (its location, inode number, index of
    /// its first entry in `ns.entries`).
    pub open_inode: Option<((u8, u64), u64, usize)>,
}

impl<'v> Checker<'v> {
    pub(crate) fn new(vol: &'v Volume, asm: &Assembly, opts: &Options) -> Checker<'v> {
        let mh = &asm.master;
        let geo: Vec<Geometry> = mh
            .devices
            .iter()
            .enumerate()
            .map(|(i, e)| Geometry {
                index: i as u8,
                name: asm.members.get(i).map_or_else(|| format!("device {i}"), |m| display_name(&m.1, i)),
                size: e.size,
                regions: e.regions,
                recorded_free: e.free_units,
            })
            .collect();
        let leaves: Vec<u64> = geo.iter().map(Geometry::leaves).collect();
        let allocated: u64 = mh
            .devices
            .iter()
            .zip(&geo)
            .map(|(e, g)| {
                let inside: u64 = (0..g.regions)
                    .map(|k| {
                        let (s, e) = hammer2_format::layout::region_bounds(g.size, g.regions, k);
                        (e - s) / hammer2_format::UNIT
                    })
                    .sum();
                inside.saturating_sub(e.free_units).saturating_mul(hammer2_format::UNIT)
            })
            .sum();
        Checker {
            vol,
            master: mh.clone(),
            shape: Shape::new(mh.data_block_shift, mh.indirect_block_shift, mh.tid, leaves),
            copies: CopiesCheck::new(
                mh.copies,
                geo.len(),
                mh.has_feature(hammer2_format::layout::feature::FREE_PLACEMENT),
                &mh.devices
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.state == hammer2_format::DeviceState::Removed)
                    .map(|(i, _)| i)
                    .collect::<Vec<_>>(),
            )
            .with_variable(mh.has_feature(hammer2_format::layout::feature::VARIABLE_COPIES)),
            geo,
            opts: opts.clone(),
            findings: Findings::default(),
            ns: Namespace::default(),
            space: Space::default(),
            data: DataQueue::default(),
            io: IoStats::default(),
            heals: Vec::new(),
            counts: Counts::default(),
            cancel: opts.cancel.clone(),
            progress: Progress::new(opts.progress, allocated),
            shared_findings: Vec::new(),
            pfs_names: Default::default(),
            pfs_next_inum: None,
            shared_ok: mh.has_feature(hammer2_format::layout::feature::SHARED_BLOCKS),
            identity: Default::default(),
            current_pfs: None,
            pfs_namespaces: Vec::new(),
            inode_facts: Default::default(),
            open_inode: None,
            freemap_damage: Vec::new(),
            descended: Default::default(),
            notes: Vec::new(),
            root_receiving: false,
            features: Default::default(),
        }
    }

    pub fn heal_job(&mut self, job: HealJob) {
        if self.heals.len() < MAX_HEAL_JOBS {
            self.heals.push(job);
        } else {
            self.findings
                .set(job.finding, Repair::Failed { why: "too many bad copies for one run: run fsck again".into() });
        }
    }

    pub fn queue_data(&mut self, ptr: BlockPtr, inum: u64, key: u64, tail: Option<u32>) {
        if !self.opts.verify_data {
            return;
        }
        self.data.push(ptr, inum, key, tail);
        if self.data.is_full() {
            self.verify_data();
        }
    }

    pub(crate) fn verify_data(&mut self) {
        let vol = self.vol;
        let io = &self.io;
        let progress = &mut self.progress;
        let (problems, tails) = self.data.verify(vol, io, &self.cancel, &mut || progress.tick(io));
        scan::data_findings(self, problems);
        for (inum, key) in tails {
            self.ns.dirty_tail(inum, key);
        }
    }

    /// The walk over every tree, then the last data batch.
    pub(crate) fn walk(&mut self) -> Result<(), FsckError> {
        let mh = &self.master;
        // Version 1: the header's inode index, free map and orphan list; version 2: the
        // free map and the PFS table, whose records the walk follows to every PFS's trees.
        let roots = hammer2::inspect::header_roots(mh);
        if roots.pfs.is_none() && roots.inodes.is_empty() {
            let id = self.findings.add(Problem::NoRoot { why: "the volume header has no inode index".into() });
            self.findings.set(id, Repair::Unrepairable { why: "fsck does not rebuild the inode index".into() });
        }
        for (_, entries) in hammer2::inspect::filesystem_roots(&roots) {
            // A header root is the top of its tree: nothing above it needs a DEGRADED flag.
            let issues = self.shape.root_entries(entries, mh.tid, true);
            for i in issues {
                if let structure::Issue::Shape(why) = i {
                    let at = report::BlockAt { block: "indirect", tree: "header", key: 0, inum: None, path: None };
                    let id = self.findings.add(Problem::Structure { at, why });
                    self.findings.set(id, Repair::Unrepairable { why: "fsck does not rewrite tree nodes".into() });
                }
            }
        }
        self.progress.phase("metadata");
        let r = {
            let mut v = scan::Scan::new(self);
            for (tree, entries) in hammer2::inspect::filesystem_roots(&roots) {
                v.read_ahead(tree, entries);
            }
            hammer2::inspect::walk_every_reference(&roots, &mut v)
        };
        // The last PFS's data blocks, while its namespace is `ns` (`Scan::pfs` does the same
        // for each PFS before the next).
        if r.is_ok() && !self.cancel.load(Ordering::Relaxed) {
            self.progress.phase("data");
            self.verify_data();
        }
        self.findings.pfs = None;
        if let Some(mut p) = self.current_pfs.take() {
            p.ns = std::mem::take(&mut self.ns);
            self.pfs_namespaces.push(p);
        }
        // ROOT's namespace is `ns` (version 1 has no other); every other PFS's is in
        // `pfs_namespaces`, analyzed and repaired in `run_once`.
        if let Some(i) = self.pfs_namespaces.iter().position(|p| p.name == hammer2_format::layout::ROOT_PFS_NAME) {
            let p = self.pfs_namespaces.remove(i);
            self.root_receiving = p.receiving;
            self.ns = p.ns;
        }
        if r.is_err() || self.cancel.load(Ordering::Relaxed) {
            return Err(FsckError::Cancelled);
        }
        if self.cancel.load(Ordering::Relaxed) {
            return Err(FsckError::Cancelled);
        }
        if !self.shared_findings.is_empty() {
            first_owners::find_first_owners(self, &roots);
        }
        Ok(())
    }
}
