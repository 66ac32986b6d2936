//! Long operations (issue 28): scrub and resync show a bar with a known total, percent and
//! ETA on a terminal and nothing but their report off one; `--rate` keeps them to a rate
//! (a lower bound on their time, T1 in docs/DESIGN.md §9); a scrub or a resync on a mount
//! point is paused, resumed and cancelled from another command.

use hammer2_test_support as common;

use common::image::{exit_code, hammer2, hammer2_bin, stderr, stdout};
use common::mount::{Image, Mount};
use common::rng::Rng;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// Writes `mib` MiB of incompressible data in 1 MiB files and commits it.
fn fill(m: &Mount, mib: usize) {
    let mut rng = Rng::new(28);
    std::fs::create_dir(m.join("data")).unwrap();
    for i in 0..mib {
        std::fs::write(m.join(format!("data/f{i}")), rng.bytes(MIB as usize)).unwrap();
    }
    let f = std::fs::File::open(m.join("data")).unwrap();
    f.sync_all().unwrap();
}

/// One image with two copies of `mib` MiB of data, unmounted.
fn image_with_data(mib: usize) -> Image {
    let img = Image::with(1, 256 * MIB, Some(2));
    let m = img.mount();
    fill(&m, mib);
    m.unmount();
    img
}

fn json(o: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(o), stderr(o)))
}

/// Bytes of copies a scrub report says it read.
fn copies_read(rep: &Value) -> u64 {
    rep["devices"].as_array().unwrap().iter().map(|d| d["bytes_read"].as_u64().unwrap()).sum()
}

