//! Copies per file and directory as users meet them (issue 26), through real mounts of
//! image files made by the real `mkfs.hammer2`: `hammer2 set copies=N` on a directory and
//! `hammer2 get`; files copied in with `cp` inherit it; `hammer2 set copies=N --apply`
//! and `hammer2 rewrite` bring what was written before up and down; after each, `diff -r`
//! finds the data identical, fsck verifies every copy and its placement (copies on distinct
//! devices) and counts the blocks by copies, `df` gains what dropped copies held; with the
//! copies of two devices damaged, the files with three copies still read good data.
//!
//! The mounts store data raw (`-o compression=none`): the tests count stored bytes.

use hammer2_test_support as common;

use common::damage::Blocks;
use common::image::{fsck, hammer2, info_json, mkfs, ok, one_line_error, stdout};
use common::mount::*;
use common::rng::Rng;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

const V1_LINE: &str = "this filesystem is format version 1; 'hammer2 upgrade' converts it (see FORMAT-V2)";

fn h2(args: &[&OsStr]) -> std::process::Output {
    hammer2(args.iter().copied())
}

/// A source tree of incompressible files of varied sizes (bytes in all).
fn source_tree(dir: &Path, seed: u64) -> u64 {
    let mut total = 0;
    for (i, size) in [0usize, 100, 5000, 70_000, 300_000, 1 << 20, 3 << 20, 6 << 20].iter().enumerate() {
        let sub = dir.join(format!("s{}", i % 3));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i}")), Rng::new(seed + i as u64).bytes(*size)).unwrap();
        total += *size as u64;
    }
    total
}

/// The data blocks of every regular file under `dir` (as mounted), as (copies, distinct
/// devices) pairs with their counts, read from the images once unmounted.
fn placements(images: &[std::path::PathBuf], inos: &[u64]) -> std::collections::BTreeMap<(usize, usize), usize> {
    let b = Blocks::open(images);
    let mut out = std::collections::BTreeMap::new();
    for &ino in inos {
        for br in b.data_of(ino) {
            let p = br.ptr().unwrap();
            let devs: std::collections::BTreeSet<u8> = p.copies.iter().map(|l| l.device).collect();
            *out.entry((p.copies.len(), devs.len())).or_insert(0) += 1;
        }
    }
    out
}

fn inos(dir: &Path) -> Vec<u64> {
    let out = sh(&format!("find {} -type f -size +0 -printf '%i\\n'", dir.display()));
    stdout(&out).lines().map(|l| l.parse().unwrap()).collect()
}

