//! Crash images: a device as it would be after a power cut, built from a base image and
//! the recorded writes, as a copy-on-write overlay so thousands of them are cheap.

use hammer2::storage::Storage;
use hammer2::storage::recording::{Event, Op};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;

const PAGE: u64 = 4096;

pub struct Overlay {
    base: Arc<Vec<u8>>,
    pages: RwLock<HashMap<u64, Box<[u8]>>>,
    name: String,
}

impl Overlay {
    pub fn new(base: Arc<Vec<u8>>, name: &str) -> Overlay {
        Overlay { base, pages: RwLock::new(HashMap::new()), name: name.to_string() }
    }
}

impl Storage for Overlay {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset + buf.len() as u64 > self.base.len() as u64 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let pages = self.pages.read();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let page = pos / PAGE;
            let within = (pos % PAGE) as usize;
            let n = (PAGE as usize - within).min(buf.len() - done);
            match pages.get(&page) {
                Some(p) => buf[done..done + n].copy_from_slice(&p[within..within + n]),
                None => buf[done..done + n].copy_from_slice(&self.base[pos as usize..pos as usize + n]),
            }
            done += n;
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if offset + buf.len() as u64 > self.base.len() as u64 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut pages = self.pages.write();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let page = pos / PAGE;
            let within = (pos % PAGE) as usize;
            let n = (PAGE as usize - within).min(buf.len() - done);
            let p = pages.entry(page).or_insert_with(|| {
                let s = (page * PAGE) as usize;
                self.base[s..s + PAGE as usize].to_vec().into_boxed_slice()
            });
            p[within..within + n].copy_from_slice(&buf[done..done + n]);
            done += n;
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    fn size(&self) -> u64 {
        self.base.len() as u64
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

/// How the writes issued after a device's last flush fare in the power cut.
pub trait Fate {
    /// None: lost; Some(n): its first `n` bytes reached the medium (n == len: whole).
    fn fate(&mut self, event: usize, len: usize) -> Option<usize>;
}

/// Device `device` after a power cut once `upto` events were issued.
pub fn crash_device(base: &Arc<Vec<u8>>, events: &[Event], upto: usize, device: usize, fate: &mut dyn Fate) -> Overlay {
    let ev = &events[..upto];
    let last_flush = ev.iter().rposition(|e| e.device == device && matches!(e.op, Op::Flush));
    let img = Overlay::new(base.clone(), &format!("crash{device}"));
    for (i, e) in ev.iter().enumerate() {
        if e.device != device {
            continue;
        }
        if let Op::Write { offset, data } = &e.op {
            let n = if last_flush.is_some_and(|f| i < f) { Some(data.len()) } else { fate.fate(i, data.len()) };
            if let Some(n) = n {
                img.write_at(&data[..n], *offset).expect("write into crash image");
            }
        }
    }
    img
}

/// A device's bytes now: the base of its crash images.
pub fn image(d: &hammer2::storage::DynStorage) -> Arc<Vec<u8>> {
    let mut v = vec![0u8; d.size() as usize];
    d.read_at(&mut v, 0).expect("read image");
    Arc::new(v)
}

/// Every write after the device's last flush is lost.
pub struct Lost;

impl Fate for Lost {
    fn fate(&mut self, _: usize, _: usize) -> Option<usize> {
        None
    }
}
