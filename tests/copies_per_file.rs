//! Copies per file and directory at the engine level (issue 26; FORMAT-V2 "Copies per
//! block", VC1-VC5 in docs/DESIGN.md): a directory's `copies` is inherited by what is made
//! in it, its files' data blocks get that many copies on distinct devices while metadata
//! keeps the filesystem's N; a rewrite brings data already written up or down, gives the
//! space of dropped copies back, touches only the blocks that differ, and a power cut in
//! the middle of one leaves every file whole.
//!
//! Data is stored raw (`compression: Some(None)`): the tests count stored bytes.

use hammer2_test_support as common;

use common::crash::{Fate, Lost, Random, crash_device};
use common::engine::*;
use common::rng::Rng;
use hammer2::format::{FormatOptions, format};
use hammer2::storage::DynStorage;
use hammer2::storage::Storage;
use hammer2::storage::recording::{Op, RecordLog, RecordingStorage};
use hammer2::{Creds, Error, Fs, Options, Rewritten, Setting, testing};
use hammer2_format::BlockType;
use hammer2_format::layout::feature;
use std::collections::BTreeSet;
use std::sync::Arc;

const DEV: u64 = 96 << 20;
/// Bytes of a file one rewrite call covers here (the command uses `hammer2::REWRITE_RANGE`).
const RANGE: u64 = 2 << 20;

fn raw_fs(devs: &[DynStorage], copies: u8) -> Fs {
    let opts = FormatOptions { copies: Some(copies), compression: Some(None), ..Default::default() };
    format(devs.to_vec(), &opts).expect("format");
    mount(devs)
}

fn write_file(fs: &Fs, dir: u64, name: &str, len: usize, seed: u64) -> (u64, Vec<u8>) {
    let data = Rng::new(seed).bytes(len);
    let f = fs.create(dir, name.as_bytes(), 0o644, Creds::default()).expect("create");
    fs.write(f.ino, 0, &data).expect("write");
    (f.ino, data)
}

/// The copy counts of a file's committed data blocks, each with its distinct devices.
fn copy_counts(fs: &Fs, ino: u64) -> BTreeSet<(usize, usize)> {
    data_blocks(fs, ino)
        .iter()
        .map(|b| {
            let p = b.ptr().unwrap();
            let devs: BTreeSet<u8> = p.copies.iter().map(|l| l.device).collect();
            (p.copies.len(), devs.len())
        })
        .collect()
}

/// Rewrites the whole file, range by range (of `RANGE` bytes), as `hammer2 rewrite` does;
/// the sum of what each call did.
fn rewrite(fs: &Fs, ino: u64) -> Rewritten {
    let size = fs.getattr(ino).unwrap().size;
    let mut sum = Rewritten::default();
    let mut off = 0;
    loop {
        let r = fs.rewrite_range(ino, off, RANGE).expect("rewrite");
        sum.blocks += r.blocks;
        sum.bytes += r.bytes;
        sum.seen += r.seen;
        off += RANGE;
        if off >= size {
            return sum;
        }
    }
}

fn metadata_copies(fs: &Fs) -> BTreeSet<usize> {
    all_blocks(fs)
        .iter()
        .filter(|(b, _)| b.btype != BlockType::Data)
        .map(|(b, _)| b.ptr().unwrap().copies.len())
        .collect()
}

fn read_all(fs: &Fs, ino: u64) -> Vec<u8> {
    fs.read(ino, 0, fs.getattr(ino).unwrap().size as usize).unwrap()
}

