//! fsck with snapshots and several PFSs (FORMAT.md "Snapshots and dead lists"): every PFS
//! and snapshot is checked, a block shared by several trees (and dead lists) is read once
//! and is not a finding, the free map is proven with the dead lists counted, and a
//! reference that names a unit of a different block is reported; the namespace of every
//! writable PFS is repaired like ROOT's, and a snapshot's never (FK1, FK2).

use hammer2_test_support::fsck as common;

use common::damage::*;
use common::image::*;
use common::run::*;
use hammer2::format::{FormatOptions, format};
use hammer2::snapshot;
use hammer2::{Creds, Fs, Options};

fn v2_image(ndev: usize, size: u64, copies: u8) -> Img {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths =
        (0..ndev).map(|i| hammer2_test_support::image::sparse_file(dir.path(), &format!("dev{i}.img"), size)).collect();
    let img = Img { dir, paths };
    let opts = FormatOptions { copies: Some(copies), format_version: 2, ..Default::default() };
    format(img.storages(), &opts).expect("format");
    img
}

#[track_caller]
fn assert_clean(img: &Img) -> serde_json::Value {
    let (st, r) = fsck_json(&["-n"], &img.args());
    assert_eq!(st, 0, "fsck is not clean: {}", messages(&r));
    assert!(kinds(&r).is_empty(), "{}", messages(&r));
    r
}

/// A filesystem with two snapshots of ROOT between rewrites and deletions, a second PFS
/// with a snapshot of its own, and one snapshot deleted.
fn with_snapshots(img: &Img) {
    let fs = img.mount();
    let _ = standard_content(&fs);
    snapshot::snapshot(&fs, Some("s1")).expect("s1");
    let c = Creds::default();
    let big = fs.lookup(fs.root(), b"big.bin").expect("big").ino;
    fs.write(big, 1 << 20, &vec![7u8; 300_000]).expect("rewrite");
    fs.unlink(fs.root(), b"small.txt").expect("unlink");
    fs.unlink(fs.root(), b"medium.bin").expect("unlink");
    snapshot::snapshot(&fs, Some("s2")).expect("s2");
    fs.unlink(fs.root(), b"big.bin").expect("unlink");
    let f = fs.create(fs.root(), b"new", 0o644, c).expect("create");
    fs.write(f.ino, 0, &vec![1u8; 100_000]).expect("write");
    snapshot::snapshot(&fs, Some("s3")).expect("s3");
    fs.unlink(fs.root(), b"new").expect("unlink");
    snapshot::create_pfs(&fs, "home").expect("pfs");
    fs.sync().expect("sync");
    fs.unmount().expect("unmount");
    let opts = Options { pfs: "home".into(), background_sync: false, ..Options::default() };
    let home = Fs::mount(img.storages(), opts).expect("mount home");
    let f = home.create(home.root(), b"h", 0o644, c).expect("create");
    home.write(f.ino, 0, &vec![2u8; 200_000]).expect("write");
    snapshot::snapshot(&home, Some("home-1")).expect("snapshot");
    home.unlink(home.root(), b"h").expect("unlink");
    snapshot::delete(&home, "s2").expect("delete s2");
    home.unmount().expect("unmount");
}

#[test]
fn a_filesystem_with_snapshots_and_pfss_checks_clean() {
    let _serial = common::serial();
    let img = v2_image(2, 96 * MIB, 2);
    with_snapshots(&img);
    assert_clean(&img);
}

/// A bad copy of a data block that the live PFS and several snapshots share is read and
/// reported once, and `fsck -y` rewrites it from the good copy.
#[test]
fn a_bad_copy_of_a_shared_block_is_reported_once_and_healed() {
    let _serial = common::serial();
    let img = v2_image(2, 96 * MIB, 2);
    with_snapshots(&img);
    let fs = img.mount();
    let ino = fs.lookup(fs.root(), b"sparse.bin").expect("sparse").ino;
    let blocks = hammer2_test_support::engine::data_blocks(&fs, ino);
    fs.unmount().expect("unmount");
    let shared = *blocks.first().expect("a data block");
    hammer2_test_support::engine::corrupt_copy(&img.storages(), &shared, 0);
    let (st, r) = fsck_json(&["-n"], &img.args());
    assert_ne!(st, 0, "the bad copy is found");
    assert_eq!(kinds(&r), vec!["bad_copy".to_string()], "{}", messages(&r));
    assert_eq!(r["findings"].as_array().unwrap().len(), 1, "reported once: {}", messages(&r));
    let (_, _) = fsck_json(&["-y"], &img.args());
    assert_clean(&img);
}

