//! Every operation of the VOP API through a real FUSE mount: std::fs and libc calls against
//! `hammer2 mount`, then unmount, remount, and compare what a program sees.

use hammer2_test_support as common;

use common::mount::*;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn err_of<T>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.raw_os_error().expect("an errno"),
    }
}

fn renameat2(from: &Path, to: &Path, flags: u32) -> i32 {
    let (a, b) = (c(from), c(to));
    // SAFETY: NUL-terminated paths.
    let r = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), flags) };
    if r == 0 { 0 } else { errno() }
}

fn set_times(p: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let ts =
        [libc::timespec { tv_sec: atime.0, tv_nsec: atime.1 }, libc::timespec { tv_sec: mtime.0, tv_nsec: mtime.1 }];
    // SAFETY: a NUL-terminated path and two timespecs.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c(p).as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(r, 0, "utimensat: {}", std::io::Error::last_os_error());
}

fn mtime(p: &Path) -> (i64, i64) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec())
}

fn ctime(p: &Path) -> (i64, i64) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.ctime(), m.ctime_nsec())
}

fn setxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> i32 {
    let n = CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings and a value buffer of the given length.
    let r = unsafe { libc::lsetxattr(c(p).as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), flags) };
    if r == 0 { 0 } else { errno() }
}

fn getxattr(p: &Path, name: &str, buf_len: usize) -> Result<Vec<u8>, i32> {
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; buf_len];
    // SAFETY: the buffer is as long as we say.
    let r = unsafe { libc::lgetxattr(c(p).as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(errno());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

fn removexattr(p: &Path, name: &str) -> i32 {
    let n = CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings.
    let r = unsafe { libc::lremovexattr(c(p).as_ptr(), n.as_ptr()) };
    if r == 0 { 0 } else { errno() }
}

fn lseek(f: &File, off: i64, whence: i32) -> Result<i64, i32> {
    // SAFETY: lseek on an open descriptor.
    let r = unsafe { libc::lseek(f.as_raw_fd(), off, whence) };
    if r < 0 { Err(errno()) } else { Ok(r) }
}

fn mknod(p: &Path, mode: u32, dev: u64) -> i32 {
    // SAFETY: a NUL-terminated path.
    let r = unsafe { libc::mknod(c(p).as_ptr(), mode, dev) };
    if r == 0 { 0 } else { errno() }
}

fn statvfs(p: &Path) -> libc::statvfs {
    // SAFETY: statvfs fills the zeroed struct we pass.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c(p).as_ptr(), &mut s), 0);
        s
    }
}

#[test]
fn file_data_reads_back_exactly_and_survives_remount() {
    let img = Image::new();
    let m = img.mount();
    let big = pattern(5 << 20, 7);
    {
        let mut f = File::create(m.join("big")).unwrap();
        for chunk in big.chunks(1 << 20) {
            f.write_all(chunk).unwrap();
        }
    }
    // One 8 MiB write(2): the kernel splits it into max_write requests.
    let huge = pattern(8 << 20, 9);
    fs::write(m.join("huge"), &huge).unwrap();
    // Overwrite in the middle, across a block boundary.
    let f = OpenOptions::new().write(true).open(m.join("big")).unwrap();
    f.write_all_at(b"OVERWRITTEN", 65536 - 5).unwrap();
    drop(f);
    let mut want = big.clone();
    want[65536 - 5..65536 + 6].copy_from_slice(b"OVERWRITTEN");
    assert_eq!(fs::read(m.join("big")).unwrap(), want);
    // Reads at odd offsets and lengths.
    let f = File::open(m.join("big")).unwrap();
    let mut buf = vec![0u8; 100_003];
    f.read_exact_at(&mut buf, 1_234_567).unwrap();
    assert_eq!(buf, want[1_234_567..1_234_567 + 100_003]);
    // A read past the end is short.
    let mut tail = vec![0u8; 4096];
    assert_eq!(f.read_at(&mut tail, want.len() as u64 - 10).unwrap(), 10);
    drop(f);
    fs::write(m.join("small"), b"tiny").unwrap();
    fs::write(m.join("empty"), b"").unwrap();
    m.unmount();

    let m = img.mount();
    assert_eq!(fs::read(m.join("big")).unwrap(), want);
    assert_eq!(fs::read(m.join("huge")).unwrap(), huge);
    assert_eq!(fs::read(m.join("small")).unwrap(), b"tiny");
    assert_eq!(fs::metadata(m.join("empty")).unwrap().len(), 0);
    m.unmount();
}

#[test]
fn shared_mmap_writes_reach_the_file_and_survive_remount() {
    let img = Image::new();
    let m = img.mount();
    let f = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(m.join("mapped")).unwrap();
    f.set_len(200_000).unwrap();
    // SAFETY: a fresh shared mapping of an open file, unmapped below before the file closes.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            200_000,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        let s = std::slice::from_raw_parts_mut(p.cast::<u8>(), 200_000);
        s[100..110].copy_from_slice(b"0123456789");
        s[150_000..150_005].copy_from_slice(b"hello");
        assert_eq!(libc::msync(p, 200_000, libc::MS_SYNC), 0);
        libc::munmap(p, 200_000);
    }
    drop(f);
    let check = |p: &Path| {
        let d = fs::read(p).unwrap();
        assert_eq!((d.len(), &d[100..110], &d[150_000..150_005]), (200_000, &b"0123456789"[..], &b"hello"[..]));
    };
    check(&m.join("mapped"));
    m.unmount();
    let m = img.mount();
    check(&m.join("mapped"));
    m.unmount();
}