/// Runs `hammer2 ARGS` under a pseudo-terminal (`script` from util-linux) and returns all it
/// wrote there, stdout and stderr together.
fn under_terminal(args: &[&str]) -> (i32, String) {
    let cmd = std::iter::once(hammer2_bin().display().to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script(1) from util-linux runs");
    (exit_code(&o), String::from_utf8_lossy(&o.stdout).into_owned())
}

fn has_control_characters(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\n')
}

#[test]
fn scrub_shows_a_percent_on_a_terminal_and_no_control_characters_off_one() {
    let img = image_with_data(24);
    let dev = img.devices[0].to_str().unwrap();
    // Throttled, so the bar is drawn several times whatever the machine's speed.
    let (code, tty) = under_terminal(&["scrub", "--rate", "30", dev]);
    assert_eq!(code, 0, "{tty}");
    let percent = regex_lite_percent(&tty);
    assert!(percent, "no percent on the terminal: {tty:?}");
    assert!(tty.contains("ETA"), "no ETA on the terminal: {tty:?}");
    assert!(tty.contains("clean"), "{tty:?}");

    // Off a terminal: the report alone, without a bar or escape sequences.
    let o = hammer2(["scrub", "--rate", "30", dev]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!has_control_characters(&all), "{all:?}");
    assert!(!regex_lite_percent(&all) && all.contains("clean"), "{all:?}");

    // --json on a terminal: the document, no bar.
    let (code, tty) = under_terminal(&["scrub", "--json", dev]);
    assert_eq!(code, 0, "{tty}");
    assert!(!tty.contains('\x1b') && !tty.contains("ETA"), "a bar in JSON mode: {tty:?}");
    let doc: Value = serde_json::from_str(&tty.replace('\r', "")).unwrap_or_else(|e| panic!("{e}: {tty:?}"));
    assert_eq!(doc["schema_version"], 2);
}

/// A bar's percent: digits then `%`.
fn regex_lite_percent(s: &str) -> bool {
    let b = s.as_bytes();
    (1..b.len()).any(|i| b[i] == b'%' && b[i - 1].is_ascii_digit())
}

#[test]
fn a_resync_shows_its_bar_with_a_known_total_on_a_mount_point() {
    let img = Image::with(2, 256 * MIB, Some(2));
    let (a, b) = (img.devices[0].clone(), img.devices[1].clone());
    // b misses what is written while it is away.
    let m = img.mount_devices(&[a.as_path()], "degraded", &[]);
    fill(&m, 16);
    m.unmount();
    let m = img.mount_devices(&[a.as_path(), b.as_path()], "", &[]);
    let (code, tty) = under_terminal(&["resync", "--rate", "20", m.path.to_str().unwrap()]);
    assert_eq!(code, 0, "{tty}");
    assert!(regex_lite_percent(&tty) && tty.contains("ETA"), "no bar with a total: {tty:?}");
    assert!(tty.contains(&format!("{}: in sync", b.display())), "{tty:?}");
    m.unmount();
}

#[test]
fn rate_bounds_the_time_of_scrub_and_resync_offline_and_online() {
    const RATE: u64 = 20; // MB/s
    let img = Image::with(2, 256 * MIB, Some(2));
    let (a, b) = (img.devices[0].clone(), img.devices[1].clone());
    let m = img.mount_devices(&[a.as_path()], "degraded", &[]);
    fill(&m, 20);
    m.unmount();

    // Offline resync: at least the copies it wrote over the rate.
    let t = Instant::now();
    let o = hammer2([
        "resync".as_ref(),
        "--json".as_ref(),
        "--rate".as_ref(),
        RATE.to_string().as_ref(),
        a.as_os_str(),
        b.as_os_str(),
    ]);
    let took = t.elapsed().as_secs_f64();
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let copied = json(&o)["counts"]["copied_bytes"].as_u64().unwrap();
    assert!(copied >= 20 * MIB, "{}", stdout(&o));
    assert!(took >= copied as f64 / (RATE as f64 * 1e6), "resync of {copied} bytes at {RATE} MB/s took {took:.2} s");

    // Offline scrub.
    let t = Instant::now();
    let o = hammer2([
        "scrub".as_ref(),
        "--json".as_ref(),
        "--rate".as_ref(),
        RATE.to_string().as_ref(),
        a.as_os_str(),
        b.as_os_str(),
    ]);
    let took = t.elapsed().as_secs_f64();
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let read = copies_read(&json(&o));
    assert!(read >= 40 * MIB, "{}", stdout(&o));
    assert!(took >= read as f64 / (RATE as f64 * 1e6), "scrub of {read} bytes at {RATE} MB/s took {took:.2} s");

    // Online scrub, through the daemon.
    let m = img.mount();
    let t = Instant::now();
    let o = hammer2(["scrub", "--json", "--rate", &RATE.to_string(), m.path.to_str().unwrap()]);
    let took = t.elapsed().as_secs_f64();
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let read = copies_read(&json(&o));
    assert!(took >= read as f64 / (RATE as f64 * 1e6), "online scrub of {read} bytes at {RATE} MB/s took {took:.2} s");
    m.unmount();

    // A rate that is not one: a usage error.
    let o = hammer2(["scrub", "--rate", "0", a.to_str().unwrap()]);
    assert_eq!(exit_code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("invalid rate"), "{}", stderr(&o));
}

fn start_scrub(mp: &Path, rate: u64) -> Child {
    Command::new(hammer2_bin())
        .args(["scrub", "--json", "--rate", &rate.to_string()])
        .arg(mp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends `--pause|--resume|--cancel` once the scrub started by the test is running (it takes
/// the daemon a moment to claim it); panics if it is never taken.
fn tell(mp: &Path, what: &str) -> String {
    tell_scan("scrub", mp, what)
}

/// `tell` for `scan` (scrub or resync).
fn tell_scan(scan: &str, mp: &Path, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = hammer2([scan, &format!("--{what}"), mp.to_str().unwrap()]);
        if exit_code(&o) == 0 {
            return stdout(&o);
        }
        assert!(stderr(&o).contains(&format!("no {scan} is running")), "{}", stderr(&o));
        assert!(Instant::now() < deadline, "the scrub never ran: {}", stderr(&o));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_scrub_on_a_mount_point_is_paused_resumed_and_cancelled() {
    const RATE: u64 = 16; // MB/s
    let img = image_with_data(24);
    let m = img.mount();
    let mp = m.path.clone();

    // Nothing to tell: refused, one line, exit 8; --cancel wants a mount point.
    let o = hammer2(["scrub", "--pause", mp.to_str().unwrap()]);
    assert_eq!(exit_code(&o), 8, "{}", stderr(&o));
    let line = stderr(&o);
    assert!(
        line.starts_with("hammer2 scrub: ") && line.trim().ends_with("no scrub is running on this filesystem"),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "{line}");
    let o = hammer2(["scrub", "--cancel", img.devices[0].to_str().unwrap()]);
    assert_eq!(exit_code(&o), 8, "{}", stderr(&o));
    assert!(stderr(&o).contains("need the mount point"), "{}", stderr(&o));

    // Paused for 3 s: the scrub takes its time at the rate plus the pause, less the time it
    // takes to see the pause (it looks between batches, a quarter to half a second apart at
    // this rate): paced time excludes the pause, so only a pause that held makes it this long.
    let t = Instant::now();
    let scrub = start_scrub(&mp, RATE);
    assert_eq!(tell(&mp, "pause").trim(), "scrub paused");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(tell(&mp, "resume").trim(), "scrub resumed");
    let o = scrub.wait_with_output().unwrap();
    let took = t.elapsed().as_secs_f64();
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let read = copies_read(&json(&o));
    assert!(took >= read as f64 / (RATE as f64 * 1e6) + 2.0, "paused scrub of {read} bytes took {took:.2} s");

    // Cancelled: it reports what it read (less than everything) and exits 32.
    let full = read;
    let scrub = start_scrub(&mp, 4);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(tell(&mp, "cancel").trim(), "scrub cancelled");
    let o = scrub.wait_with_output().unwrap();
    assert_eq!(exit_code(&o), 32, "{}{}", stdout(&o), stderr(&o));
    let rep = json(&o);
    assert_eq!(rep["cancelled"], true, "{rep}");
    assert!(copies_read(&rep) < full, "{rep}");

    // The filesystem is fine and a scrub runs to the end again.
    let o = hammer2(["scrub", mp.to_str().unwrap()]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    m.unmount();
}

/// A paused scrub does not hold up an unmount: the unmount commits and closes the devices,
/// the waiting command is told the daemon went away (exit 8), and the filesystem is whole.
#[test]
fn a_paused_scrub_does_not_hold_up_an_unmount() {
    let img = image_with_data(8);
    let m = img.mount();
    let mp = m.path.clone();
    let scrub = start_scrub(&mp, 2);
    assert_eq!(tell(&mp, "pause").trim(), "scrub paused");
    let t = Instant::now();
    m.unmount();
    assert!(t.elapsed() < Duration::from_secs(10), "the unmount waited {:?}", t.elapsed());
    let o = scrub.wait_with_output().unwrap();
    assert_eq!(exit_code(&o), 8, "{}{}", stdout(&o), stderr(&o));
    let devices: Vec<&str> = img.devices.iter().map(|d| d.to_str().unwrap()).collect();
    let o = hammer2(std::iter::once("scrub").chain(devices));
    assert_eq!(exit_code(&o), 0, "{}{}", stdout(&o), stderr(&o));
}

fn start_resync(mp: &Path, rate: u64) -> Child {
    Command::new(hammer2_bin())
        .args(["resync", "--json", "--rate", &rate.to_string()])
        .arg(mp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A resync is paused, resumed and cancelled like a scrub; a cancelled one keeps what it
/// copied (its progress is committed in the tree), so the next resync copies only the rest
/// and brings the device into sync.
#[test]
fn a_resync_on_a_mount_point_is_paused_resumed_and_cancelled_and_keeps_its_copies() {
    const RATE: u64 = 8; // MB/s
    let img = Image::with(2, 256 * MIB, Some(2));
    let (a, b) = (img.devices[0].clone(), img.devices[1].clone());
    let m = img.mount_devices(&[a.as_path()], "degraded", &[]);
    fill(&m, 24);
    m.unmount();
    let m = img.mount_devices(&[a.as_path(), b.as_path()], "", &[]);
    let mp = m.path.clone();

    let o = hammer2(["resync", "--cancel", mp.to_str().unwrap()]);
    assert_eq!(exit_code(&o), 8, "{}", stderr(&o));
    let line = stderr(&o);
    assert!(line.trim().ends_with("no resync is running on this filesystem") && line.lines().count() == 1, "{line}");

    // Paused 2 s, resumed, then cancelled part way: exit 32, copies kept, b still stale.
    let t = Instant::now();
    let resync = start_resync(&mp, RATE);
    assert_eq!(tell_scan("resync", &mp, "pause").trim(), "resync paused");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(tell_scan("resync", &mp, "resume").trim(), "resync resumed");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(tell_scan("resync", &mp, "cancel").trim(), "resync cancelled");
    let o = resync.wait_with_output().unwrap();
    let took = t.elapsed().as_secs_f64();
    assert_eq!(exit_code(&o), 32, "{}{}", stdout(&o), stderr(&o));
    let rep = json(&o);
    assert_eq!(rep["cancelled"], true, "{rep}");
    assert!(rep["synced"].as_array().unwrap().is_empty(), "{rep}");
    let first = rep["counts"]["copied_bytes"].as_u64().unwrap();
    assert!(first > 0 && first < 24 * MIB, "{rep}");
    // The pause held: the copies took their time at the rate, plus most of the pause.
    assert!(took >= first as f64 / (RATE as f64 * 1e6) + 1.5, "copied {first} bytes in {took:.2} s");

    // The next resync finishes from there: it copies the rest, not everything again.
    let o = hammer2(["resync", "--json", mp.to_str().unwrap()]);
    assert_eq!(exit_code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let rep = json(&o);
    let second = rep["counts"]["copied_bytes"].as_u64().unwrap();
    assert_eq!(rep["synced"][0], b.to_str().unwrap(), "{rep}");
    assert!(second < 24 * MIB + 4 * MIB - first / 2, "first {first}, second {second}");
    assert!(first + second >= 24 * MIB, "first {first}, second {second}");
    m.unmount();
    let devices: Vec<&str> = img.devices.iter().map(|d| d.to_str().unwrap()).collect();
    let o = hammer2(std::iter::once("scrub").chain(devices));
    assert_eq!(exit_code(&o), 0, "{}{}", stdout(&o), stderr(&o));
}
