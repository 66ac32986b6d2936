//! The FUSE floor: a filesystem that does no work, to measure what the FUSE transport alone
//! costs on a machine.
//!
//! It keeps names and attributes in memory, drops written data and reads back zeros, and
//! answers every request at once. It negotiates what `hammer2 mount` negotiates (the same
//! mount options and worker threads, and hammer2's own `negotiate.rs` for the init flags,
//! open flags and TTLs), so the kernel sends it the same requests for the same workload.
//! Whatever it reaches on a workload is the most any FUSE filesystem can reach on that
//! machine; `scripts/bench-peers.sh` runs it as the `fuse-floor` target beside ours and
//! the peers. It checks only what the benchmark workloads rely on (a rename, for one,
//! replaces its target without looking at types or RENAME_* flags): it is an instrument,
//! not a filesystem.
//!
//! Usage: `cargo run --release -p hammer2-tools --bin fuse-floor -- MOUNTPOINT` (runs in the foreground
//! until unmounted).

#[path = "../../src/bin/hammer2/fuse/negotiate.rs"]
mod negotiate;
// (The floor has no fsync, so it leaves on_all_cpus unused.)
#[allow(dead_code)]
#[path = "../../src/bin/hammer2/fuse/uring.rs"]
mod uring;

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, KernelConfig, LockOwner,
    MountOption, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, ReplyXattr, Request, Session, TimeOrNow, WriteFlags,
};
use negotiate::{ATTR_TTL, ENTRY_TTL, open_flags};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

const ROOT: u64 = 1;

struct Node {
    kind: FileType,
    perm: u16,
    size: u64,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: SystemTime,
    target: Vec<u8>,
}

impl Node {
    fn new(kind: FileType, mode: u32, uid: u32, gid: u32, target: &[u8]) -> Node {
        Node {
            kind,
            perm: (mode & 0o7777) as u16,
            size: target.len() as u64,
            uid,
            gid,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            mtime: SystemTime::now(),
            target: target.to_vec(),
        }
    }

    /// Inode 0: the kernel caches the name as absent for the entry TTL.
    fn negative() -> FileAttr {
        Node::new(FileType::RegularFile, 0, 0, 0, &[]).attr(0)
    }

    fn attr(&self, ino: u64) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size: self.size,
            blocks: 0,
            atime: self.mtime,
            mtime: self.mtime,
            ctime: self.mtime,
            crtime: self.mtime,
            kind: self.kind,
            perm: self.perm,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

struct State {
    next_ino: u64,
    nodes: HashMap<u64, Node>,
    /// (parent, name) -> inode, ordered so a directory's entries are one range.
    entries: BTreeMap<(u64, OsString), u64>,
}

impl State {
    fn children(&self, dir: u64) -> impl Iterator<Item = (&OsString, u64)> {
        self.entries.range((dir, OsString::new())..).take_while(move |((p, _), _)| *p == dir).map(|((_, n), i)| (n, *i))
    }

    fn make(&mut self, req: &Request, parent: u64, name: &OsStr, kind: FileType, mode: u32) -> Result<FileAttr, Errno> {
        self.make_node(parent, name, Node::new(kind, mode, req.uid(), req.gid(), &[]))
    }

    fn make_node(&mut self, parent: u64, name: &OsStr, node: Node) -> Result<FileAttr, Errno> {
        let key = (parent, name.to_owned());
        if self.entries.contains_key(&key) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let attr = node.attr(ino);
        self.nodes.insert(ino, node);
        self.entries.insert(key, ino);
        Ok(attr)
    }

    fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let key = (parent, name.to_owned());
        let ino = *self.entries.get(&key).ok_or(Errno::ENOENT)?;
        let is_dir = self.nodes.get(&ino).is_some_and(|n| n.kind == FileType::Directory);
        match (dir, is_dir) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            (true, true) if self.children(ino).next().is_some() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        self.entries.remove(&key);
        self.nodes.remove(&ino);
        Ok(())
    }
}

/// The state, shared by the /dev/fuse session and the ring's sessions; the offer the kernel
/// made, kept by the first session's INIT.
#[derive(Clone)]
struct Floor(Arc<Mutex<State>>, Arc<OnceLock<negotiate::Offer>>);

