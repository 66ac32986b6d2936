//! Inode blocks (4096 bytes): the attributes of one file and the root of its tree, or its
//! content when small enough to embed.
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! |   0 | 4 | magic `INOD` (0x444f4e49 little-endian) |
//! |   4 | 2 | layout version (1, or 2 when a field of [`InodePolicy`] is set) |
//! |   6 | 1 | content: 0 = tree (blockset of 30 references), 1 = embedded data |
//! |   7 | 1 | root level: 0 = blockset entries are leaves, L >= 1 = INDIRECT references of level L |
//! |   8 | 8 | inode number |
//! |  16 | 8 | parent directory inode number (directories, the root: 1 itself; 0 otherwise) |
//! |  24 | 4 | mode (`st_mode`, with file-type bits) |
//! |  28 | 4 | uid |
//! |  32 | 4 | gid |
//! |  36 | 4 | nlink |
//! |  40 | 8 | size: bytes (files, symlinks); number of entries (directories); 0 otherwise |
//! |  48 | 8 | rdev |
//! |  56 | 12 | atime (i64 seconds, u32 nanoseconds) |
//! |  68 | 12 | mtime |
//! |  80 | 12 | ctime |
//! |  92 | 12 | btime (creation) |
//! | 104 | 8 | version: bumped on every change of the inode |
//! | 112 | 8 | flags (none defined in version 1; must be zero) |
//! | 120 | 8 | create_tid: transaction that created the inode |
//! | 128 | 8 | blocks: bytes of the DATA blocks in the inode's tree (`st_blocks * 512`) |
//! | 136 | 1 | layout 2: copies (0 default, 1..=4); layout 1: zero |
//! | 137 | 1 | layout 2: compression (0 default, 1 none, 2 lz4, 3 zstd); layout 1: zero |
//! | 138 | 1 | layout 2: zstd level (0 default, 1..=19); layout 1: zero |
//! | 139 | 117 | reserved, zero |
//! | 256 | 3840 | union: 30 block references, or up to 3840 bytes of data then zeros |

use crate::blockref::{Blockref, decode_blockset_within, encode_blockset};
use crate::bytes::{Reader, Writer};
use crate::layout::*;
use crate::{DecodeError, DecodeResult};

const MAGIC: u32 = 0x444f_4e49;
const LAYOUT_VERSION: u16 = 1;
const LAYOUT_VERSION_2: u16 = 2;
/// Largest compression code of a layout-2 inode (3 zstd).
const MAX_INODE_COMPRESSION: u8 = 3;

/// Byte offsets of the inode header's fields (the table above; FORMAT.md §7).
pub mod off {
    pub const MAGIC: usize = 0;
    pub const LAYOUT_VERSION: usize = 4;
    pub const CONTENT: usize = 6;
    pub const ROOT_LEVEL: usize = 7;
    pub const INUM: usize = 8;
    pub const PARENT: usize = 16;
    pub const MODE: usize = 24;
    pub const UID: usize = 28;
    pub const GID: usize = 32;
    pub const NLINK: usize = 36;
    pub const SIZE: usize = 40;
    pub const RDEV: usize = 48;
    /// atime, mtime, ctime, btime: `TIMES_COUNT` timestamps of `TIME_SIZE` bytes each, an i64
    /// of seconds then a u32 of nanoseconds.
    pub const TIMES: usize = 56;
    pub const TIME_SIZE: usize = 12;
    pub const TIME_NSEC: usize = 8;
    pub const TIMES_COUNT: usize = 4;
    pub const VERSION: usize = 104;
    /// 8 bytes, none defined in version 1.
    pub const FLAGS: usize = 112;
    pub const CREATE_TID: usize = 120;
    pub const BLOCKS: usize = 128;
    /// Layout 2 (zero in layout 1).
    pub const COPIES: usize = 136;
    pub const COMPRESSION: usize = 137;
    pub const ZSTD_LEVEL: usize = 138;
    /// Reserved up to the union (from 136 in layout 1).
    pub const RESERVED_136: usize = 136;
    pub const RESERVED_139: usize = 139;
    /// The union: a root blockset or embedded data (`layout::INODE_HEADER_SIZE`).
    pub const UNION: usize = crate::layout::INODE_HEADER_SIZE;
}

