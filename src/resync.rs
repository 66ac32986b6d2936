//! Resync: catching a device up by walking the tree from the master root and descending
//! only into branches whose references carry the DEGRADED flag (some copy at or below them
//! is MISSING). A branch without the flag is fully synchronized and is not entered, so a
//! resync costs in proportion to what the device missed, not to the filesystem's size.
//!
//! The work is done by commits: while a resync is requested, every commit ends its build
//! phase with a bounded *slice*: it fills MISSING copies on writable devices (a new location
//! on that device, the verified content copied there) and rebuilds the nodes above them,
//! whose new versions are written to every device and so carry no flag. Progress therefore
//! lives in the tree itself: an interrupted resync restarts from the root and finds the
//! finished branches already clean. Writes during a resync are ordinary commits.
//!
//! A *diverged* device (split brain, rolled back, or a replacement: DESIGN §8) cannot trust
//! any of its older copies; before the slices run, `verify_device` reads every copy on it
//! and rewrites those that fail their check, after which it is treated as stale.

use crate::alloc::Class;
use crate::commit::builder::Builder;
use crate::copies::read::ReadCtx;
use crate::devices::MemberState;
use crate::error::{Error, Result};
use crate::fs::FsInner;
use crate::tree::modify::{NodeWriter, PEntry, PRoot};
use crate::walk::TreeKind;
use hammer2_format::blockref::FLAG_DEGRADED;
use hammer2_format::{BlockType, Blockref, CopyState, InodeBlock, InodeContent};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Bytes of copies one commit's slice writes at most.
pub const DEFAULT_SLICE_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ResyncCounts {
    /// Out-of-sync references examined (each one read and descended into, or filled).
    pub visited: u64,
    /// Copies written.
    pub copied_blocks: u64,
    pub copied_bytes: u64,
}

impl ResyncCounts {
    fn add(&mut self, o: &ResyncCounts) {
        self.visited += o.visited;
        self.copied_blocks += o.copied_blocks;
        self.copied_bytes += o.copied_bytes;
    }
}

/// Shared resync state of a mounted filesystem.
#[derive(Default)]
pub struct ResyncControl {
    /// A resync is running (from its first step to its last commit): a second one is
    /// refused, so two never drive the same commits' slices and totals.
    pub running: AtomicBool,
    /// Commits run a slice while this is set.
    pub active: AtomicBool,
    pub slice_bytes: AtomicU64,
    /// Totals of the current resync.
    pub totals: Mutex<ResyncCounts>,
    /// The last slice walked the whole tree without running out of budget or skipping.
    pub complete: AtomicBool,
}

/// What a slice changed, for the commit to install.
#[derive(Default)]
pub struct SliceOutcome {
    pub counts: ResyncCounts,
    pub complete: bool,
    /// Inodes whose block was rewritten: (inum, new INODE entry, new root).
    pub inodes: Vec<(u64, PEntry, PRoot)>,
}

struct Slice<'s, 'a> {
    b: &'s mut Builder<'a>,
    skip: &'s HashSet<u64>,
    budget: u64,
    /// Units each copy domain must keep free for the commit's reservations (S4).
    keep_free: u64,
    /// Units of whole free slots left per (device, region), counted once and then charged a
    /// slot per copy placed.
    room: std::collections::HashMap<(u8, u8), u64>,
    out: SliceOutcome,
}

