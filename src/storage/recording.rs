//! Records every write and flush issued to a set of devices, in one global order, so that
//! the devices' state after a power cut at any instant can be rebuilt: on each device,
//! every write followed by a completed flush of that device is there, and any subset of the
//! writes issued after its last flush may be there (in any order, or not at all).

use super::{DynStorage, Storage};
use parking_lot::Mutex;
use std::io;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum Op {
    Write { offset: u64, data: Arc<[u8]> },
    Flush,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub device: usize,
    pub op: Op,
}

/// The shared, ordered log of a set of recorded devices.
#[derive(Default)]
pub struct RecordLog {
    events: Mutex<Vec<Event>>,
}

impl RecordLog {
    pub fn new() -> Arc<RecordLog> {
        Arc::new(RecordLog::default())
    }
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().clone()
    }
    pub fn len(&self) -> usize {
        self.events.lock().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn clear(&self) {
        self.events.lock().clear();
    }
}

pub struct RecordingStorage {
    inner: DynStorage,
    device: usize,
    log: Arc<RecordLog>,
}

impl RecordingStorage {
    pub fn new(inner: DynStorage, device: usize, log: Arc<RecordLog>) -> RecordingStorage {
        RecordingStorage { inner, device, log }
    }
}

/// The image of `device` after a power cut once the first `upto` events of `events` were
/// issued: `base` plus every write of that device made durable by a later flush of it
/// before `upto`, plus the writes after its last flush for which `keep(event index)` says so.
pub fn crash_image(
    base: &[u8],
    events: &[Event],
    upto: usize,
    device: usize,
    keep: &mut dyn FnMut(usize) -> bool,
) -> Vec<u8> {
    let events = &events[..upto];
    let last_flush = events.iter().rposition(|e| e.device == device && matches!(e.op, Op::Flush));
    let mut img = base.to_vec();
    for (i, e) in events.iter().enumerate() {
        if e.device != device {
            continue;
        }
        if let Op::Write { offset, data } = &e.op {
            let durable = last_flush.is_some_and(|f| i < f);
            if durable || keep(i) {
                let start = *offset as usize;
                let end = (start + data.len()).min(img.len());
                if start < end {
                    img[start..end].copy_from_slice(&data[..end - start]);
                }
            }
        }
    }
    img
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
        // writes reached the devices.
        let mut log = self.log.events.lock();
        self.inner.write_vectored_at(bufs, offset)?;
        let mut off = offset;
        for b in bufs {
            log.push(Event { device: self.device, op: Op::Write { offset: off, data: Arc::from(*b) } });
            off += b.len() as u64;
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        let mut log = self.log.events.lock();
        self.inner.flush()?;
        log.push(Event { device: self.device, op: Op::Flush });
        Ok(())
    }

    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn name(&self) -> String {
        self.inner.name()
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        // Advice only (the engine never reads discarded bytes back as anything), so the log,
        // which rebuilds what a crash leaves, has nothing to record.
        self.inner.discard(offset, len)
    }

    /// The reopened device is recorded into the same log under the same device number.
    fn reopen(&self) -> io::Result<DynStorage> {
        let inner = self.inner.reopen()?;
        Ok(Arc::new(RecordingStorage { inner, device: self.device, log: self.log.clone() }))
    }
}
