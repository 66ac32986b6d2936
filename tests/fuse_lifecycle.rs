//! How a mount ends and begins again: umount, signals, SIGKILL (a crash), internal errors,
//! and mounting through mount(8) with the mount.fuse.hammer2 helper.

use hammer2_test_support as common;

use common::faulty_fuse::FaultyDevice;
use common::mount::*;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::process::Command;

/// Files written and never fsync'd: only a commit at unmount can save them.
fn write_unsynced(m: &Mount) {
    fs::create_dir(m.join("d")).unwrap();
    for i in 0..50 {
        fs::write(m.join(format!("d/f{i}")), pattern(1000 * i, i as u8)).unwrap();
    }
    fs::write(m.join("big"), pattern(3 << 20, 1)).unwrap();
}

fn check_unsynced(m: &Mount) {
    for i in 0..50 {
        assert_eq!(fs::read(m.join(format!("d/f{i}"))).unwrap(), pattern(1000 * i, i as u8), "d/f{i}");
    }
    assert_eq!(fs::read(m.join("big")).unwrap(), pattern(3 << 20, 1));
}

#[test]
fn umount_commits_everything_and_leaves_a_clean_filesystem() {
    let img = Image::new();
    let m = img.mount_with("sync_interval=3600");
    write_unsynced(&m);
    m.unmount();
    assert!(is_clean(&img.devices[0]), "the last header is not marked clean");
    let m = img.mount();
    check_unsynced(&m);
    m.unmount_with(&["fusermount3", "-u"]);
    assert!(is_clean(&img.devices[0]));
}

#[test]
fn sigterm_unmounts_and_commits_everything() {
    let img = Image::new();
    let m = img.mount_with("sync_interval=3600");
    write_unsynced(&m);
    let path = m.path.clone();
    m.signal(libc::SIGTERM);
    assert!(!is_mounted(&path));
    assert!(is_clean(&img.devices[0]));
    let m = img.mount();
    check_unsynced(&m);
    m.unmount();
}

#[test]
fn sigint_unmounts_and_commits_everything() {
    let img = Image::new();
    let m = img.mount_with("sync_interval=3600");
    write_unsynced(&m);
    m.signal(libc::SIGINT);
    assert!(is_clean(&img.devices[0]));
    let m = img.mount();
    check_unsynced(&m);
    m.unmount();
}

#[test]
fn sigterm_on_a_busy_mount_detaches_and_commits_when_the_last_file_closes() {
    let img = Image::new();
    let mut m = img.mount_with("sync_interval=3600");
    let mut f = File::create(m.join("open")).unwrap();
    f.write_all(b"before the signal; ").unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(m.pid, libc::SIGTERM) }, 0);
    // Detached from the namespace, still serving the open file.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while is_mounted(&m.path) {
        assert!(std::time::Instant::now() < deadline, "the busy mount was not detached");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(pid_alive(m.pid), "the daemon quit while a file was open");
    f.write_all(b"after the signal").unwrap();
    f.sync_all().unwrap();
    drop(f);
    m.wait_exit();
    assert!(is_clean(&img.devices[0]));
    let m = img.mount();
    assert_eq!(fs::read(m.join("open")).unwrap(), b"before the signal; after the signal");
    m.unmount();
}