/// Runs one slice over the trees a commit is building. `skip` holds the inodes this commit
/// writes anyway (their new blocks are fresh; what they still reference is caught next time).
pub fn slice(
    b: &mut Builder,
    inodes: &mut PRoot,
    orphans: &mut PRoot,
    freemap_degraded: bool,
    skip: &HashSet<u64>,
    budget: u64,
    keep_free: u64,
) -> Result<SliceOutcome> {
    let out = SliceOutcome { complete: true, ..Default::default() };
    let mut s = Slice { b, skip, budget, keep_free, room: Default::default(), out };
    s.entries(&mut inodes.entries, TreeKind::Inodes)?;
    s.entries(&mut orphans.entries, TreeKind::Orphans)?;
    if freemap_degraded {
        // The free map is small: rewrite all of it (the commit's free-map step writes every
        // dirty leaf and the nodes above them to every writable device).
        let all: Vec<(u8, u32)> =
            s.b.alloc
                .devs
                .iter()
                .enumerate()
                .flat_map(|(d, sp)| (0..hammer2_format::freemap::leaves_for(sp.size)).map(move |l| (d as u8, l)))
                .collect();
        s.b.alloc.mark_leaves_dirty(&all);
    }
    if !s.out.inodes.is_empty() || s.out.counts.copied_blocks > 0 {
        tracing::debug!(visited = s.out.counts.visited, copied = s.out.counts.copied_blocks, "resync slice");
    }
    Ok(s.out)
}

impl Slice<'_, '_> {
    fn exhausted(&mut self) -> bool {
        if self.out.counts.copied_bytes >= self.budget {
            self.out.complete = false;
            return true;
        }
        false
    }

    /// A MISSING copy of `br` lives on a device we can write now.
    fn fixable(&self, br: &Blockref) -> bool {
        br.ptr().is_some_and(|p| {
            p.copies.iter().any(|l| {
                l.state == CopyState::Missing && self.b.vol.devices.get(l.device).is_some_and(|m| m.writable())
            })
        })
    }

    /// Resyncs a list of entries in place; true when any of them changed.
    fn entries(&mut self, entries: &mut [PEntry], tree: TreeKind) -> Result<bool> {
        let mut changed = false;
        for e in entries.iter_mut() {
            if let PEntry::New(id) = *e {
                // A node this commit rebuilt can still hold committed children that are out
                // of sync: resync them in place (the node is not written yet).
                self.pending_node(id, tree)?;
                continue;
            }
            let PEntry::Ref(br) = *e else { continue };
            if !br.is_degraded() {
                continue;
            }
            if self.exhausted() {
                break;
            }
            self.out.counts.visited += 1;
            if let Some(new) = self.one(&br, tree)? {
                *e = new;
                changed = true;
            }
        }
        Ok(changed)
    }

    fn pending_node(&mut self, id: u32, tree: TreeKind) -> Result<()> {
        let mut children = match &mut self.b.arena.get_mut(id).content {
            crate::commit::arena::Content::Node(entries) => std::mem::take(entries),
            // A new inode block belongs to an inode this commit writes: caught next time.
            _ => {
                if tree == TreeKind::Inodes {
                    self.out.complete = false;
                }
                return Ok(());
            }
        };
        let r = self.entries(&mut children, tree);
        if let crate::commit::arena::Content::Node(entries) = &mut self.b.arena.get_mut(id).content {
            *entries = children;
        }
        r.map(|_| ())
    }

    fn one(&mut self, br: &Blockref, tree: TreeKind) -> Result<Option<PEntry>> {
        match br.btype {
            BlockType::Indirect => {
                let mut children: Vec<PEntry> = self.b.read_node(br)?.into_iter().map(PEntry::Ref).collect();
                if self.entries(&mut children, tree)? {
                    self.b.release(&PEntry::Ref(*br));
                    return Ok(Some(self.b.new_node(br.level, children)?));
                }
                self.fill(br)
            }
            BlockType::Inode if tree == TreeKind::Inodes => {
                if self.skip.contains(&br.key) {
                    self.out.complete = false;
                    return Ok(None);
                }
                let bytes = self.b.vol.read_block_uncached(br, &ReadCtx::inode(br.key))?;
                let ino = InodeBlock::decode(&bytes)?;
                let InodeContent::Tree { root_level, entries } = &ino.content else { return self.fill(br) };
                let mut root = PRoot { level: *root_level, entries: entries.iter().map(|b| PEntry::Ref(*b)).collect() };
                if !self.entries(&mut root.entries, TreeKind::Inode(ino.inum))? {
                    return self.fill(br);
                }
                self.b.release(&PEntry::Ref(*br));
                let mut block = ino.clone();
                block.content = InodeContent::Tree { root_level: 0, entries: Vec::new() };
                let entry = self.b.new_inode(block, Some(root.clone()))?;
                self.out.inodes.push((ino.inum, entry, root));
                Ok(Some(entry))
            }
            _ => self.fill(br),
        }
    }

