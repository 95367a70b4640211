//! The worker's single-threaded mio loop. Each pass ends the same way: expire timers → let the
//! service do its periodic work → commit the pass's write transaction → write the replies →
//! check for shutdown. No reply leaves before the write it reports is committed and its
//! journal flush is durable. The loop owns the sockets' registrations, the slab, the timer
//! heap and the parked lists; it acts on what connections answer (`conn`), hands requests to
//! `dispatch`, and commits through `flusher`. It never blocks except in `poll`.

use crate::accept_gate::AcceptGate;
use crate::access_log::AccessLog;
use crate::conn::{AfterCommit, Conn, Expiry, Limits, Served};
use crate::dispatch::{account, dispatch, DispatchCtx, ParkedRequests, PassLog, Serving};
use crate::flusher::{Committed, Flushes};
use crate::http::{Head, Response};
use crate::metrics::SharedMetrics;
use crate::pass_timings::Timed;
use crate::routes::{self, Route};
use crate::service::{ConnRef, Pass, Replication, Service};
use crate::signals::{Signals, Stop};
use crate::{auth::Users, conn::Step};
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
/// The journal flusher's wakeups (see [`Flushes`]).
const FLUSHED: Token = Token(FIRST_CONN - 1);
/// The service's cluster link (cluster mode only, see [`Service::attach`]).
const CLUSTER_LINK: Token = Token(FIRST_CONN - 2);
const FIRST_CONN: usize = 1024;
/// Connections accepted per listener per pass, so one worker does not grab a whole burst
/// while the others sleep.
const ACCEPT_BATCH: usize = 64;
/// A connection accepted but with no request yet counts as busy this long during a retire.
const FRESH_CONNECTION_GRACE: Duration = Duration::from_secs(1);

