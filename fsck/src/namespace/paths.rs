//! Names for inodes in messages: each inode's path through the entry chosen as its link
//! (a directory's parent entry, a file's first entry).

use hammer2_format::layout::ROOT_INUM;
use std::collections::HashMap;

/// Deeper chains are cut short (a loop cannot make a name infinite).
const MAX_DEPTH: usize = 256;

#[derive(Default)]
pub struct Paths {
    /// inum -> (directory, name) of its link.
    link: HashMap<u64, (u64, String)>,
}

impl Paths {
    /// Records the link of `inum` unless it already has one.
    pub fn add(&mut self, inum: u64, dir: u64, name: &[u8]) {
        self.link.entry(inum).or_insert_with(|| (dir, String::from_utf8_lossy(name).into_owned()));
    }

    /// Records the link of `inum`, replacing any earlier one.
    pub fn set(&mut self, inum: u64, dir: u64, name: &[u8]) {
        self.link.insert(inum, (dir, String::from_utf8_lossy(name).into_owned()));
    }

    /// The path of `inum` when a chain of links leads to the root.
    pub fn path(&self, inum: u64) -> Option<String> {
        if inum == ROOT_INUM {
            return Some("/".to_string());
        }
        let mut parts = Vec::new();
        let mut cur = inum;
        for _ in 0..MAX_DEPTH {
            let (dir, name) = self.link.get(&cur)?;
            parts.push(name.as_str());
            if *dir == ROOT_INUM {
                parts.reverse();
                return Some(format!("/{}", parts.join("/")));
            }
            cur = *dir;
        }
        None
    }
}
