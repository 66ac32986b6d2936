//! The send stream (docs/SEND-STREAM.md): records, their framing, and the reader that
//! verifies them. Independent of the on-disk layout: it carries inode numbers, attributes,
//! directory entries, extended attributes and logical file content, never block addresses,
//! copies or compression, so the receiver stores it with its own.
//!
//! Every record is framed as `len u32 | kind u8 | payload[len] | crc32c u32` (the crc over
//! everything before it in the frame), all little-endian. The first record is the header,
//! the last the end record, which holds the count of records before it and a blake3 of
//! every frame byte before it: a stream cut short, reordered or altered is refused (SR1).

use std::io::{Read, Write};

/// First bytes of a header record's payload.
pub const MAGIC: [u8; 8] = *b"H2SEND\0\0";
/// The stream format version this build writes and reads (2: checkpoints, resume fields in
/// the header, per-file settings in inode records).
pub const VERSION: u16 = 2;
/// Stream bytes between two checkpoint records, by default: what a cut stream loses at
/// most, and what a receiver holds in memory before it applies (SR8).
pub const CHECKPOINT_BYTES: u64 = 16 << 20;
/// The most stream bytes a receiver takes between two checkpoints: it holds them in memory
/// until the next checkpoint verifies them, so a stream with fewer checkpoints is refused
/// rather than held whole (a writer never puts them further apart).
pub const MAX_CHUNK_BYTES: u64 = 64 << 20;
/// The largest payload a record may have (a data record holds one block of at most 64 KiB
/// plus its fields; leaves hold at most a 64 KiB xattr value): bigger lengths are damage.
pub const MAX_PAYLOAD: u32 = 1 << 20;

/// Why a stream was refused.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the stream is not a hammer2 send stream")]
    NotAStream,
    #[error("send stream version {0} is not supported (this build reads version {VERSION})")]
    Version(u16),
    #[error("the stream is truncated (after {0} records)")]
    Truncated(u64),
    #[error("the stream is corrupt: record {record}: {what}")]
    Corrupt { record: u64, what: String },
    #[error("I/O error on the stream: {0}")]
    Io(#[from] std::io::Error),
}

impl StreamError {
    /// A stream that ended early (cut), as opposed to one that is damaged: what was verified
    /// before the cut can be kept and the rest resumed (SR8).
    pub fn is_cut(&self) -> bool {
        matches!(self, StreamError::Truncated(_))
    }
}

/// Which content record a position names (declared with the resume token, SR9).
pub use crate::fs::resume::RecordId;

/// Timestamps as seconds and nanoseconds (the inode's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Time {
    pub sec: i64,
    pub nsec: u32,
}

/// The first record: what the stream is of, and what it needs on the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Random per stream (a resume token will name it).
    pub stream_id: [u8; 16],
    /// The sender's PFS the snapshots were taken of: the lineage an incremental continues.
    pub pfs_uuid: [u8; 16],
    pub snapshot_uuid: [u8; 16],
    pub snapshot_tid: u64,
    /// The name the snapshot has on the sender.
    pub snapshot_name: String,
    /// Zero for a full stream; else the sender's snapshot tid the receiver must hold.
    pub base_tid: u64,
    pub base_uuid: [u8; 16],
    /// The sender's next inode number: the receiver keeps the sender's numbers.
    pub next_inum: u64,
    /// 0 for a whole stream. In a resumed one (`send --resume-token`), the position of its
    /// first content record in the whole stream's order; `resume_after` names the record
    /// just before it (SR9).
    pub resume_from: u64,
    pub resume_after: RecordId,
}

impl Header {
    pub fn is_incremental(&self) -> bool {
        self.base_tid != 0
    }
}

/// An inode's attributes, whole (a changed inode is always sent with all of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeAttrs {
    pub inum: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub rdev: u64,
    pub parent: u64,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
    pub btime: Time,
    /// The file's own settings (`hammer2 set`): copies 0 (the filesystem's) or 1..=4,
    /// compression 0 (the default), 1 none, 2 lz4, 3 zstd, zstd level 0 or 1..=19.
    pub copies: u8,
    pub compression: u8,
    pub zstd_level: u8,
}

