//! `hammer2 info DEVICE...`: what the volume headers say, read-only, without mounting.

pub mod report;
mod text;

use crate::devices;
use anyhow::{Result, bail};
use hammer2::Options;
use hammer2::inspect::{self, Probe};
use hammer2::storage::claim::OpenMode;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(override_usage = "hammer2 info [--json] DEVICE...\n       hammer2 info [--json] MOUNTPOINT")]
pub struct Args {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// The filesystem's devices (image files or block devices; missing ones are shown as
    /// such), or the mount point of a mounted one (its daemon answers, with live states).
    #[arg(required = true, value_name = "DEVICE|MOUNTPOINT")]
    pub paths: Vec<PathBuf>,
}

pub fn run(a: Args) -> Result<i32> {
    if let [p] = a.paths.as_slice()
        && crate::control::client::names_a_mount_point(p)
    {
        return crate::control::client::request(p, crate::control::Op::Info, a.json);
    }
    for p in &a.paths {
        if crate::control::client::names_a_mount_point(p) {
            bail!("{} is a directory: give the devices, or only the mount point", p.display());
        }
    }
    let (r, _) = offline(&a.paths)?;
    if a.json {
        println!("{}", crate::offline::json_document(&r)?);
    } else {
        print!("{}", text::render(&r));
    }
    Ok(0)
}

/// The report of an unmounted filesystem from its devices (missing ones shown as such),
/// with the members' states as an assembly finds them.
pub fn offline(paths: &[PathBuf]) -> Result<(report::Report, Vec<hammer2::MemberState>)> {
    let storages = devices::open_all(paths, OpenMode::ReadOnly)?;
    let probes: Vec<Probe> = storages.into_iter().map(inspect::probe).collect();
    // A device without a hammer2 header among others that have one (a blank or wiped
    // member) is named in a note and its slot shown missing: the filesystem is still shown.
    let strangers: Vec<String> = probes.iter().filter(|p| p.header.is_none()).map(not_hammer2).collect();
    if strangers.len() == probes.len() {
        bail!("{}", strangers.join("; "));
    }
    let newest = probes.iter().enumerate().max_by_key(|(_, p)| p.tid()).map(|(i, _)| i);
    let tids: Vec<([u8; 16], usize, u64)> = probes
        .iter()
        .filter_map(|p| p.header.as_ref().map(|h| (h.fs_uuid, usize::from(h.device_index), h.tid)))
        .collect();
    let opts = Options { degraded: true, read_only: true, ..Options::default() };
    let (asm, warning) = match inspect::assemble(probes, &opts) {
        Ok(asm) => (asm, None),
        Err(e) => {
            // Devices that were written apart make assemble refuse until a master is named.
            // Info still shows them, taking the newest as master, and says why a mount refuses.
            // The first probes were consumed by assemble, so the devices are read again.
            let probes: Vec<Probe> =
                devices::open_all(paths, OpenMode::ReadOnly)?.into_iter().map(inspect::probe).collect();
            let opts = Options { master: newest, ..opts };
            match inspect::assemble(probes, &opts) {
                Ok(asm) => (asm, Some(format!("a mount refuses these devices as they are: {e}"))),
                Err(_) => bail!("{e}"),
            }
        }
    };
    let tids = tids.into_iter().filter(|(fs, _, _)| *fs == asm.master.fs_uuid).map(|(_, d, t)| (d, t)).collect();
    let states = asm.members.iter().map(|m| m.2).collect();
    let mut r = report::build(&asm, &tids);
    r.data = data_usage(paths).map(Into::into);
    if let Some(w) = warning {
        r.notes.insert(0, w);
    }
    for (i, n) in strangers.into_iter().enumerate() {
        r.notes.insert(i, format!("{n}: shown as missing"));
    }
    Ok((r, states))
}

/// The report of a mounted filesystem: its committed state and live device states.
pub fn live_report(fs: &impl hammer2::Mounted, devices: &str) -> report::Report {
    let live = hammer2::info::live(fs, format!("mounted ({devices})"));
    let mut r = report::build(&live.assembly, &live.header_tids);
    r.clean = false;
    r.data = live.data.map(Into::into);
    for (((d, resyncing), link), member) in
        r.devices.iter_mut().zip(live.resyncing).zip(live.links).zip(&live.assembly.members)
    {
        if resyncing {
            d.state = "resyncing";
        } else if link.reconnecting {
            d.state = "reconnecting";
        } else if link.offline {
            // Closed by the operator, not lost: shown by the name it was mounted with.
            d.state = "offline";
            d.path = Some(member.1.clone());
        }
        d.link = Some(link);
    }
    // The device notes again, for the live states: a device being resynced needs no
    // "run hammer2 resync".
    r.notes = live.assembly.warnings.iter().cloned().chain(report::notes(&r.devices)).collect();
    r.requests = Some(crate::fuse::requests::snapshot());
    r.inode_readahead = Some(live.inode_readahead);
    r.running = live.scan.map(|sc| report::RunningReport {
        kind: sc.kind.name(),
        done_bytes: sc.done,
        total_bytes: sc.total,
        percent: (sc.total > 0).then(|| sc.done as f64 * 100.0 / sc.total as f64),
    });
    r
}

/// The data usage of an unmounted filesystem, through a read-only mount of its devices
/// (nothing is written); None when it does not mount so (info shows the rest anyway).
fn data_usage(paths: &[PathBuf]) -> Option<hammer2::usage::DataUsage> {
    let storages = devices::open_all(paths, OpenMode::ReadOnly).ok()?;
    let opts = Options { read_only: true, degraded: true, background_sync: false, ..Options::default() };
    let fs = hammer2::Fs::mount(storages, opts).ok()?;
    fs.data_usage().ok()
}

pub fn render(r: &report::Report) -> String {
    text::render(r)
}

/// Why a device is not usable, in one line: what it holds instead, or why every header
/// slot was rejected.
fn not_hammer2(p: &Probe) -> String {
    match hammer2::signatures::detect(&*p.storage).as_deref() {
        Some("hammer2") => {
            let why: Vec<String> = p
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_ref().err().map(|e| format!("slot {i}: {e}")))
                .collect();
            format!("{} has hammer2 volume headers but none is valid ({})", p.name, why.join("; "))
        }
        Some(other) => format!("{} holds no hammer2 filesystem (it holds {other})", p.name),
        None => format!("{} holds no hammer2 filesystem", p.name),
    }
}
