//! Replies encoded into a buffer the transport gives: after the out-header's place in a
//! /dev/fuse buffer, or straight into a ring entry's payload buffer. The out-header itself
//! is the transport's to write (its place differs), from the length encoded here.

use super::abi;
use zerocopy::{Immutable, IntoBytes};

/// The room is smaller than the reply (the kernel asked for more than the buffer holds,
/// which it never does within max_write/max_pages): answered EIO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom;

/// A positive errno, the answer to a request that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const EIO: Errno = Errno(libc::EIO);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
}

impl From<NoRoom> for Errno {
    fn from(_: NoRoom) -> Errno {
        Errno::EIO
    }
}

/// A reply body being encoded.
pub struct Reply<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Reply<'a> {
    pub fn new(buf: &'a mut [u8]) -> Reply<'a> {
        Reply { buf, len: 0 }
    }

    /// The body's length so far.
    pub fn written(&self) -> usize {
        self.len
    }

    /// Forgets what was encoded (an error replaces a partial answer).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn push<T: IntoBytes + Immutable>(&mut self, v: &T) -> Result<(), NoRoom> {
        self.bytes(v.as_bytes())
    }

    pub fn bytes(&mut self, b: &[u8]) -> Result<(), NoRoom> {
        let end = self.len.checked_add(b.len()).filter(|&e| e <= self.buf.len()).ok_or(NoRoom)?;
        self.buf[self.len..end].copy_from_slice(b);
        self.len = end;
        Ok(())
    }

    /// Lends up to `n` bytes after what is encoded, for a read to fill in place; `commit`
    /// then keeps what it filled. This is how a read's data reaches the ring's payload
    /// buffer (or the /dev/fuse reply buffer) with no copy in between.
    pub fn room(&mut self, n: usize) -> &mut [u8] {
        let end = self.len.saturating_add(n).min(self.buf.len());
        &mut self.buf[self.len..end]
    }

    pub fn commit(&mut self, n: usize) {
        self.len = (self.len + n).min(self.buf.len());
    }

    /// Adds a READDIR entry unless it would pass `limit` bytes; false when it did not fit.
    pub fn dirent(&mut self, limit: usize, ino: u64, off: u64, typ: u32, name: &[u8]) -> bool {
        let d = abi::Dirent { ino, off, namelen: name.len() as u32, typ };
        self.padded(limit, &[d.as_bytes(), name])
    }

    /// Adds a READDIRPLUS entry unless it would pass `limit` bytes; false when it did not fit.
    pub fn direntplus(&mut self, limit: usize, entry: &abi::EntryOut, off: u64, typ: u32, name: &[u8]) -> bool {
        let d = abi::Dirent { ino: entry.attr.ino, off, namelen: name.len() as u32, typ };
        self.padded(limit, &[entry.as_bytes(), d.as_bytes(), name])
    }

    /// The pieces, zero-padded to a multiple of 8 (FUSE_DIRENT_ALIGN).
    fn padded(&mut self, limit: usize, parts: &[&[u8]]) -> bool {
        let n: usize = parts.iter().map(|p| p.len()).sum();
        let padded = n.next_multiple_of(8);
        if self.len + padded > limit.min(self.buf.len()) {
            return false;
        }
        for p in parts {
            self.buf[self.len..self.len + p.len()].copy_from_slice(p);
            self.len += p.len();
        }
        self.buf[self.len..self.len + padded - n].fill(0);
        self.len += padded - n;
        true
    }
}

/// The out-header of a reply with `body` bytes (`error` is 0 or a negative errno).
pub fn out_header(unique: u64, error: i32, body: usize) -> abi::OutHeader {
    let body = if error == 0 { body } else { 0 };
    abi::OutHeader { len: (std::mem::size_of::<abi::OutHeader>() + body) as u32, error, unique }
}