/// Values of the content field.
const CONTENT_TREE: u8 = 0;
const CONTENT_EMBEDDED: u8 = 1;
/// Nanoseconds are below one second.
const NSEC_PER_SEC: u32 = 1_000_000_000;
/// The mode holds the file-type and permission bits, nothing above.
const MODE_BITS: u32 = 0o177777;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

impl Timespec {
    pub const ZERO: Timespec = Timespec { sec: 0, nsec: 0 };
    pub fn now() -> Timespec {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timespec { sec: d.as_secs() as i64, nsec: d.subsec_nanos() }
    }
    pub fn as_nanos(&self) -> i128 {
        i128::from(self.sec) * 1_000_000_000 + i128::from(self.nsec)
    }
}

/// What the 3840-byte union holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InodeContent {
    /// Root of the inode's tree: up to 30 sorted references. `root_level` 0 means they are
    /// leaves (data blocks, directory entries, xattrs); L >= 1 means INDIRECT of level L.
    Tree { root_level: u8, entries: Vec<Blockref> },
    /// The file's bytes (`size` of them), for files, symlinks up to 3840 bytes.
    Embedded(Vec<u8>),
}

/// The per-file settings of inode layout 2 (format version 2); all zero means "the
/// filesystem's defaults", which is how a layout-1 inode reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InodePolicy {
    /// 0: the filesystem's copies; else 1..=4.
    pub copies: u8,
    /// 0: the filesystem's default; 1 none, 2 lz4, 3 zstd.
    pub compression: u8,
    /// 0: the filesystem's default; else 1..=19.
    pub zstd_level: u8,
}

impl InodePolicy {
    pub fn is_default(&self) -> bool {
        *self == InodePolicy::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeBlock {
    pub inum: u64,
    pub parent: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub rdev: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub btime: Timespec,
    pub version: u64,
    pub create_tid: u64,
    pub blocks: u64,
    /// Layout-2 settings; the defaults are written as layout 1, byte for byte.
    pub policy: InodePolicy,
    pub content: InodeContent,
}

pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;

impl InodeBlock {
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; INODE_SIZE];
        let mut w = Writer::new(&mut out);
        w.u32(off::MAGIC, MAGIC);
        // Layout 2 only when it says something layout 1 cannot: an inode with default
        // settings stays readable by version-1 code (FORMAT.md "Version 2").
        if self.policy.is_default() {
            w.u16(off::LAYOUT_VERSION, LAYOUT_VERSION);
        } else {
            w.u16(off::LAYOUT_VERSION, LAYOUT_VERSION_2);
            w.u8(off::COPIES, self.policy.copies);
            w.u8(off::COMPRESSION, self.policy.compression);
            w.u8(off::ZSTD_LEVEL, self.policy.zstd_level);
        }
        w.u64(off::INUM, self.inum);
        w.u64(off::PARENT, self.parent);
        w.u32(off::MODE, self.mode);
        w.u32(off::UID, self.uid);
        w.u32(off::GID, self.gid);
        w.u32(off::NLINK, self.nlink);
        w.u64(off::SIZE, self.size);
        w.u64(off::RDEV, self.rdev);
        for (i, t) in [self.atime, self.mtime, self.ctime, self.btime].iter().enumerate() {
            let o = off::TIMES + off::TIME_SIZE * i;
            w.i64(o, t.sec);
            w.u32(o + off::TIME_NSEC, t.nsec);
        }
        w.u64(off::VERSION, self.version);
        w.u64(off::CREATE_TID, self.create_tid);
        w.u64(off::BLOCKS, self.blocks);
        match &self.content {
            InodeContent::Tree { root_level, entries } => {
                w.u8(off::CONTENT, CONTENT_TREE);
                w.u8(off::ROOT_LEVEL, *root_level);
                encode_blockset(entries, INODE_ROOT_ENTRIES, &mut out[off::UNION..]);
            }
            InodeContent::Embedded(data) => {
                w.u8(off::CONTENT, CONTENT_EMBEDDED);
                out[off::UNION..off::UNION + data.len()].copy_from_slice(data);
            }
        }
        out
    }

    pub fn decode(buf: &[u8]) -> DecodeResult<InodeBlock> {
        InodeBlock::decode_within(buf, MAX_DEVICES)
    }

