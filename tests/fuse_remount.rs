//! Mount options through util-linux mount(8) and the mount.fuse.hammer2 helper: `mount -o
//! remount,ro|rw` on a live mount, the generic VFS flags, and suid/dev (which mount(8) never
//! passes to a helper). The helper must sit in /sbin, so each script runs in a private mount
//! namespace where an overlay adds it to /usr/sbin (nothing on the host changes).

use hammer2_test_support as common;

use common::ext4::Ext4;
use common::mount::*;
use std::fs;
use std::path::Path;
use std::process::Command;

/// Runs `script` (after the overlay that installs the helper) in a private mount namespace;
/// panics with its output and the daemon's log if it fails.
fn through_mount8(img: &Image, script: &str) {
    let sbin = img.dir.path().join("sbin");
    fs::create_dir(&sbin).unwrap();
    install_helper(&sbin);
    let script =
        format!("set -e\nmount -t overlay overlay -o lowerdir={}:/usr/sbin /usr/sbin\n{script}", sbin.display());
    let out =
        Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "mount(8) script failed: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        img.log()
    );
}

/// The per-mount and the superblock options of the mountinfo line saved in `file`.
fn mount_options(file: &Path) -> (Vec<String>, Vec<String>) {
    let line = fs::read_to_string(file).unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    let sep = f.iter().position(|x| *x == "-").unwrap_or_else(|| panic!("not a mountinfo line: {line}"));
    let split = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
    (split(f[5]), split(f[sep + 3]))
}

