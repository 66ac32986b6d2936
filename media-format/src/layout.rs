//! Fixed sizes and offsets of the format (version 1). `FORMAT.md` explains each one.

/// The format versions this code reads and writes (FORMAT.md §3, §14 and "Version 2").
/// A version-1 filesystem stays version 1 until `hammer2 upgrade` converts it.
pub const FORMAT_VERSION: u32 = 1;
pub const FORMAT_VERSION_2: u32 = 2;

/// Incompatible feature bits of a version-2 header (@104): a reader that does not know a
/// set bit must not open the filesystem. Version 1 has none.
pub mod feature {
    /// `sroot[3]` is the PFS table; `sroot[0]`/`sroot[2]` are EMPTY.
    pub const PFS_TABLE: u64 = 1 << 0;
    /// Blocks may be referenced from several trees; dead lists exist.
    pub const SHARED_BLOCKS: u64 = 1 << 1;
    /// References may have fewer or more copies than the filesystem default.
    pub const VARIABLE_COPIES: u64 = 1 << 2;
    /// DATA references may be compressed.
    pub const COMPRESSED: u64 = 1 << 3;
    /// Copies are placed freely also with D <= N (no pinned slots).
    pub const FREE_PLACEMENT: u64 = 1 << 4;
    /// Every bit version 2 defines.
    pub const ALL: u64 = PFS_TABLE | SHARED_BLOCKS | VARIABLE_COPIES | COMPRESSED | FREE_PLACEMENT;

    /// The name of each defined bit, lowest first.
    pub const NAMES: [(u64, &str); 5] = [
        (PFS_TABLE, "PFS_TABLE"),
        (SHARED_BLOCKS, "SHARED_BLOCKS"),
        (VARIABLE_COPIES, "VARIABLE_COPIES"),
        (COMPRESSED, "COMPRESSED"),
        (FREE_PLACEMENT, "FREE_PLACEMENT"),
    ];

    /// The names of the bits set in `bits` (unknown bits as hex).
    pub fn names(bits: u64) -> Vec<String> {
        let mut out: Vec<String> = NAMES.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| n.to_string()).collect();
        if bits & !ALL != 0 {
            out.push(format!("{:#x}", bits & !ALL));
        }
        out
    }
}

/// Default compression of a version-2 header (@98): 0 none, 1 lz4, 2 zstd.
pub const MAX_COMPRESSION_CODE: u8 = 2;
/// Default zstd level (@99) of a version-2 header: 1..=19.
pub const MAX_ZSTD_LEVEL: u8 = 19;

/// Allocation unit: every block's size and every block's device offset are multiples of it.
pub const UNIT: u64 = 4096;
pub const UNIT_SHIFT: u32 = 12;

/// Volume header slots: `HEADER_SLOTS` slots of `HEADER_SIZE` bytes at
/// `slot * HEADER_SLOT_SPACING` from the start of every device. Commits rotate through them.
pub const HEADER_SIZE: usize = 4096;
pub const HEADER_SLOTS: usize = 4;
pub const HEADER_SLOT_SPACING: u64 = 2 << 20;
/// Bytes at the start of every device that hold only header slots; no block lives there.
pub const RESERVED_BYTES: u64 = HEADER_SLOTS as u64 * HEADER_SLOT_SPACING;

/// Byte offset of header slot `slot` on every device.
pub const fn header_offset(slot: usize) -> u64 {
    slot as u64 * HEADER_SLOT_SPACING
}

/// At most this many devices in one filesystem, and this many copies of each block.
pub const MAX_DEVICES: usize = 16;
pub const MAX_COPIES: usize = 4;
/// A device holds at most this many copy regions (used when there are fewer devices than
/// copies: the copies that share a device live in separate regions of it).
pub const MAX_REGIONS: usize = MAX_COPIES;
/// Each region must hold at least this many bytes.
pub const MIN_REGION_BYTES: u64 = 16 << 20;

pub const BLOCKREF_SIZE: usize = 128;

/// Inode blocks are one unit: a 256-byte header and a 3840-byte union of either up to
/// `INODE_ROOT_ENTRIES` block references or `INODE_EMBED_MAX` bytes of embedded data.
pub const INODE_SIZE: usize = 4096;
pub const INODE_HEADER_SIZE: usize = 256;
pub const INODE_EMBED_MAX: usize = INODE_SIZE - INODE_HEADER_SIZE;
pub const INODE_ROOT_ENTRIES: usize = INODE_EMBED_MAX / BLOCKREF_SIZE;

/// Block size limits (log2). Data and indirect block sizes are chosen per filesystem at
/// mkfs time and recorded in the volume header.
pub const MIN_BLOCK_SHIFT: u8 = 12;
pub const MAX_DATA_BLOCK_SHIFT: u8 = 20;
pub const MAX_INDIRECT_BLOCK_SHIFT: u8 = 16;
/// 16 KiB: a 4 KiB random write rewrites 4x its size (per copy) instead of 16x with 64 KiB
/// blocks, while sequential I/O still moves few, large blocks.
pub const DEFAULT_DATA_BLOCK_SHIFT: u8 = 14;
pub const DEFAULT_INDIRECT_BLOCK_SHIFT: u8 = 16;
/// No block of any type is larger than this.
pub const MAX_BLOCK_SIZE: u32 = 1 << MAX_DATA_BLOCK_SHIFT;
/// The height of every tree is bounded; a deeper tree is corrupt (and would be a loop).
pub const MAX_TREE_LEVEL: u8 = 16;

