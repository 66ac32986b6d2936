//! Findings (a problem and whether it was repaired), the summary, and the two output
//! forms: text for people, one JSON object for scripts.

use crate::problem::bytes;
pub use crate::problem::{BlockAt, EntryAt, Problem};
use serde::Serialize;
use std::collections::BTreeMap;

/// What happened to a finding.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Repair {
    /// Nothing was attempted (`-n`, or `-p` for a repair that is not safe without asking).
    NotAttempted,
    Repaired {
        how: String,
    },
    /// fsck cannot repair this (with the reason, and what to do).
    Unrepairable {
        why: String,
    },
    Failed {
        why: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    #[serde(flatten)]
    pub problem: Problem,
    pub message: String,
    pub repair: Repair,
    /// The PFS, clone or snapshot (other than ROOT) whose trees the finding is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pfs: Option<String>,
}

/// Findings, with a cap per kind so that a device full of bad copies does not turn into
/// millions of stored findings: past the cap only counts are kept.
#[derive(Debug, Default)]
pub struct Findings {
    pub list: Vec<Finding>,
    per_kind: BTreeMap<&'static str, KindCount>,
    /// The PFS (other than ROOT) the walk is in: findings added meanwhile are in it.
    pub pfs: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct KindCount {
    pub found: u64,
    pub repaired: u64,
    /// Found beyond the cap: counted, not listed.
    pub unlisted: u64,
}

/// Findings kept in detail per kind.
pub const MAX_LISTED_PER_KIND: u64 = 1000;

/// Refers to a finding, listed or not, so a repair can mark it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FindingId {
    kind: &'static str,
    index: Option<usize>,
}

impl Findings {
    pub fn add(&mut self, problem: Problem) -> FindingId {
        let kind = problem.kind();
        let c = self.per_kind.entry(kind).or_default();
        c.found += 1;
        if c.found > MAX_LISTED_PER_KIND {
            c.unlisted += 1;
            return FindingId { kind, index: None };
        }
        self.list.push(Finding {
            problem,
            message: String::new(),
            repair: Repair::NotAttempted,
            pfs: self.pfs.clone(),
        });
        FindingId { kind, index: Some(self.list.len() - 1) }
    }

    pub fn set(&mut self, id: FindingId, repair: Repair) {
        let repaired = matches!(repair, Repair::Repaired { .. });
        let was = match id.index.and_then(|i| self.list.get_mut(i)) {
            Some(f) => {
                let was = matches!(f.repair, Repair::Repaired { .. });
                f.repair = repair;
                was
            }
            None => false,
        };
        if repaired && !was {
            self.per_kind.entry(id.kind).or_default().repaired += 1;
        }
    }

    pub fn get(&self, id: FindingId) -> Option<&Finding> {
        id.index.and_then(|i| self.list.get(i))
    }

    pub fn get_mut(&mut self, id: FindingId) -> Option<&mut Finding> {
        id.index.and_then(|i| self.list.get_mut(i))
    }

    pub fn found(&self) -> u64 {
        self.per_kind.values().map(|c| c.found).sum()
    }
    pub fn repaired(&self) -> u64 {
        self.per_kind.values().map(|c| c.repaired).sum()
    }
    pub fn per_kind(&self) -> &BTreeMap<&'static str, KindCount> {
        &self.per_kind
    }
    pub fn is_empty(&self) -> bool {
        self.per_kind.is_empty()
    }

    /// Fills paths and messages (after the namespace check can name inodes): `path` names
    /// ROOT's inodes; another PFS's findings have their paths filled already (`NAME:/path`,
    /// `run_once`), and a message that shows no such path says which PFS it is about.
    pub fn finish(&mut self, path: &dyn Fn(u64) -> Option<String>) {
        for f in &mut self.list {
            if f.pfs.is_none() {
                f.problem.fill_paths(path);
            }
            f.message = f.problem.to_string();
            if let Some(p) = &f.pfs
                && !f.message.contains(&format!("{p}:/"))
            {
                f.message = format!("in PFS {p:?}: {}", f.message);
            }
        }
    }
}

