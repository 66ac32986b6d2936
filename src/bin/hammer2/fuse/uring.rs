//! FUSE over io_uring: each request is served on the CPU of the process that made it.
//!
//! Why. Over /dev/fuse a request wakes whichever worker has waited longest, and the scheduler
//! puts it on an idle CPU; the caller's CPU then idles until the reply wakes it again. Each
//! request so costs two wakeups of an idle CPU, which on a virtual machine are exits to the
//! host of tens of µs each. With the caller and the worker on one CPU the caller's sleep
//! hands the CPU straight to the worker and the reply hands it back. On the 2-vCPU test VM,
//! pinning a FUSE daemon and its caller to one CPU served 20,000 creates at 19-21k/s
//! against 5.2-5.8k/s unpinned.
//!
//! How. Since Linux 6.14 (with fuse's `enable_uring` parameter on) the kernel keeps one
//! request queue per CPU and puts each request on the queue of the CPU its caller runs on,
//! into a buffer the daemon registered through io_uring. Here one thread pinned to each CPU
//! holds that queue's buffers. Protocol handling stays fuser's: each queue has two fuser
//! sessions ("lanes", see `Queue`), fed through SOCK_SEQPACKET socket pairs in /dev/fuse's
//! own format (one message per request or reply). The local lane's workers are pinned to
//! the queue's CPU, so every wakeup of a metadata request stays on the caller's CPU; reads
//! and writes go to the shared lane, whose workers run anywhere.
//!
//! The kernel still sends FORGET and INTERRUPT through /dev/fuse, which the main session
//! keeps serving. When the ring cannot be had the daemon does not negotiate it, and
//! everything goes through /dev/fuse as before; DESIGN §12 says why no request can be held
//! for good once it is negotiated.

use super::negotiate::Offer;
use fuser::{Config, Filesystem, InitFlags, SessionACL};
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How many workers each lane of a queue has.
pub const WORKERS_PER_LANE: usize = 4;

/// How many requests one CPU's queue may hold at once. Each entry has a payload buffer of
/// the largest request (about 1 MiB, resident once a large request has used it): 8 each up
/// to 8 CPUs, 64 in all up to 32, and 2 each beyond.
fn entries_per_cpu(cpus: usize) -> usize {
    (64 / cpus.max(1)).clamp(2, 8)
}

const FUSE_IO_URING_CMD_REGISTER: u32 = 1;
const FUSE_IO_URING_CMD_COMMIT_AND_FETCH: u32 = 2;
const FUSE_INIT: u32 = 26;
const FUSE_DESTROY: u32 = 38;
/// `struct fuse_uring_req_header`: in/out header (128), op header (128), `fuse_uring_ent_in_out` (32).
const HEADER_LEN: usize = 288;
/// Where the op header starts in it.
const OP_IN: usize = 128;
/// Where `fuse_uring_ent_in_out.payload_sz` is (after its flags and commit_id).
const PAYLOAD_SZ: usize = 256 + 16;
const IN_HEADER: usize = 40;
const OUT_HEADER: usize = 16;
/// user_data of the receives of a reply from each lane's session.
const RECV_LOCAL: u64 = u64::MAX;
const RECV_SHARED: u64 = u64::MAX - 1;
/// user_data of the cancellations of those receives.
const CANCEL: u64 = u64::MAX - 2;
const FUSE_READ: u32 = 15;
const FUSE_WRITE: u32 = 16;
/// How long a queue polls for its next request before it sleeps (see `Queue::poll`). On
/// the 2-vCPU test VM, 20,000 creates on the no-work floor ran at 3.4k/s without polling,
/// 10.0k/s with 50 µs and 11.4k/s with 200 µs.
const POLL: Duration = Duration::from_micros(50);

