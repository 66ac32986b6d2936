//! hammer2: a HAMMER2-like copy-on-write filesystem with block redundancy inside the
//! filesystem ("copies"), served through FUSE by the `hammer2` binary.
//!
//! Where things live:
//! - `storage/`: the one storage trait and its backends (file, fault-injecting, recording).
//! - `devices`, `volume`, `cache`: member devices, verified block reads, the block cache.
//! - `copies/`: where the N copies of a block go, and reads that pick a good copy and heal.
//! - `alloc/`: the allocator, the persistent free map, space reservations.
//! - `tree/`: the copy-on-write B+tree of block references (lookup, scan, apply).
//! - `inode`, `fs`: in-memory inodes with their dirty/flushing/committed generations.
//! - `commit/`: the commit path (build, finalize, write, headers, install).
//! - `vnops/`: the POSIX operations.
//! - `mount`, `format`: opening (master selection) and making a filesystem.
//! - `syncer`: background commits.
//! - `repair`: the typed repair session fsck makes every change through.
//! - `inspect`: the read-only surface fsck checks with.
//! - `rejoin`: devices back in service while mounted (and out of it), the reconnect watcher.
//! - `devchange`: devices added to (and removed from) a mounted filesystem.
//! - `info`: describing a filesystem (space, slots, a mount's live state) for `hammer2 info`.
//! - `testing`: hooks for tests (not stable API).

pub(crate) mod alloc;
pub(crate) mod cache;
pub(crate) mod commit;
pub(crate) mod copies;
pub mod devchange;
pub(crate) mod devices;
pub(crate) mod error;
pub mod format;
pub(crate) mod fs;
pub mod info;
pub(crate) mod inode;
pub mod inspect;
pub mod locate;
pub(crate) mod loopdev;
pub mod maintenance;
pub(crate) mod mount;
pub(crate) mod parallel;
pub(crate) mod pfs;
pub(crate) mod rejoin;
pub mod repair;
pub mod resync;
pub mod scan;
pub mod scrub;
pub mod send;
pub mod signatures;
pub mod snapshot;
pub mod storage;
pub(crate) mod syncer;
pub mod testing;
pub mod throttle;
pub(crate) mod tree;
pub mod units;
pub mod upgrade;
pub mod usage;
pub(crate) mod vnops;
pub(crate) mod volume;
pub(crate) mod walk;

/// Compression settings (FORMAT-V2 "Compression"): the codecs, and the one spelling of a
/// setting (`none`, `lz4`, `zstd[:LEVEL]`) that mkfs, mount and `hammer2 set` share.
pub mod compression {
    pub use crate::copies::compress::{BadSetting, Codec, DEFAULT_ZSTD_LEVEL, from_header, name, parse};
}
pub use devices::MemberState;
pub use error::{Error, Result};
pub use fs::{DEFAULT_MEMORY, DEFAULT_RESYNC_SLICE_BYTES, Options};
pub use rejoin::{AwaitedStatus, DeviceError, Onlined};
pub use vnops::dir::LINK_MAX;
pub use vnops::file::Whence;
pub use vnops::rewrite::{RANGE as REWRITE_RANGE, Rewritten};
pub use vnops::settings::{Setting, parse_copies};
pub use vnops::snapview::{SnapshotEntry, SnapshotView};
pub use vnops::xattr::XattrFlags;
pub use vnops::{Attr, Caller, Creds, DirEntry, Fs, RenameFlags, SetAttr, StatFs, TimeSet};

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use storage::DynStorage;

impl Fs {
    /// Mounts the filesystem on `storages` (all its devices, in any order).
    pub fn mount(storages: Vec<DynStorage>, opts: Options) -> Result<Fs> {
        let inner = Arc::new(mount::open(storages, opts)?);
        let fs = Fs { inner, syncer: parking_lot::Mutex::new(None), posix_acl: true.into() };
        if !fs.inner.vol.read_only {
            fs.remove_orphans()?;
            if fs.inner.opts.background_sync {
                fs::inode_readahead::InodeReadAhead::start(&fs.inner);
                *fs.syncer.lock() = Some(syncer::spawn(fs.inner.clone()));
                rejoin::start(&fs.inner);
            }
        }
        Ok(fs)
    }