fn entry(reply: ReplyEntry, r: Result<FileAttr, Errno>) {
    match r {
        Ok(a) => reply.entry_with_ttls(&ATTR_TTL, &ENTRY_TTL, &a, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for Floor {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = self.1.set(negotiate::configure(config, std::env::var_os("FLOOR_NO_URING").is_none()));
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let s = self.0.lock();
        match s.entries.get(&(parent.0, name.to_owned())) {
            Some(ino) => entry(reply, Ok(s.nodes[ino].attr(*ino))),
            // A cacheable negative entry, as hammer2 gives.
            None => reply.entry(&ENTRY_TTL, &Node::negative(), Generation(0)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.0.lock().nodes.get(&ino.0) {
            Some(n) => reply.attr(&ATTR_TTL, &n.attr(ino.0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.0.lock();
        let Some(n) = s.nodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        n.perm = mode.map_or(n.perm, |m| (m & 0o7777) as u16);
        n.uid = uid.unwrap_or(n.uid);
        n.gid = gid.unwrap_or(n.gid);
        n.size = size.unwrap_or(n.size);
        n.mtime = match mtime {
            Some(TimeOrNow::SpecificTime(t)) => t,
            Some(TimeOrNow::Now) => SystemTime::now(),
            None => n.mtime,
        };
        reply.attr(&ATTR_TTL, &n.attr(ino.0))
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.0.lock().nodes.get(&ino.0) {
            Some(n) => reply.data(&n.target),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        entry(reply, self.0.lock().make(req, parent.0, name, FileType::Directory, mode))
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.0.lock().remove(parent.0, name, false))
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.0.lock().remove(parent.0, name, true))
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let node = Node::new(FileType::Symlink, 0o777, req.uid(), req.gid(), target.as_os_str().as_bytes());
        entry(reply, self.0.lock().make_node(parent.0, link_name, node))
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut s = self.0.lock();
        let Some(ino) = s.entries.remove(&(parent.0, name.to_owned())) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(old) = s.entries.insert((newparent.0, newname.to_owned()), ino) {
            s.nodes.remove(&old);
        }
        reply.ok()
    }

    fn open(&self, _req: &Request, _ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), open_flags(flags.0))
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let len = self.0.lock().nodes.get(&ino.0).map_or(0, |n| n.size.saturating_sub(offset).min(size as u64));
        reply.data(&vec![0; len as usize])
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if let Some(n) = self.0.lock().nodes.get_mut(&ino.0) {
            n.size = n.size.max(offset + data.len() as u64);
        }
        reply.written(data.len() as u32)
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok()
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok()
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let s = self.0.lock();
        for (i, (name, child)) in s.children(ino.0).enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, s.nodes[&child].kind, name) {
                break;
            }
        }
        reply.ok()
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let s = self.0.lock();
        for (i, (name, child)) in s.children(ino.0).enumerate().skip(offset as usize) {
            let attr = s.nodes[&child].attr(child);
            if reply.add(INodeNo(child), i as u64 + 1, name, &ATTR_TTL, &attr, Generation(0)) {
                break;
            }
        }
        reply.ok()
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENODATA)
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.0.lock().make(req, parent.0, name, FileType::RegularFile, mode) {
            Ok(a) => reply.created(&ATTR_TTL, &a, Generation(0), FileHandle(0), open_flags(flags)),
            Err(e) => reply.error(e),
        }
    }
}

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let Some(mountpoint) = std::env::args_os().nth(1) else {
        eprintln!("usage: fuse-floor MOUNTPOINT");
        std::process::exit(2);
    };
    let root = Node::new(FileType::Directory, 0o755, 0, 0, &[]);
    let state = State { next_ino: ROOT + 1, nodes: HashMap::from([(ROOT, root)]), entries: BTreeMap::new() };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("fuse-floor".into()),
        MountOption::CUSTOM("subtype=floor".into()),
        MountOption::DefaultPermissions,
    ];
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    config.n_threads = Some((cpus * 4).clamp(8, 64));
    config.clone_fd = true;
    let floor = Floor(Arc::new(Mutex::new(state)), Arc::default());
    let session = Session::new(floor.clone(), &mountpoint, &config)?;
    let offer = *floor.1.get().expect("the INIT handshake ran");
    let payload = negotiate::MAX_WRITE as usize + (64 << 10);
    let rings = if std::env::var_os("FLOOR_NO_URING").is_some() {
        None
    } else {
        uring::start(session.as_fd(), offer, payload, &config, || floor.clone())?
    };
    eprintln!("fuse-floor: FUSE over io_uring {}", if rings.is_some() { "on" } else { "off" });
    session.run()?;
    if let Some(r) = rings {
        r.join();
    }
    Ok(())
}
