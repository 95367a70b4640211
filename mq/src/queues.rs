//! The queue model on LMDB (spec 2.6-2.8, 4.1-4.15): every function runs inside one
//! transaction handed in by the caller and either does all of its writes or fails before the
//! first one that matters (the caller rolls the closure back on any error anyway).
//!
//! A normal queue's ready messages of one priority are always the contiguous sequence range
//! `read+1 ..= write`: `put` appends at the tail, `get` takes the head, `purge` empties the
//! range. So the ready lists are two counters per priority; only pending deliveries need an
//! index (`p` by token, `d` by deadline).

use crate::codec::{self, Kind, QueueRec};
use crate::{MqError, HARD_CAP};
use lmdb::{Cursor, Database, RwTransaction, Transaction, WriteFlags};
use storage::StorageError;

/// A message handed out by `get`: its body, and its token when it is now pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub body: Vec<u8>,
    pub token: Option<(u8, u64)>,
}

/// What `/sub` finds at an index (the queue exists and is a push queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubView {
    /// `si < idx <= ci` and the message is still readable.
    Message(Vec<u8>),
    /// `si < idx <= ci` but the message expired.
    Expired,
    /// `idx = ci + 1`: not published yet.
    Next,
    /// Anything else.
    Outside { si: u64, ci: u64 },
}

/// What a purge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purged {
    /// A normal queue; `deleted` when it was left empty and removed.
    Normal { deleted: bool },
    /// A push queue, always removed.
    Push,
}

/// The window of `/pub` after a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub si: u64,
    pub ci: u64,
    pub created: bool,
}

/// The queue database and the settings its operations need.
pub struct Queues {
    pub db: Database,
    /// `max_queue_size`.
    pub max_queues: u64,
    /// `mq_redelivery_timeout`, for new queues.
    pub default_timeout: u32,
    /// `mq_timeout_unit` in milliseconds.
    pub unit_ms: u64,
}

fn corrupt(what: &'static str) -> MqError {
    MqError::Storage(StorageError::Invalid(what))
}