/// `mount -o remount,ro` commits everything and the mount refuses writes with EROFS;
/// `remount,rw` takes writes again; a remount ro while a file is open for writing fails
/// (EBUSY) and changes nothing. Killed after the last remount ro, the daemon leaves a clean
/// filesystem holding everything.
#[test]
fn remount_ro_and_rw_through_mount8_commit_refuse_and_resume() {
    let img = Image::new();
    let (dev, mnt, log, out) = (img.devices[0].display(), img.mountpoint(), img.log_path(), img.dir.path());
    let (mnt, out) = (mnt.display(), out.display());
    through_mount8(
        &img,
        &format!(
            "mount -t fuse.hammer2 -o logfile={log} {dev} {mnt}
             echo before > {mnt}/f
             mount -o remount,ro {mnt}
             grep ' {mnt} ' /proc/self/mountinfo > {out}/mountinfo.ro
             if echo x 2> {out}/err.ro > {mnt}/g; then echo 'a write went through'; exit 1; fi
             cat {mnt}/f > {out}/read.ro
             mount -o remount,rw {mnt}
             grep ' {mnt} ' /proc/self/mountinfo > {out}/mountinfo.rw
             echo after > {mnt}/g
             exec 3>> {mnt}/g
             if mount -o remount,ro {mnt} 2> {out}/err.busy; then echo 'remounted with a writer'; exit 1; fi
             echo still > {mnt}/h
             exec 3>&-
             mount -o remount,ro {mnt}
             for p in /proc/[0-9]*; do
                 if ls -l $p/fd 2>/dev/null | grep -q '{dev}'; then kill -9 ${{p#/proc/}}; fi
             done
             umount -l {mnt}",
            log = log.display()
        ),
    );
    let (vfs, _) = mount_options(&img.dir.path().join("mountinfo.ro"));
    assert!(vfs.contains(&"ro".to_string()), "{vfs:?}");
    let err = fs::read_to_string(img.dir.path().join("err.ro")).unwrap();
    assert!(err.contains("Read-only file system"), "{err}");
    assert_eq!(fs::read_to_string(img.dir.path().join("read.ro")).unwrap(), "before\n");
    let (vfs, _) = mount_options(&img.dir.path().join("mountinfo.rw"));
    assert!(vfs.contains(&"rw".to_string()), "{vfs:?}");
    let err = fs::read_to_string(img.dir.path().join("err.busy")).unwrap();
    assert!(err.contains("busy"), "{err}");
    assert!(img.log_shows("remounted read-only") && img.log_shows("remounted read-write"), "{}", img.log());

    // The daemon died without an unmount: what it had is on disk only because the remount
    // ro committed it (with clean headers).
    wait_released(&img.devices[0]);
    assert!(is_clean(&img.devices[0]), "the headers written by the remount ro are not clean");
    let m = img.mount();
    for (name, want) in [("f", "before\n"), ("g", "after\n"), ("h", "still\n")] {
        assert_eq!(fs::read_to_string(m.join(name)).unwrap(), want, "{name}");
    }
    m.unmount();
    img.assert_consistent();
}

/// suid and dev given to mount(8) as root reach the kernel (mount(8) passes only nosuid and
/// nodev to a helper); every generic flag is accepted and the kernel's show in mountinfo;
/// a remount changes them on the live mount.
#[test]
fn generic_flags_and_suid_dev_reach_the_kernel_through_mount8() {
    let img = Image::new();
    let (dev, mnt, log, out) = (img.devices[0].display(), img.mountpoint(), img.log_path(), img.dir.path());
    let (mnt, out, log) = (mnt.display(), out.display(), log.display());
    through_mount8(
        &img,
        &format!(
            "mount -t fuse.hammer2 -o suid,dev,nodiratime,lazytime,strictatime,nosymfollow,iversion,nomand,silent,logfile={log} {dev} {mnt}
             grep ' {mnt} ' /proc/self/mountinfo > {out}/mi.given
             mount -o remount,nosuid,noexec,relatime,diratime {mnt}
             grep ' {mnt} ' /proc/self/mountinfo > {out}/mi.remounted
             umount {mnt}
             until flock -n {dev} true; do sleep 0.05; done
             mount -t fuse.hammer2 -o nosuid,nodev,noexec,diratime,relatime,nolazytime,symfollow,noiversion,mand,loud,logfile={log} {dev} {mnt}
             grep ' {mnt} ' /proc/self/mountinfo > {out}/mi.negated
             umount {mnt}"
        ),
    );
    let has = |opts: &[String], o: &str| opts.iter().any(|x| x == o);
    let (vfs, sb) = mount_options(&img.dir.path().join("mi.given"));
    for absent in ["nosuid", "nodev", "relatime"] {
        assert!(!has(&vfs, absent), "{absent} in {vfs:?}");
    }
    for present in ["nodiratime", "nosymfollow"] {
        assert!(has(&vfs, present), "{present} not in {vfs:?}");
    }
    assert!(has(&sb, "lazytime"), "lazytime not in {sb:?}");
    let (vfs, _) = mount_options(&img.dir.path().join("mi.remounted"));
    for present in ["nosuid", "noexec"] {
        assert!(has(&vfs, present), "{present} not in {vfs:?} after the remount");
    }
    // As on ext4, the atime flags change only when the remount names an atime mode
    // (relatime here): the kernel keeps them otherwise.
    assert!(has(&vfs, "relatime") && !has(&vfs, "nodiratime"), "{vfs:?} after remount,relatime,diratime");
    let (vfs, sb) = mount_options(&img.dir.path().join("mi.negated"));
    for present in ["nosuid", "nodev", "noexec", "relatime"] {
        assert!(has(&vfs, present), "{present} not in {vfs:?}");
    }
    assert!(!has(&vfs, "nodiratime") && !has(&vfs, "nosymfollow") && !has(&sb, "lazytime"), "{vfs:?} {sb:?}");
    wait_released(&img.devices[0]);
}

/// The helper remounts only a hammer2 mount: called by hand on another filesystem (here an
/// ext4 mount, which a careless remount,ro would make read-only) it gives a one-line error
/// and exit status 1, and nothing changes.
#[test]
fn remount_of_something_not_hammer2_is_refused_and_changes_nothing() {
    let img = Image::new();
    let ext4 = Ext4::new();
    let helper = install_helper(img.dir.path());
    let out = Command::new(&helper).arg(&img.devices[0]).arg(ext4.path()).args(["-o", "remount,ro"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("mount.fuse.hammer2: ") && err.contains("is not a mounted hammer2 filesystem"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    fs::write(ext4.path().join("still-writable"), b"yes").unwrap();
}
