//! `hammer2 mount [-f] [-o OPTIONS] DEVICE... MOUNTPOINT`: serve a filesystem through FUSE.
//!
//! By default the command forks; the child checks the mount point, opens and validates the
//! devices, mounts, and only then tells the waiting parent to exit 0. Bad input therefore
//! ends as one line on stderr and exit 1, before anything is mounted or written. The daemon
//! runs until the filesystem is unmounted (umount, fusermount3 -u, or SIGTERM/SIGINT/SIGHUP)
//! and exits after the final commit.

mod daemon;
mod kernel;
mod logging;
mod mountpoint;
pub mod options;
mod signals;

use crate::devices;
use crate::fuse::{self, Hammer2Fuse, Outcome};
use anyhow::{Context, Result, anyhow, bail};
use daemon::{Readiness, Role};
use hammer2::Fs;
use hammer2::storage::claim::OpenMode;
use options::MountOptions;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
#[command(override_usage = "hammer2 mount [-f] [-o OPTIONS] DEVICE... MOUNTPOINT")]
pub struct Args {
    /// Stay in the foreground (log to stderr) instead of detaching once mounted.
    #[arg(short = 'f', long)]
    pub foreground: bool,
    #[arg(
        short = 'o',
        value_name = "OPTIONS",
        help = "Comma-separated mount options, may be repeated (--help lists them)",
        long_help = options::help()
    )]
    pub options: Vec<String>,
    /// The filesystem's devices (image files, block devices or NBD URIs), then the mount point.
    #[arg(value_name = "PATH", num_args = 2.., required = true)]
    pub paths: Vec<PathBuf>,
}

/// glibc gives each thread that allocates its own arena, up to 8 per CPU; blocks allocated
/// by one worker and freed by the committer then leave every arena fragmented, and the
/// daemon's memory grows well past `cache=` (measured: 378 MiB for 256M under 4 KiB random
/// writes, 327 MiB with two arenas). Must run before any thread starts.
///
/// And a fixed mmap threshold of 4 MiB: glibc otherwise raises it to the size of the
/// largest mapped block freed; a large buffer freed once (fuser's 16 MiB request buffer,
/// when it served the daemon) then makes every later one come from the heap, where calloc
/// clears, so touches, all of it. With fuser's four ring sessions the daemon held 93 MiB
/// before its first request (7.5 MiB with the fixed threshold) and peaked at 194 MiB over
/// 20,000 creates (113 MiB).
fn tune_malloc() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes an allocator setting; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

/// FUSE worker threads: requests are served in parallel (a commit or a slow read in one
/// does not stall the others). A worker mostly waits for a device, so there are more of them
/// than CPUs, but not many more: every extra one costs wakeups (on 2 CPUs, 8 workers did
/// file creates 5-20% faster than 16, and random reads 10-15% slower; 2 workers halved random
/// I/O). `-o threads=N` overrides.
fn worker_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cpus * 4).clamp(8, 64)
}

pub fn run(a: Args) -> Result<i32> {
    tune_malloc();
    let opts = options::parse(&a.options)?;
    // num_args = 2.. guarantees a device and a mount point.
    let (mountpoint, devices) = a.paths.split_last().context("no mount point given")?;
    // Paths are made absolute (the daemon changes directory); NBD URIs are kept as written.
    let devices: Vec<PathBuf> = devices
        .iter()
        .map(|d| match devices::specs(std::slice::from_ref(d))?.pop() {
            Some(hammer2::storage::DeviceSpec::Path(_)) => Ok(std::path::absolute(d).unwrap_or(d.clone())),
            _ => Ok(d.clone()),
        })
        .collect::<Result<_>>()?;
    let master = opts.master.as_deref().map(|m| master_index(m, &devices)).transpose()?;
    let mut ready = if a.foreground {
        Readiness::Foreground
    } else {
        match daemon::fork()? {
            Role::Parent(verdict) => return verdict.map(|()| 0),
            Role::Child(ready) => ready,
        }
    };
    signals::block();
    let served = ready.log_to(opts.logfile.as_deref()).and_then(|()| {
        logging::init(opts.debug, ready.is_background());
        serve(&opts, &devices, mountpoint, master, &mut ready)
    });
    match served {
        Ok(code) => Ok(code),
        Err(e) if ready.fail(&e) => Ok(1),
        Err(e) if ready.is_background() => {
            tracing::error!("{}", hammer2_cli::one_line(&e));
            Ok(1)
        }
        Err(e) => Err(e),
    }
}

