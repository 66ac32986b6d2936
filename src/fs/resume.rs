//! The resume token of a receive (docs/SEND-STREAM.md "Resuming", FORMAT.md PFS record
//! bytes 120..256): which stream an interrupted receive was applying and how far it got.
//! Declared here, below the send (`send/token.rs` makes tokens of streams) and the PFS
//! listing and file operations that read it (SR8, SR11 in docs/DESIGN.md).

use hammer2_format::pfs::RESUME_TOKEN_SIZE;

/// Which content record of a stream a position names, without its payload: what a resumed
/// stream's header and the receiver's progress compare (SR9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordId {
    pub kind: u8,
    pub inum: u64,
    pub key: u64,
}

/// Version of the token's layout (its first byte; 0: no token).
const TOKEN_VERSION: u8 = 1;
/// Bytes of a token: version, the stream's identity, the position, the record before it.
const LEN: usize = 1 + 16 + 16 + 8 + 8 + 8 + 17;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeToken {
    /// The sender's PFS, snapshot and base of the stream (its identity: every send of the
    /// same pair is the same stream, SR3).
    pub pfs_uuid: [u8; 16],
    pub snapshot_uuid: [u8; 16],
    pub snapshot_tid: u64,
    pub base_tid: u64,
    /// Content records applied and committed: the position the stream resumes at.
    pub position: u64,
    /// The content record at `position - 1` (zero at position 0).
    pub after: RecordId,
}

/// Why a token given on the command line cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the resume token is not valid: {0}")]
pub struct BadToken(&'static str);

impl ResumeToken {
    fn bytes(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = TOKEN_VERSION;
        b[1..17].copy_from_slice(&self.pfs_uuid);
        b[17..33].copy_from_slice(&self.snapshot_uuid);
        b[33..41].copy_from_slice(&self.snapshot_tid.to_le_bytes());
        b[41..49].copy_from_slice(&self.base_tid.to_le_bytes());
        b[49..57].copy_from_slice(&self.position.to_le_bytes());
        b[57] = self.after.kind;
        b[58..66].copy_from_slice(&self.after.inum.to_le_bytes());
        b[66..74].copy_from_slice(&self.after.key.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < LEN || b[0] != TOKEN_VERSION {
            return None;
        }
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
        Some(ResumeToken {
            pfs_uuid: b[1..17].try_into().ok()?,
            snapshot_uuid: b[17..33].try_into().ok()?,
            snapshot_tid: u64_at(33),
            base_tid: u64_at(41),
            position: u64_at(49),
            after: RecordId { kind: b[57], inum: u64_at(58), key: u64_at(66) },
        })
    }

    /// The PFS record's field: the token, zero padded.
    pub fn to_record(&self) -> [u8; RESUME_TOKEN_SIZE] {
        let mut r = [0u8; RESUME_TOKEN_SIZE];
        r[..LEN].copy_from_slice(&self.bytes());
        r
    }

    /// The token a PFS record holds (None: no receive in progress, or a layout this build
    /// does not know).
    pub fn from_record(r: &[u8; RESUME_TOKEN_SIZE]) -> Option<Self> {
        Self::from_bytes(r)
    }

    /// The text a user passes: the bytes and their crc32c in hex (a mistyped token is
    /// refused rather than naming another position).
    pub fn to_text(&self) -> String {
        let b = self.bytes();
        let crc = crc32c::crc32c(&b).to_le_bytes();
        b.iter().chain(crc.iter()).map(|x| format!("{x:02x}")).collect()
    }

    pub fn parse(text: &str) -> Result<Self, BadToken> {
        let text = text.trim();
        if text.len() != 2 * (LEN + 4) || !text.is_ascii() {
            return Err(BadToken("wrong length"));
        }
        let raw: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
            .collect::<Result<_, _>>()
            .map_err(|_| BadToken("not hexadecimal"))?;
        let (b, crc) = raw.split_at(LEN);
        if crc32c::crc32c(b).to_le_bytes() != crc {
            return Err(BadToken("its check value does not match (mistyped?)"));
        }
        Self::from_bytes(b).ok_or(BadToken("unknown token version"))
    }
}
