//! The dispatch: each decoded request (`proto::Op`) is one engine call (see `vnops`), run
//! under [`Hammer2Fuse::run`], its answer encoded into the transport's reply buffer. Both
//! transports call [`Hammer2Fuse::dispatch`], so a request is served by this code whatever
//! carried it. Entry replies (lookup, create, mkdir, mknod, symlink, link) take a kernel
//! lookup reference before they are sent; `forget` drops them.

use super::convert::{access_allowed, caller, entry_out, file_attr, negative_entry, request_time, time_set};
use super::dispatch::{self, Answer, Dispatch};
use super::negotiate::open_flags;
use super::proto::{Errno, Op, Reply, Request, abi, request::forgets};
use super::{ATTR_TTL, ENTRY_TTL, Hammer2Fuse, requests, xattr};
use hammer2::{Attr, Caller, Creds, Error, Fs, SetAttr, Whence};

fn creds(req: &Request, umask: u32) -> Creds {
    Creds { uid: req.uid(), gid: req.gid(), umask }
}

/// A new or found entry the kernel will hold on to: one more lookup reference.
fn referenced(fs: &Fs, a: hammer2::Result<Attr>) -> hammer2::Result<Attr> {
    let a = a?;
    fs.lookup_ref(a.ino);
    Ok(a)
}

impl Dispatch for Hammer2Fuse {
    fn dispatch(&self, req: &Request, out: &mut Reply) -> Answer {
        tracing::debug!(unique = req.unique(), opcode = req.header.opcode, node = req.nodeid(), "FUSE request");
        if !req.op.answered() {
            self.forget_request(req);
            return Answer::Nothing;
        }
        let served = self.serve(req, out);
        dispatch::answer(out, served)
    }

    fn initialized(&self) -> bool {
        self.offer().is_some()
    }

    fn ring_negotiated(&self) -> bool {
        self.want_uring && self.offer().is_some_and(|o| o.has(abi::init::OVER_IO_URING))
    }
}

impl Hammer2Fuse {
    fn forget_request(&self, req: &Request) {
        match &req.op {
            Op::Forget { nlookup } => self.forget(req.nodeid(), *nlookup),
            Op::BatchForget { forgets: raw } => {
                for f in forgets(raw) {
                    self.forget(f.nodeid, f.nlookup);
                }
            }
            // Every request is answered as soon as it is served; there is nothing to stop.
            _ => requests::count("other"),
        }
    }

    fn forget(&self, ino: u64, nlookup: u64) {
        let _ = self.run("forget", ino, |fs| {
            if !self.snapdir.is_virtual(ino) {
                fs.forget(ino, nlookup);
            }
            Ok(())
        });
    }

    fn entry(&self, out: &mut Reply, a: &Attr) -> Result<(), Errno> {
        Ok(out.push(&entry_out(file_attr(a, self.blksize), a.generation(), ENTRY_TTL, ATTR_TTL))?)
    }

    fn attr(&self, out: &mut Reply, a: &Attr) -> Result<(), Errno> {
        let ttl = ATTR_TTL;
        let o = abi::AttrOut {
            attr_valid: ttl.as_secs(),
            attr_valid_nsec: ttl.subsec_nanos(),
            dummy: 0,
            attr: file_attr(a, self.blksize),
        };
        Ok(out.push(&o)?)
    }

    fn opened(out: &mut Reply, open_flags: u32) -> Result<(), Errno> {
        Ok(out.push(&abi::OpenOut { fh: 0, open_flags, backing_id: 0 })?)
    }

