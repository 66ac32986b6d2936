//! `hammer2 probe` on real images, and the udev rule install.sh installs.

use hammer2_test_support as common;

use common::image::*;
use std::path::Path;

const MIB: u64 = 1 << 20;

/// A KEY=VALUE listing as a map.
fn tags(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {l:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// What `hammer2 info --json` says of the filesystem: its uuid and each device's.
fn uuids(devices: &[&Path]) -> (String, Vec<String>) {
    let mut args = vec!["info".to_string(), "--json".to_string()];
    args.extend(devices.iter().map(|d| d.display().to_string()));
    let v: serde_json::Value = serde_json::from_str(&ok(&hammer2(&args))).unwrap();
    let devs = v["devices"].as_array().unwrap().iter().map(|d| d["uuid"].as_str().unwrap().to_string()).collect();
    (v["uuid"].as_str().unwrap().to_string(), devs)
}

#[test]
fn probe_prints_blkids_export_format_for_each_member() {
    let d = tempfile::tempdir().unwrap();
    let a = sparse_file(d.path(), "a.img", 64 * MIB);
    let b = sparse_file(d.path(), "b.img", 64 * MIB);
    ok(&mkfs(["-L".as_ref(), "backups 2".as_ref(), a.as_os_str(), b.as_os_str()]));
    let (fs_uuid, dev_uuids) = uuids(&[&a, &b]);
    for (dev, dev_uuid) in [&a, &b].into_iter().zip(&dev_uuids) {
        let out = ok(&hammer2(["probe".as_ref(), dev.as_os_str()]));
        let t = tags(&out);
        assert_eq!(out.lines().next().unwrap(), format!("DEVNAME={}", dev.display()));
        assert_eq!(t["TYPE"], "hammer2");
        assert_eq!(t["UUID"], fs_uuid);
        assert_eq!(t["UUID_SUB"], *dev_uuid);
        assert_eq!(t["LABEL"], "backups\\ 2", "blkid escapes a space for the shell");
        assert_eq!(t["VERSION"], "2", "mkfs makes format version 2");
        assert_eq!(t["USAGE"], "filesystem");

        let udev = tags(&ok(&hammer2(["probe".as_ref(), "--udev".as_ref(), dev.as_os_str()])));
        assert_eq!(udev["ID_FS_TYPE"], "hammer2");
        assert_eq!(udev["ID_FS_USAGE"], "filesystem");
        assert_eq!(udev["ID_FS_UUID"], fs_uuid);
        assert_eq!(udev["ID_FS_UUID_ENC"], fs_uuid);
        assert_eq!(udev["ID_FS_UUID_SUB"], *dev_uuid);
        assert_eq!(udev["ID_FS_LABEL"], "backups_2");
        assert_eq!(udev["ID_FS_LABEL_ENC"], "backups\\x202");
        assert_eq!(udev["ID_FS_VERSION"], "2");
    }
    assert_ne!(dev_uuids[0], dev_uuids[1]);
}

#[test]
fn probe_exits_2_without_a_hammer2_filesystem_as_blkid_does() {
    let d = tempfile::tempdir().unwrap();
    let junk = d.path().join("junk.img");
    std::fs::write(&junk, common::damage::garbage(32 * MIB as usize, 7)).unwrap();
    let empty = sparse_file(d.path(), "empty.img", 32 * MIB);
    let missing = d.path().join("nope.img");
    for dev in [&junk, &empty, &missing] {
        let out = hammer2(["probe".as_ref(), dev.as_os_str()]);
        assert_eq!(out.status.code(), Some(2), "{}: {}", dev.display(), stderr(&out));
        assert!(out.stdout.is_empty());
        one_line_error(&out, "hammer2 probe: ", &dev.display().to_string());
        let out = hammer2(["probe".as_ref(), "--udev".as_ref(), dev.as_os_str()]);
        assert_eq!(out.status.code(), Some(2));
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "--udev is silent: {}", stderr(&out));
    }
    // A usage error is clap's (2 as well, as blkid's usage errors are not 0).
    assert!(!hammer2(["probe"]).status.success());
}

/// udev's rule syntax (udev(7)): comma-separated `KEY[{ATTR}]OP"VALUE"` items, every GOTO
/// naming a LABEL of the file. `udevadm verify` is not on every machine; this parse is.
#[test]
fn the_udev_rule_parses_and_runs_probe() {
    let rule = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/udev/59-hammer2.rules")).unwrap();
    let mut labels = Vec::new();
    let mut gotos = Vec::new();
    let mut imports = Vec::new();
    for line in rule.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut rest = line;
        while !rest.is_empty() {
            let (key, attr, op, value, after) =
                rule_item(rest).unwrap_or_else(|| panic!("cannot parse {rest:?} in {line:?}"));
            match key {
                "ACTION" | "SUBSYSTEM" | "KERNEL" | "ENV" => {
                    assert!(["==", "!="].contains(&op) || key == "ENV", "{line}")
                }
                "IMPORT" => {
                    assert_eq!(attr, Some("program"));
                    imports.push(value.to_string());
                }
                "GOTO" => gotos.push(value.to_string()),
                "LABEL" => labels.push(value.to_string()),
                other => panic!("unexpected key {other} in {line:?}"),
            }
            rest = after.trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r.trim_start();
            } else {
                assert!(rest.is_empty(), "items must be separated by commas: {line:?}");
            }
        }
    }
    for g in &gotos {
        assert!(labels.contains(g), "GOTO={g} has no LABEL");
    }
    assert_eq!(imports, ["@HAMMER2@ probe --udev $devnode"]);
}

/// One rule item: KEY, optional {ATTR}, operator, quoted value, and what follows.
fn rule_item(s: &str) -> Option<(&str, Option<&str>, &str, &str, &str)> {
    let key_end = s.find(|c: char| !(c.is_ascii_uppercase() || c == '_'))?;
    let (key, mut rest) = s.split_at(key_end);
    let mut attr = None;
    if let Some(r) = rest.strip_prefix('{') {
        let close = r.find('}')?;
        attr = Some(&r[..close]);
        rest = &r[close + 1..];
    }
    let op = ["==", "!=", "+=", "-=", ":=", "="].into_iter().find(|op| rest.starts_with(op))?;
    let rest = rest[op.len()..].strip_prefix('"')?;
    let close = rest.find('"')?;
    (!key.is_empty()).then_some((key, attr, op, &rest[..close], &rest[close + 1..]))
}