    /// Fills the fixable MISSING copies of an unchanged block.
    fn fill(&mut self, br: &Blockref) -> Result<Option<PEntry>> {
        if !self.fixable(br) {
            return Ok(None);
        }
        let Some(p) = br.ptr() else { return Ok(None) };
        let data: Arc<[u8]> = Arc::from(self.b.vol.read_block_uncached(br, &ReadCtx::meta())?);
        // S4: resync takes only space that no reservation counts on; short of it, the slice
        // stops here (before placing any copy) and a later one continues once space is freed.
        let slot_units = self.b.alloc.slot();
        let mut wanted: Vec<(u8, u8)> = Vec::new();
        for (slot, loc) in p.copies.iter().enumerate() {
            if loc.state == CopyState::Missing && self.b.vol.devices.get(loc.device).is_some_and(|m| m.writable()) {
                wanted.push((loc.device, self.b.vol.placement.region_of_slot(slot)));
            }
        }
        for &(d, r) in &wanted {
            let alloc = &*self.b.alloc;
            let room = *self.room.entry((d, r)).or_insert_with(|| alloc.domain_free_slots(d, r) * slot_units);
            if room < self.keep_free + slot_units {
                self.out.complete = false;
                return Ok(None);
            }
        }
        for dr in wanted {
            if let Some(room) = self.room.get_mut(&dr) {
                *room -= slot_units;
            }
        }
        let mut new = *br;
        let np = new.ptr_mut().ok_or_else(|| Error::Corrupt("block reference lost its block".into()))?;
        for (slot, loc) in np.copies.as_mut_slice().iter_mut().enumerate() {
            let writable = self.b.vol.devices.get(loc.device).is_some_and(|m| m.writable());
            if loc.state == CopyState::Missing && writable {
                *loc =
                    self.b.vol.placement.place_missing(self.b.alloc, loc.device, slot, Class::of(br.btype), p.size)?;
                self.b.arena.extra.push((loc.device, loc.offset, data.clone()));
                self.out.counts.copied_blocks += 1;
                self.out.counts.copied_bytes += u64::from(p.size);
            }
        }
        let still_missing = np.copies.any_missing();
        // A leaf's flag is its own state; a node that was not rebuilt keeps the flag if a
        // child below it is still out of sync (only its own copies were filled here).
        let below = br.btype == BlockType::Indirect || br.btype == BlockType::Inode;
        new.flags = if still_missing || (below && self.still_degraded_below(br)?) { FLAG_DEGRADED } else { 0 };
        new.mirror_tid = self.b.tid;
        Ok(Some(PEntry::Ref(new)))
    }

    fn still_degraded_below(&self, br: &Blockref) -> Result<bool> {
        Ok(match br.btype {
            BlockType::Indirect => self.b.vol.read_node(br)?.iter().any(|c| c.is_degraded()),
            BlockType::Inode => {
                let bytes = self.b.vol.read_block_uncached(br, &ReadCtx::inode(br.key))?;
                match InodeBlock::decode(&bytes)?.content {
                    InodeContent::Tree { entries, .. } => entries.iter().any(|c| c.is_degraded()),
                    InodeContent::Embedded(_) => false,
                }
            }
            _ => false,
        })
    }
}