    /// Inodes unlinked while open when the filesystem last stopped are removed now.
    fn remove_orphans(&self) -> Result<()> {
        let fs = &self.inner;
        let mut orphans = Vec::new();
        {
            let roots = fs.roots.read();
            tree::scan(&fs.vol, &roots.orphans, 0, &mut |br| {
                orphans.push(br.key);
                Ok(std::ops::ControlFlow::Continue(()))
            })?;
        }
        if orphans.is_empty() {
            return Ok(());
        }
        {
            let _g = fs.gate.read();
            for inum in &orphans {
                match fs.inode(*inum) {
                    Ok(inode) => {
                        let mut st = inode.state.write();
                        st.deleted = true;
                        fs.touch(&inode, &mut st);
                    }
                    // Only damage leaves an entry for an inode that is gone: drop the entry.
                    Err(Error::NotFound) => {
                        tracing::warn!("the orphan list names inode {inum}, which does not exist: dropping the entry");
                        fs.stale_orphans.lock().push(*inum);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        tracing::info!("removing {} orphaned inode(s)", orphans.len());
        commit::commit(fs, true, false).map(|_| ())
    }

    /// Commits everything, marks the headers clean, and stops.
    pub fn unmount(self) -> Result<()> {
        self.stop_syncer();
        let fs = &self.inner;
        if fs.vol.read_only {
            return Ok(());
        }
        fs.queue_atimes();
        commit::commit(fs, true, true).map(|_| ())
    }

    /// `mount -o remount,ro|rw` (see [`fs::FsInner::remount`]).
    pub fn remount(&self, read_only: bool) -> Result<()> {
        self.inner.remount(read_only)
    }

    /// Stops without committing: what was not committed is lost, as in a power cut.
    pub fn crash(self) {
        self.stop_syncer();
    }

    fn stop_syncer(&self) {
        let fs = &self.inner;
        fs.stopping.store(true, Ordering::SeqCst);
        fs.commit_cv.notify_all();
        if let Some(h) = self.syncer.lock().take() {
            let _ = h.join();
        }
        fs.inode_ahead.stop();
        rejoin::stop(fs);
    }

    /// Takes `storage` back as the member device whose header it holds, while mounted: a
    /// failed device that answers again, or one missing at mount. It must hold what this
    /// filesystem last wrote to it (no other filesystem's, no commit written apart from
    /// this one); it rejoins as stale and a resync catches it up (started by itself, on the
    /// thread of the reconnect watcher that runs with the background commits, unless
    /// `Options::autoresync` is off), after which it is online.
    pub fn device_online(&self, storage: DynStorage) -> std::result::Result<Onlined, DeviceError> {
        rejoin::online(&self.inner, storage)
    }

    /// Adds `storages` as new devices of the mounted filesystem (format version 2): they
    /// take copies of new blocks as soon as the commit that adds them is durable.
    pub fn device_add(
        &self,
        storages: Vec<DynStorage>,
    ) -> std::result::Result<devchange::Added, devchange::DeviceChangeError> {
        devchange::add(&self.inner, storages)
    }

    /// Removes device `index` from the mounted filesystem (format version 2): every copy on
    /// it moves to the other devices, verified, then it leaves the device table.
    pub fn device_remove(
        &self,
        index: u8,
        progress: &mut dyn FnMut(&devchange::RemoveProgress),
    ) -> std::result::Result<devchange::Removed, devchange::DeviceChangeError> {
        devchange::remove(&self.inner, index, progress)
    }

    /// Moves copies onto device `index` (an online one, e.g. just added) until it holds its
    /// share of the allocated space; `progress` gets (bytes moved, target) after every commit.
    pub fn device_rebalance(
        &self,
        index: u8,
        progress: &mut dyn FnMut(u64, u64),
    ) -> std::result::Result<devchange::Rebalanced, devchange::DeviceChangeError> {
        devchange::rebalance(&self.inner, index, progress)
    }

    /// Replaces device `old` by `new` while mounted: `new` is added, then `old` removed (it
    /// may be dead: its copies are rebuilt from the good ones).
    pub fn device_replace(
        &self,
        old: u8,
        new: DynStorage,
        progress: &mut dyn FnMut(&devchange::RemoveProgress),
    ) -> std::result::Result<devchange::Replaced, devchange::DeviceChangeError> {
        devchange::replace(&self.inner, old, new, progress)
    }

    /// Takes device `index` out of service as a failure would, and closes it; refused when
    /// a block would be left without a good copy (the last writable device, or another
    /// one still missing copies).
    pub fn device_offline(&self, index: u8) -> std::result::Result<String, DeviceError> {
        rejoin::offline(&self.inner, index)
    }

    /// Waits for a device named at mount that did not answer (`why`): the mount goes on
    /// without it, and the reconnect watcher opens `spec` again with backoff until it
    /// answers and takes it back as [`Fs::device_online`] does (DESIGN §7). A mount without
    /// the watcher (read-only, or no background commits) never takes it back.
    pub fn await_device(&self, spec: storage::DeviceSpec, settings: storage::OpenSettings, why: String) {
        rejoin::awaited::add(&self.inner, spec, settings, why);
    }

    /// The devices waited for (see [`Fs::await_device`]).
    pub fn awaited_devices(&self) -> Vec<AwaitedStatus> {
        rejoin::awaited::statuses(&self.inner)
    }

    /// The report of the last automatic resync that finished (None: none ran).
    pub fn last_autoresync(&self) -> Option<resync::ResyncReport> {
        self.inner.rejoin.last_resync()
    }

    pub fn root(&self) -> u64 {
        hammer2_format::layout::ROOT_INUM
    }

    /// The filesystem's data block size in bytes (what `stat` reports as `st_blksize`).
    pub fn block_size(&self) -> u64 {
        self.inner.block_size()
    }

    /// A handle that does not keep the engine alive: a daemon's control thread holds one so
    /// that unmounting commits and closes the devices whatever that thread is doing.
    pub fn downgrade(&self) -> WeakFs {
        WeakFs(Arc::downgrade(&self.inner))
    }

    /// Every member device, by filesystem device index, with its state and the errors
    /// counted on it (the counts are kept in the volume headers, so they span mounts).
    pub fn devices(&self) -> Vec<DeviceStatus> {
        device_statuses(&self.inner)
    }
}

fn device_statuses(fs: &fs::FsInner) -> Vec<DeviceStatus> {
    fs.vol
        .devices
        .iter()
        .map(|m| {
            let c = m.counters();
            DeviceStatus {
                index: m.index,
                name: m.name(),
                state: m.state(),
                present: m.has_storage(),
                reconnecting: rejoin::reconnecting(fs, m),
                reconnects: m.reconnect.reconnects.load(Ordering::Relaxed),
                last_error: m.reconnect.last_error.lock().clone(),
                read_errors: c.read_errors,
                write_errors: c.write_errors,
                check_errors: c.check_errors,
                repaired: c.repaired,
            }
        })
        .collect()
}

/// One member device of a mounted filesystem, as [`Fs::devices`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStatus {
    /// Its filesystem device index.
    pub index: u8,
    /// The path it was opened from, or "(missing)".
    pub name: String,
    pub state: MemberState,
    /// Its storage is open (false: absent, or taken offline).
    pub present: bool,
    /// It failed and the reconnect watcher is trying to reopen it.
    pub reconnecting: bool,
    /// Times it was reopened and taken back while mounted.
    pub reconnects: u64,
    /// Why it last failed, or why its last reopen was not taken.
    pub last_error: Option<String>,
    /// Reads the device failed.
    pub read_errors: u64,
    /// Writes the device failed.
    pub write_errors: u64,
    /// Copies read from it that failed their check value.
    pub check_errors: u64,
    /// Bad copies on it rewritten from a good one.
    pub repaired: u64,
}

/// A mounted filesystem as the maintenance entries (`maintenance::{scrub, resync}`,
/// `info::live`) take it: an [`Fs`], a [`FsRef`] from a [`WeakFs`], or, inside the engine,
/// its shared state.
pub trait Mounted {
    #[doc(hidden)]
    fn engine(&self) -> Engine<'_>;
}

/// An opaque borrow of a mounted filesystem's engine (see [`Mounted`]).
#[derive(Clone, Copy)]
pub struct Engine<'a>(pub(crate) &'a fs::FsInner);

impl Mounted for Fs {
    fn engine(&self) -> Engine<'_> {
        Engine(&self.inner)
    }
}

impl Mounted for fs::FsInner {
    fn engine(&self) -> Engine<'_> {
        Engine(self)
    }
}