// ---- Repairs in PFSs other than ROOT (FK1, FK2 in docs/DESIGN.md) ----

fn mount_pfs(img: &Img, pfs: &str, read_only: bool) -> Fs {
    let opts = Options { pfs: pfs.into(), read_only, ..quiet(false) };
    Fs::mount(img.storages(), opts).unwrap_or_else(|e| panic!("mount {pfs}: {e}"))
}

/// Every file of a PFS or snapshot, path -> bytes, read through a read-only mount.
fn files_of(img: &Img, pfs: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let fs = mount_pfs(img, pfs, true);
    let out = hammer2_test_support::engine::snapshot_files(&fs);
    fs.unmount().expect("unmount");
    out
}

/// A version-2 filesystem with a PFS `home` holding `/d/f0..f19` (incompressible
/// contents), and a snapshot `home-1` of it; returns the open `home` mount and the files.
fn home_with_snapshot(img: &Img) -> (Fs, std::collections::BTreeMap<String, Vec<u8>>) {
    let fs = img.mount();
    snapshot::create_pfs(&fs, "home").expect("create home");
    fs.unmount().expect("unmount");
    let home = mount_pfs(img, "home", false);
    let c = Creds::default();
    let d = home.mkdir(home.root(), b"d", 0o755, c).expect("mkdir");
    let mut exp = std::collections::BTreeMap::new();
    for i in 0..20u64 {
        let data = pattern(i, 3000 + 7000 * i as usize);
        let f = home.create(d.ino, format!("f{i}").as_bytes(), 0o644, c).expect("create");
        home.write(f.ino, 0, &data).expect("write");
        exp.insert(format!("/d/f{i}"), data);
    }
    home.sync().expect("sync");
    snapshot::snapshot(&home, Some("home-1")).expect("snapshot");
    (home, exp)
}

/// Damage to a second PFS's namespace made after its snapshot (so only the PFS's own
/// blocks say it): `-n` reports it with the PFS's paths, `-y` repairs it in that PFS, a
/// second `-n` is clean, the PFS's files read back (the unreachable one in its own
/// lost+found), and the snapshot holds exactly what it held.
#[test]
fn a_damaged_namespace_of_a_second_pfs_is_repaired_and_its_snapshot_is_unchanged() {
    let _serial = common::serial();
    let img = v2_image(2, 96 * MIB, 2);
    let (home, exp) = home_with_snapshot(&img);
    set_nlink(&home, "/d/f3", 7);
    add_entry(&home, "/d", b"ghost", 9999, hammer2_format::dtype::REG);
    let lost = lookup(&home, "/d/f5");
    remove_entry(&home, "/d", b"f5");
    home.unmount().expect("unmount");
    let snap_before = files_of(&img, "home-1");
    assert_eq!(snap_before, exp, "the snapshot holds the files as they were");

    let before = img.hash();
    let (st, n) = fsck_json(&["-n"], &img.args());
    assert_eq!(st, 4, "{}", messages(&n));
    assert_eq!(kinds(&n), ["dangling_entry", "link_count", "unreachable"], "{}", messages(&n));
    let all = messages(&n);
    assert!(all.contains("home:/d/ghost") && all.contains("home:/d/f3"), "{all}");
    assert!(all.contains(&format!("in PFS \"home\": file inode {lost} is not reachable")), "{all}");
    let pfs: Vec<&str> = n["findings"].as_array().unwrap().iter().filter_map(|f| f["pfs"].as_str()).collect();
    assert_eq!(pfs, ["home"; 3], "each finding names its PFS");
    assert_eq!(img.hash(), before, "-n changed the images");

    let (st, y) = fsck_json(&["-y"], &img.args());
    assert_eq!(st, 1, "{}\nnotes: {}", messages(&y), y["notes"]);
    assert!(y["findings"].as_array().unwrap().iter().all(|f| f["repair"]["status"] == "repaired"), "{}", messages(&y));
    assert_clean(&img);

    let home = mount_pfs(&img, "home", true);
    assert_eq!(home.getattr(lookup(&home, "/d/f3")).expect("getattr").nlink, 1);
    assert!(home.lookup(lookup(&home, "/d"), b"ghost").is_err(), "the dangling entry is gone");
    home.unmount().expect("unmount");
    let mut want = exp.clone();
    let f5 = want.remove("/d/f5").expect("f5");
    want.insert(format!("/lost+found/#{lost}"), f5);
    assert_eq!(files_of(&img, "home"), want, "home reads back, f5 in its lost+found");
    assert!(
        !files_of(&img, "ROOT").contains_key(&format!("/lost+found/#{lost}")),
        "ROOT is not where home's orphan goes"
    );
    assert_eq!(files_of(&img, "home-1"), snap_before, "the snapshot is unchanged");
}