/// One record of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Header(Header),
    /// An inode new or changed since the base: its attributes; its changed entries, xattrs
    /// and data follow.
    Inode(InodeAttrs),
    /// Directory entry `key` of directory `dir` (the sender's key: the receiver keeps it).
    Dirent {
        dir: u64,
        key: u64,
        name: Vec<u8>,
        inum: u64,
        dtype: u8,
    },
    /// Extended attribute leaf `key` of inode `inum`.
    Xattr {
        inum: u64,
        key: u64,
        name: Vec<u8>,
        value: Vec<u8>,
    },
    /// Logical content of the block at byte `offset` of file `inum` (a symlink's target at
    /// 0), with a blake3 of it that the receiver checks before storing it.
    Data {
        inum: u64,
        offset: u64,
        hash: [u8; 32],
        bytes: Vec<u8>,
    },
    /// A directory entry, xattr (`leaf`) or data block (`!leaf`) at `key` the base had and
    /// the snapshot does not.
    Remove {
        inum: u64,
        key: u64,
        leaf: bool,
    },
    /// An inode the base had and the snapshot does not.
    Delete {
        inum: u64,
    },
    /// Every [`CHECKPOINT_BYTES`] or so: how many records came before it in this stream, a
    /// blake3 of every frame before it, and the position of the next content record. What
    /// came before a checkpoint can be applied before the rest arrives (SR8).
    Checkpoint {
        records: u64,
        hash: [u8; 32],
        position: u64,
    },
    /// The last record: as a checkpoint, and the check value of the whole tree sent, as
    /// a difference from the base's (SR10).
    End {
        records: u64,
        hash: [u8; 32],
        position: u64,
        tree: [u8; 32],
    },
}

/// Record kinds (SEND-STREAM.md "Records").
pub mod kind {
    pub const HEADER: u8 = 1;
    pub const INODE: u8 = 2;
    pub const DIRENT: u8 = 3;
    pub const XATTR: u8 = 4;
    pub const DATA: u8 = 5;
    pub const REMOVE: u8 = 6;
    pub const DELETE: u8 = 7;
    pub const END: u8 = 8;
    pub const CHECKPOINT: u8 = 9;
}

struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn time(&mut self, t: Time) {
        self.0.extend_from_slice(&t.sec.to_le_bytes());
        self.u32(t.nsec);
    }
    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    /// Bytes with a u32 length before them.
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.raw(b);
    }
}

impl Record {
    fn kind(&self) -> u8 {
        match self {
            Record::Header(_) => kind::HEADER,
            Record::Inode(_) => kind::INODE,
            Record::Dirent { .. } => kind::DIRENT,
            Record::Xattr { .. } => kind::XATTR,
            Record::Data { .. } => kind::DATA,
            Record::Remove { .. } => kind::REMOVE,
            Record::Delete { .. } => kind::DELETE,
            Record::End { .. } => kind::END,
            Record::Checkpoint { .. } => kind::CHECKPOINT,
        }
    }

    /// Content records (all but the header, checkpoints and the end) are what positions
    /// count (SR3, SR9).
    pub fn is_content(&self) -> bool {
        !matches!(self, Record::Header(_) | Record::Checkpoint { .. } | Record::End { .. })
    }

    /// Which content record this is (kind, inode, key).
    pub fn id(&self) -> RecordId {
        let (inum, key) = match self {
            Record::Inode(a) => (a.inum, 0),
            Record::Dirent { dir, key, .. } => (*dir, *key),
            Record::Xattr { inum, key, .. } | Record::Remove { inum, key, .. } => (*inum, *key),
            Record::Data { inum, offset, .. } => (*inum, *offset),
            Record::Delete { inum } => (*inum, 0),
            _ => (0, 0),
        };
        RecordId { kind: self.kind(), inum, key }
    }

