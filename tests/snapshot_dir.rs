//! `.snapshots` on a real mount (issue 24; DESIGN §13 "Snapshots under the mount"): every
//! snapshot of the mounted PFS is a read-only directory `MOUNTPOINT/.snapshots/NAME`, left
//! out of the root's listing unless `-o snapdir=visible`. Snapshots are taken with the real
//! `hammer2 snapshot` while a writer is at work, restored with `cp -a` and compared with
//! `diff -r` against what the files held when each was taken; every change inside one is
//! EROFS; the kernel enforces the snapshot's own modes and ACLs against `nobody`; inode
//! numbers are distinct from the live tree's and stable; a deleted snapshot vanishes, and
//! one with a file open in it is not deleted. A real `.snapshots` is hidden, not lost
//! (`snapdir=off` reaches it), and a version-1 filesystem has no `.snapshots` at all.

use hammer2_test_support as common;

use common::image::{exit_code, fsck, hammer2, ok, stderr, stdout};
use common::mount::{Image, Mount, pattern, sh};
use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const MIB: u64 = 1 << 20;
/// As `nobody` (uid and gid 65534, no other groups), as `tests/fuse_permissions.rs` runs it.
const NOBODY: &str = "setpriv --reuid=65534 --regid=65534 --clear-groups";

fn fsck_clean(img: &Image) {
    let o = fsck(std::iter::once(OsStr::new("-n")).chain(img.devices.iter().map(|d| d.as_os_str())));
    assert_eq!(exit_code(&o), 0, "fsck -n: {}{}", stdout(&o), stderr(&o));
}

