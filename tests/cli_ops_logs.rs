//! Where the daemon's log lines go, with real background mounts: never nowhere.

use hammer2_test_support as common;

use common::image::{stderr, stdout};
use common::mount::{HAMMER2, Image, output_within};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const ESC: char = '\u{1b}';

/// A shell script that runs `body` in a mount namespace of its own where neither the
/// journal's socket nor /dev/log can be reached (they are covered with /dev/null when this
/// machine has them), as on a machine or container without journald or a syslog daemon.
fn without_journal_or_syslog(body: &str) -> Command {
    let script = format!(
        "set -e\nfor p in /dev/log /run/systemd/journal/socket; do if [ -e \"$p\" ]; then mount --bind /dev/null \"$p\"; fi; done\n{body}"
    );
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    c
}

/// Shell lines that wait for this mount's `serving ... on MP through` line in `file` (past
/// byte `from`: the file may hold other daemons' lines), unmount `mp`, and wait for the
/// daemon's final-commit line after it.
fn wait_serve_unmount(file: &Path, mp: &Path, from: u64) -> String {
    let (f, m) = (file.display(), mp.display());
    let new = format!("tail -c +{} {f} 2>/dev/null", from + 1);
    format!(
        "i=0; until {new} | grep -q 'on {m} through'; do i=$((i+1)); if [ $i -gt 100 ]; then umount {m}; echo 'no serving line' >&2; exit 1; fi; sleep 0.1; done\n\
         umount {m}\n\
         i=0; until {new} | grep -A1000 'on {m} through' | grep -q 'final commit done'; do i=$((i+1)); if [ $i -gt 600 ]; then echo 'no final commit line' >&2; exit 1; fi; sleep 0.1; done\n"
    )
}

#[test]
fn a_background_daemon_without_journal_or_syslog_logs_to_its_stderr() {
    let img = Image::new();
    let err = img.dir.path().join("stderr.txt");
    let mp = img.mountpoint();
    let body = format!(
        "{} mount {} {} 2>{}\n{}",
        HAMMER2.path().display(),
        img.devices[0].display(),
        mp.display(),
        err.display(),
        wait_serve_unmount(&err, &mp, 0)
    );
    let out = output_within(&mut without_journal_or_syslog(&body), Duration::from_secs(180));
    let log = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(out.status.success(), "{}{}\nthe daemon's stderr:\n{log}", stdout(&out), stderr(&out));
    assert!(log.contains(&format!("on {} through", mp.display())), "{log}");
    assert!(log.contains("unmounted; final commit done"), "{log}");
    assert!(!log.contains(ESC), "colour codes in a file: {log:?}");
}

#[test]
fn a_background_daemon_whose_stderr_is_a_pipe_logs_to_the_run_directory_and_says_so() {
    let img = Image::new();
    let mp = img.mountpoint();
    let fallback = Path::new("/run/hammer2/hammer2.log");
    let from = std::fs::metadata(fallback).map_or(0, |m| m.len());
    let body = format!(
        "{} mount {} {}\n{}",
        HAMMER2.path().display(),
        img.devices[0].display(),
        mp.display(),
        wait_serve_unmount(fallback, &mp, from)
    );
    // Collected to the end: a daemon that kept the pipe would hold this up until it exits.
    let mut cmd = without_journal_or_syslog(&body);
    cmd.stdin(Stdio::null());
    let out = output_within(&mut cmd, Duration::from_secs(180));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("the daemon logs to /run/hammer2/hammer2.log"), "{}", stderr(&out));
    let log = std::fs::read_to_string("/run/hammer2/hammer2.log").unwrap();
    assert!(log.contains(&format!("on {} through", mp.display())), "{log}");
}

#[test]
fn rust_log_sets_the_level_and_hammer2_log_wins_over_it() {
    let img = Image::new();
    let dev = [img.devices[0].as_path()];
    img.mount_devices(&dev, "", &[("RUST_LOG", "error")]).unmount();
    let quiet = img.log();
    assert!(!quiet.contains("serving"), "RUST_LOG=error still logged info lines:\n{quiet}");
    img.mount_devices(&dev, "", &[("RUST_LOG", "error"), ("HAMMER2_LOG", "info")]).unmount();
    let log = img.log();
    assert!(log.contains("serving") && log.contains("final commit done"), "{log}");
    assert!(!log.contains(ESC), "colour codes in a log file: {log:?}");
    img.mount_devices(&dev, "", &[("RUST_LOG", "hammer2=debug")]).unmount();
    assert!(img.log().contains("DEBUG"), "RUST_LOG=hammer2=debug logged no debug line");
}
