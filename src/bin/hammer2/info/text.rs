//! `hammer2 info` as text: a summary, then one line per device like `zpool status`.

use super::report::{DeviceReport, Report};
use hammer2::units::human;
use std::fmt::Write;

pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let label = if r.label.is_empty() { "(none)" } else { r.label.as_str() };
    let times = if r.copies == 1 { "once".to_string() } else { format!("{} times", r.copies) };
    let clean = if r.clean { "yes" } else { "no (not unmounted since this commit)" };
    // Writing to a String cannot fail: the results below are ignored for that reason.
    let _ = writeln!(s, "filesystem   {}", r.uuid);
    let _ = writeln!(s, "label        {label}");
    let _ = writeln!(s, "format       version {}", r.format_version);
    let _ = writeln!(s, "copies       {} (every block is stored {times})", r.copies);
    let _ = writeln!(s, "check        {}", r.check);
    let _ = writeln!(s, "block sizes  data {}, indirect {}", human(r.data_block_size), human(r.indirect_block_size));
    let _ = writeln!(s, "last commit  tid {}, {}", r.tid, r.commit_time);
    let _ = writeln!(s, "clean        {clean}");
    let _ = writeln!(s, "created      {}", r.created);
    let _ = writeln!(
        s,
        "space        {} free of {} (file data, every block stored {times}; {} free on the devices)",
        human(r.free_bytes),
        human(r.total_bytes),
        human(r.raw_free_bytes),
    );
    let _ = writeln!(s, "compression  {} (new files, unless a file, directory or mount says otherwise)", r.compression);
    if let Some(d) = &r.data {
        let _ = writeln!(
            s,
            "file data    {} written, {} stored ({:.2}x; {} with every copy; {} of {} blocks compressed)",
            human(d.logical_bytes),
            human(d.stored_bytes),
            d.ratio,
            human(d.physical_bytes),
            d.compressed_blocks,
            d.blocks,
        );
        // Only once files have other counts than the filesystem's (hammer2 set copies=).
        if d.by_copies.iter().any(|c| c.copies != r.copies) {
            let parts: Vec<String> = d
                .by_copies
                .iter()
                .map(|c| format!("{} with {} ({})", c.blocks, c.copies, human(c.stored_bytes)))
                .collect();
            let _ = writeln!(s, "data copies  blocks by copies: {}", parts.join(", "));
        }
    }
    if let Some(run) = &r.running {
        let _ = match run.percent {
            Some(p) => writeln!(
                s,
                "running      {}: {} of {} done ({p:.1}%)",
                run.kind,
                human(run.done_bytes),
                human(run.total_bytes)
            ),
            None => writeln!(s, "running      {}: {} done", run.kind, human(run.done_bytes)),
        };
    }
    let _ = writeln!(s, "master       {}", r.master);
    let _ = writeln!(s);
    table(&mut s, &r.devices);
    for d in &r.devices {
        let Some(l) = d.link.as_ref().filter(|l| l.reconnects > 0 || l.last_error.is_some()) else { continue };
        let _ = write!(s, "device {}: reconnected {} time(s)", d.index, l.reconnects);
        if l.reconnecting {
            let _ = write!(s, ", reconnecting ({} attempt(s) so far)", l.attempts);
        }
        if let Some(e) = &l.last_error {
            let _ = write!(s, "; last error: {}", hammer2_cli::one_line(e));
        }
        let _ = writeln!(s);
    }
    if !r.notes.is_empty() {
        let _ = writeln!(s);
        for n in &r.notes {
            let _ = writeln!(s, "note: {}", hammer2_cli::one_line(n));
        }
    }
    s
}

fn table(s: &mut String, devices: &[DeviceReport]) {
    let head = ["DEV", "PATH", "UUID", "SIZE", "ROLE", "STATE", "TID", "READ", "WRITE", "CHECK", "REPAIRED"];
    let rows: Vec<[String; 11]> = devices
        .iter()
        .map(|d| {
            [
                d.index.to_string(),
                d.path.clone().unwrap_or_else(|| "missing".into()),
                d.uuid.clone(),
                human(d.size),
                role(d),
                state(d),
                d.header_tid.map_or_else(|| "-".into(), |t| t.to_string()),
                d.errors.read.to_string(),
                d.errors.write.to_string(),
                d.errors.check.to_string(),
                d.errors.repaired.to_string(),
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
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            // Text columns (path, uuid, role, state) align left, numbers right.
            if matches!(i, 1 | 2 | 4 | 5) {
                let _ = write!(l, "{c:<w$}  ");
            } else {
                let _ = write!(l, "{c:>w$}  ");
            }
        }
        let _ = writeln!(s, "{}", l.trim_end());
    };
    line(head.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn role(d: &DeviceReport) -> String {
    if d.role.any_slot {
        return "any copy".into();
    }
    let list = |v: Vec<usize>| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let slots: Vec<usize> = d.role.slots.iter().map(|p| p.slot).collect();
    let regions: Vec<usize> = d.role.slots.iter().map(|p| p.region).collect();
    match slots.as_slice() {
        [one] => format!("slot {one}"),
        _ => format!("slots {} (regions {})", list(slots), list(regions)),
    }
}

fn state(d: &DeviceReport) -> String {
    match d.state {
        "stale" | "missing" | "rolled back" if d.behind > 0 => format!("{} (behind by {})", d.state, d.behind),
        s => s.to_string(),
    }
}
