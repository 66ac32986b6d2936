//! `mount.fuse.hammer2`: what mount(8) runs for `mount -t fuse.hammer2` and for /etc/fstab
//! lines of that type. It is this same binary under another name (install a copy or a
//! symlink as /sbin/mount.fuse.hammer2), called as
//!
//!     mount.fuse.hammer2 DEVICE[:DEVICE...] MOUNTPOINT [-sfnv] [-o OPTIONS] [-t TYPE] [-N NS]
//!
//! and doing what `hammer2 mount -o OPTIONS DEVICE... MOUNTPOINT` does. Several devices are
//! joined by `:`, as bcachefs does. An NBD URI has colons of its own (`nbd://h:10809/e`),
//! so inside a URI a `:` separates devices only where the next device starts: before a `/`
//! (a path) or another NBD URI. `/dev/sdb:nbd://backup:10809/h2:/dev/sdc` is three devices;
//! a colon that must stay in a URI right before a `/` (a socket path, an export name) is
//! written `%3A`, and a local device after a URI is named by its absolute path. Options that belong to mount(8) or fstab rather than to
//! the filesystem (`defaults`, `noauto`, `_netdev`, `x-systemd.*`, ...) are dropped, not
//! refused.
//!
//! mount(8) never passes `suid`, `dev` or `exec`: they are the kernel's defaults, so it
//! passes only their `no` forms. As libfuse's mount.fuse does, the helper run by root
//! therefore starts from `dev,suid` (`hammer2 mount` itself defaults to nosuid,nodev), and
//! `nosuid`/`nodev` when given, or added by mount(8) for a `user` fstab line, win.
//! `-o remount,...` changes the live mount (see `mount::remount`).
//!
//! The source may also be `UUID=<filesystem uuid>` or `LABEL=<label>` (what fstab lines
//! for systemd should use): the members are looked up among the block devices and the image
//! files named with `-o devices=PATH:PATH` (`hammer2::locate`, L1 in docs/DESIGN.md). As
//! mount(8) turns `UUID=` into the one device udev links it to, a single block device that
//! is a member of a larger filesystem is completed with the other members found among the
//! block devices, unless `-o degraded` asks for it alone.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

pub const NAME: &str = "mount.fuse.hammer2";
const USAGE: &str = "usage: mount.fuse.hammer2 DEVICE[:DEVICE...] MOUNTPOINT [-o OPTIONS]";

/// True when this binary was started under the helper's name.
pub fn invoked_as_helper() -> bool {
    std::env::args_os().next().is_some_and(|a0| Path::new(&a0).file_name() == Some(OsStr::new(NAME)))
}

/// Runs the helper and exits.
pub fn main() -> ! {
    let code = match parse(std::env::args_os().skip(1)).and_then(run) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{NAME}: {}", hammer2_cli::one_line(&e));
            1
        }
    };
    std::process::exit(code)
}

#[derive(Debug)]
struct Call {
    source: OsString,
    mountpoint: OsString,
    options: Vec<String>,
    /// `-f`: do everything but the mount.
    fake: bool,
    /// `-o remount,...`: change the mount on `mountpoint`.
    remount: bool,
}

fn parse(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<Call> {
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let mut fake = false;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy().into_owned();
        match s.as_str() {
            "-o" => options
                .push(it.next().ok_or_else(|| anyhow::anyhow!("-o needs a value"))?.to_string_lossy().into_owned()),
            // The type (fuse.hammer2) and a namespace to mount in are mount(8)'s business.
            "-t" | "-N" => {
                it.next();
            }
            _ if s.starts_with("-o") => options.push(s[2..].to_string()),
            // -s (sloppy), -n (no mtab), -v (verbose), -f (fake), alone or combined.
            _ if s.starts_with('-') && s.len() > 1 && s[1..].chars().all(|c| "sfnv".contains(c)) => {
                fake |= s.contains('f');
            }
            _ if s.starts_with('-') && s.len() > 1 => anyhow::bail!("unknown flag {s}; {USAGE}"),
            _ => positional.push(a),
        }
    }
    let [source, mountpoint]: [OsString; 2] = positional.try_into().map_err(|_| anyhow::anyhow!(USAGE))?;
    let mut options = filesystem_options(&options);
    let remount = options.iter().any(|o| o == "remount");
    options.retain(|o| o != "remount");
    if remount {
        // mount(8) repeats the options /proc/self/mountinfo shows, the FUSE connection's
        // among them; those cannot change on a live mount.
        const CONNECTION: [&str; 6] = ["user_id=", "group_id=", "rootmode=", "fd=", "max_read=", "blksize="];
        options.retain(|o| !CONNECTION.iter().any(|p| o.starts_with(p)));
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        options.splice(0..0, ["dev".to_string(), "suid".to_string()]);
    }
    Ok(Call { source, mountpoint, options, fake, remount })
}

/// Drops what mount(8) and fstab add for themselves; keeps everything else for `hammer2
/// mount` to accept or refuse.
fn filesystem_options(lists: &[String]) -> Vec<String> {
    const MOUNT8: [&str; 10] =
        ["defaults", "auto", "noauto", "user", "users", "nouser", "owner", "group", "_netdev", "nofail"];
    const MOUNT8_PREFIXES: [&str; 9] =
        ["x-", "comment=", "fsname=", "subtype=", "helper=", "context=", "fscontext=", "defcontext=", "rootcontext="];
    lists
        .iter()
        .flat_map(|l| l.split(','))
        .filter(|o| !o.is_empty() && !MOUNT8.contains(o) && !MOUNT8_PREFIXES.iter().any(|p| o.starts_with(p)))
        .map(str::to_string)
        .collect()
}

