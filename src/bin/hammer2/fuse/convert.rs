//! Engine attributes and times in the kernel's shapes (`proto::abi`), and back.

use super::proto::abi;
use hammer2::{Attr, Caller, TimeSet};
use hammer2_format::Timespec;
use hammer2_format::dtype;
use std::time::Duration;

pub fn file_attr(a: &Attr, blksize: u32) -> abi::Attr {
    let (atime, mtime, ctime) = (wire_time(a.atime), wire_time(a.mtime), wire_time(a.ctime));
    abi::Attr {
        ino: a.ino,
        size: a.size,
        blocks: a.blocks,
        atime: atime.0,
        mtime: mtime.0,
        ctime: ctime.0,
        atimensec: atime.1,
        mtimensec: mtime.1,
        ctimensec: ctime.1,
        // The type as the engine's dtype says (a regular file if it says nothing known),
        // and the permission bits.
        mode: mode_of_dtype(dtype::from_mode(a.mode).unwrap_or(dtype::REG)) | (a.mode & 0o7777),
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        // The kernel's u32 device encoding, exactly as mknod gave it to us.
        rdev: a.rdev as u32,
        blksize,
        flags: 0,
    }
}

/// An entry reply: the node, its generation, and how long the kernel may keep both.
pub fn entry_out(attr: abi::Attr, generation: u64, entry_ttl: Duration, attr_ttl: Duration) -> abi::EntryOut {
    abi::EntryOut {
        nodeid: attr.ino,
        generation,
        entry_valid: entry_ttl.as_secs(),
        attr_valid: attr_ttl.as_secs(),
        entry_valid_nsec: entry_ttl.subsec_nanos(),
        attr_valid_nsec: attr_ttl.subsec_nanos(),
        attr,
    }
}

/// What a negative entry reply carries: node id 0, which the kernel caches as "no such
/// name" for the entry TTL.
pub fn negative_entry(entry_ttl: Duration) -> abi::EntryOut {
    entry_out(abi::Attr::default(), 0, entry_ttl, Duration::ZERO)
}

/// The kernel's timespec: seconds as a two's-complement u64 (before 1970 is negative).
fn wire_time(t: Timespec) -> (u64, u32) {
    (t.sec as u64, t.nsec)
}

/// A time the kernel sent in a request: `sec + nsec` ns, sec signed.
pub fn request_time(sec: u64, nsec: u32) -> Timespec {
    Timespec { sec: sec as i64, nsec }
}

/// SETATTR's atime or mtime: "now" or the time given.
pub fn time_set(now: bool, sec: u64, nsec: u32) -> TimeSet {
    if now { TimeSet::Now } else { TimeSet::At(request_time(sec, nsec)) }
}

/// S_IF* of an engine dtype.
pub fn mode_of_dtype(t: u8) -> u32 {
    match t {
        dtype::FIFO => libc::S_IFIFO,
        dtype::CHR => libc::S_IFCHR,
        dtype::DIR => libc::S_IFDIR,
        dtype::BLK => libc::S_IFBLK,
        dtype::LNK => libc::S_IFLNK,
        dtype::SOCK => libc::S_IFSOCK,
        _ => libc::S_IFREG,
    }
}

/// DT_* of an engine dtype, for directory entries.
pub fn dirent_type(t: u8) -> u32 {
    mode_of_dtype(t) >> 12
}

/// Who sent a request, as the engine's set-id rules need it (`hammer2::Caller`): CAP_FSETID
/// and the groups, which FUSE does not pass (only uid and fsgid), from /proc/PID/status.
/// Asked only of a file with set-id bits. A caller already gone counts as unprivileged and
/// in its fsgid alone: dropping the bit is the safe side.
pub fn caller(pid: u32, fsgid: u32) -> Caller {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    caller_from_status(&status, fsgid)
}

