//! `fsck.hammer2 [-n | -y | -p] [-f] [-v] [--json] DEVICE...`
//!
//! Exit status as fsck(8), the sum of: 0 no errors, 1 errors corrected, 4 errors left
//! uncorrected, 8 operational error (a device cannot be opened, is in use, or holds no
//! hammer2 filesystem), 16 usage error, 32 cancelled by the user (SIGINT, SIGTERM).

use clap::Parser;
use hammer2_fsck::{EXIT_USAGE, Mode, Options, run_paths};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

#[derive(Parser)]
#[command(
    name = "fsck.hammer2",
    bin_name = "fsck.hammer2",
    version,
    about = "Check and repair an unmounted hammer2 filesystem",
    after_help = "Without -n, -y or -p the filesystem is only checked (as with -n). \
                  Exit status (a sum, as fsck(8)): 0 clean, 1 errors corrected, 4 errors left uncorrected, \
                  8 operational error, 16 usage error, 32 cancelled."
)]
struct Cli {
    /// Check only: open the devices read-only and change nothing.
    #[arg(short = 'n', conflicts_with_all = ["yes", "preen"])]
    no: bool,
    /// Repair everything that can be repaired, without asking.
    #[arg(short = 'y', conflicts_with = "preen")]
    yes: bool,
    /// Repair only what is safe without asking (bad copies, the free map, counts).
    #[arg(short = 'p', short_alias = 'a')]
    preen: bool,
    /// With -n: check even a filesystem that is in use (read-only; results may be
    /// inconsistent). fsck.hammer2 always checks everything; -f never allows repairs of
    /// a filesystem in use.
    #[arg(short = 'f', long)]
    force: bool,
    /// Also print the devices, notes and timing.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Write the man page or the shell completions (man|completions DIR), for scripts/install.sh.
    #[arg(long, hide = true, exclusive = true, num_args = 2, value_names = ["KIND", "DIR"])]
    generate: Option<Vec<String>>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// All devices of the filesystem (image files or block devices).
    #[arg(required = true, value_name = "DEVICE")]
    devices: Vec<PathBuf>,
}

/// The run's cancel flag, for the signal handler.
static CANCEL: OnceLock<Arc<AtomicBool>> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    if let Some(c) = CANCEL.get() {
        c.store(true, Ordering::SeqCst);
    }
}

/// The name fsck(8) runs for fstab lines of type fuse.hammer2 (`fsck -A`, a pass number):
/// this binary under another name (scripts/install.sh links it).
const FSTAB_NAME: &str = "fsck.fuse.hammer2";

/// As `fsck.fuse.hammer2 [-a|-p|-n|-y] [-C FD] [-V] SOURCE`: fsck(8)'s own flags dropped,
/// and the one fstab source (`a:b`, `UUID=`, `LABEL=`, or the one member fsck(8) resolved a
/// tag to) made the filesystem's devices, so a filesystem is checked once, as a whole.
fn fstab_args() -> Result<Vec<std::ffi::OsString>, (i32, String)> {
    let mut out = Vec::new();
    let mut it = std::env::args_os();
    out.extend(it.next());
    let mut sources = Vec::new();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        match s.as_ref() {
            // -C FD: fsck(8)'s progress descriptor; -V: its verbosity. Not ours.
            "-C" => {
                it.next();
            }
            _ if s.starts_with("-C") || s == "-V" => {}
            _ if s.starts_with('-') => out.push(a),
            _ => sources.push(a),
        }
    }
    let [source] = sources.as_slice() else {
        return Err((EXIT_USAGE, format!("usage: {FSTAB_NAME} [-a|-p|-n|-y] [-f] DEVICE[:DEVICE...]|UUID=U|LABEL=L")));
    };
    let devices = hammer2::locate::resolve(source).map_err(|e| (hammer2_fsck::EXIT_OPERATIONAL, e.to_string()))?;
    out.extend(devices.into_iter().map(Into::into));
    Ok(out)
}

fn main() {
    let invoked_for_fstab = std::env::args_os()
        .next()
        .is_some_and(|a| std::path::Path::new(&a).file_name() == Some(std::ffi::OsStr::new(FSTAB_NAME)));
    let parsed = if invoked_for_fstab {
        match fstab_args() {
            Ok(args) => Cli::try_parse_from(args),
            Err((code, e)) => {
                eprintln!("{FSTAB_NAME}: {e}");
                std::process::exit(code);
            }
        }
    } else {
        Cli::try_parse()
    };
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    if let Some(g) = &cli.generate {
        hammer2_cli::generate_and_exit("fsck.hammer2", g, <Cli as clap::CommandFactory>::command());
    }
    let mode = if cli.yes {
        Mode::Yes
    } else if cli.preen {
        Mode::Preen
    } else {
        Mode::Check
    };
    // A panic is caught and reported as an internal error (exit 8); one line, not a trace.
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("fsck.hammer2: internal error{at}: {}", hammer2_fsck::panic_message(info.payload()));
    }));
    let cancel = Arc::new(AtomicBool::new(false));
    let _ = CANCEL.set(cancel.clone());
    // SAFETY: the handler only loads an initialized OnceLock and stores to an atomic,
    // both async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let opts = Options { mode, force: cli.force, progress: !cli.json, verify_data: true, cancel };
    let out = run_paths(&cli.devices, &opts);
    if cli.json {
        // The report's own JSON, with the schema_version every command's JSON carries.
        // Plain data with string keys: serializing it cannot fail.
        let report = serde_json::to_value(&out.report).unwrap_or_default();
        println!("{}", hammer2_cli::json::document(report));
    } else if let Some(e) = &out.report.operational_error {
        eprintln!("fsck.hammer2: {}", hammer2_cli::one_line(e));
    } else {
        print!("{}", out.report.text(cli.verbose));
        if mode == Mode::Preen && out.status & hammer2_fsck::EXIT_UNCORRECTED != 0 {
            println!("UNEXPECTED INCONSISTENCY: run fsck.hammer2 -y (without -p)");
        }
    }
    std::process::exit(out.status);
}
