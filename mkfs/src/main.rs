//! `mkfs.hammer2`: checks every device first, and only when all of them may be formatted
//! creates or grows image files and writes the new filesystem.

mod summary;
mod target;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use hammer2::format::{FormatOptions, format, validate};
use hammer2::signatures::Signature;
use hammer2::storage::DynStorage;
use hammer2_format::{CheckMethod, UNIT};
use std::path::PathBuf;
use target::Target;

#[derive(Parser)]
#[command(
    name = "mkfs.hammer2",
    bin_name = "mkfs.hammer2",
    version,
    about = "Format one or more devices (image files or block devices) as one hammer2 filesystem",
    after_help = "Every check runs before anything is written: a device that holds a filesystem or a \
                  partition table (unless -f), is too small, is in use, is named twice, or a missing \
                  file without --size makes mkfs.hammer2 stop without touching any device."
)]
struct Cli {
    /// Filesystem label (at most 64 bytes).
    #[arg(short = 'L', long)]
    label: Option<String>,
    /// Copies of every block, 1 to 4 (default: 1 with one device, 2 with several).
    #[arg(long)]
    copies: Option<u8>,
    /// Check value stored for every block.
    #[arg(long, value_enum, default_value_t = Check::Crc32c)]
    check: Check,
    /// Size of image files: a missing file is created with it (sparse), a smaller one is
    /// grown to it; files are never shrunk and block devices are always used whole.
    /// Bytes, or a number with K, M, G or T (powers of 1024).
    #[arg(long, value_parser = hammer2::units::parse_size, value_name = "SIZE")]
    size: Option<u64>,
    /// Size of file data blocks: 4K to 1M, a power of two (default 16K). Smaller blocks
    /// cost less for small random writes (a write rewrites every block it touches, in
    /// every copy); larger ones cost less metadata per byte and read ahead more.
    #[arg(long, value_parser = hammer2::units::parse_size, value_name = "SIZE")]
    block_size: Option<u64>,
    /// On-disk format version: 1, or 2 (a PFS table holding the PFS "ROOT"; read by this
    /// and later versions only). A version-1 filesystem can be converted later with
    /// `hammer2 upgrade`.
    #[arg(long, value_name = "1|2", default_value_t = hammer2::format::DEFAULT_FORMAT_VERSION,
          value_parser = clap::value_parser!(u32).range(1..=2))]
    format_version: u32,
    /// Default compression of file data: none, lz4 or zstd[:LEVEL] (LEVEL 1..19, default
    /// 3). Default: lz4 on format version 2; version 1 has no compression and refuses any.
    /// Files and directories can override it (`hammer2 set compression=`), a mount too
    /// (`-o compression=`).
    #[arg(long, value_name = "none|lz4|zstd[:LEVEL]", value_parser = parse_compression)]
    compression: Option<CompressionArg>,
    /// Format even if a device already holds a filesystem or partition table; every
    /// signature found is wiped first (as `wipefs -a` does).
    #[arg(short, long)]
    force: bool,
    /// Write the man page or the shell completions (man|completions DIR), for scripts/install.sh.
    #[arg(long, hide = true, exclusive = true, num_args = 2, value_names = ["KIND", "DIR"])]
    generate: Option<Vec<String>>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Image files or block devices, all of them part of the new filesystem.
    #[arg(required = true, value_name = "DEVICE")]
    devices: Vec<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Check {
    Crc32c,
    Blake3,
}

impl From<Check> for CheckMethod {
    fn from(c: Check) -> CheckMethod {
        match c {
            Check::Crc32c => CheckMethod::Crc32c,
            Check::Blake3 => CheckMethod::Blake3,
        }
    }
}

/// A codec, or none (clap reads a bare `Option<Option<_>>` as a flag with an optional value).
#[derive(Clone, Copy)]
struct CompressionArg(Option<hammer2::compression::Codec>);

fn parse_compression(s: &str) -> std::result::Result<CompressionArg, String> {
    hammer2::compression::parse(s).map(CompressionArg).map_err(|e| e.to_string())
}

fn main() {
    let cli = Cli::parse();
    if let Some(g) = &cli.generate {
        hammer2_cli::generate_and_exit("mkfs.hammer2", g, <Cli as clap::CommandFactory>::command());
    }
    match run(&cli) {
        Ok(out) => print!("{out}"),
        Err(e) => {
            // One line, whatever the cause chain holds.
            let msg = hammer2_cli::one_line(&e);
            eprintln!("mkfs.hammer2: {msg}");
            if cli.json {
                println!("{}", hammer2_cli::json::error(&msg, 1));
            }
            std::process::exit(1);
        }
    }
}

