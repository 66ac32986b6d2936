//! Damage done to a filesystem's image files while it is unmounted, aimed with the library:
//! the images are opened read-only (`hammer2::Fs::mount` with `read_only`, which writes
//! nothing and heals nothing), the blocks and the places of their copies are found with
//! `engine::all_blocks` / `engine::data_blocks`, and garbage is written straight into the
//! image file at a copy's offset, as a failing disk would return it.

use super::engine;
use super::rng::Rng;
use hammer2::inspect::TreeKind;
use hammer2::storage::DynStorage;
use hammer2::storage::file::{FileStorage, OpenMode};
use hammer2::{Fs, Options};
use hammer2_format::{BlockType, Blockref};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A read-only view of an unmounted filesystem's images, to find where blocks live.
pub struct Blocks {
    pub fs: Fs,
}

impl Blocks {
    /// Opens every image of the filesystem read-only (the images must not be mounted).
    pub fn open(images: &[PathBuf]) -> Blocks {
        let storages: Vec<DynStorage> = images
            .iter()
            .map(|p| {
                let s = FileStorage::open(p, OpenMode::ReadOnly)
                    .unwrap_or_else(|e| panic!("open {} read-only: {e}", p.display()));
                Arc::new(s) as DynStorage
            })
            .collect();
        let fs = Fs::mount(storages, Options { read_only: true, background_sync: false, ..Options::default() })
            .unwrap_or_else(|e| panic!("read-only library mount of {images:?}: {e}"));
        Blocks { fs }
    }

    /// Every block reference the committed trees reach, with the tree it is in.
    pub fn all(&self) -> Vec<(Blockref, TreeKind)> {
        engine::all_blocks(&self.fs)
    }

    /// The data blocks of inode `inum` (its `st_ino` through the mount), by file offset.
    pub fn data_of(&self, inum: u64) -> Vec<Blockref> {
        engine::data_blocks(&self.fs, inum)
    }

    /// The data blocks of every file (in any inode's tree).
    pub fn all_data(&self) -> Vec<Blockref> {
        self.all()
            .into_iter()
            .filter(|(b, t)| matches!(t, TreeKind::Inode(_)) && b.btype == BlockType::Data)
            .map(|(b, _)| b)
            .collect()
    }

    /// Every copy of every reachable block matches its check value (read straight from the
    /// images, healing nothing): what scrub promises, checked without scrub.
    pub fn assert_every_copy_good(&self) {
        engine::assert_every_copy_verifies(&self.fs);
    }

    /// The image file that holds filesystem device `index`.
    pub fn image_of(&self, index: u8) -> PathBuf {
        let devices = self.fs.devices();
        let m = devices.get(usize::from(index)).unwrap_or_else(|| panic!("no device {index}"));
        assert!(hammer2::testing::device_storage(&self.fs, index).is_some(), "device {index} was not opened");
        PathBuf::from(&m.name)
    }

    /// The filesystem device index of copy `slot` of `br`.
    pub fn device_of(br: &Blockref, slot: usize) -> u8 {
        br.ptr().expect("a block").copies.as_slice()[slot].device
    }

    /// Overwrites copy `slot` of block `br` in its image file with garbage of the block's size.
    pub fn smash(&self, br: &Blockref, slot: usize) {
        let p = br.ptr().expect("a block");
        let loc = p.copies.as_slice()[slot];
        assert!(loc.is_valid(), "copy {slot} of the block is not stored anywhere");
        overwrite(&self.image_of(loc.device), loc.offset, &garbage(p.size as usize, loc.offset));
    }

    /// True while copy `slot` of `br` still holds what `smash` wrote there (nothing healed it).
    pub fn still_smashed(&self, br: &Blockref, slot: usize) -> bool {
        let p = br.ptr().expect("a block");
        let loc = p.copies.as_slice()[slot];
        let f = std::fs::File::open(self.image_of(loc.device)).expect("open the image");
        let mut buf = vec![0u8; p.size as usize];
        f.read_exact_at(&mut buf, loc.offset).expect("read the image");
        buf == garbage(p.size as usize, loc.offset)
    }
}

/// `len` bytes that no check value vouches for (they differ from any block the tests write).
pub fn garbage(len: usize, seed: u64) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

/// Writes `bytes` at `offset` of an image file and makes it durable.
pub fn overwrite(image: &Path, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .unwrap_or_else(|e| panic!("open {} for writing: {e}", image.display()));
    f.write_all_at(bytes, offset).unwrap_or_else(|e| panic!("write {} at {offset}: {e}", image.display()));
    f.sync_all().expect("sync the image");
}

/// Overwrites a whole image file with zeros, headers included (`dd if=/dev/zero conv=notrunc`).
pub fn wipe(image: &Path) {
    let len = std::fs::metadata(image).expect("image size").len();
    let out = std::process::Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", image.display()))
        .args(["bs=1M", "conv=notrunc,fsync", "status=none"])
        .arg(format!("count={}", len.div_ceil(1 << 20)))
        .output()
        .expect("run dd");
    assert!(out.status.success(), "dd over {}: {}", image.display(), String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(image).expect("image size").len(), len, "dd must not change the image's size");
}
