//! The FUSE floor: a filesystem that does no work, to measure what the FUSE transport alone
//! costs on a machine.
//!
//! It keeps names and attributes in memory, drops written data and reads back zeros, and
//! answers every request at once. It runs on hammer2's own transports and negotiation (the
//! protocol code `proto/`, `devfuse.rs`, `uring.rs` and `negotiate.rs` of
//! `src/bin/hammer2/fuse/`, included here; the same mount options and worker threads), so
//! the kernel sends it the same requests for the same workload and they reach it the same
//! way. Whatever it reaches on a workload is the most any FUSE filesystem can reach on that
//! machine; `scripts/bench-peers.sh` runs it as the `fuse-floor` target beside ours and
//! the peers. It checks only what the benchmark workloads rely on (a rename, for one,
//! replaces its target without looking at types or RENAME_* flags): it is an instrument,
//! not a filesystem.
//!
//! Usage (as root): `cargo run --release -p hammer2-tools --bin fuse-floor -- MOUNTPOINT`
//! (runs in the foreground until unmounted; FLOOR_NO_URING=1 keeps it on /dev/fuse).

#[allow(dead_code)]
#[path = "../../src/bin/hammer2/fuse/devfuse.rs"]
mod devfuse;
#[path = "../../src/bin/hammer2/fuse/dispatch.rs"]
mod dispatch;
#[allow(dead_code)]
#[path = "../../src/bin/hammer2/fuse/negotiate.rs"]
mod negotiate;
#[allow(dead_code)]
#[path = "../../src/bin/hammer2/fuse/proto/mod.rs"]
mod proto;
// (The floor has no fsync, so it leaves on_all_cpus unused.)
#[allow(dead_code)]
#[path = "../../src/bin/hammer2/fuse/uring.rs"]
mod uring;

use dispatch::{Answer, Dispatch};
use negotiate::{ATTR_TTL, ENTRY_TTL, open_flags};
use parking_lot::Mutex;
use proto::{Errno, Op, Reply, Request, abi};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsFd;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ROOT: u64 = 1;

struct Node {
    /// S_IF* | permission bits.
    mode: u32,
    size: u64,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u64,
    target: Vec<u8>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Node {
    fn new(mode: u32, uid: u32, gid: u32, target: &[u8]) -> Node {
        let dir = mode & libc::S_IFMT == libc::S_IFDIR;
        Node {
            mode,
            size: target.len() as u64,
            uid,
            gid,
            nlink: if dir { 2 } else { 1 },
            mtime: now(),
            target: target.to_vec(),
        }
    }

    fn attr(&self, ino: u64) -> abi::Attr {
        abi::Attr {
            ino,
            size: self.size,
            atime: self.mtime,
            mtime: self.mtime,
            ctime: self.mtime,
            mode: self.mode,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            blksize: 4096,
            ..abi::Attr::default()
        }
    }
}

fn entry_out(attr: abi::Attr, entry_ttl: Duration) -> abi::EntryOut {
    abi::EntryOut {
        nodeid: attr.ino,
        generation: 0,
        entry_valid: entry_ttl.as_secs(),
        attr_valid: ATTR_TTL.as_secs(),
        entry_valid_nsec: entry_ttl.subsec_nanos(),
        attr_valid_nsec: ATTR_TTL.subsec_nanos(),
        attr,
    }
}

fn attr_out(attr: abi::Attr) -> abi::AttrOut {
    abi::AttrOut { attr_valid: ATTR_TTL.as_secs(), attr_valid_nsec: ATTR_TTL.subsec_nanos(), dummy: 0, attr }
}

struct State {
    next_ino: u64,
    nodes: HashMap<u64, Node>,
    /// (parent, name) -> inode, ordered so a directory's entries are one range.
    entries: BTreeMap<(u64, Vec<u8>), u64>,
}

impl State {
    fn children(&self, dir: u64) -> impl Iterator<Item = (&Vec<u8>, u64)> {
        self.entries.range((dir, Vec::new())..).take_while(move |((p, _), _)| *p == dir).map(|((_, n), i)| (n, *i))
    }

