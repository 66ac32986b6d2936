//! Copies at the engine level: verified reads pick a good copy and rewrite the bad ones;
//! scrub reads every copy; a wiped device is rebuilt; with every copy bad, exactly that
//! range fails with EIO and scrub names the file.

use hammer2_test_support as common;

use common::engine::*;
use hammer2::inspect::TreeKind;
use hammer2::scrub;
use hammer2::storage::DynStorage;
use hammer2::{Fs, Options};
use hammer2_format::BlockType;

fn scrub_now(fs: &Fs) -> scrub::ScrubReport {
    hammer2::testing::scrub(fs, &mut |_| {}).expect("scrub")
}

fn repaired_total(fs: &Fs) -> u64 {
    fs.devices().iter().map(|d| d.repaired).sum()
}

fn corrupt_one_copy_of_every_third_block_then_read_back(devs: Vec<DynStorage>, copies: u8) {
    format_copies(&devs, copies);
    let fs = mount(&devs);
    populate(&fs, 1, 20);
    let before = snapshot_files(&fs);
    fs.unmount().unwrap();

    let fs = mount(&devs);
    let mut n = 0;
    for (i, (br, tree)) in all_blocks(&fs).iter().enumerate() {
        if i % 3 == 0 && matches!(tree, TreeKind::Inode(_)) && br.btype == BlockType::Data {
            corrupt_copy(&devs, br, i % usize::from(copies));
            n += 1;
        }
    }
    fs.crash();
    assert!(n > 10, "corrupted {n} blocks");

    let fs = mount(&devs);
    assert_eq!(snapshot_files(&fs), before, "every byte reads back, no error");
    let by_reads = repaired_total(&fs);
    assert!(by_reads > 0, "reads that met a bad copy rewrote it");
    // Reads stop at the first good copy; the scrub reads every copy and repairs the rest.
    let first = scrub_now(&fs);
    assert_eq!(by_reads + first.repaired(), n as u64, "every bad copy was repaired once: {first:?}");
    assert_eq!(repaired_total(&fs), n as u64, "the per-device counters show every repair");
    let second = scrub_now(&fs);
    assert_eq!(second.errors(), 0, "a second scrub finds nothing: {second:?}");
    fs.unmount().unwrap();
}

#[test]
fn two_copies_on_one_device_survive_a_bad_copy_of_many_blocks() {
    corrupt_one_copy_of_every_third_block_then_read_back(mem_devices(1, 256 << 20), 2);
}

#[test]
fn two_copies_on_two_devices_survive_a_bad_copy_of_many_blocks() {
    corrupt_one_copy_of_every_third_block_then_read_back(mem_devices(2, 128 << 20), 2);
}

#[test]
fn scrub_finds_and_repairs_bad_copies_that_no_read_touched() {
    let devs = mem_devices(2, 128 << 20);
    format_copies(&devs, 2);
    let fs = mount(&devs);
    populate(&fs, 2, 15);
    fs.unmount().unwrap();
    let fs = mount(&devs);
    // The mount reads (and so heals) the free map, the PFS table with its records and the
    // root nodes of the inode index and orphan list; everything else waits for a read.
    let roots = hammer2::testing::committed_roots(&fs);
    let read_at_mount =
        |b: &hammer2_format::Blockref| roots.inodes.entries.contains(b) || roots.orphans.entries.contains(b);
    let blocks: Vec<_> = all_blocks(&fs)
        .into_iter()
        .filter(|(b, t)| b.btype != BlockType::FreemapLeaf && *t != TreeKind::PfsTable && !read_at_mount(b))
        .collect();
    let mut n = 0;
    for (i, (br, _)) in blocks.iter().enumerate().filter(|(i, _)| i % 4 == 1) {
        corrupt_copy(&devs, br, 1 - i % 2);
        n += 1;
    }
    fs.crash();
    let fs = mount(&devs);
    let rep = scrub_now(&fs);
    assert_eq!(rep.errors(), n as u64, "{rep:?}");
    assert_eq!(rep.repaired(), n as u64);
    assert_eq!(rep.exit_code(), 1);
    assert_eq!(scrub_now(&fs).errors(), 0, "second scrub is clean");
    assert_consistent(&fs);
}

#[test]
fn metadata_corruption_heals_like_data() {
    let devs = mem_devices(2, 128 << 20);
    format_copies(&devs, 2);
    let fs = mount(&devs);
    populate(&fs, 3, 40);
    let big = fs.mkdir(fs.root(), b"many", 0o755, Default::default()).unwrap();
    for i in 0..1500 {
        fs.create(
            big.ino,
            format!("entry-with-a-name-long-enough-to-need-its-own-block-{i:05}-xxxxxxxx").as_bytes(),
            0o644,
            Default::default(),
        )
        .unwrap();
    }
    let before = snapshot_files(&fs);
    fs.unmount().unwrap();
    let fs = mount(&devs);
    let mut kinds = std::collections::BTreeSet::new();
    for (i, (br, tree)) in all_blocks(&fs).iter().enumerate() {
        if br.btype != BlockType::Data {
            corrupt_copy(&devs, br, i % 2);
            kinds.insert((br.btype.name(), matches!(tree, TreeKind::Freemap)));
        }
    }
    fs.crash();
    for k in ["indirect", "inode", "dirent", "freemap"] {
        assert!(kinds.iter().any(|(n, _)| *n == k), "corrupted some {k} block: {kinds:?}");
    }
    let fs = mount(&devs);
    assert_eq!(snapshot_files(&fs), before);
    let rep = scrub_now(&fs);
    assert_eq!(rep.unrepairable.len(), 0);
    assert_eq!(scrub_now(&fs).errors(), 0);
    assert_consistent(&fs);
    fs.unmount().unwrap();
}