    fn payload(&self) -> Vec<u8> {
        let mut o = Out(Vec::new());
        match self {
            Record::Header(h) => {
                o.raw(&MAGIC);
                o.u16(VERSION);
                o.raw(&h.stream_id);
                o.raw(&h.pfs_uuid);
                o.raw(&h.snapshot_uuid);
                o.u64(h.snapshot_tid);
                o.raw(&h.base_uuid);
                o.u64(h.base_tid);
                o.u64(h.next_inum);
                o.bytes(h.snapshot_name.as_bytes());
                o.u64(h.resume_from);
                o.u8(h.resume_after.kind);
                o.u64(h.resume_after.inum);
                o.u64(h.resume_after.key);
            }
            Record::Inode(a) => {
                o.u64(a.inum);
                o.u32(a.mode);
                o.u32(a.uid);
                o.u32(a.gid);
                o.u32(a.nlink);
                o.u64(a.size);
                o.u64(a.rdev);
                o.u64(a.parent);
                for t in [a.atime, a.mtime, a.ctime, a.btime] {
                    o.time(t);
                }
                o.u8(a.copies);
                o.u8(a.compression);
                o.u8(a.zstd_level);
            }
            Record::Dirent { dir, key, name, inum, dtype } => {
                o.u64(*dir);
                o.u64(*key);
                o.u64(*inum);
                o.u8(*dtype);
                o.bytes(name);
            }
            Record::Xattr { inum, key, name, value } => {
                o.u64(*inum);
                o.u64(*key);
                o.bytes(name);
                o.bytes(value);
            }
            Record::Data { inum, offset, hash, bytes } => {
                o.u64(*inum);
                o.u64(*offset);
                o.raw(hash);
                o.bytes(bytes);
            }
            Record::Remove { inum, key, leaf } => {
                o.u64(*inum);
                o.u64(*key);
                o.u8(u8::from(*leaf));
            }
            Record::Delete { inum } => o.u64(*inum),
            Record::Checkpoint { records, hash, position } => {
                o.u64(*records);
                o.raw(hash);
                o.u64(*position);
            }
            Record::End { records, hash, position, tree } => {
                o.u64(*records);
                o.raw(hash);
                o.u64(*position);
                o.raw(tree);
            }
        }
        o.0
    }

    /// The record framed: `len | kind | payload | crc32c`.
    pub fn frame(&self) -> Vec<u8> {
        let payload = self.payload();
        let mut f = Vec::with_capacity(payload.len() + 9);
        f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        f.push(self.kind());
        f.extend_from_slice(&payload);
        let crc = crc32c::crc32c(&f);
        f.extend_from_slice(&crc.to_le_bytes());
        f
    }
}

/// The blake3 of a data record's bytes.
pub fn data_hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

struct In<'a> {
    b: &'a [u8],
    record: u64,
}

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StreamError> {
        if self.b.len() < n {
            return Err(StreamError::Corrupt { record: self.record, what: "a field runs past the record".into() });
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, StreamError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, StreamError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap_or_default()))
    }
    fn u32(&mut self) -> Result<u32, StreamError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn u64(&mut self) -> Result<u64, StreamError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], StreamError> {
        Ok(self.take(N)?.try_into().unwrap_or([0; N]))
    }
    fn time(&mut self) -> Result<Time, StreamError> {
        let sec = self.u64()? as i64;
        Ok(Time { sec, nsec: self.u32()? })
    }
    fn bytes(&mut self) -> Result<Vec<u8>, StreamError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn done(&self) -> Result<(), StreamError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(StreamError::Corrupt { record: self.record, what: "bytes left over after the record's fields".into() })
        }
    }
}

