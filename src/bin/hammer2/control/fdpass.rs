//! A descriptor sent with the request line (SCM_RIGHTS): `hammer2 send` gives the daemon
//! its standard output, so the stream goes straight to the pipe or file the user named
//! (the daemon holds the devices; the bytes need not cross the socket), and `hammer2
//! receive` gives it the checked spool to read.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Room for one descriptor's control message.
const CMSG_SPACE: usize = 64;

/// Sends `line` on `conn` with `fd` attached.
pub fn send_with_fd(conn: &UnixStream, line: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut cbuf = [0u8; CMSG_SPACE];
    let mut iov = libc::iovec { iov_base: line.as_ptr() as *mut libc::c_void, iov_len: line.len() };
    // SAFETY: zeroed msghdr is a valid empty header; every pointer set below refers to a
    // live local buffer of the length given.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    // SAFETY: CMSG_SPACE is a pure computation on the payload size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    // SAFETY: msg_control points to `cbuf`, large enough for one header with one fd
    // (checked by the assert), so CMSG_FIRSTHDR is non-null and CMSG_DATA is in bounds.
    unsafe {
        assert!(msg.msg_controllen <= CMSG_SPACE);
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut RawFd, fd.as_raw_fd());
    }
    // SAFETY: `msg` is fully initialized and its buffers outlive the call.
    let n = unsafe { libc::sendmsg(conn.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if (n as usize) < line.len() {
        // The rest of the line goes as plain bytes (the descriptor went with the first).
        use std::io::Write;
        (&*conn).write_all(&line[n as usize..])?;
    }
    Ok(())
}

/// Reads one line from `conn` and the descriptor sent with it, if any. Reads byte runs
/// only up to the newline, so nothing after the line is consumed.
pub fn recv_line(conn: &UnixStream) -> io::Result<(String, Option<OwnedFd>)> {
    let mut line = Vec::new();
    let mut fd = None;
    loop {
        let mut byte = [0u8; 1];
        let mut cbuf = [0u8; CMSG_SPACE];
        let mut iov = libc::iovec { iov_base: byte.as_mut_ptr() as *mut libc::c_void, iov_len: 1 };
        // SAFETY: as in `send_with_fd`: a zeroed header pointing at live local buffers.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = CMSG_SPACE;
        // SAFETY: `msg` is initialized; MSG_CMSG_CLOEXEC keeps a received fd from leaking
        // into children.
        let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: the kernel filled `msg_controllen` bytes of `cbuf`; the CMSG macros walk
        // only within them, and an SCM_RIGHTS message's data holds whole descriptors.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let raw = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const RawFd);
                    // Only the first is kept; any other is owned and closed here.
                    let owned = OwnedFd::from_raw_fd(raw);
                    if fd.is_none() {
                        fd = Some(owned);
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        if n == 0 || byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
        if line.len() > 1 << 20 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "request line too long"));
        }
    }
    Ok((String::from_utf8_lossy(&line).into_owned(), fd))
}
