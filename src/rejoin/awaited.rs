//! Devices named at mount that did not answer (an NBD server that was down, with `-o
//! degraded`): the mount goes on without them (their members are missing) and the reconnect
//! watcher keeps opening them, with the backoff it gives a failed member, until one answers;
//! it is then taken back through [`super::online`] like a device handed back by `hammer2
//! device online`, which checks whose device it is (R1). Nothing is queued for them meanwhile.

use super::DeviceError;
use super::watcher::{FIRST_DELAY, MAX_DELAY};
use crate::devices::MemberState;
use crate::fs::FsInner;
use crate::fs::rejoin::Awaited;
use crate::storage::{self, DeviceSpec, OpenSettings};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// What `info` says of a device waited for.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AwaitedStatus {
    pub name: String,
    pub attempts: u64,
    pub last_error: String,
}

/// Waits for `spec` (which failed to open at mount with `why`): the watcher opens it again
/// from `FIRST_DELAY` on. A mount with no watcher (read-only) only says it is left out.
pub(crate) fn add(fs: &FsInner, spec: DeviceSpec, settings: OpenSettings, why: String) {
    if fs.vol.read_only || !fs.opts.background_sync {
        // No watcher runs, and a read-only mount takes no device back.
        tracing::warn!("{}: not in service ({why}); a read-only mount does not wait for it", spec.name());
        return;
    }
    tracing::warn!("{}: not in service ({why}); it joins the mount when it answers", spec.name());
    fs.rejoin.awaited.lock().push(Awaited {
        spec,
        settings,
        next: Instant::now() + FIRST_DELAY,
        delay: FIRST_DELAY,
        attempts: 0,
        last_error: why,
    });
}

pub(crate) fn statuses(fs: &FsInner) -> Vec<AwaitedStatus> {
    fs.rejoin
        .awaited
        .lock()
        .iter()
        .map(|a| AwaitedStatus { name: a.spec.name(), attempts: a.attempts, last_error: a.last_error.clone() })
        .collect()
}

/// The watcher's turn: opens every spec whose retry is due and takes back what answers.
/// Opening happens without the list's lock (a connect may take the grace period).
pub(super) fn retry_due(fs: &FsInner) {
    // Every member has its device again (one came back through `hammer2 device online`):
    // nothing is left to wait for.
    if fs.vol.devices.iter().all(|m| m.state() != MemberState::Absent) {
        fs.rejoin.awaited.lock().clear();
        return;
    }
    let now = Instant::now();
    let due: Vec<(DeviceSpec, OpenSettings)> =
        fs.rejoin.awaited.lock().iter().filter(|a| a.next <= now).map(|a| (a.spec.clone(), a.settings)).collect();
    for (spec, settings) in due {
        if fs.stopping.load(Ordering::SeqCst) {
            return;
        }
        let outcome = match storage::open(&spec, settings, &mut |_| {}) {
            Err(e) => Err(e.to_string()),
            Ok(st) => match super::online(fs, st) {
                Ok(r) => {
                    if let Some(m) = fs.vol.devices.get(r.index) {
                        m.reconnect.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                }
                // Taken back meanwhile by `hammer2 device online`.
                Err(DeviceError::AlreadyOnline { .. }) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
        };
        let mut list = fs.rejoin.awaited.lock();
        let Some(i) = list.iter().position(|a| a.spec == spec) else { continue };
        match outcome {
            Ok(()) => {
                list.remove(i);
            }
            Err(why) => {
                let a = &mut list[i];
                a.attempts += 1;
                a.last_error = why;
                a.next = Instant::now() + a.delay;
                a.delay = (a.delay * 2).min(MAX_DELAY);
            }
        }
    }
}
