//! Booting by UUID (issue 28): `mount.fuse.hammer2` takes `UUID=` and `LABEL=` as the source
//! and finds the members among the block devices and the image files of `-o devices=`; a
//! label two filesystems share is refused (L1 in docs/DESIGN.md); and the mount unit
//! systemd's own fstab generator makes of a `UUID=` line passes `systemd-analyze verify`.

use hammer2_test_support as common;

use common::image::{exit_code, mkfs, ok, stderr};
use common::mount::{Image, Mount, install_helper, is_mounted};
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;

/// Two 128 MiB images formatted by mkfs.hammer2 with two copies and `label`.
fn labelled(label: &str) -> Image {
    let img = Image::by_mkfs(2, 128 * MIB, 2);
    for d in &img.devices {
        std::fs::remove_file(d).unwrap();
    }
    let args: Vec<String> = ["--size", "134217728", "--copies", "2", "--label", label]
        .iter()
        .map(|s| s.to_string())
        .chain(img.devices.iter().map(|d| d.display().to_string()))
        .collect();
    ok(&mkfs(&args));
    img
}

fn uuid_of(dev: &Path) -> String {
    common::image::info_json([dev])["uuid"].as_str().unwrap().to_string()
}

fn joined(devs: &[PathBuf]) -> String {
    devs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":")
}

/// Runs the helper as mount(8) would for an fstab line with `source` and `devices=` (none
/// when empty).
fn helper(img: &Image, source: &str, devices: &str) -> std::process::Output {
    let h = img.dir.path().join("mount.fuse.hammer2");
    if !h.exists() {
        install_helper(img.dir.path());
    }
    let devices = if devices.is_empty() { String::new() } else { format!("devices={devices},") };
    let opts = format!("defaults,_netdev,x-systemd.requires=/dev/null,{devices}logfile={}", img.log_path().display());
    Command::new(h).arg(source).arg(img.mountpoint()).args(["-n", "-o", &opts]).output().unwrap()
}

#[test]
fn the_helper_mounts_by_uuid_and_by_label_with_image_files_named_in_devices() {
    let img = labelled("boot-data");
    let uuid = uuid_of(&img.devices[0]);
    // The devices in another order than mkfs's, and a stranger among them: found by header.
    let stranger = img.dir.path().join("other.img");
    std::fs::write(&stranger, vec![0u8; MIB as usize]).unwrap();
    let named = joined(&[stranger.clone(), img.devices[1].clone(), img.devices[0].clone()]);

    let out = helper(&img, &format!("UUID={uuid}"), &named);
    assert!(out.status.success(), "{}", stderr(&out));
    let m = Mount::attach(&img.mountpoint(), img.log_path());
    std::fs::write(m.join("by-uuid"), b"mounted by UUID=").unwrap();
    // Both members are in service: the mount is not degraded.
    let info = common::image::info_json([&m.path]);
    for d in info["devices"].as_array().unwrap() {
        assert_eq!(d["state"], "online", "{info}");
    }
    m.unmount();

    let out = helper(&img, "LABEL=boot-data", &named);
    assert!(out.status.success(), "{}", stderr(&out));
    let m = Mount::attach(&img.mountpoint(), img.log_path());
    assert_eq!(std::fs::read(m.join("by-uuid")).unwrap(), b"mounted by UUID=");
    m.unmount();

    // Quoted, as fstab may write it.
    let out = helper(&img, &format!("UUID=\"{uuid}\""), &named);
    assert!(out.status.success(), "{}", stderr(&out));
    Mount::attach(&img.mountpoint(), img.log_path()).unmount();
}

