//! Remote copies through real NBD servers: `nbdkit` (its `file` plugin, on a Unix socket and
//! on 127.0.0.1, with its `error` filter for fault injection) and `qemu-nbd`. A filesystem
//! with copies=2 on one local image and one NBD export is made by mkfs, mounted through
//! FUSE, filled, mounted again and compared, and checked by fsck; the server is killed in
//! the middle of a large write and restarted within the grace period; bad device specs are
//! one line each and write nothing.

use hammer2_test_support as common;

use common::image::{exit_code, fsck, hammer2, info_json, mkfs, ok, one_line_error, sparse_file, stderr};
use common::mount::*;
use common::nbd::{Listen, NbdServer, free_port};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// A local image and a directory of exports served by a server, with a mount point.
struct Remote {
    img: Image,
    served: PathBuf,
}

/// `local.img` beside a served directory holding `remote.img`, 256 MiB each.
fn remote_pair() -> Remote {
    remote_pair_of(256 * MIB)
}

/// `local.img` beside a served directory holding `remote.img`, `size` bytes each (sparse).
fn remote_pair_of(size: u64) -> Remote {
    require_fuse();
    let dir = tempfile::Builder::new().prefix("h2nbd").tempdir().expect("temp dir");
    let served = dir.path().join("served");
    std::fs::create_dir(&served).unwrap();
    std::fs::create_dir(dir.path().join("mnt")).unwrap();
    let local = sparse_file(dir.path(), "local.img", size);
    sparse_file(&served, "remote.img", size);
    Remote { img: Image { dir, devices: vec![local] }, served }
}

impl Remote {
    fn local(&self) -> PathBuf {
        self.img.devices[0].clone()
    }
    fn socket(&self) -> Listen {
        Listen::Unix(self.img.dir.path().join("nbd.sock"))
    }
    /// mkfs --copies 2 on the local image and `uri`, and the image then names both.
    fn format(&mut self, uri: &str) {
        ok(&mkfs(["--copies", "2"].map(PathBuf::from).iter().chain([self.local(), PathBuf::from(uri)].iter())));
        self.img.devices.truncate(1);
        self.img.devices.push(PathBuf::from(uri));
    }
}

/// A tree users have: this crate's sources (copied with `cp -a`) and a 24 MiB random file.
fn fill(m: &Mount) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    sh(&format!(
        "cp -a {} {} && cp -a {} {}",
        src.join("src").display(),
        m.join("src").display(),
        src.join("docs").display(),
        m.join("docs").display()
    ));
    sh(&format!("dd if=/dev/urandom of={} bs=1M count=24 status=none", m.join("big.bin").display()));
}

fn same_tree(a: &Path, b: &Path) {
    sh(&format!("diff -r {} {}", a.display(), b.display()));
}

fn fsck_clean(devices: &[PathBuf]) {
    let o = fsck(std::iter::once(PathBuf::from("-n")).chain(devices.iter().cloned()));
    assert_eq!(exit_code(&o), 0, "fsck -n {devices:?}: {}{}", common::image::stdout(&o), stderr(&o));
}