/// SIGKILL loses at most what was not committed, never what was fsync'd, and the filesystem
/// mounts again.
#[test]
fn sigkill_keeps_everything_fsynced_and_the_filesystem_mounts_again() {
    let img = Image::new();
    let m = img.mount_with("sync_interval=3600");
    fs::create_dir(m.join("tree")).unwrap();
    for i in 0..100 {
        fs::write(m.join(format!("tree/{i}")), format!("file {i}")).unwrap();
    }
    let mut f = File::create(m.join("synced")).unwrap();
    f.write_all(&pattern(2 << 20, 4)).unwrap();
    f.sync_all().unwrap();
    drop(f);
    // Written after the last fsync: may be lost, must not corrupt anything.
    fs::write(m.join("unsynced"), pattern(1 << 20, 5)).unwrap();
    fs::remove_file(m.join("tree/7")).unwrap();
    let path = m.path.clone();
    m.kill9();
    assert!(!is_mounted(&path));
    assert!(!is_clean(&img.devices[0]), "a killed daemon cannot have written a clean header");

    let m = img.mount();
    assert_eq!(fs::read(m.join("synced")).unwrap(), pattern(2 << 20, 4));
    for i in 0..100 {
        assert_eq!(fs::read_to_string(m.join(format!("tree/{i}"))).unwrap(), format!("file {i}"));
    }
    if let Ok(d) = fs::read(m.join("unsynced")) {
        assert!(d.is_empty() || d == pattern(1 << 20, 5), "the unsynced file is torn");
    }
    // The filesystem works normally after the crash.
    fs::write(m.join("after"), b"life goes on").unwrap();
    m.unmount();
    let m = img.mount();
    assert_eq!(fs::read(m.join("after")).unwrap(), b"life goes on");
    m.unmount();
}

/// A writer that fsyncs every few files is killed at an arbitrary point: every file it
/// fsync'd before the kill is intact afterwards.
#[test]
fn sigkill_during_a_write_stream_loses_nothing_that_was_fsynced() {
    let img = Image::new();
    let m = img.mount_with("sync_interval=1");
    let dir = m.join("stream");
    fs::create_dir(&dir).unwrap();
    let synced = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (dir, synced) = (dir.clone(), synced.clone());
        std::thread::spawn(move || {
            for i in 0.. {
                let r = (|| -> std::io::Result<()> {
                    let mut f = File::create(dir.join(format!("{i}")))?;
                    f.write_all(&pattern(40_000 + i * 13, i as u8))?;
                    if i % 5 == 4 {
                        f.sync_all()?;
                        synced.store(i + 1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(())
                })();
                if r.is_err() {
                    return;
                }
            }
        })
    };
    while synced.load(std::sync::atomic::Ordering::SeqCst) < 60 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    m.kill9();
    writer.join().unwrap();
    let n = synced.load(std::sync::atomic::Ordering::SeqCst);
    let m = img.mount();
    for i in 0..n {
        let got = fs::read(m.join(format!("stream/{i}"))).unwrap_or_else(|e| panic!("stream/{i} lost: {e}"));
        assert!(got == pattern(40_000 + i * 13, i as u8), "stream/{i} differs");
    }
    m.unmount();
}

/// A block whose only copy is corrupt: reading it is EIO, the error is logged, and the mount
/// keeps serving everything else.
#[test]
fn an_internal_error_is_eio_for_that_request_and_the_mount_keeps_serving() {
    let img = Image::with(1, 256 << 20, Some(1));
    let m = img.mount();
    let victim = pattern(256 << 10, 77);
    fs::write(m.join("victim"), &victim).unwrap();
    fs::write(m.join("fine"), b"unharmed").unwrap();
    m.unmount();
    let mut image = fs::read(&img.devices[0]).unwrap();
    let needle = &victim[65536..65536 + 64];
    let at = (0..image.len() - 64).step_by(4096).find(|&o| &image[o..o + 64] == needle).expect("data block on disk");
    image[at + 100] ^= 0x01;
    fs::write(&img.devices[0], &image).unwrap();

    let m = img.mount();
    let f = File::open(m.join("victim")).unwrap();
    let mut buf = vec![0u8; 65536];
    let e = f.read_exact_at(&mut buf, 65536).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    // The other blocks of the same file and every other file still read.
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, victim[..65536]);
    drop(f);
    assert_eq!(fs::read(m.join("fine")).unwrap(), b"unharmed");
    fs::write(m.join("new"), b"still writable").unwrap();
    assert_eq!(fs::read_dir(&m.path).unwrap().count(), 3);
    m.unmount();
    assert!(img.log().contains("read (inode"), "the error was not logged:\n{}", img.log());
}

