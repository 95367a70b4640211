//! What becomes of a pass's writes once the loop commits them: the commit itself and its
//! group-commit figures, the journal flusher thread that makes each commit durable off the
//! loop (kv mode, `sync_writes on`), and the [`Tickets`] that say which flushes are done, so
//! the loop knows which held replies may leave; with `sync_writes off`, the periodic flush,
//! on a thread of its own too. It knows connections only by slab key: what a
//! connection makes of the tickets is `Conn::after_commit`'s business, and it never writes to
//! a socket.

use crate::metrics::SharedMetrics;
use crate::pass_timings::{Steps, Timed};

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SendError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What became of a pass's commit ([`Flushes::commit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Committed; its replies leave once its journal flush is durable (if any).
    Yes,
    /// Nothing of the pass was written: its replies become this status (500, or 503 when the
    /// daemon is fail-stopped), and their connections close after them.
    Failed(u16),
    /// Committed, but its flush failed (mq mode's sync after the commit): the change is kept
    /// and may be lost in a machine crash, so neither a 200 nor an error is true. The
    /// connections with replies of the pass close without them, as after a failed journal
    /// flush.
    Unacknowledged,
}

/// Where the journal flushes stand, as a connection with held replies needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tickets {
    /// The flushes handed to the flusher so far (the newest ticket is this number).
    pub issued: u64,
    /// The newest ticket known durable (every ticket when there is no flusher).
    pub durable: u64,
    /// The newest ticket whose flush failed (0: none).
    pub failed: u64,
}

impl Tickets {
    /// The newest ticket whose flush is over, durable or failed.
    pub fn over(&self) -> u64 {
        self.durable.max(self.failed)
    }
}

/// The worker's journal flushes: the flusher, the tickets handed to it, and the connections
/// whose queued replies wait for one of them (`Conn::after_commit` answered `Hold`).
pub struct Flushes {
    /// Started at the first commit that needs it.
    flusher: Option<Flusher>,
    /// The loop's token for the flusher's wakeups.
    token: mio::Token,
    issued: u64,
    held: Vec<usize>,
    stats: CommitLog,
    /// `sync_writes off`: the flush interval and when the next flush is due.
    sync_every: Option<(Duration, Instant)>,
    /// `sync_writes off`: the thread that runs those flushes, started at the first.
    syncing: Option<PeriodicSync>,
}

impl Flushes {
    pub fn new(token: mio::Token, conf: &conf::Conf) -> Flushes {
        Flushes {
            flusher: None,
            token,
            issued: 0,
            held: Vec::new(),
            stats: CommitLog::new(),
            sync_every: (!conf.sync_writes)
                .then(|| (conf.sync_interval, Instant::now() + conf.sync_interval)),
            syncing: None,
        }
    }

    /// `sync_writes off`: when the next periodic flush is due.
    pub fn next_sync(&self) -> Option<Instant> {
        self.sync_every.map(|(_, next)| next)
    }

    /// `sync_writes off`: flush the environment every `sync_interval`, which bounds what a
    /// machine crash can lose (a process crash loses nothing: the data is in the page cache).
    /// The flush runs on a thread of its own ([`PeriodicSync`]), not in the loop: it writes
    /// every page changed since the last one, which took 224 ms on average under a 4 KiB PUT
    /// load (benches/RESULTS.md, 2026-12-02), and a loop inside it serves no one meanwhile.
    /// A flush due while the last one still runs starts when that one ends.
    /// A failed flush fail-stops the daemon (`Store::sync` says so at `[alert]`); once
    /// stopped nothing is written, so there is nothing to flush (and a flush after a failed
    /// one may succeed without covering what the failed one lost).
    pub fn sync_if_due(&mut self, store: &storage::Store, steps: &'static Steps) {
        let Some((every, next)) = self.sync_every else {
            return;
        };
        let now = Instant::now();
        if now < next {
            return;
        }
        self.sync_every = Some((every, now + every));
        if store.fail_stopped() {
            return;
        }
        if self.syncing.is_none() {
            match PeriodicSync::start(store.syncer(), steps) {
                Ok(p) => self.syncing = Some(p),
                Err(e) => log::error!("could not start the periodic flush thread: {e}"),
            }
        }
        if !self.syncing.as_ref().is_some_and(PeriodicSync::ask) {
            // No thread: flushed here, as before there was one.
            sync_now(&store.syncer(), steps);
        }
    }

    /// Tests: the periodic flushes done so far by the thread.
    #[cfg(test)]
    fn periodic_syncs_done(&self) -> u64 {
        self.syncing
            .as_ref()
            .map_or(0, |p| p.done.load(Ordering::Acquire))
    }