#[test]
fn a_directory_gives_new_files_its_copies_on_distinct_devices_and_metadata_keeps_n() {
    let devs = mem_devices(3, DEV);
    let fs = raw_fs(&devs, 2);
    let c = Creds::default();
    let three = fs.mkdir(fs.root(), b"three", 0o755, c).unwrap();
    let one = fs.mkdir(fs.root(), b"one", 0o755, c).unwrap();
    fs.set_setting(three.ino, Setting::Copies, "3").unwrap();
    fs.set_setting(one.ino, Setting::Copies, "1").unwrap();
    assert_eq!(fs.get_setting(fs.root(), Setting::Copies).unwrap(), "default (2)");
    assert_eq!(fs.get_setting(three.ino, Setting::Copies).unwrap(), "3");
    // Inherited: a subdirectory and the files in it.
    let sub = fs.mkdir(three.ino, b"sub", 0o755, c).unwrap();
    assert_eq!(fs.get_setting(sub.ino, Setting::Copies).unwrap(), "3");
    let (f3, d3) = write_file(&fs, sub.ino, "f3", 1 << 20, 1);
    let (f1, d1) = write_file(&fs, one.ino, "f1", 1 << 20, 2);
    let (f2, d2) = write_file(&fs, fs.root(), "f2", 1 << 20, 3);
    assert_eq!(fs.get_setting(f3, Setting::Copies).unwrap(), "3");
    fs.sync().unwrap();

    assert_eq!(copy_counts(&fs, f3), BTreeSet::from([(3, 3)]));
    assert_eq!(copy_counts(&fs, f1), BTreeSet::from([(1, 1)]));
    assert_eq!(copy_counts(&fs, f2), BTreeSet::from([(2, 2)]));
    assert_eq!(metadata_copies(&fs), BTreeSet::from([2]), "VC1: metadata keeps N");
    let features = testing::committed_roots(&fs).pfs.unwrap().features;
    assert!(features & feature::VARIABLE_COPIES != 0, "VC3: the commit that wrote them sets the bit");
    assert_consistent(&fs);
    assert_every_copy_verifies(&fs);
    // Four copies need four domains: three devices of one region have three.
    assert!(matches!(fs.set_setting(f3, Setting::Copies, "4"), Err(Error::Invalid(_))));
    assert!(matches!(fs.set_setting(f3, Setting::Copies, "0"), Err(Error::Invalid(_))));
    fs.unmount().unwrap();

    let fs = mount(&devs);
    testing::clear_cache(&fs);
    assert_eq!(read_all(&fs, f3), d3);
    assert_eq!(read_all(&fs, f1), d1);
    assert_eq!(read_all(&fs, f2), d2);
    assert_eq!(fs.get_setting(f1, Setting::Copies).unwrap(), "1");
    // With two of the three devices' copies of every block damaged, the 3-copy file still
    // reads (and heals); the 1-copy file's blocks on those devices do not.
    for b in data_blocks(&fs, f3) {
        corrupt_copy(&devs, &b, 0);
        corrupt_copy(&devs, &b, 1);
    }
    testing::clear_cache(&fs);
    assert_eq!(read_all(&fs, f3), d3);
    fs.unmount().unwrap();
}

