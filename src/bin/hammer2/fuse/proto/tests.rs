//! Known-answer tests against the kernel's layouts (include/uapi/linux/fuse.h): sizes and
//! offsets of every structure, and requests and replies as bytes written out by hand.

use super::abi::*;
use super::reply;
use super::*;
use std::mem::{offset_of, size_of};

#[test]
fn every_structure_has_the_kernels_size() {
    for (name, size, want) in [
        ("fuse_in_header", size_of::<InHeader>(), 40),
        ("fuse_out_header", size_of::<OutHeader>(), 16),
        ("fuse_attr", size_of::<Attr>(), 88),
        ("fuse_entry_out", size_of::<EntryOut>(), 128),
        ("fuse_attr_out", size_of::<AttrOut>(), 104),
        ("fuse_forget_one", size_of::<ForgetOne>(), 16),
        ("fuse_batch_forget_in", size_of::<BatchForgetIn>(), 8),
        ("fuse_getattr_in", size_of::<GetattrIn>(), 16),
        ("fuse_setattr_in", size_of::<SetattrIn>(), 88),
        ("fuse_mknod_in", size_of::<MknodIn>(), 16),
        ("fuse_mkdir_in", size_of::<MkdirIn>(), 8),
        ("fuse_rename2_in", size_of::<Rename2In>(), 16),
        ("fuse_open_in", size_of::<OpenIn>(), 8),
        ("fuse_create_in", size_of::<CreateIn>(), 16),
        ("fuse_open_out", size_of::<OpenOut>(), 16),
        ("fuse_release_in", size_of::<ReleaseIn>(), 24),
        ("fuse_flush_in", size_of::<FlushIn>(), 24),
        ("fuse_read_in", size_of::<ReadIn>(), 40),
        ("fuse_write_in", size_of::<WriteIn>(), 40),
        ("fuse_write_out", size_of::<WriteOut>(), 8),
        ("fuse_kstatfs", size_of::<Kstatfs>(), 80),
        ("fuse_fsync_in", size_of::<FsyncIn>(), 16),
        ("fuse_setxattr_in (no SETXATTR_EXT)", size_of::<SetxattrIn>(), 8),
        ("fuse_getxattr_in", size_of::<GetxattrIn>(), 8),
        ("fuse_access_in", size_of::<AccessIn>(), 8),
        ("fuse_init_in", size_of::<InitIn>(), 64),
        ("fuse_init_out", size_of::<InitOut>(), 64),
        ("fuse_interrupt_in", size_of::<InterruptIn>(), 8),
        ("fuse_fallocate_in", size_of::<FallocateIn>(), 32),
        ("fuse_lseek_in", size_of::<LseekIn>(), 24),
        ("fuse_ioctl_in", size_of::<IoctlIn>(), 32),
        ("fuse_dirent", size_of::<Dirent>(), 24),
        ("fuse_notify_inval_inode_out", size_of::<NotifyInvalInodeOut>(), 24),
        ("fuse_notify_inval_entry_out", size_of::<NotifyInvalEntryOut>(), 16),
        ("fuse_uring_ent_in_out", size_of::<UringEntInOut>(), 32),
        ("fuse_uring_cmd_req", size_of::<UringCmdReq>(), 24),
    ] {
        assert_eq!(size, want, "{name}");
    }
    assert_eq!(URING_ENT_IN_OUT + size_of::<UringEntInOut>(), URING_HEADER_LEN);
}

#[test]
fn fields_sit_at_the_kernels_offsets() {
    assert_eq!(offset_of!(InHeader, unique), 8);
    assert_eq!(offset_of!(InHeader, nodeid), 16);
    assert_eq!(offset_of!(InHeader, pid), 32);
    assert_eq!(offset_of!(Attr, atimensec), 48);
    assert_eq!(offset_of!(Attr, mode), 60);
    assert_eq!(offset_of!(Attr, blksize), 80);
    assert_eq!(offset_of!(EntryOut, attr), 40);
    assert_eq!(offset_of!(AttrOut, attr), 16);
    assert_eq!(offset_of!(SetattrIn, atime), 32);
    assert_eq!(offset_of!(SetattrIn, mode), 68);
    assert_eq!(offset_of!(SetattrIn, uid), 76);
    assert_eq!(offset_of!(InitOut, max_write), 20);
    assert_eq!(offset_of!(InitOut, max_pages), 28);
    assert_eq!(offset_of!(InitOut, flags2), 32);
    assert_eq!(offset_of!(WriteIn, write_flags), 20);
    assert_eq!(offset_of!(WriteIn, flags), 32);
    assert_eq!(offset_of!(UringEntInOut, payload_sz), 16);
    assert_eq!(offset_of!(UringCmdReq, qid), 16);
}