#[test]
fn a_label_two_filesystems_share_and_a_uuid_nothing_holds_are_refused_in_one_line() {
    let a = labelled("twin");
    let b = labelled("twin");
    let all = joined(&[a.devices.clone(), b.devices.clone()].concat());
    let out = helper(&a, "LABEL=twin", &all);
    assert_eq!(exit_code(&out), 1);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("mount.fuse.hammer2: LABEL=twin names 2 hammer2 filesystems ("), "{err}");
    for d in a.devices.iter().chain(&b.devices) {
        assert!(err.contains(&*d.display().to_string()), "{err}");
    }
    assert!(err.contains("name one by UUID="), "{err}");
    assert!(!is_mounted(&a.mountpoint()));
    // Either one by its UUID is fine.
    let out = helper(&a, &format!("UUID={}", uuid_of(&b.devices[0])), &all);
    assert!(out.status.success(), "{}", stderr(&out));
    Mount::attach(&a.mountpoint(), a.log_path()).unmount();

    let out = helper(&a, "UUID=00000000-0000-4000-8000-000000000000", &joined(&a.devices));
    assert_eq!(exit_code(&out), 1);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no device holds the hammer2 filesystem UUID=00000000-0000-4000-8000-000000000000"), "{err}");
    let out = helper(&a, "UUID=not-a-uuid", &joined(&a.devices));
    assert_eq!(exit_code(&out), 1);
    assert!(stderr(&out).contains("\"not-a-uuid\" is not a UUID"), "{}", stderr(&out));
    assert!(!is_mounted(&a.mountpoint()));
}

/// What systemd makes of the fstab lines README documents: systemd's own fstab generator
/// writes the units, `systemd-analyze verify` accepts them, the source reaches the helper as
/// the by-uuid link it reads back (`locate::parse`), and the x-systemd options and
/// `_netdev` give the dependencies on the other members and on the network.
#[test]
fn systemd_makes_a_verified_mount_unit_of_a_uuid_fstab_line() {
    let generator = Path::new("/usr/lib/systemd/system-generators/systemd-fstab-generator");
    assert!(generator.exists(), "systemd's fstab generator is needed (apt-get install systemd)");
    let dir = tempfile::tempdir().unwrap();
    let uuid = "3f2b9c4e-1d2a-4c5b-8e7f-0123456789ab";
    let fstab = dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "UUID={uuid} /srv/data fuse.hammer2 defaults,x-systemd.requires=/dev/disk/by-partuuid/0f0e0d0c-02 0 0\n\
             nbd://backup:10809/h2:/dev/disk/by-partuuid/0f0e0d0c-03 /srv/offsite fuse.hammer2 \
             defaults,_netdev,x-systemd.requires=/dev/disk/by-partuuid/0f0e0d0c-03 0 0\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("units");
    std::fs::create_dir(&out).unwrap();
    let generated = Command::new(generator).args([&out, &out, &out]).env("SYSTEMD_FSTAB", &fstab).output().unwrap();
    assert!(generated.status.success(), "{}", stderr(&generated));
    let unit = std::fs::read_to_string(out.join("srv-data.mount")).unwrap();
    assert!(unit.contains(&format!("What=/dev/disk/by-uuid/{uuid}\n")), "{unit}");
    assert_eq!(
        hammer2::locate::parse(&format!("/dev/disk/by-uuid/{uuid}")).unwrap().unwrap(),
        hammer2::locate::Wanted::Uuid(uuid.parse().unwrap())
    );
    assert!(unit.contains("Requires=dev-disk-by\\x2dpartuuid-0f0e0d0c\\x2d02.device"), "{unit}");
    assert!(unit.contains("Type=fuse.hammer2"), "{unit}");
    // Without nofail, local-fs.target requires it (boot waits for it).
    assert!(out.join("local-fs.target.requires/srv-data.mount").exists());
    let remote = std::fs::read_to_string(out.join("srv-offsite.mount")).unwrap();
    // An NBD member: a remote mount, after the network, waiting for no device unit named
    // after the whole list, only for the local member named in x-systemd.requires.
    assert!(remote.contains("Before=remote-fs.target"), "{remote}");
    let waits: Vec<&str> = remote.lines().filter(|l| l.starts_with("Requires=") || l.starts_with("After=")).collect();
    assert!(waits.iter().all(|l| l.ends_with("dev-disk-by\\x2dpartuuid-0f0e0d0c\\x2d03.device")), "{remote}");
    assert!(
        out.join("remote-fs.target.requires/srv-offsite.mount").exists()
            || out.join("remote-fs.target.wants/srv-offsite.mount").exists()
    );
    for u in ["srv-data.mount", "srv-offsite.mount"] {
        let v = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(out.join(u)).output().unwrap();
        assert!(v.status.success(), "{u}: {}", stderr(&v));
        assert!(stderr(&v).trim().is_empty(), "{u}: {}", stderr(&v));
    }
}

