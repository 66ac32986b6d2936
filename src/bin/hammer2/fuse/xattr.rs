//! The shapes of the xattr calls: the size protocol of getxattr/listxattr (size 0 asks for
//! the length; a buffer too small is ERANGE), NUL-separated name lists, setxattr flags.

use super::Errno;
use super::proto::{Reply, abi};
use hammer2::XattrFlags;

/// The answer to GETXATTR or LISTXATTR of `size` bytes: the length alone when asked for
/// (size 0), else the value if it fits.
pub fn reply(out: &mut Reply, size: u32, v: Vec<u8>) -> Result<(), Errno> {
    let too_big = Errno(libc::ERANGE);
    let len = u32::try_from(v.len()).map_err(|_| too_big)?;
    if size == 0 {
        out.push(&abi::GetxattrOut { size: len, padding: 0 })?;
    } else if len <= size {
        out.bytes(&v)?;
    } else {
        return Err(too_big);
    }
    Ok(())
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

pub fn set_flags(flags: u32) -> XattrFlags {
    let flags = flags as i32;
    XattrFlags { create: flags & libc::XATTR_CREATE != 0, replace: flags & libc::XATTR_REPLACE != 0 }
}
