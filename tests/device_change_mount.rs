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
    // The blocks written before the add keep their two copies in the two regions of device
    // 0 (no balance is needed for correctness): fsck is clean and warns about them only.
    let report = fsck_clean(&both);
    let warned: u64 = report
        .lines()
        .find_map(|l| l.split("warning: ").nth(1)?.split(' ').next()?.parse().ok())
        .expect("fsck warns about the blocks written before the add");
    assert!(warned > 0, "{report}");
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

fn remove(m: &Mount, dev: &Path) -> std::process::Output {
    hammer2([OsStr::new("device"), OsStr::new("remove"), m.path.as_os_str(), dev.as_os_str()])
}

/// Seconds a plain `dd` takes to copy `bytes` of `from` to a new file (fsync'd): the copy
/// rate a remove is measured against.
fn dd_seconds(from: &Path, dir: &Path, bytes: u64) -> f64 {
    let to = dir.join("dd-copy.img");
    let t = std::time::Instant::now();
    let o = sh(&format!(
        "dd if={} of={} bs=4M count={} conv=fsync status=none",
        from.display(),
        to.display(),
        bytes.div_ceil(4 * MIB)
    ));
    assert!(o.status.success(), "dd: {}", String::from_utf8_lossy(&o.stderr));
    let s = t.elapsed().as_secs_f64();
    fs::remove_file(&to).unwrap();
    s
}

