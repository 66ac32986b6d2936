//! Figures for snapshots (not run by default: `cargo test --release --test
//! snapshot_measure -- --ignored --nocapture`): the time a snapshot takes on a filesystem
//! of many files, the time deleting a snapshot takes when it alone holds 1% or 50% of the
//! blocks, and fsck's time with 10 snapshots against none. Each also checks what it
//! measured (the snapshot holds the files, the deletion frees what it should, fsck is
//! clean), so a figure never comes from a broken run.

use hammer2_test_support as common;

use common::image::{exit_code, fsck, sparse_file, stderr, stdout};
use hammer2::format::{FormatOptions, format};
use hammer2::snapshot;
use hammer2::storage::DynStorage;
use hammer2::storage::file::{FileStorage, OpenMode};
use hammer2::{Creds, Fs, Options};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

const MIB: u64 = 1 << 20;

fn images(dir: &std::path::Path, size: u64) -> Vec<PathBuf> {
    vec![sparse_file(dir, "dev0.img", size)]
}

fn open(paths: &[PathBuf]) -> Vec<DynStorage> {
    paths.iter().map(|p| Arc::new(FileStorage::open(p, OpenMode::Exclusive).expect("open")) as DynStorage).collect()
}

fn opts() -> Options {
    Options { background_sync: false, dirty_limit: 256 * MIB, cache_bytes: 512 * MIB, ..Options::default() }
}

fn used_units(fs: &Fs) -> u64 {
    let mut used = 0;
    hammer2::testing::for_each_unit(fs, &mut |_, _, a| used += u64::from(a));
    used
}

/// `n` small files in directories of 1000.
fn fill(fs: &Fs, n: usize) {
    let c = Creds::default();
    let mut dir = fs.root();
    for i in 0..n {
        if i % 1000 == 0 {
            dir = fs.mkdir(fs.root(), format!("d{}", i / 1000).as_bytes(), 0o755, c).expect("mkdir").ino;
        }
        let f = fs.create(dir, format!("f{i}").as_bytes(), 0o644, c).expect("create");
        fs.write(f.ino, 0, format!("file {i}\n").as_bytes()).expect("write");
        if i % 20_000 == 19_999 {
            fs.sync().expect("sync");
        }
    }
    fs.sync().expect("sync");
}

#[test]
#[ignore]
fn snapshot_creation_time_with_many_files() {
    let n: usize = std::env::var("HAMMER2_MEASURE_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let paths = images(dir.path(), (n as u64 * 12 * 1024).max(512 * MIB));
    format(open(&paths), &FormatOptions { copies: Some(1), format_version: 2, ..Default::default() }).unwrap();
    let fs = Fs::mount(open(&paths), opts()).expect("mount");
    let t = Instant::now();
    fill(&fs, n);
    let fill_s = t.elapsed().as_secs_f64();
    let mut times = Vec::new();
    for k in 0..5 {
        // A few changes first, so the snapshot's commit carries some work like a real one.
        let f = fs.create(fs.root(), format!("x{k}").as_bytes(), 0o644, Creds::default()).unwrap();
        fs.write(f.ino, 0, b"x").unwrap();
        let t = Instant::now();
        snapshot::snapshot(&fs, Some(&format!("s{k}"))).expect("snapshot");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    fs.unmount().unwrap();
    let snap = Fs::mount(open(&paths), Options { read_only: true, pfs: "s4".into(), ..opts() }).unwrap();
    let d = snap.lookup(snap.root(), format!("d{}", (n - 1) / 1000).as_bytes()).expect("last dir");
    snap.lookup(d.ino, format!("f{}", n - 1).as_bytes()).expect("the last file is in the snapshot");
    snap.unmount().unwrap();
    eprintln!("MEASURE snapshot creation, {n} files (filled in {fill_s:.1} s): {times:.1?} ms");
}

/// Deleting snapshot S after the live PFS rewrote `percent`% of its files: S alone holds
/// those blocks.
fn delete_time(percent: usize) -> (f64, u64, u64) {
    let files = 2000;
    let dir = tempfile::tempdir().unwrap();
    let paths = images(dir.path(), 2048 * MIB);
    format(open(&paths), &FormatOptions { copies: Some(1), format_version: 2, ..Default::default() }).unwrap();
    let fs = Fs::mount(open(&paths), opts()).expect("mount");
    let c = Creds::default();
    let mut inos = Vec::new();
    for i in 0..files {
        let f = fs.create(fs.root(), format!("f{i}").as_bytes(), 0o644, c).unwrap();
        fs.write(f.ino, 0, &vec![(i % 251) as u8; 256 * 1024]).unwrap();
        inos.push(f.ino);
    }
    fs.sync().unwrap();
    snapshot::snapshot(&fs, Some("s")).unwrap();
    for (i, ino) in inos.iter().enumerate().take(files * percent / 100) {
        fs.write(*ino, 0, &vec![(i % 13) as u8 + 1; 256 * 1024]).unwrap();
    }
    fs.sync().unwrap();
    let before = used_units(&fs);
    let t = Instant::now();
    snapshot::delete(&fs, "s").unwrap();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let freed = before - used_units(&fs);
    fs.unmount().unwrap();
    (ms, freed * 4096, (files * percent / 100 * 256 * 1024) as u64)
}

#[test]
#[ignore]
fn snapshot_deletion_time_follows_what_it_alone_holds() {
    for p in [1, 50] {
        let (ms, freed, rewritten) = delete_time(p);
        assert!(freed >= rewritten, "{p}%: freed {freed} of the {rewritten} bytes only the snapshot held");
        eprintln!(
            "MEASURE snapshot deletion, {p}% of 2000 x 256 KiB files held only by it: {ms:.1} ms, {} MiB freed",
            freed / MIB
        );
    }
}

#[test]
#[ignore]
fn fsck_time_with_ten_snapshots_and_none() {
    let files = 20_000;
    for snaps in [0, 10] {
        let dir = tempfile::tempdir().unwrap();
        let paths = images(dir.path(), 2048 * MIB);
        format(open(&paths), &FormatOptions { copies: Some(1), format_version: 2, ..Default::default() }).unwrap();
        let fs = Fs::mount(open(&paths), opts()).expect("mount");
        fill(&fs, files);
        // Between snapshots 1% of the files change (the live PFS goes on; each snapshot
        // keeps its version).
        let d0 = fs.lookup(fs.root(), b"d0").unwrap().ino;
        for k in 0..snaps {
            for i in 0..files / 100 {
                let f = fs.lookup(d0, format!("f{}", (k * 7 + i) % 1000).as_bytes()).unwrap();
                fs.write(f.ino, 0, format!("changed {k}\n").as_bytes()).unwrap();
            }
            snapshot::snapshot(&fs, Some(&format!("s{k}"))).unwrap();
        }
        fs.unmount().unwrap();
        let t = Instant::now();
        let o = fsck(std::iter::once("-n".as_ref()).chain(paths.iter().map(|p| p.as_os_str())));
        let s = t.elapsed().as_secs_f64();
        assert_eq!(exit_code(&o), 0, "{}{}", stdout(&o), stderr(&o));
        eprintln!("MEASURE fsck -n, {files} files, {snaps} snapshots: {s:.2} s");
    }
}
