//! [`Broker`]: the whole of mq mode behind the HTTP layer. Queue operations run against LMDB
//! (through [`Transact`]); parked requests (`evget`, `evsub`, `do_get`, `do_post`) live here,
//! keyed by the caller's waiter id `W`.
//!
//! Handing messages to parked requests happens only in [`Broker::tick`], which the loop runs
//! after every event of a pass: by then a waiter whose client closed in this pass has been
//! cancelled, so no message is ever consumed for a connection that is known to be gone.
//!
//! This file holds the broker's state and the life of a parked request (unparking, timeouts,
//! retiring, the tick); `queue_ops` answers the queue requests that never wait, `waiters` parks
//! and serves `evget` and `evsub`, and `calls` is the RPC of `do_get` and `do_post`.

mod calls;
mod queue_ops;
mod waiters;

use waiters::EvgetLine;

use crate::codec;
use crate::queues::{Delivery, Queues, SubView};
use crate::rpc::{Claimed, Rpc};
use crate::workers::WorkerList;
use crate::{Clock, MqError, Reply, Transact};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where a parked request waits.
#[derive(Debug, Clone)]
enum Parked {
    Evget {
        queue: String,
        arrival: u64,
    },
    Evsub {
        queue: String,
        idx: u64,
        arrival: u64,
    },
    DoGet {
        token: u64,
    },
    DoPost {
        arrival: u64,
    },
}

/// The settings of conf's `mq` section the broker applies itself.
struct Limits {
    long_polling_timeout: Duration,
    subscribe_timeout: Duration,
    do_get_timeout: Duration,
    do_post_timeout: Duration,
    max_timer_count: usize,
    default_timeout: u32,
}

/// mq mode's state: the queue database and every parked request.
pub struct Broker<W> {
    queues: Queues,
    limits: Limits,
    workers: HashMap<String, WorkerList>,
    parked: HashMap<W, Parked>,
    evget: HashMap<String, EvgetLine<W>>,
    /// (due, queue) of every line with a due time, to find the lines to serve by time.
    evget_due: BTreeSet<(u64, String)>,
    evget_count: usize,
    /// Per queue: (idx, arrival) → waiter.
    evsub: HashMap<String, BTreeMap<(u64, u64), W>>,
    evsub_count: usize,
    /// Queues whose `evget` line must be served at the next tick.
    dirty_get: BTreeSet<String>,
    /// Queues whose `evsub` waiters must be re-checked at the next tick.
    dirty_sub: BTreeSet<String>,
    rpc: Rpc<W>,
    /// Answers decided during a request (RPC results) for parked callers.
    outbox: Vec<(W, Reply)>,
    next_arrival: u64,
    /// The last pass's clocks, to turn wall-clock deadlines into loop deadlines.
    base: (Instant, u64),
    retiring: bool,
}

fn delivery_reply(d: Delivery) -> Reply {
    match d.token {
        None => Reply::Message(d.body),
        Some((prio, seq)) => Reply::Pending {
            body: d.body,
            token: codec::token(prio, seq),
        },
    }
}

fn sub_reply(v: SubView) -> Reply {
    match v {
        SubView::Message(b) => Reply::Message(b),
        SubView::Expired | SubView::Next => Reply::NotFound,
        SubView::Outside { si, ci } => Reply::OutOfWindow { si, ci },
    }
}

fn claimed_reply(c: Claimed) -> Reply {
    Reply::Task {
        name: c.name,
        token: c.token,
        args: c.args,
    }
}

impl<W: Copy + Eq + Hash> Broker<W> {
    /// Opens (creating) the queue database on `env`. Nothing else needs rebuilding: queues,
    /// messages and pending deliveries with their deadlines are all in LMDB.
    pub fn open(
        env: &lmdb::Environment,
        conf: &conf::MqConf,
        clock: Clock,
    ) -> Result<Self, MqError> {
        let db = env.create_db(Some(crate::DB_NAME), lmdb::DatabaseFlags::empty())?;
        let queues = Queues {
            db,
            max_queues: conf.max_queue_size as u64,
            default_timeout: conf.mq_redelivery_timeout,
            unit_ms: (conf.mq_timeout_unit.as_millis() as u64).max(1),
        };
        {
            let txn = env.begin_ro_txn()?;
            let (n, ready, pending) = queues.totals(&txn)?;
            log::info!("mq: {n} queues, {ready} ready messages, {pending} pending deliveries");
        }
        // Tokens must not repeat across restarts: start from the time in microseconds.
        let first_token = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Ok(Broker {
            queues,
            limits: Limits {
                long_polling_timeout: conf.long_polling_timeout,
                subscribe_timeout: conf.subscribe_timeout,
                do_get_timeout: conf.do_get_timeout,
                do_post_timeout: conf.do_post_timeout,
                max_timer_count: conf.max_timer_count,
                default_timeout: conf.mq_redelivery_timeout,
            },
            workers: HashMap::new(),
            parked: HashMap::new(),
            evget: HashMap::new(),
            evget_due: BTreeSet::new(),
            evget_count: 0,
            evsub: HashMap::new(),
            evsub_count: 0,
            dirty_get: BTreeSet::new(),
            dirty_sub: BTreeSet::new(),
            rpc: Rpc::new(
                conf.do_get_cache_size,
                conf.do_post_cache_size,
                conf.do_get_timeout,
                first_token,
            ),
            outbox: Vec::new(),
            next_arrival: 0,
            base: (clock.now, clock.now_ms),
            retiring: false,
        })
    }

