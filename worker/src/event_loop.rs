//! The worker's single-threaded mio loop. Each pass ends the same way: expire timers → let the
//! service do its periodic work → commit the pass's write transaction → write the replies →
//! check for shutdown. No reply leaves before the write it reports is committed.

use crate::access_log::{self, AccessLog};
use crate::conn::{Conn, Limits, Outcome, State, Step};
use crate::http::{Head, Response};
use crate::metrics::{Label, SharedMetrics, OTHER};
use crate::routes::{self, Handler, Kind, Route};
use crate::service::{ConnRef, Pass, Service};
use crate::{auth::Users, query::Params};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Tokens below this are reserved; connection `k` of the slab has token `FIRST_CONN + k`.
const SIGNAL: Token = Token(0);
const FIRST_LISTENER: usize = 1;
/// The journal flusher's wakeups (see [`Flusher`]).
const FLUSHED: Token = Token(FIRST_CONN - 1);
const FIRST_CONN: usize = 1024;
/// Connections accepted per listener per pass, so one worker does not grab a whole burst
/// while the others sleep.
const ACCEPT_BATCH: usize = 64;
/// A connection accepted but with no request yet counts as busy this long during a retire.
const FRESH_CONNECTION_GRACE: Duration = Duration::from_secs(1);

/// Why the loop should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Keep running.
    No,
    /// Retire: stop accepting, finish requests in flight, exit by the deadline.
    Graceful,
    /// Exit now.
    Now,
}

/// Signal flags, set by the signal handlers (through signal-hook) and read by the loop.
pub struct Signals {
    pub quit: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub terminate: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub reopen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub pipe: mio::net::UnixStream,
}

pub struct EventLoop {
    poll: Poll,
    listeners: Vec<TcpListener>,
    accepting: bool,
    conns: Slab<Conn>,
    next_generation: u64,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    limits: Limits,
    routes: &'static [Route],
    users: Option<Users>,
    debug_endpoints: bool,
    shutdown_timeout: Duration,
    signals: Signals,
    /// Connections with replies queued in this pass.
    dirty: Vec<usize>,
    /// Connections with a parked `/debug/sleep`.
    sleepers: Vec<ConnRef>,
    /// Every read goes through this one buffer (see [`Conn::read_available`]).
    scratch: Box<[u8]>,
    /// Connections read in this pass, to be served in its second half.
    readable: Vec<usize>,
    /// Listeners that hit [`ACCEPT_BATCH`] and may still have connections queued.
    accept_pending: Vec<usize>,
    commit_stats: CommitLog,
    metrics: SharedMetrics,
    /// What this pass's dispatches did, for the metrics and the park lists.
    pass_log: PassLog,
    /// Parked requests: connection, metrics label, when it parked, its access-log entry.
    parked: Vec<(ConnRef, Label, Instant, Option<access_log::Entry>)>,
    access_log: Option<AccessLog>,
    /// `sync_writes off`: the flush interval and when the next flush is due.
    sync_every: Option<(Duration, Instant)>,
    /// Flushes the journal off the loop (kv mode, `sync_writes on`); started at the first
    /// commit that needs it.
    flusher: Option<Flusher>,
    /// Tickets: the journal flushes handed to the flusher so far (the newest is this number).
    flushes_issued: u64,
    /// Connections whose queued replies wait for a journal flush (`Conn::hold`).
    held: Vec<usize>,
}

