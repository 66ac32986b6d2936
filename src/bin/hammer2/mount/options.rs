//! `-o` options of `hammer2 mount`: parsed in full before anything is opened, so a typo is a
//! one-line error and never a half-made mount.

use anyhow::{Result, anyhow, bail};
use fuser::MountOption;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `-o` can say.
#[derive(Debug, Clone, Default)]
pub struct MountOptions {
    pub read_only: bool,
    pub allow_other: bool,
    pub cache_bytes: Option<u64>,
    pub sync_interval: Option<Duration>,
    pub degraded: bool,
    /// The device (as named on the command line) whose root wins when devices diverged.
    pub master: Option<PathBuf>,
    pub debug: bool,
    /// FUSE worker threads (default: 4 per CPU, 8 to 64).
    pub threads: Option<usize>,
    /// `nouring`: serve everything through /dev/fuse even where the kernel offers FUSE over
    /// io_uring.
    pub no_uring: bool,
    /// Mount over a directory that is not empty.
    pub nonempty: bool,
    /// Where a background daemon writes its log (default: syslog).
    pub logfile: Option<PathBuf>,
    /// `pfs=NAME`: the PFS to mount (format version 2; default ROOT).
    pub pfs: Option<String>,
    /// Generic VFS flags passed through to the kernel (noexec, nodev, noatime, ...).
    pub vfs_flags: Vec<MountOption>,
}

/// Parses every `-o` argument (each a comma-separated list); later options win.
pub fn parse(args: &[String]) -> Result<MountOptions> {
    let mut o = MountOptions::default();
    for opt in args.iter().flat_map(|a| a.split(',')).filter(|s| !s.is_empty()) {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        let flag = |o: &mut MountOptions, f: MountOption| -> Result<()> {
            no_value(key, value)?;
            o.vfs_flags.retain(|x| !conflicts(x, &f));
            o.vfs_flags.push(f);
            Ok(())
        };
        match key {
            "ro" => {
                no_value(key, value)?;
                o.read_only = true;
            }
            "rw" => {
                no_value(key, value)?;
                o.read_only = false;
            }
            "allow_other" => {
                no_value(key, value)?;
                o.allow_other = true;
            }
            // Always on: the kernel checks permissions against the modes we report.
            "default_permissions" => no_value(key, value)?,
            "cache" => {
                let v = need_value(key, value)?;
                let bytes = parse_size(key, v)?;
                if bytes < 16 << 20 {
                    bail!("bad value for cache: '{v}' (at least 16M)");
                }
                o.cache_bytes = Some(bytes);
            }
            "sync_interval" => {
                o.sync_interval = Some(parse_seconds(key, need_value(key, value)?)?);
            }
            "degraded" => {
                no_value(key, value)?;
                o.degraded = true;
            }
            "master" => o.master = Some(PathBuf::from(need_value(key, value)?)),
            "pfs" => {
                let v = need_value(key, value)?;
                if let Some(why) = hammer2_format::pfs::name_problem(v) {
                    bail!("bad value for pfs: '{v}' ({why})");
                }
                o.pfs = Some(v.to_string());
            }
            "debug" => {
                no_value(key, value)?;
                o.debug = true;
            }
            "threads" => {
                let v = need_value(key, value)?;
                match v.parse::<usize>() {
                    Ok(n @ 1..=256) => o.threads = Some(n),
                    _ => bail!("bad value for threads: '{v}' (expected 1 to 256)"),
                }
            }
            "nonempty" => {
                no_value(key, value)?;
                o.nonempty = true;
            }
            "uring" | "nouring" => {
                no_value(key, value)?;
                o.no_uring = key == "nouring";
            }
            "logfile" => o.logfile = Some(PathBuf::from(need_value(key, value)?)),
            "exec" => flag(&mut o, MountOption::Exec)?,
            "noexec" => flag(&mut o, MountOption::NoExec)?,
            "dev" => flag(&mut o, MountOption::Dev)?,
            "nodev" => flag(&mut o, MountOption::NoDev)?,
            "suid" => flag(&mut o, MountOption::Suid)?,
            "nosuid" => flag(&mut o, MountOption::NoSuid)?,
            "atime" => flag(&mut o, MountOption::Atime)?,
            "noatime" => flag(&mut o, MountOption::NoAtime)?,
            "sync" => flag(&mut o, MountOption::Sync)?,
            "async" => flag(&mut o, MountOption::Async)?,
            "dirsync" => flag(&mut o, MountOption::DirSync)?,
            // Kernel flags of the mount (the engine itself keeps atime the relatime way).
            "diratime" | "nodiratime" | "relatime" | "norelatime" | "strictatime" | "nostrictatime" | "lazytime"
            | "nolazytime" | "symfollow" | "nosymfollow" => flag(&mut o, MountOption::CUSTOM(key.to_string()))?,
            // Generic options that mean nothing for a FUSE filesystem: accepted, as ext4
            // accepts them.
            "iversion" | "noiversion" | "mand" | "nomand" | "silent" | "loud" => no_value(key, value)?,
            _ => bail!("unknown mount option '{opt}'"),
        }
    }
    Ok(o)
}