    fn at(&mut self, c: Clock) {
        self.base = (c.now, c.now_ms);
    }

    fn record_worker(&mut self, queue: &str, worker: &str, c: Clock) {
        self.workers
            .entry(queue.to_string())
            .or_default()
            .record(worker, c.now_ms / 1000);
    }

    /// A change to a queue's messages: its parked `evget`s (if any) are served at the tick.
    fn touch_get(&mut self, queue: &str) {
        if self.evget.contains_key(queue) {
            self.dirty_get.insert(queue.to_string());
        }
    }

    /// A change to a queue's push window or type: its parked `evsub`s are re-checked.
    fn touch_sub(&mut self, queue: &str) {
        if self.evsub.contains_key(queue) {
            self.dirty_sub.insert(queue.to_string());
        }
    }

    /// Parked requests by kind: (evget, evsub, do_get tasks, do_post workers).
    pub fn parked_counts(&self) -> (usize, usize, usize, usize) {
        let (u, a, _) = self.rpc.task_counts();
        (
            self.evget_count,
            self.evsub_count,
            u + a,
            self.rpc.worker_counts().0,
        )
    }

    // ---- parked requests

    /// Takes `who` out of whatever line it waits in.
    fn unpark(&mut self, who: W) -> Option<Parked> {
        let parked = self.parked.remove(&who)?;
        match &parked {
            Parked::Evget { queue, arrival } => {
                if let Some(line) = self.evget.get_mut(queue) {
                    if line.fifo.remove(arrival).is_some() {
                        self.evget_count -= 1;
                    }
                    if line.fifo.is_empty() {
                        self.drop_line(queue);
                    }
                }
            }
            Parked::Evsub {
                queue,
                idx,
                arrival,
            } => {
                if let Some(map) = self.evsub.get_mut(queue) {
                    if map.remove(&(*idx, *arrival)).is_some() {
                        self.evsub_count -= 1;
                    }
                    if map.is_empty() {
                        self.evsub.remove(queue);
                    }
                }
            }
            Parked::DoGet { token } => {
                self.rpc.remove_task(*token);
            }
            Parked::DoPost { arrival } => {
                self.rpc.remove_worker(*arrival);
            }
        }
        Some(parked)
    }

    /// The answer a parked request gets when its time is up (or the worker retires).
    fn timeout_reply(parked: &Parked) -> Reply {
        match parked {
            Parked::Evget { .. } | Parked::Evsub { .. } => Reply::NotFound,
            Parked::DoGet { .. } | Parked::DoPost { .. } => Reply::Timeout,
        }
    }

    /// A parked request reached the loop's deadline.
    pub fn park_timeout(&mut self, who: W) -> Reply {
        match self.unpark(who) {
            Some(p) => Self::timeout_reply(&p),
            None => Reply::NotFound,
        }
    }

    /// The client of a parked request went away: forget it; it consumes nothing.
    pub fn park_cancel(&mut self, who: W) {
        self.unpark(who);
    }

    /// The worker retires: every parked request is answered as on its timeout, and from now
    /// on requests that would wait get that answer at once.
    pub fn retire(&mut self, out: &mut Vec<(W, Reply)>) {
        self.retiring = true;
        out.append(&mut self.outbox);
        for (who, p) in self.parked.drain() {
            out.push((who, Self::timeout_reply(&p)));
        }
        self.evget.clear();
        self.evget_due.clear();
        self.evget_count = 0;
        self.evsub.clear();
        self.evsub_count = 0;
        self.dirty_get.clear();
        self.dirty_sub.clear();
        self.rpc.drain();
    }

    /// When [`Broker::tick`] has work next: now if anything is waiting to be handed over,
    /// else the earliest RPC deadline or pending-message deadline of a queue with waiters.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.dirty_get.is_empty()
            || !self.dirty_sub.is_empty()
            || !self.outbox.is_empty()
            || self.rpc.can_match()
        {
            return Some(self.base.0);
        }
        let due = self.evget_due.first().map(|(ms, _)| {
            // One extra millisecond so the wall clock has surely reached the deadline.
            self.base.0 + Duration::from_millis(ms.saturating_sub(self.base.1) + 1)
        });
        match (due, self.rpc.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Hands messages, tasks and results to parked requests, and expires RPC tasks.
    pub fn tick<X: Transact>(&mut self, x: &mut X, c: Clock, out: &mut Vec<(W, Reply)>) {
        self.at(c);
        out.append(&mut self.outbox);
        let mut expired = Vec::new();
        self.rpc.expire(c.now, &mut expired);
        for caller in expired {
            self.parked.remove(&caller);
            out.push((caller, Reply::Timeout));
        }
        let mut claims = Vec::new();
        self.rpc.match_waiting(c.now, &mut claims);
        for (worker, claimed) in claims {
            self.parked.remove(&worker);
            out.push((worker, claimed_reply(claimed)));
        }
        let mut lines = std::mem::take(&mut self.dirty_get);
        lines.extend(
            self.evget_due
                .iter()
                .take_while(|(due, _)| *due <= c.now_ms)
                .map(|(_, q)| q.clone()),
        );
        for queue in lines {
            self.serve_line(x, c, &queue, out);
        }
        for queue in std::mem::take(&mut self.dirty_sub) {
            self.recheck_evsub(x, c, &queue, out);
        }
    }
}