/// The journal flusher: a thread that `fdatasync`s the journal of each committed pass (the
/// newest one when several are waiting: it covers the older ones) while the loop goes on with
/// the next passes, and wakes the loop when a flush is done. Replies of a pass wait for its
/// flush (see `EventLoop::flush_dirty`), so a `200` still means the write is on disk; what
/// changes is that the worker reads, applies and commits the next requests meanwhile.
struct Flusher {
    jobs: Option<std::sync::mpsc::Sender<(u64, storage::JournalFlush)>>,
    /// The newest ticket known durable.
    durable: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The newest ticket whose flush failed.
    failed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    fn start(waker: mio::Waker) -> io::Result<Flusher> {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        let (jobs, queue) = std::sync::mpsc::channel::<(u64, storage::JournalFlush)>();
        let durable = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (d, f) = (durable.clone(), failed.clone());
        let thread = std::thread::Builder::new()
            .name("journal-flush".into())
            .spawn(move || {
                while let Ok(mut job) = queue.recv() {
                    while let Ok(newer) = queue.try_recv() {
                        job = newer;
                    }
                    let (ticket, flush) = job;
                    match flush.wait() {
                        Ok(()) => d.store(ticket, Ordering::Release),
                        Err(_) => f.store(ticket, Ordering::Release),
                    }
                    if let Err(e) = waker.wake() {
                        log::error!("could not wake the loop after a journal flush: {e}");
                    }
                }
            })?;
        Ok(Flusher {
            jobs: Some(jobs),
            durable,
            failed,
            thread: Some(thread),
        })
    }

    fn durable(&self) -> u64 {
        self.durable.load(std::sync::atomic::Ordering::Acquire)
    }

