//! Man pages, completions and `--help`, made by the real binaries from their clap
//! definitions, checked with the real man(1) and bash.

use hammer2_test_support as common;

use common::image::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `bin ARGS...`, asserts success, and returns the files it printed.
fn generated(bin: &Path, args: &[&str], dir: &Path) -> Vec<PathBuf> {
    let out = Command::new(bin).args(args).arg(dir).output().expect("run the binary");
    let listed = ok(&out);
    let files: Vec<PathBuf> = listed.lines().map(PathBuf::from).collect();
    for f in &files {
        assert!(
            f.starts_with(dir) && f.is_file(),
            "{} was listed but not written under {}",
            f.display(),
            dir.display()
        );
    }
    files
}

fn names(files: &[PathBuf]) -> Vec<String> {
    let mut n: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    n.sort();
    n
}

/// `man -l` renders the page, with groff's warnings on, and says nothing on stderr.
fn render(page: &Path) -> String {
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(page)
        .env("MANWIDTH", "100")
        .output()
        .expect("man(1) must be installed (package man-db): scripts/test.sh installs it");
    let text = ok(&out);
    assert!(out.stderr.is_empty(), "{} renders with warnings:\n{}", page.display(), stderr(&out));
    text
}

#[test]
fn every_command_has_a_section_8_page_that_man_renders_without_warnings() {
    let d = tempfile::tempdir().unwrap();
    let mut pages = generated(&hammer2_bin(), &["generate", "man"], d.path());
    pages.extend(generated(&mkfs_bin(), &["--generate", "man"], d.path()));
    pages.extend(generated(&fsck_bin(), &["--generate", "man"], d.path()));
    assert_eq!(
        names(&pages),
        [
            "fsck.hammer2.8",
            "hammer2-clear.8",
            "hammer2-device.8",
            "hammer2-get.8",
            "hammer2-info.8",
            "hammer2-mount.8",
            "hammer2-pfs.8",
            "hammer2-probe.8",
            "hammer2-resync.8",
            "hammer2-rewrite.8",
            "hammer2-scrub.8",
            "hammer2-set.8",
            "hammer2-snapshot.8",
            "hammer2-status.8",
            "hammer2-upgrade.8",
            "hammer2.8",
            "mkfs.hammer2.8"
        ]
    );
    for p in &pages {
        assert_eq!(p.parent().unwrap(), d.path().join("man8"));
        let text = render(p);
        assert!(text.contains("NAME") && text.contains("SYNOPSIS"), "{}:\n{text}", p.display());
    }
    let page = |n: &str| render(&d.path().join("man8").join(n));
    let mount = page("hammer2-mount.8");
    assert!(mount.contains("MOUNT OPTIONS"), "{mount}");
    for opt in
        ["nouring", "cache=SIZE", "sync_interval=SECONDS", "master=DEVICE", "logfile=PATH", "threads=N", "nonempty"]
    {
        assert!(mount.contains(opt), "hammer2-mount(8) lacks {opt}:\n{mount}");
    }
    let top = page("hammer2.8");
    for sub in ["hammer2-mount(8)", "hammer2-info(8)", "hammer2-scrub(8)", "hammer2-resync(8)", "hammer2-probe(8)"] {
        assert!(top.contains(sub), "hammer2(8) does not name {sub}:\n{top}");
    }
    assert!(!top.contains("generate"), "the hidden generate subcommand is documented:\n{top}");
    let fsck = page("fsck.hammer2.8");
    assert!(fsck.contains("operational error") && fsck.contains("-y"), "{fsck}");
    assert!(page("mkfs.hammer2.8").contains("--block-size"));
    assert!(page("hammer2-scrub.8").contains("MOUNTPOINT"));
}

#[test]
fn completions_for_bash_zsh_and_fish_are_generated_and_bash_accepts_them() {
    let d = tempfile::tempdir().unwrap();
    let mut files = generated(&hammer2_bin(), &["generate", "completions"], d.path());
    files.extend(generated(&mkfs_bin(), &["--generate", "completions"], d.path()));
    files.extend(generated(&fsck_bin(), &["--generate", "completions"], d.path()));
    let rel: Vec<String> =
        files.iter().map(|f| f.strip_prefix(d.path()).unwrap().to_string_lossy().into_owned()).collect();
    for cmd in ["hammer2", "mkfs.hammer2", "fsck.hammer2"] {
        for want in [
            format!("bash-completion/completions/{cmd}"),
            format!("zsh/site-functions/_{cmd}"),
            format!("fish/vendor_completions.d/{cmd}.fish"),
        ] {
            assert!(rel.contains(&want), "{want} not generated: {rel:?}");
        }
        let bash = d.path().join("bash-completion/completions").join(cmd);
        let out = Command::new("bash").arg("-n").arg(&bash).output().expect("run bash");
        ok(&out);
        assert!(out.stderr.is_empty(), "bash -n {}: {}", bash.display(), stderr(&out));
        // Sourced, it registers a completion for the command.
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("source {} && complete -p {cmd}", bash.display()))
            .output()
            .expect("run bash");
        assert!(ok(&out).contains(cmd), "{}", stdout(&out));
    }
    let h2 = std::fs::read_to_string(d.path().join("bash-completion/completions/hammer2")).unwrap();
    for sub in ["mount", "info", "scrub", "resync", "probe"] {
        assert!(h2.contains(sub), "bash completion lacks {sub}");
    }
}

#[test]
fn help_lists_every_mount_option_and_the_mount_point_forms() {
    let mount = ok(&hammer2(["mount", "--help"]));
    for opt in [
        "nouring",
        "cache=SIZE",
        "sync_interval=SECONDS",
        "degraded",
        "master=DEVICE",
        "debug",
        "threads=N",
        "nonempty",
        "logfile=PATH",
        "allow_other",
        "noexec",
        "nosymfollow",
        "lazytime",
    ] {
        assert!(mount.contains(opt), "mount --help lacks {opt}:\n{mount}");
    }
    for cmd in ["info", "scrub", "resync"] {
        let help = ok(&hammer2([cmd, "--help"]));
        assert!(help.contains(&format!("hammer2 {cmd}")) && help.contains("MOUNTPOINT"), "{cmd} --help:\n{help}");
    }
    let scrub = ok(&hammer2(["scrub", "--help"]));
    assert!(scrub.contains("--degraded") && scrub.contains("--json"), "{scrub}");
    // The generator is for install.sh, not users.
    assert!(!ok(&hammer2(["--help"])).contains("generate"));
    assert!(!ok(&mkfs(["--help"])).contains("--generate"));
    assert!(!ok(&fsck(["--help"])).contains("--generate"));
}

#[test]
fn a_bad_generate_kind_or_directory_is_one_line_and_a_failure() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("f");
    std::fs::write(&file, b"").unwrap();
    one_line_error(&mkfs(["--generate", "pdf", d.path().to_str().unwrap()]), "mkfs.hammer2: --generate", "pdf");
    one_line_error(&fsck(["--generate", "man", file.to_str().unwrap()]), "fsck.hammer2: ", "f/man8");
    assert!(!hammer2(["generate", "man", file.to_str().unwrap()]).status.success());
}