#[test]
fn three_copies_survive_two_bad_copies_of_the_same_blocks() {
    let devs = mem_devices(1, 256 << 20);
    format_copies(&devs, 3);
    let fs = mount(&devs);
    populate(&fs, 4, 15);
    let before = snapshot_files(&fs);
    fs.unmount().unwrap();
    let fs = mount(&devs);
    for (i, (br, _)) in all_blocks(&fs).iter().enumerate() {
        corrupt_copy(&devs, br, i % 3);
        corrupt_copy(&devs, br, (i + 1) % 3);
    }
    fs.crash();
    let fs = mount(&devs);
    assert_eq!(snapshot_files(&fs), before);
    scrub_now(&fs);
    assert_eq!(scrub_now(&fs).errors(), 0);
}

#[test]
fn with_every_copy_of_a_data_block_bad_only_that_range_fails_and_scrub_names_the_file() {
    let devs = mem_devices(2, 128 << 20);
    format_copies(&devs, 2);
    let fs = mount(&devs);
    populate(&fs, 5, 10);
    fs.unmount().unwrap();
    let fs = mount(&devs);
    let d = fs.lookup(fs.root(), b"d5").unwrap();
    let victim = fs.lookup(d.ino, b"f4").unwrap();
    let blocks = data_blocks(&fs, victim.ino);
    let bad = blocks[3];
    corrupt_copy(&devs, &bad, 0);
    corrupt_copy(&devs, &bad, 1);
    fs.crash();
    let fs = mount(&devs);
    let err = fs.read(victim.ino, bad.key + 10, 100).unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    let bs = fs.block_size();
    fs.read(victim.ino, 0, bad.key as usize).expect("the blocks before the bad one read");
    fs.read(victim.ino, bad.key + bs, bs as usize).expect("after the bad block reads");
    let other = fs.lookup(d.ino, b"f3").unwrap();
    fs.read(other.ino, 0, other.size as usize).expect("other files read");
    let rep = scrub_now(&fs);
    assert_eq!(rep.exit_code(), 4);
    assert_eq!(rep.unrepairable.len(), 1);
    assert_eq!(rep.unrepairable[0].path.as_deref(), Some("/d5/f4"));
    assert_eq!(rep.unrepairable[0].offset, Some(bad.key));
}

#[test]
fn a_wiped_device_is_read_around_rebuilt_by_scrub_and_then_carries_the_filesystem_alone() {
    let devs = mem_devices(2, 128 << 20);
    format_copies(&devs, 2);
    let fs = mount(&devs);
    populate(&fs, 6, 20);
    let before = snapshot_files(&fs);
    fs.unmount().unwrap();

    // Wipe device 1 entirely, headers included.
    devs[1].write_at(&vec![0u8; 128 << 20], 0).unwrap();
    let degraded = Options { degraded: true, ..quiet_options() };
    let fs = Fs::mount(vec![devs[0].clone(), devs[1].clone()], degraded.clone()).unwrap();
    assert_eq!(snapshot_files(&fs), before, "everything reads from the other device");
    fs.crash();

    // Scrub with the wiped device adopted as the replacement.
    let fs = Fs::mount(devs.clone(), Options { replace: true, ..quiet_options() }).unwrap();
    let rep = scrub_now(&fs);
    assert!(rep.repaired() > 20, "{rep:?}");
    assert_eq!(rep.unrepairable.len(), 0);
    fs.unmount().unwrap();

    // Now the other device can go: the rebuilt one holds everything.
    devs[0].write_at(&vec![0u8; 128 << 20], 0).unwrap();
    let fs = Fs::mount(vec![devs[1].clone()], degraded).unwrap();
    assert_eq!(snapshot_files(&fs), before);
}

#[test]
fn a_large_cold_read_counts_and_heals_the_bad_copies_it_meets() {
    // The bulk read path reads each block from one chosen copy, spreading a large read over
    // the devices. A bad chosen copy must be counted and healed like on any other read, not
    // silently read around.
    let devs = mem_devices(2, 128 << 20);
    format_copies(&devs, 2);
    let fs = mount(&devs);
    let f = fs.create(fs.root(), b"big", 0o644, Default::default()).unwrap();
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs.write(f.ino, 0, &data).unwrap();
    fs.unmount().unwrap();

    let fs = mount(&devs);
    let blocks = data_blocks(&fs, f.ino);
    for br in &blocks {
        corrupt_copy(&devs, br, 1);
    }
    fs.crash();
    let n = blocks.len() as u64;

    let fs = mount(&devs);
    let errors = |fs: &Fs| fs.devices().iter().map(|d| d.check_errors).sum::<u64>();
    assert_eq!(errors(&fs), 0);
    assert_eq!(fs.read(f.ino, 0, data.len()).unwrap(), data, "every byte reads back");
    let met = errors(&fs);
    assert!(met > 0, "the read met bad copies and counted them");
    assert_eq!(repaired_total(&fs), met, "every bad copy the read met was healed");
    // The scrub finds exactly the bad copies the read did not meet.
    let rep = scrub_now(&fs);
    assert_eq!(rep.errors(), n - met, "{rep:?}");
    assert_eq!(repaired_total(&fs), n);
    assert_eq!(scrub_now(&fs).errors(), 0);
    fs.unmount().unwrap();
}
