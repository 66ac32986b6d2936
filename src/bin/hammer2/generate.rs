//! `hammer2 generate man|completions DIR` (hidden): writes hammer2(8) and a page per
//! subcommand, or the bash, zsh and fish completions, from the clap definitions this binary
//! parses with, and prints each file written (scripts/install.sh records them for
//! `--uninstall`).

use crate::mount::options;
use anyhow::Result;
use clap::CommandFactory;
use hammer2_cli::{Kind, Section};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// What to write.
    #[arg(value_enum)]
    pub kind: Kind,
    /// A man directory (pages go to DIR/man8) or a share directory (completions).
    pub dir: PathBuf,
}

pub fn run(a: Args) -> Result<i32> {
    // The page lists the mount options in a section of their own; `--help` has them in -o's help.
    let cmd = crate::Cli::command().mut_subcommand("mount", |m| {
        m.mut_arg("options", |o| {
            o.long_help("Comma-separated mount options, may be repeated; later ones win (see MOUNT OPTIONS).")
        })
    });
    let mount_options = Section {
        page: "hammer2-mount".into(),
        title: "MOUNT OPTIONS".into(),
        entries: options::OPTIONS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    for path in hammer2_cli::generate(a.kind, cmd, &a.dir, &[mount_options])? {
        println!("{}", path.display());
    }
    Ok(0)
}