/// The running queues; `join` waits until every one has stopped (the kernel stops them when
/// the filesystem is unmounted).
pub struct Rings {
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl Rings {
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts one queue per possible CPU on the connection `conn`, each with two sessions of
/// the filesystem `make` returns. Returns None when the kernel did not offer FUSE over
/// io_uring. An error leaves the kernel holding every request (the handshake negotiated
/// the ring): the caller must unmount.
pub fn start<F: Filesystem>(
    conn: BorrowedFd,
    kernel: Offer,
    payload_len: usize,
    config: &Config,
    make: impl Fn() -> F,
) -> io::Result<Option<Rings>> {
    if !kernel.offered.contains(InitFlags::FUSE_OVER_IO_URING) {
        return Ok(None);
    }
    let mut threads = Vec::new();
    let cpus = possible_cpus()?;
    let entries = entries_per_cpu(cpus);
    for cpu in 0..cpus {
        let (local, local_session) = Lane::start(kernel, entries, payload_len, config, make(), RECV_LOCAL)?;
        let (shared, shared_session) = Lane::start(kernel, entries, payload_len, config, make(), RECV_SHARED)?;
        // A descriptor of its own: the session closes its copy before the queues stop.
        let queue = Queue::new(conn.try_clone_to_owned()?, cpu as u16, entries, payload_len, local, shared)?;
        // The local lane's workers inherit its pin: they run on the CPU whose requests
        // they serve. The shared lane's run anywhere.
        threads.push(lane_thread(format!("hammer2-local{cpu}"), move || {
            pin_to(cpu);
            local_session.run()
        })?);
        threads.push(lane_thread(format!("hammer2-shared{cpu}"), move || shared_session.run())?);
        threads.push(lane_thread(format!("hammer2-ring{cpu}"), move || {
            pin_to(cpu);
            if let Err(e) = queue.serve() {
                // The queue's CPU would hold its callers' requests for good. Ending the
                // daemon ends the connection: the kernel fails them (ENOTCONN) and the
                // filesystem keeps its last commit, as after a crash.
                tracing::error!("FUSE over io_uring, queue {cpu} failed: {e}; the daemon exits");
                std::process::exit(1);
            }
            Ok(())
        })?);
    }
    Ok(Some(Rings { threads }))
}

/// A fuser session fed through a socket pair: `sock` is our end.
struct Lane {
    sock: OwnedFd,
    /// A reply's header, peeked at to learn which entry the reply is for (one at a time:
    /// the peek is re-armed after each reply is taken).
    head: Box<[u8; OUT_HEADER]>,
    /// Where a reply no entry waits for is taken (a notification, the answer to a DESTROY).
    scratch: Vec<u8>,
    tag: u64,
}

impl Lane {
    fn start<F: Filesystem>(
        kernel: Offer,
        entries: usize,
        payload_len: usize,
        config: &Config,
        fs: F,
        tag: u64,
    ) -> io::Result<(Lane, fuser::Session<F>)> {
        let (ours, theirs) = socket_pair(entries, payload_len)?;
        let mut cfg = config.clone();
        cfg.n_threads = Some(WORKERS_PER_LANE);
        cfg.clone_fd = false;
        send_init(&ours, kernel)?;
        let acl: SessionACL = cfg.acl;
        let session = fuser::Session::from_fd(fs, theirs, acl, cfg)?;
        drain_init_reply(&ours)?;
        Ok((Lane { sock: ours, head: Box::new([0; OUT_HEADER]), scratch: vec![0; 64 << 10], tag }, session))
    }

    /// Waits for the next reply without taking it: its header says which entry's payload
    /// buffer its body goes to, so a 1 MiB read is copied once, socket to entry.
    fn arm(&mut self) -> squeue::Entry128 {
        opcode::Recv::new(types::Fd(self.sock.as_raw_fd()), self.head.as_mut_ptr(), OUT_HEADER as u32)
            .flags(libc::MSG_PEEK)
            .build()
            .user_data(self.tag)
            .into()
    }

    /// Takes the reply whose header was peeked at: the header into `head`, the body into
    /// `body`. Returns the body's length, or None if it did not fit (the rest is dropped).
    fn take(sock: &OwnedFd, head: &mut [u8; OUT_HEADER], body: &mut [u8]) -> io::Result<Option<usize>> {
        let iov = [
            libc::iovec { iov_base: head.as_mut_ptr().cast(), iov_len: OUT_HEADER },
            libc::iovec { iov_base: body.as_mut_ptr().cast(), iov_len: body.len() },
        ];
        // SAFETY: a zeroed msghdr is valid; it points at iov, whose buffers are writable
        // for their lengths across the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_ptr() as *mut _;
        msg.msg_iovlen = iov.len();
        // SAFETY: as above; the peek proved a message is waiting, so this does not block.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < OUT_HEADER as isize {
            return Err(if n < 0 {
                io::Error::last_os_error()
            } else {
                io::Error::other(format!("a reply of {n} bytes"))
            });
        }
        Ok((msg.msg_flags & libc::MSG_TRUNC == 0).then_some(n as usize - OUT_HEADER))
    }

    /// Ends the session: each worker returns when it reads a DESTROY.
    fn stop(&self) {
        for _ in 0..WORKERS_PER_LANE {
            let _ = send_request(&self.sock, FUSE_DESTROY, &[]);
        }
    }
}

/// One entry of a queue: the buffers the kernel copies a request into and a reply out of.
struct Entry {
    header: Box<[u64; HEADER_LEN / 8]>,
    payload: Vec<u8>,
    iov: Box<[libc::iovec; 2]>,
}

/// The header as bytes (it is u64s only to be aligned as the kernel's struct is).
fn bytes(h: &mut [u64; HEADER_LEN / 8]) -> &mut [u8] {
    // SAFETY: a [u64; 36] is 288 initialized bytes; u8 has no alignment requirement.
    unsafe { std::slice::from_raw_parts_mut(h.as_mut_ptr().cast::<u8>(), HEADER_LEN) }
}

/// One CPU's queue: its entries and the two lanes that serve them.
///
/// Requests that carry data (READ, WRITE) take the shared lane, whose workers run on every
/// CPU: a program keeps many of them in flight at once (readahead, asynchronous direct
/// I/O), and each costs checksums and copies that one CPU would serialize. Every other
/// request takes the local lane, served on the caller's CPU: they come one at a time, and
/// the wakeups cost more than the work. Measured with 2 copies on the 2-vCPU VM, every
/// request on the local lane ran 4 KiB random reads at 12.6k IOPS against 37.0k through
/// /dev/fuse; with the data on the shared lane, 34.2k, and creates kept their 9.2-9.7k/s.
struct Queue {
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    conn: OwnedFd,
    qid: u16,
    entries: Vec<Entry>,
    /// Request (unique) -> entry it came in, while a session serves it.
    serving: HashMap<u64, usize>,
    /// Requests served so far (logged when the queue stops).
    served: u64,
    local: Lane,
    shared: Lane,
}

// SAFETY: the only non-Send parts are the iovecs' raw pointers, which point into the same
// entry's heap buffers: the Queue owns everything they point to and moves with it.
unsafe impl Send for Queue {}

impl Queue {
    fn new(
        conn: OwnedFd,
        qid: u16,
        entries: usize,
        payload_len: usize,
        local: Lane,
        shared: Lane,
    ) -> io::Result<Queue> {
        let size = (entries + 2).next_power_of_two() as u32;
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder().setup_coop_taskrun().build(size)?;
        let mut entries: Vec<Entry> = (0..entries)
            .map(|_| Entry {
                header: Box::new([0; HEADER_LEN / 8]),
                payload: vec![0; payload_len],
                iov: Box::new([libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; 2]),
            })
            .collect();
        for e in &mut entries {
            e.iov[0] = libc::iovec { iov_base: e.header.as_mut_ptr().cast(), iov_len: HEADER_LEN };
            e.iov[1] = libc::iovec { iov_base: e.payload.as_mut_ptr().cast(), iov_len: payload_len };
        }
        Ok(Queue { ring, conn, qid, entries, serving: HashMap::new(), served: 0, local, shared })
    }

