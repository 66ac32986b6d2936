//! Space reservations: user operations reserve the units their dirty state will need when
//! committed, so that a full device is reported as ENOSPC at write(2) time and a commit
//! never runs out of space half way (DESIGN §10, S1-S3).
//!
//! `capacity` is published by the commit path after each commit: whole free slots, in
//! units, in the fullest copy domain (`Placement::capacity_units`). Free units outside
//! whole slots are not counted, since a block may need a whole slot's contiguous units.
//! Reservations are charged per block (S2): a data block takes its own size in units (data
//! blocks of one size pack a slot exactly), any other block a whole slot (`meta_blocks`).
//! A slice of the capacity (`meta_reserve`) is kept back for the copy-on-write of tree
//! paths and free-map leaves that every commit needs, including the commits that delete
//! files to make room (S3).

use std::sync::atomic::{AtomicU64, Ordering};

pub struct Space {
    capacity: AtomicU64,
    /// Every free unit by the capacity rule, whole slots or not (S5): what `statfs`
    /// reports free. Published with `capacity`.
    free: AtomicU64,
    reserved: AtomicU64,
    meta_reserve: AtomicU64,
    /// Units of a slot.
    slot: u64,
    /// Units a data block is charged.
    data_block: u64,
}

impl Space {
    pub fn new(capacity: u64, free: u64, meta_reserve: u64, slot: u64, data_block: u64) -> Space {
        Space {
            capacity: AtomicU64::new(capacity),
            free: AtomicU64::new(free),
            reserved: AtomicU64::new(0),
            meta_reserve: AtomicU64::new(meta_reserve),
            slot: slot.max(1),
            data_block: data_block.max(1),
        }
    }

    /// Units to reserve for `n` blocks other than file data (inodes, names, xattrs, nodes):
    /// a slot each, since one may open a slot of its own (S2).
    pub fn meta_blocks(&self, n: u64) -> u64 {
        n * self.slot
    }

    /// Units to reserve for `n` file data blocks, whatever part of each is written (S2).
    pub fn data_blocks(&self, n: u64) -> u64 {
        n * self.data_block
    }

    pub fn slot(&self) -> u64 {
        self.slot
    }

    /// After a commit: the capacity (whole free slots) and every free unit.
    pub fn publish_capacity(&self, units: u64, free: u64) {
        self.capacity.store(units, Ordering::SeqCst);
        self.free.store(free, Ordering::SeqCst);
    }

    pub fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::SeqCst)
    }

    /// Every free unit (S5), whole slots or not.
    pub fn free(&self) -> u64 {
        self.free.load(Ordering::SeqCst)
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