fn caller_from_status(status: &str, fsgid: u32) -> Caller {
    const CAP_FSETID: u32 = 4;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let fsetid = field("CapEff:")
        .and_then(|c| u64::from_str_radix(c, 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_FSETID) != 0);
    let mut groups = vec![fsgid];
    groups.extend(field("Groups:").unwrap_or("").split_whitespace().filter_map(|g| g.parse::<u32>().ok()));
    Caller { fsetid, groups }
}

/// access(2) against the mode bits (the kernel asks only without default_permissions).
/// Supplementary groups are not known here: only the primary group counts.
pub fn access_allowed(a: &Attr, uid: u32, gid: u32, mask: i32) -> bool {
    let want = (mask & (libc::R_OK | libc::W_OK | libc::X_OK)) as u32;
    if uid == 0 {
        return want & libc::X_OK as u32 == 0 || a.mode & 0o111 != 0 || a.is_dir();
    }
    let bits = if uid == a.uid {
        (a.mode >> 6) & 7
    } else if gid == a.gid {
        (a.mode >> 3) & 7
    } else {
        a.mode & 7
    };
    want & !bits == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_comes_from_its_status_file() {
        let status = "Name:\tcp\nGid:\t100\t100\t100\t100\nGroups:\t4 24 \nCapEff:\t0000000000000010\n";
        assert_eq!(caller_from_status(status, 100), Caller { fsetid: true, groups: vec![100, 4, 24] });
        let status = "Groups:\t\nCapEff:\t0000000000000000\n";
        assert_eq!(caller_from_status(status, 7), Caller { fsetid: false, groups: vec![7] });
        assert_eq!(caller_from_status("", 7), Caller { fsetid: false, groups: vec![7] });
    }

    #[test]
    fn times_before_1970_go_to_the_kernel_and_back_as_it_reads_them() {
        for (sec, nsec) in [(0, 0), (1_700_000_000, 123_456_789), (-1, 500), (-86_400, 0)] {
            let t = Timespec { sec, nsec };
            let (s, n) = wire_time(t);
            assert_eq!(request_time(s, n), t);
        }
        // The kernel's (-1, 999_999_999) is 1 ns before the epoch.
        assert_eq!(request_time(u64::MAX, 999_999_999), Timespec { sec: -1, nsec: 999_999_999 });
    }

    #[test]
    fn attributes_carry_the_type_bits_the_kernel_wants() {
        let mut a = negative_attr_like(0o4755, 1, 2);
        a.mode = libc::S_IFDIR | 0o4755;
        assert_eq!(file_attr(&a, 4096).mode, libc::S_IFDIR | 0o4755);
        assert_eq!(dirent_type(dtype::LNK), libc::DT_LNK as u32);
        assert_eq!(dirent_type(dtype::REG), libc::DT_REG as u32);
    }

    #[test]
    fn mode_bits_decide_access_for_owner_group_and_others() {
        let mut a = negative_attr_like(0o640, 10, 20);
        assert!(access_allowed(&a, 10, 99, libc::R_OK | libc::W_OK));
        assert!(access_allowed(&a, 11, 20, libc::R_OK));
        assert!(!access_allowed(&a, 11, 20, libc::W_OK));
        assert!(!access_allowed(&a, 11, 21, libc::R_OK));
        assert!(access_allowed(&a, 11, 21, libc::F_OK));
        assert!(access_allowed(&a, 0, 0, libc::R_OK | libc::W_OK));
        assert!(!access_allowed(&a, 0, 0, libc::X_OK));
        a.mode |= 0o001;
        assert!(access_allowed(&a, 0, 0, libc::X_OK));
    }

    fn negative_attr_like(perm: u32, uid: u32, gid: u32) -> Attr {
        Attr {
            ino: 2,
            mode: libc::S_IFREG | perm,
            nlink: 1,
            uid,
            gid,
            size: 0,
            blocks: 0,
            rdev: 0,
            atime: Timespec::ZERO,
            mtime: Timespec::ZERO,
            ctime: Timespec::ZERO,
            btime: Timespec::ZERO,
        }
    }
}