fn get_opt<'t>(
    txn: &'t RwTransaction<'_>,
    db: Database,
    key: &[u8],
) -> Result<Option<&'t [u8]>, MqError> {
    match txn.get(db, &key) {
        Ok(v) => Ok(Some(v)),
        Err(lmdb::Error::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn put(txn: &mut RwTransaction<'_>, db: Database, key: &[u8], val: &[u8]) -> Result<(), MqError> {
    txn.put(db, &key, &val, WriteFlags::empty())
        .map_err(MqError::from)
}

/// Deletes a record that may already be gone.
fn del(txn: &mut RwTransaction<'_>, db: Database, key: &[u8]) -> Result<(), MqError> {
    match txn.del(db, &key, None) {
        Ok(()) | Err(lmdb::Error::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl Queues {
    /// The queue's record, if it exists.
    pub fn load(&self, txn: &RwTransaction<'_>, name: &str) -> Result<Option<QueueRec>, MqError> {
        match get_opt(txn, self.db, &codec::queue_key(name))? {
            None => Ok(None),
            Some(v) => QueueRec::decode(v)
                .map(Some)
                .ok_or_else(|| corrupt("corrupt queue record")),
        }
    }

    fn save(&self, txn: &mut RwTransaction<'_>, name: &str, rec: &QueueRec) -> Result<(), MqError> {
        put(txn, self.db, &codec::queue_key(name), &rec.encode())
    }

    /// Number of queues of both types.
    pub fn count(&self, txn: &RwTransaction<'_>) -> Result<u64, MqError> {
        match get_opt(txn, self.db, codec::COUNT_KEY)? {
            None => Ok(0),
            Some(v) => codec::u64_value(v).ok_or_else(|| corrupt("corrupt queue counter")),
        }
    }

    fn set_count(&self, txn: &mut RwTransaction<'_>, n: u64) -> Result<(), MqError> {
        put(txn, self.db, codec::COUNT_KEY, &n.to_be_bytes())
    }

    /// A new queue's record, after the `max_queue_size` check; the caller saves it.
    fn create(
        &self,
        txn: &mut RwTransaction<'_>,
        kind: Kind,
        now_ms: u64,
    ) -> Result<QueueRec, MqError> {
        let n = self.count(txn)?;
        if n >= self.max_queues {
            return Err(MqError::TooManyQueues);
        }
        self.set_count(txn, n + 1)?;
        Ok(QueueRec::new(kind, self.default_timeout, now_ms))
    }

    fn delete_queue(&self, txn: &mut RwTransaction<'_>, name: &str) -> Result<(), MqError> {
        del(txn, self.db, &codec::queue_key(name))?;
        let n = self.count(txn)?;
        self.set_count(txn, n.saturating_sub(1))
    }

    /// The queue's type, if it exists.
    pub fn kind(&self, txn: &RwTransaction<'_>, name: &str) -> Result<Option<Kind>, MqError> {
        Ok(self.load(txn, name)?.map(|r| r.kind))
    }

    fn of_kind(
        &self,
        txn: &RwTransaction<'_>,
        name: &str,
        kind: Kind,
    ) -> Result<QueueRec, MqError> {
        match self.load(txn, name)? {
            None => Err(MqError::NoQueue),
            Some(r) if r.kind != kind => Err(MqError::WrongType),
            Some(r) => Ok(r),
        }
    }

    fn deadline(&self, rec: &QueueRec, now_ms: u64) -> u64 {
        now_ms.saturating_add(u64::from(rec.timeout).saturating_mul(self.unit_ms))
    }

    // ---- normal queues

    /// `/put`: appends `body` to the tail of priority `prio`, creating the queue. True when
    /// the queue was created.
    pub fn put(
        &self,
        txn: &mut RwTransaction<'_>,
        name: &str,
        prio: u8,
        body: &[u8],
        now_ms: u64,
    ) -> Result<bool, MqError> {
        let (mut rec, created) = match self.load(txn, name)? {
            Some(r) if r.kind != Kind::Normal => return Err(MqError::WrongType),
            Some(r) => (r, false),
            None => (self.create(txn, Kind::Normal, now_ms)?, true),
        };
        let ready = rec.ready_total();
        if rec.lock || ready >= HARD_CAP || (rec.max > 0 && ready >= rec.max) {
            return Err(MqError::Refused);
        }
        let p = usize::from(prio.min(2));
        let seq = rec.write[p] + 1;
        put(txn, self.db, &codec::msg_key(name, p as u8, seq), body)?;
        rec.write[p] = seq;
        self.save(txn, name, &rec)?;
        Ok(created)
    }

    /// Would a `put` (`kind` normal) or `pub` (push) to `name` be refused by the queue or the
    /// queue limit? Used to give those answers precedence over a full store (2.5).
    pub fn check_write(
        &self,
        txn: &RwTransaction<'_>,
        name: &str,
        kind: Kind,
    ) -> Result<(), MqError> {
        match self.load(txn, name)? {
            None if self.count(txn)? >= self.max_queues => Err(MqError::TooManyQueues),
            None => Ok(()),
            Some(r) if r.kind != kind => Err(MqError::WrongType),
            Some(r) => {
                let n = match kind {
                    Kind::Normal => r.ready_total(),
                    Kind::Push => r.ci() - r.si(),
                };
                if r.lock || n >= HARD_CAP || (r.max > 0 && n >= r.max) {
                    Err(MqError::Refused)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The pending message with the earliest deadline: (deadline, priori, seq).
    pub fn first_pending(
        &self,
        txn: &RwTransaction<'_>,
        name: &str,
    ) -> Result<Option<(u64, u8, u64)>, MqError> {
        let prefix = codec::deadline_prefix(name);
        let mut cur = txn.open_ro_cursor(self.db)?;
        match cur.iter_from(&prefix).next() {
            None => Ok(None),
            Some(Err(e)) => Err(e.into()),
            Some(Ok((k, _))) => Ok(codec::parse_deadline_key(&prefix, k)),
        }
    }

    /// `/get`: the next deliverable message in the spec's order (2.7), removed (`ack`) or made
    /// pending with a new deadline. `None` when nothing is deliverable now.
    pub fn take(
        &self,
        txn: &mut RwTransaction<'_>,
        name: &str,
        ack: bool,
        now_ms: u64,
    ) -> Result<Option<Delivery>, MqError> {
        let mut rec = self.of_kind(txn, name, Kind::Normal)?;
        let mut repaired = false;
        // 1. Overdue pending deliveries, earliest deadline first.
        while rec.unacked > 0 {
            let Some((deadline, prio, seq)) = self.first_pending(txn, name)? else {
                break;
            };
            if deadline > now_ms {
                break;
            }
            let mk = codec::msg_key(name, prio, seq);
            let pk = codec::pending_key(name, prio, seq);
            del(
                txn,
                self.db,
                &codec::deadline_key(name, deadline, prio, seq),
            )?;
            let Some(body) = get_opt(txn, self.db, &mk)?.map(<[u8]>::to_vec) else {
                log::error!("queue {name}: pending message {prio}:{seq} has no body, dropping it");
                del(txn, self.db, &pk)?;
                rec.unacked -= 1;
                repaired = true;
                continue;
            };
            if ack {
                del(txn, self.db, &mk)?;
                del(txn, self.db, &pk)?;
                rec.unacked -= 1;
                self.save(txn, name, &rec)?;
            } else {
                let nd = self.deadline(&rec, now_ms);
                put(txn, self.db, &codec::deadline_key(name, nd, prio, seq), b"")?;
                put(txn, self.db, &pk, &nd.to_be_bytes())?;
                if repaired {
                    self.save(txn, name, &rec)?;
                }
            }
            return Ok(Some(Delivery {
                body,
                token: (!ack).then_some((prio, seq)),
            }));
        }
        // 2. The oldest ready message of priority 2, else 1, else 0.
        for p in [2usize, 1, 0] {
            while rec.write[p] > rec.read[p] {
                let seq = rec.read[p] + 1;
                rec.read[p] = seq;
                let prio = p as u8;
                let mk = codec::msg_key(name, prio, seq);
                let Some(body) = get_opt(txn, self.db, &mk)?.map(<[u8]>::to_vec) else {
                    log::error!(
                        "queue {name}: ready message {prio}:{seq} has no body, skipping it"
                    );
                    repaired = true;
                    continue;
                };
                if ack {
                    del(txn, self.db, &mk)?;
                } else {
                    let nd = self.deadline(&rec, now_ms);
                    put(txn, self.db, &codec::deadline_key(name, nd, prio, seq), b"")?;
                    put(
                        txn,
                        self.db,
                        &codec::pending_key(name, prio, seq),
                        &nd.to_be_bytes(),
                    )?;
                    rec.unacked += 1;
                }
                self.save(txn, name, &rec)?;
                return Ok(Some(Delivery {
                    body,
                    token: (!ack).then_some((prio, seq)),
                }));
            }
        }
        if repaired {
            self.save(txn, name, &rec)?;
        }
        Ok(None)
    }

    /// `/ack`: removes a pending message. False when the token is not pending.
    pub fn ack(
        &self,
        txn: &mut RwTransaction<'_>,
        name: &str,
        token: &[u8],
    ) -> Result<bool, MqError> {
        let mut rec = self.of_kind(txn, name, Kind::Normal)?;
        let Some((prio, seq)) = codec::parse_token(token) else {
            return Ok(false);
        };
        let pk = codec::pending_key(name, prio, seq);
        let Some(deadline) = get_opt(txn, self.db, &pk)?.and_then(codec::u64_value) else {
            return Ok(false);
        };
        del(txn, self.db, &pk)?;
        del(
            txn,
            self.db,
            &codec::deadline_key(name, deadline, prio, seq),
        )?;
        del(txn, self.db, &codec::msg_key(name, prio, seq))?;
        rec.unacked = rec.unacked.saturating_sub(1);
        self.save(txn, name, &rec)?;
        Ok(true)
    }

    /// `/timeout`.
    pub fn set_timeout(
        &self,
        txn: &mut RwTransaction<'_>,
        name: &str,
        minutes: u32,
    ) -> Result<(), MqError> {
        let mut rec = self.of_kind(txn, name, Kind::Normal)?;
        rec.timeout = minutes;
        self.save(txn, name, &rec)
    }

    /// `/lock` (both types).
    pub fn set_lock(
        &self,
        txn: &mut RwTransaction<'_>,
        name: &str,
        on: bool,
    ) -> Result<(), MqError> {
        let mut rec = self.load(txn, name)?.ok_or(MqError::NoQueue)?;
        rec.lock = on;
        self.save(txn, name, &rec)
    }

    /// `/max` (both types).
    pub fn set_max(
        &self,
        txn: &mut RwTransaction<'_>,
        name: &str,
        num: u64,
    ) -> Result<(), MqError> {
        let mut rec = self.load(txn, name)?.ok_or(MqError::NoQueue)?;
        rec.max = num;
        self.save(txn, name, &rec)
    }

    /// `/purge` (4.7).
    pub fn purge(
        &self,
        txn: &mut RwTransaction<'_>,
        name: &str,
        prio: u8,
    ) -> Result<Purged, MqError> {
        let mut rec = self.load(txn, name)?.ok_or(MqError::NoQueue)?;
        match rec.kind {
            Kind::Normal => {
                let p = usize::from(prio.min(2));
                for seq in rec.read[p] + 1..=rec.write[p] {
                    del(txn, self.db, &codec::msg_key(name, p as u8, seq))?;
                }
                rec.read[p] = rec.write[p];
                if rec.ready_total() == 0 && rec.unacked == 0 {
                    self.delete_queue(txn, name)?;
                    Ok(Purged::Normal { deleted: true })
                } else {
                    self.save(txn, name, &rec)?;
                    Ok(Purged::Normal { deleted: false })
                }
            }
            Kind::Push => {
                for idx in rec.si() + 1..=rec.ci() {
                    del(txn, self.db, &codec::pub_key(name, idx))?;
                }
                self.delete_queue(txn, name)?;
                Ok(Purged::Push)
            }
        }
    }

    // ---- push queues

    /// Drops expired messages from the head of a push window, advancing `si`. True when it did.
    fn expire_head(
        &self,
        txn: &mut RwTransaction<'_>,
        name: &str,
        rec: &mut QueueRec,
        now_ms: u64,
    ) -> Result<bool, MqError> {
        let mut moved = false;
        while rec.read[0] < rec.write[0] {
            let key = codec::pub_key(name, rec.read[0] + 1);
            let expired = match get_opt(txn, self.db, &key)? {
                None => true,
                Some(v) => codec::split_pub_value(v).is_none_or(|(exp, _)| exp <= now_ms),
            };
            if !expired {
                break;
            }
            del(txn, self.db, &key)?;
            rec.read[0] += 1;
            moved = true;
        }
        Ok(moved)
    }

    /// The queue's record with a push window brought up to date (expired head dropped).
    pub fn current(
        &self,
        txn: &mut RwTransaction<'_>,
        name: &str,
        now_ms: u64,
    ) -> Result<Option<QueueRec>, MqError> {
        let Some(mut rec) = self.load(txn, name)? else {
            return Ok(None);
        };
        if rec.kind == Kind::Push && self.expire_head(txn, name, &mut rec, now_ms)? {
            self.save(txn, name, &rec)?;
        }
        Ok(Some(rec))
    }

    /// `/pub` (4.13): stores `body` at the next index (or at `idx`), creating the queue.
    pub fn publish(
        &self,
        txn: &mut RwTransaction<'_>,
        name: &str,
        idx: Option<u64>,
        ttl_ms: u64,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Published, MqError> {
        let (mut rec, created) = match self.current(txn, name, now_ms)? {
            Some(r) if r.kind != Kind::Push => return Err(MqError::WrongType),
            Some(r) => (r, false),
            None => (self.create(txn, Kind::Push, now_ms)?, true),
        };
        let window = rec.ci() - rec.si();
        if rec.lock || window >= HARD_CAP || (rec.max > 0 && window >= rec.max) {
            return Err(MqError::Refused);
        }
        match idx {
            Some(idx) => {
                // Messages before `idx` go, from the head.
                while rec.read[0] < rec.write[0] && rec.read[0] + 1 < idx {
                    del(txn, self.db, &codec::pub_key(name, rec.read[0] + 1))?;
                    rec.read[0] += 1;
                }
                if idx > rec.write[0] {
                    rec.read[0] = idx - 1;
                    rec.write[0] = idx;
                } else {
                    rec.write[0] += 1;
                }
            }
            None => rec.write[0] += 1,
        }
        let expiry = now_ms.saturating_add(ttl_ms);
        put(
            txn,
            self.db,
            &codec::pub_key(name, rec.ci()),
            &codec::pub_value(expiry, body),
        )?;
        rec.tm = now_ms / 1000;
        self.save(txn, name, &rec)?;
        Ok(Published {
            si: rec.si(),
            ci: rec.ci(),
            created,
        })
    }

    /// The message at `idx` of a push window whose record `rec` is current.
    pub fn view(
        &self,
        txn: &RwTransaction<'_>,
        name: &str,
        rec: &QueueRec,
        idx: u64,
        now_ms: u64,
    ) -> Result<SubView, MqError> {
        let (si, ci) = (rec.si(), rec.ci());
        if idx > si && idx <= ci {
            return Ok(
                match get_opt(txn, self.db, &codec::pub_key(name, idx))?
                    .and_then(codec::split_pub_value)
                {
                    Some((exp, body)) if exp > now_ms => SubView::Message(body.to_vec()),
                    _ => SubView::Expired,
                },
            );
        }
        if idx == ci + 1 {
            return Ok(SubView::Next);
        }
        Ok(SubView::Outside { si, ci })
    }

    /// `/sub` (4.14).
    pub fn sub(
        &self,
        txn: &mut RwTransaction<'_>,
        name: &str,
        idx: u64,
        now_ms: u64,
    ) -> Result<SubView, MqError> {
        let rec = self.current(txn, name, now_ms)?.ok_or(MqError::NoQueue)?;
        if rec.kind != Kind::Push {
            return Err(MqError::WrongType);
        }
        self.view(txn, name, &rec, idx, now_ms)
    }

    /// Every queue, in ascending name order, push windows brought up to date.
    pub fn all(
        &self,
        txn: &mut RwTransaction<'_>,
        now_ms: u64,
    ) -> Result<Vec<(String, QueueRec)>, MqError> {
        let mut out = Vec::new();
        {
            let mut cur = txn.open_ro_cursor(self.db)?;
            for item in cur.iter_from([codec::QUEUE_TAG]) {
                let (k, v) = item?;
                let Some(name) = k.strip_prefix(&[codec::QUEUE_TAG]) else {
                    break;
                };
                let (Ok(name), Some(rec)) = (std::str::from_utf8(name), QueueRec::decode(v)) else {
                    return Err(corrupt("corrupt queue record"));
                };
                out.push((name.to_string(), rec));
            }
        }
        for (name, rec) in &mut out {
            if rec.kind == Kind::Push && self.expire_head(txn, name, rec, now_ms)? {
                self.save(txn, name, rec)?;
            }
        }
        Ok(out)
    }

    /// Pending deliveries of all queues (for the start-up log line).
    pub fn totals<T: Transaction>(&self, txn: &T) -> Result<(u64, u64, u64), MqError> {
        let mut cur = txn.open_ro_cursor(self.db)?;
        let (mut queues, mut ready, mut pending) = (0, 0, 0);
        for item in cur.iter_from([codec::QUEUE_TAG]) {
            let (k, v) = item?;
            if k.first() != Some(&codec::QUEUE_TAG) {
                break;
            }
            let rec = QueueRec::decode(v).ok_or_else(|| corrupt("corrupt queue record"))?;
            queues += 1;
            if rec.kind == Kind::Normal {
                ready += rec.ready_total();
                pending += rec.unacked;
            } else {
                ready += rec.ci() - rec.si();
            }
        }
        Ok((queues, ready, pending))
    }
}
