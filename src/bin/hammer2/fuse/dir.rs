//! readdir and readdirplus.
//!
//! The engine lists a directory under that directory's read lock, so attributes for
//! readdirplus are fetched after each batch is listed, never while the lock is held (a
//! writer locking the child first and then the directory would otherwise deadlock with us).

use super::convert::{file_attr, kind_of_dtype};
use super::{ATTR_TTL, Hammer2Fuse};
use fuser::{FileAttr, Generation, INodeNo, ReplyDirectory, ReplyDirectoryPlus};
use hammer2::{DirEntry, Error, Fs};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Entries listed per engine call in readdirplus.
const BATCH: usize = 128;

impl Hammer2Fuse {
    pub(super) fn fill_dir(&self, fs: &Fs, ino: u64, cookie: u64, reply: &mut ReplyDirectory) -> hammer2::Result<()> {
        self.entries(fs, ino, cookie, &mut |e| {
            reply.add(INodeNo(e.ino), e.next, kind_of_dtype(e.dtype), OsStr::from_bytes(&e.name))
        })
    }

    /// Fills `reply` with entries and their attributes. Every entry the reply carries
    /// (except `.` and `..`) takes a kernel lookup reference, as a lookup would.
    pub(super) fn fill_dir_plus(
        &self,
        fs: &Fs,
        ino: u64,
        mut cookie: u64,
        reply: &mut ReplyDirectoryPlus,
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
                let (attr, generation) = match self.entry_attr(fs, &e, dot) {
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
                let name = OsStr::from_bytes(&e.name);
                if reply.add(INodeNo(e.ino), e.next, name, &ATTR_TTL, &attr, generation) {
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

    /// The kernel ignores the attributes of `.` and `..`; only their type and number show.
    /// An entry's attributes and generation (the kernel skips "." and "..").
    fn entry_attr(&self, fs: &Fs, e: &DirEntry, dot: bool) -> hammer2::Result<(FileAttr, Generation)> {
        if dot {
            let mut a = super::convert::negative_attr();
            a.ino = INodeNo(e.ino);
            a.kind = fuser::FileType::Directory;
            return Ok((a, Generation(0)));
        }
        let a = self.attr_of(fs, e.ino)?;
        Ok((file_attr(&a, self.blksize), Generation(a.generation())))
    }
}
