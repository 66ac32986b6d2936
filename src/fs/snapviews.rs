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
}

/// What the front end does when a snapshot of the served PFS is deleted.
pub type DeleteHook = Box<dyn Fn(&str) + Send + Sync>;