/// `mount -o remount,OPTIONS MOUNTPOINT` (through the helper). The kernel applies the mount
/// flags; the daemon is told about read-only, before the kernel for rw (so it takes the
/// writes the kernel then lets through) and after it for ro (the kernel first refuses new
/// writers, and fails while a file is open for writing; then the daemon commits everything
/// and refuses changes). Without `ro` or `rw` the mount stays as it is. Filesystem options
/// (cache=, threads=, ...) are checked but keep the values the mount started with: mount(8)
/// repeats an fstab line's options on a remount.
pub fn remount(mountpoint: &Path, options: &[String]) -> Result<i32> {
    use crate::control::{Op, client};
    let mut opts = options::parse(options)?;
    // Nothing is remounted unless it is ours (the helper may be called by hand).
    let mountpoint = &client::mount_point(mountpoint)?;
    let given = options.iter().flat_map(|o| o.split(',')).any(|o| o == "ro" || o == "rw");
    if !given {
        opts.read_only = mounted_read_only(mountpoint)?;
    }
    if !opts.read_only {
        client::call(mountpoint, Op::ReadWrite, &mut |_| {})?;
    }
    kernel::remount(mountpoint, &opts).with_context(|| format!("cannot remount {}", mountpoint.display()))?;
    if opts.read_only {
        client::call(mountpoint, Op::ReadOnly, &mut |_| {})
            .context("the mount is read-only now, but the daemon could not commit")?;
    }
    Ok(0)
}

/// Whether the mount on `mountpoint` is read-only now (statvfs ST_RDONLY).
fn mounted_read_only(mountpoint: &Path) -> Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: statvfs fills the zeroed struct we pass; the path outlives the call.
    let (rc, st) = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(p.as_ptr(), &mut st), st)
    };
    if rc != 0 {
        bail!("cannot stat {}: {}", mountpoint.display(), std::io::Error::last_os_error());
    }
    Ok(st.f_flag & libc::ST_RDONLY != 0)
}

/// `master=DEVICE` names one of the given devices (by path, or another name for it).
fn master_index(master: &Path, devices: &[PathBuf]) -> Result<usize> {
    let same = |d: &PathBuf| {
        d == master || std::fs::canonicalize(d).ok().is_some_and(|c| std::fs::canonicalize(master).ok() == Some(c))
    };
    devices.iter().position(same).ok_or_else(|| anyhow!("master={} is not one of the devices given", master.display()))
}

