//! `hammer2 probe [--udev] DEVICE`: what blkid would say of a hammer2 device if libblkid
//! knew the format (it has no way to load a probe from outside util-linux), in blkid's
//! export format, or as udev properties for the rule scripts/install.sh installs, so that
//! the standard 60-persistent-storage rules make /dev/disk/by-uuid and by-label links.

use hammer2::signatures::{self, Identity};
use hammer2::storage::claim::OpenMode;
use std::path::PathBuf;

/// blkid's status when the device holds nothing it knows (or cannot be read).
const NOT_FOUND: i32 = 2;

#[derive(clap::Args)]
#[command(
    after_help = "Exit status (as blkid's): 0 a hammer2 device, 2 no hammer2 filesystem on it or it cannot be read."
)]
pub struct Args {
    /// Print udev properties (ID_FS_TYPE, ID_FS_UUID, ID_FS_LABEL, ID_FS_UUID_SUB, ...) for a
    /// rule's IMPORT{program}, and nothing on stderr.
    #[arg(long)]
    pub udev: bool,
    /// An image file or block device; read only, never claimed (it may be mounted).
    #[arg(value_name = "DEVICE")]
    pub device: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let found = crate::devices::open_all(std::slice::from_ref(&a.device), OpenMode::ReadOnly)
        .map_err(|e| hammer2_cli::one_line(&e))
        .and_then(|s| {
            signatures::identify(&*s[0]).ok_or_else(|| format!("{} holds no hammer2 filesystem", a.device.display()))
        });
    let id = match found {
        Ok(id) => id,
        Err(e) => {
            if !a.udev {
                eprintln!("hammer2 probe: {e}");
            }
            return Ok(NOT_FOUND);
        }
    };
    print!("{}", if a.udev { udev(&id) } else { export(&a.device, &id) });
    Ok(0)
}

/// `blkid -o export`: DEVNAME first, values shell-escaped.
fn export(device: &std::path::Path, id: &Identity) -> String {
    let mut o = format!("DEVNAME={}\n", shell_escape(&device.display().to_string()));
    if !id.label.is_empty() {
        o += &format!("LABEL={}\n", shell_escape(&id.label));
    }
    o += &format!(
        "UUID={}\nUUID_SUB={}\nVERSION={}\nTYPE=hammer2\nUSAGE=filesystem\n",
        id.fs_uuid, id.device_uuid, id.version
    );
    o
}

/// What udev's blkid builtin sets for a filesystem it knows.
fn udev(id: &Identity) -> String {
    let mut o = String::from("ID_FS_TYPE=hammer2\nID_FS_USAGE=filesystem\n");
    o += &format!("ID_FS_VERSION={}\n", id.version);
    o += &format!("ID_FS_UUID={0}\nID_FS_UUID_ENC={0}\n", id.fs_uuid);
    o += &format!("ID_FS_UUID_SUB={0}\nID_FS_UUID_SUB_ENC={0}\n", id.device_uuid);
    if !id.label.is_empty() {
        o += &format!("ID_FS_LABEL={}\nID_FS_LABEL_ENC={}\n", udev_safe(&id.label), udev_encode(&id.label));
    }
    o
}

/// Characters udev keeps as they are in property values and link names.
fn udev_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c) || (!c.is_ascii() && !c.is_control())
}

/// `ID_FS_LABEL`: as blkid_safe_string, every other character replaced by `_`.
fn udev_safe(s: &str) -> String {
    s.chars().map(|c| if udev_plain(c) { c } else { '_' }).collect()
}

/// `ID_FS_LABEL_ENC`: as blkid_encode_string, every other byte as `\xNN` (what
/// 60-persistent-storage.rules names the by-label link after).
fn udev_encode(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if udev_plain(c) {
            o.push(c);
        } else {
            let mut b = [0u8; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                o += &format!("\\x{byte:02x}");
            }
        }
    }
    o
}

/// As blkid's export format: a backslash before every character a shell would take apart.
fn shell_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if !(c.is_ascii_alphanumeric() || "._-+,:/@%".contains(c) || !c.is_ascii()) {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_made_safe_for_udev_as_blkid_does() {
        assert_eq!(udev_safe("my data/1"), "my_data_1");
        assert_eq!(udev_encode("my data/1"), "my\\x20data\\x2f1");
        assert_eq!(udev_encode("été"), "été");
        assert_eq!(shell_escape("a b'c"), "a\\ b\\'c");
    }
}
