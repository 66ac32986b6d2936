//! The member devices of a mounted filesystem: their storage, runtime state and error
//! counters.
//!
//! State rules (enforced here, relied on by placement and commit):
//! - Writes go only to `Online` and `Stale` devices. A copy that would go to a `Failed` or
//!   `Absent` device is recorded as MISSING in its block reference instead; nothing is
//!   queued in memory for it (the seed's "queueless" rule).
//! - A device becomes `Failed` on its first write or flush error, or when it vanishes; it
//!   stays failed until it rejoins (R1: a resync finds it answering, `hammer2 device
//!   online` hands it back, or the reconnect watcher reopens it; `src/rejoin/`), or until
//!   the filesystem is mounted again.
//! - `missed_since` is the first commit a device missed; while it is non-zero the tree holds
//!   MISSING copies for that device and a resync must run before it is `Online` again.
//! - O1 (DESIGN §7): what a member is reached through (its storage and name) is replaced
//!   only by `attach`/`detach`, called with the commit lock held; readers take a clone of
//!   the storage, so I/O in flight finishes on the storage it started with.

use crate::storage::DynStorage;
use hammer2_format::{DeviceEntry, DeviceState};
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Present and fully in sync.
    Online,
    /// Present and written to, but still missing blocks of commits it missed.
    Stale,
    /// Present and written to, but it was modified apart from the master (split brain):
    /// none of its older copies can be trusted until a resync has verified them.
    Diverged,
    /// Present, but failed during this mount: not written to any more.
    Failed,
    /// Not present in this mount (degraded mount or unrecognizable device).
    Absent,
    /// Removed by `device remove` (format version 2): no reference names it; its index
    /// stays allocated. Never read, written or waited for.
    Removed,
}

impl MemberState {
    fn code(self) -> u8 {
        match self {
            MemberState::Online => 0,
            MemberState::Stale => 1,
            MemberState::Failed => 2,
            MemberState::Absent => 3,
            MemberState::Diverged => 4,
            MemberState::Removed => 5,
        }
    }
    fn from_code(c: u8) -> MemberState {
        match c {
            0 => MemberState::Online,
            1 => MemberState::Stale,
            2 => MemberState::Failed,
            4 => MemberState::Diverged,
            5 => MemberState::Removed,
            _ => MemberState::Absent,
        }
    }
    pub fn writable(self) -> bool {
        matches!(self, MemberState::Online | MemberState::Stale | MemberState::Diverged)
    }
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Online => "online",
            MemberState::Stale => "stale",
            MemberState::Diverged => "diverged",
            MemberState::Failed => "failed",
            MemberState::Absent => "missing",
            MemberState::Removed => "removed",
        }
    }
}

/// Cumulative error counters of one device (persisted in every header's device table).
#[derive(Debug, Default)]
pub struct Counters {
    pub read_errors: AtomicU64,
    pub write_errors: AtomicU64,
    pub check_errors: AtomicU64,
    pub repaired: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CounterSnapshot {
    pub read_errors: u64,
    pub write_errors: u64,
    pub check_errors: u64,
    pub repaired: u64,
}

/// What a member is reached through: replaced as a whole (O1).
struct Attached {
    storage: Option<DynStorage>,
    /// Display name: the path it was opened from, or "(missing)".
    name: String,
}

/// The reconnect watcher's view of one member (`rejoin/watcher.rs`), shown by `info`.
#[derive(Debug, Default)]
pub struct Reconnect {
    /// The watcher is retrying to reopen it now.
    pub retrying: AtomicBool,
    /// Times it was reopened and taken back while mounted.
    pub reconnects: AtomicU64,
    /// Reopen attempts that failed since it last failed.
    pub attempts: AtomicU64,
    /// Why it last failed, or why the last reopen failed.
    pub last_error: Mutex<Option<String>>,
    /// `hammer2 device offline` took it out (until `device online` brings it back), so
    /// `status` says OFFLINE, as zpool does, not FAILED: nothing is wrong with it.
    pub offlined: AtomicBool,
}

pub struct Member {
    pub index: u8,
    attached: RwLock<Attached>,
    /// Whether `attached` holds a storage: read on every placement and copy read, so kept
    /// apart from the lock (set under it).
    present: AtomicBool,
    pub uuid: [u8; 16],
    pub size: u64,
    pub regions: u8,
    state: AtomicU8,
    /// Counts the times it failed or was attached again: a resync takes a device for
    /// caught up only if this did not change during its last walk (O1).
    epoch: AtomicU64,
    /// First tid this device missed (0: in sync).
    missed_since: AtomicU64,
    /// Last tid whose header this device holds.
    synced_tid: AtomicU64,
    /// The tid of its newest header when the mount found it rolled back to an older copy of
    /// itself (DESIGN §8), 0 otherwise: shown by `info` until resync has verified it.
    rolled_back: AtomicU64,
    /// Its header slots hold headers of a history the master discarded (a diverged or
    /// replaced device): the first header of this mount written to it is followed by
    /// clearing its other slots (DESIGN §8, H1).
    foreign_slots: AtomicBool,
    /// It receives no new copies (placement weight none): a `device remove` is moving its
    /// copies away (`devchange/`).
    draining: AtomicBool,
    /// Added by a `device add` whose commit is not durable yet: written by commits (it is
    /// online), recorded `joining`, given no copies (A1 in docs/DESIGN.md).
    joining: AtomicBool,
    pub counters: Counters,
    pub reconnect: Reconnect,
    /// Serializes the "mark failed" transition so it is logged once.
    fail_lock: Mutex<()>,
}

impl Member {
    pub fn new(
        index: u8,
        storage: Option<DynStorage>,
        entry: &DeviceEntry,
        state: MemberState,
        name: String,
    ) -> Member {
        let m = Member {
            index,
            present: AtomicBool::new(storage.is_some()),
            attached: RwLock::new(Attached { storage, name }),
            uuid: entry.uuid,
            size: entry.size,
            regions: entry.regions,
            state: AtomicU8::new(state.code()),
            epoch: AtomicU64::new(0),
            missed_since: AtomicU64::new(entry.missed_since),
            synced_tid: AtomicU64::new(entry.synced_tid),
            rolled_back: AtomicU64::new(0),
            foreign_slots: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            joining: AtomicBool::new(false),
            counters: Counters::default(),
            reconnect: Reconnect::default(),
            fail_lock: Mutex::new(()),
        };
        m.counters.read_errors.store(u64::from(entry.read_errors), Ordering::Relaxed);
        m.counters.write_errors.store(u64::from(entry.write_errors), Ordering::Relaxed);
        m.counters.check_errors.store(u64::from(entry.check_errors), Ordering::Relaxed);
        m.counters.repaired.store(u64::from(entry.repaired), Ordering::Relaxed);
        m
    }

