//! The reconnect watcher: a background thread per mounted filesystem that tries to reopen
//! every failed member whose storage can be reopened (`Storage::reopen`: a file or disk
//! opened again, an NBD server connected to again), with exponential backoff from
//! `FIRST_DELAY` to `MAX_DELAY`, and takes it back through the same path as `hammer2
//! device online` (`rejoin::online`); so it does the devices named at mount that did not
//! answer (`awaited.rs`). It also starts the automatic resync a device that
//! came back asks for, in a thread of its own.
//!
//! With every device failed (the filesystem takes no changes) it does nothing: only a
//! resync takes devices back then, all together or none (R1). It holds the filesystem
//! weakly and ends when the filesystem stops, so it never keeps the devices open after an
//! unmount.

use crate::devices::MemberState;
use crate::fs::FsInner;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The first retry comes this long after a device failed; each failed retry doubles the
/// wait, up to `MAX_DELAY`.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// How often the watcher looks at the members: a bound on how late a retry or an
/// automatic resync starts, and on how long stopping waits for it.
const TICK: Duration = Duration::from_millis(100);
/// An automatic resync that failed (a device failing again, no space) is tried again after
/// this long, not at once.
const RESYNC_RETRY: Duration = Duration::from_secs(5);

/// The retry schedule of one member that failed. It outlives a successful reopen until the
/// device has stayed in service for `MAX_DELAY`: a device that fails again right after
/// coming back (a full disk, a flapping link) is retried ever more slowly, not every second.
struct Backoff {
    next: Instant,
    delay: Duration,
    /// When it was last taken back (None: it has not come back since it failed).
    back_at: Option<Instant>,
    /// Its storage cannot be reopened: it comes back only when handed back.
    unsupported: bool,
}

pub(super) fn spawn(fs: Weak<FsInner>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("hammer2-reconnect".into())
        .spawn(move || run(&fs))
        .expect("spawning the reconnect watcher thread")
}

fn run(weak: &Weak<FsInner>) {
    let mut backoff: Vec<Option<Backoff>> = Vec::new();
    loop {
        {
            let Some(fs) = weak.upgrade() else { return };
            if fs.stopping.load(Ordering::SeqCst) {
                return;
            }
            backoff.resize_with(fs.vol.devices.len(), || None);
            // With every device failed only a resync takes them back (all together).
            let stalled = fs.stalled.load(Ordering::SeqCst);
            for (m, b) in fs.vol.devices.iter().zip(backoff.iter_mut()) {
                // Only a device that failed and still has its storage: one taken offline
                // by the operator has none, and stays out until handed back.
                let now = Instant::now();
                let Some(st) = m.storage().filter(|_| m.state() == MemberState::Failed && !stalled) else {
                    if b.as_ref().is_none_or(|s| s.back_at.is_none_or(|t| now.duration_since(t) > MAX_DELAY)) {
                        *b = None;
                    }
                    m.reconnect.retrying.store(false, Ordering::SeqCst);
                    continue;
                };
                let sched =
                    b.get_or_insert(Backoff { next: now, delay: FIRST_DELAY, back_at: None, unsupported: false });
                if sched.unsupported {
                    continue;
                }
                if !m.reconnect.retrying.swap(true, Ordering::SeqCst) {
                    // It failed (again): the next retry comes after the current delay.
                    if sched.back_at.take().is_some() {
                        sched.delay = (sched.delay * 2).min(MAX_DELAY);
                    }
                    sched.next = now + sched.delay;
                }
                if now < sched.next {
                    continue;
                }
                let why = match st.reopen() {
                    Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                        // Nothing to retry: it comes back only when handed back.
                        sched.unsupported = true;
                        m.reconnect.retrying.store(false, Ordering::SeqCst);
                        continue;
                    }
                    Err(e) => format!("reopening failed: {e}"),
                    Ok(new) => match super::online(&fs, new) {
                        Ok(_) => {
                            m.reconnect.reconnects.fetch_add(1, Ordering::Relaxed);
                            sched.back_at = Some(Instant::now());
                            continue;
                        }
                        Err(e) => e.to_string(),
                    },
                };
                m.reconnect.attempts.fetch_add(1, Ordering::Relaxed);
                *m.reconnect.last_error.lock() = Some(why);
                sched.delay = (sched.delay * 2).min(MAX_DELAY);
                sched.next = Instant::now() + sched.delay;
            }
            if !stalled {
                super::awaited::retry_due(&fs);
            }
            if fs.opts.autoresync && !stalled && fs.rejoin.resync_wanted.load(Ordering::SeqCst) {
                start_resync(&fs);
            }
        }
        std::thread::sleep(TICK);
    }
}

/// Runs a resync in a thread of its own, unless one this watcher started still runs. One
/// that another caller runs (`hammer2 resync`) refuses it as busy: the wish stays, and it
/// is tried again once that one ended (a device that came back during it may have missed
/// part of its walk, and stays stale until a resync walks everything with it writable).
fn start_resync(fs: &Arc<FsInner>) {
    let mut threads = fs.rejoin.threads.lock();
    // The watcher is the first thread; the others are automatic resyncs.
    if threads.iter().skip(1).any(|t| !t.is_finished()) {
        return;
    }
    let done: Vec<_> = threads.drain(1..).collect();
    for t in done {
        let _ = t.join();
    }
    fs.rejoin.resync_wanted.store(false, Ordering::SeqCst);
    let fs2 = fs.clone();
    let spawned = std::thread::Builder::new().name("hammer2-autoresync".into()).spawn(move || {
        let fs = &*fs2;
        match crate::resync::run(fs, Default::default(), &mut |_| {}) {
            Ok(rep) => {
                tracing::warn!(
                    copied_blocks = rep.counts.copied_blocks,
                    copied_bytes = rep.counts.copied_bytes,
                    visited = rep.counts.visited,
                    commits = rep.commits,
                    seconds = rep.seconds,
                    "automatic resync done: {} in sync",
                    rep.synced.join(", ")
                );
                *fs.rejoin.last_resync.lock() = Some(rep);
            }
            Err(crate::Error::Busy(_)) => fs.rejoin.resync_wanted.store(true, Ordering::SeqCst),
            Err(e) => {
                if !fs.stopping.load(Ordering::SeqCst) {
                    tracing::warn!("automatic resync did not finish: {e}; trying again in {RESYNC_RETRY:?}");
                    let until = Instant::now() + RESYNC_RETRY;
                    while Instant::now() < until && !fs.stopping.load(Ordering::SeqCst) {
                        std::thread::sleep(TICK);
                    }
                    fs.rejoin.resync_wanted.store(true, Ordering::SeqCst);
                }
            }
        }
        // A device that came back while it ran is still stale: catch it up too.
        if fs.vol.devices.iter().any(|m| m.state() == MemberState::Stale) {
            fs.rejoin.resync_wanted.store(true, Ordering::SeqCst);
        }
    });
    match spawned {
        Ok(h) => threads.push(h),
        Err(e) => {
            tracing::warn!("no automatic resync thread: {e}");
            fs.rejoin.resync_wanted.store(true, Ordering::SeqCst);
        }
    }
}