/// fsck(8) runs `fsck.fuse.hammer2 -a [-C FD] SOURCE` for an fstab line with a pass number:
/// the `a:b` list, `UUID=` (members on block devices: loop devices here), and the one
/// member fsck(8) resolves a tag to, each checked once as the whole filesystem.
#[test]
fn fsck_fuse_hammer2_checks_an_fstab_source_once_as_the_whole_filesystem() {
    let img = labelled("boot-fsck");
    let uuid = uuid_of(&img.devices[0]);
    let fsck = img.dir.path().join("fsck.fuse.hammer2");
    std::os::unix::fs::symlink(common::image::fsck_bin(), &fsck).unwrap();
    let run = |args: &[&str]| Command::new(&fsck).args(args).output().unwrap();
    let checked = |o: &std::process::Output, devs: &[PathBuf]| {
        let out = common::image::stdout(o);
        assert_eq!(exit_code(o), 0, "{out}{}", stderr(o));
        // One check of the whole filesystem: one report naming every member.
        let j: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let named: Vec<String> =
            j["devices"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap().to_string()).collect();
        for d in devs {
            assert!(named.contains(&d.display().to_string()), "{d:?} not checked: {j}");
        }
    };
    let list = joined(&img.devices);
    checked(&run(&["-n", "-C", "3", "--json", &list]), &img.devices);

    let loops: Vec<common::image::LoopDev> = img.devices.iter().map(|d| common::image::LoopDev::attach(d)).collect();
    let paths: Vec<PathBuf> = loops.iter().map(|l| l.path.clone()).collect();
    checked(&run(&["-n", "--json", &format!("UUID={uuid}")]), &paths);
    checked(&run(&["-n", "--json", "LABEL=boot-fsck"]), &paths);
    // What fsck(8) passes after resolving UUID= itself: one member; the other is found.
    checked(&run(&["-n", "--json", paths[1].to_str().unwrap()]), &paths);
    drop(loops);

    let o = run(&["-a", "UUID=00000000-0000-4000-8000-000000000000"]);
    assert_eq!(exit_code(&o), 8);
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).starts_with("fsck.fuse.hammer2: no device holds"), "{}", stderr(&o));
    let o = run(&["-a", &list, "extra"]);
    assert_eq!(exit_code(&o), 16, "{}", stderr(&o));
}