    /// The storage it is reached through now (None: absent or taken offline). The clone
    /// keeps it open for the caller's I/O even if it is replaced meanwhile (O1).
    pub fn storage(&self) -> Option<DynStorage> {
        self.attached.read().storage.clone()
    }
    pub fn has_storage(&self) -> bool {
        self.present.load(Ordering::SeqCst)
    }
    /// Display name: the path it was opened from, or "(missing)".
    pub fn name(&self) -> String {
        self.attached.read().name.clone()
    }
    /// Installs the storage it is reached through from now on. O1: the caller holds the
    /// commit lock (`rejoin`), so no commit sees the member change under it.
    pub(crate) fn attach(&self, storage: DynStorage) {
        let name = storage.name();
        let mut a = self.attached.write();
        *a = Attached { storage: Some(storage), name };
        self.present.store(true, Ordering::SeqCst);
        drop(a);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
    /// See the field.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }
    /// Lets go of its storage (taken offline). O1: the caller holds the commit lock. The
    /// storage closes when the last I/O in flight on it drops its clone.
    pub(crate) fn detach(&self) {
        let mut a = self.attached.write();
        a.storage = None;
        self.present.store(false, Ordering::SeqCst);
    }

    pub fn state(&self) -> MemberState {
        MemberState::from_code(self.state.load(Ordering::SeqCst))
    }
    pub fn set_state(&self, s: MemberState) {
        self.state.store(s.code(), Ordering::SeqCst);
    }
    pub fn writable(&self) -> bool {
        self.has_storage() && self.state().writable()
    }
    /// Whether placement may give it copies of new blocks (it is not being removed).
    pub fn takes_new_copies(&self) -> bool {
        !self.draining.load(Ordering::SeqCst)
            && !self.joining.load(Ordering::SeqCst)
            && self.state() != MemberState::Removed
    }
    pub fn joining(&self) -> bool {
        self.joining.load(Ordering::SeqCst)
    }
    pub(crate) fn set_joining(&self, v: bool) {
        self.joining.store(v, Ordering::SeqCst);
    }
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
    pub(crate) fn set_draining(&self, v: bool) {
        self.draining.store(v, Ordering::SeqCst);
    }
    pub fn readable(&self) -> bool {
        self.has_storage() && self.state() != MemberState::Absent
    }
    pub fn missed_since(&self) -> u64 {
        self.missed_since.load(Ordering::SeqCst)
    }
    pub fn set_missed_since(&self, tid: u64) {
        self.missed_since.store(tid, Ordering::SeqCst);
    }
    pub fn synced_tid(&self) -> u64 {
        self.synced_tid.load(Ordering::SeqCst)
    }
    pub fn set_synced_tid(&self, tid: u64) {
        self.synced_tid.store(tid, Ordering::SeqCst);
    }
    /// The tid of its newest header when it was found rolled back (0: it was not).
    pub fn rolled_back(&self) -> u64 {
        self.rolled_back.load(Ordering::SeqCst)
    }
    pub fn set_rolled_back(&self, header_tid: u64) {
        self.rolled_back.store(header_tid, Ordering::SeqCst);
    }
    /// Whether its other header slots still have to be cleared once a header of this mount
    /// is durable on it.
    pub fn foreign_slots(&self) -> bool {
        self.foreign_slots.load(Ordering::SeqCst)
    }
    pub fn set_foreign_slots(&self, v: bool) {
        self.foreign_slots.store(v, Ordering::SeqCst);
    }

    /// Takes a device out of service after a write or flush error. Returns true the first
    /// time (the caller logs it).
    pub fn fail(&self, why: &str) -> bool {
        let _g = self.fail_lock.lock();
        if matches!(self.state(), MemberState::Failed | MemberState::Absent | MemberState::Removed) {
            return false;
        }
        self.set_state(MemberState::Failed);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        *self.reconnect.last_error.lock() = Some(why.to_string());
        self.reconnect.attempts.store(0, Ordering::Relaxed);
        tracing::error!(device = %self.name(), index = self.index, "device failed: {why}; continuing on the remaining copies");
        true
    }

    pub fn counters(&self) -> CounterSnapshot {
        CounterSnapshot {
            read_errors: self.counters.read_errors.load(Ordering::Relaxed),
            write_errors: self.counters.write_errors.load(Ordering::Relaxed),
            check_errors: self.counters.check_errors.load(Ordering::Relaxed),
            repaired: self.counters.repaired.load(Ordering::Relaxed),
        }
    }

    /// The persisted view of this device for a header written at commit `tid`.
    pub fn entry(&self, free_units: u64) -> DeviceEntry {
        let c = self.counters();
        let sat = |v: u64| v.min(u64::from(u32::MAX)) as u32;
        let state = match self.state() {
            MemberState::Online if self.joining() => DeviceState::Joining,
            MemberState::Online => DeviceState::Online,
            MemberState::Stale => DeviceState::Stale,
            MemberState::Diverged => DeviceState::Diverged,
            MemberState::Failed | MemberState::Absent => DeviceState::Failed,
            MemberState::Removed => DeviceState::Removed,
        };
        DeviceEntry {
            uuid: self.uuid,
            size: self.size,
            synced_tid: self.synced_tid(),
            free_units,
            missed_since: self.missed_since(),
            read_errors: sat(c.read_errors),
            write_errors: sat(c.write_errors),
            check_errors: sat(c.check_errors),
            repaired: sat(c.repaired),
            regions: self.regions,
            state,
        }
    }
}

/// The member devices, indexed by device number. The set only grows while mounted (a
/// `device add`, `devchange/`): a member once in it stays at its index, so a reference to
/// it stays valid for the mount's lifetime; `push` is called with the commit lock held
/// (O1), so a commit sees the set before or after an add, never half of it.
pub struct DeviceSet {
    slots: Box<[std::sync::OnceLock<Member>]>,
    len: std::sync::atomic::AtomicUsize,
}

impl DeviceSet {
    pub fn new(members: Vec<Member>) -> DeviceSet {
        let slots: Box<[std::sync::OnceLock<Member>]> =
            (0..hammer2_format::layout::MAX_DEVICES).map(|_| std::sync::OnceLock::new()).collect();
        let len = members.len();
        for (s, m) in slots.iter().zip(members) {
            let _ = s.set(m);
        }
        DeviceSet { slots, len: std::sync::atomic::AtomicUsize::new(len) }
    }
    pub fn get(&self, index: u8) -> Option<&Member> {
        if usize::from(index) >= self.len() {
            return None;
        }
        self.slots.get(usize::from(index)).and_then(|s| s.get())
    }
    /// Every member, in index order.
    pub fn iter(&self) -> impl Iterator<Item = &Member> + '_ {
        self.slots[..self.len()].iter().filter_map(|s| s.get())
    }
    pub fn len(&self) -> usize {
        self.len.load(Ordering::SeqCst)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn writable_count(&self) -> usize {
        self.iter().filter(|m| m.writable()).count()
    }
    /// Adds `m` as the next member (its index must be `len()`). The caller holds the commit
    /// lock (O1). False (nothing added) when the table is full or the index is not next.
    pub(crate) fn push(&self, m: Member) -> bool {
        let i = self.len();
        if usize::from(m.index) != i || i >= self.slots.len() || self.slots[i].set(m).is_err() {
            return false;
        }
        self.len.store(i + 1, Ordering::SeqCst);
        true
    }
}

impl std::ops::Index<usize> for DeviceSet {
    type Output = Member;
    fn index(&self, i: usize) -> &Member {
        self.get(i as u8).expect("device index within the device set")
    }
}