fn states(mountpoint: &Path) -> Vec<String> {
    let info = info_json([mountpoint]);
    info["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["state"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The whole life of a remote copy over one transport: mkfs, mount, copy a tree, unmount,
/// mount again, compare, fsck clean on both devices.
fn round_trip(listen: Listen) {
    let mut r = remote_pair();
    let server = NbdServer::nbdkit(&r.served, listen, &[], &[]);
    r.format(&server.uri("remote.img"));
    let m = r.img.mount();
    fill(&m);
    assert_eq!(states(&m.path), ["online", "online"]);
    m.unmount();
    let m = r.img.mount();
    same_tree(&m.join("src"), &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    same_tree(&m.join("docs"), &Path::new(env!("CARGO_MANIFEST_DIR")).join("docs"));
    m.unmount();
    fsck_clean(&r.img.devices);
    // The remote copy alone holds the filesystem.
    let m = r.img.mount_devices(&[r.img.devices[1].as_path()], "ro,degraded", &[]);
    same_tree(&m.join("src"), &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    m.unmount();
    r.img.assert_no_panics();
}

#[test]
fn copies_on_a_local_image_and_an_nbdkit_export_over_a_unix_socket() {
    let r = remote_pair();
    round_trip(r.socket());
}

#[test]
fn copies_on_a_local_image_and_an_nbdkit_export_over_tcp() {
    round_trip(Listen::Tcp(free_port()));
}

/// The fstab helper takes a `:`-joined device list in which a URI keeps its own colons
/// (`/path/local.img:nbd://127.0.0.1:PORT/remote.img`).
#[test]
fn the_fstab_helper_mounts_a_device_list_holding_a_uri_with_a_port() {
    let mut r = remote_pair();
    let server = NbdServer::nbdkit(&r.served, Listen::Tcp(free_port()), &[], &[]);
    let uri = server.uri("remote.img");
    r.format(&uri);
    let helper = install_helper(r.img.dir.path());
    let source = format!("{}:{uri}", r.local().display());
    let opts = format!("rw,_netdev,logfile={}", r.img.log_path().display());
    let out =
        std::process::Command::new(&helper).arg(&source).arg(r.img.mountpoint()).args(["-o", &opts]).output().unwrap();
    assert!(out.status.success(), "{}{}", stderr(&out), r.img.log());
    let m = Mount::attach(&r.img.mountpoint(), r.img.log_path());
    std::fs::write(m.join("via-helper"), b"both copies").unwrap();
    assert_eq!(states(&m.path), ["online", "online"]);
    m.unmount();
    let m = r.img.mount_devices(&[Path::new(&uri)], "ro,degraded", &[]);
    assert_eq!(std::fs::read(m.join("via-helper")).unwrap(), b"both copies");
    m.unmount();
}

/// qemu-nbd, a second server implementation, serves the remote copy just as well.
#[test]
fn qemu_nbd_serves_a_remote_copy() {
    let mut r = remote_pair();
    let server = NbdServer::qemu_nbd(&r.served.join("remote.img"), "h2", r.socket());
    r.format(&server.uri("h2"));
    let m = r.img.mount();
    fill(&m);
    m.unmount();
    let m = r.img.mount();
    same_tree(&m.join("src"), &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    m.unmount();
    fsck_clean(&r.img.devices);
}

/// The server is killed in the middle of a large write and started again 2 s later, within
/// the grace period: the application sees no error, nothing is marked failed, and both
/// copies hold the file.
#[test]
fn a_server_restarted_within_the_grace_period_costs_the_application_nothing() {
    let mut r = remote_pair_of(2048 * MIB);
    let mut server = NbdServer::nbdkit(&r.served, r.socket(), &[], &[]);
    r.format(&server.uri("remote.img"));
    let m = r.img.mount_with("nbd_timeout=30");
    let target = m.join("large.bin");
    let writer = std::thread::spawn(move || {
        sh(&format!("dd if=/dev/urandom of={} bs=1M count=1200 conv=fsync status=none", target.display()))
    });
    std::thread::sleep(Duration::from_millis(700));
    assert!(!writer.is_finished(), "the write ended before the server was killed: make it larger");
    server.kill();
    std::thread::sleep(Duration::from_secs(2));
    server.restart();
    writer.join().expect("dd through the mount failed while the server was away");
    assert_eq!(states(&m.path), ["online", "online"], "{}", r.img.log());
    let sum = hash_file(&m.join("large.bin"));
    m.unmount();
    assert!(r.img.log().contains("connected again"), "the client did reconnect: {}", r.img.log());
    fsck_clean(&r.img.devices);
    let m = r.img.mount_devices(&[r.img.devices[1].as_path()], "ro,degraded", &[]);
    assert_eq!(hash_file(&m.join("large.bin")), sum, "the remote copy alone holds the file");
    m.unmount();
}

/// nbdkit's error filter fails every request to the remote export while its error file
/// exists: reads of the application are served from the local copy, scrub counts the
/// remote device's errors, and with the file gone a scrub finds nothing.
#[test]
fn errors_of_the_remote_export_are_read_around_and_counted() {
    let mut r = remote_pair();
    let switch = r.img.dir.path().join("errors-on");
    let switch_param = format!("error-file={}", switch.display());
    let server =
        NbdServer::nbdkit(&r.served, r.socket(), &["error"], &["error-pread-rate=1", "error-pread=EIO", &switch_param]);
    r.format(&server.uri("remote.img"));
    let m = r.img.mount_with("cache=16M");
    fill(&m);
    m.unmount();
    let m = r.img.mount_with("cache=16M");
    std::fs::write(&switch, b"").unwrap();
    same_tree(&m.join("src"), &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let big = hash_file(&m.join("big.bin"));
    let (code, rep) = common::image::hammer2_json("scrub", [&m.path]);
    assert_ne!(code, 0, "a scrub with every remote read failing reports errors: {rep}");
    let remote_errors = rep["devices"][1]["read_errors"].as_u64().unwrap_or(0);
    assert!(remote_errors > 0, "the remote device's read errors are counted: {rep}");
    assert_eq!(rep["devices"][0]["read_errors"].as_u64(), Some(0), "{rep}");
    // The mount's own counters (hammer2 info) count them too, against the remote device only.
    let info = info_json([&m.path]);
    let errors = |d: usize, k: &str| info["devices"][d][k].as_u64().unwrap_or(0);
    assert!(errors(1, "read_errors") >= remote_errors && errors(1, "repaired") > 0, "{info}");
    assert_eq!((errors(0, "read_errors"), errors(0, "repaired")), (0, 0), "{info}");
    std::fs::remove_file(&switch).unwrap();
    m.unmount();
    let m = r.img.mount();
    assert_eq!(hash_file(&m.join("big.bin")), big);
    let (code, rep) = common::image::hammer2_json("scrub", [&m.path]);
    assert_eq!(code, 0, "with the errors off, the remote copy is whole: {rep}");
    m.unmount();
}

/// Bad device specs: one line each, a nonzero exit, and nothing written to any device.
#[test]
fn bad_remote_devices_are_one_line_errors_and_write_nothing() {
    let mut r = remote_pair();
    let server = NbdServer::nbdkit(&r.served, r.socket(), &[], &[]);
    r.format(&server.uri("remote.img"));
    let local = r.local();
    let mnt = r.img.mountpoint();
    let before = (std::fs::read(&local).unwrap(), std::fs::read(r.served.join("remote.img")).unwrap());

    // No server at all.
    let nowhere = format!("nbd+unix:///remote.img?socket={}", r.img.dir.path().join("none.sock").display());
    let o = r.img.try_mount_devices(&[local.as_path(), Path::new(&nowhere)], &mnt, "", &[]);
    let line = one_line_error(&o, "hammer2 mount: ", "cannot connect");
    assert_eq!(line.matches("No such file").count(), 1, "the cause is said once: {line}");
    let o = fsck(["-n".as_ref(), local.as_os_str(), nowhere.as_ref()]);
    assert_ne!(exit_code(&o), 0);
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    // A wrong export name.
    let o = r.img.try_mount_devices(&[local.as_path(), Path::new(&server.uri("nope.img"))], &mnt, "", &[]);
    let line = one_line_error(&o, "hammer2 mount: ", "NBD_REP_ERR_UNKNOWN (no such export)");
    assert_eq!(line.matches("nope.img").count(), 2, "the URI and the export, once each: {line}");
    // TLS.
    let o = r.img.try_mount_devices(&[local.as_path(), Path::new("nbds://127.0.0.1/remote.img")], &mnt, "", &[]);
    one_line_error(&o, "", "TLS is not supported yet");
    let o = mkfs(["--copies", "2", local.to_str().unwrap(), "nbds://127.0.0.1/x"]);
    one_line_error(&o, "mkfs.hammer2: ", "TLS is not supported yet");
    // An export holding another filesystem.
    sparse_file(&r.served, "other.img", 256 * MIB);
    let other_local = sparse_file(r.img.dir.path(), "other-local.img", 256 * MIB);
    ok(&mkfs(["--copies", "2", other_local.to_str().unwrap(), &server.uri("other.img")]));
    let other_before = std::fs::read(r.served.join("other.img")).unwrap();
    let o = r.img.try_mount_devices(&[local.as_path(), Path::new(&server.uri("other.img"))], &mnt, "", &[]);
    one_line_error(&o, "hammer2 mount: ", "belongs to a different hammer2 filesystem");
    // An export too small for the device it stands for, and one not a whole number of blocks.
    std::fs::copy(r.served.join("remote.img"), r.served.join("small.img")).unwrap();
    std::fs::File::options().write(true).open(r.served.join("small.img")).unwrap().set_len(128 * MIB).unwrap();
    let o = r.img.try_mount_devices(&[local.as_path(), Path::new(&server.uri("small.img"))], &mnt, "", &[]);
    one_line_error(&o, "hammer2 mount: ", "small.img");
    sparse_file(&r.served, "odd.img", 10_000);
    let o = r.img.try_mount_devices(&[local.as_path(), Path::new(&server.uri("odd.img"))], &mnt, "", &[]);
    one_line_error(&o, "", "not a multiple of 4096");
    // mkfs on an export too small for a filesystem.
    sparse_file(&r.served, "tiny.img", MIB);
    let o = mkfs([local.to_str().unwrap(), &server.uri("tiny.img"), "-f"]);
    assert_ne!(exit_code(&o), 0);
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));

    assert!(!is_mounted(&mnt));
    let after = (std::fs::read(&local).unwrap(), std::fs::read(r.served.join("remote.img")).unwrap());
    assert!(before == after, "a refused command wrote to a device");
    assert!(std::fs::read(r.served.join("other.img")).unwrap() == other_before, "the other filesystem was written");
    assert!(!hammer2(["info", local.to_str().unwrap(), &server.uri("remote.img")]).stdout.is_empty());
}

/// mkfs refuses an export that holds data it cannot identify unless -f is given.
#[test]
fn mkfs_keeps_unknown_data_on_a_remote_export_without_force() {
    let r = remote_pair();
    let server = NbdServer::nbdkit(&r.served, r.socket(), &[], &[]);
    common::image::poke(&r.served.join("remote.img"), 1024, b"some data");
    let uri = server.uri("remote.img");
    let o = mkfs(["--copies", "2", r.local().to_str().unwrap(), &uri]);
    one_line_error(&o, "mkfs.hammer2: ", "use -f");
    ok(&mkfs(["--copies", "2", "-f", r.local().to_str().unwrap(), &uri]));
}

/// A server that stays away past the grace period: the requests waiting for it fail, the
/// device is marked failed, and writes go on to the local copy with no error to the
/// application; the local copy alone then holds everything.
#[test]
fn a_server_away_past_the_grace_period_fails_its_device_and_writes_go_on() {
    let mut r = remote_pair();
    let mut server = NbdServer::nbdkit(&r.served, r.socket(), &[], &[]);
    r.format(&server.uri("remote.img"));
    let m = r.img.mount_with("nbd_timeout=2");
    let f = std::fs::File::create(m.join("before")).unwrap();
    std::io::Write::write_all(&mut &f, &pattern(3 * MIB as usize, 1)).unwrap();
    f.sync_all().unwrap();
    drop(f);
    server.kill();
    let started = std::time::Instant::now();
    let mut f = std::fs::File::create(m.join("after")).unwrap();
    std::io::Write::write_all(&mut f, &pattern(5 * MIB as usize, 2)).unwrap();
    f.sync_all().expect("fsync with the remote device gone: the local copy takes the commit");
    drop(f);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2), "the commit waited out the grace period: {waited:?}");
    assert!(waited < Duration::from_secs(30), "and not much longer: {waited:?}");
    // Failed, and then retried by the reconnect watcher (within its 100 ms tick): what info
    // calls reconnecting.
    assert_eq!(device_state(&m, 0), "online");
    until_state(&m, 1, &["failed", "reconnecting"], Duration::from_millis(1));
    until_state(&m, 1, &["reconnecting"], Duration::from_secs(5));
    assert!(r.img.log().contains("did not come back within 2 s"), "{}", r.img.log());
    std::fs::write(m.join("later"), b"written with the remote device failed").unwrap();
    m.unmount();
    let local = r.local();
    let m = r.img.mount_devices(&[local.as_path()], "ro,degraded", &[]);
    assert_eq!(std::fs::read(m.join("after")).unwrap(), pattern(5 * MIB as usize, 2));
    assert_eq!(std::fs::read(m.join("later")).unwrap(), b"written with the remote device failed");
    m.unmount();
}

fn device_state(m: &Mount, dev: usize) -> String {
    states(&m.path).get(dev).cloned().unwrap_or_else(|| panic!("no device {dev}"))
}

/// Polls `hammer2 info` until device `dev` is in one of `want`; returns how long it took and
/// the states seen on the way.
fn until_state(m: &Mount, dev: usize, want: &[&str], limit: Duration) -> (Duration, Vec<String>) {
    let start = std::time::Instant::now();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let s = device_state(m, dev);
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if want.contains(&s.as_str()) {
            return (start.elapsed(), seen);
        }
        assert!(start.elapsed() < limit, "device {dev} not {want:?} after {limit:?}; states seen: {seen:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `(copied_blocks, copied_bytes)` of the last "automatic resync done" line of the log.
fn autoresync_copied(img: &Image) -> (u64, u64) {
    assert!(img.log_shows("automatic resync done"), "no automatic resync: {}", img.log());
    let log = img.log();
    let line = log.lines().rev().find(|l| l.contains("automatic resync done")).unwrap();
    let num = |key: &str| -> u64 {
        let rest = &line[line.find(key).unwrap_or_else(|| panic!("{line:?} lacks {key}")) + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    (num("copied_blocks="), num("copied_bytes="))
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Issue 23's disconnect test, whole: the server is killed in the middle of a large write
/// and stays away past the grace period, so the device fails (the application sees no
/// error, `info` shows it reconnecting); the server restarts on the same socket, the
/// reconnect watcher connects again (`NbdStorage::reopen`), the device comes back stale,
/// an automatic resync catches it up and it ends online; then the NBD device alone holds
/// exactly the data, and fsck finds both devices clean.
#[test]
fn a_server_away_past_the_grace_period_comes_back_by_itself_and_then_alone_holds_exactly_the_data() {
    let mut r = remote_pair_of(2048 * MIB);
    let mut server = NbdServer::nbdkit(&r.served, r.socket(), &[], &[]);
    r.format(&server.uri("remote.img"));
    let m = r.img.mount_with("nbd_timeout=2");
    std::fs::write(m.join("before"), pattern(3 * MIB as usize, 1)).unwrap();
    let target = m.join("large.bin");
    let t = target.clone();
    let writer = std::thread::spawn(move || {
        sh(&format!("dd if=/dev/urandom of={} bs=1M count=1200 conv=fsync status=none", t.display()))
    });
    std::thread::sleep(Duration::from_millis(700));
    assert!(!writer.is_finished(), "the write ended before the server was killed: make it larger");
    server.kill();
    let (took, seen) = until_state(&m, 1, &["failed", "reconnecting"], Duration::from_secs(60));
    let failed_at = file_len(&target);
    eprintln!("server killed -> device 1 {seen:?} after {:.2} s", took.as_secs_f64());
    until_state(&m, 1, &["reconnecting"], Duration::from_secs(30));
    let info = info_json([&m.path]);
    assert!(info["devices"][1]["link"]["last_error"].is_string(), "{info}");
    let text = ok(&hammer2([OsStr::new("info"), m.path.as_os_str()]));
    eprintln!("hammer2 info with the server away:\n{text}");
    assert!(text.contains("reconnecting"), "{text}");
    // More written while it is away, beside the large write.
    std::fs::write(m.join("while-away"), pattern(16 * MIB as usize, 7)).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let restarted_at = file_len(&target);
    server.restart();
    let (back, _) = until_state(&m, 1, &["stale", "resyncing", "online"], Duration::from_secs(120));
    let back_at = file_len(&target);
    let (took, mut seen) = until_state(&m, 1, &["online"], Duration::from_secs(300));
    let took = back + took;
    seen.insert(0, "reconnecting".into());
    seen.dedup();
    writer.join().unwrap();
    let (blocks, bytes) = autoresync_copied(&r.img);
    eprintln!(
        "server restarted -> device 1 reconnected in {:.2} s, online again in {:.2} s (states {seen:?}); the automatic resync copied {blocks} \
         blocks ({} MiB) for about {} MiB written while it was away ({} MiB of the large file between the failure and \
         its return, {} MiB of it before the restart, and 16 MiB beside it)",
        back.as_secs_f64(),
        took.as_secs_f64(),
        bytes / MIB,
        (back_at - failed_at) / MIB + 16,
        (back_at - failed_at) / MIB,
        (restarted_at - failed_at) / MIB
    );
    assert!(seen.iter().any(|s| s == "stale" || s == "resyncing") || blocks > 0, "{seen:?}");
    assert!(bytes >= 16 * MIB, "what was written while it was away is copied: {bytes}");
    let info = info_json([&m.path]);
    assert!(info["devices"][1]["link"]["reconnects"].as_u64() >= Some(1), "{info}");
    // The large write may still have run after the resync: it is on both copies anyway.
    sh("sync");
    assert_eq!(states(&m.path), ["online", "online"], "{}", r.img.log());
    let whole = snapshot(&m.path);
    m.unmount();
    fsck_clean(&r.img.devices);
    let alone = r.img.mount_devices(&[r.img.devices[1].as_path()], "ro,degraded", &[]);
    assert_eq!(snapshot(&alone.path), whole, "the NBD device alone holds exactly the data");
    assert_eq!(std::fs::read(alone.join("while-away")).unwrap(), pattern(16 * MIB as usize, 7));
    alone.unmount();
    r.img.assert_no_panics();
}

fn peak_rss_mib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb / 1024
}

/// Writes `mib` MiB to `m/name` and fsyncs it: no error may reach the application.
fn stream(m: &Mount, name: &str, mib: u64) {
    let mut f = std::fs::File::create(m.join(name)).unwrap();
    for i in 0..mib {
        std::io::Write::write_all(&mut f, &pattern(MIB as usize, i as u8 ^ 0x5a))
            .unwrap_or_else(|e| panic!("write of MiB {i}: {e}"));
    }
    f.sync_all().expect("fsync on the copies that answer");
}

/// nbdkit's error filter fails every request to the export while its error files exist:
/// the writes fail the device over (the application sees nothing), `info` counts the
/// errors, and once the files are gone the device comes back by itself and is resynced.
/// Then only reads fail: they are served from the local copy, and scrub counts and repairs
/// them.
#[test]
fn errors_switched_on_at_the_server_fail_the_device_over_and_it_comes_back_by_itself() {
    let mut r = remote_pair();
    let all = r.img.dir.path().join("errors-on");
    let reads = r.img.dir.path().join("read-errors-on");
    let (all_param, reads_param) =
        (format!("error-file={}", all.display()), format!("error-pread-file={}", reads.display()));
    // error-file switches every request; error-pread-file, after it, takes reads over.
    let server = NbdServer::nbdkit(&r.served, r.socket(), &["error"], &["error-rate=1", &all_param, &reads_param]);
    r.format(&server.uri("remote.img"));
    let m = r.img.mount_with("cache=16M");
    fill(&m);
    sh("sync");

    std::fs::write(&all, b"").unwrap();
    std::fs::write(&reads, b"").unwrap();
    stream(&m, "while-failing", 32);
    let (_, seen) = until_state(&m, 1, &["failed", "reconnecting"], Duration::from_secs(30));
    eprintln!("errors on: device 1 {seen:?}");
    let info = info_json([&m.path]);
    let errors = |info: &serde_json::Value, d: usize, k: &str| info["devices"][d][k].as_u64().unwrap_or(0);
    assert!(errors(&info, 1, "write_errors") > 0, "the failed writes are counted: {info}");
    assert_eq!((errors(&info, 0, "read_errors"), errors(&info, 0, "write_errors")), (0, 0), "{info}");
    stream(&m, "while-failed", 16);
    // The watcher's reopens meet the errors too (the header cannot be read): it stays out.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(device_state(&m, 1), "reconnecting", "{}", r.img.log());

    std::fs::remove_file(&all).unwrap();
    std::fs::remove_file(&reads).unwrap();
    let (took, seen) = until_state(&m, 1, &["online"], Duration::from_secs(180));
    let (blocks, bytes) = autoresync_copied(&r.img);
    eprintln!(
        "errors off -> device 1 online in {:.2} s ({seen:?}); the automatic resync copied {blocks} blocks ({} MiB) \
         for the 48 MiB written while it failed",
        took.as_secs_f64(),
        bytes / MIB
    );
    assert!(bytes >= 48 * MIB, "{bytes}");

    // Reads only: served from the local copy; scrub counts them against device 1 and
    // writes the good copy back (writes succeed).
    std::fs::write(&reads, b"").unwrap();
    same_tree(&m.join("src"), &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert_eq!(std::fs::read(m.join("while-failed")).unwrap().len() as u64, 16 * MIB);
    let (code, rep) = common::image::hammer2_json("scrub", [&m.path]);
    assert_ne!(code, 0, "a scrub with every remote read failing reports errors: {rep}");
    assert!(rep["devices"][1]["read_errors"].as_u64().unwrap_or(0) > 0, "{rep}");
    assert_eq!(rep["devices"][0]["read_errors"].as_u64(), Some(0), "{rep}");
    std::fs::remove_file(&reads).unwrap();
    let (code, rep) = common::image::hammer2_json("scrub", [&m.path]);
    assert_eq!(code, 0, "with the errors off, the remote copy is whole: {rep}");
    let whole = snapshot(&m.path);
    m.unmount();
    fsck_clean(&r.img.devices);
    let alone = r.img.mount_devices(&[r.img.devices[1].as_path()], "ro,degraded", &[]);
    assert_eq!(snapshot(&alone.path), whole, "the NBD device alone holds exactly the data");
    alone.unmount();
    r.img.assert_no_panics();
}

/// With the NBD server gone and its device failed, gigabytes more are written: nothing is
/// queued for the absent device, so the daemon's peak memory stays within its cache plus a
/// fixed bound.
#[test]
fn with_the_remote_device_failed_writing_gigabytes_keeps_the_daemon_memory_bounded() {
    const CACHE_MIB: u64 = 64;
    const MEMORY_BOUND_MIB: u64 = CACHE_MIB + 100;
    let mut r = remote_pair_of(3072 * MIB);
    let mut server = NbdServer::nbdkit(&r.served, r.socket(), &[], &[]);
    r.format(&server.uri("remote.img"));
    let m = r.img.mount_with(&format!("cache={CACHE_MIB}M,nbd_timeout=2"));
    stream(&m, "before", 8);
    server.kill();
    stream(&m, "failing", 1);
    until_state(&m, 1, &["failed", "reconnecting"], Duration::from_secs(30));
    let started = std::time::Instant::now();
    stream(&m, "gib-1", 1024);
    let mut written = 1024;
    if started.elapsed() < Duration::from_secs(60) {
        stream(&m, "gib-2", 1024);
        written += 1024;
    }
    sh("sync");
    let peak = peak_rss_mib(m.pid);
    eprintln!(
        "{written} MiB written with the NBD device failed in {:.1} s: daemon peak RSS {peak} MiB (bound \
         {MEMORY_BOUND_MIB} MiB)",
        started.elapsed().as_secs_f64()
    );
    assert!(peak <= MEMORY_BOUND_MIB, "daemon peak RSS {peak} MiB > {MEMORY_BOUND_MIB} MiB");
    assert_eq!(states(&m.path), ["online", "reconnecting"]);
    m.unmount();
    r.img.assert_no_panics();
}

/// A daemon restart with an NBD member works as with local members: both mount again
/// online; after the server was away past the grace period the local device is the master
/// and the NBD device is stale until a resync; with the server down at mount the mount is
/// refused, and with `-o degraded` it goes on without the NBD device, waits for it (info
/// says so) and takes it in by itself once the server answers, caught up by a resync.
#[test]
fn a_daemon_restart_with_an_nbd_member_selects_the_master_and_takes_in_a_server_that_was_down() {
    let mut r = remote_pair();
    let mut server = NbdServer::nbdkit(&r.served, r.socket(), &[], &[]);
    r.format(&server.uri("remote.img"));
    let m = r.img.mount_with("nbd_timeout=2");
    stream(&m, "first", 8);
    m.unmount();
    let m = r.img.mount_with("nbd_timeout=2");
    assert_eq!(states(&m.path), ["online", "online"]);

    // Away past the grace period, then unmounted: the local device is newer.
    server.kill();
    stream(&m, "while-away", 8);
    until_state(&m, 1, &["reconnecting"], Duration::from_secs(5));
    m.unmount();
    server.restart();
    let m = r.img.mount_with("nbd_timeout=2");
    assert_eq!(states(&m.path), ["online", "stale"], "{}", r.img.log());
    let out = ok(&hammer2([OsStr::new("resync"), m.path.as_os_str()]));
    assert!(out.contains("in sync"), "{out}");
    assert_eq!(states(&m.path), ["online", "online"]);
    m.unmount();

    // The server is down at mount.
    server.kill();
    let o = r.img.try_mount(&r.img.mountpoint(), "nbd_timeout=2");
    let line = one_line_error(&o, "hammer2 mount: ", "cannot connect");
    eprintln!("refused: {line}");
    // A read-only mount goes on without it too, but takes no device back: it does not wait.
    let m = r.img.mount_with("ro,degraded,nbd_timeout=2");
    assert_eq!(states(&m.path), ["online", "missing"]);
    let text = ok(&hammer2([OsStr::new("info"), m.path.as_os_str()]));
    assert!(!text.contains("waiting for"), "{text}");
    m.unmount();
    let m = r.img.mount_with("degraded,nbd_timeout=2");
    assert_eq!(states(&m.path), ["online", "missing"]);
    stream(&m, "degraded", 16);
    std::thread::sleep(Duration::from_secs(2));
    let text = ok(&hammer2([OsStr::new("info"), m.path.as_os_str()]));
    eprintln!("hammer2 info of a degraded mount waiting for its NBD device:\n{text}");
    assert!(text.contains(&format!("waiting for {}", server.uri("remote.img"))), "{text}");
    server.restart();
    let (took, seen) = until_state(&m, 1, &["online"], Duration::from_secs(180));
    let (blocks, bytes) = autoresync_copied(&r.img);
    eprintln!(
        "server started -> the device missing at mount online in {:.2} s ({seen:?}); the automatic resync copied \
         {blocks} blocks ({} MiB) for the 16 MiB written without it",
        took.as_secs_f64(),
        bytes / MIB
    );
    assert!(bytes >= 16 * MIB, "{bytes}");
    let info = info_json([&m.path]);
    assert_eq!(info["devices"][1]["link"]["reconnects"], 1, "{info}");
    let text = ok(&hammer2([OsStr::new("info"), m.path.as_os_str()]));
    assert!(!text.contains("waiting for"), "{text}");
    let whole = snapshot(&m.path);
    m.unmount();
    fsck_clean(&r.img.devices);
    let both = r.img.mount_with("ro");
    assert_eq!(snapshot(&both.path), whole);
    both.unmount();
    let alone = r.img.mount_devices(&[r.img.devices[1].as_path()], "ro,degraded", &[]);
    assert_eq!(snapshot(&alone.path), whole, "the NBD device alone holds exactly the data");
    alone.unmount();
    r.img.assert_no_panics();
}

/// An NBD device left out of a degraded mount (not named at all, so nothing waits for it)
/// is handed in by `hammer2 device online MOUNTPOINT URI`, caught up by the automatic
/// resync, and then alone holds exactly the data.
#[test]
fn an_nbd_device_not_named_at_mount_joins_with_device_online() {
    let mut r = remote_pair();
    let mut server = NbdServer::nbdkit(&r.served, r.socket(), &[], &[]);
    let uri = server.uri("remote.img");
    r.format(&uri);
    let local = r.local();
    let m = r.img.mount_devices(&[local.as_path()], "degraded", &[]);
    stream(&m, "without-it", 16);
    assert_eq!(states(&m.path), ["online", "missing"]);
    let out = ok(&hammer2([OsStr::new("device"), OsStr::new("online"), m.path.as_os_str(), OsStr::new(&uri)]));
    assert!(out.contains("device 1") && out.contains("back in service"), "{out}");
    let (took, seen) = until_state(&m, 1, &["online"], Duration::from_secs(120));
    eprintln!("device online of an NBD device not named at mount -> online in {:.2} s ({seen:?})", took.as_secs_f64());
    let (_, bytes) = autoresync_copied(&r.img);
    assert!(bytes >= 16 * MIB, "{bytes}");
    let whole = snapshot(&m.path);
    m.unmount();
    fsck_clean(&r.img.devices);
    let alone = r.img.mount_devices(&[Path::new(&uri)], "ro,degraded", &[]);
    assert_eq!(snapshot(&alone.path), whole, "the NBD device alone holds exactly the data");
    alone.unmount();

    // Brought in by `device online`, it gets the mount's reconnect grace, not the default.
    let m = r.img.mount_devices(&[local.as_path()], "degraded,nbd_timeout=2", &[]);
    ok(&hammer2([OsStr::new("device"), OsStr::new("online"), m.path.as_os_str(), OsStr::new(&uri)]));
    until_state(&m, 1, &["online"], Duration::from_secs(120));
    server.kill();
    let f = std::fs::File::create(m.join("after-the-server")).unwrap();
    std::io::Write::write_all(&mut &f, &pattern(MIB as usize, 7)).unwrap();
    f.sync_all().expect("the local copy takes the commit");
    drop(f);
    assert!(r.img.log().contains("did not come back within 2 s"), "{}", r.img.log());
    m.unmount();
    r.img.assert_no_panics();
}

/// Bytes the file really holds on its filesystem (holes not counted).
fn allocated_bytes(p: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(p).expect("stat")) * 512
}

/// Blocks freed by a delete are discarded on the remote export (NBD_CMD_TRIM, which
/// nbdkit's file plugin turns into holes in the served file) once every header slot a mount
/// could fall back to is newer than the delete (C5); what is left stays intact on both
/// copies.
#[test]
fn freed_blocks_are_trimmed_on_the_remote_export_once_no_header_slot_needs_them() {
    let mut r = remote_pair();
    let server = NbdServer::nbdkit(&r.served, r.socket(), &[], &[]);
    r.format(&server.uri("remote.img"));
    let m = r.img.mount();
    fill(&m);
    sh(&format!("dd if=/dev/urandom of={} bs=1M count=64 conv=fsync status=none", m.join("doomed.bin").display()));
    let remote = r.served.join("remote.img");
    let before = allocated_bytes(&remote);
    std::fs::remove_file(m.join("doomed.bin")).unwrap();
    // The commit that frees it, then enough commits for the oldest header slot to pass it.
    for i in 0..6 {
        let f = std::fs::File::create(m.join(format!("tick{i}"))).unwrap();
        std::io::Write::write_all(&mut &f, b"a commit").unwrap();
        f.sync_all().unwrap();
    }
    let after = allocated_bytes(&remote);
    assert!(
        before.saturating_sub(after) >= 48 * MIB,
        "the served file still holds {} MiB of {} MiB after the 64 MiB file was deleted",
        after / MIB,
        before / MIB
    );
    m.unmount();
    fsck_clean(&r.img.devices);
    let m = r.img.mount_devices(&[r.img.devices[1].as_path()], "ro,degraded", &[]);
    same_tree(&m.join("src"), &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert_eq!(std::fs::read(m.join("tick5")).unwrap(), b"a commit");
    m.unmount();
    r.img.assert_no_panics();
}