/// A request as the kernel lays it out: in-header, then `body`.
fn request(opcode: u32, nodeid: u64, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&((40 + body.len()) as u32).to_ne_bytes());
    v.extend_from_slice(&opcode.to_ne_bytes());
    v.extend_from_slice(&77u64.to_ne_bytes()); // unique
    v.extend_from_slice(&nodeid.to_ne_bytes());
    v.extend_from_slice(&1000u32.to_ne_bytes()); // uid
    v.extend_from_slice(&100u32.to_ne_bytes()); // gid
    v.extend_from_slice(&4242u32.to_ne_bytes()); // pid
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(body);
    v
}

fn whole(buf: &[u8]) -> Result<Request<'_>, Malformed> {
    decode(&buf[..40.min(buf.len())], Body::new(buf.get(40..).unwrap_or(&[]), &[]))
}

#[test]
fn a_lookup_decodes_its_header_and_name() {
    let buf = request(opcode::LOOKUP, 1, b"hello\0");
    let r = whole(&buf).unwrap();
    assert_eq!((r.unique(), r.nodeid(), r.uid(), r.gid(), r.pid()), (77, 1, 1000, 100, 4242));
    assert!(matches!(r.op, Op::Lookup { name: b"hello" }));
}

fn write_in(offset: u64, size: u32, write_flags: u32) -> Vec<u8> {
    let mut w = Vec::new();
    w.extend_from_slice(&9u64.to_ne_bytes()); // fh
    w.extend_from_slice(&offset.to_ne_bytes());
    w.extend_from_slice(&size.to_ne_bytes());
    w.extend_from_slice(&write_flags.to_ne_bytes());
    w.extend_from_slice(&0u64.to_ne_bytes()); // lock_owner
    w.extend_from_slice(&(libc::O_DIRECT as u32).to_ne_bytes());
    w.extend_from_slice(&[0; 4]);
    w
}

