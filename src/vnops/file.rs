//! File content: read, write, fallocate, lseek(SEEK_DATA/SEEK_HOLE), readlink, fsync.

use super::Fs;
use super::data::{Source, dirty_block, present, punch_block, read_range, source};
use crate::copies::read::ReadCtx;
use crate::error::{Error, Result};
use crate::fs::FsInner;
use crate::inode::{InodeRef, InodeState};
use hammer2_format::Timespec;
use hammer2_format::layout::MAX_FILE_SIZE;

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whence {
    Data,
    Hole,
}

/// What a fallocate(2) call asks for, from its mode bits (linux/falloc.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Falloc {
    /// Give the range blocks (zero where it had none).
    Allocate,
    /// Remove the range's whole blocks from the tree, zero the parts of edge blocks.
    Punch,
    /// Make the range read as zeros, with blocks (as `Allocate`).
    Zero,
}

impl Falloc {
    /// The operation and whether the size stays (FALLOC_FL_KEEP_SIZE). Collapse and insert
    /// never get here: the kernel's FUSE client refuses them with EOPNOTSUPP itself. The VFS
    /// already refused punch without KEEP_SIZE; it is checked again for other callers.
    fn of(mode: i32) -> Result<(Falloc, bool)> {
        let keep = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        match mode & !libc::FALLOC_FL_KEEP_SIZE {
            0 => Ok((Falloc::Allocate, keep)),
            libc::FALLOC_FL_PUNCH_HOLE if keep => Ok((Falloc::Punch, true)),
            libc::FALLOC_FL_ZERO_RANGE => Ok((Falloc::Zero, keep)),
            _ => Err(Error::NotSupported),
        }
    }
}

impl Fs {
    pub fn read(&self, ino: u64, off: u64, len: usize) -> Result<Vec<u8>> {
        self.read_with(ino, |fs, st| read_locked(fs, ino, st, off, len).map(|v| (v.len(), v)))
    }

    /// read(2) into the caller's buffer (up to its length); returns how many bytes were
    /// read. The FUSE front end reads this way straight into the buffer its reply leaves
    /// from (a ring entry's payload), with no copy in between.
    pub fn read_into(&self, ino: u64, off: u64, out: &mut [u8]) -> Result<usize> {
        self.read_with(ino, |fs, st| read_locked_into(fs, ino, st, off, out).map(|n| (n, n)))
    }

    /// Runs a read (`f` returns the byte count and its result) under the inode's read lock,
    /// then moves atime as relatime says.
    fn read_with<T>(&self, ino: u64, f: impl FnOnce(&FsInner, &InodeState) -> Result<(usize, T)>) -> Result<T> {
        let fs = &self.inner;
        let inode = fs.inode(ino)?;
        let ((n, out), stale) = {
            let st = inode.state.read();
            let n = f(fs, &st)?;
            let m = &st.meta;
            let stale = m.atime <= m.mtime || m.atime <= m.ctime || Timespec::now().sec - m.atime.sec > 86_400;
            (n, stale)
        };
        // relatime: atime moves only when it is older than the last change, or a day old.
        // It is kept in memory and written with the inode's next commit (never alone). A read
        // at or past the end (nothing returned) does not move it.
        if n > 0 && stale && fs.check_writable().is_ok() {
            let mut st = inode.state.write();
            st.meta.atime = Timespec::now();
            st.atime_dirty = true;
        }
        Ok(out)
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let inode = self.inner.inode(ino)?;
        let size = {
            let st = inode.state.read();
            if !st.meta.is_symlink() {
                return Err(Error::invalid("not a symlink"));
            }
            st.meta.size
        };
        self.read(ino, 0, size as usize)
    }

