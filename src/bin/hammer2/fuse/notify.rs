//! Notifications to the kernel (FUSE_NOTIFY_INVAL_*): written to /dev/fuse as a message
//! whose `unique` is 0 and whose `error` is the code. Both transports send them this way
//! (the ring does not carry them).

use super::proto::{abi, out_header};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use zerocopy::IntoBytes;

/// A handle on the connection for notifications; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    conn: Arc<OwnedFd>,
}

impl Notifier {
    pub fn new(conn: Arc<OwnedFd>) -> Notifier {
        Notifier { conn }
    }

    /// Drops the kernel's cached attributes of `ino` and, unless `offset` is negative, its
    /// cached pages from `offset` for `len` bytes (0: to the end).
    pub fn inval_inode(&self, ino: u64, offset: i64, len: i64) -> io::Result<()> {
        let arg = abi::NotifyInvalInodeOut { ino, off: offset, len };
        self.send(abi::NOTIFY_INVAL_INODE, &[arg.as_bytes()])
    }

    /// Drops the kernel's cached entry `name` in directory `parent`.
    pub fn inval_entry(&self, parent: u64, name: &[u8]) -> io::Result<()> {
        let arg = abi::NotifyInvalEntryOut { parent, namelen: name.len() as u32, flags: 0 };
        self.send(abi::NOTIFY_INVAL_ENTRY, &[arg.as_bytes(), name, &[0]])
    }

    fn send(&self, code: i32, parts: &[&[u8]]) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut h = out_header(0, 0, len);
        h.error = code;
        let mut iov = vec![libc::iovec { iov_base: h.as_mut_bytes().as_mut_ptr().cast(), iov_len: 16 }];
        iov.extend(parts.iter().map(|p| libc::iovec { iov_base: p.as_ptr() as *mut _, iov_len: p.len() }));
        super::devfuse::writev(self.conn.as_raw_fd(), &iov)
    }
}