    fn failed(&self) -> u64 {
        self.failed.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Let the flushes handed over finish before the worker exits.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Filled by [`dispatch`] during a pass.
#[derive(Default)]
struct PassLog {
    /// Label, status, body size and access-log entry of every reply given in the pass (timed
    /// when the pass's replies go out).
    records: Vec<(Label, u16, usize, Option<access_log::Entry>)>,
    /// Requests parked in the pass: connection, label, whether it is a `/debug/sleep`, entry.
    parked: Vec<(ConnRef, Label, bool, Option<access_log::Entry>)>,
}

/// What [`dispatch`] needs besides the request.
struct DispatchCtx<'a> {
    routes: &'static [Route],
    users: Option<&'a Users>,
    debug: bool,
    metrics: SharedMetrics,
    store: &'a storage::Store,
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

impl EventLoop {
    pub fn new(
        listeners: Vec<std::net::TcpListener>,
        conf: &conf::Conf,
        users: Option<Users>,
        signals: Signals,
        metrics: SharedMetrics,
    ) -> io::Result<EventLoop> {
        let access_log = match &conf.access_log {
            Some(path) => Some(AccessLog::open(path.clone()).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("could not open access_log {}: {e}", path.display()),
                )
            })?),
            None => None,
        };
        crate::http::capture_access(access_log.is_some());
        let poll = Poll::new()?;
        let mut mio_listeners = Vec::with_capacity(listeners.len());
        for (i, l) in listeners.into_iter().enumerate() {
            l.set_nonblocking(true)?;
            let mut l = TcpListener::from_std(l);
            poll.registry()
                .register(&mut l, Token(FIRST_LISTENER + i), Interest::READABLE)?;
            mio_listeners.push(l);
        }
        let mut signals = signals;
        poll.registry()
            .register(&mut signals.pipe, SIGNAL, Interest::READABLE)?;
        Ok(EventLoop {
            poll,
            listeners: mio_listeners,
            accepting: true,
            conns: Slab::with_capacity(1024),
            next_generation: 1,
            timers: BinaryHeap::new(),
            limits: Limits {
                max_body: conf.client_max_body_size,
                header_timeout: conf.client_header_timeout,
                keepalive_timeout: conf.keepalive_timeout,
            },
            routes: match conf.mode {
                conf::Mode::Kv => routes::KV_ROUTES,
                conf::Mode::Mq => routes::MQ_ROUTES,
            },
            users,
            debug_endpoints: conf.debug_endpoints,
            shutdown_timeout: conf.shutdown_timeout,
            signals,
            dirty: Vec::new(),
            sleepers: Vec::new(),
            scratch: vec![0u8; crate::conn::SCRATCH_SIZE].into_boxed_slice(),
            readable: Vec::new(),
            accept_pending: Vec::new(),
            commit_stats: CommitLog::new(),
            metrics,
            pass_log: PassLog::default(),
            parked: Vec::new(),
            access_log,
            sync_every: (!conf.sync_writes)
                .then(|| (conf.sync_interval, Instant::now() + conf.sync_interval)),
            flusher: None,
            flushes_issued: 0,
            held: Vec::new(),
        })
    }

    /// Runs until told to stop; returns the exit code.
    pub fn run(&mut self, service: &mut dyn Service, store: &storage::Store) -> i32 {
        let mut events = Events::with_capacity(1024);
        let mut stop = Stop::No;
        let mut retire_deadline: Option<Instant> = None;
        let mut wakeups: Vec<(ConnRef, Response)> = Vec::new();
        loop {
            let now = Instant::now();
            let mut timeout = self.next_timer().map(|t| t.saturating_duration_since(now));
            if let Some(d) = service.next_deadline() {
                let d = d.saturating_duration_since(now);
                timeout = Some(timeout.map_or(d, |t| t.min(d)));
            }
            if let Some(deadline) = retire_deadline {
                let d = deadline.saturating_duration_since(now);
                timeout = Some(timeout.map_or(d, |t| t.min(d)));
            }
            if !self.accept_pending.is_empty() {
                // Edge-triggered readiness will not fire again for connections already queued.
                timeout = Some(Duration::ZERO);
            }
            if let Some((_, next)) = self.sync_every {
                let d = next.saturating_duration_since(now);
                timeout = Some(timeout.map_or(d, |t| t.min(d)));
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("poll failed: {e}");
                    return 1;
                }
            }
            let now = Instant::now();
            let now_ms = unix_ms();
            let mut batch = store.batch();
            let mut pass = Pass {
                batch: &mut batch,
                now,
                now_ms,
            };
            // Read every ready socket first, then serve: the pass's write transaction (and so
            // LMDB's write lock, which the other workers wait on) opens only in the second half.
            self.readable.clear();
            for index in std::mem::take(&mut self.accept_pending) {
                self.accept(index, now);
            }
            for event in events.iter() {
                match event.token() {
                    SIGNAL => stop = stop.max_with(self.read_signals()),
                    // Only a wakeup: held replies are released at the end of every pass.
                    FLUSHED => {}
                    Token(t) if t < FIRST_CONN => self.accept(t - FIRST_LISTENER, now),
                    Token(t) => self.on_conn_event(t - FIRST_CONN, service),
                }
            }
            let mut readable = std::mem::take(&mut self.readable);
            for &key in &readable {
                self.process(key, service, &mut pass, store);
            }
            readable.clear();
            self.readable = readable;
            self.expire_timers(service, &mut pass, store);
            wakeups.clear();
            service.tick(&mut pass, &mut wakeups);
            for (who, resp) in wakeups.drain(..) {
                self.finish_parked(who, &resp, service, &mut pass, store);
            }
            if stop != Stop::No && retire_deadline.is_none() {
                retire_deadline = Some(now + self.shutdown_timeout);
                self.begin_retire(service, &mut pass, store);
            }
            if pass.batch.has_writes() {
                // The commit ends the pass's read transaction: values it lent are copied first.
                self.own_lent();
                let committed = match batch.commit_deferred() {
                    Ok((stats, flush)) => {
                        self.commit_stats.record(stats);
                        self.metrics.commit(stats);
                        match flush {
                            Some(flush) => self.hand_over(flush),
                            None => true,
                        }
                    }
                    Err(e) => {
                        log::error!("commit failed, answering the pass's requests with 500: {e}");
                        false
                    }
                };
                self.release_held();
                self.flush_dirty(committed, service);
            } else {
                // Nothing to commit: the replies go out while the batch still lends its values
                // (large GET values then go from the map straight into the sockets), and what
                // the sockets did not take is copied before the batch ends.
                self.release_held();
                self.flush_dirty(true, service);
                self.own_lent();
                drop(batch);
            }
            self.sync_if_due(store);
            let took = now.elapsed();
            for (label, status, bytes, entry) in self.pass_log.records.drain(..) {
                self.metrics.request(label, status, took.as_micros() as u64);
                if let (Some(log), Some(entry)) = (self.access_log.as_mut(), entry) {
                    log.record(&entry, status, bytes, took);
                }
            }
            if let Some(log) = self.access_log.as_mut() {
                log.flush();
            }
            if stop == Stop::Now {
                return 0;
            }
            if let Some(deadline) = retire_deadline {
                self.close_idle(now);
                if self.conns.is_empty() {
                    return 0;
                }
                if Instant::now() >= deadline {
                    log::info!("shutdown timeout: closing {} connections", self.conns.len());
                    return 0;
                }
            }
        }
    }

    /// `sync_writes off`: flush the environment every `sync_interval`, which bounds what a
    /// machine crash can lose (a process crash loses nothing: the data is in the page cache).
    fn sync_if_due(&mut self, store: &storage::Store) {
        let Some((every, next)) = self.sync_every else {
            return;
        };
        let now = Instant::now();
        if now < next {
            return;
        }
        self.sync_every = Some((every, now + every));
        if let Err(e) = store.sync() {
            log::error!("could not flush the store to disk: {e}");
        }
    }

    fn read_signals(&mut self) -> Stop {
        use std::io::Read;
        use std::sync::atomic::Ordering;
        let mut buf = [0u8; 64];
        while let Ok(n) = self.signals.pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        if self.signals.reopen.swap(false, Ordering::Relaxed) {
            if let Err(e) = conf::logger::reopen() {
                log::error!("could not reopen the error log: {e}");
            }
            if let Some(log) = self.access_log.as_mut() {
                if let Err(e) = log.reopen() {
                    log::error!("could not reopen the access log: {e}");
                }
            }
        }
        if self.signals.terminate.load(Ordering::Relaxed) {
            Stop::Now
        } else if self.signals.quit.load(Ordering::Relaxed) {
            Stop::Graceful
        } else {
            Stop::No
        }
    }

    fn accept(&mut self, index: usize, now: Instant) {
        if !self.accepting {
            return;
        }
        for accepted in 0..=ACCEPT_BATCH {
            if accepted == ACCEPT_BATCH {
                // Let the other events of this pass run; go on with this listener next pass.
                if !self.accept_pending.contains(&index) {
                    self.accept_pending.push(index);
                }
                return;
            }
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.add_conn(stream, peer, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: log and try again on the next readiness.
                    log::error!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, mut stream: TcpStream, peer: std::net::SocketAddr, now: Instant) {
        let _ = stream.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut stream, Token(FIRST_CONN + key), Interest::READABLE)
        {
            log::error!("could not register a connection: {e}");
            return;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let mut conn = Conn::new(stream, generation, now);
        conn.peer = Some(peer);
        entry.insert(conn);
        self.metrics.connection_opened();
        self.schedule(key);
    }

    fn on_conn_event(&mut self, key: usize, service: &mut dyn Service) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.read_available(&mut self.scratch, &self.metrics) == Step::Close {
            self.close(key, service);
            return;
        }
        self.readable.push(key);
    }

    /// Runs the connection's state machine and records what it needs next.
    fn process(
        &mut self,
        key: usize,
        service: &mut dyn Service,
        pass: &mut Pass<'_, '_>,
        store: &storage::Store,
    ) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let who = ConnRef {
            key,
            generation: conn.generation,
        };
        self.serve(who, None, service, pass, store);
    }

    /// Serves the connection's buffered requests; with `parked_reply`, first answers its
    /// parked request with it.
    fn serve(
        &mut self,
        who: ConnRef,
        parked_reply: Option<&Response>,
        service: &mut dyn Service,
        pass: &mut Pass<'_, '_>,
        store: &storage::Store,
    ) {
        let limits = self.limits;
        let ctx = DispatchCtx {
            routes: self.routes,
            users: self.users.as_ref(),
            debug: self.debug_endpoints,
            metrics: self.metrics,
            store,
        };
        let log = &mut self.pass_log;
        let Some(conn) = self.conns.get_mut(who.key) else {
            return;
        };
        if conn.generation != who.generation {
            return;
        }
        let peer = conn.peer;
        let now = pass.now;
        let mut dispatch =
            |head: &Head, body: &[u8]| dispatch(&ctx, head, body, who, peer, service, pass, log);
        let step = match parked_reply {
            Some(resp) => conn.finish_parked(resp, &limits, now, &mut dispatch),
            None => conn.process(&limits, now, &mut dispatch),
        };
        self.settle_parked(now);
        self.after_step(who.key, step, service);
    }

    /// Moves the requests parked by the last dispatch into the loop's own lists.
    fn settle_parked(&mut self, now: Instant) {
        for (who, label, slept, entry) in self.pass_log.parked.drain(..) {
            if slept {
                self.sleepers.push(who);
            }
            self.parked.push((who, label, now, entry));
        }
    }

    fn after_step(&mut self, key: usize, step: Step, service: &mut dyn Service) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if step == Step::Close {
            self.close(key, service);
            return;
        }
        if conn.peer_closed {
            if let State::Parked { .. } = conn.state {
                // The client of a parked request left: forget it at once.
                self.close(key, service);
                return;
            }
            if !conn.has_output() && !conn.in_pass {
                self.close(key, service);
                return;
            }
        }
        if conn.has_output() {
            self.dirty.push(key);
        }
        self.schedule(key);
    }

    /// Answers a parked request (and records it for the metrics and the access log).
    fn finish_parked(
        &mut self,
        who: ConnRef,
        resp: &Response,
        service: &mut dyn Service,
        pass: &mut Pass<'_, '_>,
        store: &storage::Store,
    ) {
        if self
            .conns
            .get(who.key)
            .is_none_or(|c| c.generation != who.generation)
        {
            return;
        }
        if let Some(pos) = self.parked.iter().position(|p| p.0 == who) {
            let (_, label, since, entry) = self.parked.swap_remove(pos);
            let took = pass.now.saturating_duration_since(since);
            self.metrics
                .request(label, resp.status, took.as_micros() as u64);
            if let (Some(log), Some(entry)) = (self.access_log.as_mut(), entry) {
                log.record(&entry, resp.status, resp.body_len(), took);
            }
        }
        self.serve(who, Some(resp), service, pass, store);
    }

    fn close(&mut self, key: usize, service: &mut dyn Service) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            if let State::Parked { .. } = conn.state {
                let who = ConnRef {
                    key,
                    generation: conn.generation,
                };
                self.sleepers.retain(|s| *s != who);
                self.parked.retain(|p| p.0 != who);
                service.park_cancel(who);
            }
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.metrics.connection_closed();
        }
    }

    /// Makes sure the timer heap holds an entry no later than the connection's deadline.
    fn schedule(&mut self, key: usize) {
        let limits = self.limits;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let deadline = conn.deadline(&limits);
        if conn.scheduled.is_none_or(|s| deadline < s) {
            conn.scheduled = Some(deadline);
            self.timers.push(Reverse((deadline, key, conn.generation)));
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _, _))| *t)
    }

    fn expire_timers(
        &mut self,
        service: &mut dyn Service,
        pass: &mut Pass<'_, '_>,
        store: &storage::Store,
    ) {
        let now = pass.now;
        while let Some(&Reverse((at, key, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let limits = self.limits;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.generation != generation {
                continue;
            }
            if conn.scheduled == Some(at) {
                conn.scheduled = None;
            }
            let deadline = conn.deadline(&limits);
            if deadline > now {
                self.schedule(key);
                continue;
            }
            let who = ConnRef { key, generation };
            if let State::Parked { .. } = conn.state {
                let resp = if let Some(pos) = self.sleepers.iter().position(|s| *s == who) {
                    self.sleepers.swap_remove(pos);
                    Response::text("slept\n")
                } else {
                    service.park_timeout(who, pass)
                };
                self.finish_parked(who, &resp, service, pass, store);
                continue;
            }
            // Idle keep-alive, a head or body that took too long, or a client that does not
            // read its replies: close without a reply, as nginx does.
            self.close(key, service);
        }
    }

    /// Stops accepting, answers parked requests, and marks every connection to close after
    /// its request in progress.
    fn begin_retire(
        &mut self,
        service: &mut dyn Service,
        pass: &mut Pass<'_, '_>,
        store: &storage::Store,
    ) {
        self.accepting = false;
        for l in &mut self.listeners {
            let _ = self.poll.registry().deregister(l);
        }
        // Closing our copies does not close the master's sockets: their backlog survives.
        self.listeners.clear();
        for (_, conn) in self.conns.iter_mut() {
            conn.draining = true;
        }
        self.accept_pending.clear();
        // Parked queue clients are answered now so they come back to the next worker; a
        // `/debug/sleep` is a slow request in progress and finishes on its own time.
        let mut wakeups = Vec::new();
        service.retire(pass, &mut wakeups);
        for (who, resp) in wakeups {
            self.finish_parked(who, &resp, service, pass, store);
        }
    }

    /// While retiring: close connections with nothing in progress. A connection accepted
    /// less than a second ago that has not sent anything yet gets that second.
    fn close_idle(&mut self, now: Instant) {
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.is_idle()
                    && (c.served > 0 || now.duration_since(c.accepted_at) >= FRESH_CONNECTION_GRACE)
            })
            .map(|(k, _)| k)
            .collect();
        for key in idle {
            if let Some(mut conn) = self.conns.try_remove(key) {
                let _ = self.poll.registry().deregister(&mut conn.stream);
                self.metrics.connection_closed();
            }
        }
        // Fresh connections need a wakeup when their grace ends.
        if let Some(first) = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_idle() && c.served == 0)
            .map(|(_, c)| c.accepted_at + FRESH_CONNECTION_GRACE)
            .min()
        {
            self.timers.push(Reverse((first, usize::MAX, 0)));
        }
    }

    /// Hands a committed pass's journal flush to the flusher; `false` (the pass is answered
    /// as a failed commit) if the flusher cannot start, after flushing here.
    fn hand_over(&mut self, flush: storage::JournalFlush) -> bool {
        if self.flusher.is_none() {
            let started = mio::Waker::new(self.poll.registry(), FLUSHED).and_then(Flusher::start);
            match started {
                Ok(f) => self.flusher = Some(f),
                Err(e) => {
                    log::error!("could not start the journal flusher, flushing in the loop: {e}");
                    return flush.wait().is_ok();
                }
            }
        }
        let Some(flusher) = self.flusher.as_ref() else {
            return flush.wait().is_ok();
        };
        let Some(jobs) = flusher.jobs.as_ref() else {
            return flush.wait().is_ok();
        };
        self.flushes_issued += 1;
        match jobs.send((self.flushes_issued, flush)) {
            Ok(()) => true,
            // The thread is gone: flush here, and count the ticket done.
            Err(std::sync::mpsc::SendError((ticket, flush))) => {
                let ok = flush.wait().is_ok();
                let done = if ok {
                    &flusher.durable
                } else {
                    &flusher.failed
                };
                done.store(ticket, std::sync::atomic::Ordering::Release);
                ok
            }
        }
    }

    /// Copies the rest of every value lent by the pass's batch into the connections' own
    /// memory (see `outq`). Lent values are only queued by this pass's replies, so they sit
    /// on connections in the dirty list (not flushed yet, or flushed in part) or held.
    fn own_lent(&mut self) {
        for &key in self.dirty.iter().chain(self.held.iter()) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.own_lent();
            }
        }
    }

    /// The newest journal flush known done (every ticket when there is no flusher).
    fn flushes_durable(&self) -> u64 {
        self.flusher.as_ref().map_or(u64::MAX, Flusher::durable)
    }

    /// The newest journal flush that failed (0: none).
    fn flushes_failed(&self) -> u64 {
        self.flusher.as_ref().map_or(0, Flusher::failed)
    }

    /// Moves the held connections whose journal flush is over to the dirty list, where
    /// `flush_dirty` writes their replies (flush done) or closes them without (flush failed).
    fn release_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let over = self.flushes_durable().max(self.flushes_failed());
        let mut held = std::mem::take(&mut self.held);
        held.sort_unstable();
        held.dedup();
        held.retain(|&key| match self.conns.get(key) {
            Some(conn) if conn.hold <= over => {
                self.dirty.push(key);
                false
            }
            Some(_) => true,
            None => false,
        });
        self.held = held;
    }

    /// Writes the pass's replies (after the commit), or turns them into `500`s if it failed.
    /// Replies queued while a journal flush is outstanding wait for it (`Conn::hold`): a
    /// write's reply for its own flush, a read's because it may have seen such a write.
    fn flush_dirty(&mut self, committed: bool, service: &mut dyn Service) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        let durable = self.flushes_durable();
        let failed = self.flushes_failed();
        for &key in &dirty {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if !committed {
                conn.fail_pass();
            }
            if conn.in_pass && self.flushes_issued > durable {
                conn.hold = self.flushes_issued;
            }
            if conn.hold != 0 {
                if conn.hold <= failed {
                    log::error!("closing a connection whose writes' journal flush failed");
                    self.close(key, service);
                    continue;
                }
                if conn.hold > durable {
                    // The pass is over for this connection (`fail_pass` of a later pass must
                    // not reach back into this one's replies).
                    conn.in_pass = false;
                    self.held.push(key);
                    continue;
                }
                conn.hold = 0;
            }
            let step = conn.flush(&self.metrics);
            if step == Step::Close {
                self.close(key, service);
                continue;
            }
            let want_write = conn.has_output();
            if conn.is_idle() {
                conn.trim_buffers();
            }
            if want_write != conn.writable_interest {
                conn.writable_interest = want_write;
                let interest = if want_write {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                let token = Token(FIRST_CONN + key);
                if self
                    .poll
                    .registry()
                    .reregister(&mut conn.stream, token, interest)
                    .is_err()
                {
                    self.close(key, service);
                    continue;
                }
            }
            if want_write {
                // Keep flushing on writable events.
                self.dirty.push(key);
            }
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }
}