/// fsck -n --json: clean, and its count of data blocks by copies.
fn fsck_clean(images: &[std::path::PathBuf]) -> Vec<(u64, u64)> {
    let out = fsck(images.iter().map(|d| d.as_os_str()).chain([OsStr::new("-n"), OsStr::new("--json")]));
    let text = stdout(&out);
    assert!(out.status.success(), "fsck -n: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["errors_found"], 0, "{text}");
    v["counts"]["data_by_copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["copies"].as_u64().unwrap(), d["blocks"].as_u64().unwrap()))
        .collect()
}

/// Free bytes as df sees them.
fn df_free(path: &Path) -> u64 {
    let out = sh(&format!("stat -f -c '%f %S' {}", path.display()));
    let s = stdout(&out);
    let mut it = s.split_whitespace().map(|w| w.parse::<u64>().unwrap());
    it.next().unwrap() * it.next().unwrap()
}

#[test]
fn set_copies_on_a_directory_then_apply_up_and_down_with_diff_fsck_and_df() {
    let img = Image::by_mkfs(3, 256 << 20, 2);
    let src = tempfile::tempdir().unwrap();
    let bytes = source_tree(src.path(), 1);
    let m = img.mount_with("compression=none");
    let d = m.join("d");
    std::fs::create_dir(&d).unwrap();
    let get = |p: &Path| stdout(&h2(&[OsStr::new("get"), OsStr::new("copies"), p.as_os_str()])).trim().to_string();
    assert_eq!(get(&d), format!("{}: copies=default (2)", d.display()));
    // Set on the directory: what cp makes in it afterwards has three copies.
    ok(&h2(&[OsStr::new("set"), OsStr::new("copies=3"), d.as_os_str()]));
    assert_eq!(get(&d), format!("{}: copies=3", d.display()));
    sh(&format!("cp -r {} {}/new", src.path().display(), d.display()));
    assert_eq!(get(&d.join("new/s1/f1")), format!("{}: copies=3", d.join("new/s1/f1").display()));
    // Written before the setting, at the filesystem's default.
    sh(&format!("cp -r {} {}/old", src.path().display(), m.path.display()));
    sh(&format!("diff -r {} {}/new", src.path().display(), d.display()));
    let (new, old) = (inos(&d.join("new")), inos(&m.join("old")));
    let free0 = df_free(&m.path);
    // `hammer2 info` on the mount: data blocks by copies, as many of each as of the other.
    sh(&format!("sync {}/new/s1/f1", d.display()));
    let live = info_json([m.path.as_os_str()]);
    let by = &live["data"]["by_copies"];
    assert_eq!(by.as_array().unwrap().len(), 2, "{live}");
    assert_eq!((&by[0]["copies"], &by[1]["copies"]), (&2.into(), &3.into()), "{live}");
    assert_eq!(by[0]["blocks"], by[1]["blocks"], "{live}");
    let text = stdout(&h2(&[OsStr::new("info"), m.path.as_os_str()]));
    assert!(text.contains("data copies  blocks by copies: "), "{text}");
    m.unmount();
    let p = placements(&img.devices, &new);
    assert_eq!(p.keys().collect::<Vec<_>>(), [&(3, 3)], "three copies on three devices: {p:?}");
    assert_eq!(placements(&img.devices, &old).keys().collect::<Vec<_>>(), [&(2, 2)]);
    let dist = fsck_clean(&img.devices);
    assert_eq!(dist.iter().map(|d| d.0).collect::<Vec<_>>(), [2, 3], "{dist:?}");

    // The old tree up to three with --apply: set under it, then rewritten.
    let m = img.mount_with("compression=none");
    let old_dir = m.join("old");
    let out = ok(&h2(&[OsStr::new("set"), OsStr::new("copies=3"), OsStr::new("--apply"), old_dir.as_os_str()]));
    assert!(out.contains("rewrite: 8 file(s)"), "{out}");
    assert_eq!(get(&old_dir.join("s2/f2")), format!("{}: copies=3", old_dir.join("s2/f2").display()));
    sh(&format!("diff -r {} {}", src.path().display(), old_dir.display()));
    sh(&format!("sync {}/s1/f1", old_dir.display()));
    let free3 = df_free(&m.path);
    // df counts blocks of the filesystem's two copies: a third copy of `bytes` is half of it.
    let spent = free0 - free3;
    assert!(spent.abs_diff(bytes / 2) < bytes / 8 + (2 << 20), "df: {spent} spent for a third copy of {bytes}");
    m.unmount();
    assert_eq!(placements(&img.devices, &old).keys().collect::<Vec<_>>(), [&(3, 3)]);
    assert_eq!(fsck_clean(&img.devices).iter().map(|d| d.0).collect::<Vec<_>>(), [3]);

    // Everything down to one copy with `set --apply` at the top; df gains what went.
    let m = img.mount_with("compression=none");
    ok(&h2(&[OsStr::new("set"), OsStr::new("copies=1"), OsStr::new("--apply"), m.path.as_os_str()]));
    sh(&format!("diff -r {} {}/new", src.path().display(), d.display()));
    sh(&format!("diff -r {} {}", src.path().display(), old_dir.display()));
    sh(&format!("sync {}/s1/f1", old_dir.display()));
    let free1 = df_free(&m.path);
    let gained = free1 - free3;
    // Two trees, from three copies to one: 4 × bytes of copies, 2 × bytes in df's blocks.
    assert!(gained.abs_diff(2 * bytes) < bytes / 4 + (2 << 20), "df: {gained} gained, {bytes} per tree");
    m.unmount();
    let both: Vec<u64> = new.iter().chain(&old).copied().collect();
    assert_eq!(placements(&img.devices, &both).keys().collect::<Vec<_>>(), [&(1, 1)]);
    assert_eq!(fsck_clean(&img.devices).iter().map(|d| d.0).collect::<Vec<_>>(), [1]);

    // Back to the default: `set copies=default` everywhere, then `hammer2 rewrite`.
    let m = img.mount_with("compression=none");
    ok(&h2(&[OsStr::new("set"), OsStr::new("copies=default"), OsStr::new("--apply"), m.path.as_os_str()]));
    let again = ok(&h2(&[OsStr::new("rewrite"), m.path.as_os_str()]));
    assert!(again.contains("rewrite: 16 file(s)"), "{again}");
    sh(&format!("diff -r {} {}", src.path().display(), old_dir.display()));
    sh(&format!("sync {}/s1/f1", old_dir.display()));
    let free2 = df_free(&m.path);
    assert!(free2.abs_diff(free0 + bytes / 2) < bytes / 8 + (2 << 20), "df back: {free2} vs {free0}");
    m.unmount();
    assert_eq!(placements(&img.devices, &both).keys().collect::<Vec<_>>(), [&(2, 2)]);
    assert_eq!(fsck_clean(&img.devices).iter().map(|d| d.0).collect::<Vec<_>>(), [2]);
}

#[test]
fn files_with_three_copies_read_good_data_with_two_devices_damaged() {
    let img = Image::by_mkfs(3, 128 << 20, 2);
    let m = img.mount_with("compression=none");
    let safe = m.join("safe");
    std::fs::create_dir(&safe).unwrap();
    ok(&h2(&[OsStr::new("set"), OsStr::new("copies=3"), safe.as_os_str()]));
    let data = Rng::new(5).bytes(4 << 20);
    std::fs::write(safe.join("f"), &data).unwrap();
    let ino = std::fs::metadata(safe.join("f")).unwrap().ino();
    m.unmount();

    let b = Blocks::open(&img.devices);
    let blocks = b.data_of(ino);
    assert_eq!(blocks.len(), 256);
    for br in &blocks {
        assert_eq!(br.ptr().unwrap().copies.len(), 3);
        b.smash(br, 0);
        b.smash(br, 1);
    }
    drop(b);
    let m = img.mount_with("compression=none");
    assert!(std::fs::read(m.join("safe/f")).unwrap() == data, "the third copy serves every block");
    // The reads healed the copies they met; a scrub rewrites the rest from the good one
    // (exit status 1: errors found, all repaired).
    let scrub = h2(&[OsStr::new("scrub"), m.path.as_os_str()]);
    assert_eq!(scrub.status.code(), Some(1), "{}", stdout(&scrub));
    assert!(stdout(&scrub).contains("all errors repaired"), "{}", stdout(&scrub));
    m.unmount();
    let b = Blocks::open(&img.devices);
    b.assert_every_copy_good();
    drop(b);
    fsck_clean(&img.devices);
}

#[test]
fn bad_values_and_version_1_are_refused_in_one_line() {
    let img = Image::by_mkfs(2, 64 << 20, 2);
    let m = img.mount();
    let f = m.join("f");
    std::fs::write(&f, b"x").unwrap();
    for (value, why) in [("5", "expected 1 to 4"), ("0", "expected 1 to 4"), ("two", "expected 1 to 4")] {
        let out = h2(&[OsStr::new("set"), OsStr::new(&format!("copies={value}")), f.as_os_str()]);
        one_line_error(&out, "hammer2 set: ", why);
    }
    // Two devices of one region each: no third domain for a third copy.
    let out = h2(&[OsStr::new("set"), OsStr::new("copies=3"), f.as_os_str()]);
    one_line_error(&out, "hammer2 set: ", "more copies than this filesystem has device regions for");
    let elsewhere = img.dir.path().join("plain");
    std::fs::write(&elsewhere, b"x").unwrap();
    let out = h2(&[OsStr::new("rewrite"), elsewhere.as_os_str()]);
    one_line_error(&out, "hammer2 rewrite: ", "not on a mounted hammer2 filesystem");
    m.unmount();

    let d = tempfile::tempdir().unwrap();
    let dev = d.path().join("v1.img");
    ok(&mkfs(["--size".as_ref(), "64M".as_ref(), "--format-version".as_ref(), "1".as_ref(), dev.as_os_str()]));
    std::fs::create_dir(d.path().join("mnt")).unwrap();
    let v1 = Image { dir: d, devices: vec![dev] };
    let m = v1.mount();
    let out = h2(&[OsStr::new("set"), OsStr::new("copies=1"), m.path.as_os_str()]);
    one_line_error(&out, "hammer2 set: ", V1_LINE);
    m.unmount();
}

/// The acceptance figure: the rate of `set copies --apply` on 256 MiB (two copies to three
/// on three devices), and of a rerun that finds nothing to do.
#[test]
fn measure_the_rate_of_set_copies_apply() {
    let img = Image::by_mkfs(3, 1 << 30, 2);
    let m = img.mount_with("compression=none");
    let d = m.join("big");
    std::fs::create_dir(&d).unwrap();
    for i in 0..4 {
        std::fs::write(d.join(format!("f{i}")), Rng::new(100 + i).bytes(64 << 20)).unwrap();
    }
    sh(&format!("sync {}/f0", d.display()));
    let t = Instant::now();
    let out = ok(&h2(&[OsStr::new("set"), OsStr::new("copies=3"), OsStr::new("--apply"), d.as_os_str()]));
    let up = t.elapsed().as_secs_f64();
    let t = Instant::now();
    ok(&h2(&[OsStr::new("rewrite"), d.as_os_str()]));
    let rerun = t.elapsed().as_secs_f64();
    let t = Instant::now();
    ok(&h2(&[OsStr::new("set"), OsStr::new("copies=1"), OsStr::new("--apply"), d.as_os_str()]));
    let down = t.elapsed().as_secs_f64();
    let mib = 256.0;
    eprintln!(
        "set copies=3 --apply on {mib} MiB: {up:.2} s ({:.0} MiB/s); rerun with nothing to do: {rerun:.2} s; \
         copies=1 --apply: {down:.2} s ({:.0} MiB/s); command said: {}",
        mib / up,
        mib / down,
        out.trim()
    );
    assert!(rerun < up / 4.0, "a rerun reads no data: {rerun:.2} s vs {up:.2} s");
    // One file of four back to two copies: the rewrite of the whole tree costs about a
    // quarter of the whole.
    ok(&h2(&[OsStr::new("set"), OsStr::new("copies=2"), d.join("f0").as_os_str()]));
    let t = Instant::now();
    ok(&h2(&[OsStr::new("rewrite"), d.as_os_str()]));
    let quarter = t.elapsed().as_secs_f64();
    eprintln!("rewrite of the tree with one file of four (64 MiB) to bring from 1 to 2 copies: {quarter:.2} s");
    assert!(quarter < down * 0.75, "{quarter:.2} s for a quarter vs {down:.2} s for all");
    for i in 0..4 {
        assert!(std::fs::read(d.join(format!("f{i}"))).unwrap() == Rng::new(100 + i).bytes(64 << 20));
    }
    m.unmount();
    let dist = fsck_clean(&img.devices);
    assert_eq!(dist.iter().map(|d| d.0).collect::<Vec<_>>(), [1, 2], "{dist:?}");
}

#[test]
fn an_interrupted_rewrite_leaves_files_whole_and_a_rerun_finishes() {
    let img = Image::by_mkfs(3, 512 << 20, 2);
    let m = img.mount_with("compression=none");
    let d = m.join("d");
    std::fs::create_dir(&d).unwrap();
    let data: Vec<Vec<u8>> = (0..4).map(|i| Rng::new(200 + i).bytes(64 << 20)).collect();
    for (i, b) in data.iter().enumerate() {
        std::fs::write(d.join(format!("f{i}")), b).unwrap();
    }
    sh(&format!("sync {}/f0", d.display()));
    let inos = inos(&d);
    // Interrupted part way by SIGINT (as Ctrl-C): strace delivers it as the command enters
    // its 8th setxattr: the copies setting of d and its four files are the first five, the
    // ranges of the rewrite (two of 32 MiB per file) the rest, so f0 is done, f1 half done
    // and f2 and f3 untouched. A timer instead would race a rewrite that can finish first.
    let mut strace = std::process::Command::new("strace");
    strace
        .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=/^setxattr$|^lsetxattr$", "-e"])
        .arg("inject=/^setxattr$|^lsetxattr$:signal=SIGINT:when=8")
        .arg(common::image::hammer2_bin())
        .args([OsStr::new("set"), OsStr::new("copies=1"), OsStr::new("--apply"), d.as_os_str()]);
    // A test run started in the background (as CI may be) inherits SIGINT ignored, and so
    // would the command; a user's Ctrl-C meets the default action.
    // SAFETY: signal(2) is async-signal-safe, and nothing else runs in the forked child.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut strace, || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let o = strace.output().expect("run strace (package strace)");
    assert!(!o.status.success(), "the rewrite was not interrupted: {}", String::from_utf8_lossy(&o.stderr));
    for (i, b) in data.iter().enumerate() {
        assert!(std::fs::read(d.join(format!("f{i}"))).unwrap() == *b, "f{i} changed");
    }
    m.unmount();
    let part = placements(&img.devices, &inos);
    // f0 and half of f1 on one copy, the rest (f1's second half, f2, f3) still on two.
    let per_file = part.values().sum::<usize>() / 4;
    assert_eq!(part.get(&(1, 1)), Some(&(per_file * 3 / 2)), "interrupted in the middle: {part:?}");
    assert_eq!(part.get(&(2, 2)), Some(&(per_file * 5 / 2)), "interrupted in the middle: {part:?}");
    fsck_clean(&img.devices);

    let m = img.mount_with("compression=none");
    ok(&h2(&[OsStr::new("rewrite"), d.as_os_str()]));
    for (i, b) in data.iter().enumerate() {
        assert!(std::fs::read(d.join(format!("f{i}"))).unwrap() == *b, "f{i} changed");
    }
    m.unmount();
    assert_eq!(placements(&img.devices, &inos).keys().collect::<Vec<_>>(), [&(1, 1)]);
    assert_eq!(fsck_clean(&img.devices).iter().map(|d| d.0).collect::<Vec<_>>(), [1]);
}
