//! `hammer2 send [--from BASE] MOUNTPOINT SNAPSHOT > STREAM` and `hammer2 receive
//! MOUNTPOINT [NAME] < STREAM` (docs/SEND-STREAM.md), through the daemon that holds the
//! devices. `send` passes the daemon its standard output (SCM_RIGHTS), which the daemon
//! writes the stream to; the summary goes to standard error. `receive` first copies the
//! stream into an unlinked spool file and checks it whole (every record, the end record),
//! so a damaged stream is refused before anything changes; the daemon then applies the
//! spool to the mounted PFS and takes the snapshot. A stream that was cut (its sender or
//! the pipe stopped) is applied up to its last checkpoint and the command prints the
//! resume token (SR8): `hammer2 send --resume-token TOKEN` sends the rest, which `hammer2
//! receive --resume` applies (SR9). The daemon's side is [`serve`]. Exit status: 0 done,
//! 8 operational error (one line).

use crate::control::{Done, Op, Progress, Request};
use anyhow::{Context, anyhow, bail};
use hammer2::FsRef;
use hammer2::send::Summary;
use hammer2::units::human;
use std::io::{BufReader, BufWriter, IsTerminal, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
#[command(after_help = "Exit status: 0 done, 8 operational error.\n\
    Example: hammer2 send --from daily-1 /mnt daily-2 | ssh backup hammer2 receive /srv/mirror")]
pub struct SendArgs {
    /// Print the summary (records, bytes, rate) as JSON, on standard error.
    #[arg(long)]
    pub json: bool,
    /// Send only what changed since BASE, an older snapshot of the same PFS that the
    /// receiver holds (an incremental stream).
    #[arg(long, value_name = "BASE")]
    pub from: Option<String>,
    /// Continue the stream an interrupted receive stopped in: TOKEN is what `hammer2
    /// receive` printed (or `hammer2 pfs list` shows on the receiver). Give the same
    /// SNAPSHOT and --from as the interrupted send.
    #[arg(long, value_name = "TOKEN")]
    pub resume_token: Option<String>,
    /// The mount point of the mounted filesystem that holds the snapshot.
    pub mountpoint: PathBuf,
    /// The snapshot to send.
    pub snapshot: String,
}

#[derive(clap::Args)]
#[command(after_help = "Exit status: 0 done, 8 operational error.")]
pub struct ReceiveArgs {
    /// Print the summary (records, bytes, rate) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Directory for the spool the stream is checked in before it is applied (default:
    /// $TMPDIR, else /tmp); it needs room for the whole stream and is never left behind.
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Accept a resumed stream (`hammer2 send --resume-token`) that continues the
    /// interrupted receive in this PFS.
    #[arg(long)]
    pub resume: bool,
    /// Give up the interrupted receive in this PFS instead (no stream is read): its files
    /// are shown again as they are, partly updated, and another stream may be received.
    #[arg(long, conflicts_with_all = ["resume", "name"])]
    pub abandon: bool,
    /// The mount point of the receiving PFS: new and empty for a full stream, the PFS that
    /// received the base for an incremental one.
    pub mountpoint: PathBuf,
    /// The new snapshot's name (default: the sender's snapshot name).
    pub name: Option<String>,
}

pub fn run_send(a: SendArgs) -> anyhow::Result<i32> {
    let json = a.json;
    let r = (|| {
        let stdout = std::io::stdout();
        if stdout.is_terminal() {
            bail!("standard output is a terminal: redirect the stream to a file or a pipe");
        }
        if let Some(t) = &a.resume_token {
            hammer2::send::ResumeToken::parse(t)?;
        }
        let req =
            Request { name: Some(a.snapshot), from: a.from, resume_token: a.resume_token, ..Request::from(Op::Send) };
        call(&a.mountpoint, req, stdout.as_fd(), "send", json)
    })();
    match r {
        Ok(d) => {
            if json {
                eprintln!("{}", hammer2_cli::json::document(d.json));
            } else {
                eprint!("{}", d.text);
            }
            Ok(d.exit)
        }
        Err(e) => {
            // Standard output holds the stream: everything else goes to standard error.
            let msg = hammer2_cli::one_line(&e);
            eprintln!("hammer2 send: {msg}");
            if json {
                eprintln!("{}", hammer2_cli::json::error(&msg, 8));
            }
            Ok(8)
        }
    }
}

pub fn run_receive(a: ReceiveArgs) -> anyhow::Result<i32> {
    let json = a.json;
    if a.abandon {
        let req = Request { abandon: true, ..Request::from(Op::Receive) };
        let r = crate::control::client::call_with(&a.mountpoint, req, None, &mut |_| {});
        return Ok(match r {
            Ok(d) => {
                if json {
                    println!("{}", hammer2_cli::json::document(d.json));
                } else {
                    print!("{}", d.text);
                }
                d.exit
            }
            Err(e) => crate::offline::operational("receive", &e, json),
        });
    }
    let r = (|| {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            bail!(
                "standard input is a terminal: give the stream on standard input (hammer2 receive MOUNTPOINT < STREAM)"
            );
        }
        let dir = a.spool.clone().unwrap_or_else(std::env::temp_dir);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = dir.join(format!(".hammer2-receive-{}-{nanos}", std::process::id()));
        let mut spool = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot make the spool file in {}", dir.display()))?;
        // Unlinked at once: nothing is left behind, whatever happens next.
        let _ = std::fs::remove_file(&path);
        std::io::copy(&mut stdin.lock(), &mut spool)
            .with_context(|| format!("cannot spool the stream in {}", dir.display()))?;
        spool.rewind()?;
        // A damaged stream changes nothing (SR1); a cut one is applied up to its last
        // checkpoint and can be resumed (SR8).
        match hammer2::send::stream::verify(BufReader::with_capacity(1 << 20, &spool)) {
            Err(e) if !e.is_cut() => return Err(e.into()),
            _ => {}
        }
        spool.rewind()?;
        let req = Request { name: a.name.clone(), resume: a.resume, ..Request::from(Op::Receive) };
        call(&a.mountpoint, req, spool.as_fd(), "receive", json)
    })();
    match r {
        Ok(d) => {
            if json {
                println!("{}", hammer2_cli::json::document(d.json));
            } else {
                print!("{}", d.text);
            }
            Ok(d.exit)
        }
        Err(e) => Ok(crate::offline::operational("receive", &e, json)),
    }
}

