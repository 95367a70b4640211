//! The parked `evget`s and `evsub`s: a request that finds nothing waits in its queue's line
//! (`evget`, oldest first, with the due time of the queue's next pending delivery) or on the
//! push index it asked for (`evsub`), and [`Broker::tick`] serves the lines a change marked.

use super::{delivery_reply, sub_reply, Broker, Parked};
use crate::codec::Kind;
use crate::queues::{Delivery, SubView};
use crate::{run, Clock, MqError, Reply, Step, Transact};
use std::collections::BTreeMap;
use std::hash::Hash;

/// A parked `evget`.
pub(super) struct EvgetWaiter<W> {
    who: W,
    worker: String,
    ack: bool,
}

/// The parked `evget`s of one queue, oldest first, and when a pending message of the queue
/// next reaches its deadline (unix ms), if any.
pub(super) struct EvgetLine<W> {
    pub(super) fifo: BTreeMap<u64, EvgetWaiter<W>>,
    pub(super) due: Option<u64>,
}

/// What serving one `evget` waiter found.
enum Serve {
    /// The queue does not exist (yet), or nothing is deliverable.
    Nothing,
    /// The queue is a push queue.
    WrongType,
    Got(Delivery),
}

impl<W: Copy + Eq + Hash> Broker<W> {
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

    pub(super) fn drop_line(&mut self, queue: &str) {
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

    /// Serves a queue's `evget` line, oldest first, while messages are deliverable.
    pub(super) fn serve_line<X: Transact>(
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
    pub(super) fn recheck_evsub<X: Transact>(
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
