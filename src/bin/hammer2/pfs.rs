//! `hammer2 pfs create|list|delete MOUNTPOINT [NAME]`: the PFSs and snapshots of a mounted
//! filesystem (format version 2), through the daemon's control socket; the daemon's side
//! of those requests and of `hammer2 snapshot` ([`serve`]). Exit status: 0 done, 8
//! operational error (one line: a refused name, a PFS with snapshots, a version-1
//! filesystem).

use crate::control::{Done, Op, Request};
use hammer2::FsRef;
use hammer2::snapshot::{self, PfsInfo};
use hammer2::units::human;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(after_help = "Exit status: 0 done, 8 operational error.")]
pub struct Args {
    /// Print the result as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Create an empty writable PFS (mount it with -o pfs=NAME).
    Create(Named),
    /// List every PFS and snapshot: kind, origin, creation time and commit, the bytes it
    /// references, the bytes its dead list holds and, for a snapshot, the bytes deleting it
    /// frees.
    List(Mounted),
    /// Delete a snapshot (frees what it alone holds), or a PFS that has no snapshots and is
    /// not the one mounted (frees its files).
    Delete(Named),
}

#[derive(clap::Args)]
pub struct Named {
    /// The mount point of the mounted filesystem.
    pub mountpoint: PathBuf,
    /// The PFS or snapshot name (1 to 64 bytes, no '/').
    pub name: String,
}

#[derive(clap::Args)]
pub struct Mounted {
    /// The mount point of the mounted filesystem.
    pub mountpoint: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let (op, mountpoint, name) = match a.action {
        Action::Create(n) => (Op::PfsCreate, n.mountpoint, Some(n.name)),
        Action::List(m) => (Op::PfsList, m.mountpoint, None),
        Action::Delete(n) => (Op::PfsDelete, n.mountpoint, Some(n.name)),
    };
    let req = Request { name, ..Request::from(op) };
    Ok(crate::offline::online("pfs", &mountpoint, req, a.json))
}

/// The daemon's answer to a PFS request or a snapshot request.
pub fn serve(fs: &FsRef, req: &Request) -> anyhow::Result<Done> {
    let name = || req.name.clone().ok_or_else(|| anyhow::anyhow!("bad request: no name"));
    match req.op {
        Op::PfsCreate => {
            let name = name()?;
            let tid = snapshot::create_pfs(fs, &name)?;
            tracing::info!("PFS {name} created (commit {tid})");
            Ok(Done {
                exit: 0,
                text: format!("created PFS {name}\n"),
                json: serde_json::json!({ "created": name, "tid": tid }),
            })
        }
        Op::PfsDelete => {
            let name = name()?;
            let tid = snapshot::delete(fs, &name)?;
            tracing::info!("{name} deleted (commit {tid})");
            Ok(Done {
                exit: 0,
                text: format!("deleted {name}\n"),
                json: serde_json::json!({ "deleted": name, "tid": tid }),
            })
        }
        Op::Snapshot | Op::SnapshotWritable => {
            let (name, tid) = if req.op == Op::Snapshot {
                snapshot::snapshot(fs, req.name.as_deref())?
            } else {
                snapshot::snapshot_writable(fs, req.name.as_deref())?
            };
            tracing::info!("snapshot {name} taken (commit {tid})");
            Ok(Done { exit: 0, text: format!("{name}\n"), json: serde_json::json!({ "snapshot": name, "tid": tid }) })
        }
        _ => {
            let list = snapshot::list(fs)?;
            Ok(Done { exit: 0, text: render(&list), json: serde_json::json!({ "pfs": list }) })
        }
    }
}

/// `pfs list` as text: one line per PFS, the mounted one marked with `*`.
fn render(list: &[PfsInfo]) -> String {
    let width = list.iter().map(|p| p.name.len() + 2).max().unwrap_or(4).max(6);
    let mut out = format!(
        "{:<width$} {:<8} {:<10} {:<20} {:>8} {:>10} {:>10} {:>10}\n",
        "NAME", "KIND", "ORIGIN", "CREATED", "TID", "REFER", "DEAD-LIST", "FREES"
    );
    for p in list {
        let name = if p.mounted { format!("{} *", p.name) } else { p.name.clone() };
        out += &format!(
            "{:<width$} {:<8} {:<10} {:<20} {:>8} {:>10} {:>10} {:>10}\n",
            name,
            p.kind,
            p.origin.as_deref().unwrap_or("-"),
            p.created,
            p.create_tid,
            human(p.referenced_bytes),
            human(p.dead_list_bytes),
            p.would_free_bytes.map_or("-".to_string(), human),
        );
    }
    for p in list {
        if let Some(t) = &p.resume_token {
            out += &format!("{}: an interrupted receive; resume token {t}\n", p.name);
        }
    }
    out
}
