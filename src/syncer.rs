//! The background committer: commits every `sync_interval`, and sooner when dirty data
//! passes half the dirty limit or an operation asks for room (space or memory pressure).
//! Writers that pass the dirty limit wait for it (see `vnops::file`), which keeps memory
//! bounded under an endless write stream.

use crate::fs::FsInner;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub fn spawn(fs: Arc<FsInner>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("hammer2-syncer".into())
        .spawn(move || run(&fs))
        .expect("spawning the syncer thread")
}

fn run(fs: &FsInner) {
    let mut last = Instant::now();
    loop {
        {
            let mut tid = fs.committed_tid.lock();
            if fs.stopping.load(Ordering::SeqCst) {
                return;
            }
            let due = fs.opts.sync_interval.saturating_sub(last.elapsed());
            if !fs.commit_wanted.load(Ordering::SeqCst) && !due.is_zero() {
                fs.commit_cv.wait_for(&mut tid, due.min(Duration::from_millis(200)));
            }
        }
        if fs.stopping.load(Ordering::SeqCst) {
            return;
        }
        // A kick only wakes us; the load decides. Writers kick while a commit runs, when the
        // load still counts the inodes being committed, and acting on those kicks made a
        // second, small commit follow every large one at once (rewriting the same
        // directories for a fraction of the changes).
        fs.commit_wanted.store(false, Ordering::SeqCst);
        let pressure = fs.dirty_load() > fs.opts.dirty_limit / 2;
        if pressure || last.elapsed() >= fs.opts.sync_interval {
            if let Err(e) = crate::commit::commit(fs, false, false) {
                tracing::error!("background commit failed: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
            last = Instant::now();
        }
    }
}

/// Asks the syncer to commit soon.
pub fn kick(fs: &FsInner) {
    fs.commit_wanted.store(true, Ordering::SeqCst);
    fs.commit_cv.notify_all();
}
