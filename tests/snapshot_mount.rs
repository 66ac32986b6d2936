//! Snapshots on a real mount (FUSE, image files, the real binaries): `hammer2 snapshot`
//! while a writer is at work (each snapshot holds every file closed before the command),
//! `hammer2 pfs list --json`, snapshots mounted read-only with `-o ro,pfs=NAME` and read
//! with cmp(1) against the files the writer wrote, a writable mount of a snapshot refused,
//! deletion in random order until the free space is exactly what it was before, and
//! `fsck -n` clean at every stage.

use hammer2_test_support as common;

use common::image::{exit_code, fsck, hammer2, hammer2_json, ok, stderr, stdout};
use common::mount::Image;
use common::rng::Rng;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const MIB: u64 = 1 << 20;

fn fsck_clean(img: &Image) {
    let o = fsck(std::iter::once(OsStr::new("-n")).chain(img.devices.iter().map(|d| d.as_os_str())));
    assert_eq!(exit_code(&o), 0, "fsck -n: {}{}", stdout(&o), stderr(&o));
}

/// The content of file number `i` the writer writes.
fn content(i: usize) -> Vec<u8> {
    let len = 4096 + (i * 7919) % 300_000;
    (0..len).map(|j| ((j * 31 + i * 17) % 251) as u8).collect()
}

/// Free bytes as the last commit's device table records them (exact units; df is exact too,
/// S5, less the metadata reserve).
fn raw_free(mnt: &Path) -> u64 {
    let (code, j) = hammer2_json("info", [mnt]);
    assert_eq!(code, 0, "{j}");
    j["raw_free_bytes"].as_u64().unwrap_or_else(|| panic!("no raw_free_bytes in {j}"))
}

fn df_free(mnt: &Path) -> u64 {
    let out = Command::new("df").args(["-B1", "--output=avail"]).arg(mnt).output().expect("df");
    ok(&out).lines().nth(1).expect("df line").trim().parse().expect("df number")
}

fn pfs_list(mnt: &Path) -> Vec<serde_json::Value> {
    let (code, j) = hammer2_json("pfs", ["list".as_ref(), mnt.as_os_str()]);
    assert_eq!(code, 0, "{j}");
    j["pfs"].as_array().unwrap_or_else(|| panic!("no pfs list in {j}")).clone()
}

fn files_of(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).expect("readdir").map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