#[test]
fn a_write_borrows_its_data_whether_in_one_piece_or_split_as_the_ring_splits_it() {
    let op = write_in(4096, 5, WRITE_KILL_SUIDGID);
    let dev = request(opcode::WRITE, 7, &[&op[..], b"abcde"].concat());
    // Through the ring: the in-header, the operation's header and the payload apart.
    let ring_payload = b"abcde".to_vec();
    for r in [whole(&dev).unwrap(), decode(&dev[..40], Body::new(&op, &ring_payload)).unwrap()] {
        match r.op {
            Op::Write { arg, data } => {
                assert_eq!((arg.offset, arg.size, arg.write_flags, arg.flags), (4096, 5, 4, libc::O_DIRECT as u32));
                assert_eq!(data, b"abcde");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn two_names_and_the_rename2_flags_decode() {
    let mut body = 5u64.to_ne_bytes().to_vec();
    body.extend_from_slice(&(libc::RENAME_NOREPLACE).to_ne_bytes());
    body.extend_from_slice(&[0; 4]);
    body.extend_from_slice(b"a\0bb\0");
    let buf = request(opcode::RENAME2, 1, &body);
    assert!(matches!(
        whole(&buf).unwrap().op,
        Op::Rename { newdir: 5, flags: libc::RENAME_NOREPLACE, name: b"a", newname: b"bb" }
    ));
    let buf = request(opcode::SYMLINK, 1, b"link\0../target\0");
    assert!(matches!(whole(&buf).unwrap().op, Op::Symlink { name: b"link", target: b"../target" }));
}

#[test]
fn an_init_of_an_old_kernel_is_read_with_zeros_past_its_end() {
    let mut body = Vec::new();
    for v in [7u32, 31, 131072, 0xffff] {
        body.extend_from_slice(&v.to_ne_bytes());
    }
    let buf = request(opcode::INIT, 0, &body);
    match whole(&buf).unwrap().op {
        Op::Init(i) => assert_eq!((i.major, i.minor, i.max_readahead, i.flags, i.flags2), (7, 31, 131072, 0xffff, 0)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn short_or_unterminated_requests_are_malformed_and_unknown_opcodes_are_only_unknown() {
    // Every prefix of a valid WRITE (but the whole) fails to decode; none panics.
    let op = write_in(0, 3, 0);
    let full = request(opcode::WRITE, 7, &[&op[..], b"xyz"].concat());
    for n in 0..full.len() {
        assert_eq!(whole(&full[..n]).err(), Some(Malformed), "{n} bytes");
    }
    let buf = request(opcode::LOOKUP, 1, b"no-nul");
    assert_eq!(whole(&buf).err(), Some(Malformed));
    let buf = request(4096, 1, b"whatever");
    assert!(matches!(whole(&buf).unwrap().op, Op::Unknown(4096)));
    // A BATCH_FORGET whose count overflows the bytes sent.
    let mut body = u32::MAX.to_ne_bytes().to_vec();
    body.extend_from_slice(&[0; 4]);
    assert_eq!(whole(&request(opcode::BATCH_FORGET, 0, &body)).err(), Some(Malformed));
}

#[test]
fn a_batch_forget_lists_its_pairs() {
    let mut body = 2u32.to_ne_bytes().to_vec();
    body.extend_from_slice(&[0; 4]);
    for v in [5u64, 1, 6, 3] {
        body.extend_from_slice(&v.to_ne_bytes());
    }
    let buf = request(opcode::BATCH_FORGET, 0, &body);
    let r = whole(&buf).unwrap();
    assert!(!r.op.answered());
    let Op::BatchForget { forgets } = r.op else { panic!() };
    let pairs: Vec<(u64, u64)> = request::forgets(forgets).map(|f| (f.nodeid, f.nlookup)).collect();
    assert_eq!(pairs, [(5, 1), (6, 3)]);
}

#[test]
fn an_entry_reply_is_the_kernels_bytes() {
    let mut buf = [0xaau8; 256];
    let mut r = Reply::new(&mut buf);
    let e = EntryOut {
        nodeid: 0x11,
        generation: 2,
        entry_valid: 3600,
        attr_valid: 1,
        entry_valid_nsec: 0,
        attr_valid_nsec: 0,
        attr: Attr { ino: 0x11, size: 5, mode: libc::S_IFREG | 0o644, nlink: 1, blksize: 4096, ..Attr::default() },
    };
    r.push(&e).unwrap();
    assert_eq!(r.written(), 128);
    assert_eq!(&buf[0..8], &0x11u64.to_ne_bytes());
    assert_eq!(&buf[16..24], &3600u64.to_ne_bytes());
    assert_eq!(&buf[40..48], &0x11u64.to_ne_bytes()); // attr.ino
    assert_eq!(&buf[40 + 60..40 + 64], &(libc::S_IFREG | 0o644).to_ne_bytes());
    assert_eq!(buf[128], 0xaa, "nothing past the reply is written");
    let h = out_header(77, 0, 128);
    assert_eq!((h.len, h.error, h.unique), (144, 0, 77));
    // An error carries no body.
    assert_eq!(out_header(77, -libc::ENOENT, 128).len, 16);
}

#[test]
fn directory_entries_are_padded_to_eight_bytes_and_stop_at_the_limit() {
    let mut buf = [0xffu8; 128];
    let mut r = Reply::new(&mut buf);
    assert!(r.dirent(64, 9, 1, libc::DT_REG as u32, b"ab"));
    assert_eq!(r.written(), 32);
    // 32 + 24 + 7 = 63, padded to 64: just fits; the next one does not.
    assert!(r.dirent(64, 10, 2, libc::DT_DIR as u32, b"cdefghi"));
    assert_eq!(r.written(), 64);
    assert!(!r.dirent(64, 11, 3, libc::DT_REG as u32, b"x"));
    assert_eq!(r.written(), 64);
    assert_eq!(&buf[0..8], &9u64.to_ne_bytes());
    assert_eq!(&buf[16..20], &2u32.to_ne_bytes());
    assert_eq!(&buf[24..26], b"ab");
    assert_eq!(&buf[26..32], &[0; 6], "padding is zero");
    // A reply larger than its buffer is refused, not truncated.
    let mut small = [0u8; 8];
    assert_eq!(Reply::new(&mut small).push(&EntryOut::default()), Err(reply::NoRoom));
}

#[test]
fn a_read_fills_the_reply_in_place() {
    let mut buf = [0u8; 16];
    let mut r = Reply::new(&mut buf);
    let room = r.room(100);
    assert_eq!(room.len(), 16, "never more than the buffer");
    room[..3].copy_from_slice(b"xyz");
    r.commit(3);
    assert_eq!(r.written(), 3);
    assert_eq!(&buf[..3], b"xyz");
}
