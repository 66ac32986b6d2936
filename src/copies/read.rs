//! The copy-I/O layer: the only code that reads a block's copies. It verifies each copy
//! against the check value of the block's reference, picks a good copy, rewrites bad ones
//! from it (self-heal) and counts device errors, for every reader alike: the VOP reads and
//! their bulk fast path, inode prefetch, scrub, resync and fsck.
//!
//! A verified read tries the VALID copies in slot order and returns the first whose content
//! matches the check value. Every copy tried before it that failed (I/O error or check
//! mismatch) is counted against its device and, unless healing is off (a read-only mount,
//! fsck -n), rewritten in place with the good content. Rewriting a live block in place is
//! safe: it only restores bytes the check value already vouches for, so a crash during the
//! rewrite leaves the copy no worse than it was.
//!
//! Bulk reads (`read_blocks`) read one chosen copy of many blocks in merged runs per
//! device (`runs.rs`); a chosen copy that fails is counted, the block is read from its
//! other copies and the failed copy healed, exactly as a verified read would.

use super::runs::{CopyRead, read_runs};
use crate::devices::{DeviceSet, Member};
use crate::error::{Error, Result};
use crate::storage::DynStorage;
use hammer2_format::{BlockPtr, BlockType, CopyState, Location};
use std::sync::atomic::Ordering;

/// Where a block belongs, for error messages.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadCtx {
    pub inum: Option<u64>,
    pub offset: Option<u64>,
    /// Do not rewrite bad copies (fsck -n, read-only checks).
    pub no_heal: bool,
}

impl ReadCtx {
    pub fn meta() -> ReadCtx {
        ReadCtx::default()
    }
    pub fn inode(inum: u64) -> ReadCtx {
        ReadCtx { inum: Some(inum), ..Default::default() }
    }
    pub fn file(inum: u64, offset: u64) -> ReadCtx {
        ReadCtx { inum: Some(inum), offset: Some(offset), no_heal: false }
    }
}

/// What reading one copy gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyVerdict {
    Good,
    /// Read fine, but the content does not match the check value.
    Mismatch,
    /// The read failed.
    Io(String),
    /// Not read: its device is missing or failed (or the caller did not want it read).
    Skipped(&'static str),
    /// A MISSING copy (no location yet).
    Missing,
}

impl CopyVerdict {
    pub fn why(&self) -> String {
        match self {
            CopyVerdict::Good => "good".into(),
            CopyVerdict::Mismatch => "check value mismatch".into(),
            CopyVerdict::Io(e) => format!("read error: {e}"),
            CopyVerdict::Skipped(w) => (*w).to_string(),
            CopyVerdict::Missing => "missing (never written)".into(),
        }
    }
    pub fn is_bad(&self) -> bool {
        matches!(self, CopyVerdict::Mismatch | CopyVerdict::Io(_))
    }
}

/// Every copy of one block, each with its verdict (`CopyIo::read_every_copy`).
#[derive(Debug)]
pub struct EveryCopy {
    /// The content of the first good copy.
    pub data: Option<Vec<u8>>,
    /// (slot, location, verdict) of every copy, in slot order.
    pub copies: Vec<(usize, Location, CopyVerdict)>,
}

/// Why a copy tried by a verified read was not good.
enum Bad {
    Io(std::io::Error),
    Check,
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bad::Io(e) => write!(f, "I/O error: {e}"),
            Bad::Check => write!(f, "check value mismatch"),
        }
    }
}

/// One block of a bulk read (`CopyIo::read_blocks`): its type and pointer, the copy slot
/// to read first, and where it belongs (for messages).
#[derive(Debug, Clone, Copy)]
pub struct BulkBlock<'a> {
    pub btype: BlockType,
    pub ptr: &'a BlockPtr,
    pub slot: usize,
    pub ctx: ReadCtx,
}