#[test]
fn rewrite_brings_data_down_and_up_frees_the_space_and_skips_what_is_right() {
    let devs = mem_devices(3, DEV);
    let fs = raw_fs(&devs, 2);
    let (f, data) = write_file(&fs, fs.root(), "f", 8 << 20, 7);
    let (g, gdata) = write_file(&fs, fs.root(), "g", 1 << 20, 8);
    fs.sync().unwrap();
    let (free_before, used_before) = (fs.statfs().blocks_free, allocated_bytes(&fs));
    let bsize = u64::from(fs.statfs().block_size);
    assert_eq!(copy_counts(&fs, f), BTreeSet::from([(2, 2)]));

    // Down to one copy: every block is rewritten once, the second copies are freed.
    fs.set_setting(f, Setting::Copies, "1").unwrap();
    let r = rewrite(&fs, f);
    assert_eq!((r.blocks, r.bytes), (512, 8 << 20), "{r:?}");
    assert_eq!(copy_counts(&fs, f), BTreeSet::from([(1, 1)]));
    assert_eq!(copy_counts(&fs, g), BTreeSet::from([(2, 2)]), "other files are untouched");
    assert_eq!(read_all(&fs, f), data);
    // Frees apply at the next commit (the one after the rewrite's).
    fs.sync().unwrap();
    testing::commit(&fs).unwrap();
    assert_consistent(&fs);
    let freed = used_before - allocated_bytes(&fs);
    assert!(freed.abs_diff(8 << 20) <= 512 << 10, "8 MiB of second copies freed: {freed}");
    // statfs counts space in blocks of N copies: 8 MiB of copies is about 4 MiB of that.
    let gained = (fs.statfs().blocks_free - free_before) * bsize;
    assert!(gained.abs_diff(4 << 20) <= 512 << 10, "df gained {gained}");

    // A second run finds nothing to do: the cost follows the data concerned (VC5).
    let again = rewrite(&fs, f);
    assert_eq!((again.blocks, again.seen), (0, 512), "{again:?}");

    // Back up to the default, with a part of the file rewritten by a write meanwhile.
    fs.set_setting(f, Setting::Copies, "default").unwrap();
    fs.write(f, 0, &data[..1 << 20]).unwrap();
    fs.sync().unwrap();
    let r = rewrite(&fs, f);
    assert_eq!(r.blocks, 512 - 64, "the 64 blocks written with the new setting are skipped: {r:?}");
    assert_eq!(copy_counts(&fs, f), BTreeSet::from([(2, 2)]));
    fs.sync().unwrap();
    testing::commit(&fs).unwrap();
    let used = allocated_bytes(&fs);
    assert!(used.abs_diff(used_before) <= 512 << 10, "space in use returns: {used} vs {used_before}");
    let free = fs.statfs().blocks_free;
    assert!((free.abs_diff(free_before) * bsize) <= 512 << 10, "df returns: {free} vs {free_before}");
    // The bit stays once set (FORMAT.md: a bit, once set, stays set).
    assert!(testing::committed_roots(&fs).pfs.unwrap().features & feature::VARIABLE_COPIES != 0);
    assert_consistent(&fs);
    assert_every_copy_verifies(&fs);
    fs.unmount().unwrap();
    let fs = mount(&devs);
    testing::clear_cache(&fs);
    assert_eq!(read_all(&fs, f), data);
    assert_eq!(read_all(&fs, g), gdata);
    // Three devices of one region each: four copies have no fourth domain.
    assert!(matches!(fs.set_setting(f, Setting::Copies, "4"), Err(Error::Invalid(_))));
    fs.unmount().unwrap();
}

/// Bytes allocated on every device (every copy).
fn allocated_bytes(fs: &Fs) -> u64 {
    let mut units = 0;
    testing::for_each_unit(fs, &mut |_, _, allocated| units += u64::from(allocated));
    units * 4096
}

#[test]
fn one_device_with_two_copies_keeps_one_copy_files_in_the_first_region() {
    // Pinned slots (one device, N = 2, two regions): a 1-copy block takes slot 0.
    let devs = mem_devices(1, DEV);
    let fs = raw_fs(&devs, 2);
    let d = fs.mkdir(fs.root(), b"d", 0o755, Creds::default()).unwrap();
    fs.set_setting(d.ino, Setting::Copies, "1").unwrap();
    let (f, data) = write_file(&fs, d.ino, "f", 2 << 20, 9);
    fs.sync().unwrap();
    let half = DEV / 2;
    for b in data_blocks(&fs, f) {
        let p = b.ptr().unwrap();
        assert_eq!(p.copies.len(), 1);
        assert!(p.copies.as_slice()[0].offset < half, "slot 0 lies in region 0");
    }
    assert_eq!(metadata_copies(&fs), BTreeSet::from([2]));
    assert_eq!(read_all(&fs, f), data);
    assert_consistent(&fs);
    fs.unmount().unwrap();
}

#[test]
fn version_1_refuses_the_copies_setting() {
    let devs = mem_devices(1, DEV);
    let opts = FormatOptions { copies: Some(1), format_version: 1, ..Default::default() };
    format(devs.clone(), &opts).expect("format");
    let fs = mount(&devs);
    assert!(matches!(fs.set_setting(fs.root(), Setting::Copies, "2"), Err(Error::FormatVersion1)));
    fs.unmount().unwrap();
}

