//! The shapes of the xattr calls: the size protocol of getxattr/listxattr (size 0 asks for
//! the length; a buffer too small is ERANGE), NUL-separated name lists, setxattr flags.

use fuser::{Errno, ReplyXattr};
use hammer2::XattrFlags;

pub fn reply(reply: ReplyXattr, size: u32, r: Result<Vec<u8>, Errno>) {
    match r {
        Err(e) => reply.error(e),
        Ok(v) => match u32::try_from(v.len()) {
            Ok(len) if size == 0 => reply.size(len),
            Ok(len) if len <= size => reply.data(&v),
            _ => reply.error(Errno::from_i32(libc::ERANGE)),
        },
    }
}

/// listxattr's answer: every name followed by a NUL.
pub fn name_list(names: Vec<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum());
    for n in names {
        out.extend_from_slice(&n);
        out.push(0);
    }
    out
}

pub fn set_flags(flags: i32) -> XattrFlags {
    XattrFlags { create: flags & libc::XATTR_CREATE != 0, replace: flags & libc::XATTR_REPLACE != 0 }
}
