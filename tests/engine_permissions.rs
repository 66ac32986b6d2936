//! The engine's share of permissions (DESIGN "Permissions"): POSIX ACLs kept in step with
//! the mode, inherited from default ACLs or replaced by the umask, refused when off; and
//! what a change costs the set-id bits. The kernel enforces; these are the rules it relies on.

use hammer2_test_support as common;

use common::engine::{format_copies, mem_devices, mount};
use hammer2::testing::acl::{ACCESS, DEFAULT};
use hammer2::testing::killed_mode;
use hammer2::{Caller, Creds, Error, Fs, SetAttr, XattrFlags};

const ROOT: Creds = Creds { uid: 0, gid: 0, umask: 0o022 };

fn fs() -> Fs {
    let devs = mem_devices(1, 64 << 20);
    format_copies(&devs, 1);
    mount(&devs)
}

/// An ACL value in Linux's xattr form from (tag, perm, id) entries.
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

const U: u32 = u32::MAX;
/// u::rwx, u:nobody:r-x, g::r-x, m::rwx, o::---
fn named_user() -> Vec<u8> {
    acl(&[(0x01, 7, U), (0x02, 5, 65534), (0x04, 5, U), (0x10, 7, U), (0x20, 0, U)])
}

#[test]
fn without_acl_support_acls_are_refused_not_stored() {
    let fs = fs();
    let f = fs.create(fs.root(), b"f", 0o644, ROOT).unwrap().ino;
    fs.setxattr(f, ACCESS, &named_user(), XattrFlags::default()).unwrap();
    fs.set_posix_acl(false);
    assert!(matches!(fs.setxattr(f, ACCESS, &named_user(), XattrFlags::default()), Err(Error::NotSupported)));
    assert!(matches!(fs.getxattr(f, ACCESS), Err(Error::NotSupported)));
    assert!(matches!(fs.removexattr(f, ACCESS), Err(Error::NotSupported)));
    assert!(fs.listxattr(f).unwrap().is_empty(), "an ACL nobody enforces is listed");
    fs.setxattr(f, b"user.other", b"kept", XattrFlags::default()).unwrap();
}

#[test]
fn an_access_acl_sets_the_mode_and_one_the_mode_can_say_is_not_stored() {
    let fs = fs();
    let f = fs.create(fs.root(), b"f", 0o600, ROOT).unwrap().ino;
    // u::rw-, g::r--, o::r-- : what cp -p sets to give a copy mode 644.
    fs.setxattr(f, ACCESS, &acl(&[(0x01, 6, U), (0x04, 4, U), (0x20, 4, U)]), XattrFlags::default()).unwrap();
    assert_eq!(fs.getattr(f).unwrap().mode & 0o7777, 0o644);
    assert!(matches!(fs.getxattr(f, ACCESS), Err(Error::NoAttr)));
    // A named entry needs the ACL; the group bits become the mask.
    fs.setxattr(f, ACCESS, &named_user(), XattrFlags::default()).unwrap();
    assert_eq!(fs.getattr(f).unwrap().mode & 0o7777, 0o770);
    assert_eq!(fs.getxattr(f, ACCESS).unwrap(), named_user());
    // chmod moves the mask, not the owning group's entry.
    fs.setattr(f, &SetAttr { mode: Some(0o740), ..Default::default() }).unwrap();
    assert_eq!(
        fs.getxattr(f, ACCESS).unwrap(),
        acl(&[(0x01, 7, U), (0x02, 5, 65534), (0x04, 5, U), (0x10, 4, U), (0x20, 0, U)])
    );
    assert!(matches!(fs.setxattr(f, ACCESS, &[2, 0, 0, 0, 1], XattrFlags::default()), Err(Error::Invalid(_))));
}

#[test]
fn a_default_acl_replaces_the_umask_and_is_inherited() {
    let fs = fs();
    let plain = fs.create(fs.root(), b"plain", 0o666, ROOT).unwrap();
    assert_eq!(plain.mode & 0o777, 0o644, "the umask applies without a default ACL");
    let d = fs.mkdir(fs.root(), b"d", 0o777, ROOT).unwrap().ino;
    assert!(
        fs.setxattr(plain.ino, DEFAULT, &named_user(), XattrFlags::default()).is_err(),
        "a file took a default ACL"
    );
    fs.setxattr(d, DEFAULT, &named_user(), XattrFlags::default()).unwrap();
    let f = fs.create(d, b"f", 0o666, ROOT).unwrap();
    assert_eq!(f.mode & 0o777, 0o660, "mode asked for, narrowed by the default ACL, umask ignored");
    assert_eq!(
        fs.getxattr(f.ino, ACCESS).unwrap(),
        acl(&[(0x01, 6, U), (0x02, 5, 65534), (0x04, 5, U), (0x10, 6, U), (0x20, 0, U)])
    );
    assert!(matches!(fs.getxattr(f.ino, DEFAULT), Err(Error::NoAttr)));
    let sub = fs.mkdir(d, b"sub", 0o777, ROOT).unwrap();
    assert_eq!(sub.mode & 0o777, 0o770);
    assert_eq!(fs.getxattr(sub.ino, DEFAULT).unwrap(), named_user(), "a subdirectory inherits the default ACL");
    let link = fs.symlink(d, b"l", b"f", ROOT).unwrap();
    assert!(matches!(fs.getxattr(link.ino, ACCESS), Err(Error::NoAttr)), "symlinks carry no ACL");
}

#[test]
fn what_a_change_costs_the_set_id_bits() {
    let nobody = Caller { fsetid: false, groups: vec![65534] };
    let root = Caller { fsetid: true, groups: vec![0] };
    let reg = 0o100000;
    // (mode, file gid, caller, chown) -> mode after
    let cases = [
        (0o4755, 0, &nobody, false, 0o0755),
        (0o2755, 65534, &nobody, false, 0o0755),
        (0o2745, 65534, &nobody, false, 0o2745), // no group execute, caller in group: kept
        (0o2745, 0, &nobody, false, 0o0745),     // not in the group: dropped
        (0o6755, 0, &root, false, 0o6755),       // CAP_FSETID keeps both
        (0o6755, 0, &root, true, 0o0755),        // a chown drops set-user-ID whoever asks, and
        // set-group-ID with group execute; without it, unless the caller may keep it
        (0o6745, 99, &nobody, true, 0o0745),
        (0o6745, 0, &root, true, 0o2745),
    ];
    for (mode, gid, caller, chown, after) in cases {
        let got = killed_mode(reg | mode, gid, caller, chown).map_or(mode, |m| m & 0o7777);
        assert_eq!(got, after, "{mode:o} gid {gid} {caller:?} chown {chown}");
    }
    assert_eq!(killed_mode(0o042755, 0, &nobody, true), None, "a directory keeps its set-group-ID");
    assert_eq!(killed_mode(0o014755, 0, &nobody, false), None, "only a regular file's content changes");
    assert_eq!(killed_mode(0o014755, 0, &root, true), Some(0o010755), "a chown of any non-directory counts");
}