fn call(
    mountpoint: &std::path::Path,
    req: Request,
    fd: std::os::fd::BorrowedFd<'_>,
    what: &str,
    json: bool,
) -> anyhow::Result<Done> {
    let pb = crate::progress::Bar::new(what, json);
    let done =
        crate::control::client::call_with(mountpoint, req, Some(fd), &mut |p| pb.update(p.bytes, p.total, p.message));
    pb.finish();
    done
}

/// The daemon's side: the stream of a snapshot written to the descriptor passed, or the
/// stream read from it applied to the mounted PFS.
pub fn serve(
    fs: &FsRef,
    req: &Request,
    fd: Option<OwnedFd>,
    kernel: &std::sync::OnceLock<crate::fuse::Notifier>,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<Done> {
    if req.op == Op::Receive && req.abandon {
        // `receive --abandon`: no stream.
        let had = hammer2::send::abandon(fs)?;
        let text = match had {
            Some(t) => format!("gave up the interrupted receive at record {}\n", t.position),
            None => "no receive in progress\n".to_string(),
        };
        return Ok(Done { exit: 0, text, json: serde_json::json!({ "abandoned": had.map(|t| t.to_text()) }) });
    }
    let file = std::fs::File::from(fd.ok_or_else(|| anyhow!("bad request: no descriptor passed"))?);
    let mut last = Instant::now();
    let mut tick = |bytes: u64, total: u64| {
        if last.elapsed() >= Duration::from_millis(200) {
            last = Instant::now();
            progress(Progress { bytes, total, message: String::new() });
        }
    };
    match req.op {
        Op::Send => {
            let name = req.name.as_deref().ok_or_else(|| anyhow!("bad request: no snapshot named"))?;
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let resume = req.resume_token.as_deref().map(hammer2::send::ResumeToken::parse).transpose()?;
            let opts = hammer2::send::SendOptions { resume, ..Default::default() };
            let sum = hammer2::send::send_with(fs, name, req.from.as_deref(), &opts, &mut out, &mut |b| tick(b, 0))?;
            out.flush().context("cannot write the stream")?;
            tracing::info!("sent {name}: {} records, {} bytes", sum.records, sum.bytes);
            let kind = match (req.from.is_some(), resume) {
                (_, Some(t)) => format!("resumed at record {}", t.position),
                (true, None) => "incremental".into(),
                (false, None) => "full".into(),
            };
            Ok(done(format!("sent {name} ({kind})"), &sum, serde_json::json!({ "snapshot": name, "from": req.from })))
        }
        _ => {
            let total = file.metadata().map_or(0, |m| m.len());
            let mut input = BufReader::with_capacity(1 << 20, file);
            let r = hammer2::send::receive(fs, &mut input, req.name.as_deref(), req.resume, &mut |b| tick(b, total))?;
            forget(kernel, &r);
            let (sum, name) = (&r.summary, &r.name);
            tracing::info!("received snapshot {name}: {} records, {} bytes", sum.records, sum.bytes);
            Ok(done(format!("received snapshot {name}"), sum, serde_json::json!({ "snapshot": name })))
        }
    }
}

/// Tells the kernel to drop what it caches of the files the receive changed (their pages,
/// attributes, directory listings) and the names it removed: the mounted PFS changed
/// underneath it. An inode the kernel does not know answers ENOENT, which is fine.
fn forget(kernel: &std::sync::OnceLock<crate::fuse::Notifier>, r: &hammer2::send::Received) {
    let Some(n) = kernel.get() else { return };
    for &ino in &r.changed {
        let _ = n.inval_inode(ino, 0, 0);
    }
    for (dir, name) in &r.removed {
        let _ = n.inval_entry(*dir, name);
    }
}

fn done(what: String, sum: &Summary, mut json: serde_json::Value) -> Done {
    let rate = if sum.seconds > 0.0 { (sum.bytes as f64 / sum.seconds) as u64 } else { 0 };
    let text = format!(
        "{what}: {} records, {} ({} of file data, {} inodes) in {:.2} s ({:.2} s checking the tree), {}/s\n",
        sum.records,
        human(sum.bytes),
        human(sum.data_bytes),
        sum.inodes,
        sum.seconds,
        sum.check_seconds,
        human(rate)
    );
    if let (Some(o), Ok(serde_json::Value::Object(s))) = (json.as_object_mut(), serde_json::to_value(sum)) {
        o.extend(s);
        o.insert("bytes_per_second".into(), rate.into());
    }
    Done { exit: 0, text, json }
}