#[test]
fn a_device_removed_during_a_workload_leaves_the_data_identical_and_a_killed_remove_runs_again() {
    const SIZE: u64 = 2000 * MIB;
    let img = images(3, SIZE, 2, 2);
    let (d0, d1, d2) = (img.devices[0].clone(), img.devices[1].clone(), img.devices[2].clone());
    let m = img.mount();
    // 1.5 GiB of data, two copies over three devices: about 1 GiB of copies on each.
    for i in 0..3 {
        let o = sh(&format!("dd if=/dev/urandom of={}/big{i} bs=4M count=128 status=none", m.path.display()));
        assert!(o.status.success(), "dd: {}", String::from_utf8_lossy(&o.stderr));
    }
    sh("sync");
    let held: u64 = info_json([&m.path])["devices"][2]["free_bytes"].as_u64().map_or(0, |f| SIZE - 8 * MIB - f);
    eprintln!("device 2 holds {} MiB of copies", held / MIB);
    assert!(held > 900 * MIB, "about 1 GiB on device 2: {held}");
    let dd = dd_seconds(&d2, img.dir.path(), held);
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();

    // The workload runs while device 2 is removed.
    let src = img.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    for i in 0..30 {
        fs::write(src.join(format!("f{i}")), pattern([100, 5000, 70_000, 300_000, 1_500_000][i % 5], i as u8)).unwrap();
    }
    let mp = m.path.clone();
    let src2 = src.clone();
    let workload = std::thread::spawn(move || {
        for round in 0..3 {
            let o = sh(&format!("cp -a {} {}/copy{round} && sync", src2.display(), mp.display()));
            assert!(o.status.success(), "cp: {}", String::from_utf8_lossy(&o.stderr));
        }
    });
    let size_before = df_blocks(&m.path);
    let t = std::time::Instant::now();
    let out = ok(&remove(&m, &d2));
    let took = t.elapsed().as_secs_f64();
    workload.join().expect("workload");
    eprintln!(
        "removing a device holding {} MiB of copies took {took:.1} s ({:.0} MiB/s); dd of the same bytes {dd:.1} s \
         ({:.0} MiB/s): {:.2}x the copy rate (load average before: {})",
        held / MIB,
        held as f64 / MIB as f64 / took,
        held as f64 / MIB as f64 / dd,
        dd / took,
        load.trim()
    );
    eprintln!("{out}");
    assert!(out.contains("removed"), "{out}");
    assert!(dd / took >= 0.25, "remove at {:.2}x the copy rate", dd / took);
    let live = info_json([&m.path]);
    assert_eq!(live["devices"][2]["state"], "removed", "{live}");
    assert!(df_blocks(&m.path) < size_before, "df shrinks");
    for round in 0..3 {
        let o = sh(&format!("diff -r {} {}", src.display(), m.join(format!("copy{round}")).display()));
        assert!(o.status.success(), "copy{round} differs: {}", String::from_utf8_lossy(&o.stdout));
    }
    let want = snapshot(&m.path);
    // Refused: running again, and a device that is not a member.
    one_line_error(&remove(&m, &d2), "hammer2 device remove: ", "already removed");
    m.unmount();
    let report = fsck_clean(&[&d0, &d1]);
    assert!(!report.contains("warning:"), "{report}");

    // A new device takes device 1's place: added, then device 1 removed; the daemon is
    // killed in the middle of the remove, the filesystem mounted again and the remove run
    // again: it finishes, nothing lost.
    let d3 = sparse_file(img.dir.path(), "dev3.img", SIZE);
    let m = img.mount_devices(&[&d0, &d1], "", &[]);
    ok(&add(&m, &[&d3]));
    let child = std::process::Command::new(common::image::hammer2_bin())
        .args([OsStr::new("device"), OsStr::new("remove"), m.path.as_os_str(), d1.as_os_str()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run hammer2 device remove");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    m.kill9();
    let mut child = child;
    let status = child.wait().unwrap();
    assert!(!status.success(), "the remove was cut short");
    for d in [&d0, &d1, &d3] {
        wait_released(d);
    }
    let m = img.mount_devices(&[&d0, &d1, &d3], "", &[]);
    assert_eq!(snapshot(&m.path), want, "after the kill: nothing lost");
    let out = ok(&remove(&m, &d1));
    assert!(out.contains("removed"), "{out}");
    assert_eq!(snapshot(&m.path), want);
    m.unmount();
    let report = fsck_clean(&[&d0, &d3]);
    assert!(!report.contains("warning:"), "{report}");
    let m = img.mount_devices(&[&d0, &d3], "", &[]);
    assert_eq!(snapshot(&m.path), want, "the two remaining devices hold everything");
    m.unmount();
    img.assert_no_panics();
}

/// `hammer2 device replace` of a dead device (taken out as a failure would) by a new one,
/// named by its index: the copies it held are rebuilt on the new device from the good
/// ones while files are copied in; the survivor and the new device then mount and check
/// clean on their own.
#[test]
fn a_dead_device_is_replaced_by_a_new_one_while_mounted() {
    let img = images(2, 512 * MIB, 2, 2);
    let (d0, d1) = (img.devices[0].clone(), img.devices[1].clone());
    let new = sparse_file(img.dir.path(), "new.img", 512 * MIB);
    let m = img.mount();
    let src = img.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    for i in 0..30 {
        fs::write(src.join(format!("f{i}")), pattern([100, 5000, 70_000, 300_000, 1_500_000][i % 5], i as u8)).unwrap();
    }
    ok(&sh(&format!("cp -a {} {}/before && sync", src.display(), m.path.display())));
    ok(&hammer2([OsStr::new("device"), OsStr::new("offline"), m.path.as_os_str(), d1.as_os_str()]));
    // Written while device 1 is dead: its copies of these are MISSING.
    ok(&sh(&format!("cp -a {} {}/dead && sync", src.display(), m.path.display())));
    let mp = m.path.clone();
    let src2 = src.clone();
    let workload = std::thread::spawn(move || {
        let o = sh(&format!("cp -a {} {}/during && sync", src2.display(), mp.display()));
        assert!(o.status.success(), "cp: {}", String::from_utf8_lossy(&o.stderr));
    });
    let out = ok(&hammer2([
        OsStr::new("device"),
        OsStr::new("replace"),
        m.path.as_os_str(),
        OsStr::new("1"),
        new.as_os_str(),
    ]));
    workload.join().unwrap();
    assert!(out.contains("replaced by device 2"), "{out}");
    for d in ["before", "dead", "during"] {
        let o = sh(&format!("diff -r {} {}", src.display(), m.join(d).display()));
        assert!(o.status.success(), "{d} differs: {}", String::from_utf8_lossy(&o.stdout));
    }
    let want = snapshot(&m.path);
    m.unmount();
    fsck_clean(&[&d0, &new]);
    let m = img.mount_devices(&[&d0, &new], "", &[]);
    assert_eq!(snapshot(&m.path), want);
    m.unmount();
    // The new device alone holds a copy of everything.
    let alone = img.mount_devices(&[new.as_path()], "ro,degraded", &[]);
    assert_eq!(snapshot(&alone.path), want);
    alone.unmount();
    img.assert_no_panics();
}

/// `hammer2 device rebalance` after an add: copies move onto the new device until it holds
/// about its share (measured from info's free bytes per device, all of one size); then
/// `device add --rebalance` does both for a fourth. The files read back the same, fsck is
/// clean (placement included), and the devices mount together.
#[test]
fn a_rebalance_gives_an_added_device_its_share() {
    let img = images(2, 256 * MIB, 2, 2);
    let third = sparse_file(img.dir.path(), "third.img", 256 * MIB);
    let fourth = sparse_file(img.dir.path(), "fourth.img", 256 * MIB);
    let m = img.mount_with("compression=none");
    for i in 0..24 {
        fs::write(m.join(format!("f{i}")), pattern([70_000, 300_000, 2_000_000][i % 3], i as u8)).unwrap();
    }
    let want = snapshot(&m.path);
    ok(&add(&m, &[&third]));
    let free = |j: &serde_json::Value| -> Vec<u64> {
        j["devices"].as_array().expect("devices").iter().map(|d| d["free_bytes"].as_u64().expect("free")).collect()
    };
    let empty = free(&info_json([&m.path]))[2];
    let out = ok(&hammer2([OsStr::new("device"), OsStr::new("rebalance"), m.path.as_os_str(), third.as_os_str()]));
    assert!(out.contains("rebalanced"), "{out}");
    eprintln!("{out}");
    let used: Vec<u64> = free(&info_json([&m.path])).iter().map(|f| empty - f).collect();
    let share = used.iter().sum::<u64>() / 3;
    assert!(used[2] * 10 >= share * 8, "the new device holds about its share: {used:?}");
    assert_eq!(snapshot(&m.path), want);
    let args =
        [OsStr::new("device"), OsStr::new("add"), OsStr::new("--rebalance"), m.path.as_os_str(), fourth.as_os_str()];
    let out = ok(&hammer2(args));
    assert!(out.contains("added") && out.contains("rebalanced"), "{out}");
    eprintln!("{out}");
    assert_eq!(snapshot(&m.path), want);
    drop(m);
    let all: Vec<&Path> = img.devices.iter().map(|d| d.as_path()).chain([third.as_path(), fourth.as_path()]).collect();
    fsck_clean(&all);
}
