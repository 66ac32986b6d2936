//! fsck on format version 2: a version-2 filesystem holding real content, and a version-1
//! one after `hammer2 upgrade`, check clean (the walk reaches every PFS's trees through the
//! PFS table, and the free-map check counts the table and the records); a PFS record whose
//! check code, name or magic is bad is reported; a free-map rebuild keeps the table.

use hammer2_test_support::fsck as common;

use common::image::*;
use common::run::*;
use hammer2::format::{FormatOptions, format};
use hammer2_format::layout::{FORMAT_VERSION, FORMAT_VERSION_2};
use hammer2_test_support::raw_blocks::{reseal_record, rewrite_root_record};

fn v2_image(ndev: usize, size: u64, copies: u8) -> Img {
    image_of_version(ndev, size, copies, FORMAT_VERSION_2)
}

fn image_of_version(ndev: usize, size: u64, copies: u8, version: u32) -> Img {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths =
        (0..ndev).map(|i| hammer2_test_support::image::sparse_file(dir.path(), &format!("dev{i}.img"), size)).collect();
    let img = Img { dir, paths };
    let opts = FormatOptions { copies: Some(copies), format_version: version, ..Default::default() };
    format(img.storages(), &opts).expect("format");
    img
}

#[track_caller]
fn assert_clean(img: &Img) {
    let (st, r) = fsck_json(&["-n"], &img.args());
    assert_eq!(st, 0, "fsck is not clean: {}", messages(&r));
    assert!(kinds(&r).is_empty(), "{}", messages(&r));
}

#[test]
fn a_version2_filesystem_with_content_checks_clean() {
    let _serial = common::serial();
    let img = v2_image(2, 96 * MIB, 2);
    let fs = img.mount();
    let exp = standard_content(&fs);
    fs.unmount().expect("unmount");
    assert_clean(&img);
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn an_upgraded_filesystem_checks_clean() {
    let _serial = common::serial();
    let img = image_of_version(2, 96 * MIB, 2, FORMAT_VERSION);
    let fs = img.mount();
    let exp = standard_content(&fs);
    fs.unmount().expect("unmount");
    assert_clean(&img);
    let out = hammer2::upgrade::upgrade(img.storages()).expect("upgrade");
    assert!(matches!(out, hammer2::upgrade::UpgradeOutcome::Upgraded { .. }));
    assert_clean(&img);
    assert_intact(&img.paths, &exp, &[]);
    assert_clean(&img);
}

/// Rewrites ROOT's record with `f` and makes every check value above it match, so only
/// the record's own rules can find the damage.
fn rewrite_record(img: &Img, f: &dyn Fn(&mut Vec<u8>)) {
    rewrite_root_record(&img.storages(), f);
}

#[test]
fn a_bad_pfs_record_is_reported() {
    let _serial = common::serial();
    type Damage = (&'static str, fn(&mut Vec<u8>), &'static str);
    let cases: [Damage; 3] = [
        ("check code", |b| b[300] ^= 0xff, "check code"),
        (
            "name",
            |b| {
                b[257] = b'/';
                reseal_record(b)
            },
            "name",
        ),
        (
            "magic",
            |b| {
                b[1] = b'X';
                reseal_record(b)
            },
            "magic",
        ),
    ];
    for (what, damage, needle) in cases {
        let img = v2_image(1, 64 * MIB, 1);
        rewrite_record(&img, &damage);
        let (st, r) = fsck_json(&["-n"], &img.args());
        assert_ne!(st, 0, "{what}: fsck found nothing: {}", messages(&r));
        assert!(kinds(&r).contains(&"malformed".to_string()), "{what}: {:?} {}", kinds(&r), messages(&r));
        let m = messages(&r);
        assert!(m.contains("pfs") && m.contains(needle), "{what}: {m}");
    }
}

#[test]
fn a_free_map_rebuild_keeps_the_pfs_table_and_records() {
    let _serial = common::serial();
    let img = v2_image(1, 64 * MIB, 1);
    let fs = img.mount();
    let exp = standard_content(&fs);
    let leaked = common::damage::leak(&fs, 64);
    assert!(leaked > 0);
    fs.unmount().expect("unmount");
    let o = fsck(&["-y"], &img.args());
    assert!(matches!(status(&o), 1 | 0), "{}", text(&o));
    assert_clean(&img);
    assert_intact(&img.paths, &exp, &[]);
}

/// Damage below a PFS record that gets past every check value (the raw walker reseals the
/// inode block, the nodes above it, the record, the table and the headers): fsck finds the
/// wrong link count and repairs it through the engine, which writes a new record.
#[test]
fn damage_below_a_pfs_record_resealed_past_the_check_values_is_found_and_repaired() {
    use common::raw::{Raw, Tree, find};
    use hammer2_format::{BlockType, InodeBlock};
    let _serial = common::serial();
    let img = v2_image(1, 64 * MIB, 1);
    let fs = img.mount();
    let exp = standard_content(&fs);
    let inum = lookup(&fs, "/small.txt");
    fs.unmount().expect("unmount");

    let mut raw = Raw::open(&img.paths);
    let mut nodes = raw.walk();
    assert!(nodes.iter().any(|n| n.tree == Tree::PfsTable && n.br.btype == BlockType::Pfs));
    let i = find(&nodes, |n| n.tree == Tree::Inodes && n.br.btype == BlockType::Inode && n.br.key == inum);
    let mut ino = InodeBlock::decode(&raw.block(&nodes[i].br)).expect("inode");
    ino.nlink = 5;
    raw.reseal(&mut nodes, i, &ino.encode());
    drop(raw);

    let (st, r) = fsck_json(&["-n"], &img.args());
    assert_ne!(st, 0, "the damage was not found: {}", messages(&r));
    let o = fsck(&["-y"], &img.args());
    assert!(matches!(status(&o), 0 | 1), "{}", text(&o));
    assert_clean(&img);
    assert_intact(&img.paths, &exp, &[]);
}
