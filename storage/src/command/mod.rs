//! Writes as data: [`Command`] holds every write the store can make, complete with its own
//! time, and [`apply`] (in `apply.rs`) applies one to a write transaction and returns its
//! [`Outcome`]. `wire.rs` gives commands a compact binary form ([`Command::encode`],
//! [`Command::decode`]), so that a cluster can ship them as log entries and its replicas run
//! the same commands on the same state to the same outcomes.
//!
//! Above the operations (`kv`, `members`, `purge`, `cache`) and the bottom layer; below the
//! batch, which runs commands through its request runner. It never knows a batch, a journal
//! or a clock.
//!
//! The one writer outside this type is the queue crate's [`crate::Batch::write`]: its records
//! live in databases of its own, in a codec of its own, and only with `write_map` off (mq
//! mode), where a failed closure is undone alone by a nested transaction.

mod apply;
mod wire;

pub(crate) use apply::{apply, checked, Failed};

use crate::{Written, ZaddMode};

/// A write, complete: its own time, so applying it reads no clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Command<'a> {
    /// The time of the write, unix epoch milliseconds: what "live" and "expired" are judged
    /// against.
    pub now_ms: u64,
    pub write: Write<'a>,
}

/// Every write of the store. Expiries are absolute (`expires_at`, unix ms, 0 = none: a write
/// with 0 removes an existing expiry), see [`expires_at`]; `ver` is the expected version (0 =
/// unconditional). The `Cache*` writes go to the volatile cache, the others to the persistent
/// store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Write<'a> {
    /// Stores `val` under `key`: version 1 when new, +1 otherwise.
    Put {
        key: &'a [u8],
        val: &'a [u8],
        expires_at: u64,
        ver: u32,
    },
    /// Deletes a live key; `NotFound` before any version check.
    Del { key: &'a [u8], ver: u32 },
    /// Sets a hash field, creating table `tb` (type H) if needed; `expires_at` is the field's.
    Hset {
        tb: &'a str,
        key: &'a [u8],
        val: &'a [u8],
        expires_at: u64,
        ver: u32,
    },
    /// Adds `delta` to an integer hash field (absent = 0).
    Hincrby {
        tb: &'a str,
        key: &'a [u8],
        delta: i64,
        expires_at: u64,
        ver: u32,
    },
    /// Deletes a hash field; the last one removes the table.
    Hdel {
        tb: &'a str,
        key: &'a [u8],
        ver: u32,
    },
    /// Adds (or rewrites: version +1) a set member, creating table `tb` (type S) if needed.
    Sadd {
        tb: &'a str,
        member: &'a [u8],
        expires_at: u64,
        ver: u32,
    },
    /// Removes a set member; the last one removes the table.
    Srem {
        tb: &'a str,
        member: &'a [u8],
        ver: u32,
    },
    /// Sets, adds to or subtracts from a sorted-set member's score (a `Set` to the same score
    /// changes nothing and keeps the version).
    Zadd {
        tb: &'a str,
        member: &'a [u8],
        score: i64,
        mode: ZaddMode,
        expires_at: u64,
        ver: u32,
    },
    /// Removes a sorted-set member; the last one removes the table.
    Zrem {
        tb: &'a str,
        member: &'a [u8],
        ver: u32,
    },
    /// Removes at most `max` records of the persistent store whose expiry has passed.
    PurgeExpired { max: usize },
    /// Removes at most `max` expired records of the persistent store whose slots are in
    /// `start..end` (a consensus group's purge, replicated: every replica removes the same).
    PurgeExpiredSlots { start: u32, end: u32, max: usize },
    /// Sets a cache string.
    CachePut {
        key: &'a [u8],
        val: &'a [u8],
        expires_at: u64,
    },
    /// Deletes a live cache string.
    CacheDel { key: &'a [u8] },
    /// Gives a live cache string a new expiry (`Invalid` for 0: that is `CachePersist`).
    CacheExpire { key: &'a [u8], expires_at: u64 },
    /// Removes a live cache string's expiry; `NotFound` when absent or without one.
    CachePersist { key: &'a [u8] },
    /// Appends to a cache string (absent or expired: starts empty); `TooLarge` past 8 MiB.
    CacheAppend { key: &'a [u8], val: &'a [u8] },
    /// Sets a cache hash field.
    CacheHset {
        tb: &'a str,
        key: &'a [u8],
        val: &'a [u8],
    },
    /// Deletes a cache hash field.
    CacheHdel { tb: &'a str, key: &'a [u8] },
    /// Adds `delta` to an integer cache field (absent = 0).
    CacheHincrby {
        tb: &'a str,
        key: &'a [u8],
        delta: i64,
    },
    /// Adds `delta` to a numeric cache field (absent = 0), stored as Rust prints an `f64`.
    CacheHincrbyfloat {
        tb: &'a str,
        key: &'a [u8],
        delta: f64,
    },
    /// Removes at most `max` expired cache strings.
    CachePurgeExpired { max: usize },
}

/// What an applied command answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// `Put`, `Del`, `Hset`, `Hdel`, `Sadd`, `Srem`, `Zrem`: the version after the write (for
    /// deletes: the version the record had).
    Written(Written),
    /// `Hincrby`: the write and the new value.
    Counted(Written, i64),
    /// `Zadd`: the write (for a no-op: the current, unchanged version) and the resulting score.
    Scored(Written, i64),
    /// `CachePut`, `CacheDel`, `CacheExpire`, `CachePersist`, `CacheAppend`, `CacheHset`,
    /// `CacheHdel`.
    Done,
    /// `CacheHincrby`: the new value.
    Int(i64),
    /// `CacheHincrbyfloat`: the new value.
    Float(f64),
    /// `PurgeExpired`, `PurgeExpiredSlots`, `CachePurgeExpired`: how many records went.
    Purged(usize),
}

/// The absolute expiry of a write made at `now_ms` with a TTL of `ttl_secs` seconds: 0 (none)
/// for a TTL of 0, else `now_ms + ttl_secs * 1000` (saturating).
pub fn expires_at(ttl_secs: u32, now_ms: u64) -> u64 {
    crate::codec::expiry(ttl_secs, now_ms)
}

impl Write<'_> {
    /// The write goes to the volatile cache (else to the persistent store).
    pub fn is_cache(&self) -> bool {
        matches!(
            self,
            Write::CachePut { .. }
                | Write::CacheDel { .. }
                | Write::CacheExpire { .. }
                | Write::CachePersist { .. }
                | Write::CacheAppend { .. }
                | Write::CacheHset { .. }
                | Write::CacheHdel { .. }
                | Write::CacheHincrby { .. }
                | Write::CacheHincrbyfloat { .. }
                | Write::CachePurgeExpired { .. }
        )
    }

    /// The refusals that need no state at all (an expire to "never", a non-finite increment).
    /// [`crate::Batch::apply`] checks them before counting the write, as the write methods
    /// always did; [`apply`] checks them again.
    pub(crate) fn refusal(&self) -> Option<crate::StorageError> {
        match self {
            Write::CacheExpire { expires_at: 0, .. } => Some(crate::StorageError::Invalid(
                "expire needs a ttl of at least 1 s",
            )),
            Write::CacheHincrbyfloat { delta, .. } if !delta.is_finite() => {
                Some(crate::StorageError::NotNumeric)
            }
            _ => None,
        }
    }
}
