//! The state of devices coming back while mounted (`rejoin/`): the reconnect watcher's
//! threads, the devices named at mount that are waited for, and what the last automatic
//! resync did. Declared here, below the rejoin code that keeps it.

use crate::storage::{DeviceSpec, OpenSettings};
use parking_lot::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// The rejoin state of a mounted filesystem: the background threads (the watcher and an
/// automatic resync) and what the last automatic resync did.
#[derive(Default)]
pub(crate) struct State {
    /// A device came back and an automatic resync should catch it up.
    pub(crate) resync_wanted: AtomicBool,
    pub(crate) threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    pub(crate) last_resync: Mutex<Option<super::scans::ResyncReport>>,
    /// Devices named at mount that did not answer, opened again by the watcher (`awaited`).
    pub(crate) awaited: Mutex<Vec<Awaited>>,
}

impl State {
    /// The report of the last automatic resync that finished.
    pub(crate) fn last_resync(&self) -> Option<super::scans::ResyncReport> {
        self.last_resync.lock().clone()
    }
}

/// One device spec waited for.
pub(crate) struct Awaited {
    pub(crate) spec: DeviceSpec,
    pub(crate) settings: OpenSettings,
    pub(crate) next: Instant,
    pub(crate) delay: Duration,
    pub(crate) attempts: u64,
    pub(crate) last_error: String,
}
