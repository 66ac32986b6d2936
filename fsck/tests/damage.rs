//! One kind of damage per test, on real image files, through the real binary: `-n`
//! reports exactly that (exit 4) and writes nothing; `-y` repairs it (exit 1) or says it
//! cannot (exit 4); a second run agrees; the data that was intact still is.

use hammer2_test_support::fsck as common;

use common::damage::*;
use common::image::*;
use common::run::*;
use hammer2_format::{BlockType, dtype};
use serde_json::Value;

struct Expect {
    /// The exact set of finding kinds `-n` reports.
    kinds: &'static [&'static str],
    /// Exit status of `-y`.
    yes: i32,
    /// Exit status of `-n` after `-y`.
    after: i32,
    /// Exit status of `-p` (run on a copy of the damaged images), when tested.
    preen: Option<i32>,
}

/// Runs -n, -p (on a copy), -y, -n again; checks statuses, findings and the untouched
/// image. Returns the reports of the first -n and of -y.
fn cycle(img: &Img, e: &Expect) -> (Value, Value) {
    let before = img.hash();
    let (st, n) = fsck_json(&["-n"], &img.args());
    assert_eq!(kinds(&n), e.kinds, "-n findings:\n{}", messages(&n));
    assert_eq!(st, 4, "-n exit status; findings:\n{}", messages(&n));
    assert_eq!(img.hash(), before, "-n changed the image");
    assert!(n["findings"].as_array().is_some_and(|a| a.iter().all(|f| f["repair"]["status"] != "repaired")));

    if let Some(p) = e.preen {
        let copy = tempfile::tempdir().expect("tempdir");
        let paths: Vec<String> = img
            .paths
            .iter()
            .enumerate()
            .map(|(i, src)| {
                let dst = copy.path().join(format!("copy{i}.img"));
                std::fs::copy(src, &dst).expect("copy image");
                dst.display().to_string()
            })
            .collect();
        let (st, r) = fsck_json(&["-p"], &paths);
        assert_eq!(st, p, "-p exit status; findings:\n{}", messages(&r));
    }

    let (st, y) = fsck_json(&["-y"], &img.args());
    assert_eq!(st, e.yes, "-y exit status; findings:\n{}\nnotes: {}", messages(&y), y["notes"]);
    let (st, again) = fsck_json(&["-n"], &img.args());
    assert_eq!(st, e.after, "-n after -y; findings:\n{}", messages(&again));
    if e.after == 0 {
        assert_eq!(again["findings"].as_array().map(Vec::len), Some(0));
    }
    (n, y)
}

fn standard_img(ndev: usize, copies: u8) -> (Img, Expected) {
    standard(ndev, 128 * MIB, copies)
}

#[test]
fn a_clean_filesystem_after_real_use_has_no_findings_and_no_mode_writes_anything() {
    let _serial = common::serial();
    for (ndev, copies) in [(1, 1), (1, 2), (2, 2)] {
        let (img, exp) = standard_img(ndev, copies);
        let before = img.hash();
        for mode in ["-n", "-p", "-y"] {
            let (st, r) = fsck_json(&[mode], &img.args());
            assert_eq!(st, 0, "{mode} on {ndev} device(s), copies {copies}:\n{}", messages(&r));
            assert_eq!(r["findings"].as_array().map(Vec::len), Some(0));
            assert!(r["counts"]["inodes"].as_u64().unwrap_or(0) > 60);
            assert_eq!(img.hash(), before, "{mode} wrote to a clean filesystem");
        }
        let o = fsck(&[], &img.args());
        assert_eq!(status(&o), 0, "no option means -n: {}", text(&o));
        assert!(text(&o).contains("0 error(s) found"), "{}", text(&o));
        assert_intact(&img.paths, &exp, &[]);
    }
}

