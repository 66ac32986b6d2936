//! Compression of DATA blocks (format version 2, feature `COMPRESSED`; FORMAT.md
//! "Compression").
//!
//! A block is compressed once, when a commit finalizes it and before its check value and
//! its copies exist (Z1 in docs/DESIGN.md): the check value covers the stored bytes, so
//! everything below a file read (scrub, resync, self-heal, fsck) verifies and repairs
//! without decompressing. A read verifies first and decompresses after (Z2), so a copy
//! that decompresses to garbage is never a candidate.
//!
//! Space is saved in whole allocation units: a block is stored compressed only when its
//! frame needs at least one unit less than the block, else raw. Incompressible data costs
//! little: lz4 of the first unit decides whether the whole block is tried (the early
//! abort), which is about a quarter of one lz4 pass over a 16 KiB block.

use hammer2_format::layout::UNIT;
use hammer2_format::{Compression, CompressionMethod};

/// What a file's new blocks are compressed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Lz4,
    /// zstd at this level (1..=19).
    Zstd(u8),
}

impl Codec {
    pub fn method(self) -> CompressionMethod {
        match self {
            Codec::Lz4 => CompressionMethod::Lz4,
            Codec::Zstd(_) => CompressionMethod::Zstd,
        }
    }
}

/// The zstd level used when none is given (zstd's own default).
pub const DEFAULT_ZSTD_LEVEL: u8 = 3;

/// A setting that does not name a codec.
#[derive(Debug, thiserror::Error)]
#[error("compression {0:?}: expected none, lz4, zstd or zstd:LEVEL (LEVEL 1..=19)")]
pub struct BadSetting(pub String);

/// `none`, `lz4`, `zstd` or `zstd:LEVEL`: `None` stores raw.
pub fn parse(s: &str) -> Result<Option<Codec>, BadSetting> {
    let bad = || BadSetting(s.to_string());
    Ok(match s {
        "none" | "off" => None,
        "lz4" => Some(Codec::Lz4),
        "zstd" => Some(Codec::Zstd(DEFAULT_ZSTD_LEVEL)),
        _ => {
            let level = s.strip_prefix("zstd:").ok_or_else(bad)?.parse::<u8>().map_err(|_| bad())?;
            if !(1..=hammer2_format::layout::MAX_ZSTD_LEVEL).contains(&level) {
                return Err(bad());
            }
            Some(Codec::Zstd(level))
        }
    })
}

/// The name [`parse`] reads back.
pub fn name(codec: Option<Codec>) -> String {
    match codec {
        None => "none".into(),
        Some(Codec::Lz4) => "lz4".into(),
        Some(Codec::Zstd(level)) => format!("zstd:{level}"),
    }
}

/// A version-2 header's default (@98 method: 0 none, 1 lz4, 2 zstd; @99 zstd level).
pub fn from_header(method: u8, level: u8) -> Option<Codec> {
    match method {
        1 => Some(Codec::Lz4),
        2 => Some(Codec::Zstd(if level == 0 { DEFAULT_ZSTD_LEVEL } else { level })),
        _ => None,
    }
}

/// The header fields (@98, @99) of a default; the level is kept for zstd only.
pub fn to_header(codec: Option<Codec>) -> (u8, u8) {
    match codec {
        None => (0, DEFAULT_ZSTD_LEVEL),
        Some(Codec::Lz4) => (1, DEFAULT_ZSTD_LEVEL),
        Some(Codec::Zstd(level)) => (2, level),
    }
}

/// An inode's setting (layout 2 @137: 0 inherit, 1 none, 2 lz4, 3 zstd; @138 zstd level,
/// 0 = the default level), or `None` when it inherits.
pub fn from_inode(method: u8, level: u8) -> Option<Option<Codec>> {
    match method {
        1 => Some(None),
        2 => Some(Some(Codec::Lz4)),
        3 => Some(Some(Codec::Zstd(if level == 0 { DEFAULT_ZSTD_LEVEL } else { level }))),
        _ => None,
    }
}

/// The inode fields (@137, @138) of an explicit setting.
pub fn to_inode(codec: Option<Codec>) -> (u8, u8) {
    match codec {
        None => (1, 0),
        Some(Codec::Lz4) => (2, 0),
        Some(Codec::Zstd(level)) => (3, level),
    }
}

/// What a file's new blocks use: its own setting, else the mount's default (`-o
/// compression=`, else the header's).
pub fn effective(inode_method: u8, inode_level: u8, mount_default: Option<Codec>) -> Option<Codec> {
    from_inode(inode_method, inode_level).unwrap_or(mount_default)
}

/// A block whose stored bytes do not give back its content.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("lz4 frame does not decompress: {0}")]
    Lz4(String),
    #[error("zstd frame does not decompress: {0}")]
    Zstd(std::io::Error),
    #[error("frame decompresses to {got} bytes, the reference says {want}")]
    Length { got: usize, want: usize },
    #[error("frame of {frame} bytes in a block of {stored}")]
    Frame { frame: usize, stored: usize },
}

/// The early abort's probe: lz4 of the first unit must save at least an eighth of it
/// (1/8 was measured to keep source code, text and zeros while rejecting random,
/// already-compressed and media data on the first try).
const PROBE_MIN_SAVING: usize = UNIT as usize / 8;

