//! The tests' shorthand for writes, the write methods `Batch` had before [`Command`]: each
//! builds the command (the TTL turned into an absolute expiry by [`expires_at`], from the
//! caller's `now_ms`) and calls [`Batch::apply`], so the tests run every write through the one
//! `apply` as the daemon does. Test-only: outside the tests, callers build commands.

use crate::command::{expires_at, Command, Outcome, Write};
use crate::{Batch, Result, StorageError, Written, ZaddMode};

/// What `apply` answers for another kind of write than was asked: never, short of a bug.
fn unexpected(o: Outcome) -> StorageError {
    log::error!("a write answered {o:?}, which its kind never does");
    StorageError::Invalid("unexpected outcome")
}

fn written(o: Outcome) -> Result<Written> {
    match o {
        Outcome::Written(w) => Ok(w),
        o => Err(unexpected(o)),
    }
}

fn counted(o: Outcome) -> Result<(Written, i64)> {
    match o {
        Outcome::Counted(w, n) => Ok((w, n)),
        o => Err(unexpected(o)),
    }
}

fn scored(o: Outcome) -> Result<(Written, i64)> {
    match o {
        Outcome::Scored(w, n) => Ok((w, n)),
        o => Err(unexpected(o)),
    }
}

fn done(o: Outcome) -> Result<()> {
    match o {
        Outcome::Done => Ok(()),
        o => Err(unexpected(o)),
    }
}

fn int(o: Outcome) -> Result<i64> {
    match o {
        Outcome::Int(n) => Ok(n),
        o => Err(unexpected(o)),
    }
}

fn float(o: Outcome) -> Result<f64> {
    match o {
        Outcome::Float(n) => Ok(n),
        o => Err(unexpected(o)),
    }
}

