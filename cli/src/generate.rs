//! Man pages and shell completions of the hammer2 commands, made from their clap definitions
//! by the installed binaries themselves (`hammer2 generate`, `mkfs.hammer2 --generate`,
//! `fsck.hammer2 --generate`, all hidden). Made by the binary rather than a build script so
//! that what a page documents is what that binary parses: a build script cannot see a
//! binary's clap definitions without a second copy of them, and scripts/install.sh gets the
//! list of files written to remove on `--uninstall`.

pub use crate::man::Section;
use crate::{completions, man};
use std::path::{Path, PathBuf};

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Section 8 pages, under DIR/man8 (DIR is a man directory such as /usr/share/man).
    Man,
    /// bash, zsh and fish completions, under DIR in each shell's conventional layout (DIR is a
    /// share directory such as /usr/share).
    Completions,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// Writes the pages or completions of `cmd` (and of its visible subcommands) under `dir`,
/// with `sections` added to the pages they name. Returns the files written.
pub fn generate(kind: Kind, cmd: clap::Command, dir: &Path, sections: &[Section]) -> Result<Vec<PathBuf>, Error> {
    match kind {
        Kind::Man => man::write_all(cmd, dir, sections),
        Kind::Completions => completions::write_all(cmd, dir),
    }
}

/// Creates `path`'s directory and writes `bytes` to it.
pub(crate) fn write(path: PathBuf, bytes: &[u8]) -> Result<PathBuf, Error> {
    let made = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&path, bytes));
    match made {
        Ok(()) => Ok(path),
        Err(source) => Err(Error::Write { path, source }),
    }
}

/// `--generate man|completions DIR` of a one-command binary (mkfs.hammer2, fsck.hammer2):
/// writes its page or completions, prints each file, and exits (status 1 with one line
/// naming `prog` on failure).
pub fn generate_and_exit(prog: &str, args: &[String], cmd: clap::Command) -> ! {
    use clap::ValueEnum;
    let [kind, dir] = args else { unreachable!("clap takes exactly two values") };
    let done = Kind::from_str(kind, false)
        .map_err(|e| format!("--generate: {e}"))
        .and_then(|k| generate(k, cmd, dir.as_ref(), &[]).map_err(|e| e.to_string()));
    match done {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("{prog}: {e}");
            std::process::exit(1)
        }
    }
}
