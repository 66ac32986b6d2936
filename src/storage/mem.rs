//! A device held in memory.

use super::Storage;
use parking_lot::RwLock;
use std::io;

pub struct MemStorage {
    data: RwLock<Vec<u8>>,
    name: String,
}

impl MemStorage {
    pub fn new(size: u64, name: &str) -> MemStorage {
        MemStorage { data: RwLock::new(vec![0; size as usize]), name: name.to_string() }
    }
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> MemStorage {
        MemStorage { data: RwLock::new(bytes), name: name.to_string() }
    }
    pub fn snapshot(&self) -> Vec<u8> {
        self.data.read().clone()
    }
}

fn range(len: usize, offset: u64, n: usize) -> io::Result<std::ops::Range<usize>> {
    let start = usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    match start.checked_add(n) {
        Some(end) if end <= len => Ok(start..end),
        _ => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
    }
}

impl Storage for MemStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let d = self.data.read();
        buf.copy_from_slice(&d[range(d.len(), offset, buf.len())?]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut d = self.data.write();
        let r = range(d.len(), offset, buf.len())?;
        d[r].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn size(&self) -> u64 {
        self.data.read().len() as u64
    }
    fn name(&self) -> String {
        self.name.clone()
    }
}
