//! `hammer2 scrub DEVICE...`: read every copy of every block, repair bad copies from good
//! ones, report per device. Exit status: 0 clean, 1 errors found and all repaired,
//! 4 errors left (unrepairable blocks), 8 operational error. What a scrub does (and takes
//! diverged devices back) is the engine's `maintenance::scrub`, the same here and on a mount point.

use crate::offline;
use hammer2::scrub::ScrubReport;
use hammer2::units::human;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(
    override_usage = "hammer2 scrub [--json] [--degraded] DEVICE...\n       hammer2 scrub [--json] [--degraded] MOUNTPOINT",
    after_help = "Exit status: 0 clean, 1 errors found and all repaired, 4 errors left (a block with no good copy), 8 operational error (a device cannot be opened or is missing without --degraded, nothing mounted on MOUNTPOINT, another scrub running)."
)]
pub struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Run even though member devices are missing (they are recorded as missing).
    #[arg(long)]
    pub degraded: bool,
    /// The filesystem's devices (image files or block devices), or the mount point of a
    /// mounted one (its daemon does the work while the filesystem stays in use).
    #[arg(required = true, value_name = "DEVICE|MOUNTPOINT")]
    pub paths: Vec<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    crate::init_logging(false);
    if let [p] = a.paths.as_slice()
        && p.is_dir()
    {
        return Ok(offline::online("scrub", p, crate::control::Op::Scrub, a.json));
    }
    let fs = match offline::open(&a.paths, a.degraded) {
        Ok(fs) => fs,
        Err(e) => return Ok(offline::operational("scrub", &e, a.json)),
    };
    let pb = offline::bar("scrub");
    let rep = hammer2::maintenance::scrub(&fs, &mut |p| {
        pb.set_position(p.bytes);
        pb.set_message(format!("{} blocks", p.blocks));
    });
    pb.finish_and_clear();
    let rep = match rep {
        Ok(r) => r,
        Err(e) => return Ok(offline::operational("scrub", &e.into(), a.json)),
    };
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
        _ => "errors left: some blocks have no good copy",
    };
    let _ = writeln!(o, "{verdict}");
    o
}
