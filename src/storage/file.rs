//! Regular files and block devices.

use super::Storage;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub struct FileStorage {
    file: File,
    path: PathBuf,
    size: u64,
    /// Whether `flush` must do anything (false for read-only opens).
    writable: bool,
}

/// How to open a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    ReadOnly,
    /// Read-write and exclusive: a block device that is mounted or held by another opener
    /// with O_EXCL fails with EBUSY; a regular file gets a non-blocking exclusive flock, so two
    /// hammer2 processes never write the same image.
    Exclusive,
}

impl FileStorage {
    pub fn open(path: &Path, mode: OpenMode) -> io::Result<FileStorage> {
        let meta = std::fs::metadata(path)?;
        let is_blk = meta.file_type().is_block_device();
        if !is_blk && !meta.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file or block device"));
        }
        let mut opts = OpenOptions::new();
        opts.read(true);
        if mode == OpenMode::Exclusive {
            opts.write(true);
            if is_blk {
                opts.custom_flags(libc::O_EXCL);
            }
        }
        let file = opts.open(path)?;
        if mode == OpenMode::Exclusive && !is_blk {
            // SAFETY: flock on a valid, owned file descriptor.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let e = io::Error::last_os_error();
                return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    io::Error::from_raw_os_error(libc::EBUSY)
                } else {
                    e
                });
            }
        }
        let size = if is_blk { block_device_size(&file)? } else { meta.len() };
        // The engine reads whole blocks and batches sequential runs itself; the host's
        // readahead on an image file would mostly fetch blocks nobody asked for.
        // SAFETY: posix_fadvise on a valid descriptor; advice only, errors are harmless.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
        Ok(FileStorage { file, path: path.to_path_buf(), size, writable: mode == OpenMode::Exclusive })
    }

    pub fn path(&self) -> &Path {
        &self.path
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

impl Storage for FileStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn write_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
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

    fn flush(&self) -> io::Result<()> {
        if self.writable { self.file.sync_data() } else { Ok(()) }
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}