fn devices(source: &OsStr) -> anyhow::Result<Vec<PathBuf>> {
    Ok(hammer2::locate::split_list(source)?)
}

/// The devices a source names, and the options left for `hammer2 mount`: a device list, or
/// `UUID=`/`LABEL=` looked up among the block devices and the image files of
/// `devices=PATH:PATH` (an option only the helper reads: it is taken out).
pub fn sources(source: &OsStr, options: Vec<String>) -> anyhow::Result<(Vec<PathBuf>, Vec<String>)> {
    let (named, options): (Vec<String>, Vec<String>) = options.into_iter().partition(|o| o.starts_with("devices="));
    let Some(wanted) = hammer2::locate::parse(&source.to_string_lossy()) else {
        if !named.is_empty() {
            anyhow::bail!("-o devices= goes with a UUID= or LABEL= source, not with a device list");
        }
        // mount(8) resolves a UUID= source itself when udev links it (to one member, as a
        // canonical /dev path): a lone member is completed with its fellow members from
        // the block devices, unless the operator asked for that one alone (-o degraded).
        let degraded = options.iter().flat_map(|o| o.split(',')).any(|o| o == "degraded");
        return match devices(source)? {
            list if list.len() == 1 && !degraded => Ok((hammer2::locate::resolve(source)?, options)),
            list => Ok((list, options)),
        };
    };
    let wanted = wanted?;
    let mut candidates = Vec::new();
    for n in &named {
        candidates.extend(devices(OsStr::new(&n["devices=".len()..]))?);
    }
    candidates.extend(hammer2::locate::block_devices());
    Ok((hammer2::locate::members(&wanted, &candidates)?, options))
}

fn run(call: Call) -> anyhow::Result<i32> {
    if call.remount {
        return match call.fake {
            true => Ok(0),
            false => crate::mount::remount(Path::new(&call.mountpoint), &call.options),
        };
    }
    let (mut paths, options) = sources(&call.source, call.options)?;
    if call.fake {
        return Ok(0);
    }
    paths.push(PathBuf::from(call.mountpoint));
    let options = if options.is_empty() { Vec::new() } else { vec![options.join(",")] };
    crate::mount::run(crate::mount::Args { foreground: false, options, paths })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(args: &[&str]) -> anyhow::Result<Call> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn mount8_style_arguments_are_understood() {
        let c = call(&["/a.img:/b.img", "/mnt", "-n", "-o", "rw,noauto,x-systemd.automount,cache=1G,_netdev"]).unwrap();
        assert_eq!(c.source, "/a.img:/b.img");
        assert_eq!(c.mountpoint, "/mnt");
        assert_eq!(c.options[c.options.len() - 2..], ["rw", "cache=1G"]);
        assert!(!c.fake && !c.remount);
        assert_eq!(devices(&c.source).unwrap(), [PathBuf::from("/a.img"), PathBuf::from("/b.img")]);
    }

    #[test]
    fn fake_type_and_combined_flags_are_accepted() {
        let c = call(&["-sv", "-t", "fuse.hammer2", "/a.img", "/mnt", "-fn", "-odefaults"]).unwrap();
        assert!(c.fake);
        assert!(c.options.iter().all(|o| o == "dev" || o == "suid"), "{:?}", c.options);
    }

    /// What mount(8) passes for `mount -o remount,ro,nosuid MOUNTPOINT`; the root defaults
    /// (suid, dev) come first, so what mount(8) says wins.
    #[test]
    fn remount_is_seen_and_mount8s_flags_win_over_the_defaults() {
        let c = call(&["/a.img", "/mnt", "-o", "ro,nosuid,remount,user_id=0,group_id=0,default_permissions"]).unwrap();
        assert!(c.remount);
        assert!(!c.options.iter().any(|o| o.contains("_id=")));
        assert!(!c.options.iter().any(|o| o == "remount"));
        assert_eq!(c.options.iter().rev().take(3).collect::<Vec<_>>(), ["default_permissions", "nosuid", "ro"]);
    }

    #[test]
    fn bad_calls_say_how_to_call() {
        assert!(call(&["/a.img"]).unwrap_err().to_string().contains("usage"));
        assert!(call(&["/a.img", "/mnt", "-q"]).unwrap_err().to_string().contains("unknown flag -q"));
        assert!(devices(OsStr::new("/a.img::/b.img")).is_err());
        assert!(devices(OsStr::new("/a.img:")).is_err());
    }

    #[test]
    fn nbd_uris_keep_their_colons_in_a_device_list() {
        let d = |s: &str| devices(OsStr::new(s)).unwrap();
        assert_eq!(
            d("/dev/sdb:nbd://backup:10809/h2:/dev/sdc"),
            [PathBuf::from("/dev/sdb"), "nbd://backup:10809/h2".into(), "/dev/sdc".into()]
        );
        assert_eq!(
            d("nbd://[::1]:7/a:nbd+unix:///b?socket=/run/x.sock:rel.img"),
            [PathBuf::from("nbd://[::1]:7/a"), "nbd+unix:///b?socket=/run/x.sock:rel.img".into()],
            "after a URI, a relative path cannot be told from the URI's own text"
        );
        assert_eq!(
            d("nbd://[::1]:7/a:nbd+unix:///b?socket=/run/x.sock:/c.img"),
            [PathBuf::from("nbd://[::1]:7/a"), "nbd+unix:///b?socket=/run/x.sock".into(), "/c.img".into()]
        );
        assert_eq!(d("NBD://h/e"), [PathBuf::from("NBD://h/e")]);
    }
}
