//! scripts/install.sh into a staging root (DESTDIR) and `--uninstall` from it: everything it
//! says it installs is there, and uninstall removes exactly that.

use hammer2_test_support as common;

use common::image::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn script(destdir: &Path, arg: &str) -> std::process::Output {
    let bindir = hammer2_bin().parent().unwrap().to_path_buf();
    Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install.sh"))
        .arg(arg)
        .env("DESTDIR", destdir)
        .env("PREFIX", "/usr/local")
        .env("BINDIR", bindir)
        .output()
        .expect("run install.sh")
}

/// Every file and directory under `root`, relative to it.
fn tree(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().to_path_buf());
            if p.is_dir() && !p.is_symlink() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn install_puts_binaries_pages_completions_and_the_udev_rule_and_uninstall_takes_exactly_them() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    // Something of the system's own, beside where the pages go: it must survive.
    let theirs = root.join("usr/local/share/man/man8/theirs.8");
    std::fs::create_dir_all(theirs.parent().unwrap()).unwrap();
    std::fs::write(&theirs, ".TH THEIRS 8\n").unwrap();

    ok(&script(root, "--no-build"));
    let files = tree(root);
    for want in [
        "usr/local/sbin/hammer2",
        "usr/local/sbin/mkfs.hammer2",
        "usr/local/sbin/fsck.hammer2",
        "sbin/mount.fuse.hammer2",
        "sbin/fsck.fuse.hammer2",
        "usr/local/share/man/man8/hammer2.8",
        "usr/local/share/man/man8/hammer2-mount.8",
        "usr/local/share/man/man8/hammer2-probe.8",
        "usr/local/share/man/man8/mkfs.hammer2.8",
        "usr/local/share/man/man8/fsck.hammer2.8",
        "usr/local/share/bash-completion/completions/hammer2",
        "usr/local/share/bash-completion/completions/mkfs.hammer2",
        "usr/local/share/zsh/site-functions/_fsck.hammer2",
        "usr/local/share/fish/vendor_completions.d/hammer2.fish",
        "etc/udev/rules.d/59-hammer2.rules",
        "usr/local/share/hammer2/installed",
    ] {
        assert!(files.contains(&PathBuf::from(want)), "{want} not installed: {files:?}");
    }
    let link = std::fs::read_link(root.join("sbin/mount.fuse.hammer2")).unwrap();
    assert_eq!(link, Path::new("/usr/local/sbin/hammer2"));
    let link = std::fs::read_link(root.join("sbin/fsck.fuse.hammer2")).unwrap();
    assert_eq!(link, Path::new("/usr/local/sbin/fsck.hammer2"));
    let rule = std::fs::read_to_string(root.join("etc/udev/rules.d/59-hammer2.rules")).unwrap();
    assert!(rule.contains("IMPORT{program}=\"/usr/local/sbin/hammer2 probe --udev $devnode\""), "{rule}");
    // The installed binary is the one built, and runs.
    ok(&Command::new(root.join("usr/local/sbin/hammer2")).arg("--version").output().unwrap());

    ok(&script(root, "--uninstall"));
    let left = tree(root);
    assert_eq!(
        left,
        [
            "usr",
            "usr/local",
            "usr/local/share",
            "usr/local/share/man",
            "usr/local/share/man/man8",
            "usr/local/share/man/man8/theirs.8"
        ]
        .map(PathBuf::from),
        "uninstall left or took something else"
    );
}

#[test]
fn install_refuses_unknown_arguments_with_its_usage() {
    let d = tempfile::tempdir().unwrap();
    let out = script(d.path(), "--bogus");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("usage:"), "{}", stderr(&out));
    assert!(tree(d.path()).is_empty(), "a refused install wrote {:?}", tree(d.path()));
}
