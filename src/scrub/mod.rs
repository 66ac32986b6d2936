//! Scrub: read every copy of every reachable block, verify it against the check value in
//! its parent's reference, and rewrite bad copies from a good one. Runs on a mounted
//! filesystem (online) or on one opened only for it (offline); the tree it walks is pinned,
//! so blocks freed by concurrent commits are not reused while the walk may still reach
//! them.

mod batch;

use crate::copies::CopyVerdict;
use crate::error::Result;
use crate::fs::scans::ScanState;
use crate::fs::{FsInner, Roots};
use crate::throttle::Throttle;
use crate::walk::{self, Ctx, TreeKind, Visitor};
use hammer2_format::{BlockData, BlockType, Blockref, CopyState, Payload, dirent};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeviceScrub {
    pub index: u8,
    /// The device's name (its path), `path` as in every command's device entries.
    #[serde(rename = "path")]
    pub device: String,
    /// Copies read on this device.
    #[serde(rename = "copies_read")]
    pub copies: u64,
    /// Bytes of copies read on this device.
    #[serde(rename = "bytes_read")]
    pub bytes: u64,
    pub read_errors: u64,
    pub check_errors: u64,
    pub repaired: u64,
    /// Copies recorded as MISSING on this device (a resync fills them).
    pub missing: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Unrepairable {
    pub block: &'static str,
    pub inum: Option<u64>,
    pub offset: Option<u64>,
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ScrubReport {
    pub blocks: u64,
    /// Bytes of the blocks checked (one copy each), `bytes_allocated` as in fsck's counts.
    #[serde(rename = "bytes_allocated")]
    pub bytes: u64,
    pub devices: Vec<DeviceScrub>,
    pub unrepairable: Vec<Unrepairable>,
    pub malformed: Vec<String>,
    pub seconds: f64,
    /// Cancelled (`hammer2 scrub --cancel`) before it read everything: the counters say
    /// what it did.
    pub cancelled: bool,
}

/// The exit status of a cancelled scrub (fsck(8)'s "cancelled by user request").
pub const EXIT_CANCELLED: i32 = 32;

impl ScrubReport {
    pub fn errors(&self) -> u64 {
        self.devices.iter().map(|d| d.read_errors + d.check_errors).sum()
    }
    pub fn repaired(&self) -> u64 {
        self.devices.iter().map(|d| d.repaired).sum()
    }
    /// fsck(8)-style status: 0 clean, 1 every error repaired, 4 errors left, 32 cancelled.
    pub fn exit_code(&self) -> i32 {
        if self.cancelled {
            EXIT_CANCELLED
        } else if !self.unrepairable.is_empty() || !self.malformed.is_empty() || self.errors() > self.repaired() {
            4
        } else if self.errors() > 0 {
            1
        } else {
            0
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ScrubProgress {
    pub blocks: u64,
    pub bytes: u64,
    /// Bytes of copies read so far (the devices' BYTES of the report, summed): what the
    /// scrub's rate counts.
    pub read: u64,
    /// Bytes of copies the scrub will read, known before it starts: the space allocated
    /// on the devices it reads (blocks committed while it runs are not in its tree).
    pub total: u64,
}

struct Scrubber<'a> {
    fs: &'a FsInner,
    only: Option<u8>,
    rep: ScrubReport,
    progress: &'a mut dyn FnMut(ScrubProgress),
    last_progress: Instant,
    /// Leaf blocks waiting to be verified in a batch (see `batch`), and the bytes of their
    /// copies.
    queue: Vec<(Blockref, Ctx)>,
    queued_bytes: u64,
    /// A batch is verified once it holds this many bytes (or `BATCH_BLOCKS` blocks).
    batch_bytes: u64,
    total: u64,
    throttle: Throttle,
    /// Follows `scrub --pause|--resume|--cancel` (the filesystem's scrub, not a resync's
    /// check of one device).
    controlled: bool,
}

impl Scrubber<'_> {
    /// Verifies the queued blocks; those not entirely good are read again copy by copy.
    fn flush(&mut self) {
        let queue = std::mem::take(&mut self.queue);
        self.queued_bytes = 0;
        if self.rep.cancelled {
            return;
        }
        let refs: Vec<Blockref> = queue.iter().map(|(br, _)| *br).collect();
        let good = batch::verify(&self.fs.vol, &refs);
        for ((br, ctx), ok) in queue.iter().zip(good) {
            if !ok {
                self.read_copies(br, ctx);
                continue;
            }
            // verify() only says good for blocks with a pointer.
            let Some(p) = br.ptr() else { continue };
            for loc in p.copies.iter() {
                let d = &mut self.rep.devices[usize::from(loc.device)];
                if loc.state == CopyState::Missing {
                    d.missing += 1;
                } else {
                    d.copies += 1;
                    d.bytes += u64::from(p.size);
                }
            }
            self.rep.blocks += 1;
            self.rep.bytes += u64::from(p.size);
        }
        self.checkpoint();
    }

    /// Between batches: report progress, keep to the rate, and follow a pause or a cancel.
    fn checkpoint(&mut self) {
        let read = self.rep.devices.iter().map(|d| d.bytes).sum();
        // Paced first, so what progress reports was read at the rate at most (T1): `status`
        // divides it by the time since the start.
        self.throttle.pace(read);
        (self.progress)(ScrubProgress { blocks: self.rep.blocks, bytes: self.rep.bytes, read, total: self.total });
        self.last_progress = Instant::now();
        while self.controlled {
            match self.fs.scrub_control.state() {
                ScanState::Run => break,
                ScanState::Cancelled => {
                    self.rep.cancelled = true;
                    break;
                }
                ScanState::Paused if self.fs.stopping.load(std::sync::atomic::Ordering::SeqCst) => {
                    // An unmount does not wait for a resume that may never come.
                    self.rep.cancelled = true;
                    break;
                }
                ScanState::Paused => {
                    let t = Instant::now();
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    self.throttle.exclude(t.elapsed());
                }
            }
        }
    }

    fn read_copies(&mut self, br: &Blockref, ctx: &Ctx) -> Option<Arc<[u8]>> {
        let io = self.fs.vol.copy_io();
        let p = br.ptr()?;
        let size = p.size as usize;
        let only = self.only;
        // With `only`, copies on other devices are read only until one is good (to repair
        // from).
        let every = io.read_every_copy(
            p,
            &mut |_, loc, have_good| !(only.is_some_and(|o| o != loc.device) && have_good),
            &mut |_, _| None,
        );
        for (_, loc, verdict) in &every.copies {
            let Some(d) = self.rep.devices.get_mut(usize::from(loc.device)) else { continue };
            match verdict {
                CopyVerdict::Missing => d.missing += 1,
                CopyVerdict::Skipped(_) => {}
                CopyVerdict::Io(_) => d.read_errors += 1,
                CopyVerdict::Good | CopyVerdict::Mismatch => {
                    if only.is_none_or(|o| o == loc.device) {
                        d.copies += 1;
                        d.bytes += size as u64;
                    }
                    if *verdict == CopyVerdict::Mismatch {
                        d.check_errors += 1;
                    }
                }
            }
        }
        for slot in io.heal_bad(p, &every) {
            self.rep.devices[usize::from(p.copies.as_slice()[slot].device)].repaired += 1;
        }
        let good: Option<Arc<[u8]>> = every.data.map(Arc::from);
        if good.is_none() {
            self.rep.unrepairable.push(Unrepairable {
                block: br.btype.name(),
                inum: ctx.inum().or((br.btype == BlockType::Inode).then_some(br.key)),
                offset: (br.btype == BlockType::Data).then_some(br.key),
                path: None,
            });
        }
        self.rep.blocks += 1;
        self.rep.bytes += size as u64;
        if self.last_progress.elapsed().as_millis() >= 100 {
            self.checkpoint();
        }
        good
    }
}

impl Visitor for Scrubber<'_> {
    fn visit(&mut self, br: &Blockref, ctx: &Ctx) -> Result<Option<Arc<[u8]>>> {
        if self.rep.cancelled {
            // The walk goes over what it holds without reading or descending any further.
            return Ok(None);
        }
        // Only nodes and inodes lead to other blocks; the rest waits for a batch. (The tree
        // is pinned: queued blocks are not reused before they are read.)
        let leaf = !br.btype.names_blocks();
        if leaf && self.only.is_none() && br.ptr().is_some() {
            self.queue.push((*br, *ctx));
            // Counted in copies to read, as the rate is.
            self.queued_bytes += br.ptr().map_or(0, |p| {
                u64::from(p.size) * p.copies.iter().filter(|l| l.state != CopyState::Missing).count() as u64
            });
            if self.queue.len() >= batch::BATCH_BLOCKS || self.queued_bytes >= self.batch_bytes {
                self.flush();
            }
            return Ok(None);
        }
        Ok(self.read_copies(br, ctx))
    }

    fn malformed(&mut self, br: &Blockref, ctx: &Ctx, why: &str) -> Result<()> {
        self.rep.malformed.push(format!("{} block in {:?}: {why}", br.btype.name(), ctx.tree));
        Ok(())
    }
}

/// Bytes of a batch by default: large enough for the merged runs to read at device speed,
/// small enough that progress, a pause or a cancel is seen every few seconds.
const BATCH_BYTES: u64 = 256 << 20;

/// How a scrub runs: its rate (bytes of copies read per second) and whether it follows
/// `scrub --pause|--resume|--cancel`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScrubRun {
    pub rate: Option<u64>,
    pub controlled: bool,
}

/// Scrubs the tree at `roots` (pinned by the caller). With `only`, verifies the copies on
/// that device (reading another copy only to repair one).
pub fn scrub_roots(
    fs: &FsInner,
    roots: &Roots,
    only: Option<u8>,
    how: ScrubRun,
    progress: &mut dyn FnMut(ScrubProgress),
) -> Result<ScrubReport> {
    let start = Instant::now();
    let devices =
        fs.vol.devices.iter().map(|m| DeviceScrub { index: m.index, device: m.name(), ..Default::default() }).collect();
    let total = {
        let alloc = fs.alloc.lock();
        fs.vol
            .devices
            .iter()
            .filter(|m| only.is_none_or(|o| o == m.index) && m.readable() && m.has_storage())
            .map(|m| alloc.allocated_units(m.index) * hammer2_format::layout::UNIT)
            .sum()
    };
    let throttle = Throttle::new(how.rate);
    // Throttled, a batch is a quarter second of reading, so the pace is kept evenly.
    let batch_bytes = throttle.rate().map_or(BATCH_BYTES, |r| (r / 4).clamp(1 << 20, BATCH_BYTES));
    let mut s = Scrubber {
        fs,
        only,
        rep: ScrubReport { devices, ..Default::default() },
        progress,
        last_progress: Instant::now(),
        queue: Vec::new(),
        queued_bytes: 0,
        batch_bytes,
        total,
        throttle,
        controlled: how.controlled,
    };
    walk::walk(roots, &mut s)?;
    s.flush();
    let mut rep = s.rep;
    if !rep.unrepairable.is_empty() {
        let want: HashSet<u64> = rep.unrepairable.iter().filter_map(|u| u.inum).collect();
        let paths = paths_of(fs, roots, &want)?;
        for u in &mut rep.unrepairable {
            u.path = u.inum.and_then(|i| paths.get(&i).cloned());
        }
    }
    rep.seconds = start.elapsed().as_secs_f64();
    Ok(rep)
}

/// Scrubs the committed tree of a mounted filesystem: the walk alone, no commit and no
/// device state change (the whole policy is `maintenance::scrub`, above this module).
pub(crate) fn scrub(fs: &FsInner, how: ScrubRun, progress: &mut dyn FnMut(ScrubProgress)) -> Result<ScrubReport> {
    scrub_roots(fs, &fs.pinned_roots(), None, how, progress)
}

/// Paths of the given inodes (one name each), found by walking the directories.
pub fn paths_of(fs: &FsInner, roots: &Roots, want: &HashSet<u64>) -> Result<HashMap<u64, String>> {
    struct Names<'a> {
        fs: &'a FsInner,
        /// child -> (parent directory, name)
        up: HashMap<u64, (u64, Vec<u8>)>,
    }
    impl Visitor for Names<'_> {
        fn visit(&mut self, br: &Blockref, ctx: &Ctx) -> Result<Option<Arc<[u8]>>> {
            if let (TreeKind::Inode(dir), BlockType::Dirent, Payload::Dirent { inum, name_len, .. }) =
                (ctx.tree, br.btype, br.payload)
            {
                let name = match &br.data {
                    BlockData::Inline(raw) => raw[..usize::from(name_len)].to_vec(),
                    _ => self
                        .fs
                        .vol
                        .read_block(br, &Default::default())
                        .ok()
                        .and_then(|b| dirent::decode_name_block(&b, usize::from(name_len)).ok())
                        .unwrap_or_else(|| b"?".to_vec()),
                };
                self.up.entry(inum).or_insert((dir, name));
                return Ok(None);
            }
            if matches!(br.btype, BlockType::Indirect | BlockType::Inode)
                && matches!(ctx.tree, TreeKind::Inodes | TreeKind::Inode(_))
            {
                return Ok(self.fs.vol.read_block(br, &Default::default()).ok());
            }
            Ok(None)
        }
    }
    let mut n = Names { fs, up: HashMap::new() };
    walk::walk_tree(&roots.inodes.entries, TreeKind::Inodes, &mut n)?;
    let root = hammer2_format::layout::ROOT_INUM;
    let mut out = HashMap::new();
    for &i in want {
        let mut parts = Vec::new();
        let mut cur = i;
        while cur != root && parts.len() < 4096 {
            let Some((p, name)) = n.up.get(&cur) else { break };
            parts.push(String::from_utf8_lossy(name).into_owned());
            cur = *p;
        }
        if cur == root {
            parts.reverse();
            out.insert(i, format!("/{}", parts.join("/")));
        }
    }
    Ok(out)
}