fn run(cli: &Cli) -> Result<String> {
    let mut opts = FormatOptions {
        label: cli.label.clone().unwrap_or_default(),
        copies: cli.copies,
        check: cli.check.into(),
        format_version: cli.format_version,
        compression: cli.compression.map(|c| c.0),
        ..FormatOptions::default()
    };
    if let Some(bs) = cli.block_size {
        if !bs.is_power_of_two() || !(4096..=1 << 20).contains(&bs) {
            bail!("--block-size must be a power of two from 4K to 1M");
        }
        opts.data_block_shift = bs.trailing_zeros() as u8;
    }

    let mut targets: Vec<Target> = Vec::with_capacity(cli.devices.len());
    for path in &cli.devices {
        let t = Target::identify(path, cli.size)?;
        if let Some(other) = targets.iter().find(|o| o.identity == t.identity) {
            if other.path.as_os_str() == t.path.as_os_str() {
                bail!("{} is named twice", path.display());
            }
            bail!("{} and {} are the same device", other.path.display(), path.display());
        }
        targets.push(t);
    }

    let mut sizes = Vec::with_capacity(targets.len());
    for t in &mut targets {
        sizes.push(t.claim()? / UNIT * UNIT);
    }
    validate(&sizes, &opts).map_err(|e| anyhow::anyhow!(name_devices(e, &targets)))?;

    let mut existing = Vec::with_capacity(targets.len());
    for t in &targets {
        let e = t.existing()?;
        if !cli.force
            && let Some(what) = e.describe()
        {
            bail!("{} already holds {what} (use -f to format it anyway)", t.path.display());
        }
        existing.push(e);
    }

    // Every check passed: from here on devices are changed.
    let mut storages: Vec<DynStorage> = Vec::with_capacity(targets.len());
    let mut created: Vec<PathBuf> = Vec::new();
    let cleanup = |created: &[PathBuf]| {
        for p in created {
            let _ = std::fs::remove_file(p);
        }
    };
    let mut prepared = Vec::with_capacity(targets.len());
    for t in targets {
        let path = t.path.clone();
        match t.prepare() {
            Ok((s, new)) => {
                if new {
                    created.push(path.clone());
                }
                prepared.push((s, path));
            }
            Err(e) => {
                cleanup(&created);
                bail!("{e:#} (no device was formatted)");
            }
        }
    }
    // Only -f gets here with signatures found; they go once every device is ready.
    for ((s, path), found) in prepared.into_iter().zip(&existing) {
        wipe(&*s, &path, &found.foreign)?;
        storages.push(s);
    }
    let report = format(storages, &opts).map_err(|e| anyhow::anyhow!("formatting failed: {e}"))?;
    Ok(if cli.json { summary::json(&report) + "\n" } else { summary::text(&report) })
}

/// The library counts devices from 0; the user named them by path.
fn name_devices(e: hammer2::Error, targets: &[Target]) -> String {
    let msg = match e {
        hammer2::Error::Invalid(m) => m,
        other => other.to_string(),
    };
    for (i, t) in targets.iter().enumerate() {
        if let Some(rest) = msg.strip_prefix(&format!("device {i} ")) {
            return format!("{} {rest}", t.path.display());
        }
    }
    msg
}

/// With -f: removes every other signature from the device, as `wipefs -a` does, so that
/// neither libblkid nor `mount` without `-t` takes it for what it was. Wiping one can
/// uncover another (libblkid reports one filesystem at a time when they overlap), so the
/// device is probed again until nothing is left.
fn wipe(s: &dyn hammer2::storage::Storage, path: &std::path::Path, found: &[Signature]) -> Result<()> {
    let shown = path.display();
    let mut found = found.to_vec();
    for _ in 0..8 {
        if found.is_empty() {
            return Ok(());
        }
        hammer2::signatures::wipe(s, &found).with_context(|| format!("cannot wipe the old signatures of {shown}"))?;
        found = hammer2::signatures::find(path).with_context(|| format!("cannot examine {shown}"))?;
    }
    let left: Vec<String> = found.iter().map(Signature::describe).collect();
    bail!("{shown} still holds {} after wiping", left.join(", "))
}