#[test]
fn append_mode_writes_always_land_at_the_end() {
    let img = Image::new();
    let m = img.mount();
    let p = m.join("log");
    let mut a = OpenOptions::new().create(true).append(true).open(&p).unwrap();
    let mut b = OpenOptions::new().append(true).open(&p).unwrap();
    let mut want = Vec::new();
    for i in 0..200 {
        let line = format!("line {i} from {}\n", if i % 2 == 0 { "a" } else { "b" });
        if i % 2 == 0 { a.write_all(line.as_bytes()) } else { b.write_all(line.as_bytes()) }.unwrap();
        want.extend_from_slice(line.as_bytes());
    }
    drop((a, b));
    assert_eq!(fs::read(&p).unwrap(), want);
    m.unmount();
    let m = img.mount();
    assert_eq!(fs::read(m.join("log")).unwrap(), want);
    m.unmount();
}

#[test]
fn truncate_shrinks_and_grows_with_zeroes() {
    let img = Image::new();
    let m = img.mount();
    let p = m.join("t");
    fs::write(&p, pattern(300_000, 3)).unwrap();
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(70_000).unwrap();
    f.set_len(200_000).unwrap();
    drop(f);
    let mut want = pattern(300_000, 3);
    want.truncate(70_000);
    want.resize(200_000, 0);
    assert_eq!(fs::read(&p).unwrap(), want);
    // O_TRUNC on open.
    fs::write(m.join("u"), b"0123456789").unwrap();
    fs::write(m.join("u"), b"ab").unwrap();
    assert_eq!(fs::read(m.join("u")).unwrap(), b"ab");
    m.unmount();
    let m = img.mount();
    assert_eq!(fs::read(m.join("t")).unwrap(), want);
    assert_eq!(fs::read(m.join("u")).unwrap(), b"ab");
    m.unmount();
}

#[test]
fn directories_list_every_entry_count_links_and_refuse_rmdir_when_not_empty() {
    let img = Image::new();
    let m = img.mount();
    let d = m.join("d");
    fs::create_dir(&d).unwrap();
    for i in 0..500 {
        fs::write(d.join(format!("file-{i:04}")), format!("{i}")).unwrap();
    }
    for i in 0..3 {
        fs::create_dir(d.join(format!("sub{i}"))).unwrap();
    }
    let mut names: Vec<String> =
        fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let mut want: Vec<String> = (0..500).map(|i| format!("file-{i:04}")).collect();
    want.extend((0..3).map(|i| format!("sub{i}")));
    want.sort();
    assert_eq!(names, want);
    // readdir's file types and inode numbers agree with stat.
    for e in fs::read_dir(&d).unwrap() {
        let e = e.unwrap();
        let m = fs::symlink_metadata(e.path()).unwrap();
        assert_eq!(e.ino(), m.ino(), "{:?}", e.file_name());
        assert_eq!(e.file_type().unwrap().is_dir(), m.is_dir());
    }
    use std::os::unix::fs::DirEntryExt;
    assert_eq!(fs::metadata(&d).unwrap().nlink(), 2 + 3);
    assert_eq!(err_of(fs::remove_dir(&d)), libc::ENOTEMPTY);
    assert_eq!(err_of(fs::remove_dir(d.join("file-0001"))), libc::ENOTDIR);
    assert_eq!(err_of(fs::remove_file(d.join("sub0"))), libc::EISDIR);
    assert_eq!(err_of(fs::create_dir(d.join("sub0"))), libc::EEXIST);
    for i in (0..500).step_by(2) {
        fs::remove_file(d.join(format!("file-{i:04}"))).unwrap();
    }
    fs::remove_dir(d.join("sub2")).unwrap();
    assert_eq!(fs::metadata(&d).unwrap().nlink(), 2 + 2);
    m.unmount();

    let m = img.mount();
    let d = m.join("d");
    assert_eq!(fs::read_dir(&d).unwrap().count(), 250 + 2);
    assert_eq!(fs::read_to_string(d.join("file-0499")).unwrap(), "499");
    assert!(!d.join("file-0498").exists());
    assert_eq!(fs::metadata(&d).unwrap().nlink(), 4);
    fs::remove_dir_all(&d).unwrap();
    assert!(!d.exists());
    m.unmount();
}

