//! `hammer2 status [MOUNTPOINT|DEVICE...]`: the health of a filesystem in the shape of
//! `zpool status`: its overall state (decided by the engine, `hammer2::info::health`), what
//! the operator should do, the running scrub or resync with percent, rate and ETA, the last
//! scrub (kept across mounts: `scrub_record.rs`), and a device table with error counters. Without arguments, every
//! mounted hammer2 filesystem.

use crate::info::report::{DeviceReport, Report};
use anyhow::{Result, bail};
use hammer2::MemberState;
use hammer2::info::{Health, MemberView};
use hammer2::scan::{Finished, LastScrub, Outcome, Running, ScanKind};
use hammer2::units::human;
use serde::Serialize;
use std::fmt::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
#[command(
    override_usage = "hammer2 status [--json]\n       hammer2 status [--json] MOUNTPOINT\n       hammer2 status [--json] DEVICE...",
    after_help = "Exit status: 0 shown (whatever the state), 1 nothing to show or a device that cannot be read, \
                  8 the daemon of a mount point cannot be reached."
)]
pub struct Args {
    /// Print one JSON object (an array of them without arguments) instead of text.
    #[arg(long)]
    pub json: bool,
    /// The mount point of a mounted filesystem, or the devices of an unmounted one; none:
    /// every mounted hammer2 filesystem.
    #[arg(value_name = "MOUNTPOINT|DEVICE")]
    pub paths: Vec<PathBuf>,
}

/// The whole status of one filesystem (text and `--json`).
#[derive(Serialize)]
pub struct Status {
    pub uuid: String,
    pub label: String,
    /// The mount point, or the devices given.
    pub target: String,
    pub mounted: bool,
    /// ONLINE, DEGRADED or FAULTED.
    pub state: Health,
    /// What the operator should do (empty: nothing).
    pub actions: Vec<String>,
    /// The scrub or resync running now.
    pub scan: Option<Scan>,
    /// The last scrub: this mount's, or the one recorded on this machine
    /// (`scrub_record.rs`); None when none is known.
    pub last_scrub: Option<Last>,
    /// How the last resync, device remove or rebalance of this mount ended (mounted only).
    pub last_operation: Option<LastOperation>,
    pub devices: Vec<Device>,
    pub notes: Vec<String>,
}

#[derive(Serialize)]
pub struct Scan {
    pub kind: ScanKind,
    pub started: String,
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// None until the total is known.
    pub percent: Option<f64>,
    pub bytes_per_second: u64,
    pub eta_seconds: Option<u64>,
}

#[derive(Serialize)]
pub struct Last {
    pub ended: String,
    #[serde(flatten)]
    pub result: LastScrub,
}

#[derive(Serialize)]
pub struct LastOperation {
    pub ended: String,
    #[serde(flatten)]
    pub result: Finished,
    /// Kept for choosing the newer of it and the last scrub.
    #[serde(skip)]
    ended_at: std::time::SystemTime,
}

#[derive(Serialize)]
pub struct Device {
    pub index: usize,
    pub path: Option<String>,
    pub state: String,
    pub read_errors: u32,
    pub write_errors: u32,
    pub check_errors: u32,
    pub repaired: u32,
}

pub fn run(a: Args) -> Result<i32> {
    if a.paths.is_empty() {
        return every_mount(a.json);
    }
    let (text, json) = match a.paths.as_slice() {
        [p] if crate::control::client::names_a_mount_point(p) => {
            match crate::control::client::call(p, crate::control::Op::Status, &mut |_| {}) {
                Ok(d) => (d.text, d.json),
                Err(e) => return Ok(crate::offline::operational("status", &e, a.json)),
            }
        }
        devices => unmounted(devices)?,
    };
    if a.json {
        println!("{}", hammer2_cli::json::document(json));
    } else {
        print!("{text}");
    }
    Ok(0)
}