#[test]
fn a_power_cut_during_a_rewrite_leaves_every_file_whole_and_a_rerun_finishes() {
    let mem = mem_devices(2, 48 << 20);
    let opts = FormatOptions { copies: Some(2), compression: Some(None), ..Default::default() };
    format(mem.clone(), &opts).unwrap();
    let (want, f) = {
        let fs = mount(&mem);
        let (f, data) = write_file(&fs, fs.root(), "big", 3 * RANGE as usize - 12345, 11);
        let (_, small) = write_file(&fs, fs.root(), "small", 70_000, 12);
        fs.unmount().unwrap();
        (std::collections::BTreeMap::from([("/big".to_string(), data), ("/small".to_string(), small)]), f)
    };
    let bases: Vec<Arc<Vec<u8>>> = mem
        .iter()
        .map(|m| {
            let mut v = vec![0u8; m.size() as usize];
            m.read_at(&mut v, 0).unwrap();
            Arc::new(v)
        })
        .collect();
    let log = RecordLog::new();
    let devs: Vec<DynStorage> = mem
        .iter()
        .enumerate()
        .map(|(i, m)| Arc::new(RecordingStorage::new(m.clone(), i, log.clone())) as DynStorage)
        .collect();
    let fs = Fs::mount(devs, quiet_options()).unwrap();
    fs.set_setting(f, Setting::Copies, "1").unwrap();
    let r = rewrite(&fs, f);
    assert_eq!(r.blocks, data_blocks(&fs, f).len() as u64);
    fs.unmount().unwrap();
    let events = log.events();
    let flushes: Vec<usize> =
        events.iter().enumerate().filter(|(_, e)| matches!(e.op, Op::Flush)).map(|(i, _)| i + 1).collect();
    assert!(flushes.len() >= 6, "three ranges, each its own commit");

    let check = |devs: Vec<DynStorage>, what: &str| -> Fs {
        let fs = Fs::mount(devs, Options { read_only: true, ..quiet_options() })
            .unwrap_or_else(|e| panic!("{what}: does not mount: {e}"));
        assert!(snapshot_files(&fs) == want, "{what}: a file changed");
        assert_consistent(&fs);
        assert_every_copy_verifies(&fs);
        let counts: BTreeSet<usize> = copy_counts(&fs, f).into_iter().map(|(n, _)| n).collect();
        assert!(counts.is_subset(&BTreeSet::from([1, 2])), "{what}: {counts:?}");
        fs
    };
    let mut states = 0;
    let mut partly = 0;
    let mut points = flushes.clone();
    points.push(0);
    let mut rng = Rng::new(0x2626);
    for i in 0..points.len() + 60 {
        let (p, mut fate): (usize, Box<dyn Fate>) = match points.get(i) {
            Some(&p) => (p, Box::new(Lost)),
            None => (1 + rng.next_u64() as usize % events.len(), Box::new(Random(Rng::new(rng.next_u64())))),
        };
        let devs: Vec<DynStorage> =
            (0..2).map(|d| Arc::new(crash_device(&bases[d], &events, p, d, fate.as_mut())) as DynStorage).collect();
        let fs = check(devs.clone(), &format!("cut at event {p}"));
        let counts: BTreeSet<usize> = copy_counts(&fs, f).into_iter().map(|(n, _)| n).collect();
        partly += usize::from(counts.len() == 2);
        fs.crash();
        states += 1;
        // Half-way states: mounted writable, the rerun finishes the job.
        if counts.len() == 2 && partly <= 3 {
            let fs = Fs::mount(devs, quiet_options()).unwrap();
            let r = rewrite(&fs, f);
            assert!(r.blocks > 0 && r.blocks < data_blocks(&fs, f).len() as u64, "{r:?}");
            assert_eq!(copy_counts(&fs, f), BTreeSet::from([(1, 1)]));
            assert!(snapshot_files(&fs) == want);
            assert_consistent(&fs);
            fs.unmount().unwrap();
        }
    }
    assert!(partly > 0, "some cut fell between two ranges' commits");
    eprintln!("explored {states} crash states of a rewrite, {partly} of them half-way");
}