    fn command(&self, op: u32, index: usize, commit_id: u64) -> squeue::Entry128 {
        // struct fuse_uring_cmd_req: flags (u64), commit_id (u64), qid (u16).
        let mut cmd = [0u8; 80];
        cmd[8..16].copy_from_slice(&commit_id.to_ne_bytes());
        cmd[16..18].copy_from_slice(&self.qid.to_ne_bytes());
        let sqe = opcode::UringCmd80::new(types::Fd(self.conn.as_raw_fd()), op)
            .cmd(cmd)
            .addr(Some(self.entries[index].iov.as_ptr() as u64))
            .build()
            .user_data(index as u64);
        with_iovec_count(sqe, 2)
    }

    fn push(&mut self, sqe: squeue::Entry128) -> io::Result<()> {
        // SAFETY: every buffer an SQE names (an entry's iovecs, header and payload, the reply
        // buffer) is owned by this Queue, never moved (boxed or a Vec not resized) and outlives
        // the ring, which is dropped first (field order) when the queue is.
        while unsafe { self.ring.submission().push(&sqe) }.is_err() {
            self.ring.submit()?;
        }
        Ok(())
    }

    /// Waits up to POLL for the next completion without sleeping. A queue that sleeps leaves
    /// its CPU idle, and the scheduler wakes a caller on an idle CPU rather than on its own
    /// busy one: the caller would change CPUs at every reply, each time waking an idle one.
    /// While the queues poll, the caller stays where its queue is. sched_yield gives the CPU
    /// to anything else runnable (the caller first), and runs the kernel's task work that
    /// posts a new request's completion.
    fn poll(&mut self) -> io::Result<()> {
        self.ring.submit()?;
        let start = Instant::now();
        while self.ring.completion().is_empty() && start.elapsed() < POLL {
            // SAFETY: sched_yield has no arguments and cannot fail on Linux.
            unsafe { libc::sched_yield() };
            self.ring.completion().sync();
        }
        Ok(())
    }