#[test]
fn the_mount_shows_as_fuse_hammer2_with_the_devices_as_source() {
    let img = Image::with(2, 128 << 20, Some(2));
    let m = img.mount();
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    let canon = fs::canonicalize(&m.path).unwrap();
    let line = mounts.lines().find(|l| l.split(' ').nth(1) == canon.to_str()).expect("in /proc/self/mounts");
    let source = format!("{}:{}", img.devices[0].display(), img.devices[1].display());
    assert_eq!(line.split(' ').next(), Some(source.as_str()), "{line}");
    assert_eq!(mount_type(&m.path).as_deref(), Some("fuse.hammer2"), "{line}");
    assert!(line.contains("default_permissions"), "{line}");
    m.unmount();
}

/// mount(8) runs the helper as `mount.fuse.hammer2 SRC DIR -o OPTS`; devices are `:`-joined
/// and the options mount(8) and fstab add for themselves are ignored.
#[test]
fn the_helper_mounts_what_mount8_hands_it() {
    let img = Image::with(2, 128 << 20, Some(2));
    let helper = install_helper(img.dir.path());
    let source = format!("{}:{}", img.devices[0].display(), img.devices[1].display());
    let opts = format!("rw,noauto,_netdev,x-systemd.automount,nofail,logfile={}", img.log_path().display());
    let out = Command::new(&helper).arg(&source).arg(img.mountpoint()).args(["-n", "-o", &opts]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m = Mount::attach(&img.mountpoint(), img.log_path());
    assert_eq!(mount_type(&m.path).as_deref(), Some("fuse.hammer2"));
    fs::write(m.join("via-helper"), b"mounted by the helper").unwrap();
    m.unmount();
    let m = img.mount();
    assert_eq!(fs::read(m.join("via-helper")).unwrap(), b"mounted by the helper");
    m.unmount();
    // Its own errors are one line too.
    let out = Command::new(&helper).arg(&source).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("mount.fuse.hammer2: usage"));
}

/// The real thing: `mount -t fuse.hammer2` and an fstab line, through util-linux mount. The
/// helper must sit in /sbin, so this runs in a private mount namespace where an overlay adds
/// it to /usr/sbin (nothing on the host changes).
#[test]
fn mount_t_fuse_hammer2_and_fstab_lines_work_through_mount8() {
    let img = Image::new();
    let sbin = img.dir.path().join("sbin");
    fs::create_dir(&sbin).unwrap();
    install_helper(&sbin);
    let (dev, mnt, log) = (img.devices[0].display(), img.mountpoint(), img.log_path());
    let fstab = img.dir.path().join("fstab");
    fs::write(
        &fstab,
        format!(
            "{dev} {} fuse.hammer2 defaults,_netdev,noauto,cache=64M,logfile={} 0 0\n",
            mnt.display(),
            log.display()
        ),
    )
    .unwrap();
    let script = format!(
        "set -e
         mount -t overlay overlay -o lowerdir={sbin}:/usr/sbin /usr/sbin
         mount -t fuse.hammer2 -o logfile={log} {dev} {mnt}
         grep -q ' {mnt} fuse.hammer2 ' /proc/self/mounts
         echo typed > {mnt}/by-type
         umount {mnt}
         until flock -n {dev} true; do sleep 0.05; done
         mount -T {fstab} {mnt}
         echo tabbed > {mnt}/by-fstab
         umount {mnt}",
        sbin = sbin.display(),
        log = log.display(),
        mnt = mnt.display(),
        fstab = fstab.display(),
    );
    let out =
        Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "mount(8) script failed: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        img.log()
    );
    wait_released(&img.devices[0]);
    let m = img.mount();
    assert_eq!(fs::read(m.join("by-type")).unwrap(), b"typed\n");
    assert_eq!(fs::read(m.join("by-fstab")).unwrap(), b"tabbed\n");
    m.unmount();
}

