//! `df` on a real mount counts free space exactly (S5 in docs/DESIGN.md §10): after files of
//! odd sizes are written and deleted, and after a snapshot holding them is deleted, `df -B1`
//! shows to the byte what it showed before. (Reservations, and so ENOSPC, still count whole
//! free slots: `tests/space_full.rs`.)

use hammer2_test_support as common;

use common::image::{hammer2, ok};
use common::mount::Image;
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1 << 20;

/// `df -B1` of a mount: (used, available) bytes.
fn df(mnt: &Path) -> (u64, u64) {
    let out = Command::new("df").args(["-B1", "--output=used,avail"]).arg(mnt).output().expect("df");
    let text = ok(&out);
    let line = text.lines().nth(1).unwrap_or_else(|| panic!("df printed {text:?}"));
    let v: Vec<u64> = line.split_whitespace().map(|n| n.parse().expect("df number")).collect();
    (v[0], v[1])
}

/// Commits what the mount holds (fsync of the root directory commits the filesystem).
fn commit(mnt: &Path) {
    std::fs::File::open(mnt).expect("open the root").sync_all().expect("fsyncdir");
}

/// Sizes that fill no unit, slot or block exactly.
const SIZES: [usize; 9] = [1, 4095, 4097, 12_345, 65_537, 100_003, 333_333, 1_000_003, 2_345_679];

fn write_files(mnt: &Path) {
    for (i, len) in SIZES.iter().enumerate() {
        let data = common::rng::Rng::new(i as u64 + 1).bytes(*len);
        std::fs::write(mnt.join(format!("odd{i}")), data).expect("write");
    }
    commit(mnt);
}

fn remove_files(mnt: &Path) {
    for i in 0..SIZES.len() {
        std::fs::remove_file(mnt.join(format!("odd{i}"))).expect("remove");
    }
    commit(mnt);
}

#[test]
fn df_after_writing_and_deleting_files_and_a_snapshot_is_exactly_what_it_was() {
    let img = Image::by_mkfs(2, 256 * MIB, 2);
    let m = img.mount();
    commit(&m.path);
    let before = df(&m.path);

    write_files(&m.path);
    let written = df(&m.path);
    let total: u64 = SIZES.iter().map(|&n| n as u64).sum();
    // df counts one copy's worth (the capacity rule, DESIGN §10).
    assert!(written.0 >= before.0 + total, "{total} bytes are used: {before:?} -> {written:?}");
    remove_files(&m.path);
    let after = df(&m.path);
    eprintln!("df -B1 (used, avail): before {before:?}, with the files {written:?}, after deleting them {after:?}");
    assert_eq!(after, before, "df after writing and deleting the files");

    // A snapshot holds the files while they are deleted; deleting it gives their space back.
    write_files(&m.path);
    ok(&hammer2(["snapshot".as_ref(), m.path.as_os_str(), "s".as_ref()]));
    remove_files(&m.path);
    let held = df(&m.path);
    // The files' blocks, and the snapshot's record and the dead list naming them.
    assert!(held.0 >= written.0, "the snapshot holds what the files used: {written:?} -> {held:?}");
    ok(&hammer2(["pfs".as_ref(), "delete".as_ref(), m.path.as_os_str(), "s".as_ref()]));
    let after = df(&m.path);
    eprintln!("df -B1 (used, avail): with the snapshot {held:?}, after deleting it {after:?}");
    assert_eq!(after, before, "df after the snapshot is deleted");
    m.unmount();
}