fn decode(record: u64, kind: u8, payload: &[u8]) -> Result<Record, StreamError> {
    let mut i = In { b: payload, record };
    let r = match kind {
        kind::HEADER => {
            if i.take(8).ok() != Some(&MAGIC[..]) {
                return Err(StreamError::NotAStream);
            }
            let v = i.u16()?;
            if v != VERSION {
                return Err(StreamError::Version(v));
            }
            let stream_id = i.array()?;
            let pfs_uuid = i.array()?;
            let snapshot_uuid = i.array()?;
            let snapshot_tid = i.u64()?;
            let base_uuid = i.array()?;
            let base_tid = i.u64()?;
            let next_inum = i.u64()?;
            let name = i.bytes()?;
            let snapshot_name = String::from_utf8(name)
                .map_err(|_| StreamError::Corrupt { record, what: "the snapshot name is not UTF-8".into() })?;
            let resume_from = i.u64()?;
            let resume_after = RecordId { kind: i.u8()?, inum: i.u64()?, key: i.u64()? };
            Record::Header(Header {
                stream_id,
                pfs_uuid,
                snapshot_uuid,
                snapshot_tid,
                snapshot_name,
                base_tid,
                base_uuid,
                next_inum,
                resume_from,
                resume_after,
            })
        }
        kind::INODE => Record::Inode(InodeAttrs {
            inum: i.u64()?,
            mode: i.u32()?,
            uid: i.u32()?,
            gid: i.u32()?,
            nlink: i.u32()?,
            size: i.u64()?,
            rdev: i.u64()?,
            parent: i.u64()?,
            atime: i.time()?,
            mtime: i.time()?,
            ctime: i.time()?,
            btime: i.time()?,
            copies: i.u8()?,
            compression: i.u8()?,
            zstd_level: i.u8()?,
        }),
        kind::DIRENT => {
            let (dir, key, inum, dtype) = (i.u64()?, i.u64()?, i.u64()?, i.u8()?);
            Record::Dirent { dir, key, inum, dtype, name: i.bytes()? }
        }
        kind::XATTR => Record::Xattr { inum: i.u64()?, key: i.u64()?, name: i.bytes()?, value: i.bytes()? },
        kind::DATA => Record::Data { inum: i.u64()?, offset: i.u64()?, hash: i.array()?, bytes: i.bytes()? },
        kind::REMOVE => Record::Remove { inum: i.u64()?, key: i.u64()?, leaf: i.u8()? != 0 },
        kind::DELETE => Record::Delete { inum: i.u64()? },
        kind::END => Record::End { records: i.u64()?, hash: i.array()?, position: i.u64()?, tree: i.array()? },
        kind::CHECKPOINT => Record::Checkpoint { records: i.u64()?, hash: i.array()?, position: i.u64()? },
        k => return Err(StreamError::Corrupt { record, what: format!("unknown record kind {k}") }),
    };
    i.done()?;
    Ok(r)
}

/// Writes records, counting them and hashing their frames for the end record.
/// Puts a checkpoint after every `checkpoint_bytes` of frames; `position` counts the
/// content records of the whole stream's order (a resumed stream starts at its
/// `resume_from`).
pub struct Writer<W: Write> {
    out: W,
    hash: blake3::Hasher,
    records: u64,
    bytes: u64,
    position: u64,
    checkpoint_bytes: u64,
    since_checkpoint: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Self::with_checkpoints(out, CHECKPOINT_BYTES, 0)
    }

    /// A writer with a checkpoint every `checkpoint_bytes` (at least one record between
    /// two), whose first content record has position `position`.
    pub fn with_checkpoints(out: W, checkpoint_bytes: u64, position: u64) -> Self {
        Writer {
            out,
            hash: blake3::Hasher::new(),
            records: 0,
            bytes: 0,
            position,
            checkpoint_bytes: checkpoint_bytes.clamp(1, MAX_CHUNK_BYTES - 2 * u64::from(MAX_PAYLOAD)),
            since_checkpoint: 0,
        }
    }

    fn put_frame(&mut self, f: &[u8]) -> std::io::Result<()> {
        self.out.write_all(f)?;
        self.hash.update(f);
        self.records += 1;
        self.bytes += f.len() as u64;
        self.since_checkpoint += f.len() as u64;
        Ok(())
    }

    pub fn put(&mut self, r: &Record) -> std::io::Result<()> {
        self.put_frame(&r.frame())?;
        if r.is_content() {
            self.position += 1;
            if self.since_checkpoint >= self.checkpoint_bytes {
                let c = Record::Checkpoint {
                    records: self.records,
                    hash: *self.hash.finalize().as_bytes(),
                    position: self.position,
                };
                self.put_frame(&c.frame())?;
                self.since_checkpoint = 0;
            }
        }
        Ok(())
    }

    /// Writes the end record with the tree's check value `tree` and flushes; returns
    /// (records including the end, bytes).
    pub fn finish(mut self, tree: [u8; 32]) -> std::io::Result<(u64, u64)> {
        let end = Record::End {
            records: self.records,
            hash: *self.hash.finalize().as_bytes(),
            position: self.position,
            tree,
        };
        self.put_frame(&end.frame())?;
        self.out.flush()?;
        Ok((self.records, self.bytes))
    }

    /// Position of the next content record.
    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Reads records, checking each frame's crc, that the first is a header and that the end
/// record matches what came before it; after the end record, nothing may follow.
pub struct Reader<R: Read> {
    input: R,
    hash: blake3::Hasher,
    records: u64,
    bytes: u64,
    ended: bool,
    /// Position of the next content record in the whole stream's order.
    content: u64,
    /// The end record's tree check value, once it verified.
    tree: Option<[u8; 32]>,
}