#[test]
fn rename_replaces_moves_and_honours_noreplace_and_exchange() {
    let img = Image::new();
    let m = img.mount();
    fs::create_dir_all(m.join("a/deep")).unwrap();
    fs::create_dir(m.join("b")).unwrap();
    fs::write(m.join("a/x"), b"x").unwrap();
    fs::write(m.join("a/y"), b"y").unwrap();
    fs::write(m.join("b/z"), b"z").unwrap();
    // Within a directory, then across, then over an existing file.
    fs::rename(m.join("a/x"), m.join("a/x2")).unwrap();
    fs::rename(m.join("a/x2"), m.join("b/x3")).unwrap();
    fs::rename(m.join("a/y"), m.join("b/z")).unwrap();
    assert_eq!(fs::read(m.join("b/z")).unwrap(), b"y");
    assert_eq!(fs::read(m.join("b/x3")).unwrap(), b"x");
    assert!(!m.join("a/y").exists() && !m.join("a/x").exists());
    // A directory moves with its contents; '..' and link counts follow.
    fs::rename(m.join("a/deep"), m.join("b/deep")).unwrap();
    assert_eq!(fs::metadata(m.join("a")).unwrap().nlink(), 2);
    assert_eq!(fs::metadata(m.join("b")).unwrap().nlink(), 3);
    assert_eq!(fs::metadata(m.join("b/deep/..")).unwrap().ino(), fs::metadata(m.join("b")).unwrap().ino());
    assert_eq!(err_of(fs::rename(m.join("b"), m.join("b/deep/b"))), libc::EINVAL);
    // RENAME_NOREPLACE refuses an existing target and works otherwise.
    assert_eq!(renameat2(&m.join("b/x3"), &m.join("b/z"), libc::RENAME_NOREPLACE), libc::EEXIST);
    assert_eq!(renameat2(&m.join("b/x3"), &m.join("b/x4"), libc::RENAME_NOREPLACE), 0);
    // RENAME_EXCHANGE swaps two names, even a file and a directory.
    assert_eq!(renameat2(&m.join("b/x4"), &m.join("b/z"), libc::RENAME_EXCHANGE), 0);
    assert_eq!(fs::read(m.join("b/x4")).unwrap(), b"y");
    assert_eq!(fs::read(m.join("b/z")).unwrap(), b"x");
    assert_eq!(renameat2(&m.join("b/z"), &m.join("b/deep"), libc::RENAME_EXCHANGE), 0);
    assert!(m.join("b/z").is_dir() && m.join("b/deep").is_file());
    assert_eq!(renameat2(&m.join("b/nope"), &m.join("b/z"), libc::RENAME_EXCHANGE), libc::ENOENT);
    assert_eq!(renameat2(&m.join("b/x4"), &m.join("b/q"), libc::RENAME_WHITEOUT), libc::EINVAL);
    m.unmount();

    let m = img.mount();
    assert_eq!(fs::read(m.join("b/x4")).unwrap(), b"y");
    assert_eq!(fs::read(m.join("b/deep")).unwrap(), b"x");
    assert!(m.join("b/z").is_dir());
    assert_eq!(fs::metadata(m.join("b")).unwrap().nlink(), 3);
    m.unmount();
}

#[test]
fn hard_links_share_data_and_count_in_st_nlink() {
    let img = Image::new();
    let m = img.mount();
    fs::create_dir(m.join("other")).unwrap();
    fs::write(m.join("orig"), b"shared").unwrap();
    fs::hard_link(m.join("orig"), m.join("link1")).unwrap();
    fs::hard_link(m.join("orig"), m.join("other/link2")).unwrap();
    let ino = fs::metadata(m.join("orig")).unwrap().ino();
    for p in ["orig", "link1", "other/link2"] {
        let md = fs::metadata(m.join(p)).unwrap();
        assert_eq!((md.ino(), md.nlink()), (ino, 3), "{p}");
    }
    OpenOptions::new().append(true).open(m.join("link1")).unwrap().write_all(b" data").unwrap();
    assert_eq!(fs::read(m.join("other/link2")).unwrap(), b"shared data");
    assert_eq!(err_of(fs::hard_link(m.join("other"), m.join("dirlink"))), libc::EPERM);
    assert_eq!(err_of(fs::hard_link(m.join("orig"), m.join("link1"))), libc::EEXIST);
    fs::remove_file(m.join("orig")).unwrap();
    assert_eq!(fs::metadata(m.join("link1")).unwrap().nlink(), 2);
    m.unmount();

    let m = img.mount();
    assert_eq!(fs::metadata(m.join("link1")).unwrap().nlink(), 2);
    assert_eq!(fs::metadata(m.join("other/link2")).unwrap().ino(), ino);
    assert_eq!(fs::read(m.join("link1")).unwrap(), b"shared data");
    m.unmount();
}

