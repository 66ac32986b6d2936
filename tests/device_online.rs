//! `hammer2 device offline|online MOUNTPOINT DEVICE` and the reconnect watcher, on real
//! mounts of real image files: a device taken out (or failing) during writes comes back
//! while mounted, is caught up by a resync that starts by itself, and then holds exactly
//! the data on its own. A failing device is a real file served by a FUSE filesystem of the
//! test's own that answers EIO on command (`common::faulty_fuse`): the daemon has no hook.

use hammer2_test_support as common;

use common::damage::Blocks;
use common::faulty_fuse::FaultyDevice;
use common::image::{exit_code, fsck, hammer2, info_json, ok, one_line_error, stderr};
use common::mount::*;
use serde_json::Value;
use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn state(info: &Value, dev: usize) -> String {
    info["devices"][dev]["state"].as_str().unwrap_or_else(|| panic!("no state for device {dev}: {info}")).to_string()
}

fn device(action: &str, m: &Mount, dev: &Path) -> std::process::Output {
    hammer2([OsStr::new("device"), OsStr::new(action), m.path.as_os_str(), dev.as_os_str()])
}

fn peak_rss_mib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb / 1024
}

/// Small files of varied sizes in `m/name`.
fn write_set(m: &Mount, name: &str, files: usize) {
    let d = m.join(name);
    fs::create_dir_all(&d).unwrap();
    for i in 0..files {
        let size = [100, 5000, 70_000, 300_000, 2_500_000][i % 5];
        fs::write(d.join(format!("f{i}")), pattern(size, (i + name.len()) as u8)).unwrap();
    }
}

/// Writes `mib` MiB to `m/name` and fsyncs it.
fn stream(m: &Mount, name: &str, mib: u64) {
    let mut f = fs::File::create(m.join(name)).unwrap();
    for i in 0..mib {
        f.write_all(&pattern(MIB as usize, i as u8 ^ 0x3c)).unwrap_or_else(|e| panic!("write of MiB {i}: {e}"));
    }
    f.sync_all().expect("fsync on the remaining copies");
}