/// Reads every copy on device `dev` of every reachable block and rewrites the ones whose
/// content fails its check (a diverged or replaced device). Returns (checked, repaired).
pub fn verify_device(fs: &FsInner, dev: u8) -> Result<(u64, u64)> {
    let roots = fs.roots.read().clone();
    fs.alloc.lock().pin(roots.tid);
    let r = crate::scrub::scrub_roots(fs, &roots, Some(dev), &mut |_| {});
    fs.alloc.lock().unpin(roots.tid);
    let rep = r?;
    Ok((rep.blocks, rep.devices.get(usize::from(dev)).map_or(0, |d| d.repaired)))
}

/// A resync's result.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ResyncReport {
    pub counts: ResyncCounts,
    pub commits: u64,
    pub seconds: f64,
    /// Devices brought back to online.
    pub synced: Vec<String>,
    /// Devices still missing copies (absent or failed).
    pub still_missing: Vec<String>,
    /// Failed devices that answer again but were not taken back, each with the reason
    /// (`DEVICE: why`): their header slots are not what this mount last wrote (R1).
    pub refused: Vec<String>,
    pub verified_blocks: u64,
    pub verify_repaired: u64,
}

/// Brings every stale, diverged or returning device up to date. Calls `progress` after
/// every commit.
pub fn run(fs: &FsInner, progress: &mut dyn FnMut(&ResyncCounts, u64)) -> Result<ResyncReport> {
    if fs.vol.read_only {
        return Err(Error::ReadOnly);
    }
    if fs.broken.load(Ordering::SeqCst) {
        // Its commits would succeed while every change is refused: not a success to report.
        return Err(Error::Mount(
            "the filesystem stopped taking changes after an internal error; unmount and mount it again".into(),
        ));
    }
    if fs.resync.running.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        return Err(Error::Busy("a resync is already running on this filesystem".into()));
    }
    // Cleared however the run ends (an error, or a panic in a commit), like `active` below.
    let _running = Active(&fs.resync.running);
    let start = std::time::Instant::now();
    let mut report = ResyncReport::default();
    rejoin(fs, &mut report)?;
    for m in &fs.vol.devices.members {
        if m.state() == MemberState::Diverged {
            let (checked, repaired) = verify_device(fs, m.index)?;
            report.verified_blocks += checked;
            report.verify_repaired += repaired;
            m.set_state(MemberState::Stale);
            m.set_rolled_back(0);
        }
    }
    *fs.resync.totals.lock() = ResyncCounts::default();
    let slice =
        std::env::var("HAMMER2_RESYNC_SLICE_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_SLICE_BYTES);
    fs.resync.slice_bytes.store(slice, Ordering::SeqCst);
    // Cleared however the loop ends (an error, or a panic in a commit), so later commits
    // do not keep running slices nobody asked for.
    fs.resync.active.store(true, Ordering::SeqCst);
    let active = Active(&fs.resync.active);
    loop {
        fs.resync.complete.store(false, Ordering::SeqCst);
        commit(fs)?;
        report.commits += 1;
        let totals = *fs.resync.totals.lock();
        progress(&totals, report.commits);
        if fs.resync.complete.load(Ordering::SeqCst) {
            break;
        }
    }
    drop(active);
    for m in &fs.vol.devices.members {
        if m.state() == MemberState::Stale {
            m.set_state(MemberState::Online);
            m.set_missed_since(0);
            report.synced.push(m.name.clone());
        } else if !m.writable() {
            report.still_missing.push(m.name.clone());
        }
    }
    // Persist the new device states.
    commit(fs)?;
    report.commits += 1;
    report.counts = *fs.resync.totals.lock();
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Clears a flag when dropped.
struct Active<'a>(&'a AtomicBool);
impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// One commit of the resync. When it fails for want of a device the filesystem still refuses
/// changes, and the error says so and what to do (not just "I/O error").
fn commit(fs: &FsInner) -> Result<()> {
    crate::commit::commit(fs, true, false).map(|_| ()).map_err(|e| {
        if fs.stalled.load(Ordering::SeqCst) {
            Error::Mount(format!(
                "the devices answer but fail again ({e}); changes stay refused: run resync again once they work, \
                 or unmount and mount again"
            ))
        } else {
            e
        }
    })
}