    fn serve(mut self) -> io::Result<()> {
        for i in 0..self.entries.len() {
            let sqe = self.command(FUSE_IO_URING_CMD_REGISTER, i, 0);
            self.push(sqe)?;
        }
        let (l, s) = (self.local.arm(), self.shared.arm());
        self.push(l)?;
        self.push(s)?;
        // Entries that have carried a request: their registration is behind them.
        let mut fetched = vec![false; self.entries.len()];
        let mut live = self.entries.len();
        while live > 0 {
            self.poll()?;
            for (tag, res) in self.wait()? {
                if tag == RECV_LOCAL || tag == RECV_SHARED {
                    if res <= 0 {
                        return Err(io::Error::other(format!("a session closed its socket ({res})")));
                    }
                    self.forward_reply(tag, res as usize)?;
                } else if res >= 0 {
                    fetched[tag as usize] = true;
                    self.served += 1;
                    self.forward_request(tag as usize)?;
                } else if fetched[tag as usize] && !unmounted(res) {
                    // A commit refused: the kernel keeps the ring but this entry is gone.
                    let e = io::Error::from_raw_os_error(-res);
                    return Err(io::Error::other(format!("the kernel refused a reply ({e})")));
                } else {
                    refused(res);
                    live -= 1;
                }
            }
        }
        // The receives still name the lanes' reply buffers, which are freed with the queue:
        // cancel them and wait until the kernel has let go of both.
        for tag in [RECV_LOCAL, RECV_SHARED] {
            self.push(opcode::AsyncCancel::new(tag).build().user_data(CANCEL).into())?;
        }
        let mut armed = 2;
        while armed > 0 {
            armed -= self.wait()?.iter().filter(|(tag, _)| *tag == RECV_LOCAL || *tag == RECV_SHARED).count();
        }
        self.local.stop();
        self.shared.stop();
        tracing::info!("FUSE over io_uring, queue {}: {} requests served", self.qid, self.served);
        Ok(())
    }

    /// Sleeps until at least one completion is there, and takes them all.
    fn wait(&mut self) -> io::Result<Vec<(u64, i32)>> {
        match self.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
        Ok(self.ring.completion().map(|c| (c.user_data(), c.result())).collect())
    }

