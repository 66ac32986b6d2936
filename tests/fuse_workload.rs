//! A real workload: a source tree of thousands of files (crates from the cargo registry) is
//! unpacked into the mount with tar, hashed, remounted, hashed again, copied back out with
//! `cp -a` and compared with `diff -r`.

use hammer2_test_support as common;

use common::mount::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// At least this many files go through the mount.
const MIN_FILES: usize = 4000;

/// The cargo registry's unpacked sources (every `cargo test` run has them).
fn registry_src() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let src = home.join("registry/src");
    fs::read_dir(&src)
        .unwrap_or_else(|e| panic!("the workload needs the cargo registry sources in {}: {e}", src.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .max_by_key(|p| fs::read_dir(p).map(|d| d.count()).unwrap_or(0))
        .unwrap_or_else(|| panic!("{} is empty", src.display()))
}

fn count_files(dir: &Path) -> usize {
    walk(dir).len()
}

/// Regular files and symlinks under `root`, relative, sorted.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            let ft = fs::symlink_metadata(&p).unwrap().file_type();
            if ft.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Content hash (or symlink target), mode and mtime of every file under `root`.
fn fingerprint(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32, i64, i64)> {
    walk(root)
        .into_iter()
        .map(|rel| {
            let p = root.join(&rel);
            let m = fs::symlink_metadata(&p).unwrap();
            let content = if m.file_type().is_symlink() {
                fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes()
            } else {
                hash_file(&p).to_vec()
            };
            (rel, (content, m.mode(), m.mtime(), m.mtime_nsec()))
        })
        .collect()
}

#[test]
fn a_tree_of_thousands_of_files_round_trips_through_tar_remount_and_cp() {
    let registry = registry_src();
    let mut crates: Vec<String> =
        fs::read_dir(&registry).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    crates.sort();
    let mut chosen = Vec::new();
    let mut files = 0;
    for c in crates {
        if files >= MIN_FILES {
            break;
        }
        files += count_files(&registry.join(&c));
        chosen.push(c);
    }
    assert!(files >= MIN_FILES, "the registry holds only {files} files; the workload needs {MIN_FILES}");

    let img = Image::with(1, 2 << 30, None);
    let work = img.dir.path().join("work");
    fs::create_dir_all(work.join("ref")).unwrap();
    fs::create_dir_all(work.join("out")).unwrap();
    let tarball = work.join("src.tar");
    sh(&format!("tar -cf {} -C {} {}", tarball.display(), registry.display(), chosen.join(" ")));
    sh(&format!("tar -xf {} -C {}", tarball.display(), work.join("ref").display()));
    let reference = fingerprint(&work.join("ref"));
    let bytes: u64 =
        walk(&work.join("ref")).iter().map(|p| fs::symlink_metadata(work.join("ref").join(p)).unwrap().len()).sum();

    let m = img.mount();
    let t = Instant::now();
    sh(&format!("tar -xf {} -C {}", tarball.display(), m.path.display()));
    let untar = t.elapsed();
    let t = Instant::now();
    let inside = fingerprint(&m.path);
    let hash1 = t.elapsed();
    assert!(inside == reference, "the tree unpacked into the mount differs from the reference");
    let t = Instant::now();
    m.unmount();
    let unmount = t.elapsed();

    let m = img.mount();
    let t = Instant::now();
    let again = fingerprint(&m.path);
    let hash2 = t.elapsed();
    assert!(again == reference, "the tree differs after a remount");
    let t = Instant::now();
    sh(&format!("cp -a {}/. {}", m.path.display(), work.join("out").display()));
    let copy_out = t.elapsed();
    sh(&format!("diff -r {} {}", work.join("ref").display(), work.join("out").display()));
    assert!(fingerprint(&work.join("out")) == reference, "cp -a lost modes or times");
    m.unmount();
    eprintln!(
        "workload: {} files, {} bytes ({} crates); tar x {:.2?}, hash {:.2?}, unmount {:.2?}, \
         hash after remount {:.2?}, cp -a out {:.2?}",
        reference.len(),
        bytes,
        chosen.len(),
        untar,
        hash1,
        unmount,
        hash2,
        copy_out
    );
}

/// fio with 32 direct writes in flight (libaio; the kernel submits them to the daemon
/// concurrently, FUSE_ASYNC_DIO), of sizes that straddle data blocks, over a file
/// written before: every block verifies when fio writes it, again after a remount from a
/// separate verify-only run, and the writes landed in place.
#[test]
fn queued_direct_random_writes_verify_and_survive_remount() {
    let img = Image::new();
    let m = img.mount();
    let file = m.join("aio.dat");
    // No verify state file: fio would leave it in the working directory, the repository.
    let fio = |extra: &str| {
        sh(&format!(
            "fio --name=aio --filename={} --size=48M --rw=randwrite --bsrange=4k-40k --ioengine=libaio \
             --iodepth=32 --direct=1 --randseed=42 --verify=crc32c --verify_fatal=1 --verify_state_save=0 --output=/dev/null {extra}",
            file.display()
        ))
    };
    sh(&format!("head -c 48M /dev/zero > {}", file.display()));
    fio("--do_verify=1");
    let before = fs::metadata(&file).unwrap();
    assert_eq!(before.len(), 48 << 20, "writes in place did not change the size");
    m.unmount();

    let m = img.mount();
    fio("--verify_only");
    m.unmount();
}
