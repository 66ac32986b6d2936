//! `hammer2 status` and `hammer2 clear` (issue 28) on real mounts: the overall state the
//! engine decides (`hammer2::info::health`), the action line, the scan line of a running
//! resync with percent, rate and ETA, the last scrub of the mount, counters reset by clear.

use hammer2_test_support as common;

use common::damage::Blocks;
use common::image::{exit_code, hammer2, hammer2_bin, stderr, stdout};
use common::mount::{Image, Mount};
use common::rng::Rng;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn fill(m: &Mount, mib: usize) {
    let mut rng = Rng::new(28);
    std::fs::create_dir(m.join("data")).unwrap();
    for i in 0..mib {
        std::fs::write(m.join(format!("data/f{i}")), rng.bytes(MIB as usize)).unwrap();
    }
    std::fs::File::open(m.join("data")).unwrap().sync_all().unwrap();
}

fn status(target: &Path) -> String {
    let o = hammer2(["status".as_ref(), target.as_os_str()]);
    assert_eq!(exit_code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

fn status_json(target: &Path) -> Value {
    let o = hammer2(["status".as_ref(), "--json".as_ref(), target.as_os_str()]);
    assert_eq!(exit_code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&o)))
}

fn rfc3339(s: &Value) -> bool {
    s.as_str().is_some_and(|s| humantime::parse_rfc3339(s).is_ok())
}