#[test]
fn symlinks_read_back_their_targets() {
    let img = Image::new();
    let m = img.mount();
    fs::write(m.join("target"), b"pointed at").unwrap();
    std::os::unix::fs::symlink("target", m.join("rel")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", m.join("dangling")).unwrap();
    let long = "d/".repeat(2000) + "end";
    std::os::unix::fs::symlink(&long, m.join("long")).unwrap();
    assert_eq!(fs::read_link(m.join("rel")).unwrap(), Path::new("target"));
    assert_eq!(fs::read(m.join("rel")).unwrap(), b"pointed at");
    let md = fs::symlink_metadata(m.join("long")).unwrap();
    assert!(md.file_type().is_symlink());
    assert_eq!(md.len(), long.len() as u64);
    assert_eq!(err_of(fs::read(m.join("dangling"))), libc::ENOENT);
    m.unmount();

    let m = img.mount();
    assert_eq!(fs::read_link(m.join("rel")).unwrap(), Path::new("target"));
    assert_eq!(fs::read_link(m.join("dangling")).unwrap(), Path::new("/nowhere/at/all"));
    assert_eq!(fs::read_link(m.join("long")).unwrap(), Path::new(&long));
    m.unmount();
}

#[test]
fn mknod_makes_fifos_that_carry_data_and_device_nodes_that_keep_their_numbers() {
    let img = Image::new();
    let m = img.mount();
    let fifo = m.join("fifo");
    assert_eq!(mknod(&fifo, libc::S_IFIFO | 0o644, 0), 0);
    assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            OpenOptions::new().write(true).open(&fifo).unwrap().write_all(b"through the pipe").unwrap()
        })
    };
    let mut got = String::new();
    File::open(&fifo).unwrap().read_to_string(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(got, "through the pipe");
    let dev = libc::makedev(1, 3);
    assert_eq!(mknod(&m.join("null"), libc::S_IFCHR | 0o600, dev), 0);
    assert_eq!(mknod(&m.join("sock"), libc::S_IFSOCK | 0o600, 0), 0);
    assert_eq!(mknod(&m.join("plain"), libc::S_IFREG | 0o600, 0), 0);
    assert!(fs::metadata(m.join("plain")).unwrap().is_file());
    m.unmount();

    let m = img.mount();
    assert!(fs::metadata(m.join("fifo")).unwrap().file_type().is_fifo());
    let md = fs::metadata(m.join("null")).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), dev);
    assert!(fs::metadata(m.join("sock")).unwrap().file_type().is_socket());
    m.unmount();
}

#[test]
fn xattrs_are_set_read_listed_replaced_and_removed() {
    let img = Image::new();
    let m = img.mount();
    let p = m.join("f");
    fs::write(&p, b"").unwrap();
    fs::create_dir(m.join("d")).unwrap();
    assert_eq!(setxattr(&p, "user.color", b"blue", 0), 0);
    assert_eq!(setxattr(&p, "user.big", &pattern(60_000, 1), 0), 0);
    assert_eq!(setxattr(&m.join("d"), "user.on_dir", b"yes", 0), 0);
    assert_eq!(getxattr(&p, "user.color", 100).unwrap(), b"blue");
    assert_eq!(getxattr(&p, "user.big", 65536).unwrap(), pattern(60_000, 1));
    // Too small a buffer is ERANGE; a missing one ENODATA.
    assert_eq!(getxattr(&p, "user.color", 2), Err(libc::ERANGE));
    assert_eq!(getxattr(&p, "user.none", 100), Err(libc::ENODATA));
    assert_eq!(setxattr(&p, "user.color", b"red", libc::XATTR_CREATE), libc::EEXIST);
    assert_eq!(setxattr(&p, "user.shape", b"round", libc::XATTR_REPLACE), libc::ENODATA);
    assert_eq!(setxattr(&p, "user.color", b"red", libc::XATTR_REPLACE), 0);
    assert_eq!(getxattr(&p, "user.color", 100).unwrap(), b"red");
    let names: Vec<Vec<u8>> = xattrs(&p).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, [b"user.big".to_vec(), b"user.color".to_vec()]);
    assert_eq!(removexattr(&p, "user.big"), 0);
    assert_eq!(removexattr(&p, "user.big"), libc::ENODATA);
    m.unmount();

    let m = img.mount();
    assert_eq!(xattrs(&m.join("f")), [(b"user.color".to_vec(), b"red".to_vec())]);
    assert_eq!(xattrs(&m.join("d")), [(b"user.on_dir".to_vec(), b"yes".to_vec())]);
    m.unmount();
}

#[test]
fn fallocate_allocates_and_lseek_finds_data_and_holes() {
    let img = Image::new();
    let m = img.mount();
    let f = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(m.join("sparse")).unwrap();
    // Holes and data are found at the granularity of the data block (st_blksize).
    let bs = f.metadata().unwrap().blksize() as i64;
    f.write_all_at(b"data", 0).unwrap();
    f.write_all_at(b"more", (10 * bs) as u64).unwrap();
    f.sync_all().unwrap();
    assert_eq!(lseek(&f, 0, libc::SEEK_DATA), Ok(0));
    assert_eq!(lseek(&f, 0, libc::SEEK_HOLE), Ok(bs));
    assert_eq!(lseek(&f, bs, libc::SEEK_DATA), Ok(10 * bs));
    assert_eq!(lseek(&f, 10 * bs + 2, libc::SEEK_DATA), Ok(10 * bs + 2));
    assert_eq!(lseek(&f, 10 * bs, libc::SEEK_HOLE), Ok(10 * bs + 4));
    assert_eq!(lseek(&f, 20 * bs, libc::SEEK_DATA), Err(libc::ENXIO));
    // Just written, not synced: already data.
    f.write_all_at(b"fresh", (15 * bs) as u64).unwrap();
    assert_eq!(lseek(&f, 11 * bs, libc::SEEK_DATA), Ok(15 * bs));
    assert_eq!(lseek(&f, 15 * bs, libc::SEEK_HOLE), Ok(15 * bs + 5));
    // fallocate fills the hole in between and extends the file.
    // SAFETY: fallocate on an open descriptor.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 2 * bs, 3 * bs) };
    assert_eq!(r, 0, "fallocate: {}", std::io::Error::last_os_error());
    assert_eq!(lseek(&f, bs, libc::SEEK_DATA), Ok(2 * bs));
    assert_eq!(lseek(&f, 2 * bs, libc::SEEK_HOLE), Ok(5 * bs));
    // SAFETY: as above.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 20 * bs, bs) };
    assert_eq!(r, 0);
    assert_eq!(f.metadata().unwrap().len(), 21 * bs as u64);
    let mut buf = vec![1u8; 100];
    f.read_exact_at(&mut buf, (2 * bs) as u64).unwrap();
    assert_eq!(buf, vec![0u8; 100]);
    // Modes a FUSE mount cannot do are refused, not faked (tests/fuse_fallocate.rs has
    // the modes it does).
    // SAFETY: as above.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_COLLAPSE_RANGE, 0, bs) };
    assert_eq!((r, errno()), (-1, libc::EOPNOTSUPP));
    drop(f);
    m.unmount();

    let m = img.mount();
    let f = File::open(m.join("sparse")).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 21 * bs as u64);
    assert_eq!(lseek(&f, bs, libc::SEEK_DATA), Ok(2 * bs));
    assert_eq!(lseek(&f, 5 * bs, libc::SEEK_DATA), Ok(10 * bs));
    assert_eq!(lseek(&f, 11 * bs, libc::SEEK_DATA), Ok(15 * bs));
    assert_eq!(lseek(&f, 16 * bs, libc::SEEK_DATA), Ok(20 * bs));
    drop(f);
    m.unmount();
}