/// Failed devices that answer again rejoin as stale, each only once its header slots show
/// it holds what this mount last wrote to it (R1 in docs/DESIGN.md §5); the others stay
/// failed and are listed in `report.refused`. When no device was writable (the filesystem
/// is refusing changes), a refusal leaves every device failed and is an error: resuming
/// on the others could make the commit this mount retries and the one a refused device
/// holds two different trees with the same tid.
fn rejoin(fs: &FsInner, report: &mut ResyncReport) -> Result<()> {
    let stalled = fs.stalled.load(Ordering::SeqCst);
    let roots = fs.roots.read().clone();
    let mut back = Vec::new();
    for m in &fs.vol.devices.members {
        let Some(st) = &m.storage else { continue };
        if m.state() != MemberState::Failed {
            continue;
        }
        let mut b = [0u8; 4096];
        if st.read_at(&mut b, 0).is_err() || st.flush().is_err() {
            continue;
        }
        match holds_what_we_wrote(fs, m, &crate::mount::probe(st.clone()), &roots) {
            Ok(()) => back.push(m),
            Err(why) => {
                tracing::warn!(device = %m.name, "device answers again but is not taken back: {why}");
                report.refused.push(format!("{}: {why}", m.name));
            }
        }
    }
    if stalled && !report.refused.is_empty() {
        return Err(Error::Mount(format!(
            "{}; the filesystem takes no changes until it is unmounted and mounted again",
            report.refused.join("; ")
        )));
    }
    for m in back {
        tracing::info!(device = %m.name, "device answers again and holds what was last written to it: rejoining as stale");
        if m.missed_since() == 0 {
            m.set_missed_since(roots.tid);
        }
        m.set_state(MemberState::Stale);
    }
    Ok(())
}

/// R1: a failed device may be written again only if its newest valid header is one this
/// mount wrote and made durable. Newer than the last completed commit means a failed
/// commit's header landed: its blocks went back to the allocator and the retry would
/// reuse them under a header that names them. Older than the last header written to it
/// (or the one before, if that write failed) means its contents were replaced.
fn holds_what_we_wrote(
    fs: &FsInner,
    m: &crate::devices::Member,
    probe: &crate::mount::Probe,
    roots: &crate::fs::Roots,
) -> std::result::Result<(), String> {
    let Some(h) = &probe.header else { return Err("it holds no valid volume header".into()) };
    if h.fs_uuid != fs.vol.params.fs_uuid || h.device_uuid != m.uuid {
        return Err("its volume header belongs to another device or filesystem".into());
    }
    if h.tid > roots.tid {
        return Err(format!(
            "it holds the header of commit {}, which failed here (the last commit completed is {})",
            h.tid, roots.tid
        ));
    }
    use hammer2_format::layout::{SROOT_FREEMAP, SROOT_INODES, SROOT_ORPHANS};
    let same_roots = h.sroot[SROOT_INODES] == roots.inodes.to_ref()
        && h.sroot[SROOT_FREEMAP] == roots.freemap.to_ref()
        && h.sroot[SROOT_ORPHANS] == roots.orphans.to_ref();
    if h.tid == roots.tid && !same_roots {
        return Err(format!("its header of commit {} names other roots than this mount committed", h.tid));
    }
    if h.tid + 1 < m.synced_tid() {
        return Err(format!("it holds commit {}, older than commit {} last written to it", h.tid, m.synced_tid()));
    }
    Ok(())
}

impl ResyncReport {
    /// 0 when every device that answers is back in service, 1 when one was refused.
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.refused.is_empty())
    }
}

impl ResyncCounts {
    pub fn merge(&mut self, o: &ResyncCounts) {
        self.add(o)
    }
}
