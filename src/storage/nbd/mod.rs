//! A device on another machine, reached through the NBD protocol (`nbdkit`, `nbd-server`,
//! `qemu-nbd`...), with no kernel module: [`NbdStorage`] is a [`Storage`] like a file.
//!
//! - `uri`: the `nbd://` and `nbd+unix://` URIs that name an export.
//! - `transport`: the TCP or Unix socket.
//! - `handshake`: fixed-newstyle negotiation (NBD_OPT_GO, export size, flags, block sizes).
//! - `client`: one connection, several requests in flight matched by cookie.
//!
//! Disconnects (DESIGN §2, "NBD reconnect grace"): a request whose connection broke is
//! retried on a new connection until the grace period (`-o nbd_timeout=`) after its first
//! failure; past it, it fails, the engine marks the device failed and writes go on to the
//! other copies. Only the requests in flight wait for a reconnect: nothing is queued.
//! A write acknowledged on the old connection is trusted to be with the server (a server
//! process that is restarted keeps what it wrote to its file; a server machine that lost
//! power takes longer than the grace to come back, and its device then comes back stale
//! and is resynced).

pub mod client;
pub mod handshake;
pub mod proto;
pub mod transport;
pub mod uri;

use super::{DynStorage, Storage};
use client::{Connection, Failure};
use handshake::{Export, HandshakeError};
use parking_lot::Mutex;
use proto::*;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use transport::Stream;
pub use uri::{NbdUri, UriError};

/// How long a request waits for a lost connection to come back (QEMU's reconnect-delay
/// is of the same order).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// The device block size: every export must be a whole number of them.
const DEVICE_BLOCK: u64 = 4096;
/// The largest payload this client puts in one request, whatever the server allows. A
/// large write goes out as several requests in flight at once, which a multi-threaded
/// server (nbdkit runs 16 workers) writes in parallel while the next ones arrive. Measured,
/// 1 GiB sequential write, copies=2, local + nbdkit over loopback TCP: 120 MiB/s with 4 MiB
/// requests, 108 MiB/s with 32 MiB (one run each on a loaded 2-CPU machine: within noise).
const MAX_REQUEST: u32 = 4 << 20;
/// One TRIM request's length (it carries no payload, so the block size limit does not apply).
const MAX_TRIM: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    #[error(transparent)]
    Uri(#[from] UriError),
    // The causes are part of the one-line message, not a `source` chain, so that printing
    // the chain (`{:#}`) does not say them twice.
    #[error("{uri}: cannot connect: {why}")]
    Connect { uri: String, why: io::Error },
    #[error("{uri}: {why}")]
    Handshake { uri: String, why: HandshakeError },
    #[error("{uri}: the export has {size} bytes, not a multiple of {DEVICE_BLOCK}")]
    Size { uri: String, size: u64 },
    #[error("{uri}: the export is read-only")]
    ReadOnly { uri: String },
    #[error("{uri}: the server wants requests aligned to {min} bytes (at most {DEVICE_BLOCK} are supported)")]
    Alignment { uri: String, min: u32 },
    #[error("{uri}: the export changed size from {was} to {now} bytes")]
    Resized { uri: String, was: u64, now: u64 },
}

pub struct NbdStorage {
    uri: NbdUri,
    writable: bool,
    grace: Duration,
    export: Export,
    /// The live connection; None after it broke, until a request makes a new one.
    conn: Mutex<Option<Arc<Connection>>>,
}

impl NbdStorage {
    /// Connects and negotiates. `writable` refuses a read-only export; `grace` is how
    /// long a request waits for a broken connection to come back.
    pub fn connect(uri: &NbdUri, writable: bool, grace: Duration) -> Result<NbdStorage, NbdError> {
        let conn = connect(uri, grace, grace)?;
        let e = conn.export;
        let name = || uri.to_string();
        if e.size % DEVICE_BLOCK != 0 {
            return Err(NbdError::Size { uri: name(), size: e.size });
        }
        if writable && e.flags & TFLAG_READ_ONLY != 0 {
            return Err(NbdError::ReadOnly { uri: name() });
        }
        if u64::from(e.min_block) > DEVICE_BLOCK {
            return Err(NbdError::Alignment { uri: name(), min: e.min_block });
        }
        Ok(NbdStorage { uri: uri.clone(), writable, grace, export: e, conn: Mutex::new(Some(Arc::new(conn))) })
    }

