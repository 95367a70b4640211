//! Listings (kv-api §2.7): one cursor walk in key (or score) order that filters, skips
//! `offset`, takes `size` and, when asked, counts every match. Only the page and, for long keys
//! that share their first 400 bytes, one run of such keys are held in memory: the encoded order
//! of such a run is the hash order, so it is sorted by full key before it is paged. Reads only:
//! it knows the bottom layer, `codec` and the table metadata (`tables`), never a write or the
//! batch.

use lmdb::{Cursor, Transaction};

use crate::codec::*;
use crate::env::DataCtx;
use crate::tables::{counts_exact, live_table_of, load_totals, table_alive};
use crate::{bucket, ListItem, ListQuery, ListValue, Listing, Result, StorageError, TableType};

/// The page being built.
struct Page<'q> {
    q: &'q ListQuery,
    /// Apply the bucket filter (never on sorted sets).
    buckets: bool,
    /// Walk to the end to count every match.
    count: bool,
    items: Vec<ListItem>,
    matched: u64,
    /// A live record was seen (the table exists).
    live: bool,
    /// Long keys sharing `run_group` (the stored key minus the hash), not yet paged.
    run_group: Vec<u8>,
    run: Vec<ListItem>,
}

impl<'q> Page<'q> {
    fn new(q: &'q ListQuery, buckets: bool) -> Page<'q> {
        Page {
            q,
            buckets: buckets && (q.start > 0 || q.end < 1024),
            count: q.count_total,
            items: Vec::new(),
            matched: 0,
            live: false,
            run_group: Vec::new(),
            run: Vec::new(),
        }
    }

    /// Nothing more can change the answer.
    fn done(&self) -> bool {
        !self.count && self.items.len() >= self.q.size as usize
    }

    /// Pages one item in final order; `val` is only built for items that make the page.
    fn offer(&mut self, key: &[u8], ver: u32, val: impl FnOnce() -> Option<ListValue>) {
        if self.buckets {
            let b = bucket(key);
            if b < self.q.start || b >= self.q.end {
                return;
            }
        }
        let idx = self.matched;
        self.matched += 1;
        if idx >= self.q.offset && self.items.len() < self.q.size as usize {
            self.items.push(ListItem {
                key: key.to_vec(),
                val: val(),
                ver,
            });
        }
    }

    /// A live record whose stored key is not long.
    fn short(&mut self, key: &[u8], ver: u32, val: impl FnOnce() -> Option<ListValue>) {
        self.live = true;
        self.flush();
        self.offer(key, ver, val);
    }

    /// A live record: a long key joins its group's run (sorted by full key when the run ends),
    /// a short key goes straight to the page. `stored` is the record's stored key.
    fn record(
        &mut self,
        stored: &[u8],
        long: bool,
        key: &[u8],
        ver: u32,
        val: impl FnOnce() -> Option<ListValue>,
    ) {
        if long {
            let item = ListItem {
                key: key.to_vec(),
                val: val(),
                ver,
            };
            self.long(group_of(stored), item);
        } else {
            self.short(key, ver, val);
        }
    }

    /// A live record with a long key; `group` = its stored key without the hash.
    fn long(&mut self, group: &[u8], item: ListItem) {
        self.live = true;
        if self.run.is_empty() || self.run_group != group {
            self.flush();
            self.run_group.clear();
            self.run_group.extend_from_slice(group);
        }
        self.run.push(item);
    }

    fn flush(&mut self) {
        if self.run.is_empty() {
            return;
        }
        let mut run = std::mem::take(&mut self.run);
        run.sort_by(|a, b| a.key.cmp(&b.key));
        for it in run {
            let ListItem { key, val, ver } = it;
            self.offer(&key, ver, || val);
        }
    }

    fn finish(mut self, known_total: Option<u64>) -> Listing {
        self.flush();
        let total = match known_total {
            Some(n) => n,
            None if self.q.count_total => self.matched,
            None => 0,
        };
        Listing {
            items: self.items,
            total,
        }
    }
}

/// The stored key of a long record minus its hash: what a run shares.
fn group_of(stored_key: &[u8]) -> &[u8] {
    &stored_key[..stored_key.len().saturating_sub(HASH_LEN)]
}

/// Whether `total` can come from the counters instead of a walk: no bucket filter, no score
/// bound, and no record expired-but-counted anywhere.
fn counters_exact<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    q: &ListQuery,
    page: &Page<'_>,
    now: u64,
) -> Result<bool> {
    Ok(q.count_total && !page.buckets && counts_exact(txn, cx, now)?)
}

