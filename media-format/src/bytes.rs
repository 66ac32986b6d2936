//! Little-endian cursor helpers shared by the encoders and decoders.
//!
//! The reader never panics: every access is bounds-checked against the slice the caller
//! validated once (`Reader::new` checks the total length), so a structure's decode function
//! can read fixed offsets without repeating length checks.

use crate::{DecodeError, DecodeResult};

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over exactly `len` bytes of `buf`; shorter input is an error.
    pub(crate) fn new(buf: &'a [u8], len: usize, what: &'static str) -> DecodeResult<Self> {
        if buf.len() < len {
            return Err(DecodeError::Short { what, need: len, got: buf.len() });
        }
        Ok(Reader { buf: &buf[..len], what })
    }

    fn slice(&self, off: usize, n: usize) -> DecodeResult<&'a [u8]> {
        self.buf.get(off..off + n).ok_or(DecodeError::Short { what: self.what, need: off + n, got: self.buf.len() })
    }

    pub(crate) fn u8(&self, off: usize) -> DecodeResult<u8> {
        Ok(self.slice(off, 1)?[0])
    }
    pub(crate) fn u16(&self, off: usize) -> DecodeResult<u16> {
        Ok(u16::from_le_bytes(self.array(off)?))
    }
    pub(crate) fn u32(&self, off: usize) -> DecodeResult<u32> {
        Ok(u32::from_le_bytes(self.array(off)?))
    }
    pub(crate) fn u64(&self, off: usize) -> DecodeResult<u64> {
        Ok(u64::from_le_bytes(self.array(off)?))
    }
    pub(crate) fn i64(&self, off: usize) -> DecodeResult<i64> {
        Ok(i64::from_le_bytes(self.array(off)?))
    }
    pub(crate) fn array<const N: usize>(&self, off: usize) -> DecodeResult<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.slice(off, N)?);
        Ok(a)
    }
    pub(crate) fn bytes(&self, off: usize, n: usize) -> DecodeResult<&'a [u8]> {
        self.slice(off, n)
    }

    /// Reserved ranges must be zero so that a later format version can give them meaning.
    pub(crate) fn zero(&self, off: usize, n: usize) -> DecodeResult<()> {
        let s = self.slice(off, n)?;
        // An OR over the whole range compiles to wide loads; a decoded inode checks 29 empty
        // slots of 128 bytes this way, and a byte-at-a-time early-exit search was a tenth
        // of a cold lookup. The position is looked for only to report it.
        if s.iter().fold(0u8, |acc, &b| acc | b) == 0 {
            return Ok(());
        }
        let i = s.iter().position(|&b| b != 0).unwrap_or(0);
        Err(DecodeError::Reserved { what: self.what, offset: off + i })
    }

    pub(crate) fn bad(&self, field: &'static str, value: u64) -> DecodeError {
        DecodeError::BadField { what: self.what, field, value }
    }
}

/// Writes at fixed offsets into a buffer the caller sized; offsets are compile-time layout
/// constants, so an out-of-range write is a programming error caught by the size tests.
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf }
    }
    pub(crate) fn u8(&mut self, off: usize, v: u8) {
        self.buf[off] = v;
    }
    pub(crate) fn u16(&mut self, off: usize, v: u16) {
        self.bytes(off, &v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, off: usize, v: u32) {
        self.bytes(off, &v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, off: usize, v: u64) {
        self.bytes(off, &v.to_le_bytes());
    }
    pub(crate) fn i64(&mut self, off: usize, v: i64) {
        self.bytes(off, &v.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, off: usize, v: &[u8]) {
        self.buf[off..off + v.len()].copy_from_slice(v);
    }
}
