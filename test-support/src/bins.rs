//! The workspace's binaries, found where cargo put them: beside the test executable's
//! `deps/` directory (`target/<profile>/deps/TEST-HASH` → `target/<profile>/NAME`).
//! `env!("CARGO_BIN_EXE_…")` names only the binaries of the test's own package; this finds
//! those of every member (hammer2, mkfs, fsck, the tools) the same way.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A workspace binary by name; usable wherever a program path is (`Command::new(FSX)`,
/// `.arg(HAMMER2)`). It is looked up on first use, and a missing one fails the test with
/// what to run.
#[derive(Clone, Copy, Debug)]
pub struct Bin(pub &'static str);

impl Bin {
    pub fn path(&self) -> &'static Path {
        // Found once per test process; the few paths live as long as it does.
        static FOUND: Mutex<BTreeMap<&'static str, &'static Path>> = Mutex::new(BTreeMap::new());
        let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
        found.entry(self.0).or_insert_with(|| Box::leak(locate(self.0).into_boxed_path()))
    }
}

impl AsRef<OsStr> for Bin {
    fn as_ref(&self) -> &OsStr {
        self.path().as_os_str()
    }
}

impl AsRef<Path> for Bin {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

/// `hammer2`, the daemon and admin tool.
pub const HAMMER2: Bin = Bin("hammer2");
/// `mkfs-hammer2` (installed as `mkfs.hammer2`).
pub const MKFS: Bin = Bin("mkfs-hammer2");
/// `fsck-hammer2` (installed as `fsck.hammer2`).
pub const FSCK: Bin = Bin("fsck-hammer2");
/// `hammer2-fsx`, the exerciser of the `tools` member.
pub const FSX: Bin = Bin("hammer2-fsx");

/// The path of binary `name` of this build; panics with what to run when it is missing
/// (`cargo test --test X` builds only the binaries of X's own package).
pub fn locate(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/TEST-HASH: the binaries are one level above deps/.
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --release --workspace` first (or the tests with \
         `cargo test --workspace`); `cargo test --test X` builds only the binaries of X's own package",
        p.display()
    );
    p
}
