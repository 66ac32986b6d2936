//! What the daemon negotiates with the kernel: the INIT flags and limits, the open flags
//! and the TTLs of its replies. One file, because `tools/src/fuse_floor.rs` includes it too
//! (with `proto/abi.rs` beside it as `super::proto::abi`): the floor must get exactly the
//! requests hammer2 gets.

use super::proto::abi::{self, fopen, init};
use std::time::Duration;

/// Largest write the kernel sends in one request (the kernel's own ceiling is 256 pages).
pub const MAX_WRITE: u32 = 1 << 20;
/// The payload buffer of one ring entry, and the room for a request or a reply's body on
/// /dev/fuse: the largest write or read (MAX_WRITE), with room to spare for the kernel's
/// page rounding.
pub const MAX_PAYLOAD: usize = MAX_WRITE as usize + (64 << 10);
/// Readahead we ask for (the kernel caps it at what it offered in INIT).
pub const MAX_READAHEAD: u32 = 1 << 20;
/// How long the kernel may trust a name (and a negative lookup): names only change through
/// the kernel, which updates its dentry cache itself.
pub const ENTRY_TTL: Duration = Duration::from_secs(3600);
/// How long the kernel may trust attributes. Short, because one field changes behind its
/// back: st_blocks counts whole blocks for data not yet committed and becomes exact at the
/// commit.
pub const ATTR_TTL: Duration = Duration::from_secs(1);

/// How the kernel treats an open file. Every open shares the page cache (nobody else changes
/// our files). An O_DIRECT open bypasses it and may have its writes served in parallel: the
/// kernel otherwise holds the inode lock across each direct write, so a database's or fio's
/// queue of 16 writes to one file would reach us one at a time. The engine orders writes to
/// one file itself (its inode lock), so parallel requests are safe; the kernel still
/// serializes writes that extend the file.
pub fn open_flags(flags: u32) -> u32 {
    if flags & libc::O_DIRECT as u32 != 0 {
        fopen::KEEP_CACHE | fopen::DIRECT_IO | fopen::PARALLEL_DIRECT_WRITES
    } else {
        fopen::KEEP_CACHE
    }
}

/// How many requests the kernel keeps in flight in the background (readahead, asynchronous
/// direct I/O) on /dev/fuse.
pub const MAX_BACKGROUND: u16 = 64;

/// The INIT flags we ask for (of those the kernel offers).
pub const WANTED: u64 = init::ASYNC_READ
    | init::BIG_WRITES
    | init::MAX_PAGES
    | init::PARALLEL_DIROPS
    | init::DO_READDIRPLUS
    | init::READDIRPLUS_AUTO
    | init::DIRECT_IO_ALLOW_MMAP
    | init::EXPORT_SUPPORT
    | init::CACHE_SYMLINKS
    | init::HANDLE_KILLPRIV_V2
    | init::ASYNC_DIO
    | init::POSIX_ACL
    | init::DONT_MASK;

/// Negotiates what the kernel may do: 1 MiB writes, readahead, parallel directory
/// operations, readdirplus and symlink caching.
///
/// And FUSE_HANDLE_KILLPRIV_V2: we drop set-user/group-ID on write, truncate and chown
/// ourselves (see `write` and `setattr` in ops.rs), so the kernel need not refresh the attributes
/// before every chown, and after a file's first write it stops asking for its
/// security.capability before each write (SB_NOSEC): two round trips less per file
/// tar unpacks. Capabilities are still removed by the kernel, which asks for them where
/// it matters.
///
/// And FUSE_ASYNC_DIO: without it the kernel turns every asynchronous direct request
/// (libaio, io_uring) into a synchronous one, so a program keeping 16 requests in flight
/// had one at a time reach us, and the workers sat idle: 4 KiB random writes at queue
/// depth 16 went from 5.9k to 11.8k IOPS, random reads to 59k.
///
/// And FUSE_DIRECT_IO_ALLOW_MMAP: without it the kernel refuses (ENODEV) a shared mmap of a
/// file opened with O_DIRECT (FOPEN_DIRECT_IO). With it, the first such mapping makes the
/// kernel write back mapped pages before each direct request and serialize direct writes.
///
/// And FUSE_EXPORT_SUPPORT: file handles (`open_by_handle_at`, NFS) of inodes the kernel has
/// forgotten are resolved by a LOOKUP of "." (and a directory's parent of "..") on the node
/// id, which `lookup` answers (DESIGN §12, "File handles").
///
/// Not the writeback cache: with it the kernel keeps written pages to itself until it
/// flushes them, but it does not flush before asking us for SEEK_DATA/SEEK_HOLE, so we
/// would report holes where a program has just written (and `cp`, `tar --sparse` would
/// skip that data). Writes go through to the engine instead, 1 MiB at a time; reads are
/// still cached (FOPEN_KEEP_CACHE) and read ahead.
///
/// And FUSE over io_uring when the kernel offers it (see `uring.rs`), quietly: kernels
/// before 6.14, and later ones with fuse's `enable_uring` off, do not.
///
/// And FUSE_POSIX_ACL: the kernel enforces POSIX ACLs itself, reading them through getxattr;
/// the engine keeps mode and ACL in step and inherits default ACLs (`vnops/acl.rs`). With
/// FUSE_DONT_MASK the kernel hands us the umask instead of applying it, as a default ACL
/// replaces it. A kernel without FUSE_POSIX_ACL gets EOPNOTSUPP for ACLs (see `init`).
///
/// Returns what the kernel offered, which the ring's sessions are handed in turn.
pub fn configure(kernel: &abi::InitIn, want_uring: bool) -> (abi::InitOut, Offer) {
    let offered = u64::from(kernel.flags)
        | if kernel.flags as u64 & init::INIT_EXT != 0 { u64::from(kernel.flags2) << 32 } else { 0 };
    let offer = Offer { offered };
    let mut flags = offered & WANTED;
    for (bit, name) in [(init::POSIX_ACL, "FUSE_POSIX_ACL"), (init::HANDLE_KILLPRIV_V2, "FUSE_HANDLE_KILLPRIV_V2")] {
        if offered & bit == 0 {
            tracing::info!("the kernel does not offer {name}");
        }
    }
    // Once negotiated, the kernel holds every request until the ring's queues are registered.
    if want_uring && offered & init::OVER_IO_URING != 0 {
        flags |= init::OVER_IO_URING;
    }
    // flags2 is read only with INIT_EXT.
    flags |= offered & init::INIT_EXT;
    let page = 4096;
    let out = abi::InitOut {
        major: abi::KERNEL_VERSION,
        minor: kernel.minor.min(abi::KERNEL_MINOR_VERSION),
        max_readahead: MAX_READAHEAD.min(kernel.max_readahead),
        flags: flags as u32,
        flags2: (flags >> 32) as u32,
        max_background: MAX_BACKGROUND,
        congestion_threshold: MAX_BACKGROUND * 3 / 4,
        max_write: MAX_WRITE,
        time_gran: 1,
        max_pages: (MAX_WRITE / page) as u16,
        ..abi::InitOut::default()
    };
    (out, offer)
}

/// What the kernel offered in its INIT.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    /// `flags | flags2 << 32`.
    pub offered: u64,
}

impl Offer {
    pub fn has(&self, flag: u64) -> bool {
        self.offered & flag != 0
    }
}
