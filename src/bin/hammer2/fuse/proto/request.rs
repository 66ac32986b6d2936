//! Requests decoded from the bytes the kernel sent, wherever they arrived.
//!
//! Through /dev/fuse a request is one buffer: the in-header, the operation's own header,
//! then its names and data. Through the ring the kernel puts the in-header, the
//! operation's header and the rest in three places; both are read through [`Body`], a
//! cursor over (at most) two pieces, so that the same decoder serves both and a WRITE's data
//! is borrowed where it lies, never copied. Anything short, or a name without its NUL, is
//! `Malformed` (answered EIO); an opcode we do not serve is `Op::Unknown` (answered ENOSYS).

use super::abi::{self, opcode};
use zerocopy::FromBytes;

/// A request the kernel sent that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// The bytes after the in-header, in one or two pieces read in order.
pub struct Body<'a> {
    parts: [&'a [u8]; 2],
}

impl<'a> Body<'a> {
    pub fn new(first: &'a [u8], second: &'a [u8]) -> Body<'a> {
        Body { parts: [first, second] }
    }

    fn skip_empty(&mut self) {
        if self.parts[0].is_empty() {
            self.parts = [self.parts[1], &[]];
        }
    }

    /// A fixed header, copied out (it may straddle the pieces only if the kernel split it,
    /// which it never does; that is refused as malformed rather than stitched together).
    fn take<T: FromBytes>(&mut self) -> Result<T, Malformed> {
        self.skip_empty();
        let (v, rest) = T::read_from_prefix(self.parts[0]).map_err(|_| Malformed)?;
        self.parts[0] = rest;
        Ok(v)
    }

    /// A fixed header of which the kernel may send less than the whole (INIT before 7.36):
    /// the missing end reads as zero.
    fn take_short<T: FromBytes + zerocopy::IntoBytes>(&mut self, min: usize) -> Result<T, Malformed> {
        self.skip_empty();
        let mut v = T::new_zeroed();
        let have = self.parts[0].len().min(std::mem::size_of::<T>());
        if have < min {
            return Err(Malformed);
        }
        v.as_mut_bytes()[..have].copy_from_slice(&self.parts[0][..have]);
        self.parts[0] = &self.parts[0][have..];
        Ok(v)
    }

    /// A NUL-terminated name, without its NUL.
    fn name(&mut self) -> Result<&'a [u8], Malformed> {
        self.skip_empty();
        let p = self.parts[0];
        let end = p.iter().position(|&b| b == 0).ok_or(Malformed)?;
        self.parts[0] = &p[end + 1..];
        Ok(&p[..end])
    }

    /// Exactly `n` bytes (a WRITE's data, an xattr's value), borrowed.
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        self.skip_empty();
        let p = self.parts[0];
        if p.len() < n {
            return Err(Malformed);
        }
        self.parts[0] = &p[n..];
        Ok(&p[..n])
    }
}

/// One decoded request: who asked, about which node, and what.
#[derive(Debug)]
pub struct Request<'a> {
    pub header: abi::InHeader,
    pub op: Op<'a>,
}

impl Request<'_> {
    pub fn unique(&self) -> u64 {
        self.header.unique
    }
    pub fn nodeid(&self) -> u64 {
        self.header.nodeid
    }
    pub fn uid(&self) -> u32 {
        self.header.uid
    }
    pub fn gid(&self) -> u32 {
        self.header.gid
    }
    pub fn pid(&self) -> u32 {
        self.header.pid
    }
}

/// What a request asks; names are the bytes the kernel sent, data is borrowed.
#[derive(Debug)]
pub enum Op<'a> {
    Init(abi::InitIn),
    Destroy,
    Lookup {
        name: &'a [u8],
    },
    Forget {
        nlookup: u64,
    },
    /// `(node id, count)` pairs, 16 bytes each.
    BatchForget {
        forgets: &'a [u8],
    },
    Getattr,
    Setattr(abi::SetattrIn),
    Readlink,
    Symlink {
        name: &'a [u8],
        target: &'a [u8],
    },
    Mknod {
        arg: abi::MknodIn,
        name: &'a [u8],
    },
    Mkdir {
        arg: abi::MkdirIn,
        name: &'a [u8],
    },
    Unlink {
        name: &'a [u8],
    },
    Rmdir {
        name: &'a [u8],
    },
    /// RENAME (flags 0) and RENAME2.
    Rename {
        newdir: u64,
        flags: u32,
        name: &'a [u8],
        newname: &'a [u8],
    },
    Link {
        oldnodeid: u64,
        newname: &'a [u8],
    },
    Open {
        flags: u32,
    },
    Read(abi::ReadIn),
    Write {
        arg: abi::WriteIn,
        data: &'a [u8],
    },
    Statfs,
    Release,
    Flush,
    Fsync,
    Setxattr {
        name: &'a [u8],
        value: &'a [u8],
        flags: u32,
    },
    Getxattr {
        name: &'a [u8],
        size: u32,
    },
    Listxattr {
        size: u32,
    },
    Removexattr {
        name: &'a [u8],
    },
    Opendir,
    Readdir(abi::ReadIn),
    Readdirplus(abi::ReadIn),
    Releasedir,
    Fsyncdir,
    Access {
        mask: u32,
    },
    Create {
        arg: abi::CreateIn,
        name: &'a [u8],
    },
    Interrupt,
    Ioctl,
    Fallocate(abi::FallocateIn),
    Lseek(abi::LseekIn),
    Unknown(u32),
}

