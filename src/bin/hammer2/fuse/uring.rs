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
//! into a buffer the daemon registered through io_uring. Here a few queue threads
//! (`-o uring_threads=N`, one per CPU up to N) hold every queue's buffers, each pinned to
//! the CPUs of its queues. A queue thread decodes each request in its entry's buffers
//! (`proto`), serves it through the one dispatch (`ops.rs`) and writes the reply into the
//! same buffers, then commits it (COMMIT_AND_FETCH, which also makes the entry ready for
//! the next request): no copy but the kernel's own, and a READ's data is read straight into
//! the entry's payload buffer.
//!
//! Requests that carry data or wait on a commit (READ, WRITE, FSYNC, FSYNCDIR, FALLOCATE) are
//! handed to a pool of N data workers on any CPU instead: a program keeps many of them in
//! flight (readahead, asynchronous direct I/O), and each costs checksums and copies that one
//! CPU would serialize. The worker serves the request in the entry's buffers and gives the
//! entry back to its queue thread (a list and an eventfd) to commit: only the thread that
//! submitted an entry's command may complete it in its ring.
//!
//! The kernel still sends FORGET and INTERRUPT through /dev/fuse, and notifications go back
//! through it (`devfuse.rs`). When the ring cannot be had the daemon does not negotiate it,
//! and everything goes through /dev/fuse; DESIGN §12 says why no request can be held for
//! good once it is negotiated.

use super::dispatch::{Answer, Dispatch};
use super::negotiate::MAX_PAYLOAD;
use super::proto::{self, Body, Reply, abi, out_header};
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use zerocopy::{FromBytes, IntoBytes};

/// `-o uring_threads=` when not given: queue threads (one per CPU up to this many) and data
/// workers each. As many data workers as /dev/fuse has workers at least (8): a worker
/// waits on the devices.
pub const DEFAULT_THREADS: usize = 8;

/// How many requests one CPU's queue may hold at once. Each entry has a payload buffer of
/// the largest request (about 1 MiB, resident once a large request has used it): 8 each up
/// to 8 CPUs, 64 in all up to 32, and 2 each beyond.
fn entries_per_cpu(cpus: usize) -> usize {
    (64 / cpus.max(1)).clamp(2, 8)
}

/// user_data of the read of a queue thread's eventfd (entries are numbered from 0).
const EVENT: u64 = u64::MAX;
/// user_data of its cancellation.
const CANCEL: u64 = u64::MAX - 1;
const IN_HEADER: usize = 40;
/// The largest reply to a request that has a payload of its own (names, a WRITE's data, an
/// xattr's value): that reply is encoded apart, as the request still lies in the payload
/// buffer, then copied in. The largest is an xattr's value (64 KiB).
const SIDE_REPLY: usize = (64 << 10) + 4096;
/// How long a queue polls for its next request before it sleeps (see `Queue::poll`). On
/// the 2-vCPU test VM, 20,000 creates on the no-work floor ran at 3.4k/s without polling,
/// 10.0k/s with 50 µs and 11.4k/s with 200 µs.
const POLL: Duration = Duration::from_micros(50);

/// The running queue threads and data workers; `join` waits until every one has stopped
/// (the kernel ends the queues when the filesystem is unmounted).
pub struct Rings {
    threads: Vec<JoinHandle<()>>,
    pool: Arc<Pool>,
    workers: Vec<JoinHandle<()>>,
}

impl Rings {
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
        self.pool.close();
        for w in self.workers {
            let _ = w.join();
        }
    }
}