/// `-f` serves in the foreground (the command is the daemon) with several FUSE threads, and
/// ^C ends it with a clean filesystem and exit status 0.
#[test]
fn foreground_mode_serves_from_several_threads_until_interrupted() {
    let img = Image::new();
    let mut child = Command::new(HAMMER2)
        .args(["mount", "-f"])
        .arg(&img.devices[0])
        .arg(img.mountpoint())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !is_mounted(&img.mountpoint()) {
        assert!(std::time::Instant::now() < deadline, "hammer2 mount -f never mounted");
        assert!(child.try_wait().unwrap().is_none(), "hammer2 mount -f exited");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let pid = child.id() as i32;
    // If anything below fails, end the mount so the test does not hang on the child.
    let _cleanup = Cleanup(img.mountpoint());
    assert_eq!(daemon_pid(&img.mountpoint()), Some(pid), "-f must not fork");
    // The workers start right after the mount appears.
    let workers = || {
        fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter(|t| {
                let comm = fs::read_to_string(t.as_ref().unwrap().path().join("comm")).unwrap_or_default();
                // /dev/fuse workers, and through the ring its queue threads and data workers.
                ["hammer2-fuse", "hammer2-ring", "h2-ringio"].iter().any(|w| comm.starts_with(w))
            })
            .count()
    };
    while workers() < 4 {
        assert!(std::time::Instant::now() < deadline, "{} FUSE worker threads", workers());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    fs::write(img.mountpoint().join("fg"), b"foreground").unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(!is_mounted(&img.mountpoint()));
    assert!(is_clean(&img.devices[0]));
    let m = img.mount();
    assert_eq!(fs::read(m.join("fg")).unwrap(), b"foreground");
    m.unmount();
}

struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// `umount` returns before the daemon's final commit is done. A filesystem mounted on the
/// same directory meanwhile must stay mounted when that daemon finishes (it must not
/// unmount the mount point by name on its way out), and keep its control socket, whose
/// name comes from the mount point too (the old daemon must not remove it on its way out).
#[test]
fn a_mount_made_while_the_previous_daemon_still_commits_stays_mounted() {
    // The first filesystem's device stalls its writes, so its daemon is certainly still in
    // its final commit when the second filesystem is mounted on the same directory.
    let first = Image::new();
    let served = first.dir.path().join("served");
    fs::create_dir(&served).unwrap();
    let device = FaultyDevice::serve(&first.devices[0], &served);
    let m = first.mount_devices(&[&device.path], "sync_interval=3600", &[]);
    fs::write(m.join("big"), pattern(8 << 20, 3)).unwrap();
    let mountpoint = m.path.clone();
    device.hold();
    let first_pid = m.unmount_no_wait();
    let second = Image::new();
    let out = second.try_mount(&mountpoint, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m2 = Mount::attach(&mountpoint, second.log_path());
    assert!(pid_alive(first_pid), "the first daemon waits for its stalled device");
    device.release();
    wait_pid_gone(first_pid, &first.log_path());
    assert!(is_mounted(&mountpoint), "the first daemon unmounted the second filesystem");
    let info = common::image::info_json([&mountpoint]);
    assert_eq!(info["uuid"], common::image::info_json([&second.devices[0]])["uuid"], "{info}");
    fs::write(m2.join("second"), b"still here").unwrap();
    m2.unmount();
    let m = first.mount_devices(&[&device.path], "", &[]);
    assert_eq!(fs::read(m.join("big")).unwrap(), pattern(8 << 20, 3));
    m.unmount();
    device.stop();
}

/// A final commit that cannot be written is never dropped silently: the daemon says so
/// (`final commit failed`) and exits 1, and the filesystem is left not cleanly unmounted,
/// holding what was last committed. (`umount` cannot report it: the kernel has detached
/// the mount by then; the foreground daemon's exit status is where a script sees it.)
#[test]
fn a_final_commit_that_fails_makes_the_daemon_exit_1_and_say_so() {
    let img = Image::new();
    let served = img.dir.path().join("faulty");
    fs::create_dir(&served).unwrap();
    let device = FaultyDevice::serve(&img.devices[0], &served);
    let mut child = Command::new(HAMMER2)
        .args(["mount", "-f", "-o", "sync_interval=3600"])
        .arg(&device.path)
        .arg(img.mountpoint())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _cleanup = Cleanup(img.mountpoint());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !is_mounted(&img.mountpoint()) {
        assert!(std::time::Instant::now() < deadline, "hammer2 mount -f never mounted");
        assert!(child.try_wait().unwrap().is_none(), "hammer2 mount -f exited");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut f = File::create(img.mountpoint().join("durable")).unwrap();
    f.write_all(b"fsynced").unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs::write(img.mountpoint().join("pending"), b"never committed").unwrap();
    device.fail();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}: {stderr}", out.status);
    assert!(stderr.contains("final commit failed"), "the daemon must say why it failed: {stderr}");
    assert!(!is_clean(&img.devices[0]), "a failed final commit must not leave the filesystem marked clean");
    device.recover();
    let m = img.mount_devices(&[&device.path], "", &[]);
    assert_eq!(fs::read(m.join("durable")).unwrap(), b"fsynced");
    m.unmount();
    device.stop();
}

/// A user without root mounts an image of their own: `hammer2 mount` goes through
/// fusermount3, the daemon's control socket is that user's (so `info` and `status` reach
/// it, and root's `status` lists it, but another user is refused), the user reads and
/// writes their files, and `fusermount3 -u` unmounts with the final commit done.
#[test]
fn a_user_without_root_mounts_manages_and_unmounts_an_image_of_their_own() {
    // fusermount3 wants the user in the password database: `nobody` is in every Debian's.
    let user: u32 = String::from_utf8(Command::new("id").args(["-u", "nobody"]).output().unwrap().stdout)
        .unwrap()
        .trim()
        .parse()
        .expect("a user nobody");
    let img = Image::new();
    // The root directory the user will write into is theirs (mkfs makes it root's).
    let m = img.mount();
    std::os::unix::fs::chown(&m.path, Some(user), Some(user)).unwrap();
    m.unmount();
    let dir = img.dir.path();
    fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let log = dir.join("user.log");
    for p in [img.devices[0].as_path(), &img.mountpoint(), dir] {
        std::os::unix::fs::chown(p, Some(user), Some(user)).unwrap();
    }
    let as_user = |uid: u32, args: &[&std::ffi::OsStr]| {
        Command::new("setpriv")
            .args(["--reuid", &uid.to_string(), "--regid", &uid.to_string(), "--clear-groups"])
            .args(args)
            .output()
            .expect("run setpriv (util-linux)")
    };
    let h2 = HAMMER2.path().as_os_str();
    let opts = format!("logfile={}", log.display());
    let out = as_user(
        user,
        &[h2, "mount".as_ref(), "-o".as_ref(), opts.as_ref(), img.devices[0].as_os_str(), img.mountpoint().as_os_str()],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        fs::read_to_string(&log).unwrap_or_default()
    );
    let _cleanup = Cleanup(img.mountpoint());
    let canon = fs::canonicalize(dir).unwrap().join("mnt");
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info.lines().find(|l| l.split(' ').nth(4) == canon.to_str()).expect("in mountinfo");
    assert!(line.contains(&format!("user_id={user},")), "{line}");

    let file = img.mountpoint().join("mine");
    let sh = |uid: u32, script: &str| as_user(uid, &["sh".as_ref(), "-c".as_ref(), script.as_ref()]);
    let out = sh(user, &format!("echo written by the user > {0} && cat {0}", file.display()));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "written by the user\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The user reaches their daemon; so does root, who is not let into the mount itself.
    let out = as_user(user, &[h2, "info".as_ref(), img.mountpoint().as_os_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = as_user(user, &[h2, "status".as_ref(), img.mountpoint().as_os_str()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ONLINE"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(HAMMER2).args(["status", "--json"]).arg(img.mountpoint()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Another user is refused: one line, and status's exit 8 (the daemon cannot be reached).
    let out = as_user(user + 1, &[h2, "status".as_ref(), img.mountpoint().as_os_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(err.lines().count() == 1 && err.contains("Permission denied"), "{err}");

    let out = as_user(user, &["fusermount3".as_ref(), "-u".as_ref(), img.mountpoint().as_os_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(eventually(|| !fs::read_to_string(&log).unwrap_or_default().is_empty() && !is_mounted(&img.mountpoint())));
    assert!(
        eventually(|| fs::read_to_string(&log).unwrap().contains("final commit done")),
        "{}",
        fs::read_to_string(&log).unwrap()
    );
    let m = img.mount();
    assert_eq!(fs::read(m.join("mine")).unwrap(), b"written by the user\n");
    m.unmount();
}
