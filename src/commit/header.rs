//! Writing the volume headers of a commit: the last step, and the one that makes it count.
//!
//! Ordering (the crash-safety argument, see docs/DESIGN.md): every block the new roots
//! reach has been written and flushed on every device before any header is written; the
//! header goes to slot `tid % 4`, so the previous commit's slot is untouched; each device is
//! flushed after its header write. A crash before a device's header is durable leaves it
//! at the previous commit, whose blocks are all still allocated.

use crate::fs::{FsInner, Roots};
use hammer2_format::VolumeHeader;
use hammer2_format::layout::{HEADER_SIZE, HEADER_SLOTS, header_offset};
use hammer2_format::volume::FLAG_CLEAN;
use std::sync::atomic::Ordering;

/// The header a commit of `roots` writes, as seen from device `index`.
fn header(
    fs: &FsInner,
    roots: &Roots,
    next_inum: u64,
    clean: bool,
    devices: &[hammer2_format::DeviceEntry],
    index: u8,
    commit_time_ns: u64,
) -> VolumeHeader {
    let vol = &fs.vol;
    let m = &vol.devices[usize::from(index)];
    // Version 1 or 2: the roots say which (`pfs.rs`).
    let f = crate::pfs::header_fields(roots, next_inum);
    VolumeHeader {
        version: f.version,
        tid: roots.tid,
        fs_uuid: vol.params.fs_uuid,
        device_uuid: m.uuid,
        device_index: u16::from(m.index),
        copies: vol.params.copies,
        check: vol.params.check,
        slot: (roots.tid % HEADER_SLOTS as u64) as u8,
        flags: if clean { FLAG_CLEAN } else { 0 },
        device_size: m.size,
        next_inum: f.next_inum,
        commit_time_ns,
        mkfs_time_ns: vol.params.mkfs_time_ns,
        data_block_shift: vol.params.data_block_shift,
        indirect_block_shift: vol.params.indirect_block_shift,
        default_compression: f.default_compression,
        default_zstd_level: f.default_zstd_level,
        incompat_features: f.features,
        compat_features: 0,
        label: vol.params.label.clone(),
        sroot: f.sroot,
        devices: devices.to_vec(),
    }
}

fn device_table(fs: &FsInner) -> Vec<hammer2_format::DeviceEntry> {
    let alloc = fs.alloc.lock();
    fs.vol.devices.iter().map(|m| m.entry(alloc.device_free_on_disk(m.index))).collect()
}

/// What the mounted filesystem would write in its next header (for `hammer2 info` on a
/// mount point): the committed roots and the live device table.
pub fn live_view(fs: &FsInner) -> VolumeHeader {
    let roots = fs.roots.read().clone();
    let table = device_table(fs);
    header(fs, &roots, fs.next_inum.load(Ordering::SeqCst), false, &table, 0, now_ns())
}

/// Writes the headers of commit `roots.tid`. Returns how many devices now hold it.
pub fn write_headers(fs: &FsInner, roots: &Roots, next_inum: u64, clean: bool) -> usize {
    let vol = &fs.vol;
    let tid = roots.tid;
    for m in vol.devices.iter() {
        if m.writable() {
            m.set_synced_tid(tid);
        } else if m.missed_since() == 0 && m.state() != crate::devices::MemberState::Removed {
            m.set_missed_since(tid);
        }
    }
    let devices = device_table(fs);
    // One logical header per commit (FORMAT.md §3): every device gets the same time.
    let commit_time_ns = now_ns();
    let slot = (tid % HEADER_SLOTS as u64) as usize;
    // A1 (DESIGN): a joining device's header is durable before any other device's, so a
    // crash leaves either the old table everywhere (the device is out, and holds no
    // header of this filesystem) or a master that lists it (it is in).
    let joining = vol.devices.iter().filter(|m| m.writable() && m.joining()).collect::<Vec<_>>();
    let others = vol.devices.iter().filter(|m| m.writable() && !m.joining()).collect::<Vec<_>>();
    let first = write_to(fs, roots, next_inum, clean, &devices, commit_time_ns, slot, joining);
    first + write_to(fs, roots, next_inum, clean, &devices, commit_time_ns, slot, others)
}

/// Writes header slot `slot` of the commit on each of `members`, in parallel. Returns how
/// many now hold it.
#[allow(clippy::too_many_arguments)]
fn write_to(
    fs: &FsInner,
    roots: &Roots,
    next_inum: u64,
    clean: bool,
    devices: &[hammer2_format::DeviceEntry],
    commit_time_ns: u64,
    slot: usize,
    members: Vec<&crate::devices::Member>,
) -> usize {
    std::thread::scope(|s| {
        let hs: Vec<_> = members
            .into_iter()
            .map(|m| {
                let h = header(fs, roots, next_inum, clean, devices, m.index, commit_time_ns);
                s.spawn(move || {
                    let Some(st) = m.storage() else { return false };
                    let bytes = h.encode();
                    let written = st.write_at(&bytes, header_offset(slot)).and_then(|_| st.flush());
                    // H1 (DESIGN §8): only once this header is durable are the device's
                    // other slots, which belong to a discarded history, cleared; so it
                    // always holds a valid header.
                    let cleared = written.and_then(|_| {
                        if !m.foreign_slots() {
                            return Ok(());
                        }
                        let zero = vec![0u8; HEADER_SIZE];
                        for other in (0..HEADER_SLOTS).filter(|&o| o != slot) {
                            st.write_at(&zero, header_offset(other))?;
                        }
                        st.flush()?;
                        m.set_foreign_slots(false);
                        tracing::info!(device = %m.name(), "cleared the header slots it held from before it rejoined");
                        Ok(())
                    });
                    match cleared {
                        Ok(()) => true,
                        Err(e) => {
                            m.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                            m.fail(&format!("volume header write failed: {e}"));
                            false
                        }
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(false)).filter(|ok| *ok).count()
    })
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