    /// write(2). Running out of space part-way is a short write, as on ext4: the blocks
    /// already taken keep their new bytes, the size and times cover them, and the count
    /// says how far it got (never an error after bytes were applied: the caller would take
    /// them as not written, while reads and the next commit show them, W1 in
    /// docs/DESIGN.md §10). Out of space, it commits once (releasing pending frees) and goes on.
    pub fn write(&self, ino: u64, off: u64, data: &[u8]) -> Result<usize> {
        let fs = &self.inner;
        fs.check_writable()?;
        if data.is_empty() {
            return Ok(0);
        }
        let end = off.checked_add(data.len() as u64).filter(|e| *e <= MAX_FILE_SIZE).ok_or(Error::FileTooBig)?;
        self.throttle();
        let mut done = 0;
        let mut retried = false;
        while done < data.len() {
            match self.write_once(ino, off + done as u64, end, &data[done..]) {
                Ok(n) => done += n,
                Err(Error::NoSpace) if !retried => {}
                Err(_) if done > 0 => break,
                Err(e) => return Err(e),
            }
            if done < data.len() {
                if retried {
                    break;
                }
                retried = true;
                if let Err(e) = self.sync() {
                    if done > 0 {
                        break;
                    }
                    return Err(e);
                }
            }
        }
        Ok(done)
    }

    /// Writes what fits of `data` at `off` (`end` is where it ends): the bytes written, fewer
    /// than asked when space ran out at a later block. Out of space at the first block, it
    /// is ENOSPC and nothing changed (`dirty_block` changes nothing when it fails).
    fn write_once(&self, ino: u64, off: u64, end: u64, data: &[u8]) -> Result<usize> {
        let fs = &self.inner;
        let bs = fs.block_size();
        let _g = fs.gate.read();
        let inode = fs.inode(ino)?;
        let (first, last) = (off / bs, (end - 1) / bs);
        load_partial_blocks(fs, ino, &inode, [(first, off % bs != 0), (last, end % bs != 0)]);
        let mut st = inode.state.write();
        if st.meta.is_dir() {
            return Err(Error::IsDir);
        }
        if !st.meta.is_reg() {
            return Err(Error::invalid("write to a special file"));
        }
        let mut written_end = off;
        for k in first..=last {
            let bstart = k * bs;
            let from = (off.max(bstart) - bstart) as usize;
            let to = (end.min(bstart + bs) - bstart) as usize;
            let src = &data[(bstart + from as u64 - off) as usize..(bstart + to as u64 - off) as usize];
            let whole = from == 0 && to == bs as usize;
            let buf = match dirty_block(fs, ino, &mut st, k, to, whole) {
                Ok(buf) => buf,
                // Blocks before k hold new bytes: they are written (below), this one is not.
                Err(Error::NoSpace) if k > first => break,
                Err(e) => return Err(e),
            };
            buf[from..to].copy_from_slice(src);
            written_end = bstart + to as u64;
        }
        let now = Timespec::now();
        st.meta.size = st.meta.size.max(written_end);
        st.meta.mtime = now;
        st.meta.ctime = now;
        st.meta.version += 1;
        fs.touch(&inode, &mut st);
        Ok((written_end - off) as usize)
    }

