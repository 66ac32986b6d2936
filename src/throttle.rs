//! Throttling of long maintenance operations (`--rate`): scrub and resync run on a busy
//! system without taking all of its disk bandwidth. A pacer rather than a token bucket
//! crate: the operations move bytes in batches of their own size and only need to wait,
//! after each batch, until the bytes moved so far fit the rate since they started (T1 in
//! docs/DESIGN.md §9), a few lines that a rate limiter's per-cell API (`governor` counts
//! in u32 cells) would not shorten.

use std::time::{Duration, Instant};

/// How a scrub or a resync runs, as the operator asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Bytes per second at most (`--rate`): of copies read by a scrub, of copies written by
    /// a resync. None: as fast as the devices go.
    pub rate: Option<u64>,
}

/// Paces an operation at `rate` bytes per second (none: as fast as it goes).
#[derive(Debug)]
pub struct Throttle {
    rate: Option<u64>,
    start: Instant,
}

impl Throttle {
    pub fn new(rate: Option<u64>) -> Throttle {
        Throttle { rate: rate.filter(|r| *r > 0), start: Instant::now() }
    }

    /// The rate, in bytes per second.
    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    /// Waits until `done` bytes since the start are within the rate (T1): however the
    /// operation batches its I/O, it has then taken at least `done / rate` seconds.
    pub fn pace(&self, done: u64) {
        let Some(rate) = self.rate else { return };
        let due = Duration::from_secs_f64(done as f64 / rate as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }

    /// Time spent paused does not count: after a resume the operation goes on at the rate
    /// instead of catching up in a burst.
    pub fn exclude(&mut self, paused: Duration) {
        self.start += paused;
    }
}
