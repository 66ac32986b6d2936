//! Section 8 man pages: one for the command and one per visible subcommand
//! (`hammer2-mount(8)`, ...), as git and zfs name theirs.

use crate::generate::{Error, write};
use clap_mangen::Man;
use roff::{Roff, bold, roman};
use std::path::{Path, PathBuf};

/// A section the clap definitions do not hold (a list of mount options), added to one page.
pub struct Section {
    /// The page's name: `hammer2-mount`.
    pub page: String,
    /// The section's heading: `MOUNT OPTIONS`.
    pub title: String,
    /// Each entry's term and its meaning.
    pub entries: Vec<(String, String)>,
}

pub fn write_all(cmd: clap::Command, dir: &Path, sections: &[Section]) -> Result<Vec<PathBuf>, Error> {
    let mut cmd = cmd.disable_help_subcommand(true);
    // Builds the subcommands too: their display names (`hammer2-mount`) and usage lines.
    cmd.build();
    // Every page's footer names the package and version (a subcommand has no version of its own).
    let source = format!("{} {}", cmd.get_name(), cmd.get_version().unwrap_or_default());
    let mut written = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.push(page(sub.clone(), dir, sections, &source)?);
    }
    written.push(page(cmd, dir, sections, &source)?);
    Ok(written)
}

fn page(cmd: clap::Command, dir: &Path, sections: &[Section], source: &str) -> Result<PathBuf, Error> {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name()).to_string();
    let man = Man::new(cmd.clone()).section("8").title(name.to_uppercase()).source(source);
    let mut out = Vec::new();
    let rendered = (|| -> std::io::Result<()> {
        man.render_title(&mut out)?;
        man.render_name_section(&mut out)?;
        man.render_synopsis_section(&mut out)?;
        man.render_description_section(&mut out)?;
        if cmd.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut out)?;
        }
        for s in sections.iter().filter(|s| s.page == name) {
            extra(s).to_writer(&mut out)?;
        }
        if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
            man.render_subcommands_section(&mut out)?;
        }
        if let Some(text) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
            let mut r = Roff::new();
            r.control("SH", ["NOTES"]).text([roman(text.to_string())]);
            r.to_writer(&mut out)?;
        }
        if cmd.get_version().is_some() {
            man.render_version_section(&mut out)?;
        }
        Ok(())
    })();
    let path = dir.join("man8").join(format!("{name}.8"));
    match rendered {
        Ok(()) => write(path, &out),
        Err(source) => Err(Error::Write { path, source }),
    }
}

fn extra(s: &Section) -> Roff {
    let mut r = Roff::new();
    r.control("SH", [s.title.as_str()]);
    for (term, meaning) in &s.entries {
        r.control("TP", []).text([bold(term.as_str())]).text([roman(meaning.as_str())]);
    }
    r
}