#[test]
fn snapshots_during_writes_hold_what_was_written_and_deleting_them_gives_the_space_back() {
    let img = Image::by_mkfs(1, 768 * MIB, 1);
    let m = img.mount();
    let mnt = m.path.clone();
    let fresh_raw = raw_free(&mnt);
    let fresh_df = df_free(&mnt);
    // The writer: files w0, w1, ... written and closed in turn, some rewritten and some
    // deleted as it goes; `closed` counts the files finished.
    let closed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (closed, stop, dir) = (closed.clone(), stop.clone(), mnt.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && i < 400 {
                std::fs::write(dir.join(format!("w{i}")), content(i)).expect("write");
                if i % 7 == 6 {
                    // Rewritten with its own content again: new blocks, the old ones held by
                    // the snapshots taken meanwhile.
                    std::fs::write(dir.join(format!("w{}", i - 3)), content(i - 3)).expect("rewrite");
                }
                i += 1;
                closed.store(i, Ordering::SeqCst);
            }
        })
    };
    // Snapshots while it writes: (name, files closed before the command started).
    let mut snaps: Vec<(String, usize)> = Vec::new();
    for k in 0..6 {
        std::thread::sleep(std::time::Duration::from_millis(150));
        let before = closed.load(Ordering::SeqCst);
        let name = format!("s{k}");
        let (code, j) = hammer2_json("snapshot", [mnt.as_os_str(), name.as_ref()]);
        assert_eq!(code, 0, "snapshot {name}: {j}");
        assert_eq!(j["snapshot"], name.as_str(), "{j}");
        snaps.push((name, before));
    }
    // The default name: the PFS's, then the time.
    let o = hammer2(["snapshot".as_ref(), mnt.as_os_str()]);
    let default_name = ok(&o).trim().to_string();
    assert!(default_name.starts_with("ROOT@") && default_name.ends_with('Z'), "{default_name}");
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer");
    // Deleted after the snapshots: what they hold stays allocated.
    for i in (0..closed.load(Ordering::SeqCst)).step_by(2) {
        std::fs::remove_file(mnt.join(format!("w{i}"))).expect("remove");
    }
    let list = pfs_list(&mnt);
    assert_eq!(list.len(), 8, "ROOT and 7 snapshots: {list:?}");
    for s in list.iter().filter(|p| p["kind"] == "snapshot") {
        assert_eq!(s["origin"], "ROOT");
        assert!(s["create_tid"].as_u64().unwrap() > 1 && s["created"].as_str().unwrap().ends_with('Z'), "{s}");
        assert!(s["would_free_bytes"].is_u64(), "{s}");
        assert!(s["referenced_bytes"].as_u64().unwrap() > 0, "{s}");
    }
    let root = list.iter().find(|p| p["name"] == "ROOT").expect("ROOT");
    assert_eq!(root["mounted"], true);
    // A name in use, and a bad one, are refused with one line and exit status 8.
    for bad in ["s0", "a/b"] {
        let o = hammer2(["pfs".as_ref(), "create".as_ref(), mnt.as_os_str(), bad.as_ref()]);
        assert_eq!(exit_code(&o), 8, "{}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "one line: {}", stderr(&o));
        assert!(stderr(&o).starts_with("hammer2 pfs: "), "{}", stderr(&o));
    }
    m.unmount();
    fsck_clean(&img);

    // Each snapshot, mounted read-only, holds every file closed before it was taken, whole.
    for (name, before) in &snaps {
        let s = img.mount_with(&format!("ro,pfs={name}"));
        let files = files_of(&s.path);
        assert!(files.len() >= *before, "{name}: {} files, {before} were closed before it", files.len());
        for i in 0..*before {
            // w(i) with i % 7 == 3 is rewritten in place (truncated, then written) while the
            // writer makes w(i + 3), before it counts that one closed: a snapshot taken then
            // holds it in the middle of its rewrite, as it may.
            if i % 7 == 3 && i + 4 > *before {
                continue;
            }
            let want = img.dir.path().join("want");
            std::fs::write(&want, content(i)).unwrap();
            let o = Command::new("cmp").arg(&want).arg(s.path.join(format!("w{i}"))).output().expect("cmp");
            assert!(o.status.success(), "{name}: w{i} differs: {}{}", stdout(&o), stderr(&o));
        }
        s.unmount();
    }
    // A snapshot does not mount writable.
    let o = img.try_mount(&img.mountpoint(), "pfs=s0");
    assert!(!o.status.success(), "a writable mount of a snapshot succeeded");
    assert!(String::from_utf8_lossy(&o.stderr).contains("read-only"), "{}", String::from_utf8_lossy(&o.stderr));

    // Deleting the snapshots in random order, then the files: the space comes back exactly.
    let m = img.mount();
    let mut names: Vec<String> = snaps.iter().map(|s| s.0.clone()).chain([default_name]).collect();
    let mut rng = Rng::new(0x5eed_5a95);
    while !names.is_empty() {
        let name = names.remove(rng.next_u64() as usize % names.len());
        let before = raw_free(&m.path);
        let o = hammer2(["pfs".as_ref(), "delete".as_ref(), m.path.as_os_str(), name.as_ref()]);
        ok(&o);
        assert!(raw_free(&m.path) >= before, "deleting {name} took space");
    }
    assert_eq!(pfs_list(&m.path).len(), 1, "only ROOT left");
    for f in files_of(&m.path) {
        std::fs::remove_file(f).expect("remove");
    }
    // Committed (the daemon commits on its own within its sync interval; sync(1) does not
    // reach it, a PFS request commits at once).
    let o = hammer2(["pfs".as_ref(), "create".as_ref(), m.path.as_os_str(), "tmp".as_ref()]);
    ok(&o);
    let o = hammer2(["pfs".as_ref(), "delete".as_ref(), m.path.as_os_str(), "tmp".as_ref()]);
    ok(&o);
    let raw = raw_free(&m.path);
    let df = df_free(&m.path);
    eprintln!("free: fresh {fresh_raw} B raw, {fresh_df} B df; after {raw} B raw, {df} B df");
    assert_eq!(raw, fresh_raw, "the free space is exactly what it was before");
    assert_eq!(df, fresh_df, "df shows exactly what it showed before (S5)");
    m.unmount();
    fsck_clean(&img);
}

/// `hammer2 snapshot --writable`: a clone that mounts writable on its own, takes cp(1)'s
/// writes without changing the PFS, and is deleted (then its origin) back to clean.
#[test]
fn a_writable_snapshot_mounts_writable_and_is_deleted_clean() {
    let img = Image::by_mkfs(1, 256 * MIB, 1);
    let m = img.mount();
    std::fs::write(m.join("a"), content(1)).unwrap();
    let (code, j) = hammer2_json("snapshot", [m.path.as_os_str(), "w".as_ref(), "--writable".as_ref()]);
    assert_eq!(code, 0, "{j}");
    let list = pfs_list(&m.path);
    let w = list.iter().find(|p| p["name"] == "w").expect("w listed");
    assert_eq!((w["kind"].as_str(), w["origin"].as_str()), (Some("clone"), Some("w@origin")));
    m.unmount();
    let w = img.mount_with("pfs=w");
    let o = Command::new("cp").arg(w.join("a")).arg(w.join("b")).output().expect("cp");
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(w.join("a"), b"changed in the clone").unwrap();
    w.unmount();
    fsck_clean(&img);
    let m = img.mount();
    assert_eq!(std::fs::read(m.join("a")).unwrap(), content(1), "the PFS is unchanged");
    assert!(!m.join("b").exists());
    let o = hammer2(["pfs".as_ref(), "delete".as_ref(), m.path.as_os_str(), "w@origin".as_ref()]);
    assert_eq!(exit_code(&o), 8, "the origin of a clone is refused: {}", stderr(&o));
    assert!(stderr(&o).contains("clone"), "{}", stderr(&o));
    for name in ["w", "w@origin"] {
        ok(&hammer2(["pfs".as_ref(), "delete".as_ref(), m.path.as_os_str(), name.as_ref()]));
    }
    m.unmount();
    fsck_clean(&img);
}
