//! [`Broker`]: the whole of mq mode behind the HTTP layer. Queue operations run against LMDB
//! (through [`Transact`]); parked requests (`evget`, `evsub`, `do_get`, `do_post`) live here,
//! keyed by the caller's waiter id `W`.
//!
//! Handing messages to parked requests happens only in [`Broker::tick`], which the loop runs
//! after every event of a pass: by then a waiter whose client closed in this pass has been
//! cancelled, so no message is ever consumed for a connection that is known to be gone.

use crate::codec::{self, Kind};
use crate::queues::{Delivery, Purged, Queues, SubView};
use crate::rpc::{Claimed, Rpc};
use crate::workers::WorkerList;
use crate::{json, run, Clock, MqError, Reply, Step, Transact};
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

/// A parked `evget`.
struct EvgetWaiter<W> {
    who: W,
    worker: String,
    ack: bool,
}

/// The parked `evget`s of one queue, oldest first, and when a pending message of the queue
/// next reaches its deadline (unix ms), if any.
struct EvgetLine<W> {
    fifo: BTreeMap<u64, EvgetWaiter<W>>,
    due: Option<u64>,
}

/// What serving one `evget` waiter found.
enum Serve {
    /// The queue does not exist (yet), or nothing is deliverable.
    Nothing,
    /// The queue is a push queue.
    WrongType,
    Got(Delivery),
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

    /// Charges a new message against `map_size`; when it does not fit, the answer is `507`
    /// unless the queue would refuse the write anyway (those checks come first, 2.5).
    fn room<X: Transact>(
        &self,
        x: &mut X,
        queue: &str,
        msg: &[u8],
        kind: Kind,
    ) -> Result<(), Reply> {
        // The message, its key, and a rewritten queue record.
        let bytes = msg.len() as u64 + 2 * queue.len() as u64 + 128;
        let Err(e) = x.ensure_room(bytes) else {
            return Ok(());
        };
        let queues = &self.queues;
        match run(x, |txn| queues.check_write(txn, queue, kind)) {
            Err(refused) => Err(refused.into()),
            Ok(()) => Err(MqError::Storage(e).into()),
        }
    }

    // ---- normal queues

    /// `/put` (4.1).
    pub fn put<X: Transact>(
        &mut self,
        x: &mut X,
        c: Clock,
        queue: &str,
        prio: u8,
        msg: &[u8],
    ) -> Reply {
        self.at(c);
        if let Err(r) = self.room(x, queue, msg, Kind::Normal) {
            return r;
        }
        let queues = &self.queues;
        match run(x, |txn| queues.put(txn, queue, prio, msg, c.now_ms)) {
            Ok(created) => {
                self.touch_get(queue);
                if created {
                    self.touch_sub(queue);
                }
                Reply::Done
            }
            Err(e) => e.into(),
        }
    }

    /// `/get` (4.2).
    pub fn get<X: Transact>(
        &mut self,
        x: &mut X,
        c: Clock,
        queue: &str,
        worker: &str,
        ack: bool,
    ) -> Reply {
        self.at(c);
        let queues = &self.queues;
        match run(x, |txn| queues.take(txn, queue, ack, c.now_ms)) {
            Ok(d) => {
                self.record_worker(queue, worker, c);
                // A new pending delivery may come due before the line's current due time.
                self.touch_get(queue);
                d.map_or(Reply::NotFound, delivery_reply)
            }
            Err(e) => e.into(),
        }
    }

    /// `/ack` (4.3).
    pub fn ack<X: Transact>(&mut self, x: &mut X, c: Clock, queue: &str, token: &[u8]) -> Reply {
        self.at(c);
        let queues = &self.queues;
        match run(x, |txn| queues.ack(txn, queue, token)) {
            Ok(true) => Reply::Done,
            Ok(false) => Reply::NotFound,
            Err(e) => e.into(),
        }
    }

    /// `/timeout` (4.4).
    pub fn set_timeout<X: Transact>(
        &mut self,
        x: &mut X,
        c: Clock,
        queue: &str,
        minutes: u32,
    ) -> Reply {
        self.at(c);
        let queues = &self.queues;
        run(x, |txn| queues.set_timeout(txn, queue, minutes))
            .map_or_else(Reply::from, |()| Reply::Done)
    }