    pub fn uri(&self) -> &NbdUri {
        &self.uri
    }

    /// Bytes in one READ or WRITE request.
    fn chunk(&self) -> usize {
        self.export.max_block.clamp(DEVICE_BLOCK as u32, MAX_REQUEST) as usize
    }

    fn has(&self, flag: u16) -> bool {
        self.export.flags & flag != 0
    }

    /// The live connection, or a new one when it broke.
    fn current(&self, connect_timeout: Duration) -> io::Result<Arc<Connection>> {
        // Held while connecting: the other requests wait for this connection rather than
        // each making its own.
        let mut slot = self.conn.lock();
        if let Some(c) = slot.as_ref().filter(|c| !c.is_dead()) {
            return Ok(c.clone());
        }
        *slot = None;
        let c = connect(&self.uri, connect_timeout, self.grace)
            .map_err(|e| io::Error::new(io::ErrorKind::NotConnected, e.to_string()))?;
        if c.export.size != self.export.size {
            let e = NbdError::Resized { uri: self.uri.to_string(), was: self.export.size, now: c.export.size };
            return Err(io::Error::other(e));
        }
        tracing::info!("{}: connected again", self.uri);
        let c = Arc::new(c);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs `op` on the live connection; when the connection breaks, again on a new one,
    /// until the grace period after the first failure is over (DESIGN §2, "NBD reconnect
    /// grace": nothing waits but the requests in flight).
    fn retrying<T>(&self, what: &str, op: impl Fn(&Connection) -> Result<T, Failure>) -> io::Result<T> {
        let mut deadline: Option<Instant> = None;
        let mut backoff = Duration::from_millis(50);
        loop {
            let left = deadline.map_or(self.grace, |d| d.saturating_duration_since(Instant::now()));
            let lost = match self.current(left.clamp(Duration::from_millis(100), Duration::from_secs(5))) {
                Ok(c) => match op(&c) {
                    Ok(v) => return Ok(v),
                    Err(Failure::Server(errno)) => return Err(server_error(&self.uri, what, errno)),
                    Err(Failure::Lost(e)) => e,
                },
                Err(e) if e.kind() == io::ErrorKind::NotConnected => e,
                Err(e) => return Err(e),
            };
            let d = *deadline.get_or_insert_with(|| {
                tracing::warn!(
                    "{}: connection lost ({lost}); reconnecting for up to {} s",
                    self.uri,
                    self.grace.as_secs_f64()
                );
                Instant::now() + self.grace
            });
            let now = Instant::now();
            if now >= d {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!(
                        "{}: {what} failed: the connection was lost and did not come back within {} s: {lost}",
                        self.uri,
                        self.grace.as_secs_f64()
                    ),
                ));
            }
            std::thread::sleep(backoff.min(d - now));
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    fn check_range(&self, offset: u64, len: usize) -> io::Result<()> {
        if offset.checked_add(len as u64).is_none_or(|end| end > self.export.size) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: {len} bytes at {offset} are past the end of the export ({} bytes)",
                    self.uri, self.export.size
                ),
            ));
        }
        Ok(())
    }
}

/// Connects with `timeout` for the connect and the handshake; a request of the connection
/// left unanswered for `stall` counts as a broken connection.
fn connect(uri: &NbdUri, timeout: Duration, stall: Duration) -> Result<Connection, NbdError> {
    let name = || uri.to_string();
    let timeout = timeout.max(Duration::from_millis(100));
    let mut s = Stream::connect(&uri.endpoint, timeout).map_err(|why| NbdError::Connect { uri: name(), why })?;
    // A server that accepts and then says nothing must not hang the open.
    s.set_timeouts(Some(timeout), Some(timeout)).map_err(|why| NbdError::Connect { uri: name(), why })?;
    let export = handshake::negotiate(&mut s, &uri.export).map_err(|why| NbdError::Handshake { uri: name(), why })?;
    Connection::start(s, export, stall.max(Duration::from_secs(1)))
        .map_err(|why| NbdError::Connect { uri: name(), why })
}

