//! Engine attributes, times and types in the shapes fuser wants, and back.

use fuser::{FileAttr, FileType, INodeNo, TimeOrNow};
use hammer2::{Attr, Caller, TimeSet};
use hammer2_format::Timespec;
use hammer2_format::dtype;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn file_attr(a: &Attr, blksize: u32) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: system_time(a.atime),
        mtime: system_time(a.mtime),
        ctime: system_time(a.ctime),
        crtime: system_time(a.btime),
        kind: kind_of_mode(a.mode),
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        // The kernel's u32 device encoding, exactly as mknod gave it to us.
        rdev: a.rdev as u32,
        blksize,
        flags: 0,
    }
}

/// What a negative entry reply carries: only `ino == 0` matters to the kernel.
pub fn negative_attr() -> FileAttr {
    file_attr(
        &Attr {
            ino: 0,
            mode: libc::S_IFREG,
            nlink: 0,
            uid: 0,
            gid: 0,
            size: 0,
            blocks: 0,
            rdev: 0,
            atime: Timespec::ZERO,
            mtime: Timespec::ZERO,
            ctime: Timespec::ZERO,
            btime: Timespec::ZERO,
        },
        4096,
    )
}

pub fn kind_of_mode(mode: u32) -> FileType {
    kind_of_dtype(dtype::from_mode(mode).unwrap_or(dtype::REG))
}

pub fn kind_of_dtype(t: u8) -> FileType {
    match t {
        dtype::FIFO => FileType::NamedPipe,
        dtype::CHR => FileType::CharDevice,
        dtype::DIR => FileType::Directory,
        dtype::BLK => FileType::BlockDevice,
        dtype::LNK => FileType::Symlink,
        dtype::SOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

pub fn system_time(t: Timespec) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(t.nsec));
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::from_secs(t.sec as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs()) + nanos
    }
}

pub fn timespec(t: SystemTime) -> Timespec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timespec { sec: d.as_secs() as i64, nsec: d.subsec_nanos() },
        Err(e) => {
            let d = e.duration();
            match d.subsec_nanos() {
                0 => Timespec { sec: -(d.as_secs() as i64), nsec: 0 },
                n => Timespec { sec: -(d.as_secs() as i64) - 1, nsec: 1_000_000_000 - n },
            }
        }
    }
}

pub fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(request_time(t)),
    }
}

/// A time the kernel sent in a request. fuser 0.18 builds it as `EPOCH - (|sec| s + nsec ns)`
/// when `sec` is negative (its `system_time_from_time`), although the kernel's timespec means
/// `sec + nsec ns`: so before 1970 the distance from the epoch is read back as |sec| and nsec
/// directly. (The other direction, attributes we send, fuser converts correctly.) The pre-1970
/// case of the setattr test catches it if fuser ever changes this.
pub fn request_time(t: SystemTime) -> Timespec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(_) => timespec(t),
        Err(e) => Timespec { sec: -(e.duration().as_secs() as i64), nsec: e.duration().subsec_nanos() },
    }
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
    fn times_round_trip_with_nanoseconds_before_and_after_the_epoch() {
        for (sec, nsec) in [(0, 0), (1_700_000_000, 123_456_789), (-1, 500), (-86_400, 0)] {
            let t = Timespec { sec, nsec };
            assert_eq!(timespec(system_time(t)), t);
        }
    }

    #[test]
    fn request_times_before_1970_undo_fusers_reading() {
        // fuser 0.18 turns the kernel's (-1, 999_999_999) into EPOCH - 1.999999999 s.
        let from_fuser = UNIX_EPOCH - Duration::new(1, 999_999_999);
        assert_eq!(request_time(from_fuser), Timespec { sec: -1, nsec: 999_999_999 });
        let after = UNIX_EPOCH + Duration::new(5, 7);
        assert_eq!(request_time(after), Timespec { sec: 5, nsec: 7 });
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
