//! Devices back in service while mounted, and out of it on request (DESIGN §7, O1 and O2).
//!
//! - [`online`]: a device handed back (by `hammer2 device online`, or reopened by the
//!   reconnect watcher, `watcher.rs`) is recognized by its header, checked with the rule a
//!   resync uses for a failed device that answers again (R1, `resync::holds_what_we_wrote`),
//!   installed as the member's storage and marked stale; a resync then catches it up
//!   (started by itself unless `Options::autoresync` is off).
//! - [`offline`]: a device taken out of service as a failure would take it, and its storage
//!   let go of, refused when some block would be left without a good copy.
//!
//! Both change a member's storage and state with the commit lock held (O1), so every commit
//! sees each member either before or after the change, never half of it.

pub(crate) mod awaited;
pub(crate) mod watcher;

pub use awaited::AwaitedStatus;

use crate::devices::{Member, MemberState};
use crate::error::Error;
use crate::fs::FsInner;
use crate::storage::DynStorage;
use std::sync::atomic::Ordering;

/// Why a device is not taken back or out.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{0} holds no valid hammer2 volume header")]
    NotHammer2(String),
    #[error("{0} belongs to another hammer2 filesystem")]
    OtherFilesystem(String),
    #[error("{0} belongs to this filesystem's uuid but is none of its member devices")]
    NotAMember(String),
    #[error("{name} is device {index} of this filesystem, which is already in service ({state})")]
    AlreadyOnline { name: String, index: u8, state: &'static str },
    #[error("{name} is smaller than device {index} was ({size} < {expected} bytes)")]
    TooSmall { name: String, index: u8, size: u64, expected: u64 },
    #[error("{name} is not taken back: {why}; unmount and mount again to bring it back")]
    NotWhatWeWrote { name: String, why: String },
    #[error("no device {0} in this filesystem")]
    NoSuchDevice(u8),
    #[error("device {index} ({name}) is already out of service ({state})")]
    AlreadyOffline { name: String, index: u8, state: &'static str },
    #[error("device {index} ({name}) is not taken offline: {why}")]
    LastCopy { name: String, index: u8, why: String },
    #[error("the filesystem is read-only")]
    ReadOnly,
    #[error(
        "every device failed and the filesystem takes no changes: run hammer2 resync on the mount once its devices \
         answer (it takes them back together, or none)"
    )]
    Stalled,
    #[error(transparent)]
    Engine(#[from] Error),
}

/// What [`online`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Onlined {
    pub index: u8,
    pub name: String,
    /// The first commit it missed (it is caught up from there).
    pub missed_since: u64,
    /// A resync was asked for (`Options::autoresync`); it runs in the background.
    pub resync_started: bool,
}

/// Takes `storage` back as the member device whose header it holds (see the module doc).
pub(crate) fn online(fs: &FsInner, storage: DynStorage) -> Result<Onlined, DeviceError> {
    if fs.vol.read_only || fs.remounted_ro.load(Ordering::SeqCst) {
        return Err(DeviceError::ReadOnly);
    }
    let name = storage.name();
    let probe = crate::mount::probe(storage.clone());
    let h = probe.header.as_ref().ok_or_else(|| DeviceError::NotHammer2(name.clone()))?;
    if h.fs_uuid != fs.vol.params.fs_uuid {
        return Err(DeviceError::OtherFilesystem(name));
    }
    let m = fs
        .vol
        .devices
        .iter()
        .find(|m| m.uuid == h.device_uuid && usize::from(m.index) == usize::from(h.device_index))
        .ok_or_else(|| DeviceError::NotAMember(name.clone()))?;
    if storage.size() < m.size {
        return Err(DeviceError::TooSmall { name, index: m.index, size: storage.size(), expected: m.size });
    }
    // O1: no commit runs while the member changes, and the roots R1 compares with are the
    // last ones committed.
    let _no_commit = fs.commit_lock.lock();
    if fs.stalled.load(Ordering::SeqCst) {
        // With no device writable, the commit this mount retries may have left its header
        // on some device: taking back one device alone could commit another tree under that
        // tid. Resync's rejoin takes them back all together or not at all.
        return Err(DeviceError::Stalled);
    }
    let state = m.state();
    if state.writable() {
        return Err(DeviceError::AlreadyOnline { name, index: m.index, state: state.name() });
    }
    if state == MemberState::Removed {
        return Err(DeviceError::NotAMember(name));
    }
    let roots = fs.roots.read().clone();
    if h.tid > m.synced_tid() {
        // Mount's rule (DESIGN §8): a commit this filesystem never wrote to it.
        return Err(DeviceError::NotWhatWeWrote {
            name,
            why: format!(
                "it holds commit {}, which this filesystem never wrote to it (it was changed apart: diverged)",
                h.tid
            ),
        });
    }
    crate::resync::holds_what_we_wrote(fs, m, &probe, &roots)
        .map_err(|why| DeviceError::NotWhatWeWrote { name: name.clone(), why })?;
    m.attach(storage);
    if m.missed_since() == 0 {
        m.set_missed_since(roots.tid);
    }
    m.reconnect.offlined.store(false, Ordering::SeqCst);
    m.set_state(MemberState::Stale);
    m.reconnect.retrying.store(false, Ordering::SeqCst);
    m.reconnect.attempts.store(0, Ordering::Relaxed);
    let resync_started = fs.opts.autoresync;
    tracing::warn!(
        device = %name,
        index = m.index,
        "device back in service as stale (missed commits since {}){}",
        m.missed_since(),
        if resync_started { "; resyncing" } else { "; run hammer2 resync to catch it up" }
    );
    if resync_started {
        fs.rejoin.resync_wanted.store(true, Ordering::SeqCst);
    }
    Ok(Onlined { index: m.index, name, missed_since: m.missed_since(), resync_started })
}

