//! The data file's fresh pages read into the page cache ahead of the writes that will fill them.
//!
//! With `WRITEMAP`, the first write to a page past the high-water mark faults on a page the
//! page cache does not have. The fault reads it (zeros: the blocks are `fallocate`d, unwritten)
//! and, since it is a miss, reads around it too: up to `read_ahead_kb` (8 MiB on this
//! project's benchmark machine) of zero-filled pages in one fault, synchronously, in the
//! worker, with LMDB's write lock held. `perf` of a 4 KiB `sync_writes off` PUT load put 41%
//! of the workers' samples in that zeroing (`zero_user_segments` under `filemap_fault` and,
//! for the tail of a value written by `pwrite`, under `ext4_block_write_begin`), and every
//! stall of the one worker stalled the other one waiting for the lock.
//!
//! So a thread of each process's environment keeps the pages from the high-water mark to
//! [`WARM_AHEAD`] past it in the page cache with `readahead(2)`: for unwritten blocks that is
//! a zero fill without I/O, in batches, off the write lock. The worker's write then finds its
//! page cached: a minor fault (or, for `pwrite`, a copy). Only allocated blocks are read (the
//! caller passes how far `fallocate` went), so nothing here touches a hole, and a read never
//! dirties a page: what reaches the disk, and when, is unchanged. It is a hint throughout:
//! the worker never waits for it, and a page it has not reached yet is faulted in as before.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};

/// How far past the high-water mark the pages are kept cached: a few tens of milliseconds of
/// the fastest growth measured (4 KiB values at 30k/s take 240 MB/s of pages), while staying
/// within the blocks `room` allocates ahead.
pub(crate) const WARM_AHEAD: u64 = 32 << 20;
/// The thread is woken only once the target has moved this far (fewer wake-ups).
const WARM_STEP: u64 = 1 << 20;
/// Where the thread starts when it has fallen behind: this far past the high-water mark, so
/// that it never reads the very pages the worker is about to fault in (a page being read is
/// locked, and the worker would wait for a thread that runs at the lowest priority).
const WARM_GAP: u64 = 1 << 20;
/// One `readahead` call's length. The kernel clamps a call to the device's readahead window
/// (`read_ahead_kb`, 128 KiB by default), so longer calls would silently read less.
const CHUNK: u64 = 128 << 10;

/// The goal the workers set and the thread follows.
struct Goal {
    /// Where the pages in use end (nothing below needs warming).
    from: AtomicU64,
    /// Where warming should stop.
    to: AtomicU64,
    stop: AtomicBool,
}

/// One environment's warming thread in this process, started at the first [`Warmer::want`].
pub(crate) struct Warmer {
    goal: Arc<Goal>,
    /// The last `to` the thread was woken for.
    asked: AtomicU64,
    thread: OnceLock<Option<JoinHandle<()>>>,
}

impl Warmer {
    pub(crate) fn new() -> Warmer {
        Warmer {
            goal: Arc::new(Goal {
                from: AtomicU64::new(0),
                to: AtomicU64::new(0),
                stop: AtomicBool::new(false),
            }),
            asked: AtomicU64::new(0),
            thread: OnceLock::new(),
        }
    }

    /// Asks for the pages of `[high_water, min(high_water + WARM_AHEAD, allocated))` of the
    /// file `fd` to be cached. Cheap: two atomic stores, and a wake-up once the goal has
    /// moved by [`WARM_STEP`].
    pub(crate) fn want(&self, fd: RawFd, high_water: u64, allocated: u64) {
        let to = high_water.saturating_add(WARM_AHEAD).min(allocated);
        if to <= high_water || to < self.asked.load(Ordering::Relaxed).saturating_add(WARM_STEP) {
            return;
        }
        self.asked.store(to, Ordering::Relaxed);
        self.goal.from.store(high_water, Ordering::Relaxed);
        self.goal.to.store(to, Ordering::Release);
        let thread = self.thread.get_or_init(|| start(fd, &self.goal));
        if let Some(t) = thread {
            t.thread().unpark();
        }
    }
}

