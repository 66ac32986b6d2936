//! Send and receive (issue 25; docs/SEND-STREAM.md, DESIGN §14): a snapshot as a stream,
//! whole or incremental from an older snapshot, applied on another filesystem as a new
//! read-only snapshot stored with that filesystem's own copies, devices and compression.
//!
//! - `stream`: the versioned stream format, its framing and the verifying reader.
//! - `diff`: what changed in a tree since a base snapshot, by birth tids.
//! - `sender`: the stream of a snapshot (whole, or from a resume token's position).
//! - `receive`: applying a stream to the mounted PFS a verified chunk at a time and taking
//!   its snapshot.
//! - `token`: the resume token, kept in the receiving PFS's record.
//! - `treesum`: the check value of a whole tree, computed from the change on both sides.

mod diff;
mod receive;
mod sender;
pub mod stream;
mod token;
mod treesum;

pub use token::{BadToken, ResumeToken};

use crate::Mounted;
use std::io::{Read, Write};

/// What a send or receive did (`--json`: records, bytes, rate).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Records in the stream, the header and end included.
    pub records: u64,
    /// Bytes of the stream.
    pub bytes: u64,
    /// Inodes sent or applied (new or changed).
    pub inodes: u64,
    /// Bytes of file content carried.
    pub data_bytes: u64,
    pub seconds: f64,
    /// Of `seconds`, those spent computing the tree's check value (SR10).
    pub check_seconds: f64,
}

/// What a receive did: its summary, the snapshot it took, and what a mount's kernel caches
/// must forget (the daemon tells the kernel after the receive).
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub summary: Summary,
    /// The new snapshot's name.
    pub name: String,
    /// Inodes whose attributes, content or entries changed, or that were deleted.
    pub changed: Vec<u64>,
    /// Names removed from directories: (directory, name).
    pub removed: Vec<(u64, Vec<u8>)>,
}

/// Why a send or receive failed. Nothing it failed on is visible as a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Stream(#[from] stream::StreamError),
    #[error(transparent)]
    Engine(#[from] crate::Error),
    #[error("{0}")]
    Refused(String),
    #[error("cannot write the stream: {0}")]
    Output(std::io::Error),
    #[error(transparent)]
    Token(#[from] BadToken),
    /// The stream stopped (cut, or damaged past a checkpoint) after `position` content
    /// records were applied and committed with their resume token (SR8).
    #[error(
        "{cause}: the first {position} records are applied; resume with 'hammer2 send --resume-token {token}' into 'hammer2 receive --resume'"
    )]
    Interrupted { cause: stream::StreamError, position: u64, token: String },
}

/// How a stream is written.
#[derive(Debug, Clone, Copy)]
pub struct SendOptions {
    /// Stream bytes between two checkpoints (SR8).
    pub checkpoint_bytes: u64,
    /// Continue the stream an interrupted receive stopped in (its token), instead of
    /// sending it whole (SR9).
    pub resume: Option<ResumeToken>,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions { checkpoint_bytes: stream::CHECKPOINT_BYTES, resume: None }
    }
}

/// Writes the stream of snapshot `snapshot` to `out`: whole, or with `from` (an older
/// snapshot of the same PFS, which the receiver holds) only what changed since it. Reads
/// committed snapshot trees only, so it runs beside the mount's other work. `progress` is
/// told the bytes written so far.
pub fn send(
    fs: &impl Mounted,
    snapshot: &str,
    from: Option<&str>,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<Summary, SendError> {
    send_with(fs, snapshot, from, &SendOptions::default(), out, progress)
}

/// [`send`] with options: the checkpoint interval, a resume token.
pub fn send_with(
    fs: &impl Mounted,
    snapshot: &str,
    from: Option<&str>,
    opts: &SendOptions,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<Summary, SendError> {
    sender::send(fs.engine().0, snapshot, from, opts, out, progress)
}

/// Applies the stream read from `input` to the PFS this mount serves and takes its
/// snapshot `name` (default: the sender's snapshot name). A full stream needs an empty
/// PFS, an incremental one the PFS that received its base. Returns the summary and the
/// snapshot's name and what changed.
///
/// Records are applied a verified chunk at a time (up to a checkpoint) and each chunk is
/// committed with the PFS's resume token (SR8): a stream that stops early, or is damaged
/// past a checkpoint, leaves the chunks before it applied ([`SendError::Interrupted`]
/// names the token), never a snapshot. `resume` accepts a resumed stream
/// (`send --resume-token`) that continues what the token says was applied (SR9).
pub fn receive(
    fs: &impl Mounted,
    input: &mut dyn Read,
    name: Option<&str>,
    resume: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<Received, SendError> {
    receive::receive(fs.engine().0, input, name, resume, progress)
}

/// Gives up the receive in progress in the served PFS (`hammer2 receive --abandon`): its
/// token is cleared, so its files are shown again as they are (partly applied) and another
/// stream may be received; returns the token it had. Nothing is undone: a mirror that gave
/// up a full stream is no use for incrementals (no snapshot stamps it).
pub fn abandon(fs: &impl Mounted) -> Result<Option<ResumeToken>, SendError> {
    let had = resume_token(fs);
    if had.is_some() {
        let op = crate::commit::PfsOp::Progress { token: [0; hammer2_format::pfs::RESUME_TOKEN_SIZE] };
        crate::commit::commit_pfs_op(fs.engine().0, &op)?;
    }
    Ok(had)
}

/// The resume token of the receive in progress in the PFS this mount serves, if one is.
pub fn resume_token(fs: &impl Mounted) -> Option<ResumeToken> {
    let roots = fs.engine().0.roots.read();
    let served = roots.pfs.as_ref()?.served.as_ref()?;
    ResumeToken::from_record(&served.resume_token)
}