/// A server's error reply as an io::Error carrying the errno and its name.
fn server_error(uri: &NbdUri, what: &str, errno: u32) -> io::Error {
    let (name, os) = errno_name(errno);
    let e = io::Error::from_raw_os_error(os);
    io::Error::new(e.kind(), format!("{uri}: {what}: the server answered {name} ({e})"))
}

/// Waits for every ticket, returning the first failure (after all have finished, so no
/// reply is left for a buffer that is gone).
fn wait_all(tickets: Vec<client::Ticket>) -> Result<Vec<Vec<u8>>, Failure> {
    let mut out = Vec::with_capacity(tickets.len());
    let mut first_err = None;
    for t in tickets {
        match t.wait() {
            Ok(d) => out.push(d),
            Err(e) => {
                // A lost connection outranks a server error: the retry may succeed.
                if first_err.is_none() || matches!(e, Failure::Lost(_)) {
                    first_err = Some(e);
                }
            }
        }
    }
    first_err.map_or(Ok(out), Err)
}

impl Storage for NbdStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.check_range(offset, buf.len())?;
        let chunk = self.chunk();
        let got = self.retrying("read", |c| {
            let tickets = (0..buf.len())
                .step_by(chunk)
                .map(|at| {
                    let n = chunk.min(buf.len() - at);
                    c.submit(CMD_READ, offset + at as u64, n as u32, &[], n)
                })
                .collect();
            wait_all(tickets)
        })?;
        for (piece, data) in buf.chunks_mut(chunk).zip(got) {
            piece.copy_from_slice(&data);
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_vectored_at(&[buf], offset)
    }

    fn write_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        self.check_range(offset, total)?;
        let chunk = self.chunk();
        self.retrying("write", |c| {
            let mut tickets = Vec::new();
            let mut pieces: Vec<&[u8]> = Vec::new();
            let mut filled = 0usize;
            let mut at = 0usize;
            for b in bufs {
                let mut b: &[u8] = b;
                while !b.is_empty() {
                    let n = b.len().min(chunk - filled);
                    pieces.push(&b[..n]);
                    filled += n;
                    b = &b[n..];
                    if filled == chunk {
                        tickets.push(c.submit(CMD_WRITE, offset + at as u64, filled as u32, &pieces, 0));
                        at += filled;
                        pieces.clear();
                        filled = 0;
                    }
                }
            }
            if filled > 0 {
                tickets.push(c.submit(CMD_WRITE, offset + at as u64, filled as u32, &pieces, 0));
            }
            wait_all(tickets).map(drop)
        })
    }

    fn flush(&self) -> io::Result<()> {
        if !self.writable || !self.has(TFLAG_SEND_FLUSH) {
            // A server that offers no flush writes through (proto.md).
            return Ok(());
        }
        self.retrying("flush", |c| c.submit(CMD_FLUSH, 0, 0, &[], 0).wait().map(drop))
    }

    fn size(&self) -> u64 {
        self.export.size
    }

    fn name(&self) -> String {
        self.uri.to_string()
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        if !self.writable || !self.has(TFLAG_SEND_TRIM) || len == 0 {
            return Ok(());
        }
        self.check_range(offset, len as usize)?;
        self.retrying("trim", |c| {
            let tickets = (0..len)
                .step_by(MAX_TRIM as usize)
                .map(|at| c.submit(CMD_TRIM, offset + at, MAX_TRIM.min(len - at) as u32, &[], 0))
                .collect();
            wait_all(tickets).map(drop)
        })
    }

    fn reopen(&self) -> io::Result<DynStorage> {
        let s = NbdStorage::connect(&self.uri, self.writable, self.grace).map_err(io::Error::other)?;
        if s.export.size != self.export.size {
            let e = NbdError::Resized { uri: self.uri.to_string(), was: self.export.size, now: s.export.size };
            return Err(io::Error::other(e));
        }
        Ok(Arc::new(s))
    }
}
