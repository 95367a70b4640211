//! The reads of a [`Batch`]: plain keys, table members, listings, statistics, the cache, and
//! values lent in place for replies ([`InPlace`]). They see the pass's writes once its write
//! transaction is open.

use crate::batch::Batch;
use crate::codec::Tot;
use crate::old::score_of;
use crate::tables::{self, load_totals};
use crate::{cache, kv, list, members, slots};
use crate::{ListQuery, Listing, Record, Result, TableStat, TableType, Totals};

/// A value read in place, in the data file's map, by [`Batch::get_for_reply`]: a pointer and
/// a length, valid until the batch that read it ends (commits or is dropped). Its holder
/// must copy or write out the bytes before then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPlace {
    ptr: *const u8,
    len: usize,
}

/// Bytes that live for ever are always valid (tests of the holders use it).
impl From<&'static [u8]> for InPlace {
    fn from(bytes: &'static [u8]) -> InPlace {
        InPlace {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }
}

impl InPlace {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    ///
    /// # Safety
    /// The batch that returned this value must not have ended yet (see [`InPlace`]).
    pub unsafe fn bytes<'a>(&self) -> &'a [u8] {
        // SAFETY: `ptr`/`len` were a slice of a page of the batch's read snapshot, which
        // LMDB keeps unchanged while that read transaction lives (the caller's promise).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A value for a reply: copied, or in place when large (see [`Batch::get_for_reply`]).
#[derive(Debug)]
pub enum ReplyValue {
    Copied(Vec<u8>),
    InPlace(InPlace),
}

impl Batch<'_> {
    /// The live value and its version; `NotFound` if absent or expired.
    pub fn get(&mut self, key: &[u8], now_ms: u64) -> Result<Record> {
        let cx = self.store.data_ctx();
        kv::kv_get(&self.reader()?, &cx, key, now_ms)
    }

    /// [`Batch::get`] for a reply: a value of `in_place_from` bytes or more read before the
    /// pass's first write is not copied but lent in place ([`InPlace`]), so that it is copied
    /// only once, into the socket. After a write the pass reads through its write
    /// transaction, whose pages later writes of the pass may change: then it is copied.
    pub fn get_for_reply(
        &mut self,
        key: &[u8],
        now_ms: u64,
        in_place_from: usize,
    ) -> Result<(u32, ReplyValue)> {
        let cx = self.store.data_ctx();
        if self.data.writing() {
            let r = kv::kv_get(&self.reader()?, &cx, key, now_ms)?;
            return Ok((r.ver, ReplyValue::Copied(r.value)));
        }
        let reader = self.reader()?;
        let (ver, payload) = kv::kv_get_ref(&reader, &cx, key, now_ms)?;
        if payload.len() < in_place_from {
            return Ok((ver, ReplyValue::Copied(payload.to_vec())));
        }
        let lent = InPlace {
            ptr: payload.as_ptr(),
            len: payload.len(),
        };
        self.lent = true;
        Ok((ver, ReplyValue::InPlace(lent)))
    }

    /// The current version.
    pub fn exist(&mut self, key: &[u8], now_ms: u64) -> Result<u32> {
        let cx = self.store.data_ctx();
        kv::kv_exist(&self.reader()?, &cx, key, now_ms)
    }

    /// Plain kv records by key (kv-api §2.7).
    pub fn keys(&mut self, q: &ListQuery, now_ms: u64) -> Result<Listing> {
        let cx = self.store.data_ctx();
        list::keys(&self.reader()?, &cx, q, now_ms)
    }

    /// A live hash field and its version.
    pub fn hget(&mut self, tb: &str, key: &[u8], now_ms: u64) -> Result<Record> {
        let cx = self.store.data_ctx();
        let r = self.reader()?;
        let (ver, value) =
            members::member_get(&r, &cx, tb, TableType::Hash, key, now_ms, |p| p.to_vec())?;
        Ok(Record { ver, value })
    }

    /// The version of a live hash field.
    pub fn hexist(&mut self, tb: &str, key: &[u8], now_ms: u64) -> Result<u32> {
        let cx = self.store.data_ctx();
        let r = self.reader()?;
        Ok(members::member_get(&r, &cx, tb, TableType::Hash, key, now_ms, |_| ())?.0)
    }

    /// A hash table's fields by key.
    pub fn hkeys(&mut self, tb: &str, q: &ListQuery, now_ms: u64) -> Result<Listing> {
        let cx = self.store.data_ctx();
        list::members(&self.reader()?, &cx, tb, TableType::Hash, q, now_ms)
    }

    /// The version of a live set member.
    pub fn sismember(&mut self, tb: &str, member: &[u8], now_ms: u64) -> Result<u32> {
        let cx = self.store.data_ctx();
        let r = self.reader()?;
        Ok(members::member_get(&r, &cx, tb, TableType::Set, member, now_ms, |_| ())?.0)
    }

    /// A set's members by key (never values).
    pub fn smembers(&mut self, tb: &str, q: &ListQuery, now_ms: u64) -> Result<Listing> {
        let cx = self.store.data_ctx();
        list::members(&self.reader()?, &cx, tb, TableType::Set, q, now_ms)
    }

    /// The version of a live sorted-set member.
    pub fn zismember(&mut self, tb: &str, member: &[u8], now_ms: u64) -> Result<u32> {
        let cx = self.store.data_ctx();
        let r = self.reader()?;
        Ok(members::member_get(&r, &cx, tb, TableType::SortedSet, member, now_ms, |_| ())?.0)
    }

    /// Version and score.
    pub fn zscore(&mut self, tb: &str, member: &[u8], now_ms: u64) -> Result<(u32, i64)> {
        let cx = self.store.data_ctx();
        let r = self.reader()?;
        let (ver, score) =
            members::member_get(&r, &cx, tb, TableType::SortedSet, member, now_ms, score_of)?;
        Ok((ver, score?))
    }

    /// Members by score then key, from rank `q.offset` (no bucket filter).
    pub fn zrange_by_rank(&mut self, tb: &str, q: &ListQuery, now_ms: u64) -> Result<Listing> {
        let cx = self.store.data_ctx();
        list::zrange(&self.reader()?, &cx, tb, None, q, now_ms)
    }

    /// Members with `min <= score <= max`, by score then key (no bucket filter).
    pub fn zrange_by_score(
        &mut self,
        tb: &str,
        min: i64,
        max: i64,
        q: &ListQuery,
        now_ms: u64,
    ) -> Result<Listing> {
        let cx = self.store.data_ctx();
        list::zrange(&self.reader()?, &cx, tb, Some((min, max)), q, now_ms)
    }

    // ---- statistics
    /// `KVPAIR` and `HASHTABLE` totals (may include records expired < 60 s ago).
    pub fn totals(&mut self) -> Result<Totals> {
        let cx = self.store.data_ctx();
        let t: Tot = load_totals(&self.reader()?, &cx)?;
        Ok(Totals {
            kv: t.kv,
            hash: t.hash,
        })
    }

    /// The totals of the records of `slots` alone (a cluster group's, `cluster.md` §5); one
    /// walk of the range.
    pub fn totals_of_slots(&mut self, slots: std::ops::Range<u32>) -> Result<Totals> {
        let cx = self.store.data_ctx();
        slots::totals_of(&self.reader()?, &cx, slots)
    }

    /// One live table's statistics; `NotFound` when it does not exist.
    pub fn table_stat(&mut self, tb: &str, now_ms: u64) -> Result<TableStat> {
        let cx = self.store.data_ctx();
        tables::table_stat(&self.reader()?, &cx, tb, now_ms)
    }

    /// Every existing table, by name bytewise.
    pub fn all_tables(&mut self, now_ms: u64) -> Result<Vec<TableStat>> {
        let cx = self.store.data_ctx();
        tables::all_tables(&self.reader()?, &cx, now_ms)
    }

    /// The replication state last stored for `group` ([`Batch::set_group_state`]); sees this
    /// pass's own write.
    pub fn group_state(&mut self, group: u32) -> Result<Option<Vec<u8>>> {
        let cx = self.store.data_ctx();
        slots::load_group_state(&self.reader()?, &cx, group)
    }

    /// A live cache string.
    pub fn cache_get(&mut self, key: &[u8], now_ms: u64) -> Result<Vec<u8>> {
        let cx = self.store.cache_ctx();
        cache::get(&self.cache_reader()?, &cx, key, now_ms, |r| {
            r.payload.to_vec()
        })
    }

    /// `Ok` when the cache string is live.
    pub fn cache_exist(&mut self, key: &[u8], now_ms: u64) -> Result<()> {
        let cx = self.store.cache_ctx();
        cache::get(&self.cache_reader()?, &cx, key, now_ms, |_| ())
    }

    /// Seconds left rounded to nearest, or `None` when the key has no expiry.
    pub fn cache_ttl(&mut self, key: &[u8], now_ms: u64) -> Result<Option<u64>> {
        let cx = self.store.cache_ctx();
        let exp = cache::get(&self.cache_reader()?, &cx, key, now_ms, |r| r.exp)?;
        Ok((exp != 0).then(|| (exp.saturating_sub(now_ms) + 500) / 1000))
    }

    /// A cache hash field.
    pub fn cache_hget(&mut self, tb: &str, key: &[u8]) -> Result<Vec<u8>> {
        let cx = self.store.cache_ctx();
        cache::hget(&self.cache_reader()?, &cx, tb, key, |v| v.to_vec())
    }

    /// `Ok` when the cache hash field exists.
    pub fn cache_hexist(&mut self, tb: &str, key: &[u8]) -> Result<()> {
        let cx = self.store.cache_ctx();
        cache::hget(&self.cache_reader()?, &cx, tb, key, |_| ())
    }
}