    fn make(&mut self, parent: u64, name: &[u8], node: Node) -> Result<abi::Attr, Errno> {
        let key = (parent, name.to_vec());
        if self.entries.contains_key(&key) {
            return Err(Errno(libc::EEXIST));
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let attr = node.attr(ino);
        self.nodes.insert(ino, node);
        self.entries.insert(key, ino);
        Ok(attr)
    }

    fn remove(&mut self, parent: u64, name: &[u8], dir: bool) -> Result<(), Errno> {
        let key = (parent, name.to_vec());
        let ino = *self.entries.get(&key).ok_or(Errno::ENOENT)?;
        let is_dir = self.nodes.get(&ino).is_some_and(|n| n.mode & libc::S_IFMT == libc::S_IFDIR);
        match (dir, is_dir) {
            (true, false) => return Err(Errno(libc::ENOTDIR)),
            (false, true) => return Err(Errno(libc::EISDIR)),
            (true, true) if self.children(ino).next().is_some() => return Err(Errno(libc::ENOTEMPTY)),
            _ => {}
        }
        self.entries.remove(&key);
        self.nodes.remove(&ino);
        Ok(())
    }
}

/// The state, and the offer the kernel made (kept by INIT).
struct Floor {
    state: Mutex<State>,
    offer: OnceLock<negotiate::Offer>,
    want_uring: bool,
}

impl Dispatch for Floor {
    fn dispatch(&self, req: &Request, out: &mut Reply) -> Answer {
        if !req.op.answered() {
            return Answer::Nothing;
        }
        let served = self.serve(req, out);
        dispatch::answer(out, served)
    }

    fn initialized(&self) -> bool {
        self.offer.get().is_some()
    }