#[test]
fn a_bad_copy_of_a_data_block_is_reported_and_rewritten_from_the_good_one() {
    let _serial = common::serial();
    let (img, exp) = standard_img(2, 2);
    let mut br = None;
    with_engine(&img, |fs| br = Some(data_ref(fs, "/big.bin", 1 << 20)));
    let br = br.expect("ref");
    spoil_copy(&img, &br, 1);
    let (n, y) = cycle(&img, &Expect { kinds: &["bad_copy"], yes: 1, after: 0, preen: Some(1) });
    let msg = n["findings"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("/big.bin") && msg.contains("offset 1048576") && msg.contains("dev1.img"), "{msg}");
    assert_eq!(y["findings"][0]["repair"]["status"], "repaired");
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn a_bad_copy_of_metadata_is_rewritten_on_one_device_with_two_copies() {
    let _serial = common::serial();
    let (img, exp) = standard_img(1, 2);
    let ino = {
        let fs = img.mount();
        let i = lookup(&fs, "/dir");
        fs.unmount().expect("unmount");
        i
    };
    let (node, inode) = (indirect_of(&img, ino, 0), inode_block(&img, ino));
    spoil_copy(&img, &node, 0);
    spoil_copy(&img, &inode, 1);
    let (n, _) = cycle(&img, &Expect { kinds: &["bad_copy"], yes: 1, after: 0, preen: Some(1) });
    assert_eq!(n["errors_found"], 2, "{}", messages(&n));
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn every_copy_of_a_data_block_bad_is_reported_with_file_and_offset_and_left_alone() {
    let _serial = common::serial();
    let (img, exp) = standard_img(1, 2);
    let mut br = None;
    with_engine(&img, |fs| br = Some(data_ref(fs, "/big.bin", 2 << 20)));
    spoil_all(&img, &br.expect("ref"));
    let (n, y) = cycle(&img, &Expect { kinds: &["unreadable"], yes: 4, after: 4, preen: Some(4) });
    for r in [&n, &y] {
        let msg = r["findings"][0]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("/big.bin") && msg.contains("offset 2097152"), "{msg}");
    }
    assert_eq!(y["findings"][0]["repair"]["status"], "unrepairable");
    assert_intact(&img.paths, &exp, &["/big.bin"]);
    // The damage stays reported until the file is gone.
    with_engine(&img, |fs| fs.unlink(fs.root(), b"big.bin").expect("unlink"));
    let (st, r) = fsck_json(&["-n"], &img.args());
    assert_eq!(st, 0, "{}", messages(&r));
}

#[test]
fn a_bad_inode_block_loses_that_file_only() {
    let _serial = common::serial();
    let (img, exp) = standard_img(1, 1);
    let ino = {
        let fs = img.mount();
        let i = lookup(&fs, "/dir/f7");
        fs.unmount().expect("unmount");
        i
    };
    spoil_all(&img, &inode_block(&img, ino));
    let (n, y) = cycle(&img, &Expect { kinds: &["unreadable"], yes: 1, after: 0, preen: Some(4) });
    let msg = n["findings"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("inode block") && msg.contains("/dir/f7"), "{msg}");
    let how = y["findings"][0]["repair"]["how"].as_str().unwrap_or_default();
    assert!(how.contains("removed inode"), "{how}");
    assert_intact(&img.paths, &exp, &["/dir/f7"]);
}

#[test]
fn a_bad_directory_block_sends_the_entries_below_it_to_lost_found() {
    let _serial = common::serial();
    // A directory big enough for several nodes (512 entries each); the middle one is lost.
    let img = Img::new(1, 128 * MIB, 1);
    let mut exp = Expected::new();
    let dir = {
        let fs = img.mount();
        let d = fs.mkdir(fs.root(), b"big", 0o755, hammer2::Creds::default()).expect("mkdir");
        for i in 0..1200u64 {
            let data = pattern(i, 10 + (i as usize % 50));
            let f =
                fs.create(d.ino, format!("entry-{i}").as_bytes(), 0o644, hammer2::Creds::default()).expect("create");
            fs.write(f.ino, 0, &data).expect("write");
            exp.insert(format!("/big/entry-{i}"), data);
        }
        fs.unmount().expect("unmount");
        d.ino
    };
    spoil_all(&img, &indirect_of(&img, dir, 1));
    let (n, _) = cycle(&img, &Expect { kinds: &["unreachable", "unreadable"], yes: 1, after: 0, preen: Some(4) });
    let lost = n["findings"].as_array().map_or(0, |a| a.iter().filter(|f| f["kind"] == "unreachable").count());
    assert!(lost > 100 && lost < 1200, "{lost} entries lost");
    // Every file is either where it was or in lost+found, with its content.
    let found = lost_found(&img.paths);
    assert_eq!(found.len(), lost, "lost+found holds {:?}", found.keys());
    let fs = img.mount();
    let mut missing = Vec::new();
    for (p, want) in &exp {
        let name = p.trim_start_matches("/big/");
        if fs.lookup(dir, name.as_bytes()).is_err() {
            assert!(found.values().any(|v| v == want), "{p} is neither in /big nor in lost+found");
            missing.push(p.as_str());
        }
    }
    fs.unmount().expect("unmount");
    assert_eq!(missing.len(), lost);
    assert_intact(&img.paths, &exp, &missing);
}

#[test]
fn a_leaked_block_is_freed() {
    let _serial = common::serial();
    for (ndev, copies) in [(1, 1), (2, 2)] {
        let (img, exp) = standard_img(ndev, copies);
        let mut off = 0;
        with_engine(&img, |fs| off = leak(fs, 3));
        let (n, _) = cycle(&img, &Expect { kinds: &["leaked"], yes: 1, after: 0, preen: Some(1) });
        assert_eq!(n["findings"][0]["offset"], off);
        assert_eq!(n["findings"][0]["bytes"], 3 * 4096);
        assert_intact(&img.paths, &exp, &[]);
    }
}

#[test]
fn a_wrong_link_count_is_set_from_the_entries() {
    let _serial = common::serial();
    for (ndev, copies) in [(1, 1), (2, 2)] {
        let (img, exp) = standard_img(ndev, copies);
        with_engine(&img, |fs| set_nlink(fs, "/dir/f3", 5));
        let (n, _) = cycle(&img, &Expect { kinds: &["link_count"], yes: 1, after: 0, preen: Some(1) });
        assert_eq!(n["findings"][0]["recorded"], 5);
        assert_eq!(n["findings"][0]["actual"], 1);
        assert_intact(&img.paths, &exp, &[]);
    }
}

#[test]
fn a_hole_in_the_free_map_under_a_used_block_is_filled() {
    let _serial = common::serial();
    for (ndev, copies) in [(1, 1), (2, 2)] {
        let (img, exp) = standard_img(ndev, copies);
        with_engine(&img, |fs| {
            let br = data_ref(fs, "/medium.bin", 0);
            free_map_hole(fs, &br);
        });
        cycle(&img, &Expect { kinds: &["marked_free"], yes: 1, after: 0, preen: Some(1) });
        assert_intact(&img.paths, &exp, &[]);
    }
}

#[test]
fn a_stale_device_is_reported_with_what_it_misses_and_left_to_resync() {
    let _serial = common::serial();
    let (img, exp) = standard_img(2, 2);
    {
        let fs = mount(&img.paths[..1], true);
        let f = fs.create(fs.root(), b"while-away", 0o644, hammer2::Creds::default()).expect("create");
        fs.write(f.ino, 0, &pattern(9, 100_000)).expect("write");
        fs.unmount().expect("unmount");
    }
    let (n, _) = cycle(&img, &Expect { kinds: &["device_stale", "missing_copies"], yes: 4, after: 4, preen: Some(4) });
    let all = messages(&n);
    assert!(all.contains("dev1.img") && all.contains("hammer2 resync"), "{all}");
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn an_entry_naming_no_inode_is_dropped_by_y_but_not_by_p() {
    let _serial = common::serial();
    let (img, exp) = standard_img(1, 1);
    with_engine(&img, |fs| add_entry(fs, "/dir", b"ghost", 9999, dtype::REG));
    let (n, _) = cycle(&img, &Expect { kinds: &["dangling_entry"], yes: 1, after: 0, preen: Some(4) });
    let msg = n["findings"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("/dir/ghost") && msg.contains("9999"), "{msg}");
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn an_inode_no_directory_names_goes_to_lost_found() {
    let _serial = common::serial();
    let (img, exp) = standard_img(1, 1);
    let mut ino = 0;
    with_engine(&img, |fs| {
        ino = lookup(fs, "/dir/f9");
        remove_entry(fs, "/dir", b"f9");
    });
    cycle(&img, &Expect { kinds: &["unreachable"], yes: 1, after: 0, preen: Some(4) });
    let found = lost_found(&img.paths);
    assert_eq!(found.get(&format!("#{ino}")), Some(&exp["/dir/f9"]), "{:?}", found.keys());
    assert_intact(&img.paths, &exp, &["/dir/f9"]);
}

#[test]
fn a_directory_named_twice_keeps_the_entry_its_parent_link_agrees_with() {
    let _serial = common::serial();
    let (img, exp) = standard_img(1, 1);
    with_engine(&img, |fs| {
        let moved = lookup(fs, "/moved");
        add_entry(fs, "/moved/deeper", b"again", moved, dtype::DIR);
    });
    let (n, _) = cycle(&img, &Expect { kinds: &["dir_linked_twice"], yes: 1, after: 0, preen: Some(4) });
    let msg = n["findings"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("/moved/deeper/again"), "{msg}");
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn a_directory_loop_cut_off_from_the_root_is_reconnected_in_lost_found() {
    let _serial = common::serial();
    let (img, exp) = standard_img(1, 1);
    with_engine(&img, |fs| {
        let c = hammer2::Creds::default();
        let a = fs.mkdir(fs.root(), b"loopa", 0o755, c).expect("mkdir");
        let b = fs.mkdir(a.ino, b"loopb", 0o755, c).expect("mkdir");
        let f = fs.create(a.ino, b"inside", 0o644, c).expect("create");
        fs.write(f.ino, 0, b"kept through the loop").expect("write");
        fs.sync().expect("sync");
        add_entry(fs, "/loopa/loopb", b"back", a.ino, dtype::DIR);
        set_parent(fs, "/loopa", b.ino);
        remove_entry(fs, "/", b"loopa");
    });
    let (n, _) = cycle(&img, &Expect { kinds: &["unreachable"], yes: 1, after: 0, preen: Some(4) });
    assert!(messages(&n).contains("loop"), "{}", messages(&n));
    let fs = img.mount();
    let lf = lookup(&fs, "/lost+found");
    let inside = find_below(&fs, lf, b"inside", 4).expect("the file inside the loop is reachable from lost+found");
    assert_eq!(read_all(&fs, inside), b"kept through the loop");
    fs.unmount().expect("unmount");
    assert_intact(&img.paths, &exp, &[]);
}

/// Depth-first search for an entry called `name` below directory `dir`.
fn find_below(fs: &hammer2::Fs, dir: u64, name: &[u8], depth: usize) -> Option<u64> {
    let mut entries = Vec::new();
    fs.readdir(dir, 0, |e| {
        if e.name != b"." && e.name != b".." {
            entries.push((e.name.clone(), e.ino, e.dtype));
        }
        false
    })
    .ok()?;
    for (n, ino, dt) in entries {
        if n == name {
            return Some(ino);
        }
        if dt == dtype::DIR && depth > 0 {
            if let Some(f) = find_below(fs, ino, name, depth - 1) {
                return Some(f);
            }
        }
    }
    None
}

#[test]
fn a_damaged_header_slot_is_cleared() {
    let _serial = common::serial();
    let (img, exp) = standard_img(1, 1);
    // Damage the oldest valid slot: keep the magic, break the check code.
    let raw = common::raw::Raw::open(&img.paths);
    let slot = (0..4)
        .filter(|s| {
            let b = raw.read_at(0, hammer2_format::layout::header_offset(*s), 4096);
            hammer2_format::VolumeHeader::decode(&b).is_ok()
        })
        .min_by_key(|s| {
            let b = raw.read_at(0, hammer2_format::layout::header_offset(*s), 4096);
            hammer2_format::VolumeHeader::decode(&b).map(|h| h.tid).unwrap_or(u64::MAX)
        })
        .expect("a valid slot");
    raw.write_at(0, hammer2_format::layout::header_offset(slot) + 200, b"garbage");
    let (n, _) = cycle(&img, &Expect { kinds: &["header_slot_damaged"], yes: 1, after: 0, preen: Some(1) });
    assert_eq!(n["findings"][0]["slot"], slot);
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn a_directory_entry_of_the_wrong_type_is_retyped_also_by_p() {
    let _serial = common::serial();
    let (img, exp) = standard_img(1, 1);
    with_engine(&img, |fs| {
        let ino = lookup(fs, "/small.txt");
        remove_entry(fs, "/", b"small.txt");
        add_entry(fs, "/", b"small.txt", ino, dtype::SOCK);
    });
    cycle(&img, &Expect { kinds: &["entry_type"], yes: 1, after: 0, preen: Some(1) });
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn a_wrong_blocks_count_is_corrected() {
    let _serial = common::serial();
    let (img, exp) = standard_img(1, 1);
    with_engine(&img, |fs| {
        hammer2::repair::testing::inflate_blocks(fs, lookup(fs, "/big.bin"), 65536);
    });
    cycle(&img, &Expect { kinds: &["blocks_count"], yes: 1, after: 0, preen: Some(1) });
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn copies_on_two_devices_survive_a_whole_device_of_garbage_metadata() {
    let _serial = common::serial();
    // A wider variant of the bad copy: every metadata block's copy on device 1 is bad.
    let (img, exp) = standard_img(2, 2);
    let raw = common::raw::Raw::open(&img.paths);
    let nodes = raw.walk();
    let mut n = 0;
    for node in &nodes {
        if node.br.btype != BlockType::Data && node.br.ptr().is_some() {
            spoil_copy(&img, &node.br, 1);
            n += 1;
        }
    }
    let (r, _) = cycle(&img, &Expect { kinds: &["bad_copy"], yes: 1, after: 0, preen: None });
    assert_eq!(r["errors_found"], n, "{}", messages(&r));
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn a_device_whose_newest_header_slot_was_torn_gets_the_current_header_again() {
    let _serial = common::serial();
    let (img, exp) = standard_img(2, 2);
    let raw = common::raw::Raw::open(&img.paths);
    let (slot, _) = raw.newest(1).expect("a header");
    raw.write_at(1, hammer2_format::layout::header_offset(slot) + 300, b"torn");
    // The damaged slot is the finding; lacking the newest header is a note (DESIGN §8).
    let (n, y) = cycle(&img, &Expect { kinds: &["header_slot_damaged"], yes: 1, after: 0, preen: Some(1) });
    assert!(n["notes"].to_string().contains("between two devices' header writes"), "{}", n["notes"]);
    assert!(y["notes"].to_string().contains("wrote the current volume header"), "{}", y["notes"]);
    let raw = common::raw::Raw::open(&img.paths);
    assert_eq!(raw.newest(1).map(|h| h.1.tid), raw.newest(0).map(|h| h.1.tid), "-y wrote the current header");
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn a_crash_between_two_devices_header_writes_is_a_note_and_exit_0() {
    use hammer2_format::layout::{HEADER_SIZE, HEADER_SLOTS, header_offset};
    let _serial = common::serial();
    let (img, exp) = standard_img(2, 2);
    // Device 1's slots before one more commit; after it, the slot that commit wrote on
    // device 1 gets its old content back: the commit's blocks reached both devices and its
    // header only device 0, as when the power fails between the two header writes.
    let raw = common::raw::Raw::open(&img.paths);
    let before: Vec<Vec<u8>> = (0..HEADER_SLOTS).map(|s| raw.read_at(1, header_offset(s), HEADER_SIZE)).collect();
    drop(raw);
    with_engine(&img, |fs| {
        let f = fs.create(fs.root(), b"late", 0o644, hammer2::Creds::default()).expect("create");
        fs.write(f.ino, 0, b"written by the commit in flight").expect("write");
    });
    let raw = common::raw::Raw::open(&img.paths);
    let (slot, newest) = raw.newest(1).expect("a header");
    raw.write_at(1, header_offset(slot), &before[slot]);
    assert_eq!(raw.newest(1).map(|h| h.1.tid), Some(newest.tid - 1));
    assert_eq!(raw.newest(0).map(|h| h.1.tid), Some(newest.tid));
    drop(raw);

    let before = img.hash();
    let (st, n) = fsck_json(&["-n"], &img.args());
    assert_eq!((st, n["findings"].as_array().map(Vec::len)), (0, Some(0)), "{}", messages(&n));
    let notes = n["notes"].to_string();
    assert!(notes.contains("between two devices' header writes"), "{notes}");
    assert_eq!(img.hash(), before, "-n wrote nothing");
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn an_unreadable_free_map_leaf_is_rebuilt_although_it_keeps_the_filesystem_from_mounting() {
    let _serial = common::serial();
    let (img, exp) = standard_img(1, 1);
    let leaf = raw_ref(&img, |n| n.br.btype == BlockType::FreemapLeaf);
    spoil_all(&img, &leaf);
    assert!(hammer2::Fs::mount(img.storages(), quiet(false)).is_err(), "the engine cannot load the free map");
    let (n, _) = cycle(&img, &Expect { kinds: &["unreadable"], yes: 1, after: 0, preen: Some(1) });
    let msg = n["findings"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("free-map leaf 0 of device 0"), "{msg}");
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn an_entry_under_a_key_its_name_does_not_hash_to_is_moved_where_lookups_find_it() {
    let _serial = common::serial();
    let (img, exp) = standard_img(1, 1);
    with_engine(&img, |fs| {
        let ino = lookup(fs, "/dir/f4");
        remove_entry(fs, "/dir", b"f4");
        let wrong = hammer2_format::dirent::dirent_key_base(b"somewhere-else") | 7;
        add_entry_at(fs, "/dir", wrong, b"f4", ino, dtype::REG);
    });
    cycle(&img, &Expect { kinds: &["entry_key"], yes: 1, after: 0, preen: Some(4) });
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn a_repeated_name_in_a_directory_is_dropped() {
    let _serial = common::serial();
    let (img, exp) = standard_img(1, 1);
    with_engine(&img, |fs| {
        let other = lookup(fs, "/dir/f6");
        let key = hammer2_format::dirent::dirent_key_base(b"f5") | 9;
        add_entry_at(fs, "/dir", key, b"f5", other, dtype::REG);
    });
    cycle(&img, &Expect { kinds: &["duplicate_name"], yes: 1, after: 0, preen: Some(4) });
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn a_wrong_dot_dot_is_set_to_the_directory_that_names_it() {
    let _serial = common::serial();
    let (img, exp) = standard_img(1, 1);
    with_engine(&img, |fs| {
        let dir = lookup(fs, "/dir");
        set_parent(fs, "/moved", dir);
    });
    let (n, _) = cycle(&img, &Expect { kinds: &["dot_dot"], yes: 1, after: 0, preen: Some(4) });
    assert_eq!(n["findings"][0]["actual"], 1);
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn data_past_the_end_of_a_file_is_dropped() {
    let _serial = common::serial();
    let (img, mut exp) = standard_img(1, 1);
    with_engine(&img, |fs| set_size(fs, "/medium.bin", 100_000));
    // The block holding the new end keeps old bytes after it, too.
    let (n, _) = cycle(&img, &Expect { kinds: &["data_past_eof", "tail_not_zero"], yes: 1, after: 0, preen: Some(5) });
    let past = n["findings"].as_array().and_then(|a| a.iter().find(|f| f["kind"] == "data_past_eof").cloned());
    // The first block past the new end (the image has the default data block size).
    let bs = 1u64 << hammer2_format::layout::DEFAULT_DATA_BLOCK_SHIFT;
    assert_eq!(past.map(|f| f["offset"].clone()), Some((100_000u64.div_ceil(bs) * bs).into()));
    exp.get_mut("/medium.bin").expect("medium").truncate(100_000);
    assert_intact(&img.paths, &exp, &[]);
    // Extending the file shows zeros, not the old bytes.
    with_engine(&img, |fs| {
        let ino = lookup(fs, "/medium.bin");
        fs.setattr(ino, &hammer2::SetAttr { size: Some(150_000), ..Default::default() }).expect("extend");
        let got = read_all(fs, ino);
        assert!(got[100_000..].iter().all(|&b| b == 0), "old bytes came back past the old end");
    });
}

#[test]
fn a_member_whose_every_header_slot_is_damaged_is_known_by_its_uuid_and_gets_its_header_back() {
    let _serial = common::serial();
    let (img, exp) = standard_img(2, 2);
    let raw = common::raw::Raw::open(&img.paths);
    for slot in 0..4 {
        let off = hammer2_format::layout::header_offset(slot);
        if raw.read_at(1, off, 8) == b"HMR2LIKE" {
            raw.write_at(1, off + 300, b"torn");
        }
    }
    assert!(raw.newest(1).is_none());
    let (n, _) = cycle(&img, &Expect { kinds: &["device_unrecognized"], yes: 1, after: 0, preen: Some(1) });
    let msg = n["findings"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("dev1.img") && msg.contains("device 1"), "{msg}");
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn an_orphan_list_entry_naming_no_inode_is_dropped_so_the_filesystem_mounts_again() {
    let _serial = common::serial();
    let (img, exp) = standard_img(1, 1);
    with_engine(&img, |fs| {
        // Unlinked while open, committed: listed in the orphan list.
        let f = fs.create(fs.root(), b"open-file", 0o644, hammer2::Creds::default()).expect("create");
        fs.open(f.ino).expect("open");
        fs.unlink(fs.root(), b"open-file").expect("unlink");
        fs.sync().expect("sync");
        // Then the inode goes away but its orphan-list entry stays (a lost update).
        hammer2::repair::testing::delete_keeping_orphan_entry(fs, f.ino);
    });
    let (n, _) = cycle(&img, &Expect { kinds: &["orphan_entry"], yes: 1, after: 0, preen: Some(1) });
    assert!(messages(&n).contains("next mount drops the entry"), "{}", messages(&n));
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn a_mount_drops_an_orphan_list_entry_naming_no_inode() {
    let _serial = common::serial();
    let (img, exp) = standard_img(1, 1);
    with_engine(&img, |fs| {
        let f = fs.create(fs.root(), b"open-file", 0o644, hammer2::Creds::default()).expect("create");
        fs.open(f.ino).expect("open");
        fs.unlink(fs.root(), b"open-file").expect("unlink");
        fs.sync().expect("sync");
        hammer2::repair::testing::delete_keeping_orphan_entry(fs, f.ino);
    });
    let fs = hammer2::Fs::mount(img.storages(), quiet(false)).expect("the mount drops the dangling entry");
    fs.unmount().expect("unmount");
    let (code, report) = fsck_json(&["-n"], &img.args());
    assert_eq!(code, 0, "{report}");
    assert_intact(&img.paths, &exp, &[]);
}

#[test]
fn a_linked_inode_left_in_the_orphan_list_is_taken_off_before_a_mount_deletes_it() {
    let _serial = common::serial();
    let (img, mut exp) = standard_img(1, 1);
    let data = pattern(77, 5000);
    let mut ino = 0;
    with_engine(&img, |fs| {
        let f = fs.create(fs.root(), b"kept", 0o644, hammer2::Creds::default()).expect("create");
        fs.write(f.ino, 0, &data).expect("write");
        fs.open(f.ino).expect("open");
        fs.unlink(fs.root(), b"kept").expect("unlink");
        fs.sync().expect("sync");
        ino = f.ino;
        // Linked again behind the engine's back: the orphan-list entry stays.
        add_entry(fs, "/", b"kept", f.ino, dtype::REG);
        hammer2::repair::testing::relink_keeping_orphan_entry(fs, f.ino, 1);
    });
    let (n, _) = cycle(&img, &Expect { kinds: &["orphan_entry"], yes: 1, after: 0, preen: Some(1) });
    assert!(messages(&n).contains("would delete it"), "{}", messages(&n));
    exp.insert("/kept".into(), data);
    assert_intact(&img.paths, &exp, &[]);
    let fs = img.mount();
    assert_eq!(lookup(&fs, "/kept"), ino, "a mount kept it");
    fs.unmount().expect("unmount");
}
