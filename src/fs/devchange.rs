//! The state of a device change running on a mount (`devchange/`: add, remove): which one,
//! so a second is refused (DC1 in docs/DESIGN.md). Declared here, below the code that keeps it.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Default)]
pub(crate) struct State {
    /// A device add or remove runs now.
    busy: AtomicBool,
}

/// Held while a device change runs; lets go when dropped.
pub(crate) struct Claim<'a>(&'a State);

impl State {
    /// Claims the mount for one device change; None while another one runs.
    pub(crate) fn claim(&self) -> Option<Claim<'_>> {
        self.busy.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).ok().map(|_| Claim(self))
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::SeqCst);
    }
}