    /// fallocate(2): allocate (mode 0), punch a hole (PUNCH_HOLE | KEEP_SIZE) or zero a
    /// range (ZERO_RANGE), each keeping the size with KEEP_SIZE; any other mode is
    /// EOPNOTSUPP. Allocating and zeroing give the range blocks and extend the size to cover
    /// it (unless KEEP_SIZE); blocks past the size are not kept (the tree holds none, and a
    /// copy-on-write file's later writes go to new blocks anyway), so KEEP_SIZE past the end
    /// changes nothing. Punching stops at the size: its whole blocks leave the tree at the
    /// next commit, which frees every copy; the parts of edge blocks are zeroed in place.
    pub fn fallocate(&self, ino: u64, off: u64, len: u64, mode: i32) -> Result<()> {
        let fs = &self.inner;
        fs.check_writable()?;
        let (op, keep) = Falloc::of(mode)?;
        if len == 0 {
            return Err(Error::invalid("fallocate of zero length"));
        }
        let end = off.checked_add(len).filter(|e| *e <= MAX_FILE_SIZE).ok_or(Error::FileTooBig)?;
        let bs = fs.block_size();
        let mut k = off / bs;
        let last = (end - 1) / bs;
        // In slices, so a large request waits for commits instead of filling memory. A slice
        // is idempotent, so one that ran out of space is simply run again after a commit
        // (which releases pending frees), as a write is.
        let mut retried = false;
        while k <= last {
            self.throttle();
            let stop = (k + 256).min(last + 1);
            match self.fallocate_slice(ino, op, keep, k, stop, off, end) {
                Err(Error::NoSpace) if !retried => {
                    retried = true;
                    self.sync()?;
                    continue;
                }
                r => r?,
            }
            k = stop;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn fallocate_slice(
        &self,
        ino: u64,
        op: Falloc,
        keep: bool,
        first: u64,
        stop: u64,
        off: u64,
        end: u64,
    ) -> Result<()> {
        let fs = &self.inner;
        let bs = fs.block_size();
        let _g = fs.gate.read();
        let inode = fs.inode(ino)?;
        let mut st = inode.state.write();
        if st.meta.is_dir() {
            return Err(Error::IsDir);
        }
        if !st.meta.is_reg() {
            return Err(Error::NotSupported);
        }
        // The size this call leaves: blocks at or past it are never touched.
        let size = if keep { st.meta.size } else { st.meta.size.max(end) };
        // Blocks changed before one ran out of space stay changed (their zeros read back and
        // are committed, W1 in docs/DESIGN.md §10); the size grows only when the call succeeds.
        let mut changed = false;
        let mut applied = || -> Result<()> {
            for k in first..stop {
                let bstart = k * bs;
                if bstart >= size {
                    break;
                }
                // The part of block k in the range; up to the end of the file counts as all
                // of it (what lies past the size reads as zero whatever the block holds).
                let from = (off.max(bstart) - bstart) as usize;
                let to = (end.min(bstart + bs) - bstart) as usize;
                let whole = from == 0 && (to == bs as usize || bstart + to as u64 >= size);
                match op {
                    Falloc::Allocate => {
                        if !present(fs, &st, k)? {
                            dirty_block(fs, ino, &mut st, k, bs as usize, true)?;
                        }
                    }
                    Falloc::Zero => {
                        let buf = dirty_block(fs, ino, &mut st, k, if whole { bs as usize } else { to }, whole)?;
                        let to = to.min(buf.len());
                        buf[from.min(to)..to].fill(0);
                    }
                    Falloc::Punch if !present(fs, &st, k)? => {}
                    Falloc::Punch if whole => punch_block(fs, &mut st, k)?,
                    Falloc::Punch => {
                        let buf = dirty_block(fs, ino, &mut st, k, 1, false)?;
                        let to = to.min(buf.len());
                        buf[from.min(to)..to].fill(0);
                    }
                }
                changed = true;
            }
            Ok(())
        };
        let result = applied();
        if result.is_err() && !changed {
            return result;
        }
        let now = Timespec::now();
        if result.is_ok() && size > st.meta.size {
            st.meta.size = size;
            st.meta.mtime = now;
        }
        if op != Falloc::Allocate {
            st.meta.mtime = now;
        }
        st.meta.ctime = now;
        st.meta.version += 1;
        fs.touch(&inode, &mut st);
        result
    }

    /// lseek(SEEK_DATA / SEEK_HOLE).
    pub fn seek(&self, ino: u64, off: u64, whence: Whence) -> Result<u64> {
        let fs = &self.inner;
        seek_locked(fs, &fs.inode(ino)?.state.read(), off, whence)
    }

    /// Makes everything written so far durable (every file: commits are filesystem-wide).
    pub fn fsync(&self, _ino: u64) -> Result<()> {
        self.sync()
    }

    pub fn sync(&self) -> Result<()> {
        crate::commit::commit(&self.inner, false, false).map(|_| ())
    }

    /// Waits while changes not yet committed hold more memory than the dirty limit
    /// (bounded memory under endless writes, creates or removals). Call it holding no lock.
    pub(crate) fn throttle(&self) {
        let fs = &self.inner;
        while fs.dirty_load() > fs.opts.dirty_limit {
            if !fs.opts.background_sync || self.syncer.lock().is_none() {
                let _ = crate::commit::commit(fs, false, false);
                return;
            }
            crate::syncer::kick(fs);
            let mut t = fs.committed_tid.lock();
            fs.commit_cv.wait_for(&mut t, Duration::from_millis(100));
        }
        if fs.dirty_load() > fs.opts.dirty_limit / 2 {
            crate::syncer::kick(fs);
        }
    }

    /// Reserves `units` for an operation that must not fail for lack of space (removals,
    /// renames): when the limit is reached, commits first, then reserves even past it.
    pub(crate) fn force_reserve_after_sync(&self, units: u64) {
        let fs = &self.inner;
        if fs.space.try_reserve(units) {
            return;
        }
        let _ = self.sync();
        if !fs.space.try_reserve(units) {
            fs.space.force_reserve(units);
        }
    }

    /// Reserves `units`, committing once to recover pending frees if the first try fails.
    pub(crate) fn reserve_or_sync(&self, units: u64) -> Result<()> {
        let fs = &self.inner;
        if fs.space.try_reserve(units) {
            return Ok(());
        }
        self.sync()?;
        if fs.space.try_reserve(units) { Ok(()) } else { Err(Error::NoSpace) }
    }
}

/// Brings the committed content of the blocks a write covers only in part into the block
/// cache, before the inode is locked for writing: the read-modify-write of a small write then
/// finds its block in memory, and the inode lock (which serializes every write to the file)
/// is never held across a device read. Best effort: whatever changed meanwhile or failed is
/// simply read again, and its error reported, under the lock.
fn load_partial_blocks(fs: &FsInner, ino: u64, inode: &InodeRef, blocks: [(u64, bool); 2]) {
    let mut refs = Vec::new();
    {
        let st = inode.state.read();
        if !st.meta.is_reg() {
            return;
        }
        for (k, partial) in blocks {
            if partial
                && refs.iter().all(|(seen, _)| *seen != k)
                && !st.dirty.data.contains_key(&k)
                && let Ok(Source::Committed(br)) = source(fs, &st, k)
            {
                refs.push((k, br));
            }
        }
    }
    for (k, br) in refs {
        let _ = fs.vol.read_block(&br, &ReadCtx::file(ino, k * fs.block_size()));
    }
}

/// The bytes `len` from `off` of a file read from any tree (the served PFS's or a
/// snapshot's), without touching its atime.
pub(crate) fn read_locked(fs: &FsInner, ino: u64, st: &InodeState, off: u64, len: usize) -> Result<Vec<u8>> {
    // Sized by what the file holds, not by what was asked.
    let size = st.meta.size;
    let want = if off >= size { 0 } else { (size - off).min(len as u64) as usize };
    let mut out = vec![0u8; want];
    let n = read_locked_into(fs, ino, st, off, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// Reads `[off, off + out.len())` of the file, cut at its end, into `out`; returns the
/// count.
pub(crate) fn read_locked_into(fs: &FsInner, ino: u64, st: &InodeState, off: u64, out: &mut [u8]) -> Result<usize> {
    if st.meta.is_dir() {
        return Err(Error::IsDir);
    }
    if !st.meta.has_data() {
        return Err(Error::invalid("read of a special file"));
    }
    let size = st.meta.size;
    if off >= size || out.is_empty() {
        return Ok(0);
    }
    let end = size.min(off.saturating_add(out.len() as u64));
    let n = (end - off) as usize;
    read_range(fs, ino, st, off, end, &mut out[..n])?;
    Ok(n)
}

/// lseek(SEEK_DATA / SEEK_HOLE) in a file read from any tree.
pub(crate) fn seek_locked(fs: &FsInner, st: &InodeState, off: u64, whence: Whence) -> Result<u64> {
    let bs = fs.block_size();
    let size = st.meta.size;
    if off >= size {
        return Err(Error::NoSeekTarget);
    }
    let last = (size - 1) / bs;
    let mut k = off / bs;
    while k <= last {
        let data = present(fs, st, k)?;
        match (whence, data) {
            (Whence::Data, true) | (Whence::Hole, false) => return Ok(off.max(k * bs)),
            _ => {}
        }
        k += 1;
    }
    match whence {
        Whence::Data => Err(Error::NoSeekTarget),
        Whence::Hole => Ok(size),
    }
}
