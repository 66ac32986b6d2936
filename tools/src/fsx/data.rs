//! The file content exerciser: a few files, random operations through the system calls a
//! program uses, and after each one a read-back of what it touched compared with an
//! in-memory copy of the file (the whole file every `VERIFY_EVERY` operations). The kernel
//! caches file pages; an operation that drops them makes later reads reach the filesystem.

use crate::{Limits, OpLog};
use hammer2_test_support::rng::Rng;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// The data block size of the filesystem under test: sizes and offsets are chosen around it.
const BLOCK: u64 = 64 << 10;
const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;
const VERIFY_EVERY: u64 = 250;

#[derive(clap::Args)]
pub struct Args {
    /// Directory to create the files in (on the filesystem under test).
    dir: PathBuf,
    #[command(flatten)]
    limits: Limits,
    /// Number of files.
    #[arg(long, default_value_t = 4)]
    files: usize,
    /// Largest size a file may reach, holes included.
    #[arg(long, default_value_t = 24 * MIB)]
    max_size: u64,
    /// Where the in-memory copy is saved at the end; if it already holds one, the files are
    /// first checked against it and the run continues from it.
    #[arg(long)]
    model_dir: Option<PathBuf>,
}

struct FFile {
    path: PathBuf,
    file: Option<File>,
    model: Vec<u8>,
}

