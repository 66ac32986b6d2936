//! `hammer2 rewrite PATH...` (and `hammer2 set NAME=VALUE --apply PATH...`): brings the data
//! already written to files to their current settings (copies, compression). The engine
//! decides which blocks need it and rewrites them (`hammer2::Fs::rewrite_range`); this
//! walks the paths and asks for one range of each file at a time through the virtual
//! attribute `hammer2.rewrite` (whose value read back is the range's length), so progress
//! shows and an interrupted rewrite can simply be run again.
//! Exit status: 0 done; 1 refused (one line: the path and why).

use anyhow::{Result, anyhow};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

const ATTR: &str = "hammer2.rewrite";

#[derive(clap::Args)]
#[command(after_help = "Only the blocks whose copy count or compression differs from the \
    file's settings (hammer2 get) are read and written again; blocks a snapshot holds stay \
    where they are for the snapshot. Directories are walked (not across mount points). \
    Interrupted, it leaves every file whole; run it again to finish.")]
pub struct Args {
    /// Files or directories on a mounted hammer2 filesystem.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

pub fn run(a: Args) -> Result<i32> {
    rewrite(&a.paths)?;
    Ok(0)
}

/// `path` and the files and directories under it (directories before what they hold).
pub fn tree(path: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(path, &mut |p, m| {
        if m.is_file() || m.is_dir() {
            out.push(p.to_path_buf());
        }
    })?;
    Ok(out)
}

/// The regular files under `path` (itself if it is one), with their sizes.
fn files(path: &Path, out: &mut Vec<(PathBuf, u64)>) -> Result<()> {
    walk(path, &mut |p, m| {
        if m.is_file() {
            out.push((p.to_path_buf(), m.len()));
        }
    })
}

/// Visits `path` and everything under it; the walk stays on `path`'s filesystem and
/// follows no symbolic link.
fn walk(path: &Path, visit: &mut dyn FnMut(&Path, &std::fs::Metadata)) -> Result<()> {
    let top = std::fs::symlink_metadata(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let mut stack = vec![(path.to_path_buf(), top.clone())];
    while let Some((p, m)) = stack.pop() {
        visit(&p, &m);
        if m.is_dir() && m.dev() == top.dev() {
            let rd = std::fs::read_dir(&p).map_err(|e| anyhow!("{}: {e}", p.display()))?;
            for e in rd {
                let e = e.map_err(|e| anyhow!("{}: {e}", p.display()))?;
                let m = e.metadata().map_err(|err| anyhow!("{}: {err}", e.path().display()))?;
                stack.push((e.path(), m));
            }
        }
    }
    Ok(())
}

/// Why a call on `path` failed, in one line.
fn explain(path: &Path, e: std::io::Error) -> anyhow::Error {
    let why = match e.raw_os_error() {
        Some(libc::ENODATA) | Some(libc::ENOTSUP) => "not on a mounted hammer2 filesystem".to_string(),
        Some(libc::ENOSPC) => "no space left to rewrite into (what was done so far is kept)".to_string(),
        _ => e.to_string(),
    };
    anyhow!("{}: {why}", path.display())
}

/// Rewrites every file under `paths`, printing a progress bar on a terminal and a summary.
pub fn rewrite(paths: &[PathBuf]) -> Result<()> {
    let mut all = Vec::new();
    for p in paths {
        // A read first: it tells a hammer2 mount from anything else.
        xattr::get(p, ATTR).map_err(|e| explain(p, e))?.ok_or_else(|| explain(p, libc_err(libc::ENODATA)))?;
        files(p, &mut all)?;
    }
    let total: u64 = all.iter().map(|(_, n)| n).sum();
    let bar = crate::progress::Bar::new("rewrite", false);
    let start = Instant::now();
    let mut done = 0u64;
    for (i, (path, size)) in all.iter().enumerate() {
        let range: u64 = match xattr::get(path, ATTR) {
            Ok(Some(v)) => String::from_utf8_lossy(&v).trim().parse().unwrap_or(0),
            Ok(None) => 0,
            Err(e) => return Err(explain(path, e)),
        };
        let range = range.max(1 << 20);
        let mut off = 0u64;
        loop {
            xattr::set(path, ATTR, off.to_string().as_bytes()).map_err(|e| explain(path, e))?;
            let step = range.min(size.saturating_sub(off));
            done += step;
            off += range;
            bar.update(done, total, format!("file {} of {}", i + 1, all.len()));
            if off >= *size {
                break;
            }
        }
    }
    bar.finish();
    let secs = start.elapsed().as_secs_f64();
    // A rate over a few milliseconds (nothing needed a rewrite) would say nothing.
    let rate = if secs >= 0.1 { format!(" ({:.1} MB/s)", total as f64 / secs / 1e6) } else { String::new() };
    println!("rewrite: {} file(s), {} examined in {secs:.1} s{rate}", all.len(), hammer2::units::human(total));
    Ok(())
}

fn libc_err(code: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(code)
}
