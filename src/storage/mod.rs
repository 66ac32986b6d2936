//! The one storage trait every device goes through, and its backends:
//!
//! - [`file::FileStorage`]: a regular file, loop device or raw disk (pread/pwritev/fdatasync).
//! - [`faulty::FaultyStorage`]: wraps another storage and injects I/O errors, silent bit
//!   flips and device disappearance; the tests and the reliability harness drive it.
//! - [`recording::RecordingStorage`]: wraps another storage and records every write and
//!   flush, so a crash at any instant can be rebuilt as a device image.
//! - [`mem::MemStorage`]: a device in memory, the canvas crash images are built on.
//! - [`nbd::NbdStorage`]: an export of an NBD server on another machine (or this one).
//!
//! [`open`] turns a device spec (a path or an NBD URI, [`spec::DeviceSpec`]) into a storage:
//! every front end opens its devices through it.
//!
//! Durability contract (what the commit path relies on): a write is durable only after a
//! later `flush` on the same storage returns Ok. Writes not yet flushed may reach the medium
//! in any order, or not at all, if power is lost.

pub mod claim;
pub mod faulty;
pub mod file;
pub mod mem;
pub mod nbd;
pub mod recording;
pub mod spec;

pub use spec::{DeviceSpec, OpenSettings, open};

use std::io;
use std::sync::Arc;

pub trait Storage: Send + Sync + 'static {
    /// Fills `buf` from `offset`; a short device is an error (`UnexpectedEof`).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Writes the buffers back to back starting at `offset` (one system call where possible).
    fn write_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let mut off = offset;
        for b in bufs {
            self.write_at(b, off)?;
            off += b.len() as u64;
        }
        Ok(())
    }
    /// Makes every completed write durable.
    fn flush(&self) -> io::Result<()>;
    /// Size in bytes.
    fn size(&self) -> u64;
    /// A name for messages (the path, for files and block devices).
    fn name(&self) -> String;
    /// Tells the device that `len` bytes at `offset` hold nothing any more (TRIM/discard),
    /// where the backend can pass that on. Advice only: the engine never relies on the
    /// bytes reading back as anything, so the default does nothing.
    fn discard(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    /// Opens the same device again (a new descriptor, a new connection) for bringing a
    /// failed device back while mounted. Backends that cannot answer `Unsupported`.
    fn reopen(&self) -> io::Result<DynStorage> {
        Err(io::Error::new(io::ErrorKind::Unsupported, format!("{} cannot be reopened", self.name())))
    }
}

pub type DynStorage = Arc<dyn Storage>;

impl<T: Storage + ?Sized> Storage for Arc<T> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_at(buf, offset)
    }
    fn write_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        (**self).write_vectored_at(bufs, offset)
    }
    fn flush(&self) -> io::Result<()> {
        (**self).flush()
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn name(&self) -> String {
        (**self).name()
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        (**self).discard(offset, len)
    }
    fn reopen(&self) -> io::Result<DynStorage> {
        (**self).reopen()
    }
}
