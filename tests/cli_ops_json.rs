//! `--json` of every command, on success and on failure: one object with `schema_version`.

use hammer2_test_support as common;

use common::image::*;
use serde_json::Value;
use std::process::Output;

const MIB: u64 = 1 << 20;

fn document(o: &Output) -> Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("not one JSON object ({e}): {}{}", stdout(o), stderr(o)))
}

#[test]
fn every_json_report_carries_the_schema_version() {
    let d = tempfile::tempdir().unwrap();
    let a = sparse_file(d.path(), "a.img", 64 * MIB);
    let o = mkfs(["--json".as_ref(), a.as_os_str()]);
    ok(&o);
    let mk = document(&o);
    assert_eq!(mk["schema_version"], 2, "{mk}");
    for args in [vec!["info", "--json"], vec!["scrub", "--json"], vec!["resync", "--json"]] {
        let mut args: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_ref()).collect();
        args.push(a.as_os_str());
        let o = hammer2(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert_eq!(document(&o)["schema_version"], 2, "{args:?}");
    }
    let o = fsck(["-n".as_ref(), "--json".as_ref(), a.as_os_str()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let f = document(&o);
    assert_eq!(f["schema_version"], 2);
    assert_eq!(f["exit_status"], 0);
}

#[test]
fn json_on_failure_is_an_error_document_with_the_exit_status() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("missing.img");
    let m = missing.to_str().unwrap();
    let empty_dir = d.path().to_str().unwrap();
    for (o, status) in [
        (hammer2(["info", "--json", m]), 1),
        (hammer2(["scrub", "--json", m]), 8),
        (hammer2(["resync", "--json", m]), 8),
        (hammer2(["scrub", "--json", empty_dir]), 8),
        (mkfs(["--json", m]), 1),
    ] {
        assert_eq!(o.status.code(), Some(status), "{}", stderr(&o));
        let e = document(&o);
        assert_eq!(e["schema_version"], 2, "{e}");
        assert_eq!(e["exit_status"], status, "{e}");
        let msg = e["error"].as_str().unwrap_or_else(|| panic!("no error message: {e}"));
        // The same one line as on stderr.
        assert!(stderr(&o).trim_end().ends_with(msg), "{msg:?} vs {:?}", stderr(&o));
    }
}

/// Times in `--json` are RFC 3339 (UTC, `Z`), parseable as such, and the times of the
/// filesystem just made: its creation and its first commit, in that order, around now.
#[test]
fn json_times_are_rfc3339() {
    let d = tempfile::tempdir().unwrap();
    let a = sparse_file(d.path(), "a.img", 64 * MIB);
    let before = std::time::SystemTime::now() - std::time::Duration::from_secs(2);
    ok(&mkfs([a.as_os_str()]));
    let after = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
    let info = document(&hammer2(["info".as_ref(), "--json".as_ref(), a.as_os_str()]));
    let time = |field: &str| {
        let s = info[field].as_str().unwrap_or_else(|| panic!("{field} is not a string: {info}"));
        assert!(s.ends_with('Z') && s.as_bytes().get(10) == Some(&b'T'), "{field}: {s}");
        humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("{field}: {s}: {e}"))
    };
    let (created, committed) = (time("created"), time("commit_time"));
    assert!(before <= created && created <= committed && committed <= after, "{info}");
}

/// One naming style across commands: every per-device entry names its device by `index`
/// and `path`, and the same counter has the same name wherever it appears (info, status,
/// scrub, fsck).
#[test]
fn counters_and_devices_have_one_name_in_every_command() {
    let d = tempfile::tempdir().unwrap();
    let a = sparse_file(d.path(), "a.img", 64 * MIB);
    let b = sparse_file(d.path(), "b.img", 64 * MIB);
    ok(&mkfs(["--copies".as_ref(), "2".as_ref(), a.as_os_str(), b.as_os_str()]));
    let run = |args: &[&str]| {
        let mut v: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_ref()).collect();
        v.extend([a.as_os_str(), b.as_os_str()]);
        let o = hammer2(&v);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        document(&o)
    };
    let info = run(&["info", "--json"]);
    let status = run(&["status", "--json"]);
    let scrub = run(&["scrub", "--json"]);
    let o = fsck(["-n".as_ref(), "--json".as_ref(), a.as_os_str(), b.as_os_str()]);
    let fsck = document(&o);

    let counters = ["read_errors", "write_errors", "check_errors", "repaired"];
    for (what, doc) in [("info", &info), ("status", &status), ("scrub", &scrub), ("fsck", &fsck)] {
        let devices = doc["devices"].as_array().unwrap_or_else(|| panic!("{what}: no devices: {doc}"));
        assert_eq!(devices.len(), 2, "{what}: {doc}");
        for (i, dv) in devices.iter().enumerate() {
            assert_eq!(dv["index"], i, "{what}: {dv}");
            assert!(
                dv["path"].as_str().is_some_and(|p| p.ends_with(if i == 0 { "a.img" } else { "b.img" })),
                "{what}: {dv}"
            );
            // No other spelling of a counter or of the device's name.
            for old in ["device", "errors", "copies", "bytes", "read", "write", "check"] {
                assert!(dv.get(old).is_none(), "{what}: `{old}` in {dv}");
            }
        }
        if what != "fsck" {
            for dv in devices {
                let missing: Vec<_> = counters
                    .iter()
                    .filter(|c| dv.get(**c).is_none() && !(what == "scrub" && **c == "write_errors"))
                    .collect();
                assert!(missing.is_empty(), "{what}: {missing:?} missing in {dv}");
            }
        }
    }
    // What a scrub and fsck both count is spelled alike.
    for k in ["blocks", "bytes_allocated"] {
        assert!(scrub[k].is_u64(), "scrub: {k}: {scrub}");
        assert!(fsck["counts"][k].is_u64(), "fsck: {k}: {fsck}");
    }
    assert_eq!(scrub["blocks"], fsck["counts"]["blocks"], "{scrub} {fsck}");
    assert_eq!(scrub["bytes_allocated"], fsck["counts"]["bytes_allocated"], "{scrub} {fsck}");
    for dv in scrub["devices"].as_array().unwrap() {
        assert!(dv["copies_read"].is_u64() && dv["bytes_read"].is_u64(), "{dv}");
    }
}
