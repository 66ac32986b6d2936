//! Recognizes what a device already holds, so mkfs does not overwrite a filesystem by
//! accident (and with `-f` leaves nothing of it behind), and mount, info and fsck can say
//! what they found instead of "bad magic".
//!
//! Our own signature (hammer2 volume headers) is recognized here; every other one is left
//! to libblkid, which knows every filesystem, RAID member, LVM2 physical volume, swap area
//! and partition table that Linux does, including copies at the end of a device (the
//! backup GPT). We ask it through `wipefs` (util-linux, on every Debian system), which lists
//! each signature with its offset and length: exactly what has to be zeroed to remove it,
//! as `wipefs -a` would. The program rather than a binding: a binding needs the libblkid
//! headers and libclang at build time, and `wipefs` reads through its own descriptor, so it
//! also works while mkfs holds a block device with O_EXCL.

use crate::storage::Storage;
use hammer2_format::VolumeHeader;
use hammer2_format::layout::{HEADER_SLOTS, header_offset};
use std::path::Path;
use std::process::Command;

/// One signature libblkid found on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Where its magic string lies, and how long it is (what wiping zeroes).
    pub offset: u64,
    pub length: u64,
    /// libblkid's name: `btrfs`, `ext4`, `LVM2_member`, `gpt`, `PMBR`, `dos`, `swap`...
    pub kind: String,
    /// libblkid's class: `filesystem`, `raid`, `crypto`, `partition-table`, `other`.
    pub usage: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot run wipefs (util-linux) to look for other signatures: {0}")]
    Run(std::io::Error),
    #[error("wipefs could not probe it: {0}")]
    Failed(String),
    #[error("unexpected output from wipefs: {0}")]
    Output(String),
}

impl Signature {
    /// A short name: "btrfs", "ext4 (ext2/3/4)", "LVM2 physical volume", "GPT partition table".
    pub fn name(&self) -> String {
        match (self.kind.as_str(), self.usage.as_str()) {
            ("ext2" | "ext3" | "ext4" | "jbd", _) => format!("{} (ext2/3/4)", self.kind),
            ("LVM2_member" | "LVM1_member", _) => "LVM2 physical volume".into(),
            ("linux_raid_member", _) => "Linux RAID member".into(),
            ("crypto_LUKS", _) => "LUKS volume".into(),
            ("swap", _) => "swap area".into(),
            ("gpt", _) if self.offset == 512 => "GPT partition table".into(),
            ("gpt", _) => "GPT partition table (backup)".into(),
            ("PMBR", _) => "protective MBR of a GPT partition table".into(),
            ("dos", _) => "DOS partition table".into(),
            (k, "partition-table") => format!("{k} partition table"),
            (k, "raid") => format!("{k} RAID member"),
            (k, _) => k.to_string(),
        }
    }

    /// The name with an article and what it is: "a btrfs filesystem", "an LVM2 physical
    /// volume", "a GPT partition table".
    pub fn describe(&self) -> String {
        let name = self.name();
        let noun = if self.usage == "filesystem" { format!("{name} filesystem") } else { name };
        let article =
            if noun.starts_with(['a', 'e', 'i', 'o', 'u', 'x']) || noun.starts_with("LVM") { "an" } else { "a" };
        format!("{article} {noun} at offset {}", self.offset)
    }
}

/// True when a hammer2 volume header magic sits in any header slot.
pub fn is_hammer2(dev: &dyn Storage) -> bool {
    let size = dev.size();
    (0..HEADER_SLOTS).any(|slot| {
        let off = header_offset(slot);
        let mut b = [0u8; 8];
        off + 8 <= size && dev.read_at(&mut b, off).is_ok() && VolumeHeader::has_magic(&b)
    })
}

/// Every signature libblkid finds on the device or image file at `path`.
pub fn find(path: &Path) -> Result<Vec<Signature>, ProbeError> {
    let out = Command::new("wipefs")
        .args(["--json", "--output", "OFFSET,LENGTH,TYPE,USAGE"])
        .arg(path)
        .env("LC_ALL", "C")
        .output()
        .map_err(ProbeError::Run)?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(ProbeError::Failed(err.trim().trim_start_matches("wipefs: ").to_string()));
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    #[derive(serde::Deserialize)]
    struct Listing {
        signatures: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        offset: String,
        length: u64,
        #[serde(rename = "type")]
        kind: String,
        usage: Option<String>,
    }
    let listing: Listing = serde_json::from_slice(&out.stdout).map_err(|e| ProbeError::Output(e.to_string()))?;
    listing
        .signatures
        .into_iter()
        .map(|e| {
            let hex = e.offset.trim_start_matches("0x");
            let offset =
                u64::from_str_radix(hex, 16).map_err(|_| ProbeError::Output(format!("offset {:?}", e.offset)))?;
            Ok(Signature { offset, length: e.length, kind: e.kind, usage: e.usage.unwrap_or_default() })
        })
        .collect()
}

/// Zeroes the magic string of every signature in `found` (as `wipefs -a` does) and flushes.
pub fn wipe(dev: &dyn Storage, found: &[Signature]) -> std::io::Result<()> {
    for s in found {
        dev.write_at(&vec![0u8; s.length as usize], s.offset)?;
    }
    dev.flush()
}

/// What the device holds, for messages: "hammer2", or the first signature libblkid finds
/// when the storage names a path (an in-memory device has none to show).
pub fn detect(dev: &dyn Storage) -> Option<String> {
    if is_hammer2(dev) {
        return Some("hammer2".into());
    }
    let name = dev.name();
    let path = Path::new(&name);
    if !path.exists() {
        return None;
    }
    find(path).ok()?.first().map(Signature::name)
}

/// What identifies a hammer2 device to the rest of the system (blkid's tags, udev's
/// `ID_FS_*`): read from its newest valid volume header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The filesystem's uuid, shared by all its devices (blkid's `UUID`).
    pub fs_uuid: uuid::Uuid,
    /// This device's own uuid (blkid's `UUID_SUB`, as for a btrfs member).
    pub device_uuid: uuid::Uuid,
    pub label: String,
    /// The format version the header was written in.
    pub version: u32,
}

/// The device's identity, or None when no header slot holds a valid hammer2 volume header.
pub fn identify(dev: &dyn Storage) -> Option<Identity> {
    use hammer2_format::HEADER_SIZE;
    let mut newest: Option<(VolumeHeader, u32)> = None;
    for slot in 0..HEADER_SLOTS {
        let off = header_offset(slot);
        let mut buf = vec![0u8; HEADER_SIZE];
        if off + HEADER_SIZE as u64 > dev.size() || dev.read_at(&mut buf, off).is_err() {
            continue;
        }
        let Ok(h) = VolumeHeader::decode(&buf) else { continue };
        // The version field (FORMAT.md: 4 bytes at offset 8), as the header that decoded holds it.
        let version = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
        if usize::from(h.slot) == slot && newest.as_ref().is_none_or(|(n, _)| h.tid > n.tid) {
            newest = Some((h, version));
        }
    }
    newest.map(|(h, version)| Identity {
        fs_uuid: uuid::Uuid::from_bytes(h.fs_uuid),
        device_uuid: uuid::Uuid::from_bytes(h.device_uuid),
        label: h.label,
        version,
    })
}
