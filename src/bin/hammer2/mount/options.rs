//! `-o` options of `hammer2 mount`: parsed in full before anything is opened, so a typo is a
//! one-line error and never a half-made mount.

use anyhow::{Result, anyhow, bail};
use std::path::PathBuf;
use std::time::Duration;

/// A generic mount flag, by name: what the kernel applies to the mount (`kernel.rs` turns
/// them into mount(2) flags or fusermount3's option names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOption {
    Exec,
    NoExec,
    Dev,
    NoDev,
    Suid,
    NoSuid,
    Atime,
    NoAtime,
    Sync,
    Async,
    DirSync,
    /// The others, kept by name (`nodiratime`, `lazytime`, ...).
    Named(String),
}

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
    /// `uring_threads=N`: FUSE over io_uring's queue threads (one per CPU up to N) and data
    /// workers (N); default `fuse::uring::DEFAULT_THREADS`.
    pub uring_threads: Option<usize>,
    /// Mount over a directory that is not empty.
    pub nonempty: bool,
    /// Where a background daemon writes its log (default: syslog).
    pub logfile: Option<PathBuf>,
    /// `nbd_timeout=SECONDS`: how long a request to an NBD device waits for a lost
    /// connection to come back before the device is failed (default 10).
    pub nbd_timeout: Option<Duration>,
    /// `autoresync=off`: a device that comes back while mounted waits for `hammer2 resync`.
    pub no_autoresync: bool,
    /// `pfs=NAME`: the PFS to mount (format version 2; default ROOT).
    pub pfs: Option<String>,
    /// `compression=`: what files without a setting of their own are compressed with
    /// (`Some(None)`: none); unset, the filesystem's default.
    pub compression: Option<Option<hammer2::compression::Codec>>,
    /// `snapdir=hidden|visible|off`: `.snapshots` in the root's listing or not, or not served.
    pub snapdir: crate::fuse::snapdir::Mode,
    /// Generic VFS flags passed through to the kernel (noexec, nodev, noatime, ...).
    pub vfs_flags: Vec<MountOption>,
}

/// Every option `-o` takes and what it means: the one list that `hammer2 mount --help` and
/// hammer2-mount(8) show (`help`, `main.rs`'s page generation); the test
/// `every_listed_option_parses` keeps the parser below accepting each of them.
pub const OPTIONS: &[(&str, &str)] = &[
    ("ro / rw", "Read-only (the devices are opened read-only; nothing is ever written) / read-write (the default)."),
    ("allow_other", "Let users other than the one who mounted use the filesystem."),
    (
        "default_permissions",
        "Accepted for compatibility; always on: the kernel checks every access against the modes, owners, groups and POSIX ACLs.",
    ),
    (
        "cache=SIZE",
        "Memory for blocks (cache and unwritten data), at least 16M: 512M, 2G (binary suffixes K, M, G, T). Default 256M.",
    ),
    ("sync_interval=SECONDS", "How often changes are committed in the background (default 5; fractions allowed)."),
    ("degraded", "Mount even though member devices are missing (name only the devices you have)."),
    (
        "master=DEVICE",
        "When the devices were written apart, take this one's state as the truth (one of the devices given).",
    ),
    (
        "autoresync=on / autoresync=off",
        "A device that comes back while mounted is caught up by a resync that starts by itself (on, the default) or waits, stale, for `hammer2 resync` (off).",
    ),
    (
        "pfs=NAME",
        "The PFS to mount (format version 2; default ROOT, the one mkfs makes); a snapshot mounts only with ro.",
    ),
    (
        "compression=none / compression=lz4 / compression=zstd",
        "How new data of files without a setting of their own (`hammer2 set compression=`) is compressed; zstd:LEVEL (1 to 19) picks a level (default 3). Default: the one mkfs recorded (lz4 unless told otherwise). Format version 2 only: a version-1 filesystem refuses it.",
    ),
    (
        "snapdir=hidden / snapdir=visible / snapdir=off",
        "The snapshots of the mounted PFS, read-only, under MOUNTPOINT/.snapshots/NAME: left out of the root's listing (hidden, the default) or listed (visible); off serves no .snapshots (a real one in the root is then reachable).",
    ),
    ("debug", "Log at debug level, every FUSE request included (RUST_LOG or HAMMER2_LOG override the level)."),
    ("threads=N", "FUSE worker threads, 1 to 256 (default 4 per CPU, 8 to 64)."),
    ("nonempty", "Mount over a directory that is not empty."),
    (
        "uring / nouring",
        "Serve requests through FUSE over io_uring where the kernel offers it (the default) / always through /dev/fuse.",
    ),
    (
        "uring_threads=N",
        "FUSE over io_uring: queue threads (one per CPU, up to N) and data workers (N), 1 to 64 (default 8).",
    ),
    ("logfile=PATH", "Where a background daemon logs (appending). Default: the journal, else syslog, else stderr."),
    (
        "nbd_timeout=SECONDS",
        "How long a request to a remote (NBD) device waits for a lost connection to come back before the device is marked failed (default 10).",
    ),
    (
        "exec / noexec, suid / nosuid, dev / nodev",
        "Generic mount flags passed to the kernel (hammer2 mount defaults to nosuid,nodev; the mount.fuse.hammer2 helper to suid,dev).",
    ),
    (
        "atime / noatime, diratime / nodiratime, relatime / norelatime, strictatime / nostrictatime, lazytime / nolazytime",
        "The kernel's atime flags (the engine keeps atime the relatime way whatever they say).",
    ),
    ("sync / async, dirsync, symfollow / nosymfollow", "Generic mount flags passed to the kernel."),
    (
        "iversion / noiversion, mand / nomand, silent / loud",
        "Accepted, as ext4 accepts them; they mean nothing for this filesystem.",
    ),
];

