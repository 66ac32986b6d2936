//! The engine writes what FORMAT.md pins: read back through `hammer2-format`'s decoder, the
//! headers of one commit agree on every shared field, and mkfs refuses sizes the format
//! cannot record.

use hammer2::format::{FormatOptions, format, validate};
use hammer2::storage::DynStorage;
use hammer2::storage::mem::MemStorage;
use hammer2::{Creds, Fs, Options};
use hammer2_format::VolumeHeader;
use hammer2_format::layout::{HEADER_SIZE, HEADER_SLOTS, UNIT, header_offset};
use std::sync::Arc;

const MIB: u64 = 1 << 20;

/// The valid header with the highest tid on `dev`.
fn newest_header(dev: &DynStorage) -> VolumeHeader {
    (0..HEADER_SLOTS)
        .filter_map(|slot| {
            let mut buf = vec![0u8; HEADER_SIZE];
            dev.read_at(&mut buf, header_offset(slot)).ok()?;
            VolumeHeader::decode(&buf).ok()
        })
        .max_by_key(|h| h.tid)
        .expect("a valid header")
}

#[test]
fn every_header_of_a_commit_carries_the_same_commit_time() {
    // FORMAT.md §3: one logical header per commit; only the device uuid, index and size
    // differ between devices. The commit time was once taken per device.
    let devs: Vec<DynStorage> =
        (0..3).map(|i| Arc::new(MemStorage::new(64 * MIB, &format!("mem{i}"))) as DynStorage).collect();
    format(devs.clone(), &FormatOptions { copies: Some(2), ..Default::default() }).expect("format");
    let fs = Fs::mount(devs.clone(), Options { background_sync: false, ..Options::default() }).expect("mount");
    let root = fs.root();
    for round in 0..3u8 {
        let f = fs.create(root, format!("f{round}").as_bytes(), 0o644, Creds::default()).expect("create");
        fs.write(f.ino, 0, &[round; 10_000]).expect("write");
        fs.sync().expect("sync");
        let headers: Vec<VolumeHeader> = devs.iter().map(newest_header).collect();
        let shared = |h: &VolumeHeader| {
            let mut h = h.clone();
            (h.device_uuid, h.device_index, h.device_size) = ([0; 16], 0, 0);
            h
        };
        for h in &headers[1..] {
            assert_eq!(h.tid, headers[0].tid, "every device holds the commit");
            assert_eq!(h.commit_time_ns, headers[0].commit_time_ns, "commit time, round {round}");
            assert_eq!(shared(h), shared(&headers[0]), "round {round}");
        }
    }
    fs.unmount().expect("unmount");
}

#[test]
fn mkfs_refuses_a_device_size_that_is_not_whole_units() {
    let opts = FormatOptions::default();
    assert!(validate(&[64 * MIB], &opts).is_ok());
    let err = validate(&[64 * MIB + 512], &opts).expect_err("a size that is not a multiple of 4096");
    assert!(err.to_string().contains("multiple of 4096"), "{err}");
    assert!(validate(&[64 * MIB, 64 * MIB + UNIT / 2], &FormatOptions { copies: Some(2), ..opts.clone() }).is_err());

    // format() records the real size rounded down: an odd-sized device is formatted, and
    // every header decodes (the decoder refuses sizes that are not whole units).
    let dev: DynStorage = Arc::new(MemStorage::new(64 * MIB + 1000, "odd"));
    let rep = format(vec![dev.clone()], &opts).expect("format");
    assert_eq!(rep.devices[0].size, 64 * MIB);
    assert_eq!(newest_header(&dev).device_size, 64 * MIB);
}
