//! fsck with snapshots and several PFSs (FORMAT.md "Snapshots and dead lists"): every PFS
//! and snapshot is checked, a block shared by several trees (and dead lists) is read once
//! and is not a finding, the free map is proven with the dead lists counted, and a
//! reference that names a unit of a different block is reported.

use hammer2_test_support::fsck as common;

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
