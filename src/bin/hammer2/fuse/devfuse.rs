//! /dev/fuse: requests read from the connection into a buffer, decoded (`proto`), served by
//! the one dispatch (`ops.rs`), answered with one write. Each worker has a descriptor of its
//! own (FUSE_DEV_IOC_CLONE) and two buffers: the request's (a WRITE's data is served from
//! it in place) and the reply's (a READ's data is read into it in place).
//!
//! A worker ends when the connection does (ENODEV: unmounted or aborted); `serve` returns
//! once every worker has, and the owner then runs the final commit.

use super::dispatch::{Answer, Dispatch};
use super::negotiate::MAX_PAYLOAD;
use super::proto::{self, Body, Reply, out_header};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use zerocopy::IntoBytes;

const IN_HEADER: usize = 40;
const OUT_HEADER: usize = 16;
/// The largest request (a WRITE: its headers and MAX_WRITE bytes) and the largest reply.
const BUF_LEN: usize = MAX_PAYLOAD + 4096;

/// Reads and answers requests until the INIT handshake is done: the kernel sends nothing
/// else before it. Returns once the INIT reply is written, so that the caller can start the
/// ring's queues (which the reply may have negotiated) before any other request is read.
pub fn handshake(conn: &OwnedFd, fuse: &impl Dispatch) -> io::Result<()> {
    let mut req = vec![0u8; BUF_LEN];
    let mut out = vec![0u8; 4096];
    loop {
        let n = read_request(conn.as_raw_fd(), &mut req)?
            .ok_or_else(|| io::Error::other("the connection ended before the INIT handshake"))?;
        let init = matches!(decoded(&req[..n]), Ok(proto::Request { op: proto::Op::Init(_), .. }));
        answer(conn.as_raw_fd(), fuse, &req[..n], &mut out)?;
        if !init {
            return Err(io::Error::other("a request other than INIT before the handshake"));
        }
        if fuse.initialized() {
            return Ok(());
        }
        // (A newer kernel took our major version alone and sends INIT again.)
    }
}

/// Serves the connection with `threads` workers until it ends.
pub fn serve<D: Dispatch>(conn: &OwnedFd, fuse: &Arc<D>, threads: usize) -> io::Result<()> {
    let mut workers = Vec::new();
    for i in 0..threads.max(1) {
        let fd = clone_fd(conn).unwrap_or_else(|e| {
            tracing::debug!("FUSE_DEV_IOC_CLONE: {e}; the workers share one descriptor");
            conn.try_clone().expect("dup of the FUSE connection")
        });
        let fuse = fuse.clone();
        workers.push(std::thread::Builder::new().name(format!("hammer2-fuse{i}")).spawn(move || worker(&fd, &*fuse))?);
    }
    let mut result = Ok(());
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(_) => result = Err(io::Error::other("a /dev/fuse worker panicked")),
        }
    }
    result
}

fn worker(fd: &OwnedFd, fuse: &impl Dispatch) -> io::Result<()> {
    let mut req = vec![0u8; BUF_LEN];
    let mut out = vec![0u8; BUF_LEN];
    while let Some(n) = read_request(fd.as_raw_fd(), &mut req)? {
        answer(fd.as_raw_fd(), fuse, &req[..n], &mut out)?;
    }
    Ok(())
}

fn decoded(req: &[u8]) -> Result<proto::Request<'_>, proto::Malformed> {
    let body = req.get(IN_HEADER..).unwrap_or(&[]);
    proto::decode(req, Body::new(body, &[]))
}

/// Serves one request and writes its answer (if it has one).
fn answer(fd: RawFd, fuse: &impl Dispatch, req: &[u8], out: &mut [u8]) -> io::Result<()> {
    let (unique, error, len) = match decoded(req) {
        Ok(r) => {
            let mut reply = Reply::new(&mut out[OUT_HEADER..]);
            match fuse.dispatch(&r, &mut reply) {
                Answer::Done => (r.unique(), 0, reply.written()),
                Answer::Error(e) => (r.unique(), -e.0, 0),
                Answer::Nothing => return Ok(()),
            }
        }
        Err(proto::Malformed) => {
            let unique = req.get(8..16).map_or(0, |u| u64::from_ne_bytes(u.try_into().expect("8 bytes")));
            tracing::error!("a malformed request from the kernel ({} bytes); answered EIO", req.len());
            (unique, -libc::EIO, 0)
        }
    };
    let h = out_header(unique, error, len);
    out[..OUT_HEADER].copy_from_slice(h.as_bytes());
    let iov = [libc::iovec { iov_base: out.as_mut_ptr().cast(), iov_len: h.len as usize }];
    match writev(fd, &iov) {
        // The request was interrupted or its caller is gone: nobody waits for the answer.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        // Unmounted while we served: the next read ends the worker.
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
        r => r,
    }
}

/// Reads one request; None once the connection has ended.
fn read_request(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: buf is writable for its length across the call.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODEV) => return Ok(None),
            // Interrupted, or the request was taken back (interrupted) before we read it.
            Some(libc::EINTR | libc::EAGAIN | libc::ENOENT) => continue,
            _ => return Err(e),
        }
    }
}

/// Writes one message (a reply or a notification) in one call, as /dev/fuse requires.
pub fn writev(fd: RawFd, iov: &[libc::iovec]) -> io::Result<()> {
    loop {
        // SAFETY: every iovec names a buffer readable for its length across the call.
        let n = unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as libc::c_int) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// A descriptor of its own on the same connection: the kernel then hands a request and
/// takes its reply on one descriptor, with no contention on one file's locks.
fn clone_fd(conn: &OwnedFd) -> io::Result<OwnedFd> {
    const FUSE_DEV_IOC_CLONE: libc::c_ulong = 0x8004_e500; // _IOR(229, 0, uint32_t)
    // SAFETY: a NUL-terminated path; open returns a new descriptor or -1.
    let fd = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor nothing else owns.
    let new = unsafe { OwnedFd::from_raw_fd(fd) };
    let old: u32 = conn.as_raw_fd() as u32;
    // SAFETY: the ioctl reads one u32 from the pointer, which lives across the call.
    if unsafe { libc::ioctl(new.as_raw_fd(), FUSE_DEV_IOC_CLONE, &old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(new)
}
