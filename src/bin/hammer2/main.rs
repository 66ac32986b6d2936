//! The `hammer2` command: mount (FUSE), info, scrub, resync, upgrade.

mod control;
mod devices;
mod fuse;
mod helper;
mod info;
mod mount;
mod offline;
mod resync;
mod scrub;
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
    /// Read and verify every copy of every block, repairing bad copies.
    Scrub(scrub::Args),
    /// Bring stale or replaced devices up to date.
    Resync(resync::Args),
    /// Convert an unmounted format-version-1 filesystem to version 2 (one commit).
    Upgrade(upgrade::Args),
}

fn main() {
    if helper::invoked_as_helper() {
        helper::main();
    }
    let cli = Cli::parse();
    let name = match &cli.cmd {
        Cmd::Mount(_) => "mount",
        Cmd::Info(_) => "info",
        Cmd::Scrub(_) => "scrub",
        Cmd::Resync(_) => "resync",
        Cmd::Upgrade(_) => "upgrade",
    };
    let result = match cli.cmd {
        Cmd::Mount(a) => mount::run(a),
        Cmd::Info(a) => info::run(a),
        Cmd::Scrub(a) => scrub::run(a),
        Cmd::Resync(a) => resync::run(a),
        Cmd::Upgrade(a) => upgrade::run(a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("hammer2 {name}: {e:#}");
            std::process::exit(1);
        }
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

/// Logging to stderr, filtered by HAMMER2_LOG (default: warnings).
pub fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HAMMER2_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
