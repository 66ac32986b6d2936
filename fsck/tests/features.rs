//! The header's feature bits against what the filesystem holds (FK3, FK4 in
//! docs/DESIGN.md), on crafted images: a compressed data block under a header without
//! `COMPRESSED`, a compressed block on format version 1, a data block with one copy on a
//! two-copy filesystem without `VARIABLE_COPIES`. `-n` reports each; `-y` sets the bit on
//! version 2 when this build implements it (and the file reads back), and says what to do
//! on version 1.

use hammer2_test_support::fsck as common;

use common::damage::*;
use common::image::*;
use common::run::*;
use hammer2::format::{FormatOptions, format};
use hammer2_format::layout::{FORMAT_VERSION, FORMAT_VERSION_2, feature};

fn image(ndev: usize, copies: u8, version: u32, compressed: bool) -> Img {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = (0..ndev)
        .map(|i| hammer2_test_support::image::sparse_file(dir.path(), &format!("dev{i}.img"), 96 * MIB))
        .collect();
    let img = Img { dir, paths };
    if compressed {
        let opts = FormatOptions { copies: Some(copies), format_version: version, ..Default::default() };
        format(img.storages(), &opts).expect("format");
    } else {
        // The blocks are crafted from what was written: stored raw.
        hammer2_test_support::engine::format_raw(&img.storages(), copies, version);
    }
    img
}

/// A file `/f` of 256 KiB of text (it compresses); returns its inode and content.
fn text_file(img: &Img) -> (u64, Vec<u8>) {
    let data: Vec<u8> = (0..256 * 1024u32).map(|i| b"hammer2 keeps copies "[(i % 21) as usize]).collect();
    let fs = img.mount();
    let f = fs.create(fs.root(), b"f", 0o644, hammer2::Creds::default()).expect("create");
    fs.write(f.ino, 0, &data).expect("write");
    fs.unmount().expect("unmount");
    (f.ino, data)
}

fn header_features(img: &Img) -> u64 {
    common::raw::Raw::open(&img.paths).header.incompat_features
}

fn reads_back(img: &Img, want: &[u8]) {
    let fs = img.mount();
    assert!(read_all(&fs, lookup(&fs, "/f")) == want, "/f reads back");
    fs.unmount().expect("unmount");
}

#[test]
fn a_compressed_block_under_a_header_without_compressed_is_found_and_y_sets_the_bit() {
    let _serial = common::serial();
    let img = image(1, 1, FORMAT_VERSION_2, true);
    let (_, data) = text_file(&img);
    assert_ne!(header_features(&img) & feature::COMPRESSED, 0, "the writer set the bit (Z3)");
    clear_features(&img, feature::COMPRESSED);

    let (st, n) = fsck_json(&["-n"], &img.args());
    assert_eq!(st, 4, "{}", messages(&n));
    assert_eq!(kinds(&n), ["feature_missing"], "{}", messages(&n));
    let msg = n["findings"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("COMPRESSED") && msg.contains("stored compressed") && msg.contains("/f"), "{msg}");

    let (st, y) = fsck_json(&["-y"], &img.args());
    assert_eq!(st, 1, "{}", messages(&y));
    let how = y["findings"][0]["repair"]["how"].as_str().unwrap_or_default();
    assert!(how.contains("set COMPRESSED"), "{how}");
    assert_ne!(header_features(&img) & feature::COMPRESSED, 0);
    let (st, again) = fsck_json(&["-n"], &img.args());
    assert_eq!(st, 0, "{}", messages(&again));
    reads_back(&img, &data);
}

#[test]
fn a_compressed_block_on_version_1_is_an_error_fsck_leaves_to_an_upgrade() {
    let _serial = common::serial();
    let img = image(1, 1, FORMAT_VERSION, false);
    let (ino, _) = text_file(&img);
    store_compressed(&img, ino, 0);

    let (st, n) = fsck_json(&["-n"], &img.args());
    assert_eq!(st, 4, "{}", messages(&n));
    assert_eq!(kinds(&n), ["feature_missing"], "{}", messages(&n));
    assert!(messages(&n).contains("format version 1"), "{}", messages(&n));
    let before = img.hash();
    let (st, y) = fsck_json(&["-y"], &img.args());
    assert_eq!(st, 4, "{}", messages(&y));
    assert_eq!(y["findings"][0]["repair"]["status"], "unrepairable");
    let why = y["findings"][0]["repair"]["why"].as_str().unwrap_or_default();
    assert!(why.contains("hammer2 upgrade"), "{why}");
    assert_eq!(img.hash(), before, "-y wrote nothing on version 1");
}

#[test]
fn a_data_block_with_another_copy_count_needs_variable_copies_and_y_sets_it() {
    let _serial = common::serial();
    let img = image(2, 2, FORMAT_VERSION_2, false);
    let (ino, data) = text_file(&img);
    keep_one_copy(&img, ino, 0);
    assert_eq!(header_features(&img) & feature::VARIABLE_COPIES, 0);

    let (st, n) = fsck_json(&["-n"], &img.args());
    assert_eq!(st, 4, "{}", messages(&n));
    // The dropped copy's units are still marked used: leaked, which -y frees too.
    assert_eq!(kinds(&n), ["feature_missing", "leaked"], "{}", messages(&n));
    assert!(messages(&n).contains("VARIABLE_COPIES"), "{}", messages(&n));

    let (st, y) = fsck_json(&["-y"], &img.args());
    if hammer2::inspect::implemented_features() & feature::VARIABLE_COPIES != 0 {
        assert_eq!(st, 1, "{}", messages(&y));
        assert_ne!(header_features(&img) & feature::VARIABLE_COPIES, 0);
        let (st, again) = fsck_json(&["-n"], &img.args());
        assert_eq!(st, 0, "{}", messages(&again));
    } else {
        // Until this build implements per-file copies, setting the bit would make the
        // filesystem unmountable: the finding is left, the leak repaired.
        assert_eq!(st, 5, "{}", messages(&y));
        let f = y["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "feature_missing").expect("finding");
        assert_eq!(f["repair"]["status"], "unrepairable");
        assert!(f["repair"]["why"].as_str().unwrap_or_default().contains("does not implement"), "{f}");
        assert_eq!(header_features(&img) & feature::VARIABLE_COPIES, 0);
        let (st, again) = fsck_json(&["-n"], &img.args());
        assert_eq!(st, 4, "{}", messages(&again));
        assert_eq!(kinds(&again), ["feature_missing"], "{}", messages(&again));
    }
    reads_back(&img, &data);
}