/// A version-2 filesystem made by the real mkfs, mounted with allow_other and `opts`, its
/// mount point reachable by `nobody`.
fn mounted(opts: &str) -> (Image, Mount) {
    let img = Image::by_mkfs(1, 512 * MIB, 1);
    std::fs::set_permissions(img.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let opts = if opts.is_empty() { "allow_other".to_string() } else { format!("allow_other,{opts}") };
    let m = img.mount_with(&opts);
    (img, m)
}

fn snapshot(mnt: &Path, name: &str) {
    ok(&hammer2(["snapshot".as_ref(), mnt.as_os_str(), name.as_ref()]));
}

/// What a shell script printed (stdout and stderr in order), run as root in `dir`.
fn transcript(dir: &Path, script: &str) -> String {
    let out = sh(&format!("cd {} && exec 2>&1 && NOBODY='{NOBODY}' && {script}", dir.display()));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).expect("readdir").map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

/// The content of the writer's file `i`.
fn content(i: usize) -> Vec<u8> {
    pattern(4096 + (i * 7919) % 200_000, (i % 251) as u8)
}

#[test]
fn each_snapshot_is_a_read_only_directory_under_the_mount() {
    let (img, m) = mounted("");
    let mnt = m.path.clone();
    let host = tempfile::tempdir().expect("temp dir");
    // A tree the test changes between snapshots (so what each snapshot must hold is known
    // exactly), beside a writer that never stops while the snapshots are taken.
    std::fs::create_dir(mnt.join("dir")).unwrap();
    std::fs::create_dir(mnt.join("busy")).unwrap();
    let closed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (closed, stop, dir) = (closed.clone(), stop.clone(), mnt.join("busy"));
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && i < 300 {
                std::fs::write(dir.join(format!("w{i}")), content(i)).expect("write");
                i += 1;
                closed.store(i, Ordering::SeqCst);
            }
        })
    };
    let mut taken = Vec::new();
    for k in 0..4usize {
        // This round's changes: new files, a rewrite, a removal, a symlink, modes.
        transcript(
            &mnt.join("dir"),
            &format!(
                "head -c {} /dev/urandom > f{k} && mkdir -p sub{k} && echo round {k} > sub{k}/note && \
                 chmod 640 f{k} && ln -sf f{k} latest && echo rewritten in {k} > shared && \
                 rm -f f{}",
                20_000 + k * 70_000,
                k.wrapping_sub(2)
            ),
        );
        let expected = host.path().join(format!("expected{k}"));
        sh(&format!("cp -a {} {}", mnt.join("dir").display(), expected.display()));
        let before = closed.load(Ordering::SeqCst);
        let name = format!("s{k}");
        snapshot(&mnt, &name);
        taken.push((name, expected, before));
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();

    // Hidden from the root's listing, reachable by name; new snapshots showed up without a
    // remount, oldest first.
    let ls = transcript(&mnt, "ls -a");
    assert!(!ls.lines().any(|l| l == ".snapshots"), "ls -a shows .snapshots: {ls}");
    assert!(ls.lines().any(|l| l == "dir"), "{ls}");
    assert_eq!(transcript(&mnt, "ls .snapshots"), "s0\ns1\ns2\ns3\n");
    let meta = std::fs::metadata(mnt.join(".snapshots")).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o7777, 0o555);

    // Restored with cp -a, each snapshot holds exactly what the tree held when it was taken,
    // and every file the writer had closed before the command.
    for (name, expected, before) in &taken {
        let restored = host.path().join(format!("restored-{name}"));
        sh(&format!("cp -a {} {}", mnt.join(".snapshots").join(name).join("dir").display(), restored.display()));
        let diff =
            transcript(host.path(), &format!("diff -r {} {} && echo same", expected.display(), restored.display()));
        assert_eq!(diff, "same\n", "snapshot {name}");
        for i in 0..*before {
            let got = std::fs::read(mnt.join(".snapshots").join(name).join(format!("busy/w{i}")))
                .unwrap_or_else(|e| panic!("{name}/busy/w{i}: {e}"));
            assert!(got == content(i), "{name}/busy/w{i} differs from what was written");
        }
    }

    // Every change inside a snapshot is refused with EROFS, and `.snapshots` itself is
    // neither made, removed nor renamed.
    let t = transcript(
        &mnt,
        "for c in 'echo x > .snapshots/s1/dir/shared' 'touch .snapshots/s1/dir/new' \
         'mkdir .snapshots/s1/dir/newdir' 'rm .snapshots/s1/dir/shared' 'rmdir .snapshots/s1/dir/sub1' \
         'chmod 777 .snapshots/s1/dir/shared' 'chown 65534 .snapshots/s1/dir/shared' \
         'truncate -s 0 .snapshots/s1/dir/shared' 'setfattr -n user.x -v 1 .snapshots/s1/dir/shared' \
         'setfacl -m u:nobody:r .snapshots/s1/dir/shared' 'ln -s x .snapshots/s1/dir/link2' \
         'mv .snapshots/s1/dir/shared dir/moved' 'mv dir/shared .snapshots/s1/dir/moved' \
         'ln dir/shared .snapshots/s1/dir/hard' 'touch -d 2001-01-01 .snapshots/s1/dir/shared' \
         'rmdir .snapshots' 'mv .snapshots elsewhere' 'mkdir .snapshots/s9'; do \
           if sh -c \"$c\" 2>/dev/null; then echo \"$c: allowed\"; else sh -c \"$c\" 2>&1 | \
           grep -q 'Read-only file system' && echo \"$c: EROFS\" || echo \"$c: $(sh -c \"$c\" 2>&1)\"; fi; done; \
         mkdir .snapshots 2>&1 | sed 's/.*: //'",
    );
    for line in t.lines().take(18) {
        assert!(line.ends_with(": EROFS"), "{t}");
    }
    assert_eq!(t.lines().nth(18), Some("File exists"), "{t}");
    assert_eq!(std::fs::read(mnt.join(".snapshots/s1/dir/shared")).unwrap(), b"rewritten in 1\n");
    assert_eq!(std::fs::read(mnt.join("dir/shared")).unwrap(), b"rewritten in 3\n");

    // The kernel enforces the snapshot's own modes and ACLs: nobody reads neither a 0600
    // file nor one whose ACL denies it, and reads a 0644 one; getfacl shows the ACL.
    transcript(
        &mnt.join("dir"),
        "echo secret > private && chmod 600 private && echo public > open && chmod 644 open && \
         echo denied > acl && chmod 644 acl && setfacl -m u:nobody:--- acl && setfattr -n user.note -v kept open",
    );
    snapshot(&mnt, "perms");
    let t = transcript(
        &mnt.join(".snapshots/perms/dir"),
        "$NOBODY cat private 2>&1 | sed 's/.*: //'; $NOBODY cat open; $NOBODY cat acl 2>&1 | sed 's/.*: //'; \
         cat private; getfacl -n acl | grep 65534; stat -c '%a %u' private; getfattr -d open | grep user; \
         readlink latest",
    );
    assert_eq!(
        t,
        "Permission denied\npublic\nPermission denied\nsecret\nuser:65534:---\n600 0\nuser.note=\"kept\"\nf3\n"
    );

    // Inode numbers: distinct from the live tree's and between snapshots, the same at every
    // stat, also once the kernel has forgotten them (drop_caches makes it look them up again).
    let ino = |p: &str| std::fs::metadata(mnt.join(p)).unwrap_or_else(|e| panic!("{p}: {e}")).ino();
    let paths = ["dir/f3", ".snapshots/s3/dir/f3", ".snapshots/perms/dir/f3", ".snapshots/s3", ".snapshots"];
    let first: Vec<u64> = paths.iter().map(|p| ino(p)).collect();
    let mut unique = first.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), first.len(), "inode numbers repeat: {first:?}");
    std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    let again: Vec<u64> = paths.iter().map(|p| ino(p)).collect();
    assert_eq!(first, again, "inode numbers changed after the kernel forgot them");
    // Hard links inside a snapshot keep one number.
    transcript(&mnt.join("dir"), "ln open open-link");
    snapshot(&mnt, "links");
    assert_eq!(ino(".snapshots/links/dir/open"), ino(".snapshots/links/dir/open-link"));

    // A snapshot with a file open in it is not deleted; once closed it is, and it vanishes.
    let held = std::fs::File::open(mnt.join(".snapshots/s0/dir/shared")).unwrap();
    let o = hammer2(["pfs".as_ref(), "delete".as_ref(), mnt.as_os_str(), "s0".as_ref()]);
    assert_eq!(exit_code(&o), 8, "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("open under .snapshots"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    drop(held);
    ok(&hammer2(["pfs".as_ref(), "delete".as_ref(), mnt.as_os_str(), "s0".as_ref()]));
    assert_eq!(names(&mnt.join(".snapshots")), ["links", "perms", "s1", "s2", "s3"]);
    // Its old path is gone (ENOENT, or ESTALE while the kernel still holds the name).
    let gone = std::fs::metadata(mnt.join(".snapshots/s0/dir/shared")).unwrap_err();
    assert!(matches!(gone.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESTALE)), "{gone}");

    drop(m);
    img.assert_no_panics();
    fsck_clean(&img);
}