impl<R: Read> Reader<R> {
    pub fn new(input: R) -> Self {
        Reader { input, hash: blake3::Hasher::new(), records: 0, bytes: 0, ended: false, content: 0, tree: None }
    }

    /// The check value of the tree the stream describes (SR10), after its end record.
    pub fn tree(&self) -> Option<[u8; 32]> {
        self.tree
    }

    /// The position (in the whole stream's order) of the next content record.
    pub fn content_position(&self) -> u64 {
        self.content
    }

    /// Records read so far (the position of the next one).
    pub fn position(&self) -> u64 {
        self.records
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The next record; None after a verified end record (and the end of the input).
    pub fn next_record(&mut self) -> Result<Option<Record>, StreamError> {
        if self.ended {
            return Ok(None);
        }
        let at = self.records;
        let mut head = [0u8; 5];
        if !read_full(&mut self.input, &mut head)? {
            return Err(if at == 0 { StreamError::NotAStream } else { StreamError::Truncated(at) });
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if len > MAX_PAYLOAD {
            return Err(if at == 0 {
                StreamError::NotAStream
            } else {
                StreamError::Corrupt { record: at, what: format!("a record length of {len} bytes") }
            });
        }
        let mut rest = vec![0u8; len as usize + 4];
        if !read_full(&mut self.input, &mut rest)? {
            return Err(StreamError::Truncated(at));
        }
        let (payload, crc) = rest.split_at(len as usize);
        let mut frame = Vec::with_capacity(5 + rest.len());
        frame.extend_from_slice(&head);
        frame.extend_from_slice(payload);
        if crc32c::crc32c(&frame).to_le_bytes() != crc {
            return Err(if at == 0 {
                StreamError::NotAStream
            } else {
                StreamError::Corrupt { record: at, what: "check value mismatch".into() }
            });
        }
        let r = decode(at, head[4], payload)?;
        frame.extend_from_slice(crc);
        let positioned = |p: u64, content: u64| {
            if p == content {
                Ok(())
            } else {
                Err(StreamError::Corrupt { record: at, what: format!("a checkpoint at position {p}, not {content}") })
            }
        };
        match (&r, at) {
            (Record::Header(h), 0) => self.content = h.resume_from,
            (_, 0) => return Err(StreamError::NotAStream),
            (Record::Header(_), _) => {
                return Err(StreamError::Corrupt { record: at, what: "a second header".into() });
            }
            (Record::Checkpoint { records, hash, position }, _) => {
                positioned(*position, self.content)?;
                if *records != at || hash != self.hash.finalize().as_bytes() {
                    return Err(StreamError::Corrupt {
                        record: at,
                        what: "a checkpoint does not match the records before it".into(),
                    });
                }
            }
            (Record::End { records, hash, position, tree }, _) => {
                positioned(*position, self.content)?;
                self.tree = Some(*tree);
                if *records != at || hash != self.hash.finalize().as_bytes() {
                    return Err(StreamError::Corrupt {
                        record: at,
                        what: "the end record does not match the records before it".into(),
                    });
                }
                let mut extra = [0u8; 1];
                if read_full(&mut self.input, &mut extra)? {
                    return Err(StreamError::Corrupt { record: at + 1, what: "bytes after the end record".into() });
                }
                self.ended = true;
            }
            _ => {}
        }
        if let Record::Data { hash, bytes, .. } = &r
            && data_hash(bytes) != *hash
        {
            return Err(StreamError::Corrupt { record: at, what: "data does not match its check value".into() });
        }
        self.hash.update(&frame);
        if r.is_content() {
            self.content += 1;
        }
        self.records += 1;
        self.bytes += frame.len() as u64;
        Ok(if self.ended { None } else { Some(r) })
    }
}

/// Fills `buf`; false when the input ended first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<bool, StreamError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Reads a whole stream and checks it (every frame, the end record), keeping nothing: what
/// `hammer2 receive` does with the spooled stream before it changes anything. Returns the
/// header and the count of records (the end record included).
pub fn verify(input: impl Read) -> Result<(Header, u64), StreamError> {
    let mut r = Reader::new(input);
    let mut header = None;
    while let Some(rec) = r.next_record()? {
        if let Record::Header(h) = rec {
            header = Some(h);
        }
    }
    Ok((header.ok_or(StreamError::NotAStream)?, r.position()))
}
