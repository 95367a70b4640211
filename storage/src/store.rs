//! [`Store`] (one per worker process) and [`Batch`] (one per event-loop pass).
//! STUB: signatures fixed; bodies to be written.

use crate::*;

/// One worker's handle on the persistent and the cache environments. Open it after the fork.
pub struct Store {
    _private: (),
}

impl Store {
    /// Opens (creating if needed) both environments and all named databases, and clears reader
    /// slots left by killed processes (`mdb_reader_check`).
    pub fn open(_opts: &StoreOptions) -> Result<Store> {
        todo!()
    }

    /// Starts the batch of one loop pass. Reads go through a read transaction until the first
    /// write of the pass opens the write transaction; from then on reads see the pass's writes.
    pub fn batch(&self) -> Batch<'_> {
        todo!()
    }

    /// Flushes the persistent environment to disk (`sync_writes off`: every `sync_interval`).
    pub fn sync(&self) -> Result<()> {
        todo!()
    }

    /// The persistent environment, for the queue crate's own databases.
    pub fn env(&self) -> &lmdb::Environment {
        todo!()
    }

    /// Bytes of the persistent map in use and the configured `map_size`.
    pub fn map_usage(&self) -> (u64, u64) {
        todo!()
    }
}

/// The reads and writes of one loop pass: every write of the pass goes into one LMDB write
/// transaction (each request in a nested transaction, so one failing request leaves the others
/// intact) that [`Batch::commit`] commits once. Dropping a batch without commit aborts it.
///
/// Time is passed in as `now_ms` (unix epoch milliseconds), `ttl` in seconds (0 = none), `ver`
/// as the expected version (0 = unconditional).
pub struct Batch<'s> {
    _store: &'s Store,
}

#[allow(unused_variables)]
impl<'s> Batch<'s> {
    /// Commits the pass's writes (fsynced when `sync_writes on`) and the cache's.
    pub fn commit(self) -> Result<CommitStats> {
        todo!()
    }

    /// True once a write of this pass has been attempted (the replies of this pass must then
    /// wait for [`Batch::commit`]).
    pub fn has_writes(&self) -> bool {
        todo!()
    }

    // ---- plain kv
    pub fn put(&mut self, key: &[u8], val: &[u8], ttl: u32, ver: u32, now_ms: u64) -> Result<Written> {
        todo!()
    }
    pub fn get(&mut self, key: &[u8], now_ms: u64) -> Result<Record> {
        todo!()
    }
    /// The current version.
    pub fn exist(&mut self, key: &[u8], now_ms: u64) -> Result<u32> {
        todo!()
    }
    pub fn del(&mut self, key: &[u8], ver: u32, now_ms: u64) -> Result<Written> {
        todo!()
    }
    pub fn keys(&mut self, q: &ListQuery, now_ms: u64) -> Result<Listing> {
        todo!()
    }

    // ---- hash tables
    pub fn hset(&mut self, tb: &str, key: &[u8], val: &[u8], ttl: u32, ver: u32, now_ms: u64) -> Result<Written> {
        todo!()
    }
    pub fn hget(&mut self, tb: &str, key: &[u8], now_ms: u64) -> Result<Record> {
        todo!()
    }
    pub fn hexist(&mut self, tb: &str, key: &[u8], now_ms: u64) -> Result<u32> {
        todo!()
    }
    pub fn hdel(&mut self, tb: &str, key: &[u8], ver: u32, now_ms: u64) -> Result<Written> {
        todo!()
    }
    /// Returns the write and the new value.
    pub fn hincrby(&mut self, tb: &str, key: &[u8], delta: i64, ttl: u32, ver: u32, now_ms: u64) -> Result<(Written, i64)> {
        todo!()
    }
    pub fn hkeys(&mut self, tb: &str, q: &ListQuery, now_ms: u64) -> Result<Listing> {
        todo!()
    }

    // ---- sets
    pub fn sadd(&mut self, tb: &str, member: &[u8], ttl: u32, ver: u32, now_ms: u64) -> Result<Written> {
        todo!()
    }
    pub fn srem(&mut self, tb: &str, member: &[u8], ver: u32, now_ms: u64) -> Result<Written> {
        todo!()
    }
    pub fn sismember(&mut self, tb: &str, member: &[u8], now_ms: u64) -> Result<u32> {
        todo!()
    }
    pub fn smembers(&mut self, tb: &str, q: &ListQuery, now_ms: u64) -> Result<Listing> {
        todo!()
    }