/// The list above as `--help` text.
pub fn help() -> String {
    let mut s = String::from("Comma-separated mount options (may be repeated; later ones win):\n");
    for (name, meaning) in OPTIONS {
        s += &format!("\n  {name}\n      {meaning}");
    }
    s
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
            "nbd_timeout" => {
                o.nbd_timeout = Some(parse_seconds(key, need_value(key, value)?)?);
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
            "compression" => {
                let v = need_value(key, value)?;
                o.compression = Some(hammer2::compression::parse(v).map_err(|e| anyhow!("bad value for {e}"))?);
            }
            "snapdir" => {
                use crate::fuse::snapdir::Mode;
                o.snapdir = match need_value(key, value)? {
                    "hidden" => Mode::Hidden,
                    "visible" => Mode::Visible,
                    "off" => Mode::Off,
                    v => bail!("bad value for snapdir: '{v}' (hidden, visible or off)"),
                }
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
            "uring_threads" => {
                let v = need_value(key, value)?;
                match v.parse::<usize>() {
                    Ok(n @ 1..=64) => o.uring_threads = Some(n),
                    _ => bail!("bad value for uring_threads: '{v}' (expected 1 to 64)"),
                }
            }
            "autoresync" => {
                o.no_autoresync = match need_value(key, value)? {
                    "on" => false,
                    "off" => true,
                    v => bail!("bad value for autoresync: '{v}' (on or off)"),
                }
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
            | "nolazytime" | "symfollow" | "nosymfollow" => flag(&mut o, MountOption::Named(key.to_string()))?,
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
        Named(s) => Some(s.strip_prefix("no").unwrap_or(s).to_string()),
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
    fn every_listed_option_parses() {
        for (names, _) in OPTIONS {
            for name in names.split([',', '/']).map(str::trim) {
                let opt = match name.split_once('=') {
                    Some((k, "SIZE")) => format!("{k}=64M"),
                    // A placeholder (SECONDS, N, PATH...) gets a sample; a literal value is kept.
                    Some((k, v)) if v.chars().all(|c| c.is_ascii_uppercase()) => format!("{k}=1"),
                    Some(_) => name.to_string(),
                    None => name.to_string(),
                };
                assert!(p(&opt).is_ok(), "{opt} is listed but refused: {:?}", p(&opt).err());
            }
        }
    }

    #[test]
    fn every_documented_option_parses() {
        let o = p("ro,allow_other,default_permissions,cache=512M,sync_interval=2.5,degraded,\
                   master=/dev/sdb,debug,threads=8,nonempty,logfile=/tmp/h2.log,noatime,noexec,nouring,\
                   nbd_timeout=30,uring_threads=2")
        .unwrap();
        assert!(o.read_only && o.allow_other && o.degraded && o.debug && o.nonempty && o.no_uring);
        assert_eq!(o.threads, Some(8));
        assert_eq!(o.uring_threads, Some(2));
        assert_eq!(o.cache_bytes, Some(512 << 20));
        assert_eq!(o.sync_interval, Some(Duration::from_millis(2500)));
        assert_eq!(o.master, Some(PathBuf::from("/dev/sdb")));
        assert_eq!(o.logfile, Some(PathBuf::from("/tmp/h2.log")));
        assert_eq!(o.nbd_timeout, Some(Duration::from_secs(30)));
        assert_eq!(o.vfs_flags, vec![MountOption::NoAtime, MountOption::NoExec]);
    }

    #[test]
    fn autoresync_is_on_unless_turned_off_and_takes_only_on_or_off() {
        assert!(!p("rw").unwrap().no_autoresync);
        assert!(p("autoresync=off").unwrap().no_autoresync);
        assert!(!p("autoresync=off,autoresync=on").unwrap().no_autoresync);
        assert!(p("autoresync=maybe").unwrap_err().to_string().contains("on or off"));
        assert!(p("autoresync").unwrap_err().to_string().contains("needs a value"));
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
                MountOption::Named(s) => s.as_str(),
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