struct Fsx {
    files: Vec<FFile>,
    rng: Rng,
    seed: u64,
    max_size: u64,
    op: u64,
    log: OpLog,
    counts: BTreeMap<&'static str, u64>,
    bytes_written: u64,
    bytes_checked: u64,
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

fn model_path(dir: &std::path::Path, i: usize) -> PathBuf {
    dir.join(format!("f{i}.model"))
}

pub fn run(a: Args) {
    let budget = a.limits.budget();
    let mut fsx = Fsx {
        files: Vec::new(),
        rng: Rng::new(a.limits.seed),
        seed: a.limits.seed,
        max_size: a.max_size.max(4 * MIB),
        op: 0,
        log: OpLog::default(),
        counts: BTreeMap::new(),
        bytes_written: 0,
        bytes_checked: 0,
    };
    let resumed = a.model_dir.as_ref().is_some_and(|d| model_path(d, 0).exists());
    for i in 0..a.files {
        let path = a.dir.join(format!("f{i}"));
        let model = match &a.model_dir {
            Some(d) if resumed => std::fs::read(model_path(d, i))
                .unwrap_or_else(|e| fsx.log.fail(&format!("read saved model {i}: {e}"), a.limits.seed, 0)),
            _ => Vec::new(),
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(!resumed)
            .open(&path)
            .unwrap_or_else(|e| fsx.log.fail(&format!("open {}: {e}", path.display()), a.limits.seed, 0));
        fsx.files.push(FFile { path, file: Some(file), model });
    }
    if resumed {
        fsx.log.push("resumed from the saved model: checking every file".into());
        for i in 0..fsx.files.len() {
            fsx.check_whole(i);
        }
    }
    while budget.more(fsx.op) {
        fsx.step();
    }
    for i in 0..fsx.files.len() {
        fsx.check_whole(i);
    }
    if let Some(d) = &a.model_dir {
        std::fs::create_dir_all(d).unwrap_or_else(|e| fsx.log.fail(&format!("model dir: {e}"), a.limits.seed, fsx.op));
        for (i, f) in fsx.files.iter().enumerate() {
            std::fs::write(model_path(d, i), &f.model)
                .unwrap_or_else(|e| fsx.log.fail(&format!("save model: {e}"), a.limits.seed, fsx.op));
        }
    }
    let summary = serde_json::json!({
        "mode": "data",
        "seed": a.limits.seed,
        "ops": fsx.op,
        "by_kind": fsx.counts,
        "bytes_written": fsx.bytes_written,
        "bytes_checked": fsx.bytes_checked,
        "resumed": resumed,
        "mismatches": 0,
    });
    println!("{summary}");
}

impl Fsx {
    fn fail(&self, what: &str) -> ! {
        self.log.fail(what, self.seed, self.op)
    }

    fn fd(&mut self, i: usize) -> i32 {
        if self.files[i].file.is_none() {
            let p = self.files[i].path.clone();
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&p)
                .unwrap_or_else(|e| self.fail(&format!("reopen {}: {e}", p.display())));
            self.files[i].file = Some(f);
        }
        self.files[i].file.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    fn count(&mut self, kind: &'static str) {
        *self.counts.entry(kind).or_default() += 1;
    }

    fn len(&mut self) -> u64 {
        match self.rng.weighted(&[25, 25, 15, 25, 10]) {
            0 => self.rng.range(1, 512),
            1 => self.rng.range(513, 8192),
            2 => BLOCK - 16 + self.rng.below(33),
            3 => self.rng.range(8193, 300_000),
            _ => self.rng.range(300_001, 2 * MIB),
        }
    }

    /// An offset for an access of `len` bytes to a file of `size` bytes: anywhere inside,
    /// straddling a block boundary, at the end, or past it (leaving a hole).
    fn offset(&mut self, size: u64, len: u64) -> u64 {
        let off = match self.rng.weighted(&[35, 25, 15, 15, 10]) {
            0 => self.rng.below(size + 1),
            1 => {
                let k = self.rng.range(1, size / BLOCK + 1);
                (k * BLOCK).saturating_sub(self.rng.range(1, len.min(BLOCK)))
            }
            2 => size,
            3 => size + self.rng.range(1, 2 * MIB),
            _ => self.rng.below(self.max_size),
        };
        if off + len > self.max_size { self.rng.below(self.max_size - len) } else { off }
    }

    fn step(&mut self) {
        self.op += 1;
        let i = self.rng.below(self.files.len() as u64) as usize;
        match self.rng.weighted(&[26, 16, 6, 6, 7, 7, 3, 3, 4, 5, 4]) {
            0 => self.write(i),
            1 => self.read(i),
            2 => self.map_read(i),
            3 => self.map_write(i),
            4 => self.truncate(i),
            5 => self.fallocate(i),
            6 => self.fsync(i),
            7 => self.reopen(i),
            8 => self.check_whole_op(i),
            9 => self.seek(i),
            _ => self.uncache(i),
        }
        if self.op % VERIFY_EVERY == 0 {
            for j in 0..self.files.len() {
                self.check_whole(j);
            }
        }
    }

    fn write(&mut self, i: usize) {
        let size = self.files[i].model.len() as u64;
        let len = self.len();
        let off = self.offset(size, len);
        let data = self.rng.bytes(len as usize);
        self.log.push(format!("{}: write f{i} off {off} len {len} (size {size})", self.op));
        let fd = self.fd(i);
        let mut done = 0usize;
        while done < data.len() {
            // SAFETY: the buffer and its length come from one live Vec.
            let n = unsafe {
                libc::pwrite(fd, data[done..].as_ptr().cast(), data.len() - done, (off + done as u64) as libc::off_t)
            };
            if n <= 0 {
                self.fail(&os_err("pwrite"));
            }
            done += n as usize;
        }
        let m = &mut self.files[i].model;
        let end = (off + len) as usize;
        if m.len() < end {
            m.resize(end, 0);
        }
        m[off as usize..end].copy_from_slice(&data);
        self.bytes_written += len;
        self.count("write");
        self.after(i, off, len);
    }

    fn read(&mut self, i: usize) {
        let size = self.files[i].model.len() as u64;
        let len = self.len();
        let off = self.rng.below(size + BLOCK);
        self.log.push(format!("{}: read f{i} off {off} len {len} (size {size})", self.op));
        self.count("read");
        self.check_range(i, off, len);
    }

    /// Reads `[off, off + len)` with pread and compares it with the model (reads past the
    /// end must come back short).
    fn check_range(&mut self, i: usize, off: u64, len: u64) {
        let fd = self.fd(i);
        let mut got = vec![0u8; len as usize];
        let mut done = 0usize;
        while done < got.len() {
            // SAFETY: as in write.
            let n = unsafe {
                libc::pread(fd, got[done..].as_mut_ptr().cast(), got.len() - done, (off + done as u64) as libc::off_t)
            };
            if n < 0 {
                self.fail(&os_err("pread"));
            }
            if n == 0 {
                break;
            }
            done += n as usize;
        }
        got.truncate(done);
        self.compare(i, off, &got, "pread");
    }

    fn compare(&mut self, i: usize, off: u64, got: &[u8], how: &str) {
        let m = &self.files[i].model;
        let s = (off as usize).min(m.len());
        let e = (off as usize + got.len()).min(m.len());
        let want = &m[s..e];
        if got.len() != want.len() || got != want {
            let first = got.iter().zip(want).position(|(a, b)| a != b).map(|p| off + p as u64);
            let at = first.map_or(String::new(), |p| {
                format!(
                    "; first difference at offset {p} (block {}, +{}): got {:#04x}, expected {:#04x}",
                    p / BLOCK,
                    p % BLOCK,
                    got[(p - off) as usize],
                    want[(p - off) as usize]
                )
            });
            self.fail(&format!(
                "{how} of f{i} at {off}: {} bytes back, {} expected (model size {}){at}",
                got.len(),
                want.len(),
                m.len()
            ));
        }
        self.bytes_checked += got.len() as u64;
    }

    /// After a change: the size and the bytes around the change.
    fn after(&mut self, i: usize, off: u64, len: u64) {
        self.check_size(i);
        self.check_range(i, off.saturating_sub(PAGE), len + 2 * PAGE);
    }

    fn check_size(&mut self, i: usize) {
        let fd = self.fd(i);
        // SAFETY: fstat fills the struct we pass.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            self.fail(&os_err("fstat"));
        }
        let want = self.files[i].model.len() as u64;
        if st.st_size as u64 != want {
            self.fail(&format!("f{i} has size {}, expected {want}", st.st_size));
        }
    }

    fn check_whole(&mut self, i: usize) {
        self.check_size(i);
        let size = self.files[i].model.len() as u64;
        self.check_range(i, 0, size + 1);
    }

    fn check_whole_op(&mut self, i: usize) {
        self.log.push(format!("{}: check f{i} whole", self.op));
        self.count("verify");
        self.check_whole(i);
    }

    /// A page-aligned shared mapping of `[start, start + len)` (inside the file).
    fn map(&mut self, i: usize, start: u64, len: u64, write: bool) -> *mut u8 {
        let fd = self.fd(i);
        let prot = if write { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: a fresh mapping of a file we hold open; the caller unmaps it.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len as usize, prot, libc::MAP_SHARED, fd, start as i64) };
        if p == libc::MAP_FAILED {
            self.fail(&os_err("mmap"));
        }
        p.cast()
    }

