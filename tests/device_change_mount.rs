//! `hammer2 device add` on real mounts of real image files, with a workload (cp of a tree,
//! a streaming dd) running on the mount while the device joins: the data is identical
//! afterwards, new writes have their copies on distinct devices (fsck checks placement and
//! is clean), `df` grows, and the filesystem remounts with the new device. A version-1
//! filesystem and bad devices are refused with one line and exit status 8.

use hammer2_test_support as common;

use common::image::{exit_code, fsck, hammer2, info_json, mkfs, ok, one_line_error, sparse_file, stderr};
use common::mount::*;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

/// `n` images of `size` bytes made by the real mkfs with `copies` and format `version`.
fn images(n: usize, size: u64, copies: u8, version: u32) -> Image {
    require_fuse();
    let dir = tempfile::Builder::new().prefix("h2dev").tempdir().expect("temp dir");
    let devices: Vec<PathBuf> = (0..n).map(|i| dir.path().join(format!("dev{i}.img"))).collect();
    let args: Vec<String> = vec![
        "--size".into(),
        size.to_string(),
        "--copies".into(),
        copies.to_string(),
        "--format-version".into(),
        version.to_string(),
    ];
    ok(&mkfs(args.iter().map(OsStr::new).chain(devices.iter().map(|d| d.as_os_str()))));
    fs::create_dir(dir.path().join("mnt")).unwrap();
    Image { dir, devices }
}

fn add(m: &Mount, devs: &[&Path]) -> std::process::Output {
    let mut args = vec![OsStr::new("device"), OsStr::new("add"), m.path.as_os_str()];
    args.extend(devs.iter().map(|d| d.as_os_str()));
    hammer2(args)
}

fn fsck_clean(devices: &[&Path]) -> String {
    for d in devices {
        wait_released(d);
    }
    let o = fsck(["-n", "-v"].iter().map(OsStr::new).chain(devices.iter().map(|d| d.as_os_str())));
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert_eq!(exit_code(&o), 0, "fsck -n: {out}");
    out
}

fn df_blocks(p: &Path) -> u64 {
    let o = sh(&format!("df -B1 --output=size {} | tail -1", p.display()));
    String::from_utf8_lossy(&o.stdout).trim().parse().expect("df size")
}

#[test]
fn a_device_added_during_a_workload_joins_and_the_data_stays_identical() {
    let img = images(1, 512 * MIB, 2, 2);
    let new = sparse_file(img.dir.path(), "new.img", 512 * MIB);
    let m = img.mount();
    // A source tree for cp, made outside the mount.
    let src = img.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    for i in 0..40 {
        fs::write(src.join(format!("f{i}")), pattern([100, 5000, 70_000, 300_000, 1_500_000][i % 5], i as u8)).unwrap();
    }
    let size_before = df_blocks(&m.path);
    // The workload: cp -a of the tree and a dd stream, while the device joins.
    let mp = m.path.clone();
    let src2 = src.clone();
    let workload = std::thread::spawn(move || {
        for round in 0..4 {
            let o = sh(&format!("cp -a {} {}/copy{round} && sync", src2.display(), mp.display()));
            assert!(o.status.success(), "cp: {}", String::from_utf8_lossy(&o.stderr));
        }
        let o = sh(&format!("dd if=/dev/urandom of={}/stream bs=1M count=48 conv=fsync status=none", mp.display()));
        assert!(o.status.success(), "dd: {}", String::from_utf8_lossy(&o.stderr));
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = ok(&add(&m, &[&new]));
    assert!(out.contains("added") && out.contains("now 2 devices"), "{out}");
    workload.join().expect("workload");
    let live = info_json([&m.path]);
    assert_eq!(live["devices"].as_array().map(|a| a.len()), Some(2), "{live}");
    assert_eq!(live["devices"][1]["state"], "online", "{live}");
    let size_after = df_blocks(&m.path);
    eprintln!("df size: {} MiB before the add, {} MiB after", size_before / MIB, size_after / MIB);
    assert!(size_after > size_before, "df grows: {size_before} -> {size_after}");
    // Writes after the add: their copies go to both devices.
    fs::write(m.join("after"), pattern(8 << 20, 7)).unwrap();
    sh("sync");
    for round in 0..4 {
        let o = sh(&format!("diff -r {} {}", src.display(), m.join(format!("copy{round}")).display()));
        assert!(o.status.success(), "copy{round} differs: {}", String::from_utf8_lossy(&o.stdout));
    }
    let want = snapshot(&m.path);
    // A second add of the same device is refused with one line.
    one_line_error(&add(&m, &[&new]), "hammer2 device add: ", "");
    assert_eq!(exit_code(&add(&m, &[&new])), 8);
    m.unmount();

    let both = [img.devices[0].as_path(), new.as_path()];
    let report = fsck_clean(&both);
    assert!(!report.contains("warning:"), "no copies share a device needlessly: {report}");
    let m = img.mount_devices(&both, "", &[]);
    assert_eq!(snapshot(&m.path), want, "remounted with the added device: the same data");
    m.unmount();
    // Device 1 now holds one copy of every block written since the add: alone with device 0
    // missing, the new file reads back whole from it.
    let alone = img.mount_devices(&[new.as_path()], "ro,degraded", &[]);
    assert_eq!(fs::read(alone.join("after")).unwrap(), pattern(8 << 20, 7));
    alone.unmount();
    img.assert_no_panics();
}

#[test]
fn version1_and_bad_devices_are_refused_with_one_line() {
    let v1 = images(1, 256 * MIB, 1, 1);
    let new = sparse_file(v1.dir.path(), "new.img", 256 * MIB);
    let m = v1.mount();
    let line = one_line_error(&add(&m, &[&new]), "hammer2 device add: ", "format version 1");
    assert!(line.ends_with("this filesystem is format version 1; 'hammer2 upgrade' converts it (see FORMAT-V2)"));
    assert_eq!(exit_code(&add(&m, &[&new])), 8);
    assert!(fs::read(&new).unwrap().iter().all(|&b| b == 0), "nothing written to the refused device");
    m.unmount();

    let v2 = images(1, 256 * MIB, 1, 2);
    let other = images(1, 256 * MIB, 1, 2);
    let small = sparse_file(v2.dir.path(), "small.img", 16 * MIB);
    let m = v2.mount();
    one_line_error(&add(&m, &[&other.devices[0]]), "hammer2 device add: ", "another hammer2 filesystem");
    one_line_error(&add(&m, &[&small]), "hammer2 device add: ", "too small");
    let usage = hammer2([OsStr::new("device"), OsStr::new("add"), m.path.as_os_str()]);
    assert_eq!(exit_code(&usage), 2, "no device given is a usage error");
    assert_eq!(info_json([&m.path])["devices"].as_array().map(|a| a.len()), Some(1));
    m.unmount();
    v2.assert_no_panics();
}