/// See [`Fs::downgrade`].
#[derive(Clone)]
pub struct WeakFs(Weak<fs::FsInner>);

impl WeakFs {
    /// The filesystem while it is still mounted; None once it is being unmounted.
    pub fn upgrade(&self) -> Option<FsRef> {
        self.0.upgrade().map(FsRef)
    }
}

/// A strong handle from [`WeakFs::upgrade`], for maintenance from another thread. Unlike an
/// [`Fs`] it neither unmounts nor stops anything when dropped.
pub struct FsRef(Arc<fs::FsInner>);

impl FsRef {
    /// As [`Fs::remount`].
    pub fn remount(&self, read_only: bool) -> Result<()> {
        self.0.remount(read_only)
    }
    /// As [`Fs::device_online`].
    pub fn device_online(&self, storage: DynStorage) -> std::result::Result<Onlined, DeviceError> {
        rejoin::online(&self.0, storage)
    }
    /// As [`Fs::device_offline`].
    pub fn device_offline(&self, index: u8) -> std::result::Result<String, DeviceError> {
        rejoin::offline(&self.0, index)
    }
    /// As [`Fs::device_remove`].
    pub fn device_remove(
        &self,
        index: u8,
        progress: &mut dyn FnMut(&devchange::RemoveProgress),
    ) -> std::result::Result<devchange::Removed, devchange::DeviceChangeError> {
        devchange::remove(&self.0, index, progress)
    }
    /// As [`Fs::device_rebalance`].
    pub fn device_rebalance(
        &self,
        index: u8,
        progress: &mut dyn FnMut(u64, u64),
    ) -> std::result::Result<devchange::Rebalanced, devchange::DeviceChangeError> {
        devchange::rebalance(&self.0, index, progress)
    }
    /// As [`Fs::device_replace`].
    pub fn device_replace(
        &self,
        old: u8,
        new: DynStorage,
        progress: &mut dyn FnMut(&devchange::RemoveProgress),
    ) -> std::result::Result<devchange::Replaced, devchange::DeviceChangeError> {
        devchange::replace(&self.0, old, new, progress)
    }
    /// As [`Fs::device_add`].
    pub fn device_add(
        &self,
        storages: Vec<DynStorage>,
    ) -> std::result::Result<devchange::Added, devchange::DeviceChangeError> {
        devchange::add(&self.0, storages)
    }
    /// As [`Fs::devices`].
    pub fn devices(&self) -> Vec<DeviceStatus> {
        device_statuses(&self.0)
    }
    /// As [`Fs::awaited_devices`].
    pub fn awaited_devices(&self) -> Vec<AwaitedStatus> {
        rejoin::awaited::statuses(&self.0)
    }
    /// Reopens failed device `index` through its own storage (`Storage::reopen`: the same
    /// path or connection, under the claim it holds) and takes it back as
    /// [`Fs::device_online`] does.
    pub fn device_reopen(&self, index: u8) -> std::result::Result<Onlined, DeviceError> {
        rejoin::reopen(&self.0, index)
    }
}

impl Mounted for FsRef {
    fn engine(&self) -> Engine<'_> {
        Engine(&self.0)
    }
}

impl Fs {
    /// File data as written and as stored, over every PFS (`hammer2 info`).
    pub fn data_usage(&self) -> Result<usage::DataUsage> {
        usage::data_usage(&self.inner)
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        self.stop_syncer();
    }
}
