//! Reading many blocks of one device in few requests, for the bulk readers (scrub, fsck's
//! data pass): copies sorted by offset are grouped into runs, neighbours merged and small
//! gaps read through, so a device is read at its sequential speed.

/// A gap between two copies up to this size is read through rather than skipped.
pub const MAX_GAP: u64 = 256 << 10;
/// Longest single read.
pub const MAX_RUN: u64 = 8 << 20;

/// The run that starts at extent `i` of `n` extents sorted by offset (`extent(k)` gives
/// extent k's offset and size): returns the index just past the run's last extent and the
/// byte range `[start, end)` that one read covers.
pub fn run_at(n: usize, i: usize, extent: impl Fn(usize) -> (u64, u32)) -> (usize, u64, u64) {
    let (start, size) = extent(i);
    let mut end = start + u64::from(size);
    let mut j = i + 1;
    while j < n {
        let (o, s) = extent(j);
        let e = o + u64::from(s);
        if o > end.saturating_add(MAX_GAP) || e.max(end) - start > MAX_RUN {
            break;
        }
        end = end.max(e);
        j += 1;
    }
    (j, start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_and_small_gaps_merge_large_gaps_and_long_runs_split() {
        let ext = [(0u64, 4096u32), (4096, 4096), (4096 + 4096 + MAX_GAP, 4096), (1 << 30, 4096)];
        let at = |k: usize| ext[k];
        assert_eq!(run_at(ext.len(), 0, at), (3, 0, 8192 + MAX_GAP + 4096));
        assert_eq!(run_at(ext.len(), 3, at), (4, 1 << 30, (1 << 30) + 4096));
        let long: Vec<(u64, u32)> = (0..3).map(|k| (k * (4 << 20), 4 << 20)).collect();
        assert_eq!(run_at(long.len(), 0, |k| long[k]).0, 2, "a run stops at MAX_RUN bytes");
    }
}