    /// A request arrived in entry `i`: hand it to the session as /dev/fuse would.
    fn forward_request(&mut self, i: usize) -> io::Result<()> {
        let Entry { header, payload: body, .. } = &mut self.entries[i];
        let h = bytes(header);
        let len = u32_at(h, 0) as usize;
        let unique = u64_at(h, 8);
        let payload = u32_at(h, PAYLOAD_SZ) as usize;
        // The kernel puts the operation's own header (its first argument) in op_in and the
        // rest in the payload; the in-header's length covers all of them.
        let op = len.checked_sub(IN_HEADER + payload).filter(|&n| n <= OP_IN);
        let Some(op) = op.filter(|_| payload <= body.len()) else {
            tracing::error!("malformed request from the kernel (len {len}, payload {payload}); answered EIO");
            return self.commit(i, unique, -libc::EIO, 0);
        };
        let iov = [
            libc::iovec { iov_base: h.as_mut_ptr().cast(), iov_len: IN_HEADER },
            libc::iovec { iov_base: h[OP_IN..].as_mut_ptr().cast(), iov_len: op },
            libc::iovec { iov_base: body.as_mut_ptr().cast(), iov_len: payload },
        ];
        let opcode = u32_at(h, 4);
        // (Routing small writes to the local lane while it was idle did not pay: 20,000
        // creates ran at 5.8-7.7k/s that way against 8.4-8.9k/s, alternated.)
        let lane = if opcode == FUSE_READ || opcode == FUSE_WRITE { &self.shared } else { &self.local };
        sendmsg(lane.sock.as_raw_fd(), &iov)?;
        self.serving.insert(unique, i);
        Ok(())
    }

    /// A session answered: copy the reply into its entry and commit it, which also makes
    /// the entry ready for the next request; then listen to that lane again.
    fn forward_reply(&mut self, tag: u64, n: usize) -> io::Result<()> {
        let lane = if tag == RECV_LOCAL { &mut self.local } else { &mut self.shared };
        if n < OUT_HEADER {
            return Err(io::Error::other(format!("a reply header of {n} bytes")));
        }
        let unique = u64_at(&lane.head[..], 8);
        let served = self.serving.remove(&unique).filter(|_| unique != 0);
        let room = match served {
            Some(i) => &mut self.entries[i].payload[..],
            None => &mut lane.scratch[..],
        };
        let body = Lane::take(&lane.sock, &mut lane.head, room)?;
        let error = u32_at(&lane.head[..], 4) as i32;
        if unique == 0 {
            // A notification: the ring does not carry them.
            let r = [&lane.head[..], &lane.scratch[..body.unwrap_or(0)]].concat();
            write_all(self.conn.as_raw_fd(), &r)?;
        }
        let rearm = lane.arm();
        self.push(rearm)?;
        match (served, body) {
            (Some(i), Some(body)) => self.commit(i, unique, error, body),
            (Some(i), None) => {
                // (The kernel never asks for more than the entry holds.)
                tracing::error!("a reply does not fit the ring's entry; answered EIO");
                self.commit(i, unique, -libc::EIO, 0)
            }
            // The answer to one of our DESTROYs.
            (None, _) => Ok(()),
        }
    }

    fn commit(&mut self, i: usize, unique: u64, error: i32, body: usize) -> io::Result<()> {
        let h = bytes(&mut self.entries[i].header);
        // struct fuse_out_header: len, error, unique.
        h[0..4].copy_from_slice(&((OUT_HEADER + body) as u32).to_ne_bytes());
        h[4..8].copy_from_slice(&error.to_ne_bytes());
        h[8..16].copy_from_slice(&unique.to_ne_bytes());
        h[PAYLOAD_SZ..PAYLOAD_SZ + 4].copy_from_slice(&(body as u32).to_ne_bytes());
        let sqe = self.command(FUSE_IO_URING_CMD_COMMIT_AND_FETCH, i, unique);
        self.push(sqe)
    }
}

/// The kernel ends the ring's entries this way when the filesystem is unmounted.
fn unmounted(res: i32) -> bool {
    -res == libc::ENOTCONN || -res == libc::ECONNABORTED
}

/// A registration ended with `-res`. ENOTCONN and ECONNABORTED: the filesystem is unmounted.
/// EOPNOTSUPP: fuse's `enable_uring` was switched off after the handshake negotiated the
/// ring; the kernel (6.14 to 6.18 at least) then holds every request for good, so the
/// mount ends the way SIGTERM ends it (unmount, final commit) rather than hang its callers.
/// Anything else: the kernel refused the registration, gave up the ring, and sends every
/// request through /dev/fuse, which the main session serves.
fn refused(res: i32) {
    let e = io::Error::from_raw_os_error(-res);
    if unmounted(res) {
        return;
    }
    match -res {
        libc::EOPNOTSUPP => {
            // Every entry of every queue is refused: one unmount is enough.
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                tracing::error!("the kernel refused FUSE over io_uring after negotiating it ({e}): unmounting");
                // SAFETY: kill has no memory arguments; the signal thread turns it into an unmount.
                unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            });
        }
        _ => tracing::warn!("FUSE over io_uring refused ({e}); serving through /dev/fuse"),
    }
}

