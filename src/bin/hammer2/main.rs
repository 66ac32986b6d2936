//! The `hammer2` command: mount (FUSE), info, scrub, resync, device online/offline, probe, upgrade,
//! set/get (per-file settings), pfs, snapshot.

mod clear;
mod control;
mod device;
mod devices;
mod fuse;
mod generate;
mod helper;
mod info;
mod mount;
mod offline;
mod pfs;
mod probe;
mod progress;
mod resync;
mod rewrite;
mod scrub;
mod scrub_record;
mod send;
mod set;
mod snapshot;
mod status;
mod upgrade;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hammer2", version, about = "A copy-on-write filesystem with block redundancy (copies)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mount a hammer2 filesystem through FUSE.
    Mount(mount::Args),
    /// Show what the volume headers say about a filesystem.
    Info(info::Args),
    /// Show a filesystem's health: overall state, what to do, running scrub or resync, errors.
    Status(status::Args),
    /// Reset the error counters of a mounted filesystem's devices.
    Clear(clear::Args),
    /// Read and verify every copy of every block, repairing bad copies.
    Scrub(scrub::Args),
    /// Bring stale or replaced devices up to date.
    Resync(resync::Args),
    /// Print what identifies a hammer2 device, in blkid's export format (for udev with --udev).
    Probe(probe::Args),
    #[command(hide = true)]
    Generate(generate::Args),
    /// Take a device of a mounted filesystem back into service, or out of it.
    Device(device::Args),
    /// Convert an unmounted format-version-1 filesystem to version 2 (one commit).
    Upgrade(upgrade::Args),
    /// Set a setting (compression, copies) of files or directories on a mounted filesystem.
    Set(set::SetArgs),
    /// Show the settings (compression, copies) of files or directories on a mounted filesystem.
    Get(set::GetArgs),
    /// Bring data already written to the files' settings (copies, compression).
    Rewrite(rewrite::Args),
    /// Create, list and delete the PFSs and snapshots of a mounted filesystem.
    Pfs(pfs::Args),
    /// Take a read-only snapshot of the mounted PFS.
    Snapshot(snapshot::Args),
    /// Write a snapshot as a stream (whole, or what changed since an older snapshot).
    Send(send::SendArgs),
    /// Apply a stream from 'hammer2 send' to the mounted PFS as a new read-only snapshot.
    Receive(send::ReceiveArgs),
}

fn main() {
    if helper::invoked_as_helper() {
        helper::main();
    }
    let cli = Cli::parse();
    let name = match &cli.cmd {
        Cmd::Mount(_) => "mount",
        Cmd::Info(_) => "info",
        Cmd::Status(_) => "status",
        Cmd::Clear(_) => "clear",
        Cmd::Scrub(_) => "scrub",
        Cmd::Resync(_) => "resync",
        Cmd::Probe(_) => "probe",
        Cmd::Generate(_) => "generate",
        Cmd::Device(_) => "device",
        Cmd::Upgrade(_) => "upgrade",
        Cmd::Set(_) => "set",
        Cmd::Get(_) => "get",
        Cmd::Rewrite(_) => "rewrite",
        Cmd::Pfs(_) => "pfs",
        Cmd::Snapshot(_) => "snapshot",
        Cmd::Send(_) => "send",
        Cmd::Receive(_) => "receive",
    };
    // `--json` answers in JSON on failure too (scrub and resync print their own: exit 8).
    let json = matches!(&cli.cmd, Cmd::Info(a) if a.json) || matches!(&cli.cmd, Cmd::Status(a) if a.json);
    let result = match cli.cmd {
        Cmd::Mount(a) => mount::run(a),
        Cmd::Info(a) => info::run(a),
        Cmd::Status(a) => status::run(a),
        Cmd::Clear(a) => clear::run(a),
        Cmd::Scrub(a) => scrub::run(a),
        Cmd::Resync(a) => resync::run(a),
        Cmd::Probe(a) => probe::run(a),
        Cmd::Generate(a) => generate::run(a),
        Cmd::Device(a) => device::run(a),
        Cmd::Upgrade(a) => upgrade::run(a),
        Cmd::Set(a) => set::run_set(a),
        Cmd::Get(a) => set::run_get(a),
        Cmd::Rewrite(a) => rewrite::run(a),
        Cmd::Pfs(a) => pfs::run(a),
        Cmd::Snapshot(a) => snapshot::run(a),
        Cmd::Send(a) => send::run_send(a),
        Cmd::Receive(a) => send::run_receive(a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = hammer2_cli::one_line(&e);
            eprintln!("hammer2 {name}: {msg}");
            if json {
                println!("{}", hammer2_cli::json::error(&msg, 1));
            }
            std::process::exit(1);
        }
    }
}

/// A `--rate` in MB/s (10^6 bytes, as the summaries print rates) as bytes per second.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    match s.trim().parse::<f64>() {
        Ok(mb) if mb.is_finite() && mb > 0.0 && mb * 1e6 >= 1.0 && mb * 1e6 < u64::MAX as f64 => {
            Ok((mb * 1e6).round() as u64)
        }
        _ => Err(format!("invalid rate {s:?}: expected a positive number of MB/s")),
    }
}

/// The engine's resync slice budget, from HAMMER2_RESYNC_SLICE_BYTES (tests make slices
/// small to watch a resync take several commits), else the engine's default.
pub fn resync_slice_bytes() -> u64 {
    std::env::var("HAMMER2_RESYNC_SLICE_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(hammer2::DEFAULT_RESYNC_SLICE_BYTES)
}

/// Logging to stderr (colours only on a terminal), filtered by `log_filter`.
pub fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "warn" };
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(log_filter(default))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// The log filter: HAMMER2_LOG, else RUST_LOG (both `tracing` filters such as
/// `hammer2=debug`), else `default`.
pub fn log_filter(default: &str) -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::EnvFilter;
    EnvFilter::try_from_env("HAMMER2_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default))
}
