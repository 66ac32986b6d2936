//! An ext4 filesystem on a loop device of this same kernel: the reference that a hammer2
//! mount's behaviour is compared with, by running the same commands on both.

use super::mount::sh;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Ext4 {
    _dir: tempfile::TempDir,
    mountpoint: PathBuf,
}

// No `Default`: making one formats and mounts a real filesystem, which `new` says.
#[allow(clippy::new_without_default)]
impl Ext4 {
    /// A fresh 64 MiB ext4 with 4 KiB blocks (so block-granular answers such as SEEK_HOLE
    /// compare with hammer2's) and its default ACL support, mounted through a loop device;
    /// fails the test, with the reason, where that cannot be done.
    pub fn new() -> Ext4 {
        let dir = tempfile::Builder::new().prefix("h2ext4").tempdir().expect("temp dir");
        let img = dir.path().join("ext4.img");
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).expect("mount point");
        // Other users (the tests' `nobody`) reach the mount point through the temp dir.
        sh(&format!("chmod 755 {}", dir.path().display()));
        sh(&format!("truncate -s 64M {img} && mkfs.ext4 -q -F -b 4096 {img}", img = img.display()));
        sh(&format!("mount -o loop {} {}", img.display(), mountpoint.display()));
        Ext4 { _dir: dir, mountpoint }
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        // The loop device goes with the unmount (mount -o loop sets it to clear itself).
        let _ = Command::new("umount").arg(&self.mountpoint).status();
    }
}
