//! Permissions on a real mount, checked the way a user meets them: as the unprivileged user
//! `nobody`, with setfacl/getfacl, cp -p/-a, and the same commands run on ext4 (same kernel)
//! as the reference. POSIX ACLs are enforced by the kernel (FUSE_POSIX_ACL); the daemon keeps
//! mode and ACL in step, inherits default ACLs and applies the umask, and drops set-id bits
//! on writes as Linux does (DESIGN "Permissions").

use hammer2_test_support as common;

use common::ext4::Ext4;
use common::mount::{Image, Mount, sh};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// As `nobody` (uid and gid 65534, no other groups).
const NOBODY: &str = "setpriv --reuid=65534 --regid=65534 --clear-groups";

/// A fresh image mounted with allow_other, its mount point reachable by `nobody`.
fn mount_for_all() -> (Image, Mount) {
    let img = Image::new();
    std::fs::set_permissions(img.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let m = img.mount_with("allow_other");
    (img, m)
}

/// Runs `script` (a POSIX shell script, as root) in the world-writable directory `work`
/// under `root`, and returns what it printed, stdout and stderr in order.
fn transcript(root: &Path, script: &str) -> String {
    let dir = root.join("work");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = sh(&format!("cd {} && exec 2>&1 && NOBODY='{NOBODY}' && {script}", dir.display()));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Named users and groups, the mask, chmod, default ACLs on files and subdirectories, the
/// umask, cp -p/-a, a malformed ACL, a default ACL on a file, and what setting an ACL costs
/// set-group-ID.
const ACL_SCRIPT: &str = r#"
umask 022
echo hello > f; chmod 644 f
setfacl -m u:nobody:--- f; echo "named user denied: $($NOBODY cat f 2>&1)"
getfacl -n f | grep -v '^# file'; stat -c %a f
setfacl -b f; echo "after setfacl -b: $($NOBODY cat f 2>&1)"; stat -c %a f
echo secret > g; chmod 640 g; chgrp 0 g
echo "other class: $($NOBODY cat g 2>&1)"
setfacl -m g:nogroup:r g; echo "named group: $($NOBODY cat g 2>&1)"
chmod 600 g; getfacl -n g | grep -v '^# file'; echo "after chmod 600: $($NOBODY cat g 2>&1)"
setfacl -m m::r g; echo "mask r: $($NOBODY cat g 2>&1)"; stat -c %a g
mkdir d; setfacl -d -m u:nobody:rwx,g::r-x,o::--- d; getfacl -n d | grep -v '^# file'
touch d/file; mkdir d/sub; touch d/sub/deeper
getfacl -n d/file | grep -v '^# file'; stat -c %a d/file
getfacl -n d/sub | grep -v '^# file'; stat -c %a d/sub
getfacl -n d/sub/deeper | grep -v '^# file'; stat -c %a d/sub/deeper
echo "nobody writes the inherited file: $($NOBODY sh -c 'echo x > d/file' 2>&1 && echo ok)"
umask 077; touch plainfile; mkdir plaindir; stat -c '%a %n' plainfile plaindir; umask 022
echo data > src; chmod 644 src; cp -p src dst_p; cp -a src dst_a; stat -c '%a %n' dst_p dst_a
getfacl -n dst_p | grep -v '^# file'
setfattr -n system.posix_acl_access -v 0x0200000001000600ffffffff f 2>&1 | sed 's/^/malformed: /'
setfacl -m u:nobody:r-x f; setfacl -m d:u:nobody:r f 2>&1 | sed 's/^/default ACL on a file: /'
getfacl -n f | grep -v '^# file'
touch own; chown nobody:0 own; chmod 2770 own; $NOBODY setfacl -m u:0:r own
echo "ACL set by its owner outside the group on a 2770 file: $(stat -c %a own)"
mkdir sgd; chown nobody:65534 sgd; chmod 2770 sgd; $NOBODY setfacl -m u:0:r sgd
echo "ACL set by its owner in the group on a 2770 directory: $(stat -c %a sgd)"
"#;

#[test]
fn acls_behave_as_on_ext4_for_the_same_commands() {
    let ext4 = Ext4::new();
    let reference = transcript(ext4.path(), ACL_SCRIPT);
    let (_img, m) = mount_for_all();
    let got = transcript(&m.path, ACL_SCRIPT);
    // What the reference shows, spelled out (so that a kernel that changed its mind would
    // be noticed here, not taken as the specification).
    for line in [
        "named user denied: cat: f: Permission denied",
        "named group: secret",
        "after chmod 600: cat: g: Permission denied",
        "mask r: secret",
        "nobody writes the inherited file: ok",
        "600 plainfile",
        "700 plaindir",
        "644 dst_p",
        "644 dst_a",
        "malformed: setfattr: f: Invalid argument",
        "default ACL on a file: setfacl: f: Only directories can have default ACLs",
        "ACL set by its owner outside the group on a 2770 file: 770",
        "ACL set by its owner in the group on a 2770 directory: 2770",
    ] {
        assert!(reference.contains(line), "ext4 no longer shows {line:?}:\n{reference}");
    }
    assert_same(&got, &reference);
    m.unmount();
}

/// Fails at the first line where hammer2's transcript differs from ext4's, showing both.
#[track_caller]
fn assert_same(got: &str, reference: &str) {
    let (g, r): (Vec<&str>, Vec<&str>) = (got.lines().collect(), reference.lines().collect());
    if let Some(i) = (0..g.len().max(r.len())).find(|&i| g.get(i) != r.get(i)) {
        panic!(
            "hammer2 differs from ext4 for the same commands, at line {}:\n  ext4:    {:?}\n  hammer2: {:?}\n\
             whole hammer2 transcript:\n{got}",
            i + 1,
            r.get(i),
            g.get(i)
        );
    }
}

/// The cp -p/-a case of the report: cp sets a plain access ACL to give the copy its mode;
/// an ACL that says no more than a mode becomes that mode and is not stored.
#[test]
fn cp_p_and_cp_a_keep_the_mode() {
    let (_img, m) = mount_for_all();
    let out = transcript(
        &m.path,
        "echo data > src; chmod 644 src; cp -p src p; cp -a src a; stat -c '%a %n' p a; getfattr -m - -d p a",
    );
    assert_eq!(out, "644 p\n644 a\n", "the copies lost mode bits or carry a needless ACL");
    m.unmount();
}

/// ACLs are kept on the volume and enforced again after a remount.
#[test]
fn acls_survive_a_remount() {
    let (img, m) = mount_for_all();
    transcript(
        &m.path,
        "echo hi > f; chmod 644 f; setfacl -m u:nobody:---,g:nogroup:rw f; mkdir d; setfacl -d -m u:nobody:r d",
    );
    let before = transcript(&m.path, "getfacl -n f d");
    assert!(before.contains("user:65534:---") && before.contains("default:user:65534:r--"), "{before}");
    m.unmount();
    let m = img.mount_with("allow_other");
    assert_eq!(transcript(&m.path, "getfacl -n f d"), before);
    let read = transcript(&m.path, "$NOBODY cat f || echo refused");
    assert!(read.ends_with("refused\n"), "nobody read a file its ACL denies it, after a remount: {read}");
    m.unmount();
}

/// Writes (through the page cache and O_DIRECT), truncates (truncate(2) and O_TRUNC) and
/// fallocates by `nobody` on files with set-user-ID and set-group-ID
/// (with and without group execute, in and out of the file's group), as root, through a
/// supplementary group, and chowns by root: each mode as `stat` shows it right after.
const SETID_SCRIPT: &str = r#"
for op in write truncate fallocate open-truncate direct-write; do
  for m in 4755 2755 2745 6755 4644 2644 6644; do
    for grp in 0 65534; do
      f=f-$op-$m-$grp
      touch $f; chown 0:$grp $f; chmod $m $f; chmod go+w $f
      case $op in
        write) $NOBODY sh -c "echo x >> $f";;
        truncate) $NOBODY truncate -s 100 $f;;
        fallocate) $NOBODY fallocate -l 8192 $f;;
        open-truncate) $NOBODY sh -c ": > $f";;
        direct-write) $NOBODY dd if=/dev/zero of=$f bs=4096 count=1 oflag=direct conv=notrunc status=none;;
      esac
      echo "$op by nobody, $m, group $grp: $(stat -c %a $f)"
    done
  done
