//! Check values: the per-block integrity code stored in the parent's block reference.

use crate::DecodeError;
use crate::blockref::off::CHECK_SIZE;

/// How a block's content is checked. Chosen once per filesystem at mkfs time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckMethod {
    /// CRC-32C (Castagnoli), hardware accelerated on x86-64 and arm64; detects media errors.
    Crc32c,
    /// BLAKE3-256; also detects deliberate tampering.
    Blake3,
}

impl CheckMethod {
    pub const fn code(self) -> u8 {
        match self {
            CheckMethod::Crc32c => 1,
            CheckMethod::Blake3 => 2,
        }
    }
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(CheckMethod::Crc32c),
            2 => Some(CheckMethod::Blake3),
            _ => None,
        }
    }
    pub const fn name(self) -> &'static str {
        match self {
            CheckMethod::Crc32c => "crc32c",
            CheckMethod::Blake3 => "blake3",
        }
    }
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "crc32c" => Some(CheckMethod::Crc32c),
            "blake3" => Some(CheckMethod::Blake3),
            _ => None,
        }
    }

    /// The check value of `data`.
    pub fn compute(self, data: &[u8]) -> Check {
        match self {
            CheckMethod::Crc32c => Check::Crc32c(crc32c::crc32c(data)),
            CheckMethod::Blake3 => Check::Blake3(*blake3::hash(data).as_bytes()),
        }
    }
}

/// Bytes of the check field a CRC-32C uses (little-endian); the rest of the field is zero.
const CRC32C_LEN: usize = 4;

/// A check value as stored in the 32-byte check field of a block reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// Stored little-endian in bytes 0..4; bytes 4..32 are zero.
    Crc32c(u32),
    Blake3([u8; 32]),
}

impl Check {
    pub fn method(&self) -> CheckMethod {
        match self {
            Check::Crc32c(_) => CheckMethod::Crc32c,
            Check::Blake3(_) => CheckMethod::Blake3,
        }
    }

    /// True when `data` has this check value.
    pub fn verify(&self, data: &[u8]) -> bool {
        self.method().compute(data) == *self
    }

    /// A short fingerprint used as a cache key component: two different contents at the same
    /// location are told apart by it (blocks are never rewritten in place with new content,
    /// but a freed location can be reused).
    pub fn fingerprint(&self) -> u64 {
        match self {
            Check::Crc32c(c) => u64::from(*c),
            Check::Blake3(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[..8]);
                u64::from_le_bytes(a)
            }
        }
    }

    pub(crate) fn encode(&self) -> [u8; CHECK_SIZE] {
        let mut out = [0u8; CHECK_SIZE];
        match self {
            Check::Crc32c(c) => out[..CRC32C_LEN].copy_from_slice(&c.to_le_bytes()),
            Check::Blake3(b) => out = *b,
        }
        out
    }

    pub(crate) fn decode(method: CheckMethod, raw: &[u8; CHECK_SIZE]) -> Result<Check, DecodeError> {
        match method {
            CheckMethod::Crc32c => {
                let (crc, rest) = raw.split_at(CRC32C_LEN);
                if rest.iter().any(|&b| b != 0) {
                    return Err(DecodeError::Reserved { what: "blockref check", offset: CRC32C_LEN });
                }
                Ok(Check::Crc32c(u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]])))
            }
            CheckMethod::Blake3 => Ok(Check::Blake3(*raw)),
        }
    }
}
