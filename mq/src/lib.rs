//! huststore's message queue (`mode mq;`): queues kept in LMDB through the storage crate's
//! group-committed batches, and the in-memory waiters of long polling, push and worker RPC.
//!
//! LMDB is the only source of truth for queues: every message, every pending delivery (with
//! its wall-clock deadline) and every per-queue setting is a record of one named database, so
//! a restart after `kill -9` finds exactly what the last committed pass left, and nothing has
//! to be rebuilt but the waiters (which die with their connections anyway). Memory holds only
//! what the spec says is volatile: worker lists, parked requests, RPC tasks, and hints that
//! tell the event loop when to look again.
//!
//! It must never know about HTTP or sockets: the worker hands it parsed, validated parameters
//! and opaque waiter ids ([`Broker`] is generic over them), and turns its [`Reply`]s into
//! responses.

use std::fmt;
use std::time::{Duration, Instant};

mod broker;
mod codec;
mod json;
mod queues;
mod rpc;
mod workers;

pub use broker::Broker;

/// Ready messages a queue (or push window) may hold, whatever its `max` says.
pub const HARD_CAP: u64 = 5_000_000;
/// Largest `idx` a client may give (`2^53 - 1`, exact in every JSON reader).
pub const MAX_IDX: u64 = (1 << 53) - 1;
/// `/pub`'s `ttl` when none is given, in seconds.
pub const DEFAULT_TTL: u64 = 900;
/// Name of the LMDB database holding every queue record.
pub const DB_NAME: &str = "mq";

/// The time of one loop pass: the monotonic clock for in-memory timers, the wall clock (unix
/// milliseconds) for everything persisted.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: Instant,
    pub now_ms: u64,
}

/// Where the model runs its LMDB work: the event loop's per-pass batch (writes become durable
/// when the pass commits), or a plain environment in tests.
pub trait Transact {
    /// Runs `f` in a (nested) write transaction; on `Err` only `f`'s changes are undone.
    fn transact<T>(
        &mut self,
        f: impl FnOnce(&mut lmdb::RwTransaction<'_>) -> storage::Result<T>,
    ) -> storage::Result<T>;

    /// Before a write that adds about `bytes`: `MapFull` when it would pass `map_size`.
    fn ensure_room(&mut self, bytes: u64) -> storage::Result<()> {
        let _ = bytes;
        Ok(())
    }
}

impl Transact for storage::Batch<'_> {
    fn transact<T>(
        &mut self,
        f: impl FnOnce(&mut lmdb::RwTransaction<'_>) -> storage::Result<T>,
    ) -> storage::Result<T> {
        self.write(f)
    }

    fn ensure_room(&mut self, bytes: u64) -> storage::Result<()> {
        storage::Batch::ensure_room(self, bytes)
    }
}

/// Why a queue operation did not happen.
#[derive(Debug)]
pub enum MqError {
    /// The queue does not exist.
    NoQueue,
    /// The queue exists with the other type.
    WrongType,
    /// Refused by the queue's policy: locked, or full (`max` or [`HARD_CAP`]).
    Refused,
    /// Creating one more queue would exceed `max_queue_size`.
    TooManyQueues,
    /// LMDB failed (map full, or anything unexpected); nothing was written.
    Storage(storage::StorageError),
}

impl fmt::Display for MqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MqError::NoQueue => write!(f, "queue does not exist"),
            MqError::WrongType => write!(f, "queue exists with the other type"),
            MqError::Refused => write!(f, "queue is locked or full"),
            MqError::TooManyQueues => write!(f, "too many queues"),
            MqError::Storage(e) => write!(f, "storage: {e}"),
        }
    }
}

impl std::error::Error for MqError {}

impl From<lmdb::Error> for MqError {
    fn from(e: lmdb::Error) -> MqError {
        MqError::Storage(match e {
            // A transaction too large for LMDB is as full as a full map: nothing was written.
            lmdb::Error::MapFull | lmdb::Error::TxnFull => storage::StorageError::MapFull,
            e => storage::StorageError::Lmdb(e),
        })
    }
}