    fn serve(&self, req: &Request, out: &mut Reply) -> Result<(), Errno> {
        let ino = req.nodeid();
        match &req.op {
            Op::Init(i) => self.init(i, out),
            // The final commit runs when the connection ends (`devfuse::serve` returns).
            Op::Destroy => {
                requests::count("other");
                Ok(())
            }
            Op::Lookup { name } => self.lookup(ino, name, out),
            Op::Getattr => {
                let a = self.run("getattr", ino, |fs| self.attr_of(fs, ino))?;
                self.attr(out, &a)
            }
            Op::Setattr(s) => self.setattr(req, s, out),
            Op::Readlink => {
                let t = self.run("readlink", ino, |fs| self.readlink_node(fs, ino))?;
                Ok(out.bytes(&t)?)
            }
            Op::Mknod { arg, name } => {
                let a = self.run("mknod", ino, |fs| {
                    self.snapdir.check_change(ino, name, true)?;
                    referenced(fs, fs.mknod(ino, name, arg.mode, u64::from(arg.rdev), creds(req, arg.umask)))
                })?;
                self.entry(out, &a)
            }
            Op::Mkdir { arg, name } => {
                let a = self.run("mkdir", ino, |fs| {
                    self.snapdir.check_change(ino, name, true)?;
                    referenced(fs, fs.mkdir(ino, name, arg.mode, creds(req, arg.umask)))
                })?;
                self.entry(out, &a)
            }
            Op::Unlink { name } => self.run("unlink", ino, |fs| {
                self.snapdir.check_change(ino, name, false)?;
                fs.unlink(ino, name)
            }),
            Op::Rmdir { name } => self.run("rmdir", ino, |fs| {
                self.snapdir.check_change(ino, name, false)?;
                fs.rmdir(ino, name)
            }),
            Op::Symlink { name, target } => {
                let a = self.run("symlink", ino, |fs| {
                    self.snapdir.check_change(ino, name, true)?;
                    referenced(fs, fs.symlink(ino, name, target, creds(req, 0)))
                })?;
                self.entry(out, &a)
            }
            Op::Rename { newdir, flags, name, newname } => self.run("rename", ino, |fs| {
                self.snapdir.check_change(ino, name, false)?;
                self.snapdir.check_change(*newdir, newname, false)?;
                let known = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE;
                if flags & !known != 0 {
                    return Err(Error::invalid("unsupported rename flags"));
                }
                let f = hammer2::RenameFlags {
                    noreplace: flags & libc::RENAME_NOREPLACE != 0,
                    exchange: flags & libc::RENAME_EXCHANGE != 0,
                };
                fs.rename(ino, name, *newdir, newname, f)
            }),
            Op::Link { oldnodeid, newname } => {
                let a = self.run("link", *oldnodeid, |fs| {
                    self.snapdir.check_inode(*oldnodeid)?;
                    self.snapdir.check_change(ino, newname, true)?;
                    referenced(fs, fs.link(*oldnodeid, ino, newname))
                })?;
                self.entry(out, &a)
            }
            Op::Open { flags } => {
                let node = self.run("open", ino, |fs| self.open_node(fs, ino, *flags as i32))?;
                let mut open = open_flags(*flags);
                // A snapshot's content never changes: its cached pages stay good. Otherwise
                // the kernel drops the pages direct writes left stale (direct.rs).
                if !matches!(node, super::snapdir::Node::Snap { .. })
                    && *flags & libc::O_DIRECT as u32 == 0
                    && !self.direct.keep_cache(ino)
                {
                    open &= !abi::fopen::KEEP_CACHE;
                }
                Self::opened(out, open)
            }
            Op::Read(r) => {
                // Straight into the reply buffer (a ring entry's payload, or the /dev/fuse
                // reply): no copy in between.
                let room = out.room(r.size as usize);
                let n = self.run("read", ino, |fs| self.read_node_into(fs, ino, r.offset, room))?;
                out.commit(n);
                Ok(())
            }
            Op::Write { arg, data } => self.write(req, arg, data, out),
            Op::Statfs => {
                let s = self.run("statfs", 0, |fs| Ok(fs.statfs()))?;
                let st = abi::Kstatfs {
                    blocks: s.blocks,
                    bfree: s.blocks_free,
                    bavail: s.blocks_avail,
                    files: s.files,
                    ffree: s.files_free,
                    bsize: s.block_size,
                    namelen: s.name_max,
                    frsize: s.block_size,
                    ..abi::Kstatfs::default()
                };
                Ok(out.push(&st)?)
            }
            Op::Release => self.run("release", ino, |fs| self.release_node(fs, ino)),
            // Nothing to do on close: writes are already in the engine, and POSIX locks are
            // kept by the kernel. ENOSYS tells the kernel so once, and it stops sending FLUSH
            // on every close (one round trip less per file written).
            Op::Flush => {
                requests::count("flush");
                Err(Errno::ENOSYS)
            }
            // A commit spreads its work over threads: on every CPU, not only the queue's.
            // Nothing inside `.snapshots` has anything to make durable.
            Op::Fsync => super::uring::on_all_cpus(|| {
                self.run("fsync", ino, |fs| if self.snapdir.is_virtual(ino) { Ok(()) } else { fs.fsync(ino) })
            }),
            Op::Fsyncdir => super::uring::on_all_cpus(|| {
                self.run("fsyncdir", ino, |fs| if self.snapdir.is_virtual(ino) { Ok(()) } else { fs.fsync(ino) })
            }),
            Op::Setxattr { name, value, flags } => self.run("setxattr", ino, |fs| {
                self.snapdir.check_inode(ino)?;
                fs.setxattr_by(ino, name, value, xattr::set_flags(*flags), || caller(req.pid(), req.gid()))
            }),
            Op::Getxattr { name, size } => {
                let v = self.run("getxattr", ino, |fs| self.getxattr_node(fs, ino, name))?;
                xattr::reply(out, *size, v)
            }
            Op::Listxattr { size } => {
                let v = self.run("listxattr", ino, |fs| self.listxattr_node(fs, ino).map(xattr::name_list))?;
                xattr::reply(out, *size, v)
            }
            Op::Removexattr { name } => self.run("removexattr", ino, |fs| {
                self.snapdir.check_inode(ino)?;
                fs.removexattr(ino, name)
            }),
            // A live directory needs nothing; one inside a snapshot is counted as open (SD3).
            Op::Opendir => {
                if !self.snapdir.is_virtual(ino) {
                    requests::count("opendir");
                } else {
                    self.run("opendir", ino, |fs| self.open_node(fs, ino, libc::O_RDONLY))?;
                }
                Self::opened(out, 0)
            }
            Op::Releasedir => {
                if !self.snapdir.is_virtual(ino) {
                    requests::count("releasedir");
                    return Ok(());
                }
                self.run("releasedir", ino, |fs| self.release_node(fs, ino))
            }
            Op::Readdir(r) => self.run("readdir", ino, |fs| self.fill_dir(fs, ino, r.offset, out, r.size as usize)),
            Op::Readdirplus(r) => {
                self.run("readdirplus", ino, |fs| self.fill_dir_plus(fs, ino, r.offset, out, r.size as usize))
            }
            Op::Access { mask } => self.run("access", ino, |fs| {
                let a = self.attr_of(fs, ino)?;
                match access_allowed(&a, req.uid(), req.gid(), *mask as i32) {
                    true => Ok(()),
                    false => Err(Error::Io(std::io::Error::from_raw_os_error(libc::EACCES))),
                }
            }),
            Op::Create { arg, name } => {
                let a = self.run("create", ino, |fs| {
                    self.snapdir.check_change(ino, name, true)?;
                    let a = fs.create(ino, name, arg.mode, creds(req, arg.umask))?;
                    fs.open(a.ino)?;
                    referenced(fs, Ok(a))
                })?;
                // The entry for ATTR_TTL only, as fuser's one-TTL create reply gave it (a
                // longer one would spare LOOKUPs of new names; not changed with the transport).
                out.push(&entry_out(file_attr(&a, self.blksize), a.generation(), ATTR_TTL, ATTR_TTL))?;
                Self::opened(out, open_flags(arg.flags))
            }
            Op::Fallocate(f) => self.fallocate(req, f),
            Op::Lseek(l) => {
                let o = self.run("lseek", ino, |fs| {
                    let whence = match l.whence as i32 {
                        libc::SEEK_DATA => Whence::Data,
                        libc::SEEK_HOLE => Whence::Hole,
                        _ => return Err(Error::invalid("lseek whence")),
                    };
                    let off = i64::try_from(l.offset).map_err(|_| Error::NoSeekTarget)?;
                    self.seek_node(fs, ino, off as u64, whence)
                })?;
                Ok(out.push(&abi::LseekOut { offset: o })?)
            }
            // No ioctls: "not a terminal" for every one (isatty() asks on each open in some
            // programs).
            Op::Ioctl => {
                requests::count("ioctl");
                Err(Errno(libc::ENOTTY))
            }
            Op::Unknown(code) => {
                requests::count("other");
                tracing::debug!("opcode {code} is not served: ENOSYS");
                Err(Errno::ENOSYS)
            }
            Op::Forget { .. } | Op::BatchForget { .. } | Op::Interrupt => Ok(()),
        }
    }