impl Drop for Warmer {
    fn drop(&mut self) {
        self.goal.stop.store(true, Ordering::Release);
        if let Some(Some(t)) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Starts the thread on a descriptor of its own (a `dup`, so LMDB's stays LMDB's to close);
/// `None`, and no warming, when either fails.
fn start(fd: RawFd, goal: &Arc<Goal>) -> Option<JoinHandle<()>> {
    // SAFETY: `fd` is the environment's open data file; `dup` only makes a new descriptor.
    let own = unsafe { libc::dup(fd) };
    if own < 0 {
        return None;
    }
    // SAFETY: `own` was just returned by `dup`, and nothing else owns it.
    let file = unsafe { File::from_raw_fd(own) };
    let goal = Arc::clone(goal);
    thread::Builder::new()
        .name("hs-warm".into())
        .spawn(move || run(&file, &goal))
        .map_err(|e| log::warn!("the page cache warming thread did not start: {e}"))
        .ok()
}

fn run(file: &File, goal: &Goal) {
    // The lowest priority (nice 19, for this thread only: on Linux a thread's id names it to
    // `setpriority`): zero-filling 32 MiB of pages takes tens of milliseconds of CPU, and in
    // a burst it would take them from the workers' requests. It works when a CPU is idle;
    // a page it has not reached is faulted in by the worker as before.
    // SAFETY: plain system calls on the calling thread; failure leaves the priority as is.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    }
    let mut done = 0u64;
    while !goal.stop.load(Ordering::Acquire) {
        let to = goal.to.load(Ordering::Acquire);
        let from = done.max(goal.from.load(Ordering::Relaxed).saturating_add(WARM_GAP));
        if from >= to {
            // A spurious wake-up only runs the loop once more.
            thread::park();
            continue;
        }
        let len = (to - from).min(CHUNK);
        // SAFETY: a plain system call on an open descriptor; it reads into the page cache
        // only. Failure (say, a filesystem without readahead) just leaves the pages cold.
        unsafe {
            libc::readahead(file.as_raw_fd(), from as libc::off64_t, len as usize);
        }
        done = from + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Pages of `file` in the page cache in `[from, to)` (`mincore` of a read-only map).
    fn cached_pages(file: &File, from: u64, to: u64) -> usize {
        let page = 4096usize;
        let len = (to - from) as usize;
        // SAFETY: a fresh shared read-only map of a range inside the file; unmapped below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                from as libc::off_t,
            )
        };
        assert_ne!(map, libc::MAP_FAILED);
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: `map` is `len` bytes mapped above; `vec` has one byte per page.
        let rc = unsafe { libc::mincore(map, len, vec.as_mut_ptr()) };
        // SAFETY: unmaps exactly the map made above.
        unsafe { libc::munmap(map, len) };
        assert_eq!(rc, 0);
        vec.iter().filter(|b| **b & 1 == 1).count()
    }

    #[test]
    fn warms_allocated_pages_past_the_high_water_mark_only() {
        let dir = crate::tests::TempDir::new("warm");
        let path = dir.path().join("data.mdb");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let mib = 1u64 << 20;
        file.set_len(64 * mib).unwrap();
        // SAFETY: allocates blocks of a range inside the file just sized.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, (40 * mib) as libc::off_t) };
        if rc != 0 {
            eprintln!("fallocate unsupported here: skipped");
            return;
        }
        let warmer = Warmer::new();
        // High-water mark at 4 MiB, blocks allocated up to 40 MiB: from the gap past the mark
        // (5 MiB) to 32 MiB past it (36 MiB).
        warmer.want(file.as_raw_fd(), 4 * mib, 40 * mib);
        let want = (31 * mib / 4096) as usize;
        let deadline = Instant::now() + Duration::from_secs(20);
        while cached_pages(&file, 5 * mib, 36 * mib) < want && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(cached_pages(&file, 5 * mib, 36 * mib), want);
        drop(warmer);
        // Nothing past the goal, nothing below the gap.
        assert_eq!(cached_pages(&file, 36 * mib, 64 * mib), 0);
        assert_eq!(cached_pages(&file, 0, 5 * mib), 0);
    }

    #[test]
    fn no_thread_without_allocated_room_or_without_a_descriptor() {
        let warmer = Warmer::new();
        // Nothing allocated past the mark: no thread.
        warmer.want(-1, 8 << 20, 8 << 20);
        assert!(warmer.thread.get().is_none());
        // A bad descriptor: no thread, and no panic.
        warmer.want(-1, 0, 8 << 20);
        assert!(matches!(warmer.thread.get(), Some(None)));
    }
}
