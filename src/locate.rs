//! Finding a filesystem's members by what identifies it, for sources such as `UUID=...` and
//! `LABEL=...` in /etc/fstab (a list of device paths joined by `:` names no device unit
//! systemd can wait for). The candidates are the block devices the kernel lists in
//! /sys/class/block and the image files the caller names; each is read, never claimed
//! (`signatures::identify`), and the members are the candidates whose newest header names
//! the filesystem. A label two filesystems share names neither: it is refused (L1).

use crate::signatures;
use crate::storage::claim::OpenMode;
use crate::storage::file::FileStorage;
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