/// The native-endian integers of the kernel's headers; `at` is within the header, whose
/// length the caller checked (a slice of exactly 4 or 8 bytes always converts, so the
/// `expect`s cannot fire).
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("a 4-byte slice"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("an 8-byte slice"))
}

fn lane_thread(
    name: String,
    f: impl FnOnce() -> io::Result<()> + Send + 'static,
) -> io::Result<JoinHandle<io::Result<()>>> {
    std::thread::Builder::new().name(name).spawn(f)
}

/// Sets the SQE's `len` (the number of iovecs at `addr`), which the crate's URING_CMD builder
/// leaves at 0 and the kernel requires to be 2.
fn with_iovec_count(sqe: squeue::Entry128, n: u32) -> squeue::Entry128 {
    const { assert!(std::mem::size_of::<squeue::Entry128>() == 128) };
    // SAFETY: Entry128 is #[repr(C)]: a 64-byte struct io_uring_sqe and 64 bytes of command.
    // `len` is the u32 at byte 24 of io_uring_sqe (include/uapi/linux/io_uring.h); every
    // bit pattern of the 128 bytes is a valid Entry128.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    raw[24..28].copy_from_slice(&n.to_ne_bytes());
    // SAFETY: the same 128 bytes back, with one u32 field set: valid for the reason above.
    unsafe { std::mem::transmute(raw) }
}

/// Runs `f` with the calling thread allowed on every CPU, and the threads it starts with it:
/// a ring worker is pinned to its queue's CPU, and a commit it runs spreads its work over
/// threads.
pub fn on_all_cpus<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: zeroed cpu_set_t values are valid sets; the calls only read and write them.
    unsafe {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size, &mut old) != 0 || libc::CPU_COUNT(&old) as usize >= online_cpus() {
            return f();
        }
        let mut all: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..online_cpus() {
            libc::CPU_SET(cpu, &mut all);
        }
        libc::sched_setaffinity(0, size, &all);
        let r = f();
        libc::sched_setaffinity(0, size, &old);
        r
    }
}

/// (Not available_parallelism: that counts the CPUs this thread may use.)
fn online_cpus() -> usize {
    // SAFETY: sysconf has no memory arguments.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

fn possible_cpus() -> io::Result<usize> {
    // "0-1" or "0-3,5": the highest CPU number plus one, as the kernel's num_possible_cpus()
    // counts queues on a machine without holes.
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let last = s.trim().rsplit([',', '-']).next().and_then(|n| n.parse::<usize>().ok());
    last.map(|n| n + 1).ok_or_else(|| io::Error::other(format!("cannot read the possible CPUs from {s:?}")))
}

fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity only
    // read and write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::debug!("cannot pin to CPU {cpu}: {}", io::Error::last_os_error());
        }
    }
}

