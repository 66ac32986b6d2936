//! readdir and readdirplus.
//!
//! The engine lists a directory under that directory's read lock, so attributes for
//! readdirplus are fetched after each batch is listed, never while the lock is held (a
//! writer locking the child first and then the directory would otherwise deadlock with us).

use super::convert::{dirent_type, entry_out, file_attr};
use super::proto::{Reply, abi};
use super::{ATTR_TTL, Hammer2Fuse};
use hammer2::{DirEntry, Error, Fs};

/// Entries listed per engine call in readdirplus.
const BATCH: usize = 128;

impl Hammer2Fuse {
    /// Fills `out` with entries from `cookie`, up to `limit` bytes.
    pub(super) fn fill_dir(
        &self,
        fs: &Fs,
        ino: u64,
        cookie: u64,
        out: &mut Reply,
        limit: usize,
    ) -> hammer2::Result<()> {
        self.entries(fs, ino, cookie, &mut |e| !out.dirent(limit, e.ino, e.next, dirent_type(e.dtype), &e.name))
    }

    /// Fills `out` with entries and their attributes, up to `limit` bytes. Every entry the
    /// reply carries (except `.` and `..`) takes a kernel lookup reference, as a lookup would.
    pub(super) fn fill_dir_plus(
        &self,
        fs: &Fs,
        ino: u64,
        mut cookie: u64,
        out: &mut Reply,
        limit: usize,
    ) -> hammer2::Result<()> {
        let mut added = 0usize;
        loop {
            let mut batch: Vec<DirEntry> = Vec::with_capacity(BATCH);
            self.entries(fs, ino, cookie, &mut |e| {
                batch.push(e.clone());
                batch.len() >= BATCH
            })?;
            let last_batch = batch.len() < BATCH;
            for e in batch {
                let dot = e.name == b"." || e.name == b"..";
                let entry = match self.entry_of(fs, &e, dot) {
                    Ok(a) => a,
                    // Removed since it was listed.
                    Err(Error::NotFound) => {
                        cookie = e.next;
                        continue;
                    }
                    // Send what we have; the error comes back on the next call.
                    Err(err) if added > 0 => {
                        tracing::error!("readdirplus (inode {ino}): {err}");
                        return Ok(());
                    }
                    Err(err) => return Err(err),
                };
                if !out.direntplus(limit, &entry, e.next, dirent_type(e.dtype), &e.name) {
                    return Ok(());
                }
                if !dot {
                    self.entry_ref(fs, e.ino);
                }
                added += 1;
                cookie = e.next;
            }
            if last_batch {
                return Ok(());
            }
        }
    }

    /// An entry's reply part, kept by the kernel for ATTR_TTL (names and attributes alike).
    /// The kernel ignores the attributes of `.` and `..` (it skips them); only their type and
    /// number show.
    fn entry_of(&self, fs: &Fs, e: &DirEntry, dot: bool) -> hammer2::Result<abi::EntryOut> {
        if dot {
            let attr = abi::Attr { ino: e.ino, mode: libc::S_IFDIR, blksize: 4096, ..abi::Attr::default() };
            return Ok(entry_out(attr, 0, ATTR_TTL, ATTR_TTL));
        }
        let a = self.attr_of(fs, e.ino)?;
        Ok(entry_out(file_attr(&a, self.blksize), a.generation(), ATTR_TTL, ATTR_TTL))
    }
}