#[test]
fn snapdir_visible_lists_it_and_a_real_one_is_hidden_unless_off() {
    // A real `.snapshots` made while the virtual one is off stays on disk; with it on, the
    // virtual one wins (the log says so) and the real one comes back with `off`.
    let (img, m) = mounted("snapdir=off");
    std::fs::create_dir(m.path.join(".snapshots")).unwrap();
    std::fs::write(m.path.join(".snapshots/mine"), b"kept\n").unwrap();
    snapshot(&m.path, "one");
    assert_eq!(names(&m.path), [".snapshots"]);
    assert_eq!(names(&m.path.join(".snapshots")), ["mine"]);
    m.unmount();

    let m = img.mount_with("allow_other,snapdir=visible");
    let listed = names(&m.path);
    assert_eq!(listed, [".snapshots"], "the real one is not listed beside the virtual one");
    assert_eq!(names(&m.path.join(".snapshots")), ["one"]);
    assert_eq!(std::fs::read(m.path.join(".snapshots/one/.snapshots/mine")).unwrap(), b"kept\n");
    assert!(img.log_shows("hidden by the snapshot directory"), "{}", img.log());
    m.unmount();

    let m = img.mount_with("snapdir=off");
    assert_eq!(names(&m.path.join(".snapshots")), ["mine"]);
    m.unmount();

    // A bad value is one line and no mount.
    let o = img.try_mount(&img.mountpoint(), "snapdir=sometimes");
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("bad value for snapdir: 'sometimes' (hidden, visible or off)"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    img.assert_no_panics();
    fsck_clean(&img);
}

#[test]
fn a_version1_filesystem_has_no_snapshot_directory() {
    // No snapshots there, so the name stays an ordinary one.
    common::mount::require_fuse();
    let dir = tempfile::Builder::new().prefix("h2snapdir").tempdir().expect("temp dir");
    let device = dir.path().join("dev0.img");
    let args = ["--size", "134217728", "--format-version", "1"];
    ok(&common::image::mkfs(args.iter().map(OsStr::new).chain([device.as_os_str()])));
    std::fs::create_dir(dir.path().join("mnt")).expect("mount point");
    let img = Image { dir, devices: vec![device] };
    let m = img.mount();
    assert!(std::fs::metadata(m.path.join(".snapshots")).is_err());
    std::fs::create_dir(m.path.join(".snapshots")).expect("an ordinary name");
    std::fs::write(m.path.join(".snapshots/mine"), b"mine\n").unwrap();
    assert_eq!(names(&m.path), [".snapshots"]);
    assert_eq!(names(&m.path.join(".snapshots")), ["mine"]);
    m.unmount();
    img.assert_no_panics();
    fsck_clean(&img);
}
