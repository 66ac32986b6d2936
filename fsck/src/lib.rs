//! fsck.hammer2 as a library: check (and with `-y`/`-p` repair) an unmounted hammer2
//! filesystem. The binary (`main.rs`) is argument parsing and output around [`run_paths`];
//! tests and the fuzz target call [`run_devices`] on devices they opened themselves.
//!
//! The run, in order:
//! 1. `headers`: every slot of every device; the master and member states (through the
//!    engine's own probe/assemble, so fsck judges what a mount would see).
//! 2. `scan`: one walk (`hammer2::inspect::walk`) over every reachable block, reading every copy
//!    of every metadata block as it goes (`blocks`; read ahead in runs by `readahead`),
//!    checking the tree's shape (`structure`), marking space (`space`), recording inodes
//!    and entries (`namespace`) and copy placement (`copies`); data blocks are queued and
//!    verified in device order.
//! 3. The checks over everything: free map against reachable blocks (`space`), the
//!    namespace (`namespace::analyze`, which also plans the repairs), device states.
//! 4. `make_repairs` (`-y`, `-p`): rewrite bad copies, then one commit through the
//!    engine's repair session for the tree and free-map repairs (`apply_plan`), then clear
//!    damaged header slots; a
//!    second, read-only check confirms the result.
//!
//! Nothing here panics on any input, and work and memory are bounded by the devices'
//! size (see `scan` for why the walk terminates and `blocks` for the data batches).

pub mod apply_plan;
pub mod blocks;
pub mod checker;
pub mod copies;
pub mod features;
pub mod first_owners;
pub mod headers;
pub mod make_repairs;
pub mod namespace;
pub mod open;
pub mod plan;
pub mod problem;
pub mod progress;
pub mod readahead;
pub mod report;
pub mod scan;
pub mod space;
pub mod structure;

pub use checker::{Checker, HealJob};
use hammer2::inspect::{Assembly, MemberState};
use hammer2::storage::DynStorage;
use report::{Counts, DeviceLine, FindingId, Problem, Repair, Report};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Exit status bits, as fsck(8): the status is the sum of the conditions that apply.
pub const EXIT_CLEAN: i32 = 0;
pub const EXIT_CORRECTED: i32 = 1;
pub const EXIT_UNCORRECTED: i32 = 4;
pub const EXIT_OPERATIONAL: i32 = 8;
pub const EXIT_USAGE: i32 = 16;
pub const EXIT_CANCELLED: i32 = 32;

/// What fsck may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `-n`: report only; nothing is written (devices are opened read-only).
    Check,
    /// `-p`: repair only what is safe without asking (bad copies, the free map, link
    /// counts and sizes the entries agree on, entry types, header slots, the orphan list,
    /// the next inode number).
    Preen,
    /// `-y`: repair everything fsck can.
    Yes,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Check => "check",
            Mode::Preen => "preen",
            Mode::Yes => "repair",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// `-f`: with `-n`, check devices that are in use.
    pub force: bool,
    /// Show a progress bar when stderr is a terminal.
    pub progress: bool,
    /// Read and verify data blocks (the second, confirming check skips them).
    pub verify_data: bool,
    /// Set (e.g. by SIGINT) to stop at the next block.
    pub cancel: Arc<AtomicBool>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Check,
            force: false,
            progress: false,
            verify_data: true,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Why a run could not be made at all.
#[derive(Debug, thiserror::Error)]
pub enum FsckError {
    #[error("cannot open {}: {why}", path.display())]
    Open { path: PathBuf, why: String },
    #[error("{} is in use ({why}): fsck.hammer2 checks only unmounted filesystems (-n -f checks it anyway)", path.display())]
    InUse { path: PathBuf, why: String },
    #[error("{0}")]
    NotHammer2(String),
    #[error("{0}")]
    Assemble(String),
    #[error("{0}")]
    Usage(String),
    #[error("cancelled")]
    Cancelled,
    #[error("internal error (a bug, please report it): {0}")]
    Internal(String),
}

impl FsckError {
    pub fn exit_status(&self) -> i32 {
        match self {
            FsckError::Usage(_) => EXIT_USAGE,
            FsckError::Cancelled => EXIT_CANCELLED,
            _ => EXIT_OPERATIONAL,
        }
    }
}

/// A run's report and exit status.
pub struct Outcome {
    pub report: Report,
    pub status: i32,
}