#[test]
fn a_healthy_pair_is_online_with_no_action_and_shows_its_last_scrub_once_scrubbed() {
    let img = Image::with(2, 256 * MIB, Some(2));
    let m = img.mount();
    fill(&m, 2);
    let text = status(&m.path);
    assert!(text.contains(" state: ONLINE\n"), "{text}");
    assert!(!text.contains("action:"), "{text}");
    assert!(text.contains("last scrub: (none recorded)"), "{text}");
    for d in &img.devices {
        let row = text.lines().find(|l| l.contains(&*d.display().to_string())).unwrap_or_else(|| panic!("{text}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[2..], ["ONLINE", "0", "0", "0", "0"], "{row:?}");
    }
    let j = status_json(&m.path);
    assert_eq!(j["schema_version"], 2, "{j}");
    assert_eq!(j["state"], "ONLINE");
    assert_eq!(j["actions"].as_array().unwrap().len(), 0);
    assert!(j["scan"].is_null() && j["last_scrub"].is_null(), "{j}");
    assert_eq!(j["devices"].as_array().unwrap().len(), 2);

    let o = hammer2(["scrub".as_ref(), m.path.as_os_str()]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let text = status(&m.path);
    let scan = text.lines().find(|l| l.starts_with("  scan: scrub read ")).unwrap_or_else(|| panic!("{text}"));
    assert!(scan.contains("0 error(s), 0 repaired, 0 unrepairable, on 20"), "{scan}");
    let j = status_json(&m.path);
    assert!(rfc3339(&j["last_scrub"]["ended"]), "{j}");
    assert_eq!(j["last_scrub"]["errors"], 0);
    assert!(j["last_scrub"]["bytes_read"].as_u64().unwrap() > 4 * MIB, "{j}");
    m.unmount();

    // Unmounted, from its devices: the same state, and the last scrub as recorded.
    let text = status(&img.devices[0]);
    assert!(text.contains("(not mounted)"), "{text}");
    let o = hammer2(["status".as_ref(), img.devices[0].as_os_str(), img.devices[1].as_os_str()]);
    assert!(stdout(&o).contains(" state: ONLINE\n"), "{}", stdout(&o));
    assert!(stdout(&o).contains(scan), "the last scrub is kept across the unmount: {}", stdout(&o));
    // Mounted again: still shown (it was kept outside the daemon).
    let m = img.mount();
    let text = status(&m.path);
    assert!(text.contains(scan), "the last scrub is kept across mounts: {text}");
    let again = status_json(&m.path);
    assert_eq!(again["last_scrub"], j["last_scrub"], "the same record");
    m.unmount();
}

#[test]
fn a_degraded_mount_says_so_and_how_to_bring_the_missing_device_back() {
    let img = Image::with(2, 256 * MIB, Some(2));
    let m = img.mount_devices(&[img.devices[0].as_path()], "degraded", &[]);
    let text = status(&m.path);
    assert!(text.contains(" state: DEGRADED\n"), "{text}");
    let action = text.lines().find(|l| l.starts_with("action: ")).unwrap_or_else(|| panic!("{text}"));
    assert!(
        action.contains("replace or bring back device 1")
            && action.contains(&format!("'hammer2 device online {} DEVICE'", m.path.display())),
        "{action}"
    );
    assert!(text.lines().any(|l| l.contains("missing") && l.contains("MISSING")), "{text}");
    let j = status_json(&m.path);
    assert_eq!(j["state"], "DEGRADED");
    assert_eq!(j["devices"][1]["state"], "missing");
    m.unmount();

    // Offline, one device of two: degraded too, and the action says what to give.
    let text = status(&img.devices[0]);
    assert!(text.contains(" state: DEGRADED\n") && text.contains("action: give every device"), "{text}");
}

/// As zpool's OFFLINE: a device the operator took out is no failure. Its row keeps its name
/// and says OFFLINE, the action says how to bring it back, and `device online` ends it.
#[test]
fn a_device_taken_offline_shows_offline_by_its_name_until_brought_back() {
    let img = Image::with(2, 256 * MIB, Some(2));
    let m = img.mount();
    fill(&m, 2);
    let b = img.devices[1].display().to_string();
    let o = hammer2(["device".as_ref(), "offline".as_ref(), m.path.as_os_str(), b.as_ref()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = status(&m.path);
    assert!(text.contains(" state: DEGRADED\n"), "{text}");
    assert!(
        text.contains(&format!(
            "action: {b} taken offline by the operator: bring it back with 'hammer2 device online {} DEVICE'",
            m.path.display()
        )),
        "{text}"
    );
    let row = text.lines().find(|l| l.contains("OFFLINE")).unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains(&b), "{text}");
    let j = status_json(&m.path);
    assert_eq!(j["devices"][1]["state"], "offline", "{j}");
    assert_eq!(j["devices"][1]["path"], b.as_str(), "{j}");
    let o = hammer2(["device".as_ref(), "online".as_ref(), m.path.as_os_str(), b.as_ref()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t0 = Instant::now();
    while !status(&m.path).contains(" state: ONLINE\n") {
        assert!(t0.elapsed() < Duration::from_secs(20), "{}", status(&m.path));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!status(&m.path).contains("OFFLINE"));
    m.unmount();
}

#[test]
fn during_a_throttled_resync_status_shows_percent_rate_and_eta() {
    let img = Image::with(2, 256 * MIB, Some(2));
    let (a, b) = (img.devices[0].clone(), img.devices[1].clone());
    let m = img.mount_devices(&[a.as_path()], "degraded", &[]);
    fill(&m, 24);
    m.unmount();
    let m = img.mount_devices(&[a.as_path(), b.as_path()], "", &[]);
    let before = status(&m.path);
    assert!(before.contains(" state: DEGRADED\n") && before.contains("run 'hammer2 resync"), "{before}");
    let resync = Command::new(hammer2_bin())
        .args(["resync", "--rate", "6"])
        .arg(&m.path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the resync has committed a slice with copies in it.
    let t0 = Instant::now();
    let (text, j) = loop {
        let j = status_json(&m.path);
        if j["scan"]["done_bytes"].as_u64().is_some_and(|d| d > 0) {
            break (status(&m.path), j);
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "no resync progress in status: {j}");
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("{text}");
    assert!(text.contains(" state: DEGRADED\n"), "{text}");
    assert!(text.contains(&format!("action: wait for the resync of {} to complete", b.display())), "{text}");
    assert!(text.contains("  scan: resync in progress since 20"), "{text}");
    let line = text.lines().find(|l| l.contains("% done") || l.contains("done (")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("MB/s") && line.contains("to go"), "{line}");
    assert_eq!(j["scan"]["kind"], "resync");
    assert!(rfc3339(&j["scan"]["started"]), "{j}");
    let pct = j["scan"]["percent"].as_f64().unwrap();
    assert!(pct > 0.0 && pct < 100.0, "{j}");
    // The rate is a lower bound on time (T1), and status shows copies done over time since
    // the start: never above the rate asked.
    let rate = j["scan"]["bytes_per_second"].as_u64().unwrap();
    assert!(rate > 0 && rate <= 6_000_000, "{j}");
    assert!(j["scan"]["eta_seconds"].as_u64().is_some(), "{j}");
    assert!(text.lines().any(|l| l.contains(&*b.display().to_string()) && l.contains("RESYNCING")), "{text}");
    let out = resync.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = status(&m.path);
    assert!(after.contains(" state: ONLINE\n") && !after.contains("action:"), "{after}");
    // The ended resync is the scan line now (as zpool shows the last resilver), newer than
    // any scrub, which follows it.
    let lines: Vec<&str> = after.lines().collect();
    let at =
        lines.iter().position(|l| l.starts_with("  scan: resync completed: ")).unwrap_or_else(|| panic!("{after}"));
    assert!(lines[at].contains("of copies copied in 0:00:") && lines[at].contains(", on 20"), "{after}");
    assert_eq!(lines[at + 1], "        last scrub: (none recorded)", "{after}");
    let j = status_json(&m.path);
    assert_eq!(j["last_operation"]["kind"], "resync", "{j}");
    assert_eq!(j["last_operation"]["outcome"], "completed", "{j}");
    assert!(j["last_operation"]["bytes"].as_u64().unwrap() > 0, "{j}");
    assert!(rfc3339(&j["last_operation"]["ended"]), "{j}");
    m.unmount();
}

#[test]
fn clear_resets_the_counters_of_one_device_or_all_and_the_headers_keep_the_reset() {
    let img = Image::with(2, 256 * MIB, Some(2));
    let m = img.mount();
    fill(&m, 2);
    m.unmount();
    // Damage a copy of some data blocks on each device: the scrub counts and repairs them.
    {
        let blocks = Blocks::open(&img.devices);
        for (i, br) in blocks.all_data().iter().take(4).enumerate() {
            blocks.smash(br, i % 2);
        }
    }
    let m = img.mount();
    let o = hammer2(["scrub".as_ref(), m.path.as_os_str()]);
    assert_eq!(exit_code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    let counted = |j: &Value, d: usize| {
        let e = &j["devices"][d];
        ["read_errors", "write_errors", "check_errors", "repaired"].map(|k| e[k].as_u64().unwrap()).iter().sum::<u64>()
    };
    let j = status_json(&m.path);
    assert!(counted(&j, 0) > 0 && counted(&j, 1) > 0, "{j}");
    let text = status(&m.path);
    assert!(text.contains("errors were counted on") && text.contains("'hammer2 clear"), "{text}");

    // One device: only its counters.
    let o = hammer2(["clear".as_ref(), m.path.as_os_str(), img.devices[0].as_os_str()]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("error counters cleared on {}", img.devices[0].display())), "{}", stdout(&o));
    let j = status_json(&m.path);
    assert_eq!(counted(&j, 0), 0, "{j}");
    assert!(counted(&j, 1) > 0, "{j}");
    // Not a device of this filesystem: one line, exit 8.
    let o = hammer2(["clear", m.path.to_str().unwrap(), "/nonexistent/dev"]);
    assert_eq!(exit_code(&o), 8);
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("not a device of this filesystem"), "{}", stderr(&o));
    // All of them.
    let o = hammer2(["clear".as_ref(), m.path.as_os_str()]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let j = status_json(&m.path);
    assert_eq!(counted(&j, 0) + counted(&j, 1), 0, "{j}");
    assert!(!status(&m.path).contains("action:"));
    m.unmount();
    // Persisted: the unmounted devices say zero too.
    let j = common::image::info_json(img.devices.iter());
    for d in j["devices"].as_array().unwrap() {
        assert_eq!(
            [&d["read_errors"], &d["write_errors"], &d["check_errors"], &d["repaired"]].map(|v| v.as_u64().unwrap()),
            [0; 4],
            "{j}"
        );
    }
}

#[test]
fn status_of_nothing_mounted_there_is_one_line_and_exit_8() {
    let dir = tempfile::tempdir().unwrap();
    let o = hammer2(["status".as_ref(), dir.path().as_os_str()]);
    assert_eq!(exit_code(&o), 8);
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("is not a mounted hammer2 filesystem"), "{}", stderr(&o));
    let o = hammer2(["clear".as_ref(), dir.path().as_os_str()]);
    assert_eq!(exit_code(&o), 8);
}

/// The one test that runs `status` without arguments: the others' mounts come and go while
/// it runs, and this test's dead mount would fail a second one.
#[test]
fn without_arguments_status_shows_every_mount_and_names_one_whose_daemon_died_with_exit_8() {
    let live = Image::with(1, 128 * MIB, None);
    let lm = live.mount();
    let dead = Image::with(1, 128 * MIB, None);
    let dm = dead.mount().kill9_leaving_mount();

    let o = hammer2(["status"]);
    assert_eq!(exit_code(&o), 8, "{}", stderr(&o));
    let on = format!("    on: {}\n", std::fs::canonicalize(&lm.path).unwrap().display());
    assert!(stdout(&o).contains(&on), "the live mount is still shown: {}", stdout(&o));
    let gone = format!("the daemon serving {} has gone", dm.path.display());
    assert!(stderr(&o).lines().any(|l| l.starts_with("hammer2 status: ") && l.contains(&gone)), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("umount {}", dm.path.display())), "{}", stderr(&o));

    let o = hammer2(["status", "--json"]);
    assert_eq!(exit_code(&o), 8, "{}", stderr(&o));
    let j: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let fss = j["filesystems"].as_array().unwrap();
    assert!(fss.iter().any(|f| f["state"] == "ONLINE"), "{j}");
    let d = fss.iter().find(|f| f["target"] == dm.path.display().to_string()).expect("the dead mount is listed");
    assert!(d["error"].as_str().unwrap().contains("has gone"), "{j}");

    // Named alone, it is the same one line and exit 8.
    let o = hammer2(["status".as_ref(), dm.path.as_os_str()]);
    assert_eq!(exit_code(&o), 8);
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains(&gone), "{}", stderr(&o));

    drop(dm);
    let o = hammer2(["status"]);
    assert_eq!(exit_code(&o), 0, "cleared away, the dead mount no longer counts: {}", stderr(&o));
    assert!(stdout(&o).contains(&on), "{}", stdout(&o));
    let o = hammer2(["status", "--json"]);
    let j: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let fss = j["filesystems"].as_array().unwrap();
    assert!(fss.iter().any(|f| f["state"] == "ONLINE" && f["mounted"] == true), "{j}");
    lm.unmount();
}
