//! Records every write and flush issued to a device, so that the device's state after a
//! power cut at any point can be rebuilt: everything written before the last completed
//! flush, plus any subset of the writes issued after it.

use super::{DynStorage, Storage};
use parking_lot::Mutex;
use std::io;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum Op {
    Write { offset: u64, data: Arc<[u8]> },
    Flush,
}

pub struct RecordingStorage {
    inner: DynStorage,
    log: Mutex<Vec<Op>>,
}

impl RecordingStorage {
    pub fn new(inner: DynStorage) -> RecordingStorage {
        RecordingStorage { inner, log: Mutex::new(Vec::new()) }
    }

    /// The operations recorded so far, in the order they completed.
    pub fn log(&self) -> Vec<Op> {
        self.log.lock().clone()
    }

    pub fn clear_log(&self) {
        self.log.lock().clear();
    }

    /// Number of recorded operations.
    pub fn len(&self) -> usize {
        self.log.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Applies the writes of `ops` selected by `keep` (by index) to `image`.
pub fn replay(image: &mut [u8], ops: &[Op], keep: impl Fn(usize) -> bool) {
    for (i, op) in ops.iter().enumerate() {
        if let Op::Write { offset, data } = op
            && keep(i)
        {
            let start = *offset as usize;
            let end = (start + data.len()).min(image.len());
            if start < end {
                image[start..end].copy_from_slice(&data[..end - start]);
            }
        }
    }
}

impl Storage for RecordingStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_vectored_at(&[buf], offset)
    }

    fn write_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        // The log lock is held across the write so that the log order is the order in which
        // writes reached the device.
        let mut log = self.log.lock();
        self.inner.write_vectored_at(bufs, offset)?;
        let mut off = offset;
        for b in bufs {
            log.push(Op::Write { offset: off, data: Arc::from(*b) });
            off += b.len() as u64;
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        let mut log = self.log.lock();
        self.inner.flush()?;
        log.push(Op::Flush);
        Ok(())
    }

    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn name(&self) -> String {
        self.inner.name()
    }
}
