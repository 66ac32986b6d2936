//! An in-memory model of a POSIX directory tree, the oracle for the engine's property
//! test. It mirrors the engine's documented errno choices for each operation.

use std::collections::BTreeMap;

pub const ENOENT: i32 = libc::ENOENT;
pub const EEXIST: i32 = libc::EEXIST;
pub const ENOTDIR: i32 = libc::ENOTDIR;
pub const EISDIR: i32 = libc::EISDIR;
pub const ENOTEMPTY: i32 = libc::ENOTEMPTY;
pub const EINVAL: i32 = libc::EINVAL;
pub const EPERM: i32 = libc::EPERM;
pub const ENODATA: i32 = libc::ENODATA;

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    File(Vec<u8>),
    Dir(BTreeMap<Vec<u8>, u64>),
    Symlink(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct MInode {
    pub kind: Kind,
    pub nlink: u32,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub parent: u64,
}

#[derive(Clone, Debug)]
pub struct Model {
    pub inodes: BTreeMap<u64, MInode>,
    next: u64,
}

pub const ROOT: u64 = 1;

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

impl Model {
    pub fn new() -> Model {
        let mut inodes = BTreeMap::new();
        inodes
            .insert(ROOT, MInode { kind: Kind::Dir(BTreeMap::new()), nlink: 2, xattrs: BTreeMap::new(), parent: ROOT });
        Model { inodes, next: 2 }
    }

    pub fn get(&self, ino: u64) -> &MInode {
        &self.inodes[&ino]
    }

    fn dir(&self, ino: u64) -> Result<&BTreeMap<Vec<u8>, u64>, i32> {
        match &self.inodes[&ino].kind {
            Kind::Dir(d) => Ok(d),
            _ => Err(ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> &mut BTreeMap<Vec<u8>, u64> {
        match &mut self.inodes.get_mut(&ino).expect("inode").kind {
            Kind::Dir(d) => d,
            _ => panic!("not a dir"),
        }
    }

    pub fn is_dir(&self, ino: u64) -> bool {
        matches!(self.inodes[&ino].kind, Kind::Dir(_))
    }

    /// Every path (as component lists) with its inode, root first, in a stable order.
    pub fn paths(&self) -> Vec<(Vec<Vec<u8>>, u64)> {
        let mut out = vec![(Vec::new(), ROOT)];
        let mut i = 0;
        while i < out.len() {
            let (p, ino) = out[i].clone();
            if let Kind::Dir(d) = &self.inodes[&ino].kind {
                for (name, child) in d {
                    let mut q = p.clone();
                    q.push(name.clone());
                    out.push((q, *child));
                }
            }
            i += 1;
        }
        out
    }

    fn new_inode(&mut self, kind: Kind, parent: u64) -> u64 {
        let ino = self.next;
        self.next += 1;
        let nlink = if matches!(kind, Kind::Dir(_)) { 2 } else { 1 };
        self.inodes.insert(ino, MInode { kind, nlink, xattrs: BTreeMap::new(), parent });
        ino
    }

    fn drop_link(&mut self, ino: u64) {
        let n = self.inodes.get_mut(&ino).expect("inode");
        n.nlink -= 1;
        if n.nlink == 0 || (matches!(n.kind, Kind::Dir(_)) && n.nlink <= 1) {
            self.inodes.remove(&ino);
        }
    }

    pub fn create(&mut self, dir: u64, name: &[u8], kind: Kind) -> Result<u64, i32> {
        if self.dir(dir)?.contains_key(name) {
            return Err(EEXIST);
        }
        let is_dir = matches!(kind, Kind::Dir(_));
        let ino = self.new_inode(kind, if is_dir { dir } else { 0 });
        self.dir_mut(dir).insert(name.to_vec(), ino);
        if is_dir {
            self.inodes.get_mut(&dir).expect("dir").nlink += 1;
        }
        Ok(ino)
    }

    pub fn unlink(&mut self, dir: u64, name: &[u8]) -> Result<(), i32> {
        let ino = *self.dir(dir)?.get(name).ok_or(ENOENT)?;
        if self.is_dir(ino) {
            return Err(EISDIR);
        }
        self.dir_mut(dir).remove(name);
        self.drop_link(ino);
        Ok(())
    }

    pub fn rmdir(&mut self, dir: u64, name: &[u8]) -> Result<(), i32> {
        let ino = *self.dir(dir)?.get(name).ok_or(ENOENT)?;
        if !self.is_dir(ino) {
            return Err(ENOTDIR);
        }
        if !self.dir(ino)?.is_empty() {
            return Err(ENOTEMPTY);
        }
        self.dir_mut(dir).remove(name);
        self.inodes.remove(&ino);
        self.inodes.get_mut(&dir).expect("dir").nlink -= 1;
        Ok(())
    }

    pub fn link(&mut self, ino: u64, dir: u64, name: &[u8]) -> Result<(), i32> {
        if self.is_dir(ino) {
            return Err(EPERM);
        }
        if self.dir(dir)?.contains_key(name) {
            return Err(EEXIST);
        }
        self.dir_mut(dir).insert(name.to_vec(), ino);
        self.inodes.get_mut(&ino).expect("inode").nlink += 1;
        Ok(())
    }

    fn is_under(&self, ancestor: u64, mut dir: u64) -> bool {
        loop {
            if dir == ancestor {
                return true;
            }
            if dir == ROOT {
                return false;
            }
            dir = self.inodes[&dir].parent;
        }
    }

    pub fn rename(
        &mut self,
        sdir: u64,
        sname: &[u8],
        ddir: u64,
        dname: &[u8],
        noreplace: bool,
        exchange: bool,
    ) -> Result<(), i32> {
        let src = *self.dir(sdir)?.get(sname).ok_or(ENOENT)?;
        let dst = self.dir(ddir)?.get(dname).copied();
        if exchange && dst.is_none() {
            return Err(ENOENT);
        }
        if noreplace && dst.is_some() {
            return Err(EEXIST);
        }
        if dst == Some(src) {
            return Ok(());
        }
        let s_dir = self.is_dir(src);
        let d_dir = dst.is_some_and(|d| self.is_dir(d));
        if sdir != ddir {
            if s_dir && self.is_under(src, ddir) {
                return Err(EINVAL);
            }
            if exchange && d_dir && self.is_under(dst.expect("exchange"), sdir) {
                return Err(EINVAL);
            }
        }
        if exchange {
            let d = dst.expect("exchange");
            self.dir_mut(sdir).insert(sname.to_vec(), d);
            self.dir_mut(ddir).insert(dname.to_vec(), src);
            if sdir != ddir {
                if s_dir {
                    self.inodes.get_mut(&src).expect("src").parent = ddir;
                    self.inodes.get_mut(&sdir).expect("sdir").nlink -= 1;
                    self.inodes.get_mut(&ddir).expect("ddir").nlink += 1;
                }
                if d_dir {
                    self.inodes.get_mut(&d).expect("dst").parent = sdir;
                    self.inodes.get_mut(&ddir).expect("ddir").nlink -= 1;
                    self.inodes.get_mut(&sdir).expect("sdir").nlink += 1;
                }
            }
            return Ok(());
        }
        if let Some(d) = dst {
            if s_dir && !d_dir {
                return Err(ENOTDIR);
            }
            if !s_dir && d_dir {
                return Err(EISDIR);
            }
            if d_dir && !self.dir(d)?.is_empty() {
                return Err(ENOTEMPTY);
            }
        }
        self.dir_mut(sdir).remove(sname);
        if let Some(d) = dst {
            if d_dir {
                self.inodes.remove(&d);
                self.inodes.get_mut(&ddir).expect("ddir").nlink -= 1;
            } else {
                self.drop_link(d);
            }
        }
        self.dir_mut(ddir).insert(dname.to_vec(), src);
        if s_dir && sdir != ddir {
            self.inodes.get_mut(&src).expect("src").parent = ddir;
            self.inodes.get_mut(&sdir).expect("sdir").nlink -= 1;
            self.inodes.get_mut(&ddir).expect("ddir").nlink += 1;
        }
        Ok(())
    }

    pub fn file_mut(&mut self, ino: u64) -> &mut Vec<u8> {
        match &mut self.inodes.get_mut(&ino).expect("inode").kind {
            Kind::File(d) => d,
            _ => panic!("not a file"),
        }
    }

    pub fn write(&mut self, ino: u64, off: u64, data: &[u8]) {
        let f = self.file_mut(ino);
        let end = off as usize + data.len();
        if f.len() < end {
            f.resize(end, 0);
        }
        f[off as usize..end].copy_from_slice(data);
    }

    pub fn truncate(&mut self, ino: u64, size: u64) {
        self.file_mut(ino).resize(size as usize, 0);
    }
}