    /// The kernel looks up "." (any inode) and ".." (a directory's parent) only to resolve
    /// a file handle of an inode it forgot (FUSE_EXPORT_SUPPORT, DESIGN §12).
    /// In `.snapshots` names come and go without the kernel (snapshots taken and deleted
    /// through the control socket): no negative entry there, and positive ones for ATTR_TTL.
    fn lookup(&self, parent: u64, name: &[u8], out: &mut Reply) -> Result<(), Errno> {
        let r = self.run("lookup", parent, |fs| self.lookup_node(fs, parent, name));
        let in_snapdir = parent == super::snapdir::DIR_INO && self.snapdir.is_virtual(parent);
        match r {
            Err(e) if e == Errno::ENOENT && in_snapdir => Err(e),
            // A negative entry the kernel may cache: names only appear through the kernel.
            Err(e) if e == Errno::ENOENT => Ok(out.push(&negative_entry(ENTRY_TTL))?),
            Ok(a) if in_snapdir => {
                Ok(out.push(&entry_out(file_attr(&a, self.blksize), a.generation(), ATTR_TTL, ATTR_TTL))?)
            }
            Ok(a) => self.entry(out, &a),
            Err(e) => Err(e),
        }
    }

    fn setattr(&self, req: &Request, s: &abi::SetattrIn, out: &mut Reply) -> Result<(), Errno> {
        use abi::fattr;
        let ino = req.nodeid();
        let has = |bit: u32| s.valid & bit != 0;
        let mode = has(fattr::MODE).then_some(s.mode);
        let (uid, gid, size) =
            (has(fattr::UID).then_some(s.uid), has(fattr::GID).then_some(s.gid), has(fattr::SIZE).then_some(s.size));
        // Under FUSE_HANDLE_KILLPRIV_V2 what a truncate or chown costs the set-id bits is
        // ours to decide (hammer2::vnops::killed_mode). A request that sets the mode itself
        // gets exactly that mode.
        let kill = mode.is_none() && (uid.is_some() || gid.is_some() || size.is_some());
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: (has(fattr::ATIME) || has(fattr::ATIME_NOW))
                .then(|| time_set(has(fattr::ATIME_NOW), s.atime, s.atimensec)),
            mtime: (has(fattr::MTIME) || has(fattr::MTIME_NOW))
                .then(|| time_set(has(fattr::MTIME_NOW), s.mtime, s.mtimensec)),
            ctime: has(fattr::CTIME).then(|| request_time(s.ctime, s.ctimensec)),
            kill_suidgid: None,
        };
        let a = self.run("setattr", ino, |fs| {
            self.snapdir.check_inode(ino)?;
            let mut set = set;
            if kill && fs.getattr(ino)?.mode & 0o6000 != 0 {
                set.kill_suidgid = Some(caller(req.pid(), req.gid()));
            }
            fs.setattr(ino, &set)
        })?;
        self.attr(out, &a)
    }

    fn write(&self, req: &Request, arg: &abi::WriteIn, data: &[u8], out: &mut Reply) -> Result<(), Errno> {
        let ino = req.nodeid();
        // The kernel flags writes by callers without CAP_FSETID (FUSE_HANDLE_KILLPRIV_V2);
        // like Linux, the privileges go before the data changes.
        let kill = arg.write_flags & abi::WRITE_KILL_SUIDGID != 0;
        // At most max_write (1 MiB) per request, so the count fits in u32.
        let n = self.run("write", ino, |fs| {
            self.snapdir.check_inode(ino)?;
            if kill && fs.kill_suidgid(ino, || Caller { fsetid: false, ..caller(req.pid(), req.gid()) })? {
                self.attrs_changed(ino);
            }
            fs.write(ino, arg.offset, data)
        })?;
        // A direct write (not the write-back of a mapped page) leaves old data in the page
        // cache when it is asynchronous: see direct.rs.
        let direct = arg.flags & libc::O_DIRECT as u32 != 0 && arg.write_flags & abi::WRITE_CACHE == 0;
        if direct && n > 0 {
            self.direct.written(ino, arg.offset, n as u32);
        }
        Ok(out.push(&abi::WriteOut { size: n as u32, padding: 0 })?)
    }

    fn fallocate(&self, req: &Request, f: &abi::FallocateIn) -> Result<(), Errno> {
        let ino = req.nodeid();
        // The kernel leaves the set-id bits to us here too (FUSE_HANDLE_KILLPRIV_V2), and
        // says nothing of the caller's CAP_FSETID: `caller` reads it. Only once the
        // allocation is done, so a refused request changes nothing.
        self.run("fallocate", ino, |fs| {
            self.snapdir.check_inode(ino)?;
            fs.fallocate(ino, f.offset, f.length, f.mode as i32)?;
            if fs.kill_suidgid(ino, || caller(req.pid(), req.gid()))? {
                self.attrs_changed(ino);
            }
            Ok(())
        })
    }
}