pub struct EventLoop {
    poll: Poll,
    listeners: Vec<TcpListener>,
    accepting: bool,
    /// `worker_connections` and the pause after a lack of descriptors.
    gate: AcceptGate,
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
    /// Every read goes through this one buffer (see [`Conn::read_available`]).
    scratch: Box<[u8]>,
    /// Connections read in this pass, to be served in its second half.
    readable: Vec<usize>,
    /// Listeners that hit [`ACCEPT_BATCH`] and may still have connections queued.
    accept_pending: Vec<usize>,
    metrics: SharedMetrics,
    /// What this pass's dispatches did, for the metrics and the park lists.
    pass_log: PassLog,
    parked: ParkedRequests,
    access_log: Option<AccessLog>,
    /// Commits, and flushes the journal off the loop (kv mode, `sync_writes on`); holds the
    /// connections whose replies wait for a flush.
    flushes: Flushes,
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
            .register(signals.pipe(), SIGNAL, Interest::READABLE)?;
        Ok(EventLoop {
            poll,
            listeners: mio_listeners,
            accepting: true,
            gate: AcceptGate::new(conf.worker_connections),
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
            scratch: vec![0u8; crate::conn::SCRATCH_SIZE].into_boxed_slice(),
            readable: Vec::new(),
            accept_pending: Vec::new(),
            metrics,
            pass_log: PassLog::default(),
            parked: ParkedRequests::default(),
            access_log,
            flushes: Flushes::new(FLUSHED, conf),
        })
    }

    /// Runs until told to stop; returns the exit code.
    pub fn run(&mut self, service: &mut dyn Service, store: &storage::Store) -> i32 {
        let mut events = Events::with_capacity(1024);
        let mut stop = Stop::No;
        let mut retire_deadline: Option<Instant> = None;
        let mut wakeups: Vec<(ConnRef, Response)> = Vec::new();
        service.attach(self.poll.registry(), CLUSTER_LINK, Instant::now());
        loop {
            let now = Instant::now();
            let due = [
                self.next_timer(),
                service.next_deadline(),
                retire_deadline,
                self.flushes.next_sync(),
                self.gate.next_deadline(),
            ];
            let mut timeout = due
                .into_iter()
                .flatten()
                .min()
                .map(|at| at.saturating_duration_since(now));
            if !self.accept_pending.is_empty() {
                // Edge-triggered readiness will not fire again for connections already queued.
                timeout = Some(Duration::ZERO);
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
                replication: Replication::Local,
            };
            // Read every ready socket first, then serve: the pass's write transaction (and so
            // LMDB's write lock, which the other workers wait on) opens only in the second half.
            self.readable.clear();
            let mut retry = std::mem::take(&mut self.accept_pending);
            retry.extend(self.gate.release(self.conns.len(), now));
            for index in retry {
                self.accept(index, now);
            }
            for event in events.iter() {
                match event.token() {
                    SIGNAL => stop = stop.max(self.read_signals()),
                    // Only a wakeup: held replies are released at the end of every pass.
                    FLUSHED => {}
                    CLUSTER_LINK => service.on_link_ready(now),
                    Token(t) if t < FIRST_CONN => self.accept(t - FIRST_LISTENER, now),
                    Token(t) => self.on_conn_event(t - FIRST_CONN, service),
                }
            }
            let mut readable = std::mem::take(&mut self.readable);
            for &key in &readable {
                if let Some(who) = self.who(key) {
                    self.serve(who, None, service, &mut pass, store);
                }
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
                let committed = self
                    .flushes
                    .commit(batch, self.poll.registry(), &self.metrics);
                self.release_held();
                self.flush_dirty(committed, service);
            } else {
                // Nothing to commit: the replies go out while the batch still lends its values
                // (large GET values then go from the map straight into the sockets), and what
                // the sockets did not take is copied before the batch ends.
                self.release_held();
                self.flush_dirty(Committed::Yes, service);
                self.own_lent();
                drop(batch);
            }
            self.flushes.sync_if_due(store, self.metrics.steps());
            let took = now.elapsed();
            self.metrics.steps().record(Timed::Pass, took);
            self.pass_log
                .account(&self.metrics, self.access_log.as_mut(), took);
            if stop == Stop::Now {
                return 0;
            }
            if let Some(deadline) = retire_deadline {
                self.close_idle(now, service);
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

    fn read_signals(&mut self) -> Stop {
        let arrived = self.signals.take();
        if arrived.reopen {
            if let Err(e) = conf::logger::reopen() {
                log::error!("could not reopen the error log: {e}");
            }
            if let Some(log) = self.access_log.as_mut() {
                if let Err(e) = log.reopen() {
                    log::error!("could not reopen the access log: {e}");
                }
            }
        }
        arrived.stop
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
            if !self.gate.open(self.conns.len(), now) {
                // Edge-triggered: the queued connections raise no new event, so the gate
                // hands this listener back once it opens.
                self.gate.hold(index);
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
                    if self.gate.failed(&e, now) {
                        self.gate.hold(index);
                    }
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
        entry.insert(Conn::new(stream, Some(peer), generation, now));
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

    /// The connection at `key`, as a parked request remembers it.
    fn who(&self, key: usize) -> Option<ConnRef> {
        let generation = self.conns.get(key)?.generation();
        Some(ConnRef { key, generation })
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
        let Some(conn) = self.conns.get_mut(who.key) else {
            return;
        };
        if conn.generation() != who.generation {
            return;
        }
        let now = pass.now;
        let mut serving = Serving {
            ctx: &ctx,
            who,
            peer: conn.peer(),
            service: &mut *service,
            pass,
            log: &mut self.pass_log,
        };
        let mut dispatch = |head: &Head, body: &[u8]| dispatch(&mut serving, head, body);
        let step = match parked_reply {
            Some(resp) => conn.finish_parked(resp, &limits, now, &mut dispatch),
            None => conn.process(&limits, now, &mut dispatch),
        };
        let served = conn.after_serving(step);
        self.parked.settle(&mut self.pass_log, now);
        match served {
            Served::Close => self.close(who.key, service),
            Served::Write => {
                self.dirty.push(who.key);
                self.schedule(who.key);
            }
            Served::Wait => self.schedule(who.key),
        }
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
            .is_none_or(|c| c.generation() != who.generation)
        {
            return;
        }
        if let Some((label, since, entry)) = self.parked.take(who) {
            let record = (label, resp.status, resp.body_len(), entry);
            let took = pass.now.saturating_duration_since(since);
            account(&self.metrics, self.access_log.as_mut(), record, took);
        }
        self.serve(who, Some(resp), service, pass, store);
    }

    fn close(&mut self, key: usize, service: &mut dyn Service) {
        let who = self.who(key);
        if let (Some(mut conn), Some(who)) = (self.conns.try_remove(key), who) {
            if conn.is_parked() {
                self.parked.forget(who);
                service.park_cancel(who);
            }
            conn.deregister(self.poll.registry());
            self.metrics.connection_closed();
        }
    }

    /// Makes sure the timer heap holds an entry no later than the connection's deadline.
    fn schedule(&mut self, key: usize) {
        let limits = self.limits;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(deadline) = conn.schedule(&limits) {
            self.timers
                .push(Reverse((deadline, key, conn.generation())));
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
            if conn.generation() != generation {
                continue;
            }
            let who = ConnRef { key, generation };
            match conn.expire(at, now, &limits) {
                Expiry::NotYet => self.schedule(key),
                Expiry::Parked => {
                    let resp = if self.parked.slept(who) {
                        Response::text("slept\n")
                    } else {
                        service.park_timeout(who, pass)
                    };
                    self.finish_parked(who, &resp, service, pass, store);
                }
                Expiry::Close => self.close(key, service),
            }
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
            conn.drain();
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
    fn close_idle(&mut self, now: Instant, service: &mut dyn Service) {
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.is_idle()
                    && (c.served() > 0
                        || now.duration_since(c.accepted_at()) >= FRESH_CONNECTION_GRACE)
            })
            .map(|(k, _)| k)
            .collect();
        for key in idle {
            // Not parked (idle): nothing for the service to cancel.
            self.close(key, service);
        }
        // Fresh connections need a wakeup when their grace ends.
        if let Some(first) = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_idle() && c.served() == 0)
            .map(|(_, c)| c.accepted_at() + FRESH_CONNECTION_GRACE)
            .min()
        {
            self.timers.push(Reverse((first, usize::MAX, 0)));
        }
    }

    /// Copies the rest of every value lent by the pass's batch into the connections' own
    /// memory (see `outq`). Lent values are only queued by this pass's replies, so they sit
    /// on connections in the dirty list (not flushed yet, or flushed in part) or held.
    fn own_lent(&mut self) {
        for &key in self.dirty.iter().chain(self.flushes.held()) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.own_lent();
            }
        }
    }

    /// Moves the held connections whose journal flush is over to the dirty list.
    fn release_held(&mut self) {
        let conns = &self.conns;
        self.flushes.release_held(&mut self.dirty, |key, tickets| {
            conns.get(key).is_some_and(|c| c.still_held(tickets))
        });
    }

    /// Writes the pass's replies (after the commit), or turns them into `500`s (`507`) if it failed,
    /// as far as each connection's answer lets it (`Conn::after_commit`).
    fn flush_dirty(&mut self, committed: Committed, service: &mut dyn Service) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        let tickets = self.flushes.tickets();
        for &key in &dirty {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let (watch, more) = match conn.after_commit(committed, &tickets, &self.metrics) {
                AfterCommit::Hold => {
                    self.flushes.hold(key);
                    continue;
                }
                AfterCommit::FlushFailed => {
                    log::error!("closing a connection whose pass's flush failed");
                    self.close(key, service);
                    continue;
                }
                AfterCommit::Close => {
                    self.close(key, service);
                    continue;
                }
                AfterCommit::Sent { watch } => (watch, false),
                AfterCommit::Pending { watch } => (watch, true),
            };
            if let Some(interest) = watch {
                let token = Token(FIRST_CONN + key);
                if conn
                    .reregister(self.poll.registry(), token, interest)
                    .is_err()
                {
                    self.close(key, service);
                    continue;
                }
            }
            if more {
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

/// Milliseconds since the unix epoch (TTLs and expiry are wall-clock).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