/// `/keys`: plain kv records by key.
pub(crate) fn keys<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    q: &ListQuery,
    now: u64,
) -> Result<Listing> {
    let mut page = Page::new(q, true);
    let known = if counters_exact(txn, cx, q, &page, now)? {
        page.count = false;
        Some(load_totals(txn, cx)?.kv.count)
    } else {
        None
    };
    let mut cur = txn.open_ro_cursor(cx.db.kv)?;
    for item in cur.iter_start() {
        if page.done() {
            break;
        }
        let (ek, v) = item?;
        let long = is_long(ek);
        let rec = read_rec(v, long)?;
        if !live(rec.exp, now) {
            continue;
        }
        let key = rec.key(ek);
        let val = || {
            q.with_values
                .then(|| ListValue::Bytes(rec.payload.to_vec()))
        };
        page.record(ek, long, key, rec.ver, val);
    }
    Ok(page.finish(known))
}

/// `/hkeys`, `/smembers`: a table's members by key.
pub(crate) fn members<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    tb: &str,
    kind: TableType,
    q: &ListQuery,
    now: u64,
) -> Result<Listing> {
    let m = live_table_of(txn, cx, tb, kind, now)?;
    let tbb = tb.as_bytes();
    let mut page = Page::new(q, true);
    let known = if counters_exact(txn, cx, q, &page, now)? {
        page.count = false;
        Some(m.count)
    } else {
        None
    };
    let with_values = q.with_values && kind == TableType::Hash;
    let prefix = table_prefix(tbb);
    let mut cur = txn.open_ro_cursor(cx.db.mem)?;
    for item in cur.iter_from(&prefix) {
        if page.done() {
            break;
        }
        let (k, v) = item?;
        if !k.starts_with(&prefix) {
            break;
        }
        let ek = &k[prefix.len()..];
        let long = is_long(ek);
        let rec = read_rec(v, long)?;
        if !live(rec.exp, now) {
            continue;
        }
        let key = rec.key(ek);
        let val = || with_values.then(|| ListValue::Bytes(rec.payload.to_vec()));
        page.record(k, long, key, rec.ver, val);
    }
    if !page.live && !table_alive(txn, cx, tbb, &m, now)? {
        return Err(StorageError::NotFound);
    }
    Ok(page.finish(known))
}

/// `/zrangebyrank` (`range` None) and `/zrangebyscore`: members by score, then key, from the
/// score index.
pub(crate) fn zrange<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    tb: &str,
    range: Option<(i64, i64)>,
    q: &ListQuery,
    now: u64,
) -> Result<Listing> {
    let m = live_table_of(txn, cx, tb, TableType::SortedSet, now)?;
    let tbb = tb.as_bytes();
    let mut page = Page::new(q, false);
    let known = if range.is_none() && counters_exact(txn, cx, q, &page, now)? {
        page.count = false;
        Some(m.count)
    } else {
        None
    };
    let prefix = table_prefix(tbb);
    let mut start = prefix.clone();
    let max = match range {
        Some((min, max)) => {
            if min > max {
                return Ok(page.finish(known));
            }
            start.extend_from_slice(&score_bytes(min));
            Some(score_bytes(max))
        }
        None => None,
    };
    let mut cur = txn.open_ro_cursor(cx.db.zidx)?;
    for item in cur.iter_from(&start) {
        if page.done() {
            break;
        }
        let (k, v) = item?;
        if !k.starts_with(&prefix) {
            break;
        }
        let sb = k.get(prefix.len()..prefix.len() + 8).ok_or_else(corrupt)?;
        if max.as_ref().is_some_and(|max| sb > &max[..]) {
            break;
        }
        let ek = &k[prefix.len() + 8..];
        let long = is_long(ek);
        let rec = read_rec(v, long)?;
        if !live(rec.exp, now) {
            continue;
        }
        let score = score_from_bytes(sb)?;
        let key = rec.key(ek);
        let val = || q.with_values.then_some(ListValue::Score(score));
        page.record(k, long, key, rec.ver, val);
    }
    if !page.live && !table_alive(txn, cx, tbb, &m, now)? {
        return Err(StorageError::NotFound);
    }
    Ok(page.finish(known))
}
