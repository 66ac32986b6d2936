//! One connection in transmission: requests from any number of threads are sent under a
//! write lock and stay in flight together, each under its own cookie; one reader thread
//! takes the replies in whatever order the server sends them and completes the request
//! with that cookie.
//!
//! A connection that breaks (read or write error, a reply that makes no sense, or a server
//! that leaves a request unanswered for the stall limit) is dead for good: every request in
//! flight, and every later one, fails with [`Failure::Lost`], and the storage above decides
//! whether to retry on a new connection.

use super::handshake::Export;
use super::proto::*;
use super::transport::Stream;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why a request did not complete.
#[derive(Debug)]
pub enum Failure {
    /// The connection broke: the request may or may not have reached the server.
    Lost(io::Error),
    /// The server answered with this error value.
    Server(u32),
}

/// How often the reader wakes up while waiting, to notice a stalled server or a close.
const TICK: Duration = Duration::from_millis(500);

pub struct Connection {
    writer: Mutex<Stream>,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    pub export: Export,
    next_cookie: AtomicU64,
}

struct Shared {
    state: Mutex<State>,
    /// A clone of the stream, so that any thread can end the connection.
    control: Stream,
    closing: AtomicBool,
    /// A request unanswered this long means the server is gone.
    stall: Duration,
}

#[derive(Default)]
struct State {
    /// Why the connection is dead, once it is.
    dead: Option<String>,
    waiting: HashMap<u64, Pending>,
}

struct Pending {
    /// Bytes of data that follow a successful reply (reads).
    read_len: usize,
    since: Instant,
    done: SyncSender<Result<Vec<u8>, Failure>>,
}

/// A request in flight; `wait` blocks until its reply.
pub struct Ticket(Receiver<Result<Vec<u8>, Failure>>);

impl Ticket {
    pub fn wait(self) -> Result<Vec<u8>, Failure> {
        self.0.recv().unwrap_or_else(|_| Err(Failure::Lost(io::Error::other("the connection closed"))))
    }
}

impl Connection {
    /// Takes over a stream that finished its handshake, and starts its reader.
    pub fn start(stream: Stream, export: Export, stall: Duration) -> io::Result<Connection> {
        stream.set_timeouts(Some(TICK), Some(stall))?;
        let mut reading = stream.try_clone()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            control: stream.try_clone()?,
            closing: AtomicBool::new(false),
            stall,
        });
        let s = shared.clone();
        let reader = std::thread::Builder::new().name("nbd-reader".into()).spawn(move || {
            if let Err(e) = read_replies(&mut reading, &s) {
                s.kill(e);
            }
        })?;
        Ok(Connection {
            writer: Mutex::new(stream),
            shared,
            reader: Some(reader),
            export,
            next_cookie: AtomicU64::new(1),
        })
    }

    pub fn is_dead(&self) -> bool {
        self.shared.state.lock().dead.is_some()
    }

    /// Sends one request; `payload` follows the header (writes). The reply carries
    /// `read_len` bytes of data when it succeeds (reads).
    pub fn submit(&self, cmd: u16, offset: u64, len: u32, payload: &[&[u8]], read_len: usize) -> Ticket {
        let (done, rx) = sync_channel(1);
        let cookie = self.next_cookie.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = self.shared.state.lock();
            if let Some(why) = &st.dead {
                let _ = done.send(Err(Failure::Lost(io::Error::new(io::ErrorKind::ConnectionAborted, why.clone()))));
                return Ticket(rx);
            }
            st.waiting.insert(cookie, Pending { read_len, since: Instant::now(), done });
        }
        let mut header = [0u8; REQUEST_LEN];
        header[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        header[4..6].copy_from_slice(&0u16.to_be_bytes());
        header[6..8].copy_from_slice(&cmd.to_be_bytes());
        header[8..16].copy_from_slice(&cookie.to_be_bytes());
        header[16..24].copy_from_slice(&offset.to_be_bytes());
        header[24..28].copy_from_slice(&len.to_be_bytes());
        let sent = {
            let mut w = self.writer.lock();
            std::iter::once(&header[..]).chain(payload.iter().copied()).try_for_each(|b| w.write_all(b))
        };
        if let Err(e) = sent {
            // Part of a request may be on the wire: nothing after it can be understood.
            self.shared.kill(e);
        }
        Ticket(rx)
    }
}