/// Polls `hammer2 info` until device `dev` is online; returns how long it took and the states
/// seen on the way.
fn until_online(m: &Mount, dev: usize, limit: Duration) -> (Duration, Vec<String>) {
    let start = Instant::now();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let s = state(&info_json([&m.path]), dev);
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == "online" {
            return (start.elapsed(), seen);
        }
        assert!(start.elapsed() < limit, "device {dev} not online after {limit:?}; states seen: {seen:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `copied_bytes` of the last "automatic resync done" line of the daemon's log.
fn autoresync_copied(img: &Image) -> (u64, u64) {
    // Logged after its last commit, which persists the states it reported.
    img.log_shows("automatic resync done");
    let log = img.log();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("automatic resync done"))
        .unwrap_or_else(|| panic!("no automatic resync in the log:\n{log}"));
    let num = |key: &str| -> u64 {
        let rest = &line[line.find(key).unwrap_or_else(|| panic!("{line:?} lacks {key}")) + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    (num("copied_blocks="), num("copied_bytes="))
}

fn fsck_clean(img: &Image) {
    for d in &img.devices {
        wait_released(d);
    }
    let o = fsck(std::iter::once(OsStr::new("-n")).chain(img.devices.iter().map(|d| d.as_os_str())));
    assert_eq!(exit_code(&o), 0, "fsck -n: {}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
}

#[test]
fn a_device_taken_offline_during_writes_comes_back_online_resyncs_by_itself_and_alone_holds_exactly_the_data() {
    const CACHE_MIB: u64 = 64;
    const AWAY_MIB: u64 = 512;
    // Nothing is queued for the device that is out: the daemon's memory stays within its
    // cache and dirty budget plus its code, whatever is written meanwhile.
    const MEMORY_BOUND_MIB: u64 = CACHE_MIB + 100;
    let img = Image::by_mkfs(2, 1024 * MIB, 2);
    let (a, b) = (img.devices[0].as_path(), img.devices[1].as_path());
    let m = img.mount_with(&format!("cache={CACHE_MIB}M"));
    write_set(&m, "A", 20);

    let out = ok(&device("offline", &m, b));
    assert!(out.contains("out of service"), "{out}");
    let live = info_json([&m.path]);
    assert_eq!((state(&live, 0), state(&live, 1)), ("online".into(), "offline".into()), "{live}");
    // Refusals: one line each, exit status 8.
    let line = one_line_error(&device("offline", &m, a), "hammer2 device offline: ", "last writable device");
    eprintln!("refused: {line}");
    assert_eq!(exit_code(&device("offline", &m, a)), 8);
    let line = one_line_error(&device("online", &m, a), "hammer2 device online: ", "already in service");
    eprintln!("refused: {line}");
    assert_eq!(exit_code(&device("online", &m, a)), 8);
    let other = Image::by_mkfs(1, 256 * MIB, 1);
    let line = one_line_error(
        &device("online", &m, &other.devices[0]),
        "hammer2 device online: ",
        "another hammer2 filesystem",
    );
    eprintln!("refused: {line}");
    let stranger = other.dir.path().join("stranger.img");
    fs::write(&stranger, vec![0u8; 64 << 20]).unwrap();
    one_line_error(&device("offline", &m, &stranger), "hammer2 device offline: ", "not a device of this mount");

    // Writes go on with device 1 out.
    stream(&m, "stream", AWAY_MIB);
    write_set(&m, "B", 20);
    sh("sync");
    let peak = peak_rss_mib(m.pid);
    eprintln!(
        "{AWAY_MIB} MiB written with device 1 offline: daemon peak RSS {peak} MiB (bound {MEMORY_BOUND_MIB} MiB)"
    );
    assert!(peak <= MEMORY_BOUND_MIB, "daemon peak RSS {peak} MiB > {MEMORY_BOUND_MIB} MiB");

    let out = ok(&device("online", &m, b));
    assert!(out.contains("back in service"), "{out}");
    let (took, seen) = until_online(&m, 1, Duration::from_secs(300));
    let (blocks, bytes) = autoresync_copied(&img);
    eprintln!(
        "device online -> online in {:.2} s (states {seen:?}); the automatic resync copied {blocks} blocks, {} MiB, \
         for {AWAY_MIB} MiB of stream and set B (~{} MiB) written while it was away",
        took.as_secs_f64(),
        bytes / MIB,
        (4 * 2_875_000 + 4 * 100) / MIB
    );
    assert!(bytes >= AWAY_MIB * MIB, "everything written while away is copied: {bytes}");
    assert!(bytes < (AWAY_MIB + 64) * MIB, "what it already held is not copied again: {bytes}");
    let whole = snapshot(&m.path);
    m.unmount();

    let alone = img.mount_devices(&[b], "ro,degraded", &[]);
    assert_eq!(snapshot(&alone.path), whole, "device 1 alone holds exactly the data");
    alone.unmount();
    fsck_clean(&img);
    Blocks::open(&img.devices).assert_every_copy_good();
    img.assert_no_panics();
}

#[test]
fn a_device_that_fails_during_writes_and_answers_again_comes_back_by_itself() {
    let img = Image::by_mkfs(2, 512 * MIB, 2);
    let served = img.dir.path().join("served");
    fs::create_dir(&served).unwrap();
    let faulty = FaultyDevice::serve(&img.devices[1], &served);
    let m = img.mount_devices(&[img.devices[0].as_path(), &faulty.path], "", &[]);
    write_set(&m, "A", 10);
    sh("sync");

    faulty.fail();
    stream(&m, "stream", 64);
    assert!(faulty.refused() > 0, "the daemon met the failing device");
    let start = Instant::now();
    loop {
        let live = info_json([&m.path]);
        if state(&live, 1) == "reconnecting" {
            let d = &live["devices"][1]["link"];
            assert!(d["last_error"].is_string(), "{live}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "device 1 never shown reconnecting: {live}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = ok(&hammer2([OsStr::new("info"), m.path.as_os_str()]));
    assert!(text.contains("device 1: reconnected 0 time(s), reconnecting"), "{text}");
    write_set(&m, "B", 10);
    sh("sync");

    faulty.recover();
    let (took, seen) = until_online(&m, 1, Duration::from_secs(120));
    let (blocks, bytes) = autoresync_copied(&img);
    eprintln!(
        "device answering again -> online in {:.2} s by itself (states {seen:?}; retries 1 s, doubling to 60 s); the \
         automatic resync copied {blocks} blocks ({} MiB) for the 64 MiB stream and set B written while it failed",
        took.as_secs_f64(),
        bytes / MIB
    );
    let live = info_json([&m.path]);
    assert_eq!(live["devices"][1]["link"]["reconnects"], 1, "{live}");
    let whole = snapshot(&m.path);
    m.unmount();
    faulty.stop();

    let alone = img.mount_devices(&[&img.devices[1]], "ro,degraded", &[]);
    assert_eq!(snapshot(&alone.path), whole, "device 1 alone holds exactly the data");
    alone.unmount();
    fsck_clean(&img);
    img.assert_no_panics();
}

#[test]
fn with_autoresync_off_a_device_brought_back_stays_stale_until_the_operator_resyncs() {
    let img = Image::by_mkfs(2, 256 * MIB, 2);
    let b = img.devices[1].as_path();
    let m = img.mount_with("autoresync=off");
    write_set(&m, "A", 10);
    ok(&device("offline", &m, b));
    write_set(&m, "B", 10);
    sh("sync");
    let (code, rep) = common::image::hammer2_json("device", [OsStr::new("online"), m.path.as_os_str(), b.as_os_str()]);
    assert_eq!((code, &rep["resync_started"]), (0, &Value::Bool(false)), "{rep}");
    std::thread::sleep(Duration::from_secs(2));
    let live = info_json([&m.path]);
    assert_eq!(state(&live, 1), "stale", "nothing resyncs it by itself: {live}");
    assert!(!img.log().contains("automatic resync"), "{}", img.log());
    let out = ok(&hammer2([OsStr::new("resync"), m.path.as_os_str()]));
    assert!(out.contains(&format!("{}: in sync", b.display())), "{out}");
    assert_eq!(state(&info_json([&m.path]), 1), "online");
    let whole = snapshot(&m.path);
    m.unmount();
    let alone = img.mount_devices(&[b], "ro,degraded", &[]);
    assert_eq!(snapshot(&alone.path), whole, "device 1 alone holds exactly the data");
    alone.unmount();
    fsck_clean(&img);
    img.assert_no_panics();
}

#[test]
fn a_failed_device_the_mount_still_holds_is_taken_back_at_once_by_device_online() {
    let img = Image::by_mkfs(2, 256 * MIB, 2);
    let served = img.dir.path().join("served");
    fs::create_dir(&served).unwrap();
    let faulty = FaultyDevice::serve(&img.devices[1], &served);
    let m = img.mount_devices(&[img.devices[0].as_path(), &faulty.path], "", &[]);
    write_set(&m, "A", 10);
    sh("sync");
    faulty.fail();
    write_set(&m, "B", 10);
    sh("sync");
    // Right after one of the watcher's retries (the next is seconds away), the device
    // answers and the operator hands it back: it is reopened under the claim the mount
    // holds (opening its path anew would meet that claim).
    let start = Instant::now();
    while info_json([&m.path])["devices"][1]["link"]["attempts"].as_u64() < Some(2) {
        assert!(start.elapsed() < Duration::from_secs(30), "the watcher did not retry");
        std::thread::sleep(Duration::from_millis(20));
    }
    faulty.recover();
    let out = ok(&device("online", &m, &faulty.path));
    assert!(out.contains("back in service"), "{out}");
    let (took, seen) = until_online(&m, 1, Duration::from_secs(60));
    eprintln!("device online of a held failed device -> online in {:.2} s ({seen:?})", took.as_secs_f64());
    let live = info_json([&m.path]);
    assert_eq!(live["devices"][1]["link"]["reconnects"], 1, "{live}");
    let line = one_line_error(&device("online", &m, &faulty.path), "hammer2 device online: ", "already in service");
    eprintln!("refused: {line}");
    let whole = snapshot(&m.path);
    m.unmount();
    faulty.stop();
    let alone = img.mount_devices(&[&img.devices[1]], "ro,degraded", &[]);
    assert_eq!(snapshot(&alone.path), whole, "device 1 alone holds exactly the data");
    alone.unmount();
    fsck_clean(&img);
    img.assert_no_panics();
}

#[test]
fn a_device_missing_at_mount_joins_the_degraded_mount_with_device_online() {
    let img = Image::by_mkfs(2, 256 * MIB, 2);
    let (a, b) = (img.devices[0].as_path(), img.devices[1].as_path());
    let m = img.mount_devices(&[a], "degraded", &[]);
    write_set(&m, "A", 10);
    sh("sync");
    assert_eq!(state(&info_json([&m.path]), 1), "missing");
    let out = ok(&device("online", &m, b));
    assert!(out.contains("device 1") && out.contains("back in service"), "{out}");
    let (took, seen) = until_online(&m, 1, Duration::from_secs(60));
    eprintln!("a device missing at mount -> online in {:.2} s ({seen:?})", took.as_secs_f64());
    write_set(&m, "B", 5);
    m.unmount();
    // Both are whole now: they mount together without -o degraded, and device 1 alone
    // shows the same.
    let both = img.mount_with("ro");
    let whole = snapshot(&both.path);
    both.unmount();
    assert!(whole.keys().any(|k| k.starts_with("B")), "{whole:?}");
    let alone = img.mount_devices(&[b], "ro,degraded", &[]);
    assert_eq!(snapshot(&alone.path), whole, "device 1 alone holds exactly the data");
    alone.unmount();
    fsck_clean(&img);
    img.assert_no_panics();
}
