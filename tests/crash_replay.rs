//! Crash-point replay: a workload runs on two recorded devices holding two copies; then,
//! for every flush point of the recorded writes and for random subsets (and torn prefixes)
//! of the writes issued since, the devices are rebuilt as a power cut at that instant would
//! leave them, and mounted. Every crash state must mount, be consistent (the free map equals
//! the reachable blocks, every block verifies), hold everything whose sync had returned,
//! and show exactly a state the workload passed through (commits are atomic). Each device
//! must also mount alone and show such a state.
//!
//! `HAMMER2_CRASH_STATES` sets the number of crash states (default 1200).

use hammer2_test_support as common;

use common::crash::{Lost, Random, crash_device};
use common::engine::{
    assert_consistent, assert_every_copy_verifies, format_copies, mem_devices, quiet_options, snapshot_files,
};
use common::rng::Rng;
use hammer2::storage::DynStorage;
use hammer2::storage::recording::{Op, RecordLog, RecordingStorage};
use hammer2::{Creds, Fs, Options, RenameFlags, SetAttr};
use std::collections::BTreeMap;
use std::sync::Arc;

type State = BTreeMap<String, Vec<u8>>;

struct Run {
    bases: Vec<Arc<Vec<u8>>>,
    events: Vec<hammer2::storage::recording::Event>,
    /// Per commit: (log length when the sync began, log length when it returned, state).
    commits: Vec<(usize, usize, State)>,
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// The workload: creates, writes, renames, unlinks, links, truncates, a directory move,
/// with a sync after each group.
fn workload() -> Run {
    let mem = mem_devices(2, 32 << 20);
    format_copies(&mem, 2);
    let bases: Vec<Arc<Vec<u8>>> = mem.iter().map(|m| Arc::new(read_all(m.as_ref()))).collect();
    let log = RecordLog::new();
    let devs: Vec<DynStorage> = mem
        .iter()
        .enumerate()
        .map(|(i, m)| Arc::new(RecordingStorage::new(m.clone(), i, log.clone())) as DynStorage)
        .collect();
    let fs = Fs::mount(devs, quiet_options()).unwrap();
    let c = Creds::default();
    let r = fs.root();
    let mut commits = vec![(0, 0, State::new())];
    let sync = |fs: &Fs, commits: &mut Vec<(usize, usize, State)>| {
        let begin = log.len();
        fs.sync().unwrap();
        commits.push((begin, log.len(), snapshot_files(fs)));
    };

    let a = fs.mkdir(r, b"a", 0o755, c).unwrap();
    let f1 = fs.create(a.ino, b"f1", 0o644, c).unwrap();
    fs.write(f1.ino, 0, &data(100, 1)).unwrap();
    sync(&fs, &mut commits);

    let f2 = fs.create(a.ino, b"f2", 0o644, c).unwrap();
    fs.write(f2.ino, 0, &data(300_000, 2)).unwrap();
    let b = fs.mkdir(r, b"b", 0o755, c).unwrap();
    fs.rename(a.ino, b"f1", b.ino, b"f1-moved", RenameFlags::default()).unwrap();
    sync(&fs, &mut commits);

    fs.write(f2.ino, 70_000, &data(5000, 3)).unwrap();
    for i in 0..40 {
        let f = fs.create(b.ino, format!("small-{i}").as_bytes(), 0o644, c).unwrap();
        fs.write(f.ino, 0, &data(50 + i * 97, i as u8)).unwrap();
    }
    sync(&fs, &mut commits);

    fs.unlink(a.ino, b"f2").unwrap();
    fs.link(f1.ino, r, b"f1-link").unwrap();
    fs.setattr(f1.ino, &SetAttr { size: Some(10), ..Default::default() }).unwrap();
    sync(&fs, &mut commits);

    fs.rename(r, b"a", b.ino, b"a-inside-b", RenameFlags::default()).unwrap();
    let big = fs.create(r, b"big", 0o644, c).unwrap();
    fs.write(big.ino, 0, &data(2_000_000, 9)).unwrap();
    sync(&fs, &mut commits);

    for i in (0..40).step_by(3) {
        fs.unlink(b.ino, format!("small-{i}").as_bytes()).unwrap();
    }
    fs.write(big.ino, 1_000_000, &data(100_000, 10)).unwrap();
    sync(&fs, &mut commits);

    fs.setattr(big.ino, &SetAttr { size: Some(300_000), ..Default::default() }).unwrap();
    fs.rename(b.ino, b"small-1", r, b"f1-link", RenameFlags::default()).unwrap();
    sync(&fs, &mut commits);

    // Fill the device until little is free, then rewrite in place: every commit must now
    // allocate where earlier commits freed. Reuse is where a premature free would show.
    // 13 MiB: the 6 MiB rewrite below must still fit beside the metadata reserve, which is
    // now whole slots (DESIGN §10, S3).
    let fill = fs.create(r, b"fill", 0o644, c).unwrap();
    fs.write(fill.ino, 0, &data(13 << 20, 42)).unwrap();
    sync(&fs, &mut commits);
    for round in 0..12u8 {
        fs.write(big.ino, 0, &data(300_000, 20 + round)).unwrap();
        fs.write(fill.ino, u64::from(round % 6) << 20, &data(1 << 20, round)).unwrap();
        if round % 3 == 0 {
            let f = fs.create(r, format!("churn-{round}").as_bytes(), 0o644, c).unwrap();
            fs.write(f.ino, 0, &data(70_000, round)).unwrap();
        }
        sync(&fs, &mut commits);
    }
    // A large rewrite into reused space: a commit with several MiB of data streams it to
    // the devices while it is still being built, so power cuts also fall among those writes.
    fs.write(fill.ino, 4 << 20, &data(6 << 20, 77)).unwrap();
    sync(&fs, &mut commits);

    let begin = log.len();
    fs.unmount().unwrap();
    let last = commits.last().unwrap().2.clone();
    commits.push((begin, log.len(), last));
    Run { bases, events: log.events(), commits }
}

fn read_all(s: &dyn hammer2::storage::Storage) -> Vec<u8> {
    let mut v = vec![0u8; s.size() as usize];
    s.read_at(&mut v, 0).unwrap();
    v
}

fn allowed(run: &Run, upto: usize) -> (usize, usize) {
    // Oldest state allowed: the last commit whose sync returned before the cut.
    let lo = run.commits.iter().rposition(|(_, done, _)| *done <= upto).unwrap_or(0);
    // Newest: the last commit that had begun.
    let hi = run.commits.iter().rposition(|(begin, _, _)| *begin <= upto).unwrap_or(0);
    (lo, hi)
}

fn check_state(run: &Run, devs: Vec<DynStorage>, upto: usize, what: &str) {
    let degraded = devs.len() == 1;
    // Read-only: nothing may heal a damaged copy before it is checked.
    let opts = Options { degraded, read_only: true, ..quiet_options() };
    let fs =
        Fs::mount(devs, opts).unwrap_or_else(|e| panic!("{what}: crash state at event {upto} does not mount: {e}"));
    let seen = snapshot_files(&fs);
    let (lo, hi) = allowed(run, upto);
    let matches: Vec<usize> = (lo..=hi).filter(|&k| run.commits[k].2 == seen).collect();
    assert!(
        !matches.is_empty(),
        "{what}: crash at event {upto} shows a state the workload never committed (allowed commits {lo}..={hi}; files: {:?})",
        seen.keys().collect::<Vec<_>>()
    );
    assert_consistent(&fs);
    assert_every_copy_verifies(&fs);
    fs.crash();
}

#[test]
fn every_crash_state_mounts_consistent_with_all_synced_data_and_an_atomic_state() {
    let run = workload();
    let want: usize = std::env::var("HAMMER2_CRASH_STATES").ok().and_then(|v| v.parse().ok()).unwrap_or(1200);
    let flush_points: Vec<usize> =
        run.events.iter().enumerate().filter(|(_, e)| matches!(e.op, Op::Flush)).map(|(i, _)| i + 1).collect();
    let mut points: Vec<usize> = flush_points.clone();
    points.push(0);
    points.push(run.events.len());
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let mut explored = 0usize;
    let mut torn_or_partial = 0usize;
    // Every flush point with nothing after it lost or kept: the deterministic prefix states.
    for &p in &points {
        let devs: Vec<DynStorage> =
            (0..2).map(|d| Arc::new(crash_device(&run.bases[d], &run.events, p, d, &mut Lost)) as DynStorage).collect();
        check_state(&run, devs.clone(), p, "both devices");
        check_state(&run, vec![devs[0].clone()], p, "device 0 alone");
        check_state(&run, vec![devs[1].clone()], p, "device 1 alone");
        explored += 1;
    }
    // Random cut points with random subsets and torn prefixes of the unflushed writes.
    while explored < want {
        let p = 1 + rng.next_u64() as usize % run.events.len();
        let seed = rng.next_u64() | 1;
        let mut fate = Random(Rng::new(seed));
        let devs: Vec<DynStorage> =
            (0..2).map(|d| Arc::new(crash_device(&run.bases[d], &run.events, p, d, &mut fate)) as DynStorage).collect();
        let what = format!("cut {p} seed {seed:#x}");
        check_state(&run, devs.clone(), p, &what);
        if explored % 4 == 0 {
            check_state(&run, vec![devs[explored % 8 / 4].clone()], p, &format!("{what}, one device alone"));
        }
        explored += 1;
        torn_or_partial += 1;
    }
    eprintln!(
        "explored {explored} crash states ({} flush points, {torn_or_partial} random cuts with lost or torn writes) over {} recorded events and {} commits",
        points.len(),
        run.events.len(),
        run.commits.len()
    );
}