impl Shared {
    /// Marks the connection dead and fails every request in flight.
    fn kill(&self, e: io::Error) {
        let waiting = {
            let mut st = self.state.lock();
            st.dead.get_or_insert_with(|| e.to_string());
            std::mem::take(&mut st.waiting)
        };
        self.control.shutdown();
        for (_, p) in waiting {
            let _ = p.done.send(Err(Failure::Lost(io::Error::new(e.kind(), e.to_string()))));
        }
    }

    /// The oldest request in flight has waited past the stall limit.
    fn stalled(&self) -> bool {
        self.state.lock().waiting.values().any(|p| p.since.elapsed() > self.stall)
    }
}

fn read_replies(s: &mut Stream, shared: &Shared) -> io::Result<()> {
    let mut header = [0u8; REPLY_LEN];
    loop {
        read_full(s, &mut header, shared)?;
        let magic = u32::from_be_bytes(header[0..4].try_into().expect("4 bytes"));
        if magic != SIMPLE_REPLY_MAGIC {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad reply magic {magic:#x}")));
        }
        let error = u32::from_be_bytes(header[4..8].try_into().expect("4 bytes"));
        let cookie = u64::from_be_bytes(header[8..16].try_into().expect("8 bytes"));
        let pending = shared.state.lock().waiting.remove(&cookie).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("a reply to request {cookie}, which is not in flight"))
        })?;
        let result = if error != 0 {
            Err(Failure::Server(error))
        } else {
            let mut data = vec![0u8; pending.read_len];
            if let Err(e) = read_full(s, &mut data, shared) {
                // Put it back so that kill fails it with the others.
                shared.state.lock().waiting.insert(cookie, pending);
                return Err(e);
            }
            Ok(data)
        };
        let _ = pending.done.send(result);
    }
}

