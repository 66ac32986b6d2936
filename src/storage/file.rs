//! Regular files and block devices.

use super::Storage;
use super::claim::{self, Claimed};
pub use super::claim::{OpenError, OpenMode};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub struct FileStorage {
    file: File,
    /// Descriptors held only for the claims they carry: a loop device's backing file,
    /// locked like the device for as long as it is open; after `reopen`, the failed
    /// descriptor's claim (and what it held).
    _claims: Vec<File>,
    mode: OpenMode,
    /// The same file opened with O_DIRECT, for writes: the engine caches what it needs, so
    /// copying every written block into the host's page cache as well (and writing it back
    /// from there at the next flush) would only cost memory bandwidth. None where the
    /// filesystem holding the image refuses O_DIRECT (tmpfs).
    direct: Option<File>,
    path: PathBuf,
    size: u64,
    /// Whether `flush` must do anything (false for read-only opens).
    writable: bool,
    /// Bounce buffers of finished O_DIRECT writes, kept for the next ones. A commit writes
    /// each device from a thread of its own that ends with the commit; a buffer that went
    /// with its thread was faulted in afresh by the next commit, page by page (a quarter
    /// of the daemon's page faults while tar unpacked).
    bounces: parking_lot::Mutex<Vec<Bounce>>,
}

/// O_DIRECT wants the buffer, offset and length aligned to the logical block size.
const DIRECT_ALIGN: usize = 4096;
/// Largest O_DIRECT request (the bounce buffer's size).
const DIRECT_CHUNK: usize = 8 << 20;

/// Bounce buffers kept per device: one per thread writing it at the same time (the
/// commit's writer, now and then a self-heal or resync write).
const BOUNCES_KEPT: usize = 2;

