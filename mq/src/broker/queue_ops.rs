//! The queue requests the broker answers at once (`mq-api.md` 4.1-4.10, 4.13, 4.14, and the
//! depths of `/metrics`): each one runs against LMDB, and one that changes a queue marks the
//! parked requests the change may serve at the next tick.

use super::{delivery_reply, sub_reply, Broker};
use crate::codec::Kind;
use crate::queues::Purged;
use crate::{json, run, Clock, MqError, Reply, Transact};
use std::hash::Hash;

impl<W: Copy + Eq + Hash> Broker<W> {
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
}