    /// [`InodeBlock::decode`] for a filesystem of `device_count` devices: every copy of
    /// every root entry names one of them.
    pub fn decode_within(buf: &[u8], device_count: usize) -> DecodeResult<InodeBlock> {
        let r = Reader::new(buf, INODE_SIZE, "inode")?;
        if r.u32(off::MAGIC)? != MAGIC {
            return Err(DecodeError::BadMagic { what: "inode" });
        }
        let v = r.u16(off::LAYOUT_VERSION)?;
        let policy = match v {
            LAYOUT_VERSION => {
                r.zero(off::RESERVED_136, off::UNION - off::RESERVED_136)?;
                InodePolicy::default()
            }
            LAYOUT_VERSION_2 => {
                r.zero(off::RESERVED_139, off::UNION - off::RESERVED_139)?;
                let p = InodePolicy {
                    copies: r.u8(off::COPIES)?,
                    compression: r.u8(off::COMPRESSION)?,
                    zstd_level: r.u8(off::ZSTD_LEVEL)?,
                };
                if usize::from(p.copies) > MAX_COPIES {
                    return Err(r.bad("copies", u64::from(p.copies)));
                }
                if p.compression > MAX_INODE_COMPRESSION {
                    return Err(r.bad("compression", u64::from(p.compression)));
                }
                if p.zstd_level > MAX_ZSTD_LEVEL {
                    return Err(r.bad("zstd level", u64::from(p.zstd_level)));
                }
                p
            }
            _ => return Err(DecodeError::BadVersion { what: "inode", version: u32::from(v) }),
        };
        r.zero(off::FLAGS, off::CREATE_TID - off::FLAGS)?;
        let mut times = [Timespec::ZERO; off::TIMES_COUNT];
        for (i, t) in times.iter_mut().enumerate() {
            let o = off::TIMES + off::TIME_SIZE * i;
            *t = Timespec { sec: r.i64(o)?, nsec: r.u32(o + off::TIME_NSEC)? };
            if t.nsec >= NSEC_PER_SEC {
                return Err(r.bad("nanoseconds", u64::from(t.nsec)));
            }
        }
        let inum = r.u64(off::INUM)?;
        let mode = r.u32(off::MODE)?;
        let size = r.u64(off::SIZE)?;
        if inum < ROOT_INUM {
            return Err(r.bad("inode number", inum));
        }
        if dtype::from_mode(mode).is_none() || mode & !MODE_BITS != 0 {
            return Err(r.bad("mode", u64::from(mode)));
        }
        if size > MAX_FILE_SIZE {
            return Err(r.bad("size", size));
        }
        let content = match r.u8(off::CONTENT)? {
            CONTENT_TREE => {
                let root_level = r.u8(off::ROOT_LEVEL)?;
                if root_level > MAX_TREE_LEVEL {
                    return Err(r.bad("root level", u64::from(root_level)));
                }
                let entries = decode_blockset_within(
                    r.bytes(off::UNION, INODE_EMBED_MAX)?,
                    INODE_ROOT_ENTRIES,
                    root_level,
                    device_count,
                )?;
                if root_level > 0 && entries.is_empty() {
                    return Err(r.bad("empty root above level 0", u64::from(root_level)));
                }
                InodeContent::Tree { root_level, entries }
            }
            CONTENT_EMBEDDED => {
                let root_level = r.u8(off::ROOT_LEVEL)?;
                if root_level != 0 {
                    return Err(r.bad("root level of embedded inode", u64::from(root_level)));
                }
                if size > INODE_EMBED_MAX as u64 || mode & S_IFMT == S_IFDIR {
                    return Err(r.bad("embedded size", size));
                }
                let n = size as usize;
                r.zero(off::UNION + n, INODE_EMBED_MAX - n)?;
                InodeContent::Embedded(r.bytes(off::UNION, n)?.to_vec())
            }
            c => return Err(r.bad("content kind", u64::from(c))),
        };
        Ok(InodeBlock {
            inum,
            parent: r.u64(off::PARENT)?,
            mode,
            uid: r.u32(off::UID)?,
            gid: r.u32(off::GID)?,
            nlink: r.u32(off::NLINK)?,
            size,
            rdev: r.u64(off::RDEV)?,
            atime: times[0],
            mtime: times[1],
            ctime: times[2],
            btime: times[3],
            version: r.u64(off::VERSION)?,
            create_tid: r.u64(off::CREATE_TID)?,
            blocks: r.u64(off::BLOCKS)?,
            policy,
            content,
        })
    }
}