    /// `/lock` (4.5).
    pub fn set_lock<X: Transact>(&mut self, x: &mut X, c: Clock, queue: &str, on: bool) -> Reply {
        self.at(c);
        let queues = &self.queues;
        run(x, |txn| queues.set_lock(txn, queue, on)).map_or_else(Reply::from, |()| Reply::Done)
    }

    /// `/max` (4.6).
    pub fn set_max<X: Transact>(&mut self, x: &mut X, c: Clock, queue: &str, num: u64) -> Reply {
        self.at(c);
        let queues = &self.queues;
        run(x, |txn| queues.set_max(txn, queue, num)).map_or_else(Reply::from, |()| Reply::Done)
    }

    /// `/purge` (4.7).
    pub fn purge<X: Transact>(&mut self, x: &mut X, c: Clock, queue: &str, prio: u8) -> Reply {
        self.at(c);
        let queues = &self.queues;
        match run(x, |txn| queues.purge(txn, queue, prio)) {
            Ok(Purged::Normal { deleted }) => {
                if deleted {
                    self.workers.remove(queue);
                }
                Reply::Done
            }
            Ok(Purged::Push) => {
                self.touch_sub(queue);
                Reply::Done
            }
            Err(e) => e.into(),
        }
    }

    /// `/worker` (4.8).
    pub fn worker_list<X: Transact>(&mut self, x: &mut X, c: Clock, queue: &str) -> Reply {
        self.at(c);
        let queues = &self.queues;
        match run(x, |txn| queues.kind(txn, queue)) {
            Ok(None) => Reply::NotFound,
            Ok(Some(Kind::Push)) => Reply::WrongType,
            Ok(Some(Kind::Normal)) => Reply::Json(
                self.workers
                    .get(queue)
                    .map_or_else(|| "[]".to_string(), |l| l.json(c.now_ms / 1000)),
            ),
            Err(e) => e.into(),
        }
    }

    /// `/stat` (4.9).
    pub fn stat<X: Transact>(&mut self, x: &mut X, c: Clock, queue: &str) -> Reply {
        self.at(c);
        let queues = &self.queues;
        match run(x, |txn| queues.current(txn, queue, c.now_ms)) {
            Ok(Some(rec)) => {
                let mut out = String::with_capacity(160);
                json::queue_status(&mut out, queue, &rec, self.limits.default_timeout);
                Reply::Json(out)
            }
            Ok(None) => Reply::NotFound,
            Err(e) => e.into(),
        }
    }