impl Stop {
    fn max_with(self, other: Stop) -> Stop {
        match (self, other) {
            (Stop::Now, _) | (_, Stop::Now) => Stop::Now,
            (Stop::Graceful, _) | (_, Stop::Graceful) => Stop::Graceful,
            _ => Stop::No,
        }
    }
}

/// Milliseconds since the unix epoch (TTLs and expiry are wall-clock).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The generic stage of every request: routing checks, the health paths, `/metrics`, query
/// decoding, then the mode's service.
#[allow(clippy::too_many_arguments)]
fn dispatch(
    ctx: &DispatchCtx<'_>,
    head: &Head,
    body: &[u8],
    who: ConnRef,
    peer: Option<std::net::SocketAddr>,
    service: &mut dyn Service,
    pass: &mut Pass<'_, '_>,
    log: &mut PassLog,
) -> Outcome {
    let (label, outcome, slept) = route_and_serve(ctx, head, body, who, service, pass);
    let entry = head.access.as_ref().map(|a| access_log::Entry {
        remote: peer,
        user: access_log::user_of(head.authorization.as_deref()),
        head: a.clone(),
    });
    match &outcome {
        Outcome::Reply(resp) => log
            .records
            .push((label, resp.status, resp.body_len(), entry)),
        Outcome::Park { .. } => log.parked.push((who, label, slept, entry)),
    }
    outcome
}

