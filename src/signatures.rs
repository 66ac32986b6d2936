//! Recognizes what a device already holds, so mkfs does not overwrite a filesystem by
//! accident and mount can say what it found instead of "bad magic".

use crate::storage::Storage;
use hammer2_format::VolumeHeader;
use hammer2_format::layout::{HEADER_SLOTS, header_offset};

/// The name of a known signature on the device, if any.
pub fn detect(dev: &dyn Storage) -> Option<&'static str> {
    let size = dev.size();
    for slot in 0..HEADER_SLOTS {
        let off = header_offset(slot);
        let mut b = [0u8; 8];
        if off + 8 <= size && dev.read_at(&mut b, off).is_ok() && VolumeHeader::has_magic(&b) {
            return Some("hammer2");
        }
    }
    let mut head = vec![0u8; (72 * 1024).min(size as usize)];
    if dev.read_at(&mut head, 0).is_err() {
        return None;
    }
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    if at(0, b"LUKS\xba\xbe") {
        return Some("LUKS");
    }
    if at(0, b"XFSB") {
        return Some("xfs");
    }
    if at(1080, &[0x53, 0xef]) {
        return Some("ext2/3/4");
    }
    if at(65536 + 64, b"_BHRfS_M") {
        return Some("btrfs");
    }
    if at(4086, b"SWAPSPACE2") || at(4086, b"SWAP-SPACE") {
        return Some("swap");
    }
    if at(512, b"EFI PART") {
        return Some("GPT partition table");
    }
    if at(510, &[0x55, 0xaa]) {
        return Some("DOS partition table or boot sector");
    }
    let mut iso = [0u8; 5];
    if size > 32774 && dev.read_at(&mut iso, 32769).is_ok() && &iso == b"CD001" {
        return Some("iso9660");
    }
    None
}