/// Takes device `index` out of service as a failure would (its copies of new blocks are
/// recorded MISSING, nothing is queued for it) and lets go of its storage; the watcher
/// leaves it alone. Refused when a block could be left without a good copy: every block
/// must keep one on a device that stays online (O2, DESIGN §7).
pub(crate) fn offline(fs: &FsInner, index: u8) -> Result<String, DeviceError> {
    if fs.vol.read_only || fs.remounted_ro.load(Ordering::SeqCst) {
        return Err(DeviceError::ReadOnly);
    }
    let m = fs.vol.devices.get(index).ok_or(DeviceError::NoSuchDevice(index))?;
    {
        let _no_commit = fs.commit_lock.lock();
        let state = m.state();
        if !m.has_storage() || state == MemberState::Absent {
            return Err(DeviceError::AlreadyOffline { name: m.name(), index, state: state.name() });
        }
        if state.writable() {
            if let Some(why) = would_lose_copies(fs, m) {
                return Err(DeviceError::LastCopy { name: m.name(), index, why });
            }
            m.fail("taken offline by the operator");
        }
        m.reconnect.offlined.store(true, Ordering::SeqCst);
        m.detach();
        m.reconnect.retrying.store(false, Ordering::SeqCst);
    }
    // The device tables on the others record it as failed from now on.
    crate::commit::commit(fs, true, false)?;
    Ok(m.name())
}

/// O2: why taking `m` out would leave some block without a good copy, if it would. Every
/// block keeps a good copy only when it has at least two copies and every other device
/// holds all of its copies (online: not stale, diverged, failed or absent).
fn would_lose_copies(fs: &FsInner, m: &Member) -> Option<String> {
    let others: Vec<&Member> =
        fs.vol.devices.iter().filter(|o| o.index != m.index && o.state() != MemberState::Removed).collect();
    if others.iter().all(|o| !o.writable()) {
        return Some("it is the last writable device".into());
    }
    if fs.vol.params.copies < 2 {
        return Some("with one copy of each block, its blocks have no copy elsewhere".into());
    }
    if let Some(o) = others.iter().find(|o| o.state() != MemberState::Online) {
        return Some(format!(
            "device {} ({}) is {} and lacks copies only this one may hold: bring it back and resync first",
            o.index,
            o.name(),
            o.state().name()
        ));
    }
    // VC2: files may keep fewer copies than N; their blocks on this device alone are
    // looked for (a walk of the metadata: only with `VARIABLE_COPIES`).
    if fs.variable_copies() {
        return match only_on(fs, m.index) {
            Ok(0) => None,
            Ok(n) => Some(format!(
                "{n} block(s) of files with fewer copies (hammer2 set copies=) have their only copy on it: \
                 raise their copies and run hammer2 rewrite first"
            )),
            Err(e) => Some(format!("its blocks could not be checked: {e}")),
        };
    }
    None
}

/// Blocks of the committed trees whose every VALID copy is on device `d`.
fn only_on(fs: &FsInner, d: u8) -> crate::error::Result<u64> {
    let mut n = 0;
    crate::walk::each_reference(fs, |br| {
        if br.ptr().is_some_and(|p| p.copies.iter().filter(|l| l.is_valid()).all(|l| l.device == d)) {
            n += 1;
        }
    })?;
    Ok(n)
}

/// Whether the watcher is retrying member `m` now (what `info` calls reconnecting). With
/// every device failed it retries nothing: only a resync takes them back then.
pub(crate) fn reconnecting(fs: &FsInner, m: &Member) -> bool {
    !fs.stalled.load(Ordering::SeqCst)
        && m.state() == MemberState::Failed
        && m.reconnect.retrying.load(Ordering::SeqCst)
}

/// Starts the reconnect watcher of a mounted filesystem (with the background commits: a
/// filesystem opened by an offline tool has none), which also runs automatic resyncs.
pub(crate) fn start(fs: &std::sync::Arc<FsInner>) {
    let h = watcher::spawn(std::sync::Arc::downgrade(fs));
    fs.rejoin.threads.lock().push(h);
}

/// Waits for the watcher and an automatic resync to end (the caller set `fs.stopping`).
pub(crate) fn stop(fs: &FsInner) {
    let threads: Vec<_> = std::mem::take(&mut *fs.rejoin.threads.lock());
    for t in threads {
        let _ = t.join();
    }
}

/// Reopens failed device `index` through its own storage and takes it back (`online`):
/// for `hammer2 device online` naming a device the mount still holds, whose path cannot be
/// opened a second time beside the claim its failed descriptor holds.
pub(crate) fn reopen(fs: &FsInner, index: u8) -> Result<Onlined, DeviceError> {
    let m = fs.vol.devices.get(index).ok_or(DeviceError::NoSuchDevice(index))?;
    let state = m.state();
    if state.writable() {
        return Err(DeviceError::AlreadyOnline { name: m.name(), index, state: state.name() });
    }
    let st = m.storage().ok_or_else(|| DeviceError::AlreadyOffline { name: m.name(), index, state: state.name() })?;
    let new = st.reopen().map_err(|e| Error::DeviceIo { device: m.name(), source: e })?;
    let r = online(fs, new)?;
    m.reconnect.reconnects.fetch_add(1, Ordering::Relaxed);
    Ok(r)
}
