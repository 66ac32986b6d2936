//! Blocks and headers read and written on a filesystem's storages without the engine: the
//! newest header, a block's first valid copy, every copy rewritten, and ROOT's PFS record
//! rewritten with the check values above it resealed (what a writer producing a bad record
//! would leave: only the record's own rules can then refuse it).

use hammer2::storage::DynStorage;
use hammer2_format::layout::{HEADER_SIZE, HEADER_SLOTS, SROOT_PFS_TABLE, header_offset};
use hammer2_format::pfs::off as pfs_off;
use hammer2_format::{BlockData, Blockref, VolumeHeader, indirect};

/// The valid header with the highest tid on `dev`, and its slot.
pub fn newest(dev: &DynStorage) -> (usize, VolumeHeader) {
    newest_if_any(dev).expect("a valid header")
}

/// The valid header with the highest tid on `dev` and its slot, if it has one (a device
/// added by a commit a crash cut may have none).
pub fn newest_if_any(dev: &DynStorage) -> Option<(usize, VolumeHeader)> {
    (0..HEADER_SLOTS)
        .filter_map(|slot| {
            let mut buf = vec![0u8; HEADER_SIZE];
            dev.read_at(&mut buf, header_offset(slot)).ok()?;
            VolumeHeader::decode(&buf).ok().map(|h| (slot, h))
        })
        .max_by_key(|(_, h)| h.tid)
}

/// A block's bytes from its first valid copy (not verified).
pub fn read_block(devs: &[DynStorage], br: &Blockref) -> Vec<u8> {
    let p = br.ptr().expect("a block");
    let loc = p.copies.iter().find(|l| l.is_valid()).expect("a valid copy");
    let mut buf = vec![0u8; p.size as usize];
    devs[usize::from(loc.device)].read_at(&mut buf, loc.offset).expect("read");
    buf
}

/// Writes `bytes` over every valid copy of a block.
pub fn write_block(devs: &[DynStorage], br: &Blockref, bytes: &[u8]) {
    for loc in br.ptr().expect("a block").copies.iter().filter(|l| l.is_valid()) {
        devs[usize::from(loc.device)].write_at(bytes, loc.offset).expect("write");
    }
}

/// Replaces the bytes of ROOT's record (the first of a one-node PFS table) by `f(bytes)`,
/// and makes every check value above it match again, up to every device's newest header.
pub fn rewrite_root_record(devs: &[DynStorage], f: &dyn Fn(&mut Vec<u8>)) {
    let (slot, h) = newest(&devs[0]);
    let table = h.sroot[SROOT_PFS_TABLE];
    assert_eq!(table.level, 1, "a one-node PFS table");
    let mut entries = indirect::decode(&read_block(devs, &table), 1).expect("table node");
    let leaf = &mut entries[0];
    let mut bytes = read_block(devs, leaf);
    f(&mut bytes);
    write_block(devs, leaf, &bytes);
    if let BlockData::Block(p) = &mut leaf.data {
        p.check = h.check.compute(&bytes);
    }
    let node = indirect::encode(&entries, table.ptr().expect("node").size as usize);
    write_block(devs, &table, &node);
    let mut table = table;
    if let BlockData::Block(p) = &mut table.data {
        p.check = h.check.compute(&node);
    }
    for d in devs {
        let (s, mut h) = newest(d);
        assert_eq!(s, slot);
        h.sroot[SROOT_PFS_TABLE] = table;
        d.write_at(&h.encode(), header_offset(slot)).expect("header");
        d.flush().expect("flush");
    }
}

/// Sets a PFS record's own check code (its last four bytes) to match its bytes.
pub fn reseal_record(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[..pfs_off::CRC]);
    b[pfs_off::CRC..].copy_from_slice(&crc.to_le_bytes());
}
