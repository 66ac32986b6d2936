//! Finding a filesystem's members by what identifies it, for sources such as `UUID=...` and
//! `LABEL=...` in /etc/fstab (a list of device paths joined by `:` names no device unit
//! systemd can wait for). The candidates are the block devices the kernel lists in
//! /sys/class/block and the image files the caller names; each is read, never claimed
//! (`signatures::identify`), and the members are the candidates whose newest header names
//! the filesystem. A label two filesystems share names neither: it is refused (L1).

use crate::signatures;
use crate::storage::claim::OpenMode;
use crate::storage::file::FileStorage;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What a source names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    Uuid(uuid::Uuid),
    Label(String),
}

#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("{0:?} is not a UUID")]
    BadUuid(String),
    #[error(
        "no device holds the hammer2 filesystem {0} (looked at the block devices and the files given with -o devices=)"
    )]
    NotFound(String),
    #[error("bad device list '{0}' (devices are separated by ':')")]
    BadList(String),
    #[error("{what} names {n} hammer2 filesystems ({list}): name one by UUID=")]
    Ambiguous { what: String, n: usize, list: String },
}

impl std::fmt::Display for Wanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wanted::Uuid(u) => write!(f, "UUID={u}"),
            Wanted::Label(l) => write!(f, "LABEL={l}"),
        }
    }
}

/// `UUID=...` or `LABEL=...` (as fstab writes them; a value may be quoted), else None.
/// `/dev/disk/by-uuid/...` and `/dev/disk/by-label/...` too: systemd's fstab generator and
/// mount(8) turn a `UUID=` source into that link, which names one member only (udev links
/// each filesystem uuid to one device), so the link is read back as the name it came from.
pub fn parse(source: &str) -> Option<Result<Wanted, LocateError>> {
    let unquote = |v: &str| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v).to_string();
    if let Some(v) = source.strip_prefix("/dev/disk/by-uuid/") {
        return Some(uuid::Uuid::parse_str(v).map(Wanted::Uuid).map_err(|_| LocateError::BadUuid(v.to_string())));
    }
    if let Some(v) = source.strip_prefix("/dev/disk/by-label/") {
        return Some(Ok(Wanted::Label(udev_decode(v))));
    }
    if let Some(v) = source.strip_prefix("UUID=") {
        let v = unquote(v);
        return Some(uuid::Uuid::parse_str(&v).map(Wanted::Uuid).map_err(|_| LocateError::BadUuid(v)));
    }
    source.strip_prefix("LABEL=").map(|v| Ok(Wanted::Label(unquote(v))))
}