/// Starts the queue threads and data workers on the connection `conn`. Returns None when
/// the handshake did not negotiate FUSE over io_uring. An error leaves the kernel holding
/// every request (the handshake negotiated the ring): the caller must unmount.
pub fn start<D: Dispatch>(conn: BorrowedFd, fuse: &Arc<D>, threads: usize) -> io::Result<Option<Rings>> {
    if !fuse.ring_negotiated() {
        return Ok(None);
    }
    let cpus = possible_cpus()?;
    let entries = entries_per_cpu(cpus);
    let n = threads.clamp(1, cpus);
    let pool = Arc::new(Pool::default());
    let mut workers = Vec::new();
    for i in 0..threads.max(1) {
        let (pool, fuse) = (pool.clone(), fuse.clone());
        workers.push(std::thread::Builder::new().name(format!("h2-ringio{i}")).spawn(move || pool.work(&*fuse))?);
    }
    let mut queues = Vec::new();
    for t in 0..n {
        // Queue q is served by thread q mod n, pinned to the CPUs of its queues.
        let qids: Vec<u16> = (t..cpus).step_by(n).map(|q| q as u16).collect();
        queues.push(Queue::new(conn.try_clone_to_owned()?, &qids, entries, fuse.clone(), pool.clone())?);
    }
    let mut handles = Vec::new();
    for (t, queue) in queues.into_iter().enumerate() {
        handles.push(std::thread::Builder::new().name(format!("hammer2-ring{t}")).spawn(move || {
            let cpus: Vec<usize> = queue.qids.iter().map(|&q| q as usize).collect();
            pin_to(&cpus);
            if let Err(e) = queue.serve() {
                // The queue's CPUs would hold their callers' requests for good. Ending the
                // daemon ends the connection: the kernel fails them (ENOTCONN) and the
                // filesystem keeps its last commit, as after a crash.
                tracing::error!("FUSE over io_uring, queue thread {t} failed: {e}; the daemon exits");
                std::process::exit(1);
            }
        })?);
    }
    Ok(Some(Rings { threads: handles, pool, workers }))
}

/// Whether this process can set up an io_uring with 128-byte entries (`kernel.io_uring_disabled`,
/// seccomp filters and some containers refuse it): asked before the handshake, which must
/// not negotiate a ring the daemon cannot serve.
pub fn usable() -> io::Result<()> {
    IoUring::<squeue::Entry128, cqueue::Entry>::builder().build(2).map(drop)
}

/// One entry of a queue: the buffers the kernel copies a request into and a reply out of.
struct Entry {
    qid: u16,
    header: Box<[u64; abi::URING_HEADER_LEN / 8]>,
    payload: Vec<u8>,
    iov: Box<[libc::iovec; 2]>,
}

/// The header as bytes (it is u64s only to be aligned as the kernel's struct is).
fn bytes(h: &mut [u64; abi::URING_HEADER_LEN / 8]) -> &mut [u8; abi::URING_HEADER_LEN] {
    h.as_mut_bytes().try_into().expect("the header's length")
}

/// An entry handed to a data worker: raw because it stays the queue's, which neither reads
/// nor frees it until the worker gives it back (`Given`).
struct Job {
    header: *mut [u8; abi::URING_HEADER_LEN],
    payload: *mut [u8],
    index: usize,
    home: Arc<Given>,
}

// SAFETY: the pointers name an entry's heap buffers, which only the worker holding the job
// touches until it hands the index back; the queue outlives every job it gave (it stops
// only once every entry has come back and been refused by the kernel).
unsafe impl Send for Job {}

/// Entries a data worker has served, waiting for their queue thread to commit them. A
/// polling queue thread finds them in the list; one about to sleep says so (`sleeping`), and
/// only then does the worker write the eventfd its ring reads, which wakes it.
struct Given {
    done: Mutex<Vec<usize>>,
    sleeping: AtomicBool,
    event: OwnedFd,
}

