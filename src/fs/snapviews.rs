//! The snapshots of the served PFS that a mount shows read-only (`.snapshots`, DESIGN §13
//! "Snapshots under the mount"): one view per snapshot in use, with its own inode cache,
//! reading through the mount's volume and block cache. Declared here, below the VOPs
//! that read through a view (`vnops/snapview.rs`) and the deletion that retires one
//! (`snapshot.rs`).

use super::InodeTable;
use crate::tree::Root;
use hammer2_format::PfsRecord;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// One snapshot in use: its record as the table held it when the view was made (a
/// snapshot's trees never change), and the inodes read from them.
pub struct View {
    pub(crate) record: PfsRecord,
    /// The snapshot's inode index.
    pub(crate) index: Root,
    pub(crate) inodes: InodeTable,
    /// True while the snapshot exists. Every read through the view holds this shared; the
    /// deletion takes it exclusively and clears it before its commit frees a block, so no
    /// read runs on a freed block (SD2).
    pub(crate) live: RwLock<bool>,
    /// Files and directories open in the snapshot (open/opendir not yet released): the
    /// deletion is refused while any is (SD3).
    pub(crate) opens: AtomicU64,
}

impl View {
    pub(crate) fn new(record: PfsRecord) -> View {
        View {
            index: Root::from_ref(&record.inode_root),
            record,
            inodes: InodeTable::default(),
            live: RwLock::new(true),
            opens: AtomicU64::new(0),
        }
    }
}

/// The views of a mount, by the snapshot's record id. The mutex is held while a view is
/// made (the table read) and across a snapshot's deletion (its check and its commit), so
/// no view of a snapshot is made while it is being deleted.
#[derive(Default)]
pub(crate) struct Views {
    pub(crate) by_id: Mutex<HashMap<u64, Arc<View>>>,
    /// Called with a snapshot's name once its deletion is committed (the front end tells
    /// the kernel to forget the name: SD2).
    pub(crate) on_delete: Mutex<Option<DeleteHook>>,
    /// Snapshots that a send is reading now, by name, with how many sends read each: a
    /// deletion is refused while one is (SR7). Taken while `by_id` is held, as the
    /// deletion checks it, so no send starts between a deletion's check and its commit.
    pub(crate) sending: Mutex<HashMap<String, u32>>,
}

/// Holds snapshots against deletion while a send reads them (SR7); released when dropped.
pub(crate) struct SendHold<'a> {
    views: &'a Views,
    names: Vec<String>,
}

impl Views {
    /// Holds `names` (the snapshot sent and its base) until the guard is dropped.
    pub(crate) fn hold_for_send(&self, names: &[&str]) -> SendHold<'_> {
        let _no_deletion_now = self.by_id.lock();
        let mut sending = self.sending.lock();
        for n in names {
            *sending.entry((*n).to_string()).or_default() += 1;
        }
        SendHold { views: self, names: names.iter().map(|n| (*n).to_string()).collect() }
    }
}

impl Drop for SendHold<'_> {
    fn drop(&mut self) {
        let mut sending = self.views.sending.lock();
        for n in &self.names {
            if let Some(c) = sending.get_mut(n) {
                *c -= 1;
                if *c == 0 {
                    sending.remove(n);
                }
            }
        }
    }
}

/// What the front end does when a snapshot of the served PFS is deleted.
pub type DeleteHook = Box<dyn Fn(&str) + Send + Sync>;