#[test]
fn st_blocks_counts_allocated_data_not_holes() {
    let img = Image::new();
    let m = img.mount();
    let dense = m.join("dense");
    fs::write(&dense, pattern(1 << 20, 2)).unwrap();
    let sparse = m.join("sparse");
    let f = File::create(&sparse).unwrap();
    f.write_all_at(b"x", 100 << 20).unwrap();
    drop(f);
    let check = |dense: &Path, sparse: &Path| {
        let d = fs::metadata(dense).unwrap();
        let s = fs::metadata(sparse).unwrap();
        assert!(d.blocks() * 512 >= 1 << 20, "dense: {} blocks", d.blocks());
        assert!(d.blocks() * 512 <= (1 << 20) + 65536, "dense: {} blocks", d.blocks());
        assert_eq!(s.len(), (100 << 20) + 1);
        assert!(s.blocks() > 0 && s.blocks() * 512 <= 65536, "sparse: {} blocks", s.blocks());
        assert_eq!(fs::metadata(dense.parent().unwrap().join("empty")).unwrap().blocks(), 0);
    };
    fs::write(m.join("empty"), b"").unwrap();
    check(&dense, &sparse);
    m.unmount();
    let m = img.mount();
    check(&m.join("dense"), &m.join("sparse"));
    m.unmount();
}

#[test]
fn setattr_changes_mode_owner_size_and_times() {
    let img = Image::new();
    let m = img.mount();
    let p = m.join("f");
    fs::write(&p, b"0123456789").unwrap();
    std::os::unix::fs::chown(&p, Some(1234), Some(5678)).unwrap();
    let md = fs::metadata(&p).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    std::os::unix::fs::lchown(&p, None, Some(42)).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().gid(), 42);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o4751)).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o4751);
    set_times(&p, (1_000_000_000, 123_456_789), (1_100_000_000, 987_654_321));
    let md = fs::metadata(&p).unwrap();
    assert_eq!((md.atime(), md.atime_nsec()), (1_000_000_000, 123_456_789));
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_100_000_000, 987_654_321));
    // UTIME_OMIT leaves a time alone.
    set_times(&p, (5, 0), (0, libc::UTIME_OMIT));
    assert_eq!(mtime(&p), (1_100_000_000, 987_654_321));
    OpenOptions::new().write(true).open(&p).unwrap().set_len(4).unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"0123");
    // Times before 1970 (set last: reading moves an atime older than the mtime).
    set_times(&p, (-86_400, 5), (-1, 999_999_999));
    assert_eq!(mtime(&p), (-1, 999_999_999));
    let symlink = m.join("l");
    std::os::unix::fs::symlink("f", &symlink).unwrap();
    set_times(&symlink, (7, 7), (8, 8));
    assert_eq!(mtime(&symlink), (8, 8));
    m.unmount();

    let m = img.mount();
    let md = fs::metadata(m.join("f")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o4751);
    assert_eq!((md.uid(), md.gid(), md.len()), (1234, 42, 4));
    assert_eq!((md.atime(), md.atime_nsec()), (-86_400, 5));
    assert_eq!(mtime(&m.join("f")), (-1, 999_999_999));
    assert_eq!(mtime(&m.join("l")), (8, 8));
    m.unmount();
}

