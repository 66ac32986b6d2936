//! `hammer2 scrub DEVICE...`: read every copy of every block, repair bad copies from good
//! ones, report per device. Exit status: 0 clean, 1 errors found and all repaired,
//! 4 errors left (unrepairable blocks), 8 operational error, 32 cancelled. What a scrub does (and takes
//! diverged devices back) is the engine's `maintenance::scrub`, the same here and on a mount point.

use crate::control::{Op, Request};
use crate::offline;
use hammer2::maintenance::RunOptions;
use hammer2::scrub::{ScrubProgress, ScrubReport};
use hammer2::units::human;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(
    override_usage = "hammer2 scrub [--json] [--degraded] [--rate MB/s] DEVICE...\n       hammer2 scrub [--json] [--degraded] [--rate MB/s] MOUNTPOINT\n       hammer2 scrub --pause|--resume|--cancel MOUNTPOINT",
    after_help = "Exit status: 0 clean, 1 errors found and all repaired, 4 errors left (a block with no good copy), 8 operational error (a device cannot be opened or is missing without --degraded, nothing mounted on MOUNTPOINT, another scrub running, no scrub running for --pause/--resume/--cancel), 32 cancelled by scrub --cancel (the report says what it read)."
)]
pub struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Run even though member devices are missing (they are recorded as missing).
    #[arg(long)]
    pub degraded: bool,
    /// Read at most this many MB (10^6 bytes) of copies per second, to leave the devices to
    /// other work.
    #[arg(long, value_name = "MB/s", value_parser = crate::parse_rate)]
    pub rate: Option<u64>,
    /// Pause the scrub running on MOUNTPOINT (it holds its place until --resume).
    #[arg(long, group = "command", conflicts_with_all = ["rate", "degraded"])]
    pub pause: bool,
    /// Resume the paused scrub on MOUNTPOINT.
    #[arg(long, group = "command", conflicts_with_all = ["rate", "degraded"])]
    pub resume: bool,
    /// Cancel the scrub running on MOUNTPOINT: it stops within a batch, reports what it read
    /// and exits 32.
    #[arg(long, group = "command", conflicts_with_all = ["rate", "degraded"])]
    pub cancel: bool,
    /// The filesystem's devices (image files or block devices), or the mount point of a
    /// mounted one (its daemon does the work while the filesystem stays in use).
    #[arg(required = true, value_name = "DEVICE|MOUNTPOINT")]
    pub paths: Vec<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    crate::init_logging(false);
    let control = [(a.pause, Op::ScrubPause), (a.resume, Op::ScrubResume), (a.cancel, Op::ScrubCancel)]
        .into_iter()
        .find_map(|(given, op)| given.then_some(op));
    let run = Request { rate: a.rate, ..Request::from(Op::Scrub) };
    if let Some(code) = offline::scan_online("scrub", &a.paths, run, control, a.json) {
        return Ok(code);
    }
    let fs = match offline::open(&a.paths, a.degraded) {
        Ok(fs) => fs,
        Err(e) => return Ok(offline::operational("scrub", &e, a.json)),
    };
    let pb = crate::progress::Bar::new("scrub", a.json);
    let rep = hammer2::maintenance::scrub(&fs, RunOptions { rate: a.rate }, &mut |p| {
        let p = progress(&p);
        pb.update(p.bytes, p.total, p.message);
    });
    pb.finish();
    let rep = match rep {
        Ok(r) => r,
        Err(e) => return Ok(offline::operational("scrub", &e.into(), a.json)),
    };
    crate::scrub_record::save_of(&fs);
    if let Err(e) = fs.unmount() {
        return Ok(offline::operational("scrub", &e.into(), a.json));
    }
    if a.json {
        println!("{}", offline::json_document(&rep)?);
    } else {
        print!("{}", render(&rep));
    }
    Ok(rep.exit_code())
}

/// A scrub's progress as the bar shows it: bytes of copies read, of those allocated.
pub fn progress(p: &ScrubProgress) -> crate::control::Progress {
    crate::control::Progress { bytes: p.read, total: p.total, message: format!("{} blocks", p.blocks) }
}

pub fn render(r: &ScrubReport) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let read_bytes: u64 = r.devices.iter().map(|d| d.bytes).sum();
    let _ = writeln!(
        o,
        "scrubbed {} blocks, {} in {:.1} s ({:.0} MB/s of copies read)",
        r.blocks,
        human(r.bytes),
        r.seconds,
        read_bytes as f64 / r.seconds.max(1e-6) / 1e6
    );
    let _ = writeln!(
        o,
        "{:<4} {:<40} {:>10} {:>10} {:>6} {:>6} {:>9} {:>8}",
        "DEV", "DEVICE", "COPIES", "BYTES", "READ", "CHECK", "REPAIRED", "MISSING"
    );
    for (i, d) in r.devices.iter().enumerate() {
        let _ = writeln!(
            o,
            "{:<4} {:<40} {:>10} {:>10} {:>6} {:>6} {:>9} {:>8}",
            i,
            d.device,
            d.copies,
            human(d.bytes),
            d.read_errors,
            d.check_errors,
            d.repaired,
            d.missing
        );
    }
    for u in &r.unrepairable {
        let at = u.offset.map(|o| format!(" at offset {o}")).unwrap_or_default();
        let what =
            u.path.clone().or(u.inum.map(|i| format!("inode {i}"))).unwrap_or_else(|| "filesystem metadata".into());
        let _ = writeln!(o, "unrepairable {} block: {what}{at}", u.block);
    }
    for m in &r.malformed {
        let _ = writeln!(o, "malformed: {m}");
    }
    let verdict = match r.exit_code() {
        0 => "clean",
        1 => "all errors repaired",
        hammer2::scrub::EXIT_CANCELLED => "cancelled: the blocks above were read, the rest were not",
        _ => "errors left: some blocks have no good copy",
    };
    let _ = writeln!(o, "{verdict}");
    o
}
