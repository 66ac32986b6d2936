//! Fault injection around a real storage: I/O errors on reads or writes (at chosen ranges
//! or at random), silent bit flips on reads, and a device that vanishes. Every injected
//! fault is counted so tests can report how many they caused.

use super::{DynStorage, Storage};
use parking_lot::Mutex;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What to inject. Ranges are byte ranges `[start, end)` on the device.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    pub read_error_ranges: Vec<(u64, u64)>,
    pub write_error_ranges: Vec<(u64, u64)>,
    /// Reads overlapping these ranges return data with one bit flipped, and no error.
    pub bitflip_ranges: Vec<(u64, u64)>,
    /// Probability (0..=1) that any read fails / any write fails / any read is corrupted.
    pub read_error_rate: f64,
    pub write_error_rate: f64,
    pub bitflip_rate: f64,
    /// Offsets below this are never faulted at random (e.g. the header area).
    pub random_floor: u64,
    /// When not empty, random faults hit only I/O lying entirely inside one of these ranges
    /// (e.g. one copy region of a device, so the other copies sharing it stay good).
    pub random_ranges: Vec<(u64, u64)>,
    /// Fail every flush.
    pub flush_errors: bool,
}

#[derive(Debug, Default)]
pub struct FaultCounts {
    pub read_errors: AtomicU64,
    pub write_errors: AtomicU64,
    pub bitflips: AtomicU64,
    pub flush_errors: AtomicU64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.read_errors.load(Ordering::Relaxed)
            + self.write_errors.load(Ordering::Relaxed)
            + self.bitflips.load(Ordering::Relaxed)
            + self.flush_errors.load(Ordering::Relaxed)
    }
}

/// The switches and counters are shared with every storage `reopen` makes of it: the test
/// that holds the first one keeps driving the device after it was reopened.
pub struct FaultyStorage {
    inner: DynStorage,
    plan: Arc<Mutex<FaultPlan>>,
    vanished: Arc<AtomicBool>,
    rng: Arc<Mutex<u64>>,
    pub counts: Arc<FaultCounts>,
}

fn overlaps(ranges: &[(u64, u64)], off: u64, len: usize) -> bool {
    let end = off + len as u64;
    ranges.iter().any(|&(s, e)| off < e && s < end)
}

impl FaultPlan {
    /// May an I/O of `len` bytes at `off` be faulted at random?
    fn random_allowed(&self, off: u64, len: usize) -> bool {
        let end = off + len as u64;
        off >= self.random_floor
            && (self.random_ranges.is_empty() || self.random_ranges.iter().any(|&(s, e)| s <= off && end <= e))
    }
}

impl FaultyStorage {
    pub fn new(inner: DynStorage, seed: u64) -> FaultyStorage {
        FaultyStorage {
            inner,
            plan: Arc::new(Mutex::new(FaultPlan::default())),
            vanished: Arc::new(AtomicBool::new(false)),
            rng: Arc::new(Mutex::new(seed | 1)),
            counts: Arc::new(FaultCounts::default()),
        }
    }

    pub fn set_plan(&self, plan: FaultPlan) {
        *self.plan.lock() = plan;
    }
    pub fn plan(&self) -> FaultPlan {
        self.plan.lock().clone()
    }
    /// Every I/O fails until `reappear`.
    pub fn vanish(&self) {
        self.vanished.store(true, Ordering::SeqCst);
    }
    pub fn reappear(&self) {
        self.vanished.store(false, Ordering::SeqCst);
    }
    pub fn inner(&self) -> &DynStorage {
        &self.inner
    }

    fn chance(&self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let mut s = self.rng.lock();
        // xorshift64*: deterministic per seed, good enough to scatter faults.
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        ((*s >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn vanished_error() -> io::Error {
        io::Error::from_raw_os_error(libc::ENXIO)
    }
}

impl Storage for FaultyStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.vanished.load(Ordering::SeqCst) {
            self.counts.read_errors.fetch_add(1, Ordering::Relaxed);
            return Err(Self::vanished_error());
        }
        let plan = self.plan.lock().clone();
        let random_ok = plan.random_allowed(offset, buf.len());
        if overlaps(&plan.read_error_ranges, offset, buf.len()) || (random_ok && self.chance(plan.read_error_rate)) {
            self.counts.read_errors.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.read_at(buf, offset)?;
        if !buf.is_empty()
            && (overlaps(&plan.bitflip_ranges, offset, buf.len()) || (random_ok && self.chance(plan.bitflip_rate)))
        {
            self.counts.bitflips.fetch_add(1, Ordering::Relaxed);
            let i = (offset as usize).wrapping_mul(31) % buf.len();
            buf[i] ^= 0x10;
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_vectored_at(&[buf], offset)
    }

    fn write_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if self.vanished.load(Ordering::SeqCst) {
            self.counts.write_errors.fetch_add(1, Ordering::Relaxed);
            return Err(Self::vanished_error());
        }
        let plan = self.plan.lock().clone();
        if overlaps(&plan.write_error_ranges, offset, len)
            || (plan.random_allowed(offset, len) && self.chance(plan.write_error_rate))
        {
            self.counts.write_errors.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.write_vectored_at(bufs, offset)
    }

    fn flush(&self) -> io::Result<()> {
        if self.vanished.load(Ordering::SeqCst) || self.plan.lock().flush_errors {
            self.counts.flush_errors.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.flush()
    }

    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn name(&self) -> String {
        self.inner.name()
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.vanished.load(Ordering::SeqCst) {
            return Err(Self::vanished_error());
        }
        self.inner.discard(offset, len)
    }

    /// Fails while the device has vanished; afterwards a storage with the same switches
    /// over the inner device reopened (or the same inner device, where it cannot be: an
    /// in-memory one).
    fn reopen(&self) -> io::Result<DynStorage> {
        if self.vanished.load(Ordering::SeqCst) {
            return Err(Self::vanished_error());
        }
        let inner = match self.inner.reopen() {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::Unsupported => self.inner.clone(),
            Err(e) => return Err(e),
        };
        Ok(Arc::new(FaultyStorage {
            inner,
            plan: self.plan.clone(),
            vanished: self.vanished.clone(),
            rng: self.rng.clone(),
            counts: self.counts.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::mem::MemStorage;

    #[test]
    fn random_faults_confined_to_ranges_hit_only_io_wholly_inside_them() {
        let f = FaultyStorage::new(Arc::new(MemStorage::new(4 << 20, "mem")), 1);
        f.set_plan(FaultPlan {
            read_error_rate: 1.0,
            write_error_rate: 1.0,
            random_ranges: vec![(1 << 20, 2 << 20)],
            ..Default::default()
        });
        let mut b = [0u8; 4096];
        assert!(f.read_at(&mut b, 0).is_ok(), "before the range");
        assert!(f.read_at(&mut b, (2 << 20) - 2048).is_ok(), "straddling its end");
        assert!(f.read_at(&mut b, 3 << 20).is_ok(), "after the range");
        assert!(f.write_at(&b, 3 << 20).is_ok());
        assert!(f.read_at(&mut b, 1 << 20).is_err(), "inside the range");
        assert!(f.write_at(&b, (1 << 20) + 4096).is_err());
        assert_eq!(f.counts.total(), 2);
    }
}