done
touch r; chmod 6755 r; echo x >> r; fallocate -l 8192 r; truncate -s 1 r; echo "root writes 6755: $(stat -c %a r)"
touch s; chgrp 65534 s; chmod 2664 s; chmod o+w s
setpriv --reuid=65534 --regid=100 --groups=65534 sh -c 'echo x >> s'
echo "written by a supplementary member of the group, 2664: $(stat -c %a s)"
touch c; chmod 6755 c; chown 65534 c; echo "root chowns 6755: $(stat -c %a c)"
touch c2; chmod 2745 c2; chown 65534:65534 c2; echo "root chowns 2745: $(stat -c %a c2)"
mkfifo p; chmod 4755 p; chown 65534 p; echo "root chowns a 4755 fifo: $(stat -c %a p)"
"#;

#[test]
fn set_id_bits_are_dropped_at_once_as_ext4_drops_them() {
    let ext4 = Ext4::new();
    let reference = transcript(ext4.path(), SETID_SCRIPT);
    let (_img, m) = mount_for_all();
    let got = transcript(&m.path, SETID_SCRIPT);
    for line in [
        "write by nobody, 4755, group 0: 777",
        "write by nobody, 2745, group 0: 767",
        "write by nobody, 2745, group 65534: 2767",
        "truncate by nobody, 2644, group 0: 666",
        "fallocate by nobody, 6755, group 0: 777",
        "fallocate by nobody, 6644, group 65534: 2666",
        "open-truncate by nobody, 2745, group 0: 767",
        "direct-write by nobody, 4755, group 0: 777",
        "root writes 6755: 6755",
        "written by a supplementary member of the group, 2664: 2666",
        "root chowns 6755: 755",
        "root chowns a 4755 fifo: 755",
    ] {
        assert!(reference.contains(line), "ext4 no longer shows {line:?}:\n{reference}");
    }
    assert_same(&got, &reference);
    m.unmount();
}