impl Given {
    fn back(&self, index: usize) {
        self.done.lock().push(index);
        // SeqCst with the queue thread's store before its last look at `done`: either it
        // sees this entry, or this load sees it asleep (see `Queue::serve`).
        if self.sleeping.load(SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd; it cannot block (the
            // count would have to reach u64::MAX - 1).
            unsafe { libc::write(self.event.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    fn any(&self) -> bool {
        !self.done.lock().is_empty()
    }
}

/// The data workers' queue of jobs.
#[derive(Default)]
struct Pool {
    jobs: Mutex<(VecDeque<Job>, bool)>,
    ready: Condvar,
}

impl Pool {
    fn give(&self, job: Job) {
        self.jobs.lock().0.push_back(job);
        self.ready.notify_one();
    }

    fn close(&self) {
        self.jobs.lock().1 = true;
        self.ready.notify_all();
    }

    fn work(&self, fuse: &impl Dispatch) {
        let mut side = vec![0u8; SIDE_REPLY];
        loop {
            let job = {
                let mut q = self.jobs.lock();
                loop {
                    if let Some(j) = q.0.pop_front() {
                        break j;
                    }
                    if q.1 {
                        return;
                    }
                    self.ready.wait(&mut q);
                }
            };
            // SAFETY: see `Job`: the entry is this worker's alone until `back`.
            let (header, payload) = unsafe { (&mut *job.header, &mut *job.payload) };
            serve_entry(fuse, header, payload, &mut side);
            job.home.back(job.index);
        }
    }
}

/// Whether a request goes to the data workers (see the module's comment).
fn for_workers(opcode: u32) -> bool {
    use abi::opcode::*;
    matches!(opcode, READ | WRITE | FSYNC | FSYNCDIR | FALLOCATE)
}

/// Serves the request in an entry's buffers and leaves its reply there, ready to commit:
/// the out-header in the header's first bytes, the body in the payload, its length in
/// `fuse_uring_ent_in_out.payload_sz`.
fn serve_entry(fuse: &impl Dispatch, header: &mut [u8; abi::URING_HEADER_LEN], payload: &mut [u8], side: &mut [u8]) {
    let head = abi::InHeader::read_from_prefix(&header[..]).map(|(h, _)| h).unwrap_or_default();
    let ent_at = abi::URING_ENT_IN_OUT;
    let ent = abi::UringEntInOut::read_from_prefix(&header[ent_at..]).map(|(e, _)| e).unwrap_or_default();
    let sent = ent.payload_sz as usize;
    // The kernel puts the operation's own header (its first argument) in op_in and the
    // rest in the payload; the in-header's length covers all of them.
    let op_len =
        (head.len as usize).checked_sub(IN_HEADER + sent).filter(|&n| n <= abi::URING_ENT_IN_OUT - abi::URING_OP_IN);
    let (error, len) = match op_len.filter(|_| sent <= payload.len()) {
        None => {
            tracing::error!("malformed request from the kernel (len {}, payload {sent}); answered EIO", head.len);
            (-libc::EIO, 0)
        }
        Some(op_len) => {
            let (ops, op_in) = header.split_at_mut(abi::URING_OP_IN);
            let op = &op_in[..op_len];
            if sent == 0 {
                // Nothing of the request in the payload: the reply goes straight there (a
                // READ's data, a directory listing).
                let r = proto::decode(&ops[..IN_HEADER], Body::new(op, &[]));
                answer(fuse, r, &mut Reply::new(payload))
            } else {
                // The request's names or data lie in the payload: the reply is encoded apart
                // and copied in after (it is small: an entry, a count, an xattr's value).
                let r = proto::decode(&ops[..IN_HEADER], Body::new(op, &payload[..sent]));
                let (error, len) = answer(fuse, r, &mut Reply::new(side));
                payload[..len].copy_from_slice(&side[..len]);
                (error, len)
            }
        }
    };
    let h = out_header(head.unique, error, len);
    header[..16].copy_from_slice(h.as_bytes());
    let at = ent_at + std::mem::offset_of!(abi::UringEntInOut, payload_sz);
    header[at..at + 4].copy_from_slice(&(if error == 0 { len as u32 } else { 0 }).to_ne_bytes());
}

fn answer(fuse: &impl Dispatch, r: Result<proto::Request, proto::Malformed>, out: &mut Reply) -> (i32, usize) {
    match r {
        Ok(r) => match fuse.dispatch(&r, out) {
            Answer::Done => (0, out.written()),
            Answer::Error(e) => (-e.0, 0),
            // (The kernel sends FORGET and INTERRUPT through /dev/fuse; an entry that
            // carried one would still need a commit to fetch the next request.)
            Answer::Nothing => (0, 0),
        },
        Err(proto::Malformed) => {
            tracing::error!("malformed request from the kernel; answered EIO");
            (-libc::EIO, 0)
        }
    }
}

/// One queue thread: the entries of its queues, its ring, and where data workers give
/// entries back.
struct Queue<D> {
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    conn: OwnedFd,
    qids: Vec<u16>,
    entries: Vec<Entry>,
    fuse: Arc<D>,
    pool: Arc<Pool>,
    given: Arc<Given>,
    /// The eventfd's counter is read into this.
    event_buf: Box<u64>,
    /// Encodes the replies of requests with a payload (see `serve_entry`).
    side: Vec<u8>,
    /// Requests served so far (logged when the queue stops).
    served: u64,
}

// SAFETY: the only non-Send parts are the iovecs' raw pointers, which point into the same
// entry's heap buffers: the Queue owns everything they point to and moves with it.
unsafe impl<D: Dispatch> Send for Queue<D> {}

impl<D: Dispatch> Queue<D> {
    fn new(conn: OwnedFd, qids: &[u16], per_queue: usize, fuse: Arc<D>, pool: Arc<Pool>) -> io::Result<Queue<D>> {
        let total = per_queue * qids.len();
        let size = (total + 2).next_power_of_two() as u32;
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder().setup_coop_taskrun().build(size)?;
        let mut entries: Vec<Entry> = qids
            .iter()
            .flat_map(|&qid| (0..per_queue).map(move |_| qid))
            .map(|qid| Entry {
                qid,
                header: Box::new([0; abi::URING_HEADER_LEN / 8]),
                payload: vec![0; MAX_PAYLOAD],
                iov: Box::new([libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; 2]),
            })
            .collect();
        for e in &mut entries {
            e.iov[0] = libc::iovec { iov_base: e.header.as_mut_ptr().cast(), iov_len: abi::URING_HEADER_LEN };
            e.iov[1] = libc::iovec { iov_base: e.payload.as_mut_ptr().cast(), iov_len: e.payload.len() };
        }
        // SAFETY: eventfd has no memory arguments; it returns a new descriptor or -1.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor nothing else owns.
        let event = unsafe { OwnedFd::from_raw_fd(efd) };
        Ok(Queue {
            ring,
            conn,
            qids: qids.to_vec(),
            entries,
            fuse,
            pool,
            given: Arc::new(Given { done: Mutex::default(), sleeping: AtomicBool::new(false), event }),
            event_buf: Box::new(0),
            side: vec![0; SIDE_REPLY],
            served: 0,
        })
    }

    fn command(&self, op: u32, index: usize, commit_id: u64) -> squeue::Entry128 {
        let req = abi::UringCmdReq { flags: 0, commit_id, qid: self.entries[index].qid, padding: [0; 6] };
        let mut cmd = [0u8; 80];
        cmd[..std::mem::size_of::<abi::UringCmdReq>()].copy_from_slice(req.as_bytes());
        let sqe = opcode::UringCmd80::new(types::Fd(self.conn.as_raw_fd()), op)
            .cmd(cmd)
            .addr(Some(self.entries[index].iov.as_ptr() as u64))
            .build()
            .user_data(index as u64);
        with_iovec_count(sqe, 2)
    }

    fn push(&mut self, sqe: squeue::Entry128) -> io::Result<()> {
        // SAFETY: every buffer an SQE names (an entry's iovecs, header and payload, the
        // eventfd's counter) is owned by this Queue, never moved (boxed or a Vec not
        // resized) and outlives the ring's use of it: the queue stops only once every
        // entry is refused and the eventfd's read is cancelled and reaped (`serve`).
        while unsafe { self.ring.submission().push(&sqe) }.is_err() {
            self.ring.submit()?;
        }
        Ok(())
    }

    fn arm_event(&mut self) -> io::Result<()> {
        let sqe =
            opcode::Read::new(types::Fd(self.given.event.as_raw_fd()), (&mut *self.event_buf as *mut u64).cast(), 8)
                .build()
                .user_data(EVENT);
        self.push(sqe.into())
    }

    /// Waits up to POLL for the next completion (or an entry given back) without sleeping.
    /// A queue that sleeps leaves its CPU idle, and the scheduler wakes a caller on an idle
    /// CPU rather than on its own busy one: the caller would change CPUs at every reply,
    /// each time waking an idle one. While the queues poll, the caller stays where its
    /// queue is. sched_yield gives the CPU to anything else runnable (the caller first), and
    /// runs the kernel's task work that posts a new request's completion.
    fn poll(&mut self) -> io::Result<()> {
        self.ring.submit()?;
        let start = Instant::now();
        while self.ring.completion().is_empty() && !self.given.any() && start.elapsed() < POLL {
            // SAFETY: sched_yield has no arguments and cannot fail on Linux.
            unsafe { libc::sched_yield() };
            self.ring.completion().sync();
        }
        Ok(())
    }

    fn serve(mut self) -> io::Result<()> {
        for i in 0..self.entries.len() {
            let sqe = self.command(abi::URING_CMD_REGISTER, i, 0);
            self.push(sqe)?;
        }
        self.arm_event()?;
        // Entries that have carried a request: their registration is behind them.
        let mut fetched = vec![false; self.entries.len()];
        let mut live = self.entries.len();
        while live > 0 {
            self.poll()?;
            // Sleep only with nothing to do; a data worker giving an entry back after this
            // look sees `sleeping` and writes the eventfd (see `Given`).
            self.given.sleeping.store(true, SeqCst);
            let idle = self.ring.completion().is_empty() && !self.given.any();
            let done = self.wait(usize::from(idle));
            self.given.sleeping.store(false, SeqCst);
            let back = std::mem::take(&mut *self.given.done.lock());
            for i in back {
                self.commit(i)?;
            }
            for (tag, res) in done? {
                if tag == EVENT {
                    self.arm_event()?;
                } else if tag == CANCEL {
                } else if res >= 0 {
                    fetched[tag as usize] = true;
                    self.served += 1;
                    self.request(tag as usize)?;
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
        // The eventfd's read still names the counter, which is freed with the queue: cancel
        // it and wait until the kernel has let go.
        self.push(opcode::AsyncCancel::new(EVENT).build().user_data(CANCEL).into())?;
        while !self.wait(1)?.iter().any(|(tag, _)| *tag == EVENT) {}
        let qids: Vec<String> = self.qids.iter().map(|q| q.to_string()).collect();
        tracing::info!("FUSE over io_uring, queue {}: {} requests served", qids.join(","), self.served);
        Ok(())
    }

    /// Sleeps until at least `want` completions are there, and takes them all.
    fn wait(&mut self, want: usize) -> io::Result<Vec<(u64, i32)>> {
        match self.ring.submit_and_wait(want) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
        Ok(self.ring.completion().map(|c| (c.user_data(), c.result())).collect())
    }

    /// A request arrived in entry `i`: serve it here, or hand it to a data worker.
    fn request(&mut self, i: usize) -> io::Result<()> {
        let e = &mut self.entries[i];
        let h = bytes(&mut e.header);
        let opcode = u32::from_ne_bytes(h[4..8].try_into().expect("4 bytes"));
        if for_workers(opcode) {
            let job = Job { header: h, payload: &mut e.payload[..], index: i, home: self.given.clone() };
            self.pool.give(job);
            return Ok(());
        }
        serve_entry(&*self.fuse, h, &mut e.payload, &mut self.side);
        self.commit(i)
    }

    /// Sends entry `i`'s reply (already in its buffers), which also makes the entry ready
    /// for the next request.
    fn commit(&mut self, i: usize) -> io::Result<()> {
        let h = bytes(&mut self.entries[i].header);
        let unique = u64::from_ne_bytes(h[8..16].try_into().expect("8 bytes"));
        let sqe = self.command(abi::URING_CMD_COMMIT_AND_FETCH, i, unique);
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

/// Pins the calling thread to `cpus` (its queues' CPUs), best effort.
fn pin_to(cpus: &[usize]) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity only
    // read and write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::debug!("cannot pin to CPUs {cpus:?}: {}", io::Error::last_os_error());
        }
    }
}