    // ---- sorted sets
    /// Returns the write (for a no-op: the current, unchanged version) and the resulting score.
    pub fn zadd(&mut self, tb: &str, member: &[u8], score: i64, mode: ZaddMode, ttl: u32, ver: u32, now_ms: u64) -> Result<(Written, i64)> {
        todo!()
    }
    pub fn zrem(&mut self, tb: &str, member: &[u8], ver: u32, now_ms: u64) -> Result<Written> {
        todo!()
    }
    pub fn zismember(&mut self, tb: &str, member: &[u8], now_ms: u64) -> Result<u32> {
        todo!()
    }
    /// Version and score.
    pub fn zscore(&mut self, tb: &str, member: &[u8], now_ms: u64) -> Result<(u32, i64)> {
        todo!()
    }
    pub fn zrange_by_rank(&mut self, tb: &str, q: &ListQuery, now_ms: u64) -> Result<Listing> {
        todo!()
    }
    pub fn zrange_by_score(&mut self, tb: &str, min: i64, max: i64, q: &ListQuery, now_ms: u64) -> Result<Listing> {
        todo!()
    }

    // ---- statistics
    pub fn totals(&mut self) -> Result<Totals> {
        todo!()
    }
    pub fn table_stat(&mut self, tb: &str, now_ms: u64) -> Result<TableStat> {
        todo!()
    }
    /// Every existing table, by name bytewise.
    pub fn all_tables(&mut self, now_ms: u64) -> Result<Vec<TableStat>> {
        todo!()
    }

    /// Removes at most `max` expired records (persistent store and cache); returns how many.
    pub fn purge_expired(&mut self, now_ms: u64, max: usize) -> Result<usize> {
        todo!()
    }

    // ---- cache (volatile, no versions)
    pub fn cache_put(&mut self, key: &[u8], val: &[u8], ttl: u32, now_ms: u64) -> Result<()> {
        todo!()
    }
    pub fn cache_get(&mut self, key: &[u8], now_ms: u64) -> Result<Vec<u8>> {
        todo!()
    }
    pub fn cache_exist(&mut self, key: &[u8], now_ms: u64) -> Result<()> {
        todo!()
    }
    pub fn cache_del(&mut self, key: &[u8], now_ms: u64) -> Result<()> {
        todo!()
    }
    /// Seconds left rounded to nearest, or `None` when the key has no expiry.
    pub fn cache_ttl(&mut self, key: &[u8], now_ms: u64) -> Result<Option<u64>> {
        todo!()
    }
    pub fn cache_expire(&mut self, key: &[u8], ttl: u32, now_ms: u64) -> Result<()> {
        todo!()
    }
    /// `NotFound` when absent or without expiry.
    pub fn cache_persist(&mut self, key: &[u8], now_ms: u64) -> Result<()> {
        todo!()
    }
    /// `TooLarge` past 8 MiB.
    pub fn cache_append(&mut self, key: &[u8], val: &[u8], now_ms: u64) -> Result<()> {
        todo!()
    }
    pub fn cache_hset(&mut self, tb: &str, key: &[u8], val: &[u8]) -> Result<()> {
        todo!()
    }
    pub fn cache_hget(&mut self, tb: &str, key: &[u8]) -> Result<Vec<u8>> {
        todo!()
    }
    pub fn cache_hdel(&mut self, tb: &str, key: &[u8]) -> Result<()> {
        todo!()
    }
    pub fn cache_hexist(&mut self, tb: &str, key: &[u8]) -> Result<()> {
        todo!()
    }
    pub fn cache_hincrby(&mut self, tb: &str, key: &[u8], delta: i64) -> Result<i64> {
        todo!()
    }
    pub fn cache_hincrbyfloat(&mut self, tb: &str, key: &[u8], delta: f64) -> Result<f64> {
        todo!()
    }

    // ---- for the queue crate
    /// Runs `f` in a nested write transaction of this pass: on `Err` only `f`'s changes are
    /// undone and the pass's other writes stay.
    pub fn write<T>(&mut self, f: impl FnOnce(&mut lmdb::RwTransaction<'_>) -> Result<T>) -> Result<T> {
        todo!()
    }
}