/// A lane's socket pair. Both directions must hold every message in flight at once (a
/// request or reply of up to `payload_len` and its headers per entry), or each side could
/// block sending to the other. Past net.core.wmem_max that takes SO_SNDBUFFORCE, which
/// needs CAP_NET_ADMIN: without it the pair is refused, and the ring with it.
fn socket_pair(entries: usize, payload_len: usize) -> io::Result<(OwnedFd, OwnedFd)> {
    let want = entries * (payload_len + 4096) * 2;
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors socketpair writes.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair returned two new descriptors that nothing else owns.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [fds[0], fds[1]] {
        for (force, plain) in [(libc::SO_SNDBUFFORCE, libc::SO_SNDBUF), (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)] {
            let size = want as libc::c_int;
            let mut got: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: fd is open; the option values are c_ints of the sizes given.
            unsafe {
                libc::setsockopt(fd, libc::SOL_SOCKET, force, (&size as *const libc::c_int).cast(), 4);
                libc::getsockopt(fd, libc::SOL_SOCKET, plain, (&mut got as *mut libc::c_int).cast(), &mut len);
            }
            if (got as usize) < want {
                return Err(io::Error::other(format!(
                    "socket buffers of {} KiB for the ring's lanes need CAP_NET_ADMIN (got {} KiB)",
                    want >> 10,
                    got >> 10
                )));
            }
        }
    }
    Ok(pair)
}

/// Whether this process can bridge the ring's queues to fuser (see `socket_pair`): asked
/// before the handshake, which must not negotiate a ring the daemon cannot serve.
pub fn can_bridge(payload_len: usize) -> io::Result<()> {
    socket_pair(entries_per_cpu(possible_cpus()?), payload_len).map(drop)
}

fn send_request(sock: &OwnedFd, opcode: u32, body: &[u8]) -> io::Result<()> {
    let mut h = [0u8; IN_HEADER];
    h[0..4].copy_from_slice(&((IN_HEADER + body.len()) as u32).to_ne_bytes());
    h[4..8].copy_from_slice(&opcode.to_ne_bytes());
    // Unique ids the kernel never uses for requests it sends through the ring.
    h[8..16].copy_from_slice(&(u64::MAX - 1).to_ne_bytes());
    let iov = [
        libc::iovec { iov_base: h.as_mut_ptr().cast(), iov_len: IN_HEADER },
        libc::iovec { iov_base: body.as_ptr() as *mut _, iov_len: body.len() },
    ];
    sendmsg(sock.as_raw_fd(), &iov)
}

/// The session starts with the INIT handshake: it gets the kernel's own offer.
fn send_init(sock: &OwnedFd, k: Offer) -> io::Result<()> {
    // struct fuse_init_in: major, minor, max_readahead, flags, flags2, unused[11].
    let mut b = [0u8; 64];
    // fuser's offer leaves FUSE_INIT_EXT out; without it the session would not read flags2.
    let bits = (k.offered | InitFlags::FUSE_INIT_EXT).bits();
    b[0..4].copy_from_slice(&k.abi.0.to_ne_bytes());
    b[4..8].copy_from_slice(&k.abi.1.to_ne_bytes());
    b[8..12].copy_from_slice(&k.max_readahead.to_ne_bytes());
    b[12..16].copy_from_slice(&(bits as u32).to_ne_bytes());
    b[16..20].copy_from_slice(&((bits >> 32) as u32).to_ne_bytes());
    send_request(sock, FUSE_INIT, &b)
}

fn drain_init_reply(sock: &OwnedFd) -> io::Result<()> {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < OUT_HEADER as isize {
        return Err(io::Error::other("the session did not answer INIT"));
    }
    let error = u32_at(&buf, 4) as i32;
    if error != 0 {
        return Err(io::Error::other(format!("the session refused INIT ({error})")));
    }
    Ok(())
}

fn sendmsg(sock: RawFd, iov: &[libc::iovec]) -> io::Result<()> {
    // SAFETY: a zeroed msghdr is valid; it points at iov, which lives across the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut _;
    msg.msg_iovlen = iov.len();
    loop {
        // SAFETY: msg and the buffers it names are valid for the call.
        let n = unsafe { libc::sendmsg(sock, &msg, 0) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

fn write_all(fd: RawFd, b: &[u8]) -> io::Result<()> {
    // SAFETY: b is readable for its length. /dev/fuse takes a notification in one write.
    let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}