/// `data` (a block's content, a whole number of units) compressed with `codec`: the
/// stored bytes (the frame, zero-padded to units) and the reference's fields. `None` when
/// the block is better stored raw: it would not save a unit, or the probe says the data
/// does not compress.
pub fn compress(codec: Codec, data: &[u8]) -> Option<(Vec<u8>, Compression)> {
    let unit = UNIT as usize;
    // A block of one unit can never save one.
    if data.len() <= unit || data.len() % unit != 0 {
        return None;
    }
    let probe = lz4_flex::block::compress(&data[..unit]);
    if probe.len() + PROBE_MIN_SAVING > unit {
        return None;
    }
    let mut frame = match codec {
        Codec::Lz4 => lz4_flex::block::compress(data),
        Codec::Zstd(level) => zstd::bulk::compress(data, i32::from(level)).ok()?,
    };
    let stored = frame.len().div_ceil(unit) * unit;
    if frame.is_empty() || stored + unit > data.len() {
        return None;
    }
    let c = Compression { method: codec.method(), logical_size: data.len() as u32, frame_len: frame.len() as u32 };
    frame.resize(stored, 0);
    Some((frame, c))
}

/// Blocks a commit compresses on one thread; more are spread over threads (a large file's
/// blocks, compressed while nothing else of the commit waits for them).
const PARALLEL_MIN_BLOCKS: usize = 16;

/// [`compress`] of each of `blocks`, in order, on several threads when there are many.
pub fn compress_all(codec: Codec, blocks: &[&[u8]]) -> Vec<Option<(Vec<u8>, Compression)>> {
    let threads = crate::parallel::threads();
    if blocks.len() < PARALLEL_MIN_BLOCKS || threads < 2 {
        return blocks.iter().map(|b| compress(codec, b)).collect();
    }
    let chunk = blocks.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = blocks
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|b| compress(codec, b)).collect::<Vec<_>>()))
            .collect();
        // A panic in a codec is the commit's (it turns one into a failed commit).
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

/// The content of a compressed block from its (verified) stored bytes.
pub fn decompress(c: &Compression, stored: &[u8]) -> Result<Vec<u8>, DecompressError> {
    let frame_len = c.frame_len as usize;
    let want = c.logical_len(stored.len() as u32) as usize;
    let frame = stored.get(..frame_len).ok_or(DecompressError::Frame { frame: frame_len, stored: stored.len() })?;
    let out = match c.method {
        CompressionMethod::Lz4 => {
            let mut out = vec![0u8; want];
            let got =
                lz4_flex::block::decompress_into(frame, &mut out).map_err(|e| DecompressError::Lz4(e.to_string()))?;
            out.truncate(got);
            out
        }
        CompressionMethod::Zstd => zstd::bulk::decompress(frame, want).map_err(DecompressError::Zstd)?,
    };
    if out.len() != want {
        return Err(DecompressError::Length { got: out.len(), want });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(len: usize) -> Vec<u8> {
        let line = b"fn main() { println!(\"hello, compressed world\"); } // some source code\n";
        line.iter().copied().cycle().take(len).collect()
    }

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn compressible_blocks_shrink_by_whole_units_and_come_back() {
        for codec in [Codec::Lz4, Codec::Zstd(3), Codec::Zstd(19)] {
            let data = text(16384);
            let (stored, c) = compress(codec, &data).expect("text compresses");
            assert_eq!(stored.len() % UNIT as usize, 0);
            assert!(stored.len() <= 12288);
            assert!(stored[c.frame_len as usize..].iter().all(|&b| b == 0));
            assert_eq!(c.logical_size, 16384);
            assert_eq!(decompress(&c, &stored).unwrap(), data);
        }
    }

    #[test]
    fn incompressible_and_one_unit_blocks_stay_raw() {
        assert!(compress(Codec::Lz4, &random(16384, 7)).is_none());
        assert!(compress(Codec::Zstd(3), &random(16384, 9)).is_none());
        assert!(compress(Codec::Lz4, &text(4096)).is_none());
        // Compressible first unit, random rest: tried, and stored raw for saving nothing.
        let mut mixed = text(4096);
        mixed.extend(random(12288, 3));
        assert!(compress(Codec::Lz4, &mixed).is_none());
    }

    #[test]
    fn compressing_many_blocks_at_once_gives_what_one_at_a_time_gives() {
        let blocks: Vec<Vec<u8>> = (0..40u64)
            .map(|i| if i % 3 == 0 { random(16384, i + 1) } else { text(16384 - (i as usize % 4) * 4096) })
            .collect();
        let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
        for codec in [Codec::Lz4, Codec::Zstd(3)] {
            let all = compress_all(codec, &refs);
            let one: Vec<_> = refs.iter().map(|b| compress(codec, b)).collect();
            assert_eq!(all, one);
            assert!(all.iter().filter(|c| c.is_some()).count() >= 20);
        }
    }

    #[test]
    fn decompress_never_returns_a_wrong_length() {
        let data = text(16384);
        for codec in [Codec::Lz4, Codec::Zstd(3)] {
            let (mut stored, c) = compress(codec, &data).unwrap();
            for b in &mut stored[..c.frame_len as usize / 2] {
                *b ^= 0x5a;
            }
            // A damaged frame may still decode (the check value, verified before, is what
            // keeps it from a reader); what comes out is never of another length.
            if let Ok(back) = decompress(&c, &stored) {
                assert_eq!(back.len(), 16384);
            }
            let longer = Compression { logical_size: 12288, ..c };
            assert!(decompress(&longer, &compress(codec, &data).unwrap().0).is_err());
            let short = Compression { frame_len: stored.len() as u32 + 1, ..c };
            assert!(decompress(&short, &stored).is_err());
        }
    }
}
