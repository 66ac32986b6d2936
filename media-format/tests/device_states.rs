//! Version 2's device states (FORMAT.md "Free placement; devices added and removed"): the
//! codes 5 removed and 6 joining sit at byte 65 of a device table entry, round-trip, and
//! make a version-1 header invalid; `FREE_PLACEMENT` is bit 4 of the incompatible features.

mod samples {
    include!("common/samples.rs");
}

use hammer2_format::layout::{FORMAT_VERSION_2, MAX_ZSTD_LEVEL, feature};
use hammer2_format::{DecodeError, DeviceState, VolumeHeader};

/// Byte offset of device `i`'s state in an encoded header (table at 768, 80-byte entries).
fn state_at(i: usize) -> usize {
    768 + 80 * i + 65
}

fn v2(mut h: VolumeHeader) -> VolumeHeader {
    h.version = FORMAT_VERSION_2;
    h.incompat_features = feature::FREE_PLACEMENT;
    h.default_zstd_level = 3.min(MAX_ZSTD_LEVEL);
    h
}

#[test]
fn removed_and_joining_are_codes_5_and_6_at_byte_65_of_an_entry() {
    let mut h = v2(samples::sample_header());
    h.devices[0].state = DeviceState::Removed;
    h.devices[1].state = DeviceState::Joining;
    let b = h.encode();
    assert_eq!((b[state_at(0)], b[state_at(1)]), (5, 6));
    assert_eq!(u64::from_le_bytes(b[104..112].try_into().unwrap()), 1 << 4, "FREE_PLACEMENT is bit 4");
    assert!(b[768 + 66..768 + 80].iter().all(|&x| x == 0), "byte 66.. stays reserved");
    let back = VolumeHeader::decode(&b).expect("decodes");
    assert_eq!(back, h);
    assert_eq!((back.devices[0].state.name(), back.devices[1].state.name()), ("removed", "joining"));
}

#[test]
fn a_version1_header_with_a_version2_state_is_invalid() {
    for state in [DeviceState::Removed, DeviceState::Joining] {
        let mut h = samples::sample_header();
        h.devices[0].state = state;
        let e = VolumeHeader::decode(&h.encode()).expect_err("version 1 knows states 1 to 4 only");
        assert!(
            matches!(e, DecodeError::BadField { field: "device state", value, .. } if value == 5 || value == 6),
            "{e}"
        );
    }
    // State 7 is no state in either version.
    let mut b = v2(samples::sample_header()).encode();
    b[state_at(1)] = 7;
    let crc = crc32c::crc32c(&b[..4092]);
    b[4092..].copy_from_slice(&crc.to_le_bytes());
    assert!(VolumeHeader::decode(&b).unwrap_err().to_string().contains("device state"));
}