#[test]
fn a_snapshot_keeps_its_copies_when_a_rewrite_lowers_the_file_s() {
    let devs = mem_devices(2, DEV);
    let fs = raw_fs(&devs, 2);
    let (f, data) = write_file(&fs, fs.root(), "f", 4 << 20, 21);
    let (name, _) = hammer2::snapshot::snapshot(&fs, Some("before")).unwrap();
    let used = allocated_bytes(&fs);
    fs.set_setting(f, Setting::Copies, "1").unwrap();
    let r = rewrite(&fs, f);
    assert_eq!(r.blocks, 256);
    fs.sync().unwrap();
    testing::commit(&fs).unwrap();
    // SN1: the old 2-copy blocks stay for the snapshot; the file's new 1-copy blocks are
    // new space (4 MiB), nothing is freed.
    let grown = allocated_bytes(&fs) - used;
    assert!(grown.abs_diff(4 << 20) <= 512 << 10, "grown by {grown}");
    // The walk reaches the inode's blocks in both trees: ROOT's with one copy, the
    // snapshot's (the same inode number in its own tree) still with two.
    assert_eq!(copy_counts(&fs, f), BTreeSet::from([(1, 1), (2, 2)]));
    assert_consistent(&fs);
    fs.unmount().unwrap();
    let snap = Fs::mount(devs.clone(), Options { read_only: true, pfs: name, ..quiet_options() }).unwrap();
    // The snapshot's tree still names the file's old blocks, with two copies each.
    assert_eq!(every_reference_copies(&snap, f), BTreeSet::from([1, 2]), "ROOT's file and the snapshot's");
    assert_eq!(read_all(&snap, f), data);
    snap.unmount().unwrap();
    // Deleting the snapshot frees the blocks it alone held: the second copies go for good.
    let fs = mount(&devs);
    hammer2::snapshot::delete(&fs, "before").unwrap();
    fs.sync().unwrap();
    testing::commit(&fs).unwrap();
    assert!(allocated_bytes(&fs) < used, "{} vs {used}", allocated_bytes(&fs));
    assert_eq!(read_all(&fs, f), data);
    assert_consistent(&fs);
    fs.unmount().unwrap();
}

/// The copy counts of the DATA references of inode `inum` in every tree that holds it (a
/// snapshot's too), each reference once per tree.
fn every_reference_copies(fs: &Fs, inum: u64) -> BTreeSet<usize> {
    use hammer2::inspect::{Ctx, TreeKind, Visitor, walk_every_reference};
    struct Counts<'a>(&'a Fs, u64, BTreeSet<usize>);
    impl Visitor for Counts<'_> {
        fn visit(&mut self, br: &hammer2_format::Blockref, ctx: &Ctx) -> hammer2::Result<Option<Arc<[u8]>>> {
            let Some(p) = br.ptr() else { return Ok(None) };
            if ctx.tree == TreeKind::Inode(self.1) && br.btype == BlockType::Data {
                self.2.insert(p.copies.len());
            }
            Ok(Some(testing::read_block(self.0, br)?))
        }
    }
    let mut c = Counts(fs, inum, BTreeSet::new());
    walk_every_reference(&testing::committed_roots(fs), &mut c).unwrap();
    c.2
}

#[test]
fn a_device_holding_the_only_copy_of_one_copy_files_is_not_taken_offline() {
    // O2 with per-file copies: two devices, N = 2, a file with one copy (slot 0: device 0).
    let devs = mem_devices(2, DEV);
    let fs = raw_fs(&devs, 2);
    let d = fs.mkdir(fs.root(), b"d", 0o755, Creds::default()).unwrap();
    fs.set_setting(d.ino, Setting::Copies, "1").unwrap();
    let (f, data) = write_file(&fs, d.ino, "f", 1 << 20, 31);
    fs.sync().unwrap();
    let e = fs.device_offline(0).unwrap_err();
    assert!(matches!(e, hammer2::DeviceError::LastCopy { index: 0, .. }), "{e}");
    assert!(e.to_string().contains("64 block(s) of files with fewer copies"), "{e}");
    // Raised and rewritten, the file has a copy elsewhere: the device may go.
    fs.set_setting(f, Setting::Copies, "2").unwrap();
    rewrite(&fs, f);
    fs.device_offline(0).expect("every block has a copy on device 1");
    testing::clear_cache(&fs);
    assert_eq!(read_all(&fs, f), data);
    fs.unmount().unwrap();
}

