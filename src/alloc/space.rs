//! Space reservations: user operations reserve the units their dirty state will need when
//! committed, so that a full device is reported as ENOSPC at write(2) time and a commit
//! never runs out of space half way.
//!
//! `capacity` is published by the commit path after each commit (units that can still be
//! placed with full redundancy). A slice of it (`meta_reserve`) is kept back for the
//! copy-on-write of tree paths and free-map leaves that every commit needs, including the
//! commits that delete files to make room.

use std::sync::atomic::{AtomicU64, Ordering};

pub struct Space {
    capacity: AtomicU64,
    reserved: AtomicU64,
    meta_reserve: AtomicU64,
}

impl Space {
    pub fn new(capacity: u64, meta_reserve: u64) -> Space {
        Space {
            capacity: AtomicU64::new(capacity),
            reserved: AtomicU64::new(0),
            meta_reserve: AtomicU64::new(meta_reserve),
        }
    }

    pub fn publish_capacity(&self, units: u64) {
        self.capacity.store(units, Ordering::SeqCst);
    }

    pub fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::SeqCst)
    }

    pub fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::SeqCst)
    }

    pub fn meta_reserve(&self) -> u64 {
        self.meta_reserve.load(Ordering::SeqCst)
    }

    /// Units available to new reservations.
    pub fn available(&self) -> u64 {
        self.capacity().saturating_sub(self.reserved()).saturating_sub(self.meta_reserve())
    }

    pub fn try_reserve(&self, units: u64) -> bool {
        let mut cur = self.reserved.load(Ordering::SeqCst);
        loop {
            if cur + units + self.meta_reserve() > self.capacity() {
                return false;
            }
            match self.reserved.compare_exchange(cur, cur + units, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Reserves even past the limit (metadata of operations that free space, e.g. unlink).
    pub fn force_reserve(&self, units: u64) {
        self.reserved.fetch_add(units, Ordering::SeqCst);
    }

    pub fn release(&self, units: u64) {
        let mut cur = self.reserved.load(Ordering::SeqCst);
        loop {
            let new = cur.saturating_sub(units);
            match self.reserved.compare_exchange(cur, new, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }
}