/// A link name as udev writes it (`\x2f` for `/`, `\x20` for a space) back to the label.
fn udev_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex =
            b.get(i + 2..i + 4).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], b.get(i + 1), hex) {
            (b'\\', Some(b'x'), Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every block device the kernel knows, as /dev paths.
pub fn block_devices() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir("/sys/class/block")
        .map(|d| d.flatten().map(|e| Path::new("/dev").join(e.file_name())).filter(|p| p.exists()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// The members of the filesystem `wanted` names among `candidates` (in their order, each
/// member once: a second path to the same device is dropped).
pub fn members(wanted: &Wanted, candidates: &[PathBuf]) -> Result<Vec<PathBuf>, LocateError> {
    // (filesystem uuid, device uuid, path) of every candidate holding a hammer2 header.
    let mut found: Vec<(uuid::Uuid, uuid::Uuid, PathBuf)> = Vec::new();
    for p in candidates {
        // Unreadable or empty devices (a CD drive without a disc, a device root may not
        // open) are simply not members.
        let Ok(s) = FileStorage::open(p, OpenMode::ReadOnly) else { continue };
        let Some(id) = signatures::identify(&s) else { continue };
        let hit = match wanted {
            Wanted::Uuid(u) => id.fs_uuid == *u,
            Wanted::Label(l) => id.label == *l,
        };
        if hit && !found.iter().any(|(_, d, _)| *d == id.device_uuid) {
            found.push((id.fs_uuid, id.device_uuid, p.clone()));
        }
    }
    let mut filesystems: Vec<uuid::Uuid> = found.iter().map(|(f, _, _)| *f).collect();
    filesystems.dedup();
    filesystems.sort();
    filesystems.dedup();
    match filesystems.as_slice() {
        [] => Err(LocateError::NotFound(wanted.to_string())),
        [_] => Ok(found.into_iter().map(|(_, _, p)| p).collect()),
        // L1: two filesystems with one label; mounting either could be the wrong one.
        many => Err(LocateError::Ambiguous {
            what: wanted.to_string(),
            n: many.len(),
            list: many
                .iter()
                .map(|f| {
                    let on: Vec<String> =
                        found.iter().filter(|(g, _, _)| g == f).map(|(_, _, p)| p.display().to_string()).collect();
                    format!("{f} on {}", on.join(" "))
                })
                .collect::<Vec<_>>()
                .join("; "),
        }),
    }
}

/// The devices of a `:`-joined list (`/dev/sdb:/dev/sdc`, as fstab's first field holds
/// several). An NBD URI has colons of its own (`nbd://h:10809/e`), so inside a URI a `:`
/// separates devices only where the next device starts: before a `/` (a path) or another
/// NBD URI.
pub fn split_list(source: &OsStr) -> Result<Vec<PathBuf>, LocateError> {
    let b = source.as_bytes();
    let uri_at = |i: usize| std::str::from_utf8(&b[i..]).is_ok_and(crate::storage::nbd::uri::looks_like_nbd);
    let mut parts = Vec::new();
    let mut start = 0;
    // Where the URI's own "scheme://" ends, when the current device is a URI.
    let mut uri_body = uri_at(0).then(|| scheme_end(b, 0));
    for i in 0..b.len() {
        if b[i] != b':' || uri_body.is_some_and(|body| i < body) {
            continue;
        }
        let next_starts = b.get(i + 1) == Some(&b'/') || uri_at(i + 1);
        if uri_body.is_none() || next_starts {
            parts.push(PathBuf::from(OsStr::from_bytes(&b[start..i])));
            start = i + 1;
            uri_body = uri_at(start).then(|| scheme_end(b, start));
        }
    }
    parts.push(PathBuf::from(OsStr::from_bytes(&b[start..])));
    if parts.iter().any(|p| p.as_os_str().is_empty()) {
        return Err(LocateError::BadList(source.to_string_lossy().into_owned()));
    }
    Ok(parts)
}

/// The index just past `://` of the URI starting at `from`.
fn scheme_end(b: &[u8], from: usize) -> usize {
    b[from..].windows(3).position(|w| w == b"://").map_or(b.len(), |p| from + p + 3)
}

/// What fsck.fuse.hammer2 checks for one fstab source: `UUID=`/`LABEL=` (or their
/// /dev/disk links) looked up, a `:`-joined list as it is, and a single device that fsck(8)
/// itself resolved from a tag to one member, together with the other members of its
/// filesystem (each filesystem is checked once, as a whole).
pub fn resolve(source: &OsStr) -> Result<Vec<PathBuf>, LocateError> {
    if let Some(w) = parse(&source.to_string_lossy()) {
        return members(&w?, &block_devices());
    }
    let list = split_list(source)?;
    let [one] = list.as_slice() else { return Ok(list) };
    let id = FileStorage::open(one, OpenMode::ReadOnly).ok().and_then(|s| signatures::identify(&s));
    match id {
        Some(id) => {
            let mut candidates = vec![one.clone()];
            candidates.extend(block_devices());
            members(&Wanted::Uuid(id.fs_uuid), &candidates)
        }
        None => Ok(list),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_read_as_fstab_writes_them() {
        let u = "3f2b9c4e-1d2a-4c5b-8e7f-0123456789ab";
        assert_eq!(parse(&format!("UUID={u}")).unwrap().unwrap(), Wanted::Uuid(u.parse().unwrap()));
        assert_eq!(parse(&format!("UUID=\"{u}\"")).unwrap().unwrap(), Wanted::Uuid(u.parse().unwrap()));
        assert_eq!(parse("LABEL=data").unwrap().unwrap(), Wanted::Label("data".into()));
        assert!(matches!(parse("UUID=nope"), Some(Err(LocateError::BadUuid(_)))));
        assert!(parse("/dev/sdb:/dev/sdc").is_none());
        assert_eq!(parse(&format!("/dev/disk/by-uuid/{u}")).unwrap().unwrap(), Wanted::Uuid(u.parse().unwrap()));
        assert_eq!(parse("/dev/disk/by-label/my\\x20data\\x2fx").unwrap().unwrap(), Wanted::Label("my data/x".into()));
    }
}