#[test]
fn timestamps_move_as_posix_says_with_nanoseconds() {
    let img = Image::new();
    let m = img.mount();
    let d = m.join("dir");
    fs::create_dir(&d).unwrap();
    let p = d.join("f");
    fs::write(&p, b"a").unwrap();
    let md = fs::metadata(&p).unwrap();
    assert_eq!(mtime(&p), ctime(&p), "a new file's mtime and ctime are its birth");
    assert!(md.mtime() > 1_600_000_000, "mtime {} is not now", md.mtime());
    let old = (1_000_000_000, 1);
    // A write moves mtime and ctime.
    set_times(&p, old, old);
    let c0 = ctime(&p);
    OpenOptions::new().append(true).open(&p).unwrap().write_all(b"b").unwrap();
    assert!(mtime(&p) > old);
    assert!(ctime(&p) >= c0);
    // chmod moves ctime only.
    set_times(&p, old, old);
    let c1 = ctime(&p);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(mtime(&p), old);
    assert!(ctime(&p) >= c1);
    // Creating and removing names moves the directory's mtime and ctime.
    set_times(&d, old, old);
    fs::write(d.join("g"), b"").unwrap();
    assert!(mtime(&d) > old);
    set_times(&d, old, old);
    fs::remove_file(d.join("g")).unwrap();
    assert!(mtime(&d) > old);
    // Nanoseconds are kept: a thousand files all created on whole microseconds would be a fluke.
    let mut fractional = 0;
    for i in 0..50 {
        let q = d.join(format!("n{i}"));
        fs::write(&q, b"").unwrap();
        if mtime(&q).1 % 1000 != 0 {
            fractional += 1;
        }
    }
    assert!(fractional > 0, "no timestamp carries sub-microsecond nanoseconds");
    let snap_before = (mtime(&p), ctime(&p), mtime(&d), ctime(&d));
    m.unmount();
    let m = img.mount();
    let (p, d) = (m.join("dir/f"), m.join("dir"));
    assert_eq!((mtime(&p), ctime(&p), mtime(&d), ctime(&d)), snap_before);
    m.unmount();
}

#[test]
fn statfs_reports_capacity_usage_and_name_length() {
    let img = Image::new();
    let m = img.mount();
    let before = statvfs(&m.path);
    assert!(before.f_blocks > 0 && before.f_bsize > 0);
    assert!(before.f_bfree <= before.f_blocks && before.f_bavail <= before.f_bfree);
    assert_eq!(before.f_namemax, 255);
    let f = File::create(m.join("fill")).unwrap();
    f.write_all_at(&pattern(32 << 20, 5), 0).unwrap();
    f.sync_all().unwrap();
    let after = statvfs(&m.path);
    let used = (before.f_bfree - after.f_bfree) * before.f_frsize;
    assert!(used >= 32 << 20, "writing 32 MiB used only {used} bytes");
    drop(f);
    m.unmount();
}

#[test]
fn access_fsync_and_fsyncdir_work_through_the_mount() {
    let img = Image::new();
    let m = img.mount();
    let p = m.join("f");
    let mut f = File::create(&p).unwrap();
    f.write_all(b"durable").unwrap();
    f.sync_all().unwrap();
    f.sync_data().unwrap();
    File::open(&m.path).unwrap().sync_all().unwrap();
    let cp = c(&p);
    // SAFETY: NUL-terminated path.
    assert_eq!(unsafe { libc::access(cp.as_ptr(), libc::F_OK) }, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::access(cp.as_ptr(), libc::R_OK | libc::W_OK) }, 0);
    let missing = c(&m.join("missing"));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::access(missing.as_ptr(), libc::F_OK) }, -1);
    assert_eq!(errno(), libc::ENOENT);
    // SAFETY: sync(2) has no arguments.
    unsafe { libc::sync() };
    drop(f);
    m.unmount();
}

#[test]
fn an_unlinked_file_stays_usable_while_open_and_is_gone_after() {
    let img = Image::new();
    let m = img.mount();
    let p = m.join("ghost");
    let mut f = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&p).unwrap();
    f.write_all(b"still here").unwrap();
    fs::remove_file(&p).unwrap();
    assert!(!p.exists());
    f.write_all(b", and more").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still here, and more");
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    drop(f);
    m.unmount();
    let m = img.mount();
    assert_eq!(fs::read_dir(&m.path).unwrap().count(), 0);
    m.unmount();
}

#[test]
fn bad_names_and_wrong_types_come_back_as_errno() {
    let img = Image::new();
    let m = img.mount();
    assert_eq!(err_of(File::open(m.join("missing"))), libc::ENOENT);
    let long = "n".repeat(256);
    assert_eq!(err_of(File::create(m.join(&long))), libc::ENAMETOOLONG);
    fs::write(m.join(&long[..255]), b"ok").unwrap();
    fs::write(m.join("file"), b"").unwrap();
    assert_eq!(err_of(File::create(m.join("file/child"))), libc::ENOTDIR);
    assert_eq!(err_of(OpenOptions::new().write(true).create_new(true).open(m.join("file"))), libc::EEXIST);
    assert_eq!(err_of(fs::read_dir(m.join("file"))), libc::ENOTDIR);
    fs::create_dir(m.join("dir")).unwrap();
    assert_eq!(err_of(OpenOptions::new().write(true).open(m.join("dir"))), libc::EISDIR);
    assert_eq!(setxattr(&m.join("file"), "bogus.ns", b"v", 0), libc::EOPNOTSUPP);
    // No ioctls: a file is not a terminal.
    let f = File::open(m.join("file")).unwrap();
    // SAFETY: isatty on an open descriptor.
    assert_eq!(unsafe { libc::isatty(f.as_raw_fd()) }, 0);
    assert_eq!(errno(), libc::ENOTTY);
    drop(f);
    m.unmount();
}