/// Counts of what was checked.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    /// Distinct blocks reached (each counted once, whatever its number of copies).
    pub blocks: u64,
    pub data_blocks: u64,
    pub metadata_blocks: u64,
    /// Copies read and verified.
    pub copies_read: u64,
    /// Bytes read from the devices (every copy).
    pub bytes_read: u64,
    /// Bytes of the blocks reached (one copy's worth).
    pub bytes_allocated: u64,
    pub inodes: u64,
    pub directories: u64,
    pub files: u64,
    pub entries: u64,
    /// DATA blocks by their number of copies (per-file copies, VC2): only counts present.
    pub data_by_copies: Vec<DataByCopies>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct DataByCopies {
    pub copies: u8,
    pub blocks: u64,
    /// Bytes of one copy of each.
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceLine {
    pub index: Option<usize>,
    pub path: String,
    pub state: String,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub devices: Vec<DeviceLine>,
    pub uuid: Option<String>,
    pub label: Option<String>,
    pub tid: Option<u64>,
    pub copies: Option<u8>,
    pub findings: Vec<Finding>,
    pub per_kind: BTreeMap<&'static str, KindCount>,
    pub errors_found: u64,
    pub errors_fixed: u64,
    pub errors_left: u64,
    pub counts: Counts,
    pub notes: Vec<String>,
    /// Set when the run could not be made (exit status 8 or 32).
    pub operational_error: Option<String>,
    pub seconds: f64,
    /// Bytes read per second (every copy), in MB/s (10^6 bytes).
    pub read_mb_per_s: f64,
    pub exit_status: i32,
}

impl Report {
    pub fn json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"serialization_error\":\"{e}\"}}"))
    }

    pub fn text(&self, verbose: bool) -> String {
        let mut s = String::new();
        if let (Some(uuid), Some(tid)) = (&self.uuid, self.tid) {
            let label =
                self.label.as_deref().filter(|l| !l.is_empty()).map(|l| format!(" \"{l}\"")).unwrap_or_default();
            s += &format!(
                "filesystem {uuid}{label}: commit {tid}, {} device(s), copies {}\n",
                self.devices.iter().filter(|d| d.index.is_some()).count(),
                self.copies.unwrap_or(0)
            );
        }
        if verbose {
            for d in &self.devices {
                let idx = d.index.map_or("-".to_string(), |i| i.to_string());
                s += &format!("  device {idx}: {} ({})\n", d.path, d.state);
            }
        }
        for f in &self.findings {
            let status = match &f.repair {
                Repair::NotAttempted => String::new(),
                Repair::Repaired { how } => format!(" -- REPAIRED: {how}"),
                Repair::Unrepairable { why } => format!(" -- NOT REPAIRED: {why}"),
                Repair::Failed { why } => format!(" -- REPAIR FAILED: {why}"),
            };
            s += &format!("{}{status}\n", f.message);
        }
        for (kind, c) in &self.per_kind {
            if c.unlisted > 0 {
                s += &format!("... and {} more of kind {kind} (not listed)\n", c.unlisted);
            }
        }
        if verbose || self.errors_found == 0 {
            for n in &self.notes {
                s += &format!("note: {n}\n");
            }
        }
        let c = &self.counts;
        s += &format!(
            "{} blocks ({} data, {} metadata; {} per copy), {} inodes ({} directories, {} files), {} entries\n",
            c.blocks,
            c.data_blocks,
            c.metadata_blocks,
            bytes(c.bytes_allocated),
            c.inodes,
            c.directories,
            c.files,
            c.entries
        );
        s += &format!(
            "{} read ({} copies) in {:.2} s: {:.0} MB/s\n",
            bytes(c.bytes_read),
            c.copies_read,
            self.seconds,
            self.read_mb_per_s
        );
        s += &format!("{} error(s) found, {} fixed, {} left\n", self.errors_found, self.errors_fixed, self.errors_left);
        s
    }
}
