//! The fsx-like exerciser (`hammer2-fsx data`) on a real mount: random preads and pwrites
//! (small and large, straddling 64 KiB blocks, far past the end), truncates down and up,
//! shared mmap reads and writes, fallocate, fsync, close/reopen and SEEK_DATA/SEEK_HOLE,
//! each result checked against the exerciser's in-memory copy of every file. The copy is
//! saved outside the mount and the files are checked against it after a remount.
//!
//! A third run puts two exercisers and three metadata workers on one mount at once, with the
//! daemon committing every 50 ms, so commits keep cutting through writes, truncates and
//! renames in flight.
//!
//! The amount of work: `HAMMER2_FSX_OPS` operations (default 12,000; the run across a remount
//! splits them in two), or
//! `HAMMER2_FSX_SECONDS` seconds per run for a long run. `--nocapture` shows the counts.

use hammer2_test_support as common;

use common::mount::*;
use common::rng::env_u64;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const FILES: usize = 4;

/// The run's length as hammer2-fsx arguments, and how long the run may take at most.
fn budget(ops: u64) -> (Vec<String>, Duration) {
    match std::env::var("HAMMER2_FSX_SECONDS") {
        Ok(s) => {
            let secs: u64 = s.parse().unwrap_or_else(|_| panic!("HAMMER2_FSX_SECONDS={s:?} is not a number"));
            (vec!["--seconds".into(), secs.to_string()], Duration::from_secs(secs + 600))
        }
        Err(_) => (vec!["--ops".into(), ops.to_string()], Duration::from_secs(1200)),
    }
}

fn ops() -> u64 {
    env_u64("HAMMER2_FSX_OPS", 12_000)
}

/// Runs the exerciser in `dir` and returns its summary; fails the test with its report (the
/// mismatch and the tail of its operation log) and the daemon's log if it found anything.
fn fsx(img: &Image, dir: &Path, seed: u64, ops: u64, model: &Path) -> serde_json::Value {
    let (len, limit) = budget(ops);
    let mut cmd = Command::new(FSX);
    cmd.arg("data")
        .arg(dir)
        .args(["--seed", &seed.to_string(), "--files", &FILES.to_string()])
        .args(&len)
        .arg("--model-dir")
        .arg(model);
    fsx_summary(img, &mut cmd, limit)
}

/// Every file in `dir` has exactly the bytes of its saved model.
fn assert_files_match_model(dir: &Path, model: &Path) {
    for i in 0..FILES {
        let want = std::fs::read(model.join(format!("f{i}.model"))).expect("saved model");
        let got = std::fs::read(dir.join(format!("f{i}"))).unwrap_or_else(|e| panic!("read f{i}: {e}"));
        if got != want {
            let first = got.iter().zip(&want).position(|(a, b)| a != b);
            panic!("f{i}: {} bytes, model {} bytes, first difference at {first:?}", got.len(), want.len());
        }
    }
}

fn report(what: &str, s: &serde_json::Value) {
    eprintln!(
        "{what}: seed {}, {} operations {}, {} bytes written, {} bytes checked, 0 mismatches",
        s["seed"], s["ops"], s["by_kind"], s["bytes_written"], s["bytes_checked"]
    );
}

#[test]
fn every_exerciser_operation_reads_back_what_the_model_holds_and_so_does_a_remount() {
    let img = Image::with(2, 512 << 20, Some(2));
    let model = img.dir.path().join("model");
    let m = img.mount();
    let dir = m.join("fsx");
    std::fs::create_dir(&dir).expect("mkdir");
    let s = fsx(&img, &dir, 7, ops(), &model);
    report("fsx on a fresh mount", &s);
    m.unmount();

    let m = img.mount();
    assert_files_match_model(&m.join("fsx"), &model);
    m.unmount();
    img.assert_consistent();
}

#[test]
fn the_exerciser_continues_across_a_remount_from_the_state_it_left() {
    let img = Image::with(2, 512 << 20, Some(2));
    let model = img.dir.path().join("model");
    let m = img.mount();
    let dir = m.join("fsx");
    std::fs::create_dir(&dir).expect("mkdir");
    let first = fsx(&img, &dir, 11, ops() / 2, &model);
    m.unmount();

    // The second run first checks every file against the saved model, then goes on.
    let m = img.mount();
    let second = fsx(&img, &m.join("fsx"), 12, ops() / 2, &model);
    assert_eq!(second["resumed"], true, "{second}");
    m.unmount();

    let m = img.mount();
    assert_files_match_model(&m.join("fsx"), &model);
    m.unmount();
    report("fsx before the remount", &first);
    report("fsx after the remount", &second);
    img.assert_consistent();
}

#[test]
fn exercisers_and_metadata_workers_at_once_with_a_commit_every_50ms_all_see_their_models() {
    let img = Image::with(2, 512 << 20, Some(2));
    let m = img.mount_with("sync_interval=0.05");
    let meta = m.join("meta");
    std::fs::create_dir(&meta).expect("mkdir");
    // Metadata operations are much cheaper: ten times as many keep the workers busy for
    // about as long as the exercisers.
    let (len, limit) = budget(ops() * 5);
    let (data, workers) = std::thread::scope(|s| {
        let data: Vec<_> = (0..2u64)
            .map(|i| {
                let (img, m) = (&img, &m);
                s.spawn(move || {
                    let dir = m.join(format!("fsx{i}"));
                    std::fs::create_dir(&dir).expect("mkdir");
                    let model = img.dir.path().join(format!("model{i}"));
                    (fsx(img, &dir, 20 + i, ops() / 2, &model), dir, model)
                })
            })
            .collect();
        let workers: Vec<_> = (0..3u64)
            .map(|w| {
                let (img, meta, len) = (&img, &meta, len.clone());
                s.spawn(move || {
                    let mut cmd = Command::new(FSX);
                    cmd.arg("meta").arg(meta).args(["--seed", &(30 + w).to_string()]).args(&len);
                    fsx_summary(img, &mut cmd, limit)
                })
            })
            .collect();
        let data: Vec<_> = data.into_iter().map(|h| h.join().expect("exerciser thread")).collect();
        let workers: Vec<_> = workers.into_iter().map(|h| h.join().expect("worker thread")).collect();
        (data, workers)
    });
    m.unmount();

    let m = img.mount();
    for (_, dir, model) in &data {
        assert_files_match_model(&m.join(dir.file_name().expect("name")), model);
    }
    m.unmount();
    img.assert_consistent();
    for (s, _, _) in &data {
        report("fsx alongside others", s);
    }
    let meta_ops: u64 = workers.iter().map(|w| w["ops"].as_u64().unwrap_or(0)).sum();
    eprintln!("alongside: 3 metadata workers, {meta_ops} operations, 0 unexpected errors");
}