/// mount(8) resolves `UUID=` itself, through the udev link, to one member's device: the
/// helper given that one device finds the other member among the block devices (loop
/// devices here) and mounts the whole, not degraded; `-o degraded` keeps it to the one.
#[test]
fn the_helper_given_one_member_mounts_the_whole_filesystem_unless_degraded_is_asked() {
    let img = labelled("boot-one");
    let loops: Vec<common::image::LoopDev> = img.devices.iter().map(|d| common::image::LoopDev::attach(d)).collect();
    let out = helper(&img, loops[0].path.to_str().unwrap(), "");
    assert!(out.status.success(), "{}", stderr(&out));
    let m = Mount::attach(&img.mountpoint(), img.log_path());
    let info = common::image::info_json([&m.path]);
    for (d, l) in info["devices"].as_array().unwrap().iter().zip(&loops) {
        assert_eq!(d["state"], "online", "{info}");
        assert_eq!(d["path"], l.path.display().to_string(), "{info}");
    }
    m.unmount();
    let h = img.dir.path().join("mount.fuse.hammer2");
    let opts = format!("degraded,logfile={}", img.log_path().display());
    let out = Command::new(&h).arg(&loops[0].path).arg(img.mountpoint()).args(["-o", &opts]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let m = Mount::attach(&img.mountpoint(), img.log_path());
    let info = common::image::info_json([&m.path]);
    assert_eq!(info["devices"][1]["state"], "missing", "{info}");
    m.unmount();
}

/// The whole boot path of a `UUID=` fstab line, with nothing stood in for: the udev rule
/// install.sh installs (scripts/udev/59-hammer2.rules) gives the members the properties
/// from which udev's own 60-persistent-storage rules make /dev/disk/by-uuid links; mount(8)
/// resolves `UUID=` through that link to one member and runs mount.fuse.hammer2, which
/// completes the set; the filesystem is mounted whole. udev runs through `udevadm test`
/// (it processes the rules and makes the links without a udev daemon, which containers
/// lack); the rule, the links and the helper live in a private mount namespace (tmpfs over
/// /run/udev, /dev/disk, /dev/block and /usr/sbin, where mount(8) looks for helpers), so
/// the machine keeps its own (at most those directories are made, empty, where missing).
#[test]
fn mount8_mounts_a_uuid_source_through_the_udev_rule_and_the_helper() {
    let img = labelled("boot-udev");
    let loops: Vec<common::image::LoopDev> = img.devices.iter().map(|d| common::image::LoopDev::attach(d)).collect();
    let uuid = uuid_of(&loops[0].path);
    let rule = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/udev/59-hammer2.rules"))
        .unwrap()
        .replace("@HAMMER2@", &common::image::hammer2_bin().display().to_string());
    let rule_file = img.dir.path().join("59-hammer2.rules");
    std::fs::write(&rule_file, rule).unwrap();
    let helper_path = install_helper(img.dir.path());
    let info = img.dir.path().join("info.json");
    let links = img.dir.path().join("links");
    let mut script = String::from(
        "set -eu\n\
         mount --make-rprivate /\n\
         mkdir -p /run/udev /dev/disk /dev/block\n\
         for d in /run/udev /dev/disk /dev/block; do mount -t tmpfs hammer2-test \"$d\"; done\n\
         mkdir /run/udev/rules.d && cp \"$RULE\" /run/udev/rules.d/\n",
    );
    for l in &loops {
        let name = l.path.file_name().unwrap().to_str().unwrap();
        script += &format!("udevadm test /sys/class/block/{name} >/dev/null 2>&1\n");
    }
    script += "ls -l /dev/disk/by-uuid /dev/disk/by-label > \"$LINKS\"\n\
               helper=$(readlink -f \"$HELPER\")\n\
               mount -t tmpfs hammer2-test /usr/sbin && ln -s \"$helper\" /usr/sbin/mount.fuse.hammer2\n\
               mount -t fuse.hammer2 -o \"logfile=$LOG\" \"UUID=$UUID\" \"$MNT\"\n\
               \"$HAMMER2\" info --json \"$MNT\" > \"$INFO\"\n\
               printf 'mounted by mount(8) from UUID=' > \"$MNT/by-mount8\"\n\
               umount \"$MNT\"\n\
               # The daemon ends after the kernel's DESTROY; wait so the devices are free.\n\
               for i in $(seq 100); do grep -q \" $MNT \" /proc/self/mounts || break; sleep 0.1; done\n";
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("RULE", &rule_file)
        .env("HELPER", &helper_path)
        .env("LINKS", &links)
        .env("LOG", img.log_path())
        .env("UUID", &uuid)
        .env("MNT", img.mountpoint())
        .env("INFO", &info)
        .env("HAMMER2", common::image::hammer2_bin())
        .output()
        .expect("unshare(1) runs (util-linux)");
    let log = std::fs::read_to_string(img.log_path()).unwrap_or_default();
    assert!(out.status.success(), "{}\n{log}", stderr(&out));
    let links = std::fs::read_to_string(&links).unwrap();
    assert!(links.contains(&uuid) && links.contains("boot-udev"), "udev made no by-uuid/by-label link:\n{links}");
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(&info).unwrap()).unwrap();
    assert_eq!(info["uuid"], uuid.as_str(), "{info}");
    for (d, l) in info["devices"].as_array().unwrap().iter().zip(&loops) {
        assert_eq!(d["state"], "online", "mount(8) mounted it degraded: {info}");
        assert_eq!(d["path"], l.path.display().to_string(), "{info}");
    }
    // Wait for the daemon to let go of the devices, then read the file back through an
    // ordinary mount: the write went to the filesystem, whole.
    for l in &loops {
        common::mount::wait_released(&l.path);
    }
    let out = helper(&img, loops[0].path.to_str().unwrap(), "");
    assert!(out.status.success(), "{}", stderr(&out));
    let m = Mount::attach(&img.mountpoint(), img.log_path());
    assert_eq!(std::fs::read(m.path.join("by-mount8")).unwrap(), b"mounted by mount(8) from UUID=");
    m.unmount();
}