fn serve(
    opts: &MountOptions,
    devices: &[PathBuf],
    mountpoint: &Path,
    master: Option<usize>,
    ready: &mut Readiness,
) -> Result<i32> {
    let mountpoint = mountpoint::check(mountpoint, opts.nonempty)?;
    // A read-only mount holds a shared claim: no writer may change the devices under it.
    let mode = if opts.read_only { OpenMode::Shared } else { OpenMode::Exclusive };
    let specs = devices::specs(devices)?;
    // A degraded mount goes on without a remote device whose server is down, and waits for it.
    let (storages, unreachable) = if opts.degraded {
        devices::open_specs_degraded(&specs, mode, opts.nbd_timeout)?
    } else {
        (devices::open_specs(&specs, mode, opts.nbd_timeout)?, Vec::new())
    };
    let memory = opts.cache_bytes.unwrap_or(hammer2::DEFAULT_MEMORY);
    let mut engine = hammer2::Options {
        read_only: opts.read_only,
        degraded: opts.degraded,
        master,
        resync_slice_bytes: crate::resync_slice_bytes(),
        autoresync: !opts.no_autoresync,
        ..hammer2::Options::with_memory(memory)
    };
    if let Some(c) = opts.compression {
        engine.compression = Some(c);
    }
    if let Some(p) = &opts.pfs {
        engine.pfs = p.clone();
    }
    if let Some(s) = opts.sync_interval {
        engine.sync_interval = s;
    }
    let fs = Fs::mount(storages, engine).map_err(|e| anyhow!("{e}"))?;
    for (spec, settings, why) in unreachable {
        fs.await_device(spec, settings, why);
    }
    // Online info/scrub/resync reach the engine through this socket while the session runs.
    let kernel = std::sync::Arc::new(std::sync::OnceLock::new());
    let _control = crate::control::server::start(
        fs.downgrade(),
        crate::control::server::Served {
            devices: source_name(devices),
            mountpoint: mountpoint.clone(),
            nbd_timeout: opts.nbd_timeout,
            kernel: kernel.clone(),
        },
    );
    let outcome = Outcome::default();
    let want_uring = !opts.no_uring
        && fuse::uring::usable().inspect_err(|e| tracing::info!("FUSE over io_uring is not used: {e}")).is_ok();
    let adapter = Hammer2Fuse::new(fs, outcome.clone(), want_uring)
        .context("cannot start the FUSE adapter")?
        .with_snapdir(opts.snapdir);
    let conn =
        connect(&mountpoint, opts, devices).map_err(|e| anyhow!("cannot mount on {}: {e}", mountpoint.display()))?;
    let conn = std::sync::Arc::new(conn);
    let notifier = fuse::Notifier::new(conn.clone());
    let _ = adapter.notifier().set(notifier.clone());
    let _ = kernel.set(notifier);
    let adapter = std::sync::Arc::new(adapter);
    // The kernel sends INIT first; a handshake that negotiated the ring holds every other
    // request until the queues are registered, so failing to start them fails the mount.
    let rings = fuse::devfuse::handshake(&conn, &*adapter)
        .context("the FUSE handshake failed")
        .and_then(|()| {
            let threads = opts.uring_threads.unwrap_or(fuse::uring::DEFAULT_THREADS);
            fuse::uring::start(conn.as_fd(), &adapter, threads).context("cannot start FUSE over io_uring")
        })
        .inspect_err(|_| kernel::unmount(&mountpoint))?;
    let signal_conn = conn.try_clone().context("cannot copy the FUSE connection")?;
    signals::spawn_waiter(signal_conn, mountpoint.clone()).context("cannot start the signal thread")?;
    raise_readahead(&mountpoint);
    let keep_stderr = !ready.is_background() || opts.logfile.is_some() || logging::detach();
    ready.ready(keep_stderr)?;
    let transport = if rings.is_some() { "FUSE over io_uring" } else { "/dev/fuse" };
    tracing::info!("serving {} on {} through {transport}", source_name(devices), mountpoint.display());
    // With the ring, /dev/fuse carries only FORGET and INTERRUPT (and every request if the
    // kernel gives the ring up): two workers are enough.
    let threads = if rings.is_some() { 2 } else { opts.threads.unwrap_or_else(worker_threads) };
    let served = fuse::devfuse::serve(&conn, &adapter, threads);
    if let Some(r) = rings {
        r.join();
    }
    // Every thread that served has stopped: the adapter is ours alone for the final commit.
    match std::sync::Arc::try_unwrap(adapter) {
        Ok(mut a) => a.finish(),
        Err(_) => bail!("a FUSE thread still ran at unmount; final commit skipped"),
    }
    served.context("the FUSE connection failed")?;
    match outcome.get() {
        Some(Ok(())) => Ok(0),
        Some(Err(e)) => bail!("{e}"),
        None => bail!("the FUSE session ended without the final commit"),
    }
}

/// Mounts and returns the connection: with mount(2) as root, else through fusermount3
/// (see `kernel`).
fn connect(mountpoint: &Path, opts: &MountOptions, devices: &[PathBuf]) -> std::io::Result<std::os::fd::OwnedFd> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return kernel::mount_user(mountpoint, &source_name(devices), opts);
    }
    kernel::mount(mountpoint, &source_name(devices), opts)
}

/// What /proc/mounts shows as the source: the devices, `:`-separated (as the mount helper
/// takes them).
fn source_name(devices: &[PathBuf]) -> String {
    devices.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":")
}

/// The kernel starts FUSE mounts with 128 KiB of readahead. With 4 MiB, four reads of our
/// largest size (1 MiB) are in flight, on workers that verify and copy in parallel: a cold
/// 1 GiB read (2 copies, 2-vCPU VM) ran at 921-1,100 MB/s through the ring and 1.1 GB/s
/// through /dev/fuse, against 646-728 and 665-737 MB/s with 1 MiB; 8 and 16 MiB added
/// nothing. Best effort: the mount works without it.
fn raise_readahead(mountpoint: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut dev = info.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 4 && Path::new(f[4]) == mountpoint).then(|| f[2].to_string())
    });
    if let Some(dev) = dev.next_back() {
        let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
        if let Err(e) = std::fs::write(&path, "4096") {
            tracing::debug!("cannot raise readahead ({path}): {e}");
        }
    }
}
