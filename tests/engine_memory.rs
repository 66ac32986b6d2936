//! Memory stays bounded: writing, deleting and rewriting a file set several times larger
//! than the block cache and the dirty limit must not grow the process beyond them plus a
//! fixed allowance. (Alone in its own test binary: the peak RSS is per process.)

use hammer2::format::{FormatOptions, format};
use hammer2::storage::DynStorage;
use hammer2::storage::file::{FileStorage, OpenMode};
use hammer2::{Creds, Fs, Options};
use std::sync::Arc;

fn peak_rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn memory_stays_within_cache_plus_dirty_limit_plus_100_mib_for_a_file_set_far_larger_than_both() {
    let cache = 32u64 << 20;
    let dirty = 32u64 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let devs: Vec<DynStorage> = (0..2)
        .map(|i| {
            let p = tmp.path().join(format!("d{i}.img"));
            std::fs::File::create(&p).unwrap().set_len(1 << 30).unwrap();
            Arc::new(FileStorage::open(&p, OpenMode::Exclusive).unwrap()) as DynStorage
        })
        .collect();
    format(devs.clone(), &FormatOptions { copies: Some(2), ..Default::default() }).unwrap();
    let base = peak_rss();
    let fs = Fs::mount(devs, Options { cache_bytes: cache, dirty_limit: dirty, ..Options::default() }).unwrap();
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i * 7) as u8).collect();
    let c = Creds::default();
    let files = 40;
    let per_file = 8u64 << 20; // 320 MiB per pass, ten times the cache
    for pass in 0..3 {
        for f in 0..files {
            let name = format!("f{f}");
            let a = match fs.lookup(fs.root(), name.as_bytes()) {
                Ok(a) => a,
                Err(_) => fs.create(fs.root(), name.as_bytes(), 0o644, c).unwrap(),
            };
            for off in (0..per_file).step_by(chunk.len()) {
                fs.write(a.ino, off, &chunk).unwrap();
            }
        }
        for f in 0..files {
            let a = fs.lookup(fs.root(), format!("f{f}").as_bytes()).unwrap();
            let got = fs.read(a.ino, per_file / 2, 4096).unwrap();
            assert_eq!(got, chunk[(per_file / 2) as usize % chunk.len()..][..4096]);
        }
        if pass == 1 {
            for f in (0..files).step_by(2) {
                fs.unlink(fs.root(), format!("f{f}").as_bytes()).unwrap();
            }
        }
    }
    fs.unmount().unwrap();
    let grew = peak_rss().saturating_sub(base);
    eprintln!("peak RSS grew by {} MiB (cache {} MiB, dirty limit {} MiB)", grew >> 20, cache >> 20, dirty >> 20);
    assert!(grew <= cache + dirty + (100 << 20), "peak RSS grew by {} MiB", grew >> 20);
}