/// Every mounted hammer2 filesystem, from its daemon. A mount unmounted while we ask is left
/// out; one whose daemon cannot be reached is named on stderr (and in `--json` with its
/// error) after the others are shown, and makes the exit status 8.
fn every_mount(json: bool) -> Result<i32> {
    use crate::control::client;
    let (mut texts, mut docs, mut unreachable) = (Vec::new(), Vec::new(), Vec::new());
    for mp in client::hammer2_mounts() {
        match client::call(&mp, crate::control::Op::Status, &mut |_| {}) {
            Ok(d) => {
                texts.push(d.text);
                docs.push(d.json);
            }
            Err(_) if !client::is_hammer2_mount(&mp) => {}
            Err(e) => {
                let msg = hammer2_cli::one_line(&e);
                docs.push(serde_json::json!({ "target": mp.display().to_string(), "mounted": true, "error": msg }));
                unreachable.push(msg);
            }
        }
    }
    if docs.is_empty() {
        bail!("no hammer2 filesystem is mounted: give a mount point or devices");
    }
    if json {
        println!("{}", hammer2_cli::json::document(serde_json::json!({ "filesystems": docs })));
    } else {
        print!("{}", texts.join("\n"));
    }
    for msg in &unreachable {
        eprintln!("hammer2 status: {msg}");
    }
    Ok(if unreachable.is_empty() { 0 } else { 8 })
}

/// The status of an unmounted filesystem, read from its devices.
fn unmounted(devices: &[PathBuf]) -> Result<(String, serde_json::Value)> {
    let (r, states) = crate::info::offline(devices)?;
    let names = devices.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ");
    let mut s = build(&r, &states, None, false, &names);
    s.last_scrub = crate::scrub_record::load(&s.uuid).map(|l| Last { ended: utc(l.ended), result: l });
    Ok((render(&s), serde_json::to_value(&s)?))
}

/// The status of a mounted filesystem, in its daemon (`mountpoint` names it in the actions).
pub fn live(fs: &impl hammer2::Mounted, devices: &str, mountpoint: &Path) -> Status {
    let r = crate::info::live_report(fs, devices);
    let live = hammer2::info::live(fs, String::new());
    let states: Vec<MemberState> = live.assembly.members.iter().map(|m| m.2).collect();
    let mut s = build(&r, &states, Some(&live), true, &mountpoint.display().to_string());
    s.scan = live.scan.as_ref().map(scan);
    s.last_scrub =
        crate::scrub_record::newest(live.last_scrub.clone(), &s.uuid).map(|l| Last { ended: utc(l.ended), result: l });
    s.last_operation =
        live.last_operation.clone().map(|f| LastOperation { ended: utc(f.ended), ended_at: f.ended, result: f });
    s
}

fn build(
    r: &Report,
    states: &[MemberState],
    live: Option<&hammer2::info::Live>,
    mounted: bool,
    target: &str,
) -> Status {
    let views: Vec<MemberView> = r
        .devices
        .iter()
        .zip(states)
        .map(|(d, st)| MemberView {
            name: name(d),
            state: *st,
            resyncing: d.state == "resyncing",
            reconnecting: d.state == "reconnecting",
            offline: d.state == "offline",
            errors: d.errors.read + d.errors.write + d.errors.check > 0,
        })
        .collect();
    let stalled = live.is_some_and(|l| l.stalled);
    let (state, actions) = hammer2::info::health(&views, r.copies, stalled, mounted, target);
    Status {
        uuid: r.uuid.clone(),
        label: r.label.clone(),
        target: target.to_string(),
        mounted,
        state,
        actions,
        scan: None,
        last_scrub: None,
        last_operation: None,
        devices: r
            .devices
            .iter()
            .map(|d| Device {
                index: d.index,
                path: d.path.clone(),
                state: d.state.to_string(),
                read_errors: d.errors.read,
                write_errors: d.errors.write,
                check_errors: d.errors.check,
                repaired: d.errors.repaired,
            })
            .collect(),
        // The device notes say what the actions say; the others (headers found damaged,
        // a device that holds no hammer2 filesystem) are kept.
        notes: {
            let said = crate::info::report::notes(&r.devices);
            r.notes.iter().filter(|n| !said.contains(n)).cloned().collect()
        },
    }
}

fn name(d: &DeviceReport) -> String {
    d.path.clone().unwrap_or_else(|| format!("device {} (uuid {})", d.index, d.uuid))
}

fn scan(r: &Running) -> Scan {
    let secs = r.started.elapsed().map_or(0.0, |d| d.as_secs_f64());
    let rate = if secs > 0.0 { (r.done as f64 / secs) as u64 } else { 0 };
    let known = r.total > 0;
    Scan {
        kind: r.kind,
        started: utc(r.started),
        done_bytes: r.done,
        total_bytes: r.total,
        percent: known.then(|| (r.done.min(r.total) as f64 * 100.0 / r.total as f64 * 10.0).round() / 10.0),
        bytes_per_second: rate,
        eta_seconds: (known && rate > 0).then(|| r.total.saturating_sub(r.done) / rate),
    }
}