/// A directory of a second PFS whose newest node (written after the snapshot) is lost is
/// rebuilt from what reads; the older nodes it drops are the snapshot's, so the repair
/// lists them in the dead list instead of freeing them (FK2, SN1): the check after it is
/// clean, the snapshot reads whole, and deleting the snapshot afterwards frees them and
/// leaves a clean filesystem (nothing leaked, nothing freed twice).
#[test]
fn rebuilding_a_directory_of_a_pfs_keeps_the_nodes_its_snapshot_holds() {
    let _serial = common::serial();
    let img = v2_image(1, 96 * MIB, 1);
    let fs = img.mount();
    snapshot::create_pfs(&fs, "home").expect("create home");
    fs.unmount().expect("unmount");
    let home = mount_pfs(&img, "home", false);
    let c = Creds::default();
    let d = home.mkdir(home.root(), b"big", 0o755, c).expect("mkdir").ino;
    for i in 0..1500u64 {
        home.create(d, format!("entry-{i}").as_bytes(), 0o644, c).expect("create");
    }
    home.sync().expect("sync");
    let (_, snap_tid) = snapshot::snapshot(&home, Some("home-1")).expect("snapshot");
    home.create(d, b"after", 0o644, c).expect("create");
    home.sync().expect("sync");
    let nodes = hammer2_test_support::engine::tree_nodes(&home, d);
    home.unmount().expect("unmount");
    let leaves: Vec<_> = nodes.iter().filter(|b| b.level == 1).collect();
    let newer: Vec<_> = leaves.iter().filter(|b| b.modify_tid > snap_tid).collect();
    assert!(leaves.len() >= 3, "{} leaf nodes", leaves.len());
    assert_eq!(newer.len(), 1, "one leaf node was rewritten after the snapshot: {leaves:?}");
    let snap_before = files_of(&img, "home-1");
    assert_eq!(snap_before.len(), 1500);
    spoil_all(&img, newer[0]);

    let (st, n) = fsck_json(&["-n"], &img.args());
    assert_eq!(st, 4, "{}", messages(&n));
    assert_eq!(kinds(&n), ["unreachable", "unreadable"], "{}", messages(&n));
    let (st, y) = fsck_json(&["-y"], &img.args());
    assert_eq!(st, 1, "{}\nnotes: {}", messages(&y), y["notes"]);
    assert_clean(&img);
    assert_eq!(files_of(&img, "home-1"), snap_before, "the snapshot is unchanged");
    let home_files = files_of(&img, "home");
    let in_dir = home_files.keys().filter(|p| p.starts_with("/big/")).count();
    let found = home_files.keys().filter(|p| p.starts_with("/lost+found/")).count();
    assert_eq!(in_dir + found, 1501, "every entry is in /big or in lost+found");
    assert!(found > 0, "the lost node's entries went to lost+found");

    let home = mount_pfs(&img, "home", false);
    snapshot::delete(&home, "home-1").expect("delete the snapshot");
    home.unmount().expect("unmount");
    assert_clean(&img);
}

