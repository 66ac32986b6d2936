//! `fuser::Filesystem` for hammer2: each request is one engine call (see `vnops`), run under
//! [`Hammer2Fuse::run`]. Entry replies (lookup, create, mkdir, mknod, symlink, link) take a
//! kernel lookup reference before they are sent; `forget` drops them.

use super::convert::{access_allowed, caller, file_attr, negative_attr, request_time, time_set};
use super::negotiate::open_flags;
use super::{ATTR_TTL, ENTRY_TTL, Hammer2Fuse, requests, xattr};
use fuser::{
    AccessFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, IoctlFlags, KernelConfig, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use hammer2::{Attr, Caller, Creds, Error, Fs, SetAttr, Whence};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::SystemTime;

fn creds(req: &Request, umask: u32) -> Creds {
    Creds { uid: req.uid(), gid: req.gid(), umask }
}

/// A new or found entry the kernel will hold on to: one more lookup reference.
fn referenced(fs: &Fs, a: hammer2::Result<Attr>) -> hammer2::Result<Attr> {
    let a = a?;
    fs.lookup_ref(a.ino);
    Ok(a)
}

impl Hammer2Fuse {
    fn reply_entry(&self, reply: ReplyEntry, r: Result<Attr, Errno>) {
        match r {
            Ok(a) => {
                reply.entry_with_ttls(&ATTR_TTL, &ENTRY_TTL, &file_attr(&a, self.blksize), Generation(a.generation()))
            }
            Err(e) => reply.error(e),
        }
    }

    fn reply_empty(reply: ReplyEmpty, r: Result<(), Errno>) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

impl Filesystem for Hammer2Fuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        requests::count("init");
        let offer = super::negotiate::configure(config, self.want_uring);
        // ACLs only where the kernel enforces them; never stored for show.
        if let Some(fs) = &self.fs {
            fs.set_posix_acl(offer.offered.contains(fuser::InitFlags::FUSE_POSIX_ACL));
        }
        let _ = self.offer.set(offer);
        Ok(())
    }

    fn destroy(&mut self) {
        self.finish();
    }

    /// The kernel looks up "." (any inode) and ".." (a directory's parent) only to resolve a
    /// file handle of an inode it forgot (FUSE_EXPORT_SUPPORT, DESIGN §12).
    /// In `.snapshots` names come and go without the kernel (snapshots taken and deleted
    /// through the control socket): no negative entry there, and positive ones for ATTR_TTL.
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = self.run("lookup", parent.0, |fs| self.lookup_node(fs, parent.0, name.as_bytes()));
        let in_snapdir = parent.0 == super::snapdir::DIR_INO && self.snapdir.is_virtual(parent.0);
        match r {
            Err(e) if e == Errno::ENOENT && in_snapdir => reply.error(e),
            // A negative entry the kernel may cache: names only appear through the kernel.
            Err(e) if e == Errno::ENOENT => reply.entry(&ENTRY_TTL, &negative_attr(), Generation(0)),
            Ok(a) if in_snapdir => {
                reply.entry_with_ttls(&ATTR_TTL, &ATTR_TTL, &file_attr(&a, self.blksize), Generation(a.generation()))
            }
            r => self.reply_entry(reply, r),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _ = self.run("forget", ino.0, |fs| {
            if !self.snapdir.is_virtual(ino.0) {
                fs.forget(ino.0, nlookup);
            }
            Ok(())
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.run("getattr", ino.0, |fs| self.attr_of(fs, ino.0)) {
            Ok(a) => reply.attr(&ATTR_TTL, &file_attr(&a, self.blksize)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Under FUSE_HANDLE_KILLPRIV_V2 what a truncate or chown costs the set-id bits is
        // ours to decide (hammer2::vnops::killed_mode). A request that sets the mode itself
        // gets exactly that mode.
        let kill = mode.is_none() && (uid.is_some() || gid.is_some() || size.is_some());
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
            ctime: ctime.map(request_time),
            kill_suidgid: None,
        };
        let r = self.run("setattr", ino.0, |fs| {
            self.snapdir.check_inode(ino.0)?;
            let mut set = set;
            if kill && fs.getattr(ino.0)?.mode & 0o6000 != 0 {
                set.kill_suidgid = Some(caller(req.pid(), req.gid()));
            }
            fs.setattr(ino.0, &set)
        });
        match r {
            Ok(a) => reply.attr(&ATTR_TTL, &file_attr(&a, self.blksize)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.run("readlink", ino.0, |fs| self.readlink_node(fs, ino.0)) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let r = self.run("mknod", parent.0, |fs| {
            self.snapdir.check_change(parent.0, name.as_bytes(), true)?;
            referenced(fs, fs.mknod(parent.0, name.as_bytes(), mode, u64::from(rdev), creds(req, umask)))
        });
        self.reply_entry(reply, r);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let r = self.run("mkdir", parent.0, |fs| {
            self.snapdir.check_change(parent.0, name.as_bytes(), true)?;
            referenced(fs, fs.mkdir(parent.0, name.as_bytes(), mode, creds(req, umask)))
        });
        self.reply_entry(reply, r);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.run("unlink", parent.0, |fs| {
            self.snapdir.check_change(parent.0, name.as_bytes(), false)?;
            fs.unlink(parent.0, name.as_bytes())
        });
        Self::reply_empty(reply, r);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.run("rmdir", parent.0, |fs| {
            self.snapdir.check_change(parent.0, name.as_bytes(), false)?;
            fs.rmdir(parent.0, name.as_bytes())
        });
        Self::reply_empty(reply, r);
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let r = self.run("symlink", parent.0, |fs| {
            self.snapdir.check_change(parent.0, link_name.as_bytes(), true)?;
            let t = target.as_os_str().as_bytes();
            referenced(fs, fs.symlink(parent.0, link_name.as_bytes(), t, creds(req, 0)))
        });
        self.reply_entry(reply, r);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = self.run("rename", parent.0, |fs| {
            self.snapdir.check_change(parent.0, name.as_bytes(), false)?;
            self.snapdir.check_change(newparent.0, newname.as_bytes(), false)?;
            let known = RenameFlags::RENAME_NOREPLACE | RenameFlags::RENAME_EXCHANGE;
            if !known.contains(flags) {
                return Err(Error::invalid("unsupported rename flags"));
            }
            let f = hammer2::RenameFlags {
                noreplace: flags.contains(RenameFlags::RENAME_NOREPLACE),
                exchange: flags.contains(RenameFlags::RENAME_EXCHANGE),
            };
            fs.rename(parent.0, name.as_bytes(), newparent.0, newname.as_bytes(), f)
        });
        Self::reply_empty(reply, r);
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let r = self.run("link", ino.0, |fs| {
            self.snapdir.check_inode(ino.0)?;
            self.snapdir.check_change(newparent.0, newname.as_bytes(), true)?;
            referenced(fs, fs.link(ino.0, newparent.0, newname.as_bytes()))
        });
        self.reply_entry(reply, r);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.run("open", ino.0, |fs| self.open_node(fs, ino.0, flags.0)) {
            // A snapshot's content never changes: its cached pages stay good.
            Ok(super::snapdir::Node::Snap { .. }) => reply.opened(FileHandle(0), open_flags(flags.0)),
            Ok(_) => {
                let mut open = open_flags(flags.0);
                if flags.0 & libc::O_DIRECT == 0 && !self.direct.keep_cache(ino.0) {
                    // The kernel drops the pages direct writes left stale (direct.rs).
                    open.remove(FopenFlags::FOPEN_KEEP_CACHE);
                }
                reply.opened(FileHandle(0), open)
            }
            Err(e) => reply.error(e),
        }
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
        match self.run("read", ino.0, |fs| self.read_node(fs, ino.0, offset, size as usize)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // The kernel flags writes by callers without CAP_FSETID (FUSE_HANDLE_KILLPRIV_V2);
        // like Linux, the privileges go before the data changes.
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        // At most max_write (1 MiB) per request, so the count fits in u32.
        let r = self.run("write", ino.0, |fs| {
            self.snapdir.check_inode(ino.0)?;
            if kill && fs.kill_suidgid(ino.0, || Caller { fsetid: false, ..caller(req.pid(), req.gid()) })? {
                self.attrs_changed(ino.0);
            }
            fs.write(ino.0, offset, data)
        });
        // A direct write (not the write-back of a mapped page) leaves old data in the page
        // cache when it is asynchronous: see direct.rs.
        let direct = flags.0 & libc::O_DIRECT != 0 && !write_flags.contains(WriteFlags::FUSE_WRITE_CACHE);
        match r {
            Ok(n) => {
                if direct && n > 0 {
                    self.direct.written(ino.0, offset, n as u32);
                }
                reply.written(n as u32)
            }
            Err(e) => reply.error(e),
        }
    }

    /// Nothing to do on close: writes are already in the engine, and POSIX locks are kept
    /// by the kernel. ENOSYS tells the kernel so once, and it stops sending FLUSH on every
    /// close (one round trip less per file written).
    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _owner: LockOwner, reply: ReplyEmpty) {
        requests::count("flush");
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        Self::reply_empty(reply, self.run("release", ino.0, |fs| self.release_node(fs, ino.0)));
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // A commit spreads its work over threads: on every CPU, not only the queue's.
        // Nothing inside `.snapshots` has anything to make durable.
        let r = super::uring::on_all_cpus(|| {
            self.run("fsync", ino.0, |fs| if self.snapdir.is_virtual(ino.0) { Ok(()) } else { fs.fsync(ino.0) })
        });
        Self::reply_empty(reply, r);
    }

    /// A live directory needs nothing; one inside a snapshot is counted as open (SD3).
    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if !self.snapdir.is_virtual(ino.0) {
            requests::count("opendir");
            return reply.opened(FileHandle(0), FopenFlags::empty());
        }
        match self.run("opendir", ino.0, |fs| self.open_node(fs, ino.0, libc::O_RDONLY)) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        if !self.snapdir.is_virtual(ino.0) {
            requests::count("releasedir");
            return reply.ok();
        }
        Self::reply_empty(reply, self.run("releasedir", ino.0, |fs| self.release_node(fs, ino.0)));
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        match self.run("readdir", ino.0, |fs| self.fill_dir(fs, ino.0, offset, &mut reply)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        match self.run("readdirplus", ino.0, |fs| self.fill_dir_plus(fs, ino.0, offset, &mut reply)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let r = super::uring::on_all_cpus(|| {
            self.run("fsyncdir", ino.0, |fs| if self.snapdir.is_virtual(ino.0) { Ok(()) } else { fs.fsync(ino.0) })
        });
        Self::reply_empty(reply, r);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.run("statfs", 0, |fs| Ok(fs.statfs())) {
            Ok(s) => reply.statfs(
                s.blocks,
                s.blocks_free,
                s.blocks_avail,
                s.files,
                s.files_free,
                s.block_size,
                s.name_max,
                s.block_size,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        let r = self.run("setxattr", ino.0, |fs| {
            self.snapdir.check_inode(ino.0)?;
            if position != 0 {
                return Err(Error::invalid("xattr position"));
            }
            fs.setxattr_by(ino.0, name.as_bytes(), value, xattr::set_flags(flags), || caller(req.pid(), req.gid()))
        });
        Self::reply_empty(reply, r);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let r = self.run("getxattr", ino.0, |fs| self.getxattr_node(fs, ino.0, name.as_bytes()));
        xattr::reply(reply, size, r);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let r = self.run("listxattr", ino.0, |fs| self.listxattr_node(fs, ino.0).map(xattr::name_list));
        xattr::reply(reply, size, r);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.run("removexattr", ino.0, |fs| {
            self.snapdir.check_inode(ino.0)?;
            fs.removexattr(ino.0, name.as_bytes())
        });
        Self::reply_empty(reply, r);
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let r = self.run("access", ino.0, |fs| {
            let a = self.attr_of(fs, ino.0)?;
            match access_allowed(&a, req.uid(), req.gid(), mask.bits()) {
                true => Ok(()),
                false => Err(Error::Io(std::io::Error::from_raw_os_error(libc::EACCES))),
            }
        });
        Self::reply_empty(reply, r);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let r = self.run("create", parent.0, |fs| {
            self.snapdir.check_change(parent.0, name.as_bytes(), true)?;
            let a = fs.create(parent.0, name.as_bytes(), mode, creds(req, umask))?;
            fs.open(a.ino)?;
            referenced(fs, Ok(a))
        });
        match r {
            Ok(a) => {
                let generation = Generation(a.generation());
                reply.created(&ATTR_TTL, &file_attr(&a, self.blksize), generation, FileHandle(0), open_flags(flags))
            }
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // The kernel leaves the set-id bits to us here too (FUSE_HANDLE_KILLPRIV_V2), and
        // says nothing of the caller's CAP_FSETID: `caller` reads it. Only once the
        // allocation is done, so a refused request changes nothing.
        let r = self.run("fallocate", ino.0, |fs| {
            self.snapdir.check_inode(ino.0)?;
            fs.fallocate(ino.0, offset, length, mode)?;
            if fs.kill_suidgid(ino.0, || caller(req.pid(), req.gid()))? {
                self.attrs_changed(ino.0);
            }
            Ok(())
        });
        Self::reply_empty(reply, r);
    }

    fn lseek(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        let r = self.run("lseek", ino.0, |fs| {
            let whence = match whence {
                libc::SEEK_DATA => Whence::Data,
                libc::SEEK_HOLE => Whence::Hole,
                _ => return Err(Error::invalid("lseek whence")),
            };
            let off = u64::try_from(offset).map_err(|_| Error::NoSeekTarget)?;
            self.seek_node(fs, ino.0, off, whence)
        });
        match r {
            // File offsets stay below MAX_FILE_SIZE (2^62), so they fit in i64.
            Ok(o) => reply.offset(o as i64),
            Err(e) => reply.error(e),
        }
    }

    /// No ioctls: "not a terminal" for every one (isatty() asks on each open in some
    /// programs; fuser's default would log each of them as unimplemented).
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        requests::count("ioctl");
        reply.error(Errno::from_i32(libc::ENOTTY));
    }
}