/// Opens the paths (refusing devices in use) and runs.
pub fn run_paths(paths: &[PathBuf], opts: &Options) -> Outcome {
    let start = Instant::now();
    match open::open_all(paths, opts.mode, opts.force) {
        Err(e) => failed(e, opts.mode, start, paths.iter().map(|p| p.display().to_string()).collect()),
        Ok(opened) => {
            let mut out = run_devices(opened.storages, opts);
            out.report.notes.extend(opened.notes);
            out
        }
    }
}

/// Runs on devices already opened (read-only ones for `-n`).
pub fn run_devices(storages: Vec<DynStorage>, opts: &Options) -> Outcome {
    let start = Instant::now();
    let names: Vec<String> = storages.iter().map(|s| s.name()).collect();
    // Nothing in fsck is meant to panic on any input; should the engine (or fsck) have a
    // bug that does, the run still ends with a report and an operational error.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&storages, opts, start)));
    match r {
        Ok(Ok(report)) => {
            let status = report.exit_status;
            Outcome { report, status }
        }
        Ok(Err(e)) => failed(e, opts.mode, start, names),
        Err(panic) => failed(FsckError::Internal(panic_message(&panic)), opts.mode, start, names),
    }
}

/// The message of a caught panic.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

fn failed(e: FsckError, mode: Mode, start: Instant, names: Vec<String>) -> Outcome {
    let status = e.exit_status();
    let report = Report {
        mode: mode.name(),
        devices: names.into_iter().map(|path| DeviceLine { index: None, path, state: "not checked".into() }).collect(),
        uuid: None,
        label: None,
        tid: None,
        copies: None,
        findings: Vec::new(),
        per_kind: Default::default(),
        errors_found: 0,
        errors_fixed: 0,
        errors_left: 0,
        counts: Counts::default(),
        notes: Vec::new(),
        operational_error: Some(e.to_string()),
        seconds: start.elapsed().as_secs_f64(),
        read_mb_per_s: 0.0,
        exit_status: status,
    };
    Outcome { report, status }
}

fn display_name(name: &str, i: usize) -> String {
    if name == "(missing)" { format!("device {i} (missing)") } else { name.to_string() }
}

/// The whole run on opened devices.
fn run(storages: &[DynStorage], opts: &Options, start: Instant) -> Result<Report, FsckError> {
    run_once(storages, opts, start, true)
}

