//! bash, zsh and fish completions, laid out as each shell looks for them under a share
//! directory (bash-completion loads `completions/NAME` on demand, zsh's `_NAME` from
//! `site-functions`, fish `NAME.fish` from `vendor_completions.d`).

use crate::generate::{Error, write};
use clap_complete::Shell;
use std::path::{Path, PathBuf};

pub fn write_all(mut cmd: clap::Command, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name()).to_string();
    let mut written = Vec::new();
    for (shell, file) in [
        (Shell::Bash, format!("bash-completion/completions/{name}")),
        (Shell::Zsh, format!("zsh/site-functions/_{name}")),
        (Shell::Fish, format!("fish/vendor_completions.d/{name}.fish")),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, &name, &mut buf);
        written.push(write(dir.join(file), &buf)?);
    }
    Ok(written)
}