/// What a bulk read does with a block whose chosen copy is not good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBadCopy {
    /// Count the copy, read the block's other copies and heal it: a read that must succeed.
    Recover,
    /// Leave the block out, counting nothing (best-effort prefetch: a later read of the
    /// block meets the bad copy again and deals with it).
    Skip,
}

/// Reads of block copies on a set of devices, with a heal switch and a switch for error
/// counting (the device counters persisted in the headers).
#[derive(Clone, Copy)]
pub struct CopyIo<'a> {
    devices: &'a DeviceSet,
    heal: bool,
    count: bool,
}

impl<'a> CopyIo<'a> {
    /// Reads on `devices`, rewriting bad copies when `heal`, counting errors.
    pub fn new(devices: &'a DeviceSet, heal: bool) -> CopyIo<'a> {
        CopyIo { devices, heal, count: true }
    }

    /// The same reads without touching the device counters (fsck's own accounting).
    pub fn uncounted(self) -> CopyIo<'a> {
        CopyIo { count: false, ..self }
    }

    pub fn devices(&self) -> &'a DeviceSet {
        self.devices
    }

    /// The storage of the device a copy at `loc` lives on, when that device can be read.
    pub fn readable(&self, loc: &Location) -> std::result::Result<DynStorage, &'static str> {
        let m = self.devices.get(loc.device).ok_or("no such device")?;
        match m.storage() {
            Some(s) if m.readable() => Ok(s),
            _ => Err("device missing"),
        }
    }

    fn count_check_error(&self, m: &Member) {
        if self.count {
            m.counters.check_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn count_read_error(&self, m: &Member, e: &std::io::Error) {
        if self.count {
            m.counters.read_errors.fetch_add(1, Ordering::Relaxed);
            if matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENODEV)) {
                m.fail(&format!("read error: {e}"));
            }
        }
    }

    /// The verified content of a block: the first good copy in slot order; bad copies met
    /// on the way are counted and healed.
    pub fn read_verified(&self, btype: BlockType, ptr: &BlockPtr, ctx: &ReadCtx) -> Result<Vec<u8>> {
        self.verified_after(btype, ptr, ctx, Vec::new())
    }

    /// A verified read after the copies in `known_bad` were already read, counted and
    /// found bad: they are not read again, and are healed with the rest.
    fn verified_after(
        &self,
        btype: BlockType,
        ptr: &BlockPtr,
        ctx: &ReadCtx,
        mut bad: Vec<(usize, Bad)>,
    ) -> Result<Vec<u8>> {
        let size = ptr.size as usize;
        let mut good: Option<Vec<u8>> = None;
        for (slot, loc) in ptr.copies.iter().enumerate() {
            if !loc.is_valid() || bad.iter().any(|(s, _)| *s == slot) {
                continue;
            }
            let Some(m) = self.devices.get(loc.device) else {
                continue;
            };
            let Some(storage) = m.storage().filter(|_| m.readable()) else {
                continue;
            };
            let mut buf = vec![0u8; size];
            match storage.read_at(&mut buf, loc.offset) {
                Ok(()) if ptr.check.verify(&buf) => {
                    good = Some(buf);
                    break;
                }
                Ok(()) => {
                    self.count_check_error(m);
                    bad.push((slot, Bad::Check));
                }
                Err(e) => {
                    self.count_read_error(m, &e);
                    bad.push((slot, Bad::Io(e)));
                }
            }
        }
        for (slot, why) in &bad {
            let loc = ptr.copies.as_slice()[*slot];
            tracing::warn!(
                device = %self.devices.get(loc.device).map_or("?".into(), |m| m.name()),
                offset = loc.offset,
                block = btype.name(),
                inum = ?ctx.inum,
                file_offset = ?ctx.offset,
                "bad copy: {why}"
            );
        }
        let Some(data) = good else {
            return Err(Error::Unrecoverable {
                what: btype.name(),
                inum: ctx.inum,
                offset: ctx.offset,
                detail: format!("all {} copies failed", ptr.copies.len()),
            });
        };
        if self.heal && !ctx.no_heal {
            for (slot, _) in &bad {
                heal(self.devices, ptr, *slot, &data);
            }
        }
        Ok(data)
    }

    /// Reads and verifies every copy of a block that `want(slot, have_good)` asks for
    /// (`have_good`: a good copy was found in an earlier slot); copies not wanted are
    /// `Skipped("not read")`. `ahead` may hand over bytes already read for a copy (fsck's
    /// read-ahead); they are verified like bytes read here. Bad copies are counted, not
    /// healed: see `heal_bad`.
    pub fn read_every_copy(
        &self,
        ptr: &BlockPtr,
        want: &mut dyn FnMut(usize, &Location, bool) -> bool,
        ahead: &mut dyn FnMut(&Location, u32) -> Option<Vec<u8>>,
    ) -> EveryCopy {
        let mut out = EveryCopy { data: None, copies: Vec::with_capacity(ptr.copies.len()) };
        for (slot, loc) in ptr.copies.iter().enumerate() {
            if loc.state == CopyState::Missing {
                out.copies.push((slot, *loc, CopyVerdict::Missing));
                continue;
            }
            if !want(slot, loc, out.data.is_some()) {
                out.copies.push((slot, *loc, CopyVerdict::Skipped("not read")));
                continue;
            }
            let storage = match self.readable(loc) {
                Ok(s) => s,
                Err(why) => {
                    out.copies.push((slot, *loc, CopyVerdict::Skipped(why)));
                    continue;
                }
            };
            let (buf, read) = match ahead(loc, ptr.size) {
                Some(b) => (b, Ok(())),
                None => {
                    let mut b = vec![0u8; ptr.size as usize];
                    let r = storage.read_at(&mut b, loc.offset);
                    (b, r)
                }
            };
            let m = self.devices.get(loc.device).expect("readable device is a member");
            let v = match read {
                Ok(()) if ptr.check.verify(&buf) => CopyVerdict::Good,
                Ok(()) => {
                    self.count_check_error(m);
                    CopyVerdict::Mismatch
                }
                Err(e) => {
                    if self.count {
                        m.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    CopyVerdict::Io(e.to_string())
                }
            };
            if v == CopyVerdict::Good && out.data.is_none() {
                out.data = Some(buf);
            }
            out.copies.push((slot, *loc, v));
        }
        out
    }

    /// Rewrites the bad copies of `every` from its good content (when healing is on);
    /// returns the slots repaired.
    pub fn heal_bad(&self, ptr: &BlockPtr, every: &EveryCopy) -> Vec<usize> {
        let Some(data) = every.data.as_ref().filter(|_| self.heal) else { return Vec::new() };
        every
            .copies
            .iter()
            .filter(|(_, _, v)| v.is_bad())
            .filter(|(slot, _, _)| heal(self.devices, ptr, *slot, data))
            .map(|(slot, _, _)| *slot)
            .collect()
    }

    /// The first good copy of a block, with nothing counted or healed (for repairs that
    /// need a block's content again after its copies were judged).
    pub fn read_first_good(&self, ptr: &BlockPtr) -> Option<Vec<u8>> {
        for loc in ptr.copies.iter().filter(|l| l.is_valid()) {
            let Ok(storage) = self.readable(loc) else { continue };
            let mut buf = vec![0u8; ptr.size as usize];
            if storage.read_at(&mut buf, loc.offset).is_ok() && ptr.check.verify(&buf) {
                return Some(buf);
            }
        }
        None
    }

    /// True when copy `slot` of a block reads back and verifies (on any device with
    /// storage, whatever its state: a check after rewriting it), with nothing counted.
    pub fn copy_verifies(&self, ptr: &BlockPtr, slot: usize) -> bool {
        let Some(loc) = ptr.copies.as_slice().get(slot) else { return false };
        let mut buf = vec![0u8; ptr.size as usize];
        self.devices
            .get(loc.device)
            .and_then(|m| m.storage())
            .is_some_and(|s| s.read_at(&mut buf, loc.offset).is_ok() && ptr.check.verify(&buf))
    }

    /// Reads many blocks, each from its chosen copy (`slot`), in merged runs per device
    /// (`runs.rs`; one device after the other, in the caller's thread), and hands each
    /// block's verified content to `each(index, content)`. A chosen copy that is not good
    /// (or whose device cannot be read) is dealt with as `on_bad` says; with `Recover`,
    /// `each` gets every block, an error for one whose copies are all bad.
    pub fn read_blocks(&self, blocks: &[BulkBlock<'_>], on_bad: OnBadCopy, each: &mut dyn FnMut(usize, Result<&[u8]>)) {
        let mut per_dev: Vec<Vec<CopyRead>> = (0..self.devices.len()).map(|_| Vec::new()).collect();
        for (i, b) in blocks.iter().enumerate() {
            let loc = b.ptr.copies.as_slice().get(b.slot).copied();
            // A chosen copy that cannot be read is left to the verified read below.
            if let Some(l) = loc.filter(|l| l.is_valid() && self.readable(l).is_ok()) {
                per_dev[usize::from(l.device)].push(CopyRead { offset: l.offset, size: b.ptr.size, tag: i as u32 });
            }
        }
        let mut seen = vec![false; blocks.len()];
        // Blocks whose chosen copy is not good, and why.
        let mut bad: Vec<(usize, Bad)> = Vec::new();
        for (d, mut items) in per_dev.into_iter().enumerate().filter(|(_, items)| !items.is_empty()) {
            let Some(st) = self.devices.get(d as u8).and_then(|m| m.storage()) else { continue };
            read_runs(&*st, &mut items, None, &|| false, &mut |it, r| {
                let i = it.tag as usize;
                seen[i] = true;
                match r {
                    Ok(b) if blocks[i].ptr.check.verify(b) => each(i, Ok(b)),
                    Ok(_) => bad.push((i, Bad::Check)),
                    Err(e) => bad.push((i, Bad::Io(e))),
                }
            });
        }
        if on_bad == OnBadCopy::Skip {
            return;
        }
        for (i, why) in bad {
            let b = &blocks[i];
            let loc = b.ptr.copies.as_slice()[b.slot];
            if let Some(m) = self.devices.get(loc.device) {
                match &why {
                    Bad::Check => self.count_check_error(m),
                    Bad::Io(e) => self.count_read_error(m, e),
                }
            }
            match self.verified_after(b.btype, b.ptr, &b.ctx, vec![(b.slot, why)]) {
                Ok(v) => each(i, Ok(&v)),
                Err(e) => each(i, Err(e)),
            }
        }
        // Chosen copies on a device that could not be read: read like any other block.
        for (i, b) in blocks.iter().enumerate().filter(|(i, _)| !seen[*i]) {
            match self.read_verified(b.btype, b.ptr, &b.ctx) {
                Ok(v) => each(i, Ok(&v)),
                Err(e) => each(i, Err(e)),
            }
        }
    }
}

/// Rewrites copy `slot` of a block with verified content. Returns true when repaired.
pub fn heal(devices: &DeviceSet, ptr: &BlockPtr, slot: usize, data: &[u8]) -> bool {
    let loc = ptr.copies.as_slice()[slot];
    let Some(m) = devices.get(loc.device) else {
        return false;
    };
    let Some(storage) = m.storage().filter(|_| m.writable()) else {
        return false;
    };
    match storage.write_at(data, loc.offset).and_then(|_| storage.flush()) {
        Ok(()) => {
            m.counters.repaired.fetch_add(1, Ordering::Relaxed);
            tracing::info!(device = %m.name(), offset = loc.offset, "repaired copy from a good copy");
            true
        }
        Err(e) => {
            m.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            m.fail(&format!("write error while repairing: {e}"));
            false
        }
    }
}