/// A snapshot is read-only history (FK1): damage it shares with its PFS is repaired in the
/// PFS and reported, not repaired, in the snapshot, which keeps what it holds.
#[test]
fn damage_a_snapshot_holds_is_reported_and_left_to_the_snapshot() {
    let _serial = common::serial();
    let img = v2_image(1, 96 * MIB, 1);
    let fs = img.mount();
    snapshot::create_pfs(&fs, "home").expect("create home");
    fs.unmount().expect("unmount");
    let home = mount_pfs(&img, "home", false);
    let c = Creds::default();
    let f = home.create(home.root(), b"f", 0o644, c).expect("create");
    home.write(f.ino, 0, &pattern(7, 5000)).expect("write");
    home.sync().expect("sync");
    set_nlink(&home, "/f", 3);
    home.sync().expect("sync");
    snapshot::snapshot(&home, Some("home-1")).expect("snapshot");
    home.unmount().expect("unmount");
    let snap_before = files_of(&img, "home-1");

    let (st, y) = fsck_json(&["-y"], &img.args());
    assert_eq!(st, 5, "repaired in home, left in the snapshot: {}", messages(&y));
    let found = y["findings"].as_array().unwrap();
    assert_eq!(found.len(), 2, "{}", messages(&y));
    let left: Vec<_> = found.iter().filter(|f| f["repair"]["status"] == "unrepairable").collect();
    assert_eq!(left.len(), 1, "{}", messages(&y));
    let why = left[0]["repair"]["why"].as_str().unwrap_or_default();
    assert!(why.contains("snapshot \"home-1\"") && why.contains("read-only"), "{why}");
    assert!(left[0]["message"].as_str().unwrap_or_default().contains("home-1:/f"), "{}", messages(&y));

    let (st, n) = fsck_json(&["-n"], &img.args());
    assert_eq!(st, 4, "{}", messages(&n));
    assert_eq!(n["findings"].as_array().unwrap().len(), 1, "only the snapshot's: {}", messages(&n));
    let home = mount_pfs(&img, "home", true);
    assert_eq!(home.getattr(lookup(&home, "/f")).expect("getattr").nlink, 1);
    home.unmount().expect("unmount");
    assert_eq!(files_of(&img, "home-1"), snap_before);
    let snap = mount_pfs(&img, "home-1", true);
    assert_eq!(snap.getattr(lookup(&snap, "/f")).expect("getattr").nlink, 3, "the snapshot is not changed");
    snap.unmount().expect("unmount");
}

/// A clone (`snapshot --writable`) is repaired like any writable PFS; its origin snapshot,
/// and the PFS it was taken of, keep what they hold; deleting the clone and then its origin
/// afterwards leaves a clean filesystem (the repair freed nothing the origin held: SN5).
#[test]
fn a_damaged_namespace_of_a_clone_is_repaired_and_its_origin_is_unchanged() {
    let _serial = common::serial();
    let img = v2_image(1, 96 * MIB, 1);
    let (home, exp) = home_with_snapshot(&img);
    snapshot::snapshot_writable(&home, Some("w")).expect("clone");
    home.unmount().expect("unmount");
    let w = mount_pfs(&img, "w", false);
    set_nlink(&w, "/d/f3", 7);
    let lost = lookup(&w, "/d/f5");
    remove_entry(&w, "/d", b"f5");
    w.unmount().expect("unmount");
    let origin_before = files_of(&img, "w@origin");

    let (st, n) = fsck_json(&["-n"], &img.args());
    assert_eq!(st, 4, "{}", messages(&n));
    assert_eq!(kinds(&n), ["link_count", "unreachable"], "{}", messages(&n));
    assert!(messages(&n).contains("w:/d/f3"), "{}", messages(&n));
    let (st, y) = fsck_json(&["-y"], &img.args());
    assert_eq!(st, 1, "{}\nnotes: {}", messages(&y), y["notes"]);
    assert_clean(&img);

    let mut want = exp.clone();
    let f5 = want.remove("/d/f5").expect("f5");
    want.insert(format!("/lost+found/#{lost}"), f5);
    assert_eq!(files_of(&img, "w"), want, "the clone reads back, f5 in its lost+found");
    assert_eq!(files_of(&img, "w@origin"), origin_before, "the origin is unchanged");
    assert_eq!(files_of(&img, "home"), exp, "the PFS is unchanged");

    let home = mount_pfs(&img, "home", false);
    snapshot::delete(&home, "w").expect("delete the clone");
    snapshot::delete(&home, "w@origin").expect("delete its origin");
    home.unmount().expect("unmount");
    assert_clean(&img);
}