/// A page-aligned buffer to copy writes into for O_DIRECT.
struct Bounce {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

// SAFETY: a Bounce owns its allocation outright (nothing else points into it), so it may
// move to, and be dropped on, another thread.
unsafe impl Send for Bounce {}

/// Bounce buffers are aligned to, and asked to be backed by, 2 MiB huge pages: the kernel
/// then pins 4 pages instead of 2,048 for each 8 MiB write, and the block layer builds
/// requests from 2 MiB segments instead of 4 KiB ones (a virtio disk takes at most 254
/// segments per request, so 4 KiB pages cap a request at about 1 MiB: eight device
/// requests, and eight VM exits to notify the device, per 8 MiB write). Where huge pages
/// are not available the buffer is simply made of small pages.
const BOUNCE_ALIGN: usize = 2 << 20;

impl Bounce {
    fn new() -> Option<Bounce> {
        let layout = std::alloc::Layout::from_size_align(DIRECT_CHUNK, BOUNCE_ALIGN).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = std::ptr::NonNull::new(unsafe { std::alloc::alloc(layout) })?;
        // SAFETY: the range is this allocation, not yet touched; MADV_HUGEPAGE only changes
        // how its pages will be backed. Failure (no THP support) is harmless.
        unsafe { libc::madvise(ptr.as_ptr().cast(), DIRECT_CHUNK, libc::MADV_HUGEPAGE) };
        Some(Bounce { ptr, layout })
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr points to `layout.size()` bytes owned by this value.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for Bounce {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl FileStorage {
    /// Opens a device for `mode`, taking the claim the locking rule asks for (see
    /// `claim`): every command opens its devices through here.
    pub fn open(path: &Path, mode: OpenMode) -> Result<FileStorage, OpenError> {
        Self::from_claimed(path, mode, claim::claim(path, mode)?, Vec::new())
    }

    fn from_claimed(
        path: &Path,
        mode: OpenMode,
        claimed: Claimed,
        mut claims: Vec<File>,
    ) -> Result<FileStorage, OpenError> {
        let Claimed { file, meta, backing } = claimed;
        claims.extend(backing);
        let is_blk = meta.file_type().is_block_device();
        let io_err = |source: io::Error| OpenError::Io { path: path.to_path_buf(), source };
        let size = if is_blk { block_device_size(&file).map_err(io_err)? } else { meta.len() };
        // The engine reads whole blocks and batches sequential runs itself; the host's
        // readahead on an image file would mostly fetch blocks nobody asked for.
        // SAFETY: posix_fadvise on a valid descriptor; advice only, errors are harmless.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
        let direct = if mode == OpenMode::Exclusive {
            OpenOptions::new().read(true).write(true).custom_flags(libc::O_DIRECT).open(path).ok()
        } else {
            None
        };
        Ok(FileStorage {
            file,
            _claims: claims,
            mode,
            direct,
            path: path.to_path_buf(),
            size,
            writable: mode == OpenMode::Exclusive,
            bounces: parking_lot::Mutex::new(Vec::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_buffered(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let mut off = offset;
        let mut rest: Vec<&[u8]> = bufs.iter().copied().filter(|b| !b.is_empty()).collect();
        while !rest.is_empty() {
            let n = rest.len().min(512);
            let iov: Vec<libc::iovec> = rest[..n]
                .iter()
                .map(|b| libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() })
                .collect();
            // SAFETY: every iovec points into a live borrowed slice of the stated length.
            let rc =
                unsafe { libc::pwritev(self.file.as_raw_fd(), iov.as_ptr(), n as libc::c_int, off as libc::off_t) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if rc == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "pwritev wrote nothing"));
            }
            let mut written = rc as usize;
            off += written as u64;
            while written > 0 {
                if written >= rest[0].len() {
                    written -= rest[0].len();
                    rest.remove(0);
                } else {
                    rest[0] = &rest[0][written..];
                    written = 0;
                }
            }
        }
        Ok(())
    }
}

fn block_device_size(file: &File) -> io::Result<u64> {
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer we pass.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

/// Writes through the O_DIRECT descriptor, copying into a page-aligned bounce buffer.
fn write_direct(direct: &File, bounce: &mut Bounce, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
    let bounce = bounce.as_mut_slice();
    let mut off = offset;
    let mut fill = 0usize;
    for b in bufs {
        let mut b: &[u8] = b;
        while !b.is_empty() {
            let n = b.len().min(DIRECT_CHUNK - fill);
            bounce[fill..fill + n].copy_from_slice(&b[..n]);
            fill += n;
            b = &b[n..];
            if fill == DIRECT_CHUNK {
                direct.write_all_at(&bounce[..fill], off)?;
                off += fill as u64;
                fill = 0;
            }
        }
    }
    if fill > 0 {
        direct.write_all_at(&bounce[..fill], off)?;
    }
    Ok(())
}

impl Storage for FileStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn write_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if let Some(direct) = &self.direct
            && offset as usize % DIRECT_ALIGN == 0
            && total % DIRECT_ALIGN == 0
        {
            let taken = self.bounces.lock().pop();
            let mut bounce = match taken {
                Some(b) => b,
                None => Bounce::new().ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?,
            };
            let r = write_direct(direct, &mut bounce, bufs, offset);
            let mut kept = self.bounces.lock();
            if kept.len() < BOUNCES_KEPT {
                kept.push(bounce);
            }
            return r;
        }
        self.write_buffered(bufs, offset)
    }

    fn flush(&self) -> io::Result<()> {
        if self.writable { self.file.sync_data() } else { Ok(()) }
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// The same path opened again, under the claim this storage holds (`claim::reclaim`):
    /// a reopened device must not be refused as in use by its own failed descriptor.
    fn reopen(&self) -> io::Result<super::DynStorage> {
        let (claimed, how) = claim::reclaim(&self.path, self.mode, &self.file)?;
        let mut keep = Vec::new();
        if how == claim::Reclaimed::Same {
            keep.push(self.file.try_clone()?);
            for f in &self._claims {
                keep.push(f.try_clone()?);
            }
        }
        let s = FileStorage::from_claimed(&self.path, self.mode, claimed, keep)?;
        Ok(std::sync::Arc::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image in the build directory: /tmp may be a tmpfs, which refuses O_DIRECT.
    fn image(len: u64) -> (tempfile::TempDir, FileStorage) {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("temporary directory");
        let path = dir.path().join("dev.img");
        File::create(&path).and_then(|f| f.set_len(len)).expect("create image");
        let s = FileStorage::open(&path, OpenMode::Exclusive).expect("open image");
        assert!(s.direct.is_some(), "the build directory's filesystem refuses O_DIRECT; the test needs it");
        (dir, s)
    }

    #[test]
    fn direct_writes_from_short_lived_threads_read_back_and_share_a_bounded_set_of_buffers() {
        let (_dir, s) = image(64 << 20);
        // Larger than one bounce buffer, so a write goes out in several requests.
        let block: Vec<u8> = (0..DIRECT_CHUNK + 3 * DIRECT_ALIGN).map(|i| (i % 251) as u8).collect();
        let halves = block.split_at(DIRECT_CHUNK / 2 + DIRECT_ALIGN);

        for round in 0..3u64 {
            std::thread::scope(|t| {
                for dev_off in [0u64, 16 << 20, 32 << 20] {
                    let s = &s;
                    let bufs = [halves.0, halves.1];
                    t.spawn(move || s.write_vectored_at(&bufs, dev_off + round * DIRECT_ALIGN as u64).unwrap());
                }
            });
            assert!(s.bounces.lock().len() <= BOUNCES_KEPT, "at most {BOUNCES_KEPT} buffers are kept");
            assert!(!s.bounces.lock().is_empty(), "the buffers of ended threads are kept for the next write");
            assert!(
                s.bounces.lock().iter().all(|b| b.ptr.as_ptr() as usize % BOUNCE_ALIGN == 0),
                "buffers start on a huge-page boundary"
            );
        }

        for dev_off in [0u64, 16 << 20, 32 << 20] {
            let mut back = vec![0u8; block.len()];
            s.read_at(&mut back, dev_off + 2 * DIRECT_ALIGN as u64).unwrap();
            assert!(back == block, "the last round's write at {dev_off} reads back intact");
        }
    }

    #[test]
    fn a_reopened_device_keeps_the_claim_of_the_failed_handle_and_no_one_else_gets_in() {
        let (dir, s) = image(1 << 20);
        let path = dir.path().join("dev.img");
        // Opening the path again beside our own claim is refused, as for anyone...
        assert!(matches!(FileStorage::open(&path, OpenMode::Exclusive), Err(OpenError::InUse { .. })));
        // ...but reopening through the storage that holds it is not.
        let again = s.reopen().expect("reopen under our own claim");
        again.write_at(b"back", 8192).unwrap();
        again.flush().unwrap();
        drop(s);
        let mut b = [0u8; 4];
        again.read_at(&mut b, 8192).unwrap();
        assert_eq!(&b, b"back");
        assert!(
            matches!(FileStorage::open(&path, OpenMode::Exclusive), Err(OpenError::InUse { .. })),
            "the reopened device still holds the claim after the old handle is gone"
        );
        let twice = again.reopen().expect("reopened again");
        drop(again);
        drop(twice);
        FileStorage::open(&path, OpenMode::Exclusive).expect("the claim goes with the last handle");
    }

    #[test]
    fn an_unaligned_write_goes_through_the_page_cache_and_reads_back() {
        let (_dir, s) = image(1 << 20);
        s.write_vectored_at(&[b"abc", b"defg"], 4097).unwrap();
        let mut back = [0u8; 7];
        s.read_at(&mut back, 4097).unwrap();
        assert_eq!(&back, b"abcdefg");
        assert!(s.bounces.lock().is_empty(), "no bounce buffer for a buffered write");
    }
}
