//! Remounting read-only or read-write: the one change of a mount's mode that commits, so it
//! lives with the commit (the in-memory state in `fs/` sits below the commit and does not
//! call it).

use crate::error::{Error, Result};
use crate::fs::FsInner;
use std::sync::atomic::Ordering;

impl FsInner {
    /// `mount -o remount,ro|rw` (invariant RO1, docs/DESIGN.md §12). Read-only: every change
    /// is refused with EROFS from now on,
    /// and what came before (atimes included) is committed with clean headers, as an unmount
    /// leaves them. Read-write: changes are taken again. A mount whose devices were opened
    /// read-only (`-o ro` from the start) cannot become writable.
    pub fn remount(&self, read_only: bool) -> Result<()> {
        if !read_only {
            if self.vol.read_only {
                return Err(Error::invalid("mounted with -o ro: unmount and mount it read-write"));
            }
            self.remounted_ro.store(false, Ordering::SeqCst);
            return Ok(());
        }
        self.remounted_ro.store(true, Ordering::SeqCst);
        if self.vol.read_only {
            return Ok(());
        }
        // The commit takes the gate exclusively, so operations inside it finish first and are
        // committed. (The kernel has already refused new writers: it made the mount read-only
        // before the daemon is told, and that fails while a write is in progress.)
        self.queue_atimes();
        super::commit(self, true, true).map(|_| ())
    }
}