#[test]
fn a_read_only_mount_serves_reads_and_refuses_changes() {
    let img = Image::new();
    let m = img.mount();
    fs::write(m.join("f"), b"kept").unwrap();
    m.unmount();
    let before = img.contents();
    let m = img.mount_with("ro");
    assert_eq!(fs::read(m.join("f")).unwrap(), b"kept");
    assert_eq!(err_of(fs::write(m.join("g"), b"")), libc::EROFS);
    assert_eq!(err_of(OpenOptions::new().write(true).open(m.join("f"))), libc::EROFS);
    assert_eq!(err_of(fs::remove_file(m.join("f"))), libc::EROFS);
    assert_eq!(setxattr(&m.join("f"), "user.x", b"", 0), libc::EROFS);
    m.unmount();
    assert!(before == img.contents(), "a read-only mount wrote to the device");
}

/// A tree with every kind of file, and the same tree after a remount: every name, type,
/// mode, owner, size, st_blocks, inode number, link count, mtime, ctime, xattr, symlink
/// target and content hash is the same.
#[test]
fn the_whole_tree_and_its_inode_numbers_survive_remount() {
    let img = Image::new();
    let m = img.mount();
    for d in ["a", "a/b", "a/b/c", "empty"] {
        fs::create_dir(m.join(d)).unwrap();
    }
    for i in 0..40 {
        let p = m.join(format!("a/b/file{i}"));
        fs::write(&p, pattern(i * 7919, i as u8)).unwrap();
        assert_eq!(setxattr(&p, "user.i", format!("{i}").as_bytes(), 0), 0);
    }
    let sparse = File::create(m.join("a/sparse")).unwrap();
    sparse.write_all_at(b"end", 50 << 20).unwrap();
    drop(sparse);
    fs::hard_link(m.join("a/b/file3"), m.join("a/b/c/hard")).unwrap();
    std::os::unix::fs::symlink("../b/file1", m.join("a/b/c/sym")).unwrap();
    assert_eq!(mknod(&m.join("a/fifo"), libc::S_IFIFO | 0o640, 0), 0);
    fs::set_permissions(m.join("a/b/file5"), fs::Permissions::from_mode(0o2710)).unwrap();
    std::os::unix::fs::chown(m.join("a/b/file6"), Some(1000), Some(100)).unwrap();
    set_times(&m.join("a/b/file7"), (1, 2), (3, 4));
    // st_blocks of uncommitted data is an estimate (whole data blocks) until a commit.
    File::open(&m.path).unwrap().sync_all().unwrap();
    let before = snapshot(&m.path);
    assert_eq!(before.len(), 4 + 40 + 1 + 1 + 1 + 1);
    m.unmount_with(&["fusermount3", "-u"]);

    let m = img.mount();
    let after = snapshot(&m.path);
    for (p, s) in &before {
        assert_eq!(after.get(p), Some(s), "{} differs after remount", p.display());
    }
    assert_eq!(before.len(), after.len());
    m.unmount();
}

/// The kernel forgets inodes it no longer caches (drop_caches forces it): they come back
/// from the engine by lookup, and an unlinked file still open keeps working.
#[test]
fn inodes_the_kernel_forgets_are_looked_up_again() {
    let img = Image::new();
    let m = img.mount();
    fs::create_dir(m.join("many")).unwrap();
    for i in 0..300 {
        fs::write(m.join(format!("many/{i}")), format!("content {i}")).unwrap();
    }
    let mut open =
        OpenOptions::new().create(true).truncate(true).read(true).write(true).open(m.join("doomed")).unwrap();
    open.write_all(b"unlinked but open").unwrap();
    fs::remove_file(m.join("doomed")).unwrap();
    let inos: Vec<u64> = (0..300).map(|i| fs::metadata(m.join(format!("many/{i}"))).unwrap().ino()).collect();
    fs::write("/proc/sys/vm/drop_caches", "3").expect("drop_caches (the tests run as root)");
    for (i, ino) in inos.iter().enumerate() {
        let p = m.join(format!("many/{i}"));
        assert_eq!(fs::metadata(&p).unwrap().ino(), *ino);
        assert_eq!(fs::read_to_string(&p).unwrap(), format!("content {i}"));
    }
    assert_eq!(fs::read_dir(m.join("many")).unwrap().count(), 300);
    open.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    open.read_to_string(&mut s).unwrap();
    assert_eq!(s, "unlinked but open");
    drop(open);
    m.unmount();
    let m = img.mount();
    assert!(!m.join("doomed").exists());
    assert_eq!(fs::read_dir(m.join("many")).unwrap().count(), 300);
    m.unmount();
}

fn as_user(uid: u32, script: &str) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into()])
        .args(["sh", "-c", script])
        .output()
        .expect("setpriv (util-linux)")
}