    fn ring_negotiated(&self) -> bool {
        self.want_uring && self.offer.get().is_some_and(|o| o.has(abi::init::OVER_IO_URING))
    }
}

fn dirent_type(mode: u32) -> u32 {
    (mode & libc::S_IFMT) >> 12
}

impl Floor {
    fn serve(&self, req: &Request, out: &mut Reply) -> Result<(), Errno> {
        let ino = req.nodeid();
        let node = |mode: u32, target: &[u8]| Node::new(mode, req.uid(), req.gid(), target);
        match &req.op {
            Op::Init(k) => {
                if k.major != abi::KERNEL_VERSION {
                    return Err(Errno(libc::EPROTO));
                }
                let (reply, offer) = negotiate::configure(k, self.want_uring);
                let _ = self.offer.set(offer);
                out.push(&reply)?;
            }
            Op::Lookup { name } => {
                let s = self.state.lock();
                match s.entries.get(&(ino, name.to_vec())) {
                    Some(i) => out.push(&entry_out(s.nodes[i].attr(*i), ENTRY_TTL))?,
                    // A cacheable negative entry, as hammer2 gives.
                    None => out.push(&entry_out(abi::Attr::default(), ENTRY_TTL))?,
                }
            }
            Op::Getattr => {
                let s = self.state.lock();
                let n = s.nodes.get(&ino).ok_or(Errno::ENOENT)?;
                out.push(&attr_out(n.attr(ino)))?;
            }
            Op::Setattr(a) => {
                let mut s = self.state.lock();
                let n = s.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
                let has = |bit: u32| a.valid & bit != 0;
                if has(abi::fattr::MODE) {
                    n.mode = (n.mode & libc::S_IFMT) | (a.mode & 0o7777);
                }
                if has(abi::fattr::UID) {
                    n.uid = a.uid;
                }
                if has(abi::fattr::GID) {
                    n.gid = a.gid;
                }
                if has(abi::fattr::SIZE) {
                    n.size = a.size;
                }
                if has(abi::fattr::MTIME_NOW) {
                    n.mtime = now();
                } else if has(abi::fattr::MTIME) {
                    n.mtime = a.mtime;
                }
                out.push(&attr_out(n.attr(ino)))?;
            }
            Op::Readlink => {
                let s = self.state.lock();
                out.bytes(&s.nodes.get(&ino).ok_or(Errno::ENOENT)?.target)?;
            }
            Op::Mkdir { arg, name } => {
                let a = self.state.lock().make(ino, name, node(libc::S_IFDIR | (arg.mode & 0o7777), &[]))?;
                out.push(&entry_out(a, ENTRY_TTL))?;
            }
            Op::Mknod { arg, name } => {
                let a = self.state.lock().make(ino, name, node(arg.mode, &[]))?;
                out.push(&entry_out(a, ENTRY_TTL))?;
            }
            Op::Unlink { name } => self.state.lock().remove(ino, name, false)?,
            Op::Rmdir { name } => self.state.lock().remove(ino, name, true)?,
            Op::Symlink { name, target } => {
                let a = self.state.lock().make(ino, name, node(libc::S_IFLNK | 0o777, target))?;
                out.push(&entry_out(a, ENTRY_TTL))?;
            }
            Op::Rename { newdir, name, newname, .. } => {
                let mut s = self.state.lock();
                let i = s.entries.remove(&(ino, name.to_vec())).ok_or(Errno::ENOENT)?;
                if let Some(old) = s.entries.insert((*newdir, newname.to_vec()), i) {
                    s.nodes.remove(&old);
                }
            }
            Op::Open { flags } => out.push(&abi::OpenOut { fh: 0, open_flags: open_flags(*flags), backing_id: 0 })?,
            Op::Opendir => out.push(&abi::OpenOut::default())?,
            Op::Read(r) => {
                let len = self
                    .state
                    .lock()
                    .nodes
                    .get(&ino)
                    .map_or(0, |n| n.size.saturating_sub(r.offset).min(u64::from(r.size)));
                let room = out.room(len as usize);
                room.fill(0);
                let n = room.len();
                out.commit(n);
            }
            Op::Write { arg, data } => {
                if let Some(n) = self.state.lock().nodes.get_mut(&ino) {
                    n.size = n.size.max(arg.offset + data.len() as u64);
                }
                out.push(&abi::WriteOut { size: data.len() as u32, padding: 0 })?;
            }
            Op::Release | Op::Releasedir | Op::Fsync | Op::Fsyncdir => {}
            Op::Readdir(r) => {
                let s = self.state.lock();
                for (i, (name, child)) in s.children(ino).enumerate().skip(r.offset as usize) {
                    if !out.dirent(r.size as usize, child, i as u64 + 1, dirent_type(s.nodes[&child].mode), name) {
                        break;
                    }
                }
            }
            Op::Readdirplus(r) => {
                let s = self.state.lock();
                for (i, (name, child)) in s.children(ino).enumerate().skip(r.offset as usize) {
                    let n = &s.nodes[&child];
                    let e = entry_out(n.attr(child), ATTR_TTL);
                    if !out.direntplus(r.size as usize, &e, i as u64 + 1, dirent_type(n.mode), name) {
                        break;
                    }
                }
            }
            Op::Getxattr { .. } => return Err(Errno(libc::ENODATA)),
            Op::Create { arg, name } => {
                let a = self.state.lock().make(ino, name, node(libc::S_IFREG | (arg.mode & 0o7777), &[]))?;
                // As hammer2's create: the entry for ATTR_TTL.
                out.push(&entry_out(a, ATTR_TTL))?;
                out.push(&abi::OpenOut { fh: 0, open_flags: open_flags(arg.flags), backing_id: 0 })?;
            }
            Op::Statfs => out.push(&abi::Kstatfs { bsize: 4096, frsize: 4096, namelen: 255, ..Default::default() })?,
            // What hammer2 answers too: FLUSH is not needed (the kernel stops sending it).
            Op::Flush => return Err(Errno::ENOSYS),
            _ => return Err(Errno::ENOSYS),
        }
        Ok(())
    }
}

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let Some(mountpoint) = std::env::args_os().nth(1) else {
        eprintln!("usage: fuse-floor MOUNTPOINT");
        std::process::exit(2);
    };
    let mountpoint = std::path::PathBuf::from(mountpoint);
    let root = Node::new(libc::S_IFDIR | 0o755, 0, 0, &[]);
    let state = State { next_ino: ROOT + 1, nodes: HashMap::from([(ROOT, root)]), entries: BTreeMap::new() };
    let want_uring = std::env::var_os("FLOOR_NO_URING").is_none();
    let floor = Arc::new(Floor { state: Mutex::new(state), offer: OnceLock::new(), want_uring });
    let conn = hammer2_test_support::fuse_mount::mount(&mountpoint, "fuse-floor", "fuse.floor")?;
    devfuse::handshake(&conn, &*floor)?;
    let rings = uring::start(conn.as_fd(), &floor, uring::DEFAULT_THREADS)?;
    eprintln!("fuse-floor: FUSE over io_uring {}", if rings.is_some() { "on" } else { "off" });
    // As `hammer2 mount` (its `worker_threads`, and 2 beside the ring).
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = if rings.is_some() { 2 } else { (cpus * 4).clamp(8, 64) };
    devfuse::serve(&conn, &floor, threads)?;
    if let Some(r) = rings {
        r.join();
    }
    Ok(())
}