/// A flag and its opposite (noexec / exec, ...) replace each other.
fn conflicts(old: &MountOption, new: &MountOption) -> bool {
    use MountOption::*;
    let pair = |a: &MountOption| match a {
        Exec | NoExec => 1,
        Dev | NoDev => 2,
        Suid | NoSuid => 3,
        Atime | NoAtime => 4,
        Sync | Async => 5,
        DirSync => 6,
        _ => 0,
    };
    // The generic flags kept by name: `nodiratime` replaces `diratime` and the reverse.
    let custom = |a: &MountOption| match a {
        CUSTOM(s) => Some(s.strip_prefix("no").unwrap_or(s).to_string()),
        _ => None,
    };
    match (custom(old), custom(new)) {
        (None, None) => pair(old) == pair(new),
        (a, b) => a == b,
    }
}

fn no_value(key: &str, value: Option<&str>) -> Result<()> {
    match value {
        None => Ok(()),
        Some(_) => bail!("mount option '{key}' takes no value"),
    }
}

fn need_value<'a>(key: &str, value: Option<&'a str>) -> Result<&'a str> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => bail!("mount option '{key}' needs a value ({key}=...)"),
    }
}

/// `SIZE` with an optional binary suffix: 1048576, 512K, 256M, 2G, 1T (also KiB, MiB, ...).
pub fn parse_size(key: &str, v: &str) -> Result<u64> {
    hammer2::units::parse_size(v)
        .map_err(|_| anyhow!("bad value for {key}: '{v}' (expected a size such as 512M or 2G)"))
}

/// Seconds, possibly fractional: 5, 0.5, 30.
pub fn parse_seconds(key: &str, v: &str) -> Result<Duration> {
    let bad = || anyhow!("bad value for {key}: '{v}' (expected seconds such as 5 or 0.5)");
    let s: f64 = v.parse().map_err(|_| bad())?;
    if !s.is_finite() || s <= 0.0 || s > 86_400.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<MountOptions> {
        parse(&[s.to_string()])
    }

    #[test]
    fn every_documented_option_parses() {
        let o = p("ro,allow_other,default_permissions,cache=512M,sync_interval=2.5,degraded,\
                   master=/dev/sdb,debug,threads=8,nonempty,logfile=/tmp/h2.log,noatime,noexec,nouring")
        .unwrap();
        assert!(o.read_only && o.allow_other && o.degraded && o.debug && o.nonempty && o.no_uring);
        assert_eq!(o.threads, Some(8));
        assert_eq!(o.cache_bytes, Some(512 << 20));
        assert_eq!(o.sync_interval, Some(Duration::from_millis(2500)));
        assert_eq!(o.master, Some(PathBuf::from("/dev/sdb")));
        assert_eq!(o.logfile, Some(PathBuf::from("/tmp/h2.log")));
        assert_eq!(o.vfs_flags, vec![MountOption::NoAtime, MountOption::NoExec]);
    }

    #[test]
    fn repeated_o_arguments_combine_and_later_ones_win() {
        let o = parse(&["ro,noexec".into(), "rw,exec".into()]).unwrap();
        assert!(!o.read_only);
        assert_eq!(o.vfs_flags, vec![MountOption::Exec]);
    }

    #[test]
    fn generic_vfs_flags_are_accepted_and_later_ones_win() {
        let o = p("nodiratime,lazytime,relatime,strictatime,diratime,nosymfollow,iversion,mand,silent,loud").unwrap();
        let names: Vec<_> = o
            .vfs_flags
            .iter()
            .map(|f| match f {
                MountOption::CUSTOM(s) => s.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(names, ["lazytime", "relatime", "strictatime", "diratime", "nosymfollow"]);
        assert!(p("nodiratime=1").unwrap_err().to_string().contains("takes no value"));
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("cache", "4096").unwrap(), 4096);
        assert_eq!(parse_size("cache", "64k").unwrap(), 64 << 10);
        assert_eq!(parse_size("cache", "1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("cache", "2T").unwrap(), 2 << 40);
        for bad in ["", "M", "12Q", "-1", "1.5G", "99999999999T"] {
            assert!(parse_size("cache", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn unknown_or_malformed_options_are_one_line_errors() {
        for (opt, want) in [
            ("bogus", "unknown mount option 'bogus'"),
            ("cache", "mount option 'cache' needs a value"),
            ("ro=1", "mount option 'ro' takes no value"),
            ("sync_interval=0", "bad value for sync_interval"),
            ("cache=lots", "bad value for cache"),
        ] {
            let e = p(opt).unwrap_err().to_string();
            assert!(e.contains(want), "{opt}: {e}");
            assert!(!e.contains('\n'));
        }
    }
}