    /// Commits the pass's batch and hands its journal flush over (a full disk: `507`). Values the batch lent must
    /// be copied before (`Conn::own_lent`): the commit ends its read transaction.
    pub fn commit(
        &mut self,
        batch: storage::Batch<'_>,
        registry: &mio::Registry,
        metrics: &SharedMetrics,
    ) -> Committed {
        match batch.commit_deferred() {
            Ok((stats, flush)) => {
                self.stats.record(stats);
                metrics.commit(stats);
                // A flush done here that failed leaves a committed pass: not acknowledged.
                match flush.map(|flush| self.hand_over(registry, flush, metrics.steps())) {
                    Some(false) => Committed::Unacknowledged,
                    _ => Committed::Yes,
                }
            }
            Err(storage::StorageError::Stopped { committed: true }) => {
                log::error!(
                    "the pass is committed but its flush failed: closing its connections \
                     without their replies"
                );
                Committed::Unacknowledged
            }
            Err(storage::StorageError::Stopped { committed: false }) => Committed::Failed(503),
            // A full disk, logged (rate-limited) where it was found; counted now, since this
            // worker may commit nothing more for a while (the next requests may go to another).
            Err(storage::StorageError::MapFull) => {
                let (map_full, disk_full) = storage::take_refusals();
                metrics.refusals(map_full, disk_full);
                Committed::Failed(507)
            }
            Err(e) => {
                log::error!("commit failed, answering the pass's requests with 500: {e}");
                Committed::Failed(500)
            }
        }
    }

    /// Hands a committed pass's journal flush to the flusher; if the flusher cannot start it
    /// flushes here, and `false` says that flush failed (the pass is not acknowledged).
    fn hand_over(
        &mut self,
        registry: &mio::Registry,
        flush: storage::JournalFlush,
        steps: &'static Steps,
    ) -> bool {
        let wait = |flush: storage::JournalFlush| steps.time(Timed::JournalFlush, || flush.wait());
        if self.flusher.is_none() {
            let started =
                mio::Waker::new(registry, self.token).and_then(|w| Flusher::start(w, steps));
            match started {
                Ok(f) => self.flusher = Some(f),
                Err(e) => {
                    log::error!("could not start the journal flusher, flushing in the loop: {e}");
                    return wait(flush).is_ok();
                }
            }
        }
        let Some(flusher) = self.flusher.as_ref() else {
            return wait(flush).is_ok();
        };
        self.issued += 1;
        match flusher.jobs.send((self.issued, flush)) {
            Ok(()) => true,
            // The thread is gone: flush here, and count the ticket done.
            Err(SendError((ticket, flush))) => {
                let ok = wait(flush).is_ok();
                let done = if ok {
                    &flusher.durable
                } else {
                    &flusher.failed
                };
                done.store(ticket, Ordering::Release);
                ok
            }
        }
    }

    pub fn tickets(&self) -> Tickets {
        Tickets {
            issued: self.issued,
            durable: self.flusher.as_ref().map_or(u64::MAX, Flusher::durable),
            failed: self.flusher.as_ref().map_or(0, Flusher::failed),
        }
    }

    /// The connection at `key` holds its replies until its flush is over.
    pub fn hold(&mut self, key: usize) {
        self.held.push(key);
    }

    /// The connections holding replies (some may be gone).
    pub fn held(&self) -> &[usize] {
        &self.held
    }

    /// Moves the held connections whose journal flush is over to `dirty`, where the loop asks
    /// them again (`Conn::after_commit`): they write their replies (flush done) or close
    /// without (flush failed). `still_held` says whether the connection at a key still waits
    /// (a gone one does not, and is skipped in `dirty`).
    pub fn release_held(
        &mut self,
        dirty: &mut Vec<usize>,
        still_held: impl Fn(usize, &Tickets) -> bool,
    ) {
        if self.held.is_empty() {
            return;
        }
        let tickets = self.tickets();
        let mut held = std::mem::take(&mut self.held);
        held.sort_unstable();
        held.dedup();
        held.retain(|&key| {
            let waits = still_held(key, &tickets);
            if !waits {
                dirty.push(key);
            }
            waits
        });
        self.held = held;
    }
}

/// The journal flusher: a thread that `fdatasync`s the journal of each committed pass (the
/// newest one when several are waiting: it covers the older ones) while the loop goes on with
/// the next passes, and wakes the loop when a flush is done. Replies of a pass wait for its
/// flush (see `Conn::after_commit`), so a `200` still means the write is on disk; what
/// changes is that the worker reads, applies and commits the next requests meanwhile.
struct Flusher {
    jobs: NewestJob<(u64, storage::JournalFlush)>,
    /// The newest ticket known durable.
    durable: Arc<AtomicU64>,
    /// The newest ticket whose flush failed.
    failed: Arc<AtomicU64>,
}

impl Flusher {
    fn start(waker: mio::Waker, steps: &'static Steps) -> io::Result<Flusher> {
        let durable = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (d, f) = (durable.clone(), failed.clone());
        // The newest flush covers the older ones waiting.
        let jobs = NewestJob::start(
            "journal-flush",
            move |(ticket, flush): (u64, storage::JournalFlush)| {
                match steps.time(Timed::JournalFlush, || flush.wait()) {
                    Ok(()) => d.store(ticket, Ordering::Release),
                    Err(_) => f.store(ticket, Ordering::Release),
                }
                if let Err(e) = waker.wake() {
                    log::error!("could not wake the loop after a journal flush: {e}");
                }
            },
        )?;
        Ok(Flusher {
            jobs,
            durable,
            failed,
        })
    }

    fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    fn failed(&self) -> u64 {
        self.failed.load(Ordering::Acquire)
    }
}

/// A thread that runs the newest of the jobs sent to it (the older ones waiting are dropped:
/// the newest covers them), and that is joined when dropped, after the jobs sent so far.
struct NewestJob<T> {
    jobs: Option<Sender<T>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<T: Send + 'static> NewestJob<T> {
    fn start(name: &str, mut run: impl FnMut(T) + Send + 'static) -> io::Result<NewestJob<T>> {
        let (jobs, queue) = std::sync::mpsc::channel::<T>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Ok(mut job) = queue.recv() {
                    while let Ok(newer) = queue.try_recv() {
                        job = newer;
                    }
                    run(job);
                }
            })?;
        Ok(NewestJob {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Hands `job` over; it comes back when the thread is gone.
    fn send(&self, job: T) -> Result<(), SendError<T>> {
        match &self.jobs {
            Some(jobs) => jobs.send(job),
            None => Err(SendError(job)),
        }
    }

    /// Tests: the thread's id.
    #[cfg(test)]
    fn thread_id(&self) -> Option<std::thread::ThreadId> {
        self.thread.as_ref().map(|t| t.thread().id())
    }
}

impl<T> Drop for NewestJob<T> {
    fn drop(&mut self) {
        // The jobs handed over end before the worker goes on and exits.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sync_now(syncer: &storage::Syncer, steps: &Steps) {
    if let Err(e) = steps.time(Timed::PeriodicSync, || syncer.sync()) {
        // The first failure of the daemon is the alert; a later one is no news.
        log::debug!("the periodic flush of the store failed: {e}");
    }
}

/// `sync_writes off`'s periodic flush thread: runs [`storage::Syncer::sync`] each time the
/// loop asks, one at a time; asks that come while one runs are done by one flush after it.
struct PeriodicSync {
    asks: NewestJob<()>,
    /// Flushes done (read by tests).
    #[cfg_attr(not(test), allow(dead_code))]
    done: Arc<AtomicU64>,
}

impl PeriodicSync {
    fn start(syncer: storage::Syncer, steps: &'static Steps) -> io::Result<PeriodicSync> {
        let done = Arc::new(AtomicU64::new(0));
        let d = done.clone();
        let asks = NewestJob::start("periodic-sync", move |()| {
            sync_now(&syncer, steps);
            d.fetch_add(1, Ordering::AcqRel);
        })?;
        Ok(PeriodicSync { asks, done })
    }

    /// Asks for a flush; false when the thread is gone.
    fn ask(&self) -> bool {
        self.asks.send(()).is_ok()
    }
}

/// Group-commit figures, logged at info every few seconds while writes flow.
#[derive(Debug)]
struct CommitLog {
    since: Instant,
    commits: u64,
    writes: u64,
    micros: u64,
}

impl CommitLog {
    fn record(&mut self, stats: storage::CommitStats) {
        self.commits += 1;
        self.writes += stats.writes as u64;
        self.micros += stats.micros;
        let elapsed = self.since.elapsed();
        if elapsed >= Duration::from_secs(5) {
            log::info!(
                "group commit: {} commits, {:.1} writes each, {} us each, {:.0} writes/s",
                self.commits,
                self.writes as f64 / self.commits as f64,
                self.micros / self.commits,
                self.writes as f64 / elapsed.as_secs_f64()
            );
            *self = CommitLog::new();
        }
    }

    fn new() -> CommitLog {
        CommitLog {
            since: Instant::now(),
            commits: 0,
            writes: 0,
            micros: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps() -> &'static Steps {
        // SAFETY: `Steps` is atomics only, for which all-zero bytes are a valid value.
        Box::leak(unsafe { Box::new(std::mem::zeroed()) })
    }

    /// `sync_writes off`: the periodic flush runs on its own thread, so the loop's call
    /// returns at once, and asks made while one runs are done after it, not dropped.
    #[test]
    fn the_periodic_flush_runs_beside_the_loop() {
        let dir = std::env::temp_dir().join(format!("hust-psync-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = crate::test_store(&dir);
        let conf = conf::parse_str(
            "sync_writes off;\nsync_interval 1ms;\n",
            std::path::Path::new("test.conf"),
        )
        .unwrap();
        let mut flushes = Flushes::new(mio::Token(0), &conf);
        let steps = steps();
        let deadline = Instant::now() + Duration::from_secs(20);
        while flushes.periodic_syncs_done() < 3 && Instant::now() < deadline {
            flushes.sync_if_due(&store, steps);
            std::thread::yield_now();
        }
        assert!(flushes.periodic_syncs_done() >= 3);
        let p = flushes.syncing.take().expect("a flush thread");
        let thread = p.asks.thread_id();
        assert_ne!(thread, Some(std::thread::current().id()));
        let done = p.done.clone();
        // Joins the thread: no flush is under way after this.
        drop(p);
        let h = &steps.hists[Timed::PeriodicSync as usize];
        let counted: u64 = h.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum();
        assert_eq!(counted, done.load(Ordering::Acquire));
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