impl Batch<'_> {
    /// Cache hash fields have no expiry: their writes pass 0 as their time, which nothing reads.
    fn at(&mut self, now_ms: u64, write: Write<'_>) -> Result<Outcome> {
        self.apply(&Command { now_ms, write })
    }

    // ---- plain kv
    /// Stores `val` under `key`: version 1 when new, +1 otherwise; `ttl` replaces the expiry.
    pub fn put(
        &mut self,
        key: &[u8],
        val: &[u8],
        ttl: u32,
        ver: u32,
        now_ms: u64,
    ) -> Result<Written> {
        written(self.at(
            now_ms,
            Write::Put {
                key,
                val,
                expires_at: expires_at(ttl, now_ms),
                ver,
            },
        )?)
    }
    /// Deletes a live key; returns the version it had. `NotFound` before any version check.
    pub fn del(&mut self, key: &[u8], ver: u32, now_ms: u64) -> Result<Written> {
        written(self.at(now_ms, Write::Del { key, ver })?)
    }

    // ---- hash tables
    /// Sets a hash field, creating table `tb` (type H) if needed.
    pub fn hset(
        &mut self,
        tb: &str,
        key: &[u8],
        val: &[u8],
        ttl: u32,
        ver: u32,
        now_ms: u64,
    ) -> Result<Written> {
        written(self.at(
            now_ms,
            Write::Hset {
                tb,
                key,
                val,
                expires_at: expires_at(ttl, now_ms),
                ver,
            },
        )?)
    }
    /// Deletes a hash field; the last one removes the table.
    pub fn hdel(&mut self, tb: &str, key: &[u8], ver: u32, now_ms: u64) -> Result<Written> {
        written(self.at(now_ms, Write::Hdel { tb, key, ver })?)
    }
    /// Returns the write and the new value.
    pub fn hincrby(
        &mut self,
        tb: &str,
        key: &[u8],
        delta: i64,
        ttl: u32,
        ver: u32,
        now_ms: u64,
    ) -> Result<(Written, i64)> {
        counted(self.at(
            now_ms,
            Write::Hincrby {
                tb,
                key,
                delta,
                expires_at: expires_at(ttl, now_ms),
                ver,
            },
        )?)
    }

    // ---- sets
    /// Adds (or rewrites: version +1) a set member, creating table `tb` (type S) if needed.
    pub fn sadd(
        &mut self,
        tb: &str,
        member: &[u8],
        ttl: u32,
        ver: u32,
        now_ms: u64,
    ) -> Result<Written> {
        written(self.at(
            now_ms,
            Write::Sadd {
                tb,
                member,
                expires_at: expires_at(ttl, now_ms),
                ver,
            },
        )?)
    }
    /// Removes a set member; the last one removes the table.
    pub fn srem(&mut self, tb: &str, member: &[u8], ver: u32, now_ms: u64) -> Result<Written> {
        written(self.at(now_ms, Write::Srem { tb, member, ver })?)
    }

    // ---- sorted sets
    /// Returns the write (for a no-op: the current, unchanged version) and the resulting score.
    pub fn zadd(
        &mut self,
        tb: &str,
        member: &[u8],
        (score, mode): (i64, ZaddMode),
        ttl: u32,
        ver: u32,
        now_ms: u64,
    ) -> Result<(Written, i64)> {
        scored(self.at(
            now_ms,
            Write::Zadd {
                tb,
                member,
                score,
                mode,
                expires_at: expires_at(ttl, now_ms),
                ver,
            },
        )?)
    }
    /// Removes a sorted-set member; the last one removes the table.
    pub fn zrem(&mut self, tb: &str, member: &[u8], ver: u32, now_ms: u64) -> Result<Written> {
        written(self.at(now_ms, Write::Zrem { tb, member, ver })?)
    }

    // ---- cache (volatile, no versions)
    /// Sets a cache string; `ttl` 0 = no expiry (removes an existing one).
    pub fn cache_put(&mut self, key: &[u8], val: &[u8], ttl: u32, now_ms: u64) -> Result<()> {
        done(self.at(
            now_ms,
            Write::CachePut {
                key,
                val,
                expires_at: expires_at(ttl, now_ms),
            },
        )?)
    }
    /// Deletes a live cache string.
    pub fn cache_del(&mut self, key: &[u8], now_ms: u64) -> Result<()> {
        done(self.at(now_ms, Write::CacheDel { key })?)
    }
    /// Gives a live cache string a new expiry, `ttl` seconds from `now_ms` (at least 1).
    pub fn cache_expire(&mut self, key: &[u8], ttl: u32, now_ms: u64) -> Result<()> {
        done(self.at(
            now_ms,
            Write::CacheExpire {
                key,
                expires_at: expires_at(ttl, now_ms),
            },
        )?)
    }
    /// `NotFound` when absent or without expiry.
    pub fn cache_persist(&mut self, key: &[u8], now_ms: u64) -> Result<()> {
        done(self.at(now_ms, Write::CachePersist { key })?)
    }
    /// `TooLarge` past 8 MiB.
    pub fn cache_append(&mut self, key: &[u8], val: &[u8], now_ms: u64) -> Result<()> {
        done(self.at(now_ms, Write::CacheAppend { key, val })?)
    }
    /// Sets a cache hash field.
    pub fn cache_hset(&mut self, tb: &str, key: &[u8], val: &[u8]) -> Result<()> {
        done(self.at(0, Write::CacheHset { tb, key, val })?)
    }
    /// Deletes a cache hash field.
    pub fn cache_hdel(&mut self, tb: &str, key: &[u8]) -> Result<()> {
        done(self.at(0, Write::CacheHdel { tb, key })?)
    }
    /// Adds `delta` to an integer cache field (absent = 0); `NotNumeric` on a non-integer or overflow.
    pub fn cache_hincrby(&mut self, tb: &str, key: &[u8], delta: i64) -> Result<i64> {
        int(self.at(0, Write::CacheHincrby { tb, key, delta })?)
    }
    /// Adds `delta` to a numeric cache field (absent = 0), stored as Rust prints an `f64`; `NotNumeric` on a non-number or a non-finite result.
    pub fn cache_hincrbyfloat(&mut self, tb: &str, key: &[u8], delta: f64) -> Result<f64> {
        float(self.at(0, Write::CacheHincrbyfloat { tb, key, delta })?)
    }
}