    /// `/stat_all` (4.10).
    pub fn stat_all<X: Transact>(&mut self, x: &mut X, c: Clock) -> Reply {
        self.at(c);
        let queues = &self.queues;
        match run(x, |txn| queues.all(txn, c.now_ms)) {
            Ok(all) => {
                let mut out = String::with_capacity(2 + all.len() * 160);
                out.push('[');
                for (i, (name, rec)) in all.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    json::queue_status(&mut out, name, rec, self.limits.default_timeout);
                }
                out.push(']');
                Reply::Json(out)
            }
            Err(e) => e.into(),
        }
    }

    /// Every queue's depth for `/metrics`: name, ready messages (a push queue: its window),
    /// pending deliveries.
    pub fn depths<X: Transact>(&mut self, x: &mut X, c: Clock) -> Vec<(String, u64, u64)> {
        self.at(c);
        let queues = &self.queues;
        match run(x, |txn| queues.all(txn, c.now_ms)) {
            Ok(all) => all
                .into_iter()
                .map(|(name, rec)| {
                    let ready = match rec.kind {
                        Kind::Normal => rec.ready(0) + rec.ready(1) + rec.ready(2),
                        Kind::Push => rec.ci() - rec.si(),
                    };
                    (name, ready, rec.unacked)
                })
                .collect(),
            Err(e) => {
                log::error!("could not read the queues for /metrics: {e}");
                Vec::new()
            }
        }
    }

    /// `/evget` (4.12): a message now, or a place at the end of the queue's line.
    pub fn evget<X: Transact>(
        &mut self,
        x: &mut X,
        c: Clock,
        who: W,
        queue: &str,
        worker: &str,
        ack: bool,
    ) -> Step {
        self.at(c);
        // Older waiters come first: with a line, a newcomer never takes a message directly.
        let line = self.evget.get(queue).is_some_and(|l| !l.fifo.is_empty());
        let queues = &self.queues;
        let res = run(x, |txn| match queues.kind(txn, queue)? {
            None => Ok((false, None)),
            Some(Kind::Push) => Err(MqError::WrongType),
            Some(Kind::Normal) if line => Ok((true, None)),
            Some(Kind::Normal) => Ok((true, queues.take(txn, queue, ack, c.now_ms)?)),
        });
        let (exists, delivery) = match res {
            Ok(v) => v,
            Err(e) => return Step::Reply(e.into()),
        };
        if exists {
            self.record_worker(queue, worker, c);
        }
        if let Some(d) = delivery {
            self.touch_get(queue);
            return Step::Reply(delivery_reply(d));
        }
        if self.retiring {
            return Step::Reply(Reply::NotFound);
        }
        if self.evget_count >= self.limits.max_timer_count {
            return Step::Reply(Reply::Busy);
        }
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        self.evget
            .entry(queue.to_string())
            .or_insert_with(|| EvgetLine {
                fifo: BTreeMap::new(),
                due: None,
            })
            .fifo
            .insert(
                arrival,
                EvgetWaiter {
                    who,
                    worker: worker.to_string(),
                    ack,
                },
            );
        self.evget_count += 1;
        self.parked.insert(
            who,
            Parked::Evget {
                queue: queue.to_string(),
                arrival,
            },
        );
        // The tick serves the line (if messages wait behind older waiters) and learns when
        // the queue's next pending delivery comes due.
        self.dirty_get.insert(queue.to_string());
        Step::Park(self.limits.long_polling_timeout)
    }

    // ---- push queues

    /// `/pub` (4.13). `ttl` in seconds, already checked against `mq_ttl_maximum`.
    pub fn publish<X: Transact>(
        &mut self,
        x: &mut X,
        c: Clock,
        queue: &str,
        idx: Option<u64>,
        ttl: u64,
        msg: &[u8],
    ) -> Reply {
        self.at(c);
        if let Err(r) = self.room(x, queue, msg, Kind::Push) {
            return r;
        }
        let queues = &self.queues;
        let ttl_ms = ttl.saturating_mul(1000);
        match run(x, |txn| {
            queues.publish(txn, queue, idx, ttl_ms, msg, c.now_ms)
        }) {
            Ok(p) => {
                self.touch_sub(queue);
                if p.created {
                    self.touch_get(queue);
                }
                Reply::Published { si: p.si, ci: p.ci }
            }
            Err(e) => e.into(),
        }
    }

    /// `/sub` (4.14).
    pub fn sub<X: Transact>(&mut self, x: &mut X, c: Clock, queue: &str, idx: u64) -> Reply {
        self.at(c);
        let queues = &self.queues;
        match run(x, |txn| queues.sub(txn, queue, idx, c.now_ms)) {
            Ok(v) => sub_reply(v),
            Err(e) => e.into(),
        }
    }

    /// `/evsub` (4.15): the message now, or a wait for index `idx = ci + 1`.
    pub fn evsub<X: Transact>(
        &mut self,
        x: &mut X,
        c: Clock,
        who: W,
        queue: &str,
        idx: u64,
    ) -> Step {
        self.at(c);
        let queues = &self.queues;
        let res = run(x, |txn| match queues.current(txn, queue, c.now_ms)? {
            // A queue that does not exist yet is the empty window 0-0.
            None if idx == 1 => Ok(SubView::Next),
            None => Ok(SubView::Outside { si: 0, ci: 0 }),
            Some(rec) if rec.kind != Kind::Push => Err(MqError::WrongType),
            Some(rec) => queues.view(txn, queue, &rec, idx, c.now_ms),
        });
        match res {
            Ok(SubView::Next) => {}
            Ok(v) => return Step::Reply(sub_reply(v)),
            Err(e) => return Step::Reply(e.into()),
        }
        if self.retiring {
            return Step::Reply(Reply::NotFound);
        }
        if self.evsub_count >= self.limits.max_timer_count {
            return Step::Reply(Reply::Busy);
        }
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        self.evsub
            .entry(queue.to_string())
            .or_default()
            .insert((idx, arrival), who);
        self.evsub_count += 1;
        self.parked.insert(
            who,
            Parked::Evsub {
                queue: queue.to_string(),
                idx,
                arrival,
            },
        );
        Step::Park(self.limits.subscribe_timeout)
    }

    // ---- RPC

    /// `/do_get` (4.16): a new task, waiting for a worker and then for its result.
    pub fn do_get(&mut self, c: Clock, who: W, name: &str, args: Vec<u8>) -> Step {
        self.at(c);
        if self.retiring {
            return Step::Reply(Reply::Timeout);
        }
        let Some(token) = self.rpc.call(c.now, who, name, args) else {
            return Step::Reply(Reply::Busy);
        };
        self.parked.insert(who, Parked::DoGet { token });
        // The broker enforces both time limits itself (tick); the loop's deadline is only a
        // backstop past the latest possible one.
        Step::Park(self.limits.do_get_timeout * 2 + Duration::from_secs(1))
    }

    /// `/do_post` without `token` (4.17): the oldest task now, or a place in the workers' line.
    pub fn do_post_claim(&mut self, c: Clock, who: W) -> Step {
        self.at(c);
        if let Some(claimed) = self.rpc.claim_now(c.now) {
            return Step::Reply(claimed_reply(claimed));
        }
        if self.retiring {
            return Step::Reply(Reply::Timeout);
        }
        let Some(arrival) = self.rpc.park_worker(who) else {
            return Step::Reply(Reply::Busy);
        };
        self.parked.insert(who, Parked::DoPost { arrival });
        Step::Park(self.limits.do_post_timeout)
    }

    /// `/do_post?token=` (4.17): the result of a claimed task, for its caller.
    pub fn do_post_reply(&mut self, c: Clock, token: u64, result: Vec<u8>) -> Reply {
        self.at(c);
        match self.rpc.reply(token) {
            Some(caller) => {
                self.parked.remove(&caller);
                self.outbox.push((caller, Reply::Message(result)));
                Reply::Done
            }
            None => Reply::NotFound,
        }
    }

    /// `/do_get_status` (4.18).
    pub fn do_get_status(&self) -> Reply {
        let (unassigned, assigned, total) = self.rpc.task_counts();
        Reply::Json(json::do_get_status(unassigned, assigned, total))
    }

    /// `/do_post_status` (4.18).
    pub fn do_post_status(&self) -> Reply {
        let (parked, total) = self.rpc.worker_counts();
        Reply::Json(json::do_post_status(parked, total))
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

    fn drop_line(&mut self, queue: &str) {
        if let Some(line) = self.evget.remove(queue) {
            if let Some(due) = line.due {
                self.evget_due.remove(&(due, queue.to_string()));
            }
        }
    }

    fn set_due(&mut self, queue: &str, due: Option<u64>) {
        let Some(line) = self.evget.get_mut(queue) else {
            return;
        };
        if line.due == due {
            return;
        }
        if let Some(old) = line.due {
            self.evget_due.remove(&(old, queue.to_string()));
        }
        line.due = due;
        if let Some(new) = due {
            self.evget_due.insert((new, queue.to_string()));
        }
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

    /// Serves a queue's `evget` line, oldest first, while messages are deliverable.
    fn serve_line<X: Transact>(
        &mut self,
        x: &mut X,
        c: Clock,
        queue: &str,
        out: &mut Vec<(W, Reply)>,
    ) {
        loop {
            let Some((arrival, ack)) = self
                .evget
                .get(queue)
                .and_then(|l| l.fifo.first_key_value())
                .map(|(a, w)| (*a, w.ack))
            else {
                return;
            };
            let queues = &self.queues;
            let res = run(x, |txn| match queues.kind(txn, queue)? {
                None => Ok(Serve::Nothing),
                Some(Kind::Push) => Ok(Serve::WrongType),
                Some(Kind::Normal) => Ok(match queues.take(txn, queue, ack, c.now_ms)? {
                    Some(d) => Serve::Got(d),
                    None => Serve::Nothing,
                }),
            });
            match res {
                Ok(Serve::Nothing) => break,
                Ok(Serve::WrongType) => {
                    let Some(line) = self.evget.remove(queue) else {
                        return;
                    };
                    if let Some(due) = line.due {
                        self.evget_due.remove(&(due, queue.to_string()));
                    }
                    for w in line.fifo.into_values() {
                        self.evget_count -= 1;
                        self.parked.remove(&w.who);
                        out.push((w.who, Reply::WrongType));
                    }
                    return;
                }
                Ok(Serve::Got(d)) => {
                    if let Some(w) = self.pop_waiter(queue, arrival) {
                        self.record_worker(queue, &w.worker, c);
                        out.push((w.who, delivery_reply(d)));
                    }
                }
                Err(e) => {
                    if let Some(w) = self.pop_waiter(queue, arrival) {
                        out.push((w.who, e.into()));
                    }
                }
            }
        }
        let queues = &self.queues;
        let due = match run(x, |txn| queues.first_pending(txn, queue)) {
            Ok(p) => p.map(|(due, _, _)| due),
            Err(e) => {
                log::error!("mq: could not read the pending deliveries of {queue}: {e}");
                None
            }
        };
        // A due time already past would make the loop spin; it cannot happen (take would
        // have delivered it), but a damaged index must not turn into a busy loop.
        self.set_due(queue, due.filter(|&d| d > c.now_ms));
    }

    fn pop_waiter(&mut self, queue: &str, arrival: u64) -> Option<EvgetWaiter<W>> {
        let line = self.evget.get_mut(queue)?;
        let w = line.fifo.remove(&arrival)?;
        self.evget_count -= 1;
        self.parked.remove(&w.who);
        if line.fifo.is_empty() {
            self.drop_line(queue);
        }
        Some(w)
    }

    /// Re-checks a queue's `evsub`s against its current window: those on `ci + 1` keep
    /// waiting, those inside get the message (or `404` if it expired), the rest `403`.
    fn recheck_evsub<X: Transact>(
        &mut self,
        x: &mut X,
        c: Clock,
        queue: &str,
        out: &mut Vec<(W, Reply)>,
    ) {
        if !self.evsub.contains_key(queue) {
            return;
        }
        let queues = &self.queues;
        let rec = match run(x, |txn| queues.current(txn, queue, c.now_ms)) {
            Ok(rec) => rec,
            Err(e) => {
                log::error!("mq: could not re-check the subscribers of {queue}: {e}");
                return;
            }
        };
        let Some(mut map) = self.evsub.remove(queue) else {
            return;
        };
        if rec.as_ref().is_some_and(|r| r.kind != Kind::Push) {
            for (_, who) in map {
                self.evsub_count -= 1;
                self.parked.remove(&who);
                out.push((who, Reply::WrongType));
            }
            return;
        }
        let (si, ci) = rec.as_ref().map_or((0, 0), |r| (r.si(), r.ci()));
        let mut waiting = map.split_off(&(ci + 1, 0));
        let beyond = waiting.split_off(&(ci + 2, 0));
        let mut current: Option<(u64, Reply)> = None;
        for ((idx, _), who) in map.into_iter().chain(beyond) {
            self.evsub_count -= 1;
            self.parked.remove(&who);
            if idx <= si || idx > ci + 1 {
                out.push((who, Reply::OutOfWindow { si, ci }));
                continue;
            }
            if current.as_ref().is_none_or(|(i, _)| *i != idx) {
                let reply = match &rec {
                    Some(r) => match run(x, |txn| queues.view(txn, queue, r, idx, c.now_ms)) {
                        Ok(v) => sub_reply(v),
                        Err(e) => e.into(),
                    },
                    None => Reply::NotFound,
                };
                current = Some((idx, reply));
            }
            if let Some((_, reply)) = &current {
                out.push((who, clone_reply(reply)));
            }
        }
        if !waiting.is_empty() {
            self.evsub.insert(queue.to_string(), waiting);
        }
    }
}

/// The same answer for another subscriber of the same index.
fn clone_reply(r: &Reply) -> Reply {
    match r {
        Reply::Message(b) => Reply::Message(b.clone()),
        Reply::OutOfWindow { si, ci } => Reply::OutOfWindow { si: *si, ci: *ci },
        Reply::Storage(storage::StorageError::MapFull) => {
            Reply::Storage(storage::StorageError::MapFull)
        }
        Reply::Storage(_) => Reply::Storage(storage::StorageError::Invalid("mq read failed")),
        _ => Reply::NotFound,
    }
}