/// One run; `rewrite_headers` allows restoring the header of members that lost every
/// slot (and starting over, once).
fn run_once(
    storages: &[DynStorage],
    opts: &Options,
    start: Instant,
    rewrite_headers: bool,
) -> Result<Report, FsckError> {
    let (asm, slots) = headers::assemble_devices(storages)?;
    let headerless = headers::headerless(&asm, storages, &slots);
    if rewrite_headers && opts.mode != Mode::Check && !headerless.is_empty() {
        return rewrite_headers_and_run(storages, opts, start, &asm, &headerless);
    }
    let vol_opts = hammer2::Options {
        read_only: opts.mode == Mode::Check,
        cache_bytes: 16 << 20,
        degraded: true,
        background_sync: false,
        ..Default::default()
    };
    let vol = hammer2::inspect::volume(&asm, &vol_opts);
    let mut ck = Checker::new(&vol, &asm, opts);
    let clear = headers::check_slots(&asm, &slots, &headerless, &mut ck.findings);
    let behind = headers::behind(&asm, &slots, &mut ck.notes);
    for (i, (st, name, _, _)) in asm.members.iter().enumerate() {
        if let (Some(s), Some(e)) = (st, asm.master.devices.get(i))
            && s.size() < e.size
        {
            let id = ck.findings.add(Problem::DeviceSize { device: name.clone(), recorded: e.size, actual: s.size() });
            ck.findings.set(id, Repair::Unrepairable { why: "the device is smaller than the filesystem on it".into() });
        }
    }
    if asm.master.flags & hammer2_format::volume::FLAG_CLEAN == 0 {
        ck.notes.push(format!("the filesystem was not cleanly unmounted (last commit {})", asm.master.tid));
    }
    ck.notes.extend(asm.notes.iter().chain(&asm.warnings).cloned());

    ck.walk()?;

    let diff = ck.space.compare(&ck.geo, &mut ck.findings);
    let members: Vec<(String, MemberState, u64, [u8; 16])> = asm
        .members
        .iter()
        .enumerate()
        // A member identified among the headerless devices is reported there, once.
        .filter(|(i, _)| !headerless.iter().any(|h| h.index == *i))
        .map(|(i, m)| {
            let uuid = asm.master.devices.get(i).map_or([0; 16], |e| e.uuid);
            (display_name(&m.1, i), m.2, m.3, uuid)
        })
        .collect();
    ck.copies.finish(&members, &mut ck.findings);
    let features = ck.features.finish(&asm.master, &mut ck.findings);
    let placement_notes = ck.copies.notes();
    ck.notes.extend(placement_notes);
    let input = namespace::analyze::Input {
        ns: &ck.ns,
        allow_unsafe: opts.mode != Mode::Preen,
        // Version 2 keeps the counter in ROOT's PFS record.
        next_inum: ck.pfs_next_inum.unwrap_or(asm.master.next_inum),
    };
    // A PFS with a receive in progress: its names are analyzed into findings that are
    // dropped (partly applied is its normal state), and nothing is planned for it.
    let mut dropped = report::Findings::default();
    let (mut plan, paths) =
        namespace::analyze::analyze(&input, if ck.root_receiving { &mut dropped } else { &mut ck.findings });
    if ck.root_receiving {
        plan = plan::Plan::default();
        ck.notes.push(receiving_note(hammer2_format::layout::ROOT_PFS_NAME));
    }
    // The other PFSs, clones and snapshots (version 2): each namespace is analyzed the same
    // way; a writable one is repaired like ROOT's, a snapshot never (FK1).
    let mut others = Vec::new();
    for p in std::mem::take(&mut ck.pfs_namespaces) {
        let before = ck.findings.list.len();
        let input = namespace::analyze::Input {
            ns: &p.ns,
            allow_unsafe: !p.snapshot && opts.mode != Mode::Preen,
            next_inum: p.next_inum,
        };
        ck.findings.pfs = Some(p.name.clone());
        let mut dropped = report::Findings::default();
        let (mut plan, pfs_paths) =
            namespace::analyze::analyze(&input, if p.receiving { &mut dropped } else { &mut ck.findings });
        ck.findings.pfs = None;
        if p.receiving {
            plan = plan::Plan::default();
            ck.notes.push(receiving_note(&p.name));
        }
        let name = p.name.clone();
        // The walk's findings in this PFS too (stamped as it went), named by its paths.
        for f in ck.findings.list.iter_mut().filter(|f| f.pfs.as_ref() == Some(&name)) {
            f.problem.fill_paths(&|i| pfs_paths.path(i).map(|path| format!("{name}:{path}")));
        }
        if p.snapshot {
            let why = format!(
                "in snapshot {name:?}: a snapshot is read-only history and fsck does not change it; \
                 mount it read-only (-o ro,pfs={name}) to copy out what reads, then delete it \
                 (hammer2 pfs delete MOUNTPOINT {name})"
            );
            let resolved: Vec<FindingId> = plan.resolves.iter().map(|r| r.0).collect();
            for id in resolved {
                ck.findings.set(id, Repair::Unrepairable { why: why.clone() });
            }
            for f in &mut ck.findings.list[before..] {
                f.repair = Repair::Unrepairable { why: why.clone() };
            }
            plan = plan::Plan::default();
        }
        others.push(make_repairs::OtherPfs { name: p.name, snapshot: p.snapshot, plan, ns: p.ns });
    }
    let pending = ck.ns.orphans.iter().filter(|o| ck.ns.inodes.get(o).is_some_and(|i| i.nlink == 0)).count();
    if pending > 0 {
        ck.notes.push(format!("{pending} inode(s) unlinked while open will be removed at the next mount"));
    }
    let (inodes, dirs, files) = ck.ns.counts();
    ck.counts.inodes = inodes;
    ck.counts.directories = dirs;
    ck.counts.files = files;
    ck.counts.data_by_copies = ck.copies.distribution();

    let mut repaired_any = false;
    if opts.mode != Mode::Check {
        if ck.cancel.load(Ordering::Relaxed) {
            return Err(FsckError::Cancelled);
        }
        ck.progress.phase("repair");
        let work = make_repairs::Work { storages, asm: &asm, plan, others, diff, clear, behind, features };
        repaired_any = make_repairs::run(&mut ck, work);
    }
    ck.progress.finish();
    ck.findings.finish(&|i| paths.path(i));

    let mut notes = std::mem::take(&mut ck.notes);
    let mut findings = ck.findings.list.clone();
    let mut errors_left = ck.findings.found().saturating_sub(ck.findings.repaired());
    if repaired_any {
        let confirm = Options { mode: Mode::Check, progress: false, verify_data: false, ..opts.clone() };
        match run(storages, &confirm, Instant::now()) {
            Ok(second) => {
                let known: std::collections::HashSet<&str> = findings
                    .iter()
                    .filter(|f| !matches!(f.repair, Repair::Repaired { .. }))
                    .map(|f| f.message.as_str())
                    .collect();
                let new: Vec<_> = second.findings.into_iter().filter(|f| !known.contains(f.message.as_str())).collect();
                if !new.is_empty() {
                    notes.push(format!(
                        "a check after the repairs still finds {} problem(s): run fsck again",
                        new.len()
                    ));
                    errors_left += new.len() as u64;
                    findings.extend(new);
                }
            }
            Err(e) => {
                notes.push(format!("the check after the repairs could not run: {e}"));
                errors_left += 1;
            }
        }
    }
    let fixed = ck.findings.repaired();
    let mut status = EXIT_CLEAN;
    if fixed > 0 {
        status |= EXIT_CORRECTED;
    }
    if errors_left > 0 {
        status |= EXIT_UNCORRECTED;
    }
    let seconds = start.elapsed().as_secs_f64();
    ck.counts.bytes_read = ck.io.bytes.load(Ordering::Relaxed);
    ck.counts.copies_read = ck.io.copies.load(Ordering::Relaxed);
    let devices = asm
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| DeviceLine { index: Some(i), path: display_name(&m.1, i), state: m.2.name().to_string() })
        .chain(slots.iter().filter(|d| !asm.members.iter().any(|m| m.1 == d.name)).map(|d| DeviceLine {
            index: None,
            path: d.name.clone(),
            state: "not a member".into(),
        }))
        .collect();
    Ok(Report {
        mode: opts.mode.name(),
        devices,
        uuid: Some(uuid::Uuid::from_bytes(asm.master.fs_uuid).to_string()),
        label: Some(asm.master.label.clone()),
        tid: Some(asm.master.tid),
        copies: Some(asm.master.copies),
        findings,
        per_kind: ck.findings.per_kind().clone(),
        errors_found: ck.findings.found(),
        errors_fixed: fixed,
        errors_left,
        read_mb_per_s: if seconds > 0.0 { ck.counts.bytes_read as f64 / seconds / 1e6 } else { 0.0 },
        counts: ck.counts,
        notes,
        operational_error: None,
        seconds,
        exit_status: status,
    })
}