impl Op<'_> {
    /// Whether the kernel waits for an answer (FORGET, BATCH_FORGET and INTERRUPT get none).
    pub fn answered(&self) -> bool {
        !matches!(self, Op::Forget { .. } | Op::BatchForget { .. } | Op::Interrupt)
    }
}

/// Decodes a request from its in-header (the first 40 bytes) and its body.
pub fn decode<'a>(head: &[u8], mut b: Body<'a>) -> Result<Request<'a>, Malformed> {
    let header = abi::InHeader::read_from_prefix(head).map_err(|_| Malformed)?.0;
    let op = match header.opcode {
        opcode::INIT => Op::Init(b.take_short(16)?),
        opcode::DESTROY => Op::Destroy,
        opcode::LOOKUP => Op::Lookup { name: b.name()? },
        opcode::FORGET => Op::Forget { nlookup: b.take::<abi::ForgetIn>()?.nlookup },
        opcode::BATCH_FORGET => {
            let n = b.take::<abi::BatchForgetIn>()?.count as usize;
            Op::BatchForget { forgets: b.bytes(n.checked_mul(16).ok_or(Malformed)?)? }
        }
        opcode::GETATTR => {
            b.take::<abi::GetattrIn>()?;
            Op::Getattr
        }
        opcode::SETATTR => Op::Setattr(b.take()?),
        opcode::READLINK => Op::Readlink,
        opcode::SYMLINK => {
            let name = b.name()?;
            Op::Symlink { name, target: b.name()? }
        }
        opcode::MKNOD => Op::Mknod { arg: b.take()?, name: b.name()? },
        opcode::MKDIR => Op::Mkdir { arg: b.take()?, name: b.name()? },
        opcode::UNLINK => Op::Unlink { name: b.name()? },
        opcode::RMDIR => Op::Rmdir { name: b.name()? },
        opcode::RENAME => {
            let a: abi::RenameIn = b.take()?;
            let name = b.name()?;
            Op::Rename { newdir: a.newdir, flags: 0, name, newname: b.name()? }
        }
        opcode::RENAME2 => {
            let a: abi::Rename2In = b.take()?;
            let name = b.name()?;
            Op::Rename { newdir: a.newdir, flags: a.flags, name, newname: b.name()? }
        }
        opcode::LINK => Op::Link { oldnodeid: b.take::<abi::LinkIn>()?.oldnodeid, newname: b.name()? },
        opcode::OPEN => Op::Open { flags: b.take::<abi::OpenIn>()?.flags },
        opcode::READ => Op::Read(b.take()?),
        opcode::WRITE => {
            let arg: abi::WriteIn = b.take()?;
            Op::Write { arg, data: b.bytes(arg.size as usize)? }
        }
        opcode::STATFS => Op::Statfs,
        opcode::RELEASE => b.take::<abi::ReleaseIn>().map(|_| Op::Release)?,
        opcode::FLUSH => b.take::<abi::FlushIn>().map(|_| Op::Flush)?,
        opcode::FSYNC => b.take::<abi::FsyncIn>().map(|_| Op::Fsync)?,
        opcode::SETXATTR => {
            let a: abi::SetxattrIn = b.take()?;
            let name = b.name()?;
            Op::Setxattr { name, value: b.bytes(a.size as usize)?, flags: a.flags }
        }
        opcode::GETXATTR => {
            let a: abi::GetxattrIn = b.take()?;
            Op::Getxattr { name: b.name()?, size: a.size }
        }
        opcode::LISTXATTR => Op::Listxattr { size: b.take::<abi::GetxattrIn>()?.size },
        opcode::REMOVEXATTR => Op::Removexattr { name: b.name()? },
        opcode::OPENDIR => b.take::<abi::OpenIn>().map(|_| Op::Opendir)?,
        opcode::READDIR => Op::Readdir(b.take()?),
        opcode::READDIRPLUS => Op::Readdirplus(b.take()?),
        opcode::RELEASEDIR => b.take::<abi::ReleaseIn>().map(|_| Op::Releasedir)?,
        opcode::FSYNCDIR => b.take::<abi::FsyncIn>().map(|_| Op::Fsyncdir)?,
        opcode::ACCESS => Op::Access { mask: b.take::<abi::AccessIn>()?.mask },
        opcode::CREATE => Op::Create { arg: b.take()?, name: b.name()? },
        opcode::INTERRUPT => b.take::<abi::InterruptIn>().map(|_| Op::Interrupt)?,
        opcode::IOCTL => b.take::<abi::IoctlIn>().map(|_| Op::Ioctl)?,
        opcode::FALLOCATE => Op::Fallocate(b.take()?),
        opcode::LSEEK => Op::Lseek(b.take()?),
        other => Op::Unknown(other),
    };
    Ok(Request { header, op })
}

/// The pairs of a BATCH_FORGET.
pub fn forgets(raw: &[u8]) -> impl Iterator<Item = abi::ForgetOne> + '_ {
    raw.chunks_exact(16).filter_map(|c| abi::ForgetOne::read_from_bytes(c).ok())
}
