//! Check values: the per-block integrity code stored in the parent's block reference.

use crate::DecodeError;

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

    pub(crate) fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        match self {
            Check::Crc32c(c) => out[..4].copy_from_slice(&c.to_le_bytes()),
            Check::Blake3(b) => out = *b,
        }
        out
    }

    pub(crate) fn decode(method: CheckMethod, raw: &[u8; 32]) -> Result<Check, DecodeError> {
        match method {
            CheckMethod::Crc32c => {
                if raw[4..].iter().any(|&b| b != 0) {
                    return Err(DecodeError::Reserved { what: "blockref check", offset: 4 });
                }
                Ok(Check::Crc32c(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])))
            }
            CheckMethod::Blake3 => Ok(Check::Blake3(*raw)),
        }
    }
}
