//! The copies' state: which copies are MISSING on which device (a device that was away
//! and has not been resynced), where copies sit against the layout, and the member
//! devices' states. fsck does not fill in missing copies: that is `hammer2 resync`'s job
//! (it walks only the DEGRADED branches); fsck says what is missing and where.

use crate::report::{BlockAt, Findings, Problem, Repair};
use crate::space::Geometry;

/// Notes for the report that are no findings.
impl CopiesCheck {
    /// DATA blocks by copy count, the counts present only.
    pub fn distribution(&self) -> Vec<crate::report::DataByCopies> {
        (1..=4u8)
            .zip(self.by_count)
            .filter(|(_, (blocks, _))| *blocks > 0)
            .map(|(copies, (blocks, bytes))| crate::report::DataByCopies { copies, blocks, bytes })
            .collect()
    }

    pub fn notes(&self) -> Vec<String> {
        let mut out = Vec::new();
        let dist = self.distribution();
        if self.variable && !dist.is_empty() {
            let parts: Vec<String> =
                dist.iter().map(|d| format!("{} with {} ({} bytes)", d.blocks, d.copies, d.bytes)).collect();
            out.push(format!("data blocks by copies: {}", parts.join(", ")));
        }
        if self.shared_needlessly == 0 {
            return out;
        }
        out.push(format!(
            "warning: {} block(s) keep copies on one device although {} devices could hold them apart \
             (placement FP1; not an error)",
            self.shared_needlessly, self.placeable
        ));
        out
    }
}
use hammer2::inspect::MemberState;
use hammer2_format::layout::MAX_DEVICES;
use hammer2_format::{Blockref, CopyState};

pub struct CopiesCheck {
    copies: u8,
    ndev: usize,
    /// `FREE_PLACEMENT`: no pinned slots (FP1 in docs/DESIGN.md).
    free: bool,
    /// `VARIABLE_COPIES`: DATA references may have 1..=4 copies (VC1, VC2).
    variable: bool,
    /// DATA blocks by copy count (index n - 1): (blocks, bytes of one copy).
    pub by_count: [(u64, u64); 4],
    /// Devices that may hold copies (not removed): how many distinct devices a block's
    /// copies should use at least.
    placeable: usize,
    /// Blocks whose copies share a device although enough devices exist (FP1 says the
    /// writer avoids it; a warning, not an error).
    pub shared_needlessly: u64,
    /// Devices the table records removed: no reference may name them.
    removed: [bool; MAX_DEVICES],
    /// Per device index: (blocks, bytes) with a MISSING copy there.
    missing: [(u64, u64); MAX_DEVICES],
}

impl CopiesCheck {
    pub fn new(copies: u8, ndev: usize, free: bool, removed: &[usize]) -> CopiesCheck {
        let mut r = [false; MAX_DEVICES];
        for &i in removed.iter().filter(|&&i| i < MAX_DEVICES) {
            r[i] = true;
        }
        let placeable = ndev.saturating_sub(removed.len());
        CopiesCheck {
            copies,
            ndev,
            free,
            variable: false,
            by_count: [(0, 0); 4],
            placeable,
            shared_needlessly: 0,
            removed: r,
            missing: [(0, 0); MAX_DEVICES],
        }
    }

    /// With `VARIABLE_COPIES` (`variable`): DATA references may have another count than N.
    pub fn with_variable(mut self, variable: bool) -> CopiesCheck {
        self.variable = variable;
        self
    }

    fn fixed(&self) -> bool {
        !self.free && hammer2::inspect::slots_are_fixed(self.ndev, self.copies)
    }

    /// FP1 (free placement): no two copies in one (device, region), every VALID copy inside
    /// a region of its device; copies sharing a device while enough devices exist are only
    /// counted (`shared_needlessly`).
    fn note_free(&mut self, p: &hammer2_format::blockref::BlockPtr, geo: &[Geometry]) -> Option<String> {
        let mut domains: Vec<(u8, Option<u8>)> = Vec::with_capacity(p.copies.len());
        for (slot, l) in p.copies.iter().enumerate() {
            let region = match (l.state, geo.get(usize::from(l.device))) {
                (CopyState::Valid, Some(g)) => {
                    let r = (0..g.regions).find(|&k| {
                        let (s, e) = hammer2_format::layout::region_bounds(g.size, g.regions, k);
                        l.offset >= s && l.offset.saturating_add(u64::from(p.size)) <= e
                    });
                    if r.is_none() {
                        return Some(format!("copy {slot} lies outside every region of device {}", l.device));
                    }
                    r
                }
                _ => None,
            };
            if region.is_some() && domains.contains(&(l.device, region)) {
                return Some(format!("two copies in region {} of device {}", region.unwrap_or(0), l.device));
            }
            domains.push((l.device, region));
        }
        let mut devices: Vec<u8> = p.copies.iter().map(|l| l.device).collect();
        devices.sort_unstable();
        devices.dedup();
        if devices.len() < p.copies.len().min(self.placeable) {
            self.shared_needlessly += 1;
        }
        None
    }

