//! POSIX access control lists, the way Linux keeps them for a local filesystem (ext4's
//! `posix_acl_*` helpers), on the `system.posix_acl_access` / `system.posix_acl_default`
//! extended attributes.
//!
//! The kernel enforces an ACL (FUSE_POSIX_ACL: it reads the attribute through getxattr and
//! checks every access itself); what a local filesystem does beside that is ours, and lives
//! here (see DESIGN "Permissions"):
//! - an access ACL that is set changes the mode to match it, and is not stored at all when
//!   the mode says the same (`equiv_mode`, as `posix_acl_update_mode`);
//! - chmod changes the owner, group-class (the mask when there is one) and other entries of
//!   the access ACL (`chmod`, as `posix_acl_chmod`);
//! - a new inode in a directory with a default ACL gets it as its access ACL, masked by the
//!   mode asked for, and a new directory gets it as its default ACL too; without one, the
//!   umask applies (`create_masq`, as `posix_acl_create`).
//!
//! The value is Linux's xattr form: a little-endian u32 version (2), then per entry u16 tag,
//! u16 permissions, u32 id.

use crate::error::{Error, Result};

pub const ACCESS: &[u8] = b"system.posix_acl_access";
pub const DEFAULT: &[u8] = b"system.posix_acl_default";

const VERSION: u32 = 2;
const HEADER: usize = 4;
const ENTRY: usize = 8;
/// The id of an entry that has none (owner, owning group, mask, other).
const UNDEFINED_ID: u32 = u32::MAX;

pub const USER_OBJ: u16 = 0x01;
pub const USER: u16 = 0x02;
pub const GROUP_OBJ: u16 = 0x04;
pub const GROUP: u16 = 0x08;
pub const MASK: u16 = 0x10;
pub const OTHER: u16 = 0x20;

/// Which of the two ACL attributes a name is, if either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Access,
    Default,
}

