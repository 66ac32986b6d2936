//! `hammer2 scrub` (being written).

#[derive(clap::Args)]
pub struct Args {
    /// Devices (or a mount point).
    pub paths: Vec<std::path::PathBuf>,
}

pub fn run(_a: Args) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