fn utc(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

pub fn render(s: &Status) -> String {
    let mut o = String::new();
    let label = if s.label.is_empty() { "(none)" } else { s.label.as_str() };
    let _ = writeln!(o, "    fs: {label} ({})", s.uuid);
    let _ = writeln!(o, "    on: {}{}", s.target, if s.mounted { "" } else { " (not mounted)" });
    let _ = writeln!(o, " state: {}", s.state.name());
    for (i, a) in s.actions.iter().enumerate() {
        let _ = writeln!(o, "{}{a}", if i == 0 { "action: " } else { "        " });
    }
    // As zpool's scan line: what runs now, else what ended last. A resync, remove or
    // rebalance that ended after the last scrub is shown first, the scrub below it.
    let newer_operation =
        s.last_operation.as_ref().filter(|op| s.last_scrub.as_ref().is_none_or(|l| op.ended_at > l.result.ended));
    let mut lead = "  scan: ";
    if let Some(sc) = &s.scan {
        let what = sc.kind.name();
        let _ = writeln!(o, "{lead}{what} in progress since {}", sc.started);
        let rate = format!("{:.1} MB/s", sc.bytes_per_second as f64 / 1e6);
        let _ = match (sc.percent, sc.eta_seconds) {
            (Some(p), Some(eta)) => writeln!(
                o,
                "        {} of {} done ({p:.1}%), {rate}, {} to go",
                human(sc.done_bytes),
                human(sc.total_bytes),
                hms(eta)
            ),
            (Some(p), None) => {
                writeln!(o, "        {} of {} done ({p:.1}%), {rate}", human(sc.done_bytes), human(sc.total_bytes))
            }
            _ => writeln!(o, "        {} done, total not known yet", human(sc.done_bytes)),
        };
    } else if let Some(op) = newer_operation {
        let r = &op.result;
        let how = match r.outcome {
            Outcome::Completed => "completed",
            Outcome::Cancelled => "cancelled",
            Outcome::Stopped => "stopped before its end (run it again to go on)",
        };
        let moved = match r.kind {
            ScanKind::Resync => "copied",
            _ => "moved",
        };
        let _ = writeln!(
            o,
            "{lead}{} {how}: {} of copies {moved} in {}, on {}",
            r.kind.name(),
            human(r.bytes),
            hms(r.seconds.round() as u64),
            op.ended
        );
        lead = "        ";
    }
    if s.scan.is_none() {
        match &s.last_scrub {
            Some(l) => {
                let r = &l.result;
                let how = if r.cancelled { "scrub cancelled" } else { "scrub" };
                let _ = writeln!(
                    o,
                    "{lead}{how} read {} of copies in {}, {} error(s), {} repaired, {} unrepairable, on {}",
                    human(r.bytes),
                    hms(r.seconds.round() as u64),
                    r.errors,
                    r.repaired,
                    r.unrepairable,
                    l.ended
                );
            }
            None if s.mounted => {
                let _ = writeln!(o, "{lead}last scrub: (none recorded)");
            }
            None => {}
        }
    }
    let _ = writeln!(o, "config:");
    let _ = writeln!(o);
    table(&mut o, &s.devices);
    if !s.notes.is_empty() {
        let _ = writeln!(o);
        for n in &s.notes {
            let _ = writeln!(o, "note: {n}");
        }
    }
    o
}

fn table(o: &mut String, devices: &[Device]) {
    let head = ["DEV", "PATH", "STATE", "READ", "WRITE", "CHECK", "REPAIRED"];
    let rows: Vec<[String; 7]> = devices
        .iter()
        .map(|d| {
            [
                d.index.to_string(),
                d.path.clone().unwrap_or_else(|| "missing".into()),
                d.state.to_uppercase(),
                d.read_errors.to_string(),
                d.write_errors.to_string(),
                d.check_errors.to_string(),
                d.repaired.to_string(),
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut l = String::from("\t");
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            // Path and state align left, numbers right.
            if matches!(i, 1 | 2) {
                let _ = write!(l, "{c:<w$}  ");
            } else {
                let _ = write!(l, "{c:>w$}  ");
            }
        }
        let _ = writeln!(o, "{}", l.trim_end());
    };
    line(head.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// `1:02:03` from seconds.
fn hms(s: u64) -> String {
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}