/// Other users get in only with allow_other, and then the kernel checks the modes we report
/// (default_permissions is always on); files they create are theirs.
#[test]
fn other_users_need_allow_other_and_then_meet_the_file_modes() {
    let img = Image::new();
    fs::set_permissions(img.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let m = img.mount();
    fs::write(m.join("public"), b"for all").unwrap();
    let out = as_user(1000, &format!("cat {}", m.join("public").display()));
    assert!(!out.status.success(), "another user got in without allow_other");
    m.unmount();

    let m = img.mount_with("allow_other");
    fs::set_permissions(m.join("public"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(m.join("secret"), b"root only").unwrap();
    fs::set_permissions(m.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(m.join("shared")).unwrap();
    fs::set_permissions(m.join("shared"), fs::Permissions::from_mode(0o777)).unwrap();
    let run = |script: &str| as_user(1000, &format!("cd {} && {script}", m.path.display())).status.success();
    assert!(run("cat public"), "a world-readable file");
    assert!(!run("cat secret"), "a 0600 file of root");
    assert!(!run("echo x >> public"), "writing a 0644 file of root");
    assert!(!run("touch newfile"), "creating in root's 0755 directory");
    assert!(run("echo mine > shared/mine"), "creating in a 0777 directory");
    let md = fs::metadata(m.join("shared/mine")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1000));
    m.unmount();
}

/// Linux drops set-user-ID (and set-group-ID where the group may execute or the caller is
/// not in the file's group) when a caller without CAP_FSETID writes or truncates a file,
/// and on every chown of a non-directory; the daemon does it itself
/// (FUSE_HANDLE_KILLPRIV_V2), so it must match exactly (`fuse_permissions.rs` compares
/// with ext4 case by case).
#[test]
fn writes_truncates_and_chowns_drop_setuid_and_setgid_as_linux_does() {
    let img = Image::new();
    fs::set_permissions(img.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let m = img.mount_with("allow_other");
    let mode = |name: &str| fs::metadata(m.join(name)).unwrap().mode() & 0o7777;
    let make = |name: &str, mode: u32| {
        fs::write(m.join(name), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(m.join(name), fs::Permissions::from_mode(mode)).unwrap();
    };
    make("written", 0o6777);
    make("no-group-exec", 0o6766);
    make("truncated", 0o6777);
    make("root-writes", 0o6777);
    make("chowned", 0o6755);
    fs::create_dir(m.join("sgid-dir")).unwrap();
    fs::set_permissions(m.join("sgid-dir"), fs::Permissions::from_mode(0o2777)).unwrap();
    let run = |script: &str| as_user(1000, &format!("cd {} && {script}", m.path.display()));

    assert!(run("echo x >> written").status.success());
    assert!(run("echo x >> no-group-exec").status.success());
    assert!(run("truncate -s 1 truncated").status.success());
    fs::OpenOptions::new().append(true).open(m.join("root-writes")).unwrap().write_all(b"x").unwrap();
    std::os::unix::fs::chown(m.join("chowned"), Some(1234), Some(1234)).unwrap();
    std::os::unix::fs::chown(m.join("sgid-dir"), Some(1234), None).unwrap();

    assert_eq!(mode("written"), 0o0777, "a user's write drops both bits (group may execute)");
    assert_eq!(mode("no-group-exec"), 0o0766, "set-group-ID without group execute goes too: 1000 is not in group 0");
    assert_eq!(mode("truncated"), 0o0777, "a user's truncate drops both bits");
    assert_eq!(mode("root-writes"), 0o6777, "root (CAP_FSETID) keeps them");
    assert_eq!(mode("chowned"), 0o0755, "chown drops them even for root");
    assert_eq!(mode("sgid-dir"), 0o2777, "a directory keeps set-group-ID through chown");
    m.unmount();
    let m = img.mount();
    assert_eq!(fs::metadata(m.join("written")).unwrap().mode() & 0o7777, 0o0777, "and it was committed");
    m.unmount();
}

/// Filling the filesystem is ENOSPC for the writer, not a broken mount: after deleting, the
/// space comes back and everything written before is intact.
#[test]
fn a_full_filesystem_answers_enospc_and_recovers_after_deleting() {
    let img = Image::with(1, 64 << 20, None);
    let m = img.mount();
    fs::write(m.join("keep"), b"written before the disk filled").unwrap();
    let chunk = pattern(1 << 20, 9);
    let mut f = File::create(m.join("filler")).unwrap();
    let mut written = 0u64;
    let err = loop {
        match f.write_all(&chunk) {
            Ok(()) => written += chunk.len() as u64,
            Err(e) => break e,
        }
        assert!(written < 64 << 20, "wrote {written} bytes into a 64 MiB device");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(written > 8 << 20, "only {written} bytes fit");
    let e = f.sync_all();
    assert!(e.is_ok() || e.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::ENOSPC), "{e:?}");
    drop(f);
    assert_eq!(fs::read(m.join("keep")).unwrap(), b"written before the disk filled");
    fs::remove_file(m.join("filler")).unwrap();
    File::open(&m.path).unwrap().sync_all().unwrap();
    fs::write(m.join("after"), pattern(4 << 20, 3)).unwrap();
    File::open(&m.path).unwrap().sync_all().unwrap();
    m.unmount();
    let m = img.mount();
    assert_eq!(fs::read(m.join("keep")).unwrap(), b"written before the disk filled");
    assert_eq!(fs::read(m.join("after")).unwrap(), pattern(4 << 20, 3));
    m.unmount();
}