pub fn kind(name: &[u8]) -> Option<Kind> {
    match name {
        ACCESS => Some(Kind::Access),
        DEFAULT => Some(Kind::Default),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub tag: u16,
    pub perm: u16,
    pub id: u32,
}

/// A valid ACL: entries in Linux's order (by tag, then id), exactly one owner, owning group
/// and other entry, a mask whenever there is a named entry, no id named twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl(Vec<Entry>);

impl Acl {
    /// Parses and validates an attribute value. An ACL without entries (the header alone) is
    /// `None`: Linux reads that as "remove the ACL". Anything malformed is EINVAL.
    pub fn parse(value: &[u8]) -> Result<Option<Acl>> {
        let bad = |why: &str| Error::invalid(format!("malformed POSIX ACL: {why}"));
        if value.len() < HEADER || (value.len() - HEADER) % ENTRY != 0 {
            return Err(bad("its length is not a header and whole entries"));
        }
        if u32::from_le_bytes(value[..HEADER].try_into().expect("4 bytes")) != VERSION {
            return Err(bad("unknown version"));
        }
        let entries: Vec<Entry> = value[HEADER..]
            .chunks_exact(ENTRY)
            .map(|e| Entry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]),
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect();
        if entries.is_empty() {
            return Ok(None);
        }
        let acl = Acl(entries
            .into_iter()
            .map(|e| match e.tag {
                USER | GROUP => e,
                _ => Entry { id: UNDEFINED_ID, ..e },
            })
            .collect());
        acl.validate().map_err(bad)?;
        Ok(Some(acl))
    }

    /// Linux's `posix_acl_valid`.
    fn validate(&self) -> std::result::Result<(), &'static str> {
        let mut last: Option<(u16, u32)> = None;
        let (mut user_obj, mut group_obj, mut other, mut mask, mut named) = (0, 0, 0, 0, 0);
        for e in &self.0 {
            if e.perm & !7 != 0 {
                return Err("permissions beyond rwx");
            }
            match e.tag {
                USER_OBJ => user_obj += 1,
                GROUP_OBJ => group_obj += 1,
                OTHER => other += 1,
                MASK => mask += 1,
                USER | GROUP => named += 1,
                _ => return Err("unknown entry tag"),
            }
            if last.is_some_and(|l| l >= (e.tag, e.id)) {
                return Err("entries out of order or repeated");
            }
            last = Some((e.tag, e.id));
        }
        if user_obj != 1 || group_obj != 1 || other != 1 {
            return Err("it needs exactly one owner, owning-group and other entry");
        }
        if named > 0 && mask != 1 {
            return Err("named entries need a mask entry");
        }
        Ok(())
    }

    pub fn to_xattr(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + ENTRY * self.0.len());
        out.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.0 {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&e.id.to_le_bytes());
        }
        out
    }

    #[cfg(test)]
    pub fn entries(&self) -> &[Entry] {
        &self.0
    }

    /// The mode this access ACL gives `mode` (its file type and set-id bits kept), and
    /// whether the ACL says more than that mode can (a named entry or a mask): when it does
    /// not, the ACL need not be stored. Linux's `posix_acl_equiv_mode`.
    pub fn equiv_mode(&self, mode: u32) -> (u32, bool) {
        let mut m = mode & !0o777;
        let mut extended = false;
        for e in &self.0 {
            let p = u32::from(e.perm);
            match e.tag {
                USER_OBJ => m |= p << 6,
                GROUP_OBJ => m |= p << 3,
                OTHER => m |= p,
                // The entries are sorted: the mask comes after the owning group and wins.
                MASK => {
                    m = (m & !0o070) | (p << 3);
                    extended = true;
                }
                _ => extended = true,
            }
        }
        (m, extended)
    }

    /// The access ACL after a chmod to `mode`: owner, group class (the mask, or the owning
    /// group without one) and other follow the mode; named entries stay. `posix_acl_chmod`.
    pub fn chmod(&mut self, mode: u32) {
        let has_mask = self.0.iter().any(|e| e.tag == MASK);
        for e in &mut self.0 {
            match e.tag {
                USER_OBJ => e.perm = ((mode >> 6) & 7) as u16,
                OTHER => e.perm = (mode & 7) as u16,
                MASK => e.perm = ((mode >> 3) & 7) as u16,
                GROUP_OBJ if !has_mask => e.perm = ((mode >> 3) & 7) as u16,
                _ => {}
            }
        }
    }

    /// A new inode's access ACL from its directory's default ACL (`self`) and the mode the
    /// creator asked for: each class keeps only what both allow, and the mode is narrowed to
    /// match. Returns the new mode and the access ACL, None when the mode alone says it.
    /// `posix_acl_create_masq`.
    pub fn create_masq(&self, mode: u32) -> (u32, Option<Acl>) {
        let mut acl = self.clone();
        let mut m = mode & 0o777;
        let mut extended = false;
        for e in &mut acl.0 {
            match e.tag {
                USER_OBJ => {
                    e.perm &= ((m >> 6) & 7) as u16;
                    m &= (u32::from(e.perm) << 6) | !0o700;
                }
                OTHER => {
                    e.perm &= (m & 7) as u16;
                    m &= u32::from(e.perm) | !0o007;
                }
                MASK | USER | GROUP => extended = true,
                _ => {}
            }
        }
        // The group class: the mask when there is one, else the owning group.
        let class = if acl.0.iter().any(|e| e.tag == MASK) { MASK } else { GROUP_OBJ };
        if let Some(e) = acl.0.iter_mut().find(|e| e.tag == class) {
            e.perm &= ((m >> 3) & 7) as u16;
            m &= (u32::from(e.perm) << 3) | !0o070;
        }
        ((mode & !0o777) | m, extended.then_some(acl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        Acl(entries.iter().map(|&(tag, perm, id)| Entry { tag, perm, id }).collect()).to_xattr()
    }

    const U: u32 = UNDEFINED_ID;

    #[test]
    fn a_valid_acl_round_trips() {
        let v = acl(&[(USER_OBJ, 6, U), (USER, 0, 65534), (GROUP_OBJ, 4, U), (MASK, 4, U), (OTHER, 4, U)]);
        let a = Acl::parse(&v).unwrap().unwrap();
        assert_eq!(a.to_xattr(), v);
        assert_eq!(a.equiv_mode(0o100600), (0o100644, true));
    }

    #[test]
    fn malformed_values_are_refused() {
        let bad = [
            vec![1, 0, 0],                                                            // short header
            acl(&[(USER_OBJ, 6, U), (GROUP_OBJ, 4, U)])[..11].to_vec(),               // partial entry
            [&3u32.to_le_bytes()[..], &acl(&[(USER_OBJ, 6, U)])[4..]].concat(),       // version
            acl(&[(USER_OBJ, 6, U), (GROUP_OBJ, 4, U)]),                              // no other
            acl(&[(USER_OBJ, 6, U), (USER, 4, 7), (GROUP_OBJ, 4, U), (OTHER, 0, U)]), // no mask
            acl(&[(GROUP_OBJ, 4, U), (USER_OBJ, 6, U), (OTHER, 0, U)]),               // order
            acl(&[(USER_OBJ, 6, U), (USER, 4, 7), (USER, 4, 7), (GROUP_OBJ, 4, U), (MASK, 7, U), (OTHER, 0, U)]),
            acl(&[(USER_OBJ, 8, U), (GROUP_OBJ, 4, U), (OTHER, 0, U)]), // perm
            acl(&[(USER_OBJ, 6, U), (0x40, 4, U), (GROUP_OBJ, 4, U), (OTHER, 0, U)]), // tag
        ];
        for v in bad {
            assert!(matches!(Acl::parse(&v), Err(Error::Invalid(_))), "{v:?} accepted");
        }
        assert_eq!(Acl::parse(&VERSION.to_le_bytes()).unwrap(), None);
    }

    #[test]
    fn chmod_moves_the_mask_not_the_owning_group() {
        let v = acl(&[(USER_OBJ, 7, U), (USER, 7, 5), (GROUP_OBJ, 5, U), (MASK, 7, U), (OTHER, 5, U)]);
        let mut a = Acl::parse(&v).unwrap().unwrap();
        a.chmod(0o640);
        let perms: Vec<u16> = a.entries().iter().map(|e| e.perm).collect();
        assert_eq!(perms, [6, 7, 5, 4, 0]);
    }

    #[test]
    fn inheritance_narrows_both_the_mode_and_the_acl() {
        let d = Acl::parse(&acl(&[(USER_OBJ, 7, U), (GROUP_OBJ, 5, U), (OTHER, 0, U)])).unwrap().unwrap();
        assert_eq!(d.create_masq(0o100666), (0o100640, None));
        let d = Acl::parse(&acl(&[(USER_OBJ, 7, U), (GROUP_OBJ, 5, U), (GROUP, 7, 9), (MASK, 7, U), (OTHER, 5, U)]))
            .unwrap()
            .unwrap();
        let (mode, access) = d.create_masq(0o100666);
        assert_eq!(mode, 0o100664);
        let perms: Vec<u16> = access.unwrap().entries().iter().map(|e| e.perm).collect();
        assert_eq!(perms, [6, 5, 7, 6, 4]);
    }
}