impl From<storage::StorageError> for MqError {
    fn from(e: storage::StorageError) -> MqError {
        MqError::Storage(e)
    }
}

/// Runs `f` in one nested transaction of `x`. A domain error ([`MqError::Refused`] ...) also
/// rolls the closure's writes back, so an operation either happens whole or not at all.
pub(crate) fn run<X: Transact, T>(
    x: &mut X,
    f: impl FnOnce(&mut lmdb::RwTransaction<'_>) -> Result<T, MqError>,
) -> Result<T, MqError> {
    let mut domain = None;
    let res = x.transact(|txn| match f(txn) {
        Ok(v) => Ok(v),
        Err(MqError::Storage(e)) => Err(e),
        Err(other) => {
            domain = Some(other);
            Err(storage::StorageError::Invalid("mq operation refused"))
        }
    });
    match res {
        Ok(v) => Ok(v),
        Err(e) => Err(domain.unwrap_or(MqError::Storage(e))),
    }
}

/// What an operation answers, in the spec's terms; the worker maps each to status and headers.
#[derive(Debug)]
pub enum Reply {
    /// `200`, empty body.
    Done,
    /// `200` with a message (or RPC result) as `text/plain` body.
    Message(Vec<u8>),
    /// `200` with a message delivered as pending: `Ack-Token`, `Ack-Peer: 0`.
    Pending { body: Vec<u8>, token: String },
    /// `200` of `/pub`: `Index: si-ci`.
    Published { si: u64, ci: u64 },
    /// `200` with a JSON body.
    Json(String),
    /// `200` of a `/do_post` claim: `Queue`, `Token` headers, the arguments as body.
    Task {
        name: String,
        token: u64,
        args: Vec<u8>,
    },
    /// `404`, empty: no queue, nothing to return, refused by policy, long poll timed out.
    NotFound,
    /// `403` with `Index: si-ci`: `idx` outside the push window.
    OutOfWindow { si: u64, ci: u64 },
    /// `409`: the queue has the other type.
    WrongType,
    /// `408`: an RPC call or claim timed out.
    Timeout,
    /// `503`: a server-wide capacity limit.
    Busy,
    /// `507` (map full) or `500` (anything else, already logged).
    Storage(storage::StorageError),
}

impl PartialEq for Reply {
    fn eq(&self, other: &Reply) -> bool {
        use Reply::*;
        match (self, other) {
            (Done, Done)
            | (NotFound, NotFound)
            | (WrongType, WrongType)
            | (Timeout, Timeout)
            | (Busy, Busy) => true,
            (Message(a), Message(b)) => a == b,
            (Pending { body: a, token: t }, Pending { body: b, token: u }) => a == b && t == u,
            (Published { si: a, ci: b }, Published { si: c, ci: d })
            | (OutOfWindow { si: a, ci: b }, OutOfWindow { si: c, ci: d }) => a == c && b == d,
            (Json(a), Json(b)) => a == b,
            (
                Task {
                    name: a,
                    token: t,
                    args: x,
                },
                Task {
                    name: b,
                    token: u,
                    args: y,
                },
            ) => a == b && t == u && x == y,
            // Storage errors are not comparable values; the same message is close enough.
            (Storage(a), Storage(b)) => a.to_string() == b.to_string(),
            _ => false,
        }
    }
}

impl From<MqError> for Reply {
    fn from(e: MqError) -> Reply {
        match e {
            MqError::NoQueue | MqError::Refused => Reply::NotFound,
            MqError::WrongType => Reply::WrongType,
            MqError::TooManyQueues => Reply::Busy,
            MqError::Storage(e) => {
                if !matches!(e, storage::StorageError::MapFull) {
                    log::error!("mq storage failure: {e}");
                }
                Reply::Storage(e)
            }
        }
    }
}

/// What a request that may wait gets: an answer now, or a place in line for at most the
/// given time.
#[derive(Debug, PartialEq)]
pub enum Step {
    Reply(Reply),
    Park(Duration),
}

#[cfg(test)]
mod tests;
