//! `hammer2 scrub DEVICE...`: read every copy of every block, repair bad copies from good
//! ones, report per device. Exit status: 0 clean, 1 errors found and all repaired,
//! 4 errors left (unrepairable blocks), 8 operational error.

use crate::offline;
use hammer2::devices::MemberState;
use hammer2::scrub::{self, ScrubReport};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The filesystem's devices.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    crate::init_logging(false);
    let fs = match offline::open(&a.paths) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("hammer2 scrub: {e:#}");
            return Ok(8);
        }
    };
    let pb = offline::bar("scrub");
    let rep = scrub::scrub(fs.inner(), &mut |p| {
        pb.set_position(p.bytes);
        pb.set_message(format!("{} blocks", p.blocks));
    });
    pb.finish_and_clear();
    let rep = match rep {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hammer2 scrub: {e:#}");
            return Ok(8);
        }
    };
    // A replacement device whose every copy was just verified and rewritten is whole
    // again (up to copies recorded MISSING, which resync fills).
    if rep.unrepairable.is_empty() {
        for m in &fs.inner().vol.devices.members {
            if m.state() == MemberState::Diverged {
                m.set_state(MemberState::Stale);
            }
        }
        hammer2::resync::run(fs.inner(), &mut |_, _| {})?;
    }
    fs.unmount()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        print_report(&rep);
    }
    Ok(rep.exit_code())
}

fn print_report(r: &ScrubReport) {
    println!(
        "scrubbed {} blocks, {} in {:.1} s ({:.0} MB/s)",
        r.blocks,
        human(r.bytes),
        r.seconds,
        r.devices.iter().map(|d| d.bytes).sum::<u64>() as f64 / r.seconds.max(1e-6) / 1e6
    );
    println!(
        "{:<4} {:<40} {:>10} {:>10} {:>6} {:>6} {:>9} {:>8}",
        "DEV", "DEVICE", "COPIES", "BYTES", "READ", "CHECK", "REPAIRED", "MISSING"
    );
    for (i, d) in r.devices.iter().enumerate() {
        println!(
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
        println!(
            "unrepairable {} block: {}{}",
            u.block,
            u.path.clone().or(u.inum.map(|i| format!("inode {i}"))).unwrap_or_else(|| "filesystem metadata".into()),
            u.offset.map(|o| format!(" at offset {o}")).unwrap_or_default()
        );
    }
    for m in &r.malformed {
        println!("malformed: {m}");
    }
    println!(
        "{}",
        match r.exit_code() {
            0 => "clean",
            1 => "all errors repaired",
            _ => "errors left: some blocks have no good copy",
        }
    );
}

pub fn human(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{b} B") } else { format!("{v:.1} {}", U[i]) }
}
