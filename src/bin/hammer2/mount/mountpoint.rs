//! The mount point must be an empty directory nothing is mounted on yet: checked before any
//! device is opened, so a wrong path never costs a device open or a write.

use anyhow::{Context, Result, bail};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Checks `path` and returns it absolute and free of symlinks (as /proc/mounts shows it).
pub fn check(path: &Path, allow_nonempty: bool) -> Result<PathBuf> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("mount point {} does not exist", path.display())
        }
        Err(e) => bail!("cannot use mount point {}: {e}", path.display()),
    };
    if !meta.is_dir() {
        bail!("mount point {} is not a directory", path.display());
    }
    let abs = std::fs::canonicalize(path).with_context(|| format!("cannot resolve mount point {}", path.display()))?;
    if is_mount_point(&abs)? {
        bail!("mount point {} is busy: something is already mounted there", path.display());
    }
    if !allow_nonempty {
        let mut entries =
            std::fs::read_dir(&abs).with_context(|| format!("cannot read mount point {}", path.display()))?;
        if entries.next().is_some() {
            bail!("mount point {} is not empty (-o nonempty mounts over it anyway)", path.display());
        }
    }
    Ok(abs)
}

/// True when `abs` (canonical) is the mount point of some mount in our namespace.
pub fn is_mount_point(abs: &Path) -> Result<bool> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    Ok(info.lines().filter_map(|l| l.split(' ').nth(4)).any(|mp| Path::new(OsStr::from_bytes(&unescape(mp))) == abs))
}

/// mountinfo writes space, tab, newline and backslash in paths as \ooo octal escapes.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(r"/mnt/a\040b\134c"), br"/mnt/a b\c");
        assert_eq!(unescape(r"/plain"), b"/plain");
        assert_eq!(unescape(r"/trailing\04"), br"/trailing\04");
    }

    #[test]
    fn root_is_a_mount_point_and_a_fresh_directory_is_not() {
        assert!(is_mount_point(Path::new("/")).unwrap());
        let d = tempfile::tempdir().unwrap();
        let abs = std::fs::canonicalize(d.path()).unwrap();
        assert!(!is_mount_point(&abs).unwrap());
        assert!(check(d.path(), false).is_ok());
        std::fs::write(d.path().join("x"), b"").unwrap();
        let e = check(d.path(), false).unwrap_err().to_string();
        assert!(e.contains("is not empty"), "{e}");
        assert!(check(d.path(), true).is_ok());
    }
}