/// One free-map leaf is a bitmap of `FREEMAP_LEAF_UNITS` allocation units (512 MiB).
pub const FREEMAP_LEAF_SIZE: usize = 16384;
pub const FREEMAP_LEAF_UNITS: u64 = FREEMAP_LEAF_SIZE as u64 * 8;

/// A PFS record block (format version 2): one unit.
pub const PFS_RECORD_SIZE: usize = 4096;
/// A PFS name: 1..=`PFS_NAME_MAX` bytes of UTF-8, no `/`, no NUL.
pub const PFS_NAME_MAX: usize = 64;
/// The PFS mkfs and upgrade make, and the one a mount serves unless told otherwise.
pub const ROOT_PFS_NAME: &str = "ROOT";
pub const ROOT_PFS_ID: u64 = 1;

/// The filesystem label: at most this many bytes of UTF-8, without NUL (volume header §3).
pub const LABEL_MAX: usize = 64;

/// Names: at most 255 bytes; up to 64 are stored inside the directory-entry block reference.
pub const MAX_NAME_LEN: usize = 255;
pub const INLINE_NAME_MAX: usize = 64;
/// Extended attribute values are at most 64 KiB.
pub const MAX_XATTR_VALUE: usize = 65536;
/// Symlink targets are at most this long (PATH_MAX - 1).
pub const MAX_SYMLINK_LEN: usize = 4095;

/// Inode number of the root directory. Inode numbers start here and are never reused.
pub const ROOT_INUM: u64 = 1;

/// Keys inside an inode's tree. File data blocks are keyed by their byte offset; directory
/// entries by `dirent::dirent_key`; extended attributes by `dirent::xattr_key`, which all have
/// bit 63 set so they never collide with data or directory entries.
pub const XATTR_KEY_BIT: u64 = 1 << 63;
/// Low key bits of directory-entry and xattr keys: a collision iterator.
pub const HASH_ITER_MASK: u64 = 0x7fff;
/// Largest file size (data keys stay below the xattr key space).
pub const MAX_FILE_SIZE: u64 = 1 << 62;

/// Indexes of the volume's root block references (`VolumeHeader::sroot`).
pub const SROOT_INODES: usize = 0;
pub const SROOT_FREEMAP: usize = 1;
pub const SROOT_ORPHANS: usize = 2;
/// Version 2 with `PFS_TABLE`: the PFS table (a tree of PFS leaves keyed by PFS id).
pub const SROOT_PFS_TABLE: usize = 3;
pub const SROOT_COUNT: usize = 4;

/// The smallest device mkfs accepts (header area plus one minimal region).
pub const MIN_DEVICE_BYTES: u64 = RESERVED_BYTES + MIN_REGION_BYTES;

/// `[start, end)` byte range of region `k` of `regions` on a device of `device_size` bytes:
/// the area after the reserved header space is cut into equal unit-aligned parts.
pub fn region_bounds(device_size: u64, regions: u8, k: u8) -> (u64, u64) {
    let regions = u64::from(regions.max(1));
    let usable = device_size.saturating_sub(RESERVED_BYTES);
    let len = usable / regions / UNIT * UNIT;
    let start = RESERVED_BYTES + u64::from(k) * len;
    (start, start + len)
}

/// Key of a free-map leaf: the device index above bit 32, the leaf number below.
pub const fn freemap_key(device: u8, leaf: u32) -> u64 {
    ((device as u64) << FREEMAP_KEY_DEVICE_SHIFT) | leaf as u64
}
pub const fn freemap_key_split(key: u64) -> (u64, u64) {
    (key >> FREEMAP_KEY_DEVICE_SHIFT, key & ((1 << FREEMAP_KEY_DEVICE_SHIFT) - 1))
}
/// Bits of a free-map key below the device index: the leaf number.
pub const FREEMAP_KEY_DEVICE_SHIFT: u32 = 32;

/// Directory entry types, as Linux `DT_*` values.
pub mod dtype {
    pub const FIFO: u8 = 1;
    pub const CHR: u8 = 2;
    pub const DIR: u8 = 4;
    pub const BLK: u8 = 6;
    pub const REG: u8 = 8;
    pub const LNK: u8 = 10;
    pub const SOCK: u8 = 12;
    pub fn valid(t: u8) -> bool {
        matches!(t, FIFO | CHR | DIR | BLK | REG | LNK | SOCK)
    }
    /// The `DT_*` value for a `st_mode`'s file-type bits.
    pub fn from_mode(mode: u32) -> Option<u8> {
        Some(match mode & 0o170000 {
            0o010000 => FIFO,
            0o020000 => CHR,
            0o040000 => DIR,
            0o060000 => BLK,
            0o100000 => REG,
            0o120000 => LNK,
            0o140000 => SOCK,
            _ => return None,
        })
    }
}
