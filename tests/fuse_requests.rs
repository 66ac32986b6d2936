//! What a create, a cold stat and a delete cost in FUSE requests through /dev/fuse (the
//! kernel's default transport), read off the daemon's per-opcode counters in
//! `hammer2 info --json MOUNTPOINT`. The counts are the kernel's minimum for what the mount
//! negotiates (`fuse/negotiate.rs`): a regression here (a getattr per stat, a flush per
//! close, a lookup per unlink) costs every workload a round trip per file.

use hammer2_test_support as common;

use common::image::info_json;
use common::mount::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

const FILES: usize = 200;
const DIRS: usize = 4;

/// Requests served so far, per opcode.
fn counts(mountpoint: &Path) -> BTreeMap<String, u64> {
    let info = info_json([mountpoint]);
    let Value::Object(r) = &info["requests"] else { panic!("no request counters in info --json: {info}") };
    r.iter()
        .map(|(op, c)| {
            assert!(c["busy_ns"].as_u64().is_some() && c["max_ns"].as_u64().is_some(), "{op}: {c}");
            (op.clone(), c["count"].as_u64().unwrap_or_else(|| panic!("{op}: {c}")))
        })
        .collect()
}

/// Requests of each opcode between two snapshots.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after.iter().map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0))).filter(|(_, n)| *n > 0).collect()
}

fn n(d: &BTreeMap<String, u64>, op: &str) -> u64 {
    d.get(op).copied().unwrap_or(0)
}

fn path(root: &Path, i: usize) -> std::path::PathBuf {
    root.join(format!("d{}", i % DIRS)).join(format!("f{i:04}"))
}

#[test]
fn create_cold_stat_and_delete_cost_the_kernels_minimum_of_requests() {
    let img = Image::with(2, 256 << 20, Some(2));
    let m = img.mount_with("nouring");
    let mp = img.mountpoint();
    for d in 0..DIRS {
        fs::create_dir(m.join(format!("d{d}"))).unwrap();
    }
    let before = counts(&mp);
    for i in 0..FILES {
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).open(path(&m.path, i)).unwrap();
        f.write_all(&[7u8; 4096]).unwrap();
    }
    // RELEASE is sent after close returns.
    assert!(eventually(|| n(&delta(&before, &counts(&mp)), "release") >= FILES as u64));
    let c = delta(&before, &counts(&mp));
    let files = FILES as u64;
    // Per file: the negative lookup, CREATE (which opens: no OPEN), one WRITE, RELEASE.
    assert_eq!(n(&c, "create"), files, "{c:?}");
    assert_eq!(n(&c, "write"), files, "{c:?}");
    assert_eq!(n(&c, "release"), files, "{c:?}");
    assert_eq!(n(&c, "open"), 0, "{c:?}");
    assert!(n(&c, "lookup") <= files + DIRS as u64, "{c:?}");
    // FLUSH is answered ENOSYS once, and then never sent again.
    assert!(n(&c, "flush") <= 1, "{c:?}");
    // The kernel refreshes a directory's permissions after each entry made in it (one
    // GETATTR of the directory), and reads each new file's security.capability before its
    // first write: never more than one of each per file.
    assert!(n(&c, "getattr") <= files + DIRS as u64, "{c:?}");
    assert!(n(&c, "getxattr") <= files, "{c:?}");
    m.unmount();

    // Cold: a new mount has no dentries or attributes cached in the kernel.
    let m = img.mount_with("nouring");
    let before = counts(&mp);
    for i in 0..FILES {
        assert_eq!(fs::symlink_metadata(path(&m.path, i)).unwrap().len(), 4096);
    }
    let c = delta(&before, &counts(&mp));
    // One LOOKUP per file, whose reply carries the attributes: no GETATTR per stat. (The
    // slack is for dentries the kernel may drop under memory pressure and look up again.)
    let slack = files / 10;
    assert!((files + DIRS as u64..=files + DIRS as u64 + slack).contains(&n(&c, "lookup")), "{c:?}");
    assert!(n(&c, "getattr") <= 2 * DIRS as u64 + 1, "{c:?}");
    let stat_total: u64 = c.values().sum();
    assert!(stat_total <= files + 3 * DIRS as u64 + 1 + slack, "{c:?}");
    // The stats went in inode order: after the first window of inodes, read by the lookup
    // that missed, the read-ahead thread read the next ones (DESIGN §12).
    let ra = &info_json([&mp])["inode_readahead"];
    let (ahead, on_demand) = (ra["windows_ahead"].as_u64().unwrap(), ra["windows_on_demand"].as_u64().unwrap());
    assert!(on_demand >= 1 && ahead >= 2 && ahead + on_demand >= files.div_ceil(64), "{ra}");

    let before = counts(&mp);
    for i in 0..FILES {
        fs::remove_file(path(&m.path, i)).unwrap();
    }
    let c = delta(&before, &counts(&mp));
    // The names are cached from the stats: UNLINK alone, and the directory's GETATTR.
    assert_eq!(n(&c, "unlink"), files, "{c:?}");
    assert!(n(&c, "lookup") <= slack, "{c:?}");
    assert!(n(&c, "getattr") <= files + DIRS as u64, "{c:?}");
    m.unmount();
    img.assert_no_panics();
}

/// What the attribute TTL must never cost: a change made through the mount is seen at once,
/// through another descriptor and by path, however long the kernel may cache attributes
/// (DESIGN §12, "Requests per operation").
#[test]
fn a_change_through_one_descriptor_is_seen_at_once_through_another_and_by_path() {
    use std::os::unix::fs::MetadataExt;
    let img = Image::new();
    let m = img.mount_with("nouring");
    let p = m.join("f");
    fs::write(&p, b"").unwrap();
    let reader = fs::File::open(&p).unwrap();
    let before = fs::metadata(&p).unwrap();
    assert_eq!(before.len(), 0);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut writer = fs::OpenOptions::new().write(true).open(&p).unwrap();
    writer.write_all(&[1u8; 5000]).unwrap();
    let by_path = fs::metadata(&p).unwrap();
    let by_fd = reader.metadata().unwrap();
    for (how, a) in [("path", &by_path), ("other fd", &by_fd)] {
        assert_eq!(a.len(), 5000, "size through the {how}");
        assert!((a.mtime(), a.mtime_nsec()) > (before.mtime(), before.mtime_nsec()), "mtime through the {how}");
    }
    writer.set_len(100).unwrap();
    assert_eq!(reader.metadata().unwrap().len(), 100);
    assert_eq!(fs::symlink_metadata(&p).unwrap().len(), 100);
    drop((reader, writer));
    m.unmount();
    img.assert_no_panics();
}