    /// A range inside the file for a mapping: (page-aligned start, offset, length).
    fn map_range(&mut self, i: usize) -> Option<(u64, u64, u64)> {
        let size = self.files[i].model.len() as u64;
        if size == 0 {
            return None;
        }
        let len = self.len().min(size);
        let off = self.rng.below(size - len + 1);
        Some((off / PAGE * PAGE, off, len))
    }

    fn map_read(&mut self, i: usize) {
        let Some((start, off, len)) = self.map_range(i) else { return };
        self.log.push(format!("{}: mmap read f{i} off {off} len {len}", self.op));
        let maplen = off + len - start;
        let p = self.map(i, start, maplen, false);
        // SAFETY: the mapping is maplen bytes long and lies inside the file, so every page
        // of it is backed.
        let got = unsafe { std::slice::from_raw_parts(p.add((off - start) as usize), len as usize) }.to_vec();
        // SAFETY: unmapping what map returned.
        unsafe { libc::munmap(p.cast(), maplen as usize) };
        self.count("mmap_read");
        self.compare(i, off, &got, "mmap read");
    }

    fn map_write(&mut self, i: usize) {
        let Some((start, off, len)) = self.map_range(i) else { return };
        self.log.push(format!("{}: mmap write f{i} off {off} len {len}", self.op));
        let data = self.rng.bytes(len as usize);
        let maplen = off + len - start;
        let p = self.map(i, start, maplen, true);
        // SAFETY: as in map_read; the mapping is writable and shared.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), p.add((off - start) as usize), data.len());
            if libc::msync(p.cast(), maplen as usize, libc::MS_SYNC) != 0 {
                let e = os_err("msync");
                libc::munmap(p.cast(), maplen as usize);
                self.fail(&e);
            }
            libc::munmap(p.cast(), maplen as usize);
        }
        self.files[i].model[off as usize..(off + len) as usize].copy_from_slice(&data);
        self.bytes_written += len;
        self.count("mmap_write");
        self.after(i, off, len);
    }

    fn truncate(&mut self, i: usize) {
        let size = self.files[i].model.len() as u64;
        let new = match self.rng.below(5) {
            0 => 0,
            1 => self.rng.below(size + 1),
            2 => self.rng.below(size / BLOCK + 1) * BLOCK,
            3 => (size + self.rng.range(1, 3 * MIB)).min(self.max_size),
            _ => self.rng.below(size / PAGE + 1) * PAGE + self.rng.below(PAGE),
        };
        self.log.push(format!("{}: truncate f{i} {size} -> {new}", self.op));
        let fd = self.fd(i);
        // SAFETY: plain system call on an open descriptor.
        if unsafe { libc::ftruncate(fd, new as libc::off_t) } != 0 {
            self.fail(&os_err("ftruncate"));
        }
        self.files[i].model.resize(new as usize, 0);
        self.count("truncate");
        self.after(i, new.saturating_sub(BLOCK), 2 * BLOCK);
    }

    /// fallocate in one of the modes a FUSE mount passes on: allocate (extends), allocate
    /// keeping the size, punch a hole, zero a range (extends), zero keeping the size.
    fn fallocate(&mut self, i: usize) {
        const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;
        const MODES: [(i32, &str); 5] = [
            (0, "allocate"),
            (KEEP, "allocate keep-size"),
            (libc::FALLOC_FL_PUNCH_HOLE | KEEP, "punch"),
            (libc::FALLOC_FL_ZERO_RANGE, "zero"),
            (libc::FALLOC_FL_ZERO_RANGE | KEEP, "zero keep-size"),
        ];
        let size = self.files[i].model.len() as u64;
        let len = self.rng.range(1, 2 * MIB);
        let off = self.offset(size, len);
        let (mode, name) = MODES[self.rng.below(MODES.len() as u64) as usize];
        self.log.push(format!("{}: fallocate ({name}) f{i} off {off} len {len} (size {size})", self.op));
        let fd = self.fd(i);
        // SAFETY: plain system call on an open descriptor.
        if unsafe { libc::fallocate(fd, mode, off as libc::off_t, len as libc::off_t) } != 0 {
            self.fail(&os_err("fallocate"));
        }
        let m = &mut self.files[i].model;
        if mode & KEEP == 0 && (m.len() as u64) < off + len {
            m.resize((off + len) as usize, 0);
        }
        if mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) != 0 {
            let end = m.len().min((off + len) as usize);
            if let Some(range) = m.get_mut(off as usize..end) {
                range.fill(0);
            }
        }
        self.count(if mode & libc::FALLOC_FL_PUNCH_HOLE != 0 {
            "punch"
        } else if mode & libc::FALLOC_FL_ZERO_RANGE != 0 {
            "zero_range"
        } else {
            "fallocate"
        });
        self.after(i, off, len);
    }

    fn fsync(&mut self, i: usize) {
        self.log.push(format!("{}: fsync f{i}", self.op));
        let fd = self.fd(i);
        // SAFETY: plain system call on an open descriptor.
        if unsafe { libc::fsync(fd) } != 0 {
            self.fail(&os_err("fsync"));
        }
        self.count("fsync");
    }

    fn reopen(&mut self, i: usize) {
        self.log.push(format!("{}: close and reopen f{i}", self.op));
        self.files[i].file = None;
        self.count("reopen");
        self.check_size(i);
    }

    /// Drops the file's pages from the kernel's cache, so the next reads reach the
    /// filesystem instead of being served from memory.
    fn uncache(&mut self, i: usize) {
        self.log.push(format!("{}: drop cached pages of f{i}", self.op));
        let fd = self.fd(i);
        // SAFETY: plain system call on an open descriptor.
        let r = unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) };
        if r != 0 {
            self.fail(&format!("posix_fadvise(DONTNEED): {}", io::Error::from_raw_os_error(r)));
        }
        self.count("uncache");
    }

    fn lseek(&mut self, fd: i32, off: u64, whence: i32) -> Option<u64> {
        // SAFETY: plain system call on an open descriptor.
        let r = unsafe { libc::lseek(fd, off as libc::off_t, whence) };
        if r >= 0 {
            return Some(r as u64);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENXIO) {
            self.fail(&format!("lseek({off}, {}): {e}", if whence == libc::SEEK_DATA { "DATA" } else { "HOLE" }));
        }
        None
    }

    fn all_zero(&mut self, i: usize, from: u64, to: u64, why: &str) {
        let m = &self.files[i].model;
        let to = to.min(m.len() as u64);
        if from < to
            && let Some(p) = m[from as usize..to as usize].iter().position(|b| *b != 0)
        {
            self.fail(&format!("{why}: f{i} holds written data at {} in [{from}, {to})", from + p as u64));
        }
    }

    /// SEEK_DATA / SEEK_HOLE from a random offset: what they skip over as a hole must read
    /// as zeros in the model (data the program wrote is never reported as a hole).
    fn seek(&mut self, i: usize) {
        let size = self.files[i].model.len() as u64;
        let off = self.rng.below(size + BLOCK);
        self.log.push(format!("{}: seek data/hole f{i} from {off} (size {size})", self.op));
        let fd = self.fd(i);
        self.count("seek");
        let data = self.lseek(fd, off, libc::SEEK_DATA);
        let hole = self.lseek(fd, off, libc::SEEK_HOLE);
        if off >= size {
            if data.is_some() || hole.is_some() {
                self.fail(&format!("lseek past the end ({off} >= {size}) gave {data:?}/{hole:?}, not ENXIO"));
            }
            return;
        }
        match data {
            None => self.all_zero(i, off, size, "SEEK_DATA found no data"),
            Some(d) if d < off || d >= size => self.fail(&format!("SEEK_DATA from {off} gave {d} (size {size})")),
            Some(d) => self.all_zero(i, off, d, "SEEK_DATA skipped a range"),
        }
        let Some(h) = hole else { self.fail(&format!("SEEK_HOLE from {off} < size {size} gave ENXIO")) };
        if h < off || h > size {
            self.fail(&format!("SEEK_HOLE from {off} gave {h} (size {size})"));
        }
        if h < size {
            let next = self.lseek(fd, h, libc::SEEK_DATA).unwrap_or(size);
            if next <= h {
                self.fail(&format!("the hole at {h} is followed by data at {next}"));
            }
            self.all_zero(i, h, next, "SEEK_HOLE reported a hole");
        }
    }
}