    /// Notes the copies of one reference; returns what is wrong with their placement.
    pub fn note(&mut self, br: &Blockref, geo: &[Geometry]) -> Option<String> {
        let p = br.ptr()?;
        for l in p.copies.iter().filter(|l| l.state == CopyState::Missing) {
            let m = &mut self.missing[usize::from(l.device)];
            m.0 += 1;
            m.1 += u64::from(p.size);
        }
        let n = p.copies.len();
        if br.btype == hammer2_format::BlockType::Data
            && let Some(c) = self.by_count.get_mut(n.saturating_sub(1))
        {
            c.0 += 1;
            c.1 += u64::from(p.size);
        }
        // VC1: metadata has N copies; VC2: a DATA block its file's count, which differs
        // from N only with `VARIABLE_COPIES` (VC3): without the bit that is one finding for
        // the header (`features.rs`, FK4), not one per block here.
        let data = br.btype == hammer2_format::BlockType::Data;
        if n != usize::from(self.copies) && !data {
            return Some(format!("{n} copies, the filesystem keeps {}", self.copies));
        }
        for (slot, l) in p.copies.iter().enumerate() {
            if usize::from(l.device) >= self.ndev {
                return Some(format!("copy {slot} is on device {}, which the filesystem does not have", l.device));
            }
            if self.removed[usize::from(l.device)] {
                return Some(format!("copy {slot} names device {}, which was removed", l.device));
            }
        }
        if self.free {
            return self.note_free(p, geo);
        }
        for (slot, l) in p.copies.iter().enumerate() {
            if self.fixed() {
                let (want_dev, want_region) = hammer2::inspect::fixed_slot(slot, self.ndev);
                let want_dev = usize::from(want_dev);
                if slot >= usize::from(self.copies) {
                    return Some(format!("copy {slot}: the pinned layout has only {} slots", self.copies));
                }
                if usize::from(l.device) != want_dev {
                    return Some(format!("copy {slot} is on device {}, the layout puts it on {want_dev}", l.device));
                }
                if l.state == CopyState::Valid
                    && let Some(g) = geo.get(want_dev)
                {
                    let (s, e) = hammer2_format::layout::region_bounds(g.size, g.regions, want_region);
                    if l.offset < s || l.offset.saturating_add(u64::from(p.size)) > e {
                        return Some(format!("copy {slot} lies outside region {want_region} of its device"));
                    }
                }
            } else if p.copies.iter().skip(slot + 1).any(|o| o.device == l.device) {
                return Some(format!("two copies on device {}", l.device));
            }
        }
        None
    }

    /// Device-level findings, after the walk.
    pub fn finish(&self, members: &[(String, MemberState, u64, [u8; 16])], findings: &mut Findings) {
        for (i, (name, state, missed, uuid)) in members.iter().enumerate() {
            let (blocks, bytes) = self.missing.get(i).copied().unwrap_or_default();
            let resync = "run hammer2 resync to fill in the missing copies".to_string();
            match state {
                MemberState::Absent => {
                    let id = findings
                        .add(Problem::DeviceMissing { index: i, uuid: uuid::Uuid::from_bytes(*uuid).to_string() });
                    findings.set(id, Repair::Unrepairable { why: "give every device of the filesystem".into() });
                }
                MemberState::Stale => {
                    let id =
                        findings.add(Problem::DeviceStale { device: name.clone(), index: i, missed_since: *missed });
                    findings.set(id, Repair::Unrepairable { why: resync.clone() });
                    if blocks > 0 {
                        let id = findings.add(Problem::MissingCopies { device: name.clone(), index: i, blocks, bytes });
                        findings.set(id, Repair::Unrepairable { why: resync });
                    }
                }
                MemberState::Diverged => {
                    let id = findings.add(Problem::DeviceDiverged { device: name.clone(), index: i });
                    findings.set(id, Repair::Unrepairable { why: resync });
                }
                MemberState::Online | MemberState::Failed if blocks > 0 => {
                    let id = findings.add(Problem::MissingCopies { device: name.clone(), index: i, blocks, bytes });
                    findings.set(id, Repair::Unrepairable { why: resync });
                }
                _ => {}
            }
        }
    }
}

/// Marks a placement finding as unrepairable (only a resync rewrites copies elsewhere).
pub fn placement(findings: &mut Findings, at: BlockAt, why: String) {
    let id = findings.add(Problem::Placement { at, why });
    findings.set(id, Repair::Unrepairable { why: "fsck does not move copies".into() });
}