fn route_and_serve(
    ctx: &DispatchCtx<'_>,
    head: &Head,
    body: &[u8],
    who: ConnRef,
    service: &mut dyn Service,
    pass: &mut Pass<'_, '_>,
) -> (Label, Outcome, bool) {
    let (label, route) = match routes::route(
        ctx.routes,
        &head.path,
        head.method,
        head.authorization.as_deref(),
        ctx.users,
        ctx.debug,
    ) {
        Ok(found) => found,
        Err((label, resp)) => return (label.unwrap_or(OTHER), Outcome::Reply(resp), false),
    };
    let reply = |resp| (label, Outcome::Reply(resp), false);
    let handler = match route.handler {
        Handler::Health(health) => {
            let health_ctx = routes::health::Ctx {
                routes: ctx.routes,
                metrics: ctx.metrics,
                store: ctx.store,
            };
            return reply(health(&health_ctx, service, pass));
        }
        Handler::Request(handler) => handler,
    };
    let params = match Params::parse(&head.query) {
        Ok(p) => p,
        Err(_) => return reply(service.bad_request("malformed % escape in the query")),
    };
    let req = crate::service::Request {
        method: head.method,
        params: &params,
        body,
    };
    let outcome = handler.call(&req, who, service, pass);
    (label, outcome, route.kind == Kind::Debug)
}