#[test]
fn rewrite_compresses_what_compresses_and_leaves_incompressible_blocks_alone() {
    // Formatted with data stored raw; the files then ask for lz4.
    let devs = mem_devices(2, DEV);
    let fs = raw_fs(&devs, 2);
    let text: Vec<u8> = b"fn main() { println!(\"copies\"); }\n".iter().copied().cycle().take(2 << 20).collect();
    let t = fs.create(fs.root(), b"text", 0o644, Creds::default()).unwrap();
    fs.write(t.ino, 0, &text).unwrap();
    let (noise, noise_data) = write_file(&fs, fs.root(), "noise", 2 << 20, 41);
    fs.sync().unwrap();
    assert!(data_blocks(&fs, t.ino).iter().all(|b| b.compression().is_none()));
    fs.set_setting(t.ino, Setting::Compression, "lz4").unwrap();
    fs.set_setting(noise, Setting::Compression, "lz4").unwrap();
    let r = rewrite(&fs, t.ino);
    assert_eq!(r.blocks, 128, "{r:?}");
    assert!(data_blocks(&fs, t.ino).iter().all(|b| b.compression().is_some()));
    // Random data: read and tried, never written again.
    let r = rewrite(&fs, noise);
    assert_eq!((r.blocks, r.seen), (0, 128), "{r:?}");
    assert!(data_blocks(&fs, noise).iter().all(|b| b.compression().is_none()));
    // Back to raw: the compressed blocks are rewritten raw.
    fs.set_setting(t.ino, Setting::Compression, "none").unwrap();
    assert_eq!(rewrite(&fs, t.ino).blocks, 128);
    assert!(data_blocks(&fs, t.ino).iter().all(|b| b.compression().is_none()));
    testing::clear_cache(&fs);
    assert_eq!(read_all(&fs, t.ino), text);
    assert_eq!(read_all(&fs, noise), noise_data);
    assert_consistent(&fs);
    fs.unmount().unwrap();
}

#[test]
fn a_file_with_more_copies_runs_out_of_space_at_write_not_in_the_commit() {
    // VC4: three devices, N = 2, a file with three copies fills them; the write that no
    // longer fits is ENOSPC and every commit succeeds.
    let devs = mem_devices(3, 48 << 20);
    let fs = raw_fs(&devs, 2);
    let d = fs.mkdir(fs.root(), b"d", 0o755, Creds::default()).unwrap();
    fs.set_setting(d.ino, Setting::Copies, "3").unwrap();
    let f = fs.create(d.ino, b"f", 0o644, Creds::default()).unwrap();
    let chunk = Rng::new(51).bytes(1 << 20);
    let mut written = 0u64;
    let full = loop {
        match fs.write(f.ino, written, &chunk) {
            Ok(n) if n == chunk.len() => written += n as u64,
            Ok(n) => {
                written += n as u64;
                break fs.write(f.ino, written, &chunk).unwrap_err();
            }
            Err(e) => break e,
        }
        assert!(written < 200 << 20, "never full");
    };
    assert!(matches!(full, Error::NoSpace), "{full:?}");
    fs.sync().expect("the commit of what was accepted fits");
    assert!(written >= 20 << 20, "three copies of {written} bytes on 3 x 48 MiB");
    eprintln!("accepted {written} bytes with three copies on 3 x 48 MiB");
    assert_eq!(copy_counts(&fs, f.ino), BTreeSet::from([(3, 3)]));
    assert_consistent(&fs);
    let size = fs.getattr(f.ino).unwrap().size;
    assert_eq!(size, written);
    fs.unmount().unwrap();
    let fs = mount(&devs);
    assert_eq!(fs.read(f.ino, 0, chunk.len()).unwrap(), chunk);
    fs.unmount().unwrap();
}