/// Members whose every header slot is damaged get the master's header (their identity is
/// still readable in the damaged slots); then the run starts over with them in.
fn rewrite_headers_and_run(
    storages: &[DynStorage],
    opts: &Options,
    start: Instant,
    asm: &Assembly,
    headerless: &[headers::Headerless],
) -> Result<Report, FsckError> {
    let mut done = Vec::new();
    for h in headerless {
        let problem = Problem::DeviceUnrecognized {
            device: h.name.clone(),
            why: format!("every volume header slot is damaged; by its uuid it is device {}", h.index),
        };
        let repair = match hammer2::repair::restore_member_header(&h.storage, h.index, &asm.master) {
            Ok(()) => Repair::Repaired { how: format!("wrote the current volume header (commit {})", asm.master.tid) },
            Err(e) => Repair::Failed { why: format!("write error: {e}") },
        };
        done.push(report::Finding { message: problem.to_string(), problem, repair, pfs: None });
    }
    if done.iter().any(|f| !matches!(f.repair, Repair::Repaired { .. })) {
        // Without its header the device stays out; report that rather than loop.
        let failed = done.iter().map(|f| f.message.clone()).collect::<Vec<_>>().join("; ");
        return Err(FsckError::Assemble(format!("could not restore a member's header: {failed}")));
    }
    let mut report = run_once(storages, opts, start, false)?;
    let n = done.len() as u64;
    report.findings.splice(0..0, done);
    let k = report.per_kind.entry("device_unrecognized").or_default();
    k.found += n;
    k.repaired += n;
    report.errors_found += n;
    report.errors_fixed += n;
    report.exit_status |= EXIT_CORRECTED;
    Ok(report)
}

/// What fsck says of a PFS it did not check the names of (SR11 in docs/DESIGN.md).
fn receiving_note(name: &str) -> String {
    format!(
        "PFS {name:?} has a receive in progress (hammer2 receive): its names are checked once the receive completes \
         (or is given up with hammer2 receive --abandon)"
    )
}
