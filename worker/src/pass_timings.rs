//! How long each step of a loop pass took, as `/metrics` histograms, so that a slow request
//! shows which step stalled: the whole pass, waiting for LMDB's write lock, the journal
//! flush (the flusher thread's `fdatasync`), the checkpoint's msync of the data file (storage's
//! checkpoint thread) and the periodic flush of `sync_writes off`. The commit itself and the
//! writes per commit are `huststore_commit_duration_seconds` and
//! `huststore_commit_batch_writes` (in `metrics`), not repeated here.
//!
//! Choice: the counts live in each worker slot's region of the shared metrics mapping (a
//! [`Steps`] inside it), so they add up over workers and survive a respawn like the other
//! counters; a step costs two `Instant::now` and two relaxed atomic adds, from whichever
//! thread did it (the region is `'static` and all atomics, so the flusher and checkpoint
//! threads write it directly, with no lock and no message to the loop). Storage's steps come
//! through its [`storage::observe_steps`] hook, set once per worker process.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (microseconds) of every step histogram's buckets: from an uncontended lock
/// (a few microseconds) to a stall of seconds, so that a tail of 200 ms falls in a bucket of
/// its own rather than in `+Inf`.
pub const BOUNDS_US: [u64; 19] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 10_000_000,
];

/// A timed step: the index of its histogram in [`Steps`] and in [`HISTOGRAMS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timed {
    /// One loop pass, from `poll`'s return to the next `poll`.
    Pass = 0,
    /// Beginning a write transaction of a pass (one per environment written).
    WriteLockWait = 1,
    /// The journal flush of a committed pass.
    JournalFlush = 2,
    /// The checkpoint's msync of the data file.
    CheckpointSync = 3,
    /// `sync_writes off`: the periodic flush of the data file, in the loop.
    PeriodicSync = 4,
}

/// Name and help of each step's histogram, in [`Timed`] order.
pub const HISTOGRAMS: [(&str, &str); 5] = [
    (
        "huststore_pass_duration_seconds",
        "Time of one event-loop pass, from poll's return to the next poll.",
    ),
    (
        "huststore_write_lock_wait_seconds",
        "Time to begin a pass's LMDB write transaction, mostly waiting for the write lock.",
    ),
    (
        "huststore_journal_flush_duration_seconds",
        "Time of the journal fdatasync that makes a committed pass durable.",
    ),
    (
        "huststore_checkpoint_sync_duration_seconds",
        "Time of the checkpoint's msync of the data file.",
    ),
    (
        "huststore_periodic_sync_duration_seconds",
        "Time of the periodic flush of the data file (sync_writes off), by its own thread beside the event loop.",
    ),
];

/// One step's histogram: per-bucket (not cumulative) counts and the sum, in nanoseconds so
/// that microsecond-long steps do not round to nothing.
#[repr(C)]
pub struct Hist {
    pub buckets: [AtomicU64; BOUNDS_US.len() + 1],
    pub sum_ns: AtomicU64,
}

/// Every step's histogram of one worker slot. Plain atomics: valid when all zero (as the
/// shared mapping starts) and in memory shared between processes.
#[repr(C)]
pub struct Steps {
    pub hists: [Hist; HISTOGRAMS.len()],
}

impl Steps {
    /// Counts one `step` that took `took`.
    pub fn record(&self, step: Timed, took: Duration) {
        let h = &self.hists[step as usize];
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        h.buckets[bucket(ns)].fetch_add(1, Relaxed);
        h.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Runs `f` and counts the time it took as one `step`.
    pub fn time<T>(&self, step: Timed, f: impl FnOnce() -> T) -> T {
        let start = std::time::Instant::now();
        let out = f();
        self.record(step, start.elapsed());
        out
    }
}

/// The bucket of a step of `ns` nanoseconds: the first bound it does not exceed.
fn bucket(ns: u64) -> usize {
    BOUNDS_US
        .iter()
        .position(|&b| ns <= b * 1_000)
        .unwrap_or(BOUNDS_US.len())
}

/// Has this process's storage report its steps (the write lock, the checkpoint's msync) into
/// `steps`. Call before the store opens: its checkpoint thread syncs at once.
pub fn observe_storage(steps: &'static Steps) {
    storage::observe_steps(move |step, took| {
        let timed = match step {
            storage::Step::WriteLockWait => Timed::WriteLockWait,
            storage::Step::CheckpointSync => Timed::CheckpointSync,
        };
        steps.record(timed, took);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeroed() -> Box<Steps> {
        // SAFETY: `Steps` is atomics only, for which all-zero bytes are a valid value.
        unsafe { Box::new(std::mem::zeroed()) }
    }

    #[test]
    fn steps_fall_in_the_bucket_of_their_bound() {
        let s = zeroed();
        s.record(Timed::Pass, Duration::from_micros(5));
        s.record(Timed::Pass, Duration::from_nanos(5_001));
        s.record(Timed::Pass, Duration::from_millis(200));
        s.record(Timed::Pass, Duration::from_secs(60));
        let h = &s.hists[Timed::Pass as usize];
        let counts: Vec<u64> = h.buckets.iter().map(|b| b.load(Relaxed)).collect();
        assert_eq!(counts[0], 1, "5 us is in le=5us");
        assert_eq!(counts[1], 1, "5.001 us is in le=10us");
        assert_eq!(
            counts[BOUNDS_US.iter().position(|&b| b == 250_000).unwrap()],
            1
        );
        assert_eq!(counts[BOUNDS_US.len()], 1, "a minute is in +Inf");
        assert_eq!(
            h.sum_ns.load(Relaxed),
            5_000 + 5_001 + 200_000_000 + 60_000_000_000
        );
        let other = &s.hists[Timed::JournalFlush as usize];
        assert_eq!(other.sum_ns.load(Relaxed), 0);
    }

    #[test]
    fn time_counts_one_step_and_passes_the_result_through() {
        let s = zeroed();
        assert_eq!(s.time(Timed::PeriodicSync, || 7), 7);
        let h = &s.hists[Timed::PeriodicSync as usize];
        assert_eq!(h.buckets.iter().map(|b| b.load(Relaxed)).sum::<u64>(), 1);
    }
}
