//! `hammer2 resync DEVICE...`: bring stale, diverged, returning or replaced devices up to
//! date by a walk from the master root that only enters branches out of sync. Every step
//! is a commit: killing it loses no progress, running it again finishes the job.
//! Exit status: 0 done, 8 operational error (as scrub's).

use crate::control::{Op, Request};
use crate::offline;
use hammer2::maintenance::RunOptions;
use hammer2::resync::ResyncProgress;
use hammer2::units::human;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(
    override_usage = "hammer2 resync [--json] [--degraded] [--rate MB/s] DEVICE...\n       hammer2 resync [--json] [--degraded] [--rate MB/s] MOUNTPOINT\n       hammer2 resync --pause|--resume|--cancel MOUNTPOINT",
    after_help = "Exit status: 0 done, 1 a failed device was not taken back, 8 operational error (a device cannot be opened or is missing without --degraded, nothing mounted on MOUNTPOINT, another resync running, no resync running for --pause/--resume/--cancel), 32 cancelled by resync --cancel (what it copied is kept; the next resync goes on from there)."
)]
pub struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Run even though member devices are missing (they stay out of sync).
    #[arg(long)]
    pub degraded: bool,
    /// Write at most this many MB (10^6 bytes) of copies per second, to leave the devices to
    /// other work.
    #[arg(long, value_name = "MB/s", value_parser = crate::parse_rate)]
    pub rate: Option<u64>,
    /// Pause the resync running on MOUNTPOINT (started by hand or automatically when a
    /// device came back); it holds between two commits until --resume.
    #[arg(long, group = "command", conflicts_with_all = ["rate", "degraded"])]
    pub pause: bool,
    /// Resume the paused resync on MOUNTPOINT.
    #[arg(long, group = "command", conflicts_with_all = ["rate", "degraded"])]
    pub resume: bool,
    /// Cancel the resync running on MOUNTPOINT: it stops after its current commit, keeps
    /// what it copied, reports and exits 32.
    #[arg(long, group = "command", conflicts_with_all = ["rate", "degraded"])]
    pub cancel: bool,
    /// The filesystem's devices (image files or block devices), or the mount point of a
    /// mounted one (its daemon does the work while the filesystem stays in use).
    #[arg(required = true, value_name = "DEVICE|MOUNTPOINT")]
    pub paths: Vec<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    crate::init_logging(false);
    let control = [(a.pause, Op::ResyncPause), (a.resume, Op::ResyncResume), (a.cancel, Op::ResyncCancel)]
        .into_iter()
        .find_map(|(given, op)| given.then_some(op));
    let run = Request { rate: a.rate, ..Request::from(Op::Resync) };
    if let Some(code) = offline::scan_online("resync", &a.paths, run, control, a.json) {
        return Ok(code);
    }
    let operational = |e: anyhow::Error| Ok(offline::operational("resync", &e, a.json));
    let fs = match offline::open(&a.paths, a.degraded) {
        Ok(fs) => fs,
        Err(e) => return operational(e),
    };
    let pb = crate::progress::Bar::new("resync", a.json);
    let rep = hammer2::maintenance::resync(&fs, RunOptions { rate: a.rate }, &mut |p| {
        let p = progress(p);
        pb.update(p.bytes, p.total, p.message);
    });
    pb.finish();
    let rep = match rep.map_err(anyhow::Error::from).and_then(|r| fs.unmount().map(|()| r).map_err(Into::into)) {
        Ok(r) => r,
        Err(e) => return operational(e),
    };
    if a.json {
        println!("{}", offline::json_document(&rep)?);
    } else {
        print!("{}", render(&rep));
    }
    Ok(rep.exit_code())
}

/// A resync's progress as the bar shows it: bytes of copies written, of those it set out
/// to write.
pub fn progress(p: &ResyncProgress) -> crate::control::Progress {
    let c = &p.counts;
    crate::control::Progress {
        bytes: c.copied_bytes,
        total: p.total,
        message: format!("{} visited, {} copied, {} commits", c.visited, c.copied_blocks, p.commits),
    }
}

pub fn render(rep: &hammer2::resync::ResyncReport) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "resync: visited {} out-of-sync blocks, copied {} blocks ({}) in {} commits, {:.1} s",
        rep.counts.visited,
        rep.counts.copied_blocks,
        human(rep.counts.copied_bytes),
        rep.commits,
        rep.seconds
    );
    if rep.cancelled {
        let _ = writeln!(o, "cancelled: the copies made are kept; the next resync goes on from here");
    }
    if rep.verified_blocks > 0 {
        let _ =
            writeln!(o, "verified {} blocks on diverged devices, rewrote {}", rep.verified_blocks, rep.verify_repaired);
    }
    for d in &rep.synced {
        let _ = writeln!(o, "{d}: in sync");
    }
    for d in &rep.still_missing {
        let _ = writeln!(o, "{d}: still missing or failed; its copies stay MISSING until it is back");
    }
    for d in &rep.refused {
        let _ = writeln!(o, "{d}; not taken back: unmount and mount again to bring it back");
    }
    o
}