/// Fills `buf`, waking up every `TICK` to see whether the connection is closing or a
/// request has stalled.
fn read_full(s: &mut Stream, buf: &mut [u8], shared: &Shared) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection")),
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                if shared.closing.load(Ordering::Relaxed) {
                    return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "closed"));
                }
                if shared.stalled() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the server left a request unanswered for {} s", shared.stall.as_secs_f64()),
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Drop for Connection {
    fn drop(&mut self) {
        if !self.is_dead() {
            // A polite goodbye; the server may keep writing what it has buffered.
            let _ = self.submit(CMD_DISC, 0, 0, &[], 0);
        }
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared.control.shutdown();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

#[cfg(test)]
mod tests {
    //! The client against a peer on the other end of a socket pair that plays the server's
    //! part of the transmission phase byte by byte: replies out of order, error replies, a
    //! peer that goes away or stops answering.

    use super::*;
    use std::os::unix::net::UnixStream;

    fn export() -> Export {
        Export { size: 1 << 20, flags: TFLAG_HAS_FLAGS, min_block: 1, max_block: 1 << 20 }
    }

    /// (command, cookie, offset, length) of the next request.
    fn next_request(s: &mut UnixStream) -> (u16, u64, u64, u32) {
        let mut h = [0u8; REQUEST_LEN];
        s.read_exact(&mut h).unwrap();
        assert_eq!(u32::from_be_bytes(h[0..4].try_into().unwrap()), REQUEST_MAGIC);
        let cmd = u16::from_be_bytes(h[6..8].try_into().unwrap());
        let cookie = u64::from_be_bytes(h[8..16].try_into().unwrap());
        let len = u32::from_be_bytes(h[24..28].try_into().unwrap());
        if cmd == CMD_WRITE {
            let mut payload = vec![0u8; len as usize];
            s.read_exact(&mut payload).unwrap();
        }
        (cmd, cookie, u64::from_be_bytes(h[16..24].try_into().unwrap()), len)
    }

    fn reply(s: &mut UnixStream, error: u32, cookie: u64, data: &[u8]) {
        let h = [&SIMPLE_REPLY_MAGIC.to_be_bytes()[..], &error.to_be_bytes(), &cookie.to_be_bytes(), data].concat();
        s.write_all(&h).unwrap();
    }

    #[test]
    fn replies_in_any_order_complete_the_request_with_their_cookie() {
        let (a, mut peer) = UnixStream::pair().unwrap();
        let c = Connection::start(Stream::Unix(a), export(), Duration::from_secs(5)).unwrap();
        let server = std::thread::spawn(move || {
            let reqs: Vec<_> = (0..3).map(|_| next_request(&mut peer)).collect();
            // Answered last to first, each read filled with its offset's low byte.
            for &(cmd, cookie, off, len) in reqs.iter().rev() {
                let data = if cmd == CMD_READ { vec![off as u8; len as usize] } else { Vec::new() };
                reply(&mut peer, 0, cookie, &data);
            }
            let (_, cookie, _, _) = next_request(&mut peer);
            reply(&mut peer, 28, cookie, &[]);
            peer
        });
        let t1 = c.submit(CMD_READ, 7, 100, &[], 100);
        let t2 = c.submit(CMD_WRITE, 4096, 5, &[b"ab", b"cde"], 0);
        let t3 = c.submit(CMD_READ, 9, 3, &[], 3);
        assert_eq!(t1.wait().unwrap(), vec![7u8; 100]);
        assert_eq!(t2.wait().unwrap(), Vec::<u8>::new());
        assert_eq!(t3.wait().unwrap(), vec![9u8; 3]);
        assert!(matches!(c.submit(CMD_FLUSH, 0, 0, &[], 0).wait(), Err(Failure::Server(28))));
        // The peer goes away: what is in flight, and everything after, is lost.
        let peer = server.join().unwrap();
        let t = c.submit(CMD_READ, 0, 1, &[], 1);
        drop(peer);
        assert!(matches!(t.wait(), Err(Failure::Lost(_))));
        assert!(c.is_dead());
        assert!(matches!(c.submit(CMD_READ, 0, 1, &[], 1).wait(), Err(Failure::Lost(_))));
    }

    #[test]
    fn a_reply_to_no_request_or_with_a_bad_magic_ends_the_connection() {
        for bad in [[&SIMPLE_REPLY_MAGIC.to_be_bytes()[..], &[0; 4], &99u64.to_be_bytes()].concat(), vec![0xffu8; 16]] {
            let (a, mut peer) = UnixStream::pair().unwrap();
            let c = Connection::start(Stream::Unix(a), export(), Duration::from_secs(5)).unwrap();
            let t = c.submit(CMD_READ, 0, 1, &[], 1);
            next_request(&mut peer);
            peer.write_all(&bad).unwrap();
            assert!(matches!(t.wait(), Err(Failure::Lost(_))));
        }
    }

    #[test]
    fn a_server_that_stops_answering_is_given_up_after_the_stall_limit() {
        let (a, mut peer) = UnixStream::pair().unwrap();
        let c = Connection::start(Stream::Unix(a), export(), Duration::from_secs(1)).unwrap();
        let started = Instant::now();
        let t = c.submit(CMD_READ, 0, 1, &[], 1);
        next_request(&mut peer);
        let Err(Failure::Lost(e)) = t.wait() else { panic!("a request nobody answers completed") };
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(1) && waited < Duration::from_secs(5), "{waited:?}");
        drop(peer);
    }
}
