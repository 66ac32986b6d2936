//! Verified reads across copies, with self-heal.
//!
//! A read tries the VALID copies in slot order and returns the first whose content matches
//! the check value. Every copy tried before it that failed (I/O error or check mismatch) is
//! counted against its device and, unless the mount is read-only, rewritten in place with
//! the good content. Rewriting a live block in place is safe: it only restores bytes the
//! check value already vouches for, so a crash during the rewrite leaves the copy no worse
//! than it was.

use crate::error::{Error, Result};
use crate::volume::Volume;
use hammer2_format::{BlockPtr, BlockType};
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

pub fn read_verified(vol: &Volume, btype: BlockType, ptr: &BlockPtr, ctx: &ReadCtx) -> Result<Vec<u8>> {
    let size = ptr.size as usize;
    let mut bad = Vec::new();
    let mut good: Option<Vec<u8>> = None;
    for (slot, loc) in ptr.copies.iter().enumerate() {
        if !loc.is_valid() {
            continue;
        }
        let Some(m) = vol.devices.get(loc.device) else {
            continue;
        };
        let Some(storage) = m.storage.as_ref().filter(|_| m.readable()) else {
            continue;
        };
        let mut buf = vec![0u8; size];
        match storage.read_at(&mut buf, loc.offset) {
            Ok(()) if ptr.check.verify(&buf) => {
                good = Some(buf);
                break;
            }
            Ok(()) => {
                m.counters.check_errors.fetch_add(1, Ordering::Relaxed);
                bad.push((slot, Bad::Check));
            }
            Err(e) => {
                m.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                if matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENODEV)) {
                    m.fail(&format!("read error: {e}"));
                }
                bad.push((slot, Bad::Io(e)));
            }
        }
    }
    for (slot, why) in &bad {
        let loc = ptr.copies.as_slice()[*slot];
        tracing::warn!(
            device = %vol.devices.get(loc.device).map_or("?".into(), |m| m.name.clone()),
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
    if !vol.read_only && !ctx.no_heal {
        for (slot, _) in &bad {
            heal(vol, ptr, *slot, &data);
        }
    }
    Ok(data)
}

/// Rewrites copy `slot` of a block with verified content. Returns true when repaired.
pub fn heal(vol: &Volume, ptr: &BlockPtr, slot: usize, data: &[u8]) -> bool {
    let loc = ptr.copies.as_slice()[slot];
    let Some(m) = vol.devices.get(loc.device) else {
        return false;
    };
    let Some(storage) = m.storage.as_ref().filter(|_| m.writable()) else {
        return false;
    };
    match storage.write_at(data, loc.offset).and_then(|_| storage.flush()) {
        Ok(()) => {
            m.counters.repaired.fetch_add(1, Ordering::Relaxed);
            tracing::info!(device = %m.name, offset = loc.offset, "repaired copy from a good copy");
            true
        }
        Err(e) => {
            m.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            m.fail(&format!("write error while repairing: {e}"));
            false
        }
    }
}
