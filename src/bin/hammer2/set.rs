//! `hammer2 set NAME=VALUE[,NAME=VALUE...] PATH...` and `hammer2 get [NAME] PATH...`: the
//! settings of files and directories on a mounted filesystem (format version 2):
//! `compression` and `copies`. They go through the virtual attributes `hammer2.NAME` of the mount
//! (`hammer2::Setting`): the engine checks and keeps them; this parses and prints.
//! Exit status: 0 done; 1 refused (one line: the path and why).

use anyhow::{Context, Result, anyhow, bail};
use hammer2::Setting;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
#[command(after_help = "Settings:\n  compression=none|lz4|zstd[:LEVEL]|default\n      \
    How data written from now on is compressed (zstd LEVEL 1 to 19, default 3); `default` \
    follows the mount (-o compression=) and the filesystem (mkfs --compression). A \
    directory's setting is inherited by the files and directories made in it.\n  \
    copies=1|2|3|4|default\n      \
    How many copies data blocks written from now on get (at most one per device region); \
    `default` is the filesystem's (mkfs --copies). Metadata keeps the filesystem's count. \
    With --apply (or a later `hammer2 rewrite`), data already written is brought to it.")]
pub struct SetArgs {
    /// NAME=VALUE, several separated by commas.
    #[arg(value_name = "NAME=VALUE")]
    pub settings: String,
    /// Set it also on everything under the directories given, then rewrite the data
    /// already written there to it (`hammer2 rewrite`).
    #[arg(long)]
    pub apply: bool,
    /// Files or directories on a mounted hammer2 filesystem.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(clap::Args)]
pub struct GetArgs {
    /// [NAME] PATH...: the setting to show (default: every setting), then the paths.
    #[arg(required = true, value_name = "NAME|PATH")]
    pub args: Vec<String>,
}

fn attr(s: Setting) -> String {
    format!("hammer2.{}", s.name())
}

fn setting(name: &str) -> Result<Setting> {
    Setting::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| {
        let known: Vec<&str> = Setting::ALL.iter().map(|s| s.name()).collect();
        anyhow!("unknown setting {name:?} (known: {})", known.join(", "))
    })
}

/// Why a call on `path` failed, in one line.
fn explain(path: &Path, e: std::io::Error) -> anyhow::Error {
    let why = match e.raw_os_error() {
        // A hammer2 mount answers every `hammer2.` name of a version-2 filesystem; a get
        // that finds none is another filesystem.
        Some(libc::ENODATA) | Some(libc::ENOTSUP) => "not on a mounted hammer2 filesystem".to_string(),
        Some(libc::EINVAL) => "invalid value".to_string(),
        _ => e.to_string(),
    };
    anyhow!("{}: {why}", path.display())
}

fn get_one(path: &Path, s: Setting) -> Result<String> {
    match xattr::get(path, attr(s)) {
        Ok(Some(v)) => Ok(String::from_utf8_lossy(&v).into_owned()),
        Ok(None) => Err(explain(path, std::io::Error::from_raw_os_error(libc::ENODATA))),
        Err(e) => Err(explain(path, e)),
    }
}

pub fn run_set(a: SetArgs) -> Result<i32> {
    let mut pairs = Vec::new();
    for item in a.settings.split(',').filter(|s| !s.is_empty()) {
        let (name, value) = item.split_once('=').with_context(|| format!("{item:?}: expected NAME=VALUE"))?;
        let s = setting(name)?;
        if value != "default" {
            match s {
                Setting::Compression => drop(hammer2::compression::parse(value)?),
                Setting::Copies => drop(hammer2::parse_copies(value, 4)?),
            }
        }
        pairs.push((s, value.to_string()));
    }
    if pairs.is_empty() {
        bail!("no setting given: expected NAME=VALUE");
    }
    for top in &a.paths {
        // First a read: it tells a hammer2 mount from anything else, so that the refusal
        // of a set below can only be the filesystem's format version.
        get_one(top, pairs[0].0)?;
        // With --apply, everything under a directory takes the setting too (its data is
        // then rewritten to it); without, the directory alone (what is made in it inherits).
        let mut paths = vec![top.clone()];
        if a.apply {
            paths = crate::rewrite::tree(top)?;
        }
        for path in &paths {
            for (s, value) in &pairs {
                xattr::set(path, attr(*s), value.as_bytes()).map_err(|e| match e.raw_os_error() {
                    Some(libc::ENOTSUP) => anyhow!("{}: {}", path.display(), hammer2::Error::FormatVersion1),
                    Some(libc::EINVAL) if *s == Setting::Copies => {
                        anyhow!(
                            "{}: copies={value}: more copies than this filesystem has device regions for",
                            path.display()
                        )
                    }
                    _ => explain(path, e),
                })?;
            }
        }
    }
    if a.apply {
        crate::rewrite::rewrite(&a.paths)?;
    }
    Ok(0)
}

pub fn run_get(a: GetArgs) -> Result<i32> {
    let (which, paths): (Vec<Setting>, &[String]) = match a.args.split_first() {
        Some((first, rest)) if !rest.is_empty() && Setting::ALL.iter().any(|s| s.name() == first) => {
            (vec![setting(first)?], rest)
        }
        _ => (Setting::ALL.to_vec(), &a.args[..]),
    };
    for p in paths {
        let path = Path::new(p);
        for s in &which {
            let v = get_one(path, *s)?;
            println!("{}: {}={v}", path.display(), s.name());
        }
    }
    Ok(0)
}
