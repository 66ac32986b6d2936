//! fallocate(2) modes on a real mount, driven by xfs_io the way an administrator or a
//! program (qemu, databases, log rotators) uses them, with ext4 on a loop device as the
//! specification: the same sequence must leave the same bytes and sizes, and SEEK_DATA /
//! SEEK_HOLE must find the same holes at hammer2's block granularity. Punching must give the
//! space back (df, and every copy in the allocator).

use hammer2_test_support as common;

use common::ext4::Ext4;
use common::image::info_json;
use common::mount::*;
use std::fs::{self, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs `xfs_io -f -c CMD... FILE` (for at most 10 minutes); xfs_io reports a failed command
/// on stderr (its exit status stays 0), so any stderr output fails the test.
fn xfs_io(file: &Path, cmds: &[&str]) -> String {
    let mut c = Command::new("xfs_io");
    c.arg("-f");
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = output_within(c.arg(file), Duration::from_secs(600));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.is_empty(), "xfs_io {cmds:?} {}: {err}", file.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The data extents SEEK_DATA/SEEK_HOLE report (`xfs_io -c 'seek -a -r 0'`), as
/// [start, end) byte ranges.
fn data_extents(file: &Path) -> Vec<(u64, u64)> {
    let size = fs::metadata(file).unwrap().len();
    let out = xfs_io(file, &["seek -a -r 0"]);
    let marks: Vec<(bool, u64)> = out
        .lines()
        .filter_map(|l| {
            let (kind, at) = l.split_once('\t')?;
            Some((kind == "DATA", at.trim().parse().ok()?))
        })
        .collect();
    let mut extents = Vec::new();
    for (i, &(data, at)) in marks.iter().enumerate() {
        if data {
            extents.push((at, marks.get(i + 1).map_or(size, |m| m.1)));
        }
    }
    extents
}

/// Which blocks of `bs` bytes hold data according to SEEK_DATA/SEEK_HOLE: the map both
/// filesystems can agree on when their block sizes differ (ext4's 4 KiB divides hammer2's).
fn block_map(file: &Path, bs: u64) -> Vec<bool> {
    let size = fs::metadata(file).unwrap().len();
    let extents = data_extents(file);
    (0..size.div_ceil(bs)).map(|k| extents.iter().any(|&(s, e)| s < (k + 1) * bs && e > k * bs)).collect()
}

/// Every range SEEK_HOLE calls a hole reads as zeros.
fn assert_holes_read_zero(file: &Path) {
    let bytes = fs::read(file).unwrap();
    let mut at = 0u64;
    for (s, e) in data_extents(file).into_iter().chain([(bytes.len() as u64, bytes.len() as u64)]) {
        assert!(
            bytes[at as usize..s as usize].iter().all(|b| *b == 0),
            "{}: hole {at}..{s} holds data",
            file.display()
        );
        at = e;
    }
}

/// Runs one step on both files and checks that they agree byte for byte and in size.
fn both(h2: &Path, ext4: &Path, what: &str, cmds: &[&str]) {
    xfs_io(h2, cmds);
    xfs_io(ext4, cmds);
    let (a, b) = (fs::read(h2).unwrap(), fs::read(ext4).unwrap());
    assert_eq!(a.len(), b.len(), "after {what}: sizes differ (hammer2 {}, ext4 {})", a.len(), b.len());
    if let Some(i) = a.iter().zip(&b).position(|(x, y)| x != y) {
        panic!("after {what}: first differing byte at {i} (hammer2 {:#x}, ext4 {:#x})", a[i], b[i]);
    }
}

/// The same xfs_io sequence on hammer2 and on ext4: punches (whole blocks, inside one block,
/// across blocks with partial edges, across the end, past the end), on a committed file and on
/// one whose data is still in memory, then writes into holes, zero ranges (inside data,
/// past the end with and without KEEP_SIZE) and preallocation (with and without KEEP_SIZE).
#[test]
fn fallocate_modes_leave_what_ext4_leaves() {
    let img = Image::new();
    let ext4 = Ext4::new();
    let m = img.mount();
    for (name, commit_first) in [("committed", true), ("in-memory", false)] {
        let (h2, e4) = (m.join(name), ext4.path().join(name));
        let mut write = vec!["pwrite -S 0x61 -b 65536 0 1048576"];
        if commit_first {
            write.push("fsync");
        }
        both(&h2, &e4, "the first write", &write);
        let bs = fs::metadata(&h2).unwrap().blksize() as u64;
        assert!(bs >= 4096 && bs % 4096 == 0, "hammer2 blocks of {bs} bytes");
        let steps: [(&str, String); 5] = [
            ("punching whole blocks", format!("fpunch {} {}", 4 * bs, 8 * bs)),
            ("punching inside one block", format!("fpunch {} {}", 20 * bs + 100, bs / 2)),
            ("punching across blocks", format!("fpunch {} {}", 30 * bs + 7, 5 * bs)),
            ("punching across the end", format!("fpunch {} {}", 1048576 - bs - 5, 3 * bs)),
            ("punching past the end", format!("fpunch {} {}", 2 * 1048576, bs)),
        ];
        for (what, cmd) in &steps {
            both(&h2, &e4, what, &[cmd]);
            assert_eq!(block_map(&h2, bs), block_map(&e4, bs), "{name} file: holes after {what}");
            assert_holes_read_zero(&h2);
        }
        // The punched blocks no longer count in st_blocks.
        assert!(fs::metadata(&h2).unwrap().blocks() * 512 <= 1048576 - 8 * bs, "{name}: st_blocks kept the holes");
        let more: [(&str, String); 6] = [
            ("writing into a hole", format!("pwrite -S 0x62 {} {}", 5 * bs + 3, bs)),
            ("zeroing inside data", format!("fzero {} {}", 40 * bs + 11, 2 * bs)),
            ("zeroing past the end, keeping the size", format!("fzero -k {} {}", 1048576 - 100, 2 * bs)),
            ("zeroing past the end", format!("fzero {} {}", 1048576 + bs, bs + 5)),
            ("preallocating past the end, keeping the size", format!("falloc -k {} {}", 2 * 1048576, 4 * bs)),
            ("preallocating past the end", format!("falloc {} {}", 2 * 1048576, 3 * bs + 1)),
        ];
        for (what, cmd) in &more {
            both(&h2, &e4, what, &[cmd]);
            assert_holes_read_zero(&h2);
        }
    }
    // What the commit made of it is what a new mount reads back, holes included.
    let before: Vec<_> =
        ["committed", "in-memory"].iter().map(|n| (fs::read(m.join(n)).unwrap(), data_extents(&m.join(n)))).collect();
    m.unmount();
    let m = img.mount();
    for (n, (bytes, extents)) in ["committed", "in-memory"].iter().zip(before) {
        assert_eq!(fs::read(m.join(n)).unwrap(), bytes, "{n} after a remount");
        assert_eq!(data_extents(&m.join(n)), extents, "{n}: holes after a remount");
    }
    m.unmount();
    img.assert_consistent();
}

/// Punching 16 MiB out of a file on two devices with two copies: df sees the space come
/// back once it is committed, and each device gets back the space its copies held (the
/// allocator agrees with the trees afterwards).
#[test]
fn punching_a_hole_gives_every_copy_back() {
    const MIB: u64 = 1 << 20;
    let img = Image::with(2, 256 << 20, Some(2));
    // Stored raw: the test counts the bytes the punch gives back.
    let m = img.mount_raw();
    let f = m.join("big");
    xfs_io(&f, &["pwrite -S 0x5a -b 1048576 0 33554432", "fsync"]);
    m.unmount();
    let device_free = || -> Vec<u64> {
        let j = info_json(img.devices.iter().map(|d| d.as_os_str()));
        j["devices"].as_array().unwrap().iter().map(|d| d["free_bytes"].as_u64().unwrap()).collect()
    };
    let free_before = device_free();

    let m = img.mount();
    let df_before = available_bytes(&m.path);
    let blocks_before = fs::metadata(&f).unwrap().blocks() * 512;
    xfs_io(&f, &["fpunch 8388608 16777216", "fsync"]);
    let df_after = available_bytes(&m.path);
    eprintln!("df: {} bytes more free after a 16 MiB punch", df_after as i64 - df_before as i64);
    // Tree nodes are rewritten too, so allow a little either way.
    let slack = MIB / 2;
    assert!(df_after >= df_before + 16 * MIB - slack, "df: {df_before} free before the punch, {df_after} after");
    assert_eq!(blocks_before - fs::metadata(&f).unwrap().blocks() * 512, 16 * MIB, "st_blocks");
    let bytes = fs::read(&f).unwrap();
    assert_eq!(bytes.len() as u64, 32 * MIB);
    assert!(bytes[..8 << 20].iter().chain(&bytes[24 << 20..]).all(|b| *b == 0x5a), "data around the hole");
    assert!(bytes[8 << 20..24 << 20].iter().all(|b| *b == 0), "the hole reads as zeros");
    m.unmount();

    for (i, (before, after)) in free_before.iter().zip(device_free()).enumerate() {
        let gained = after as i64 - *before as i64;
        eprintln!("device {i}: {gained} bytes more free after a 16 MiB punch");
        assert!(
            (gained - (16 * MIB) as i64).unsigned_abs() <= slack,
            "device {i} got back {gained} bytes for a 16 MiB hole ({before} free before, {after} after)"
        );
    }
    img.assert_consistent();
}

/// The modes a FUSE mount cannot carry answer EOPNOTSUPP, while ext4 does the same calls
/// (so the ranges are valid and it is the mode that is refused). The kernel's FUSE client
/// passes only KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE to the daemon.
#[test]
fn collapse_insert_and_unshare_are_eopnotsupp() {
    let img = Image::new();
    let ext4 = Ext4::new();
    let m = img.mount();
    let open = |p: &Path| {
        let f = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(p).unwrap();
        f.set_len(1 << 20).unwrap();
        f
    };
    let (h2, e4) = (open(&m.join("f")), open(&ext4.path().join("f")));
    let fallocate = |f: &fs::File, mode: i32| {
        // SAFETY: plain system call on an open descriptor.
        match unsafe { libc::fallocate(f.as_raw_fd(), mode, 65536, 65536) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error().raw_os_error()),
        }
    };
    for (mode, name) in [(libc::FALLOC_FL_COLLAPSE_RANGE, "collapse"), (libc::FALLOC_FL_INSERT_RANGE, "insert")] {
        assert_eq!(fallocate(&e4, mode), Ok(()), "ext4 {name}");
        assert_eq!(fallocate(&h2, mode), Err(Some(libc::EOPNOTSUPP)), "hammer2 {name}");
    }
    for (mode, name) in [
        (libc::FALLOC_FL_UNSHARE_RANGE, "unshare"),
        (libc::FALLOC_FL_PUNCH_HOLE, "punch without KEEP_SIZE"),
        (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE, "punch and zero"),
    ] {
        assert_eq!(fallocate(&h2, mode), Err(Some(libc::EOPNOTSUPP)), "hammer2 {name}");
    }
    assert_eq!(h2.metadata().unwrap().len(), 1 << 20, "a refused call changed the size");
    drop((h2, e4));
    m.unmount();
}
