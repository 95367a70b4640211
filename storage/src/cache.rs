//! The volatile cache (kv-api §8): string keys with optional expiry and hash tables, in their
//! own never-fsynced environment shared by every worker. No versions, no table types; the bytes
//! charged against `cache_size` are kept in `cmeta` like the persistent store's. Writes come
//! in two halves like the persistent store's (see `kv`): a read-only check, then an
//! [`Apply`]. An operation layer like `kv` and `members`: it knows the bottom layer and
//! `codec`, never the persistent store's operations or the batch.

use std::borrow::Cow;

use lmdb::{RwTransaction, Transaction, WriteFlags};

use crate::codec::*;
use crate::env::{CacheCtx, CacheDbs};
use crate::room::Pass;
use crate::txn::{del_opt, due_entries, get_opt, put_with, Apply, Map, Wtx};
use crate::{Result, StorageError};

const NO_FLAGS: WriteFlags = WriteFlags::empty();

pub(crate) fn load_used<T: Transaction>(txn: &T, cx: &CacheCtx<'_>) -> Result<u64> {
    match get_opt(txn, cx.db.meta, CACHE_USED_KEY)? {
        Some(v) => u64_at(v, 0),
        None => Ok(0),
    }
}

fn store_used(txn: &mut Wtx<'_, '_>, cx: &CacheCtx<'_>, used: u64) -> Result<()> {
    Ok(txn.put(cx.db.meta, &CACHE_USED_KEY, &used.to_le_bytes(), NO_FLAGS)?)
}

/// A decoded string record.
pub(crate) struct CRec<'a> {
    pub exp: u64,
    pub payload: &'a [u8],
}

fn read_crec(v: &[u8], long: bool) -> Result<(CRec<'_>, Option<&[u8]>)> {
    let exp = u64_at(v, 0)?;
    let t = read_tail(v.get(CREC_HEAD..).ok_or_else(corrupt)?, long)?;
    Ok((
        CRec {
            exp,
            payload: t.payload,
        },
        t.full,
    ))
}

/// Charge of a string record and its expiry index entry.
fn cfp(psize: u64, ek_len: usize, stored: usize, exp: u64) -> u64 {
    let mut fp = entry_fp(psize, ek_len, stored);
    if exp != 0 {
        fp += entry_fp(psize, 8 + ek_len, 0);
    }
    fp
}

/// A stored string record: expiry, stored length, and the payload when it was live.
struct COld {
    exp: u64,
    stored: usize,
    live: Option<Vec<u8>>,
}

/// A string key and its encoded form.
struct CKey<'a> {
    key: &'a [u8],
    ek: Cow<'a, [u8]>,
}

impl<'a> CKey<'a> {
    fn new(key: &'a [u8]) -> Result<CKey<'a>> {
        check_key(key)?;
        Ok(CKey { key, ek: ekey(key) })
    }
}

/// Looks a string key up for a write; `copy` = keep the live payload (append, expire).
fn old_for_write(
    txn: &RwTransaction<'_>,
    cx: &CacheCtx<'_>,
    k: &CKey<'_>,
    now: u64,
    copy: bool,
) -> Result<Option<COld>> {
    let (ek, key) = (&k.ek[..], k.key);
    let long = is_long(ek);
    let Some(v) = get_opt(txn, cx.db.kv, ek)? else {
        return Ok(None);
    };
    let (r, full) = read_crec(v, long)?;
    if long && full != Some(key) {
        return Err(StorageError::Invalid("key hash collision"));
    }
    let live = (copy && live(r.exp, now)).then(|| r.payload.to_vec());
    Ok(Some(COld {
        exp: r.exp,
        stored: v.len(),
        live,
    }))
}

/// A checked write of a string record (`put`, `expire`, `persist`, `append`): replaces (or
/// creates) it.
pub(crate) struct KvWrite<'a> {
    ek: Cow<'a, [u8]>,
    full: Option<&'a [u8]>,
    /// Expiry of the record replaced (its index entry goes), 0 when none.
    old_exp: u64,
    exp: u64,
    val: Cow<'a, [u8]>,
    len: usize,
    /// Charged bytes after the write.
    used: u64,
}

/// The room check of a string write.
fn plan_kv<'a>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    cx: &CacheCtx<'_>,
    k: CKey<'a>,
    old: Option<&COld>,
    exp: u64,
    val: Cow<'a, [u8]>,
) -> Result<KvWrite<'a>> {
    let CKey { key, ek } = k;
    let psize = cx.room.psize;
    let full = full_if_long(key);
    let len = CREC_HEAD + tail_len(full, val.len());
    let new_fp = cfp(psize, ek.len(), len, exp);
    let old_fp = old.map_or(0, |o| cfp(psize, ek.len(), o.stored, o.exp));
    let used = load_used(txn, cx)?;
    pass.charge(cx.env, cx.room, used, new_fp.saturating_sub(old_fp))?;
    Ok(KvWrite {
        ek,
        full,
        old_exp: old.map_or(0, |o| o.exp),
        exp,
        val,
        len,
        used: (used + new_fp).saturating_sub(old_fp),
    })
}

impl Apply<CacheDbs> for KvWrite<'_> {
    type Out = ();

    fn apply(self, txn: &mut Wtx<'_, '_>, cx: &CacheCtx<'_>) -> Result<()> {
        let KvWrite {
            ek,
            full,
            old_exp,
            exp,
            val,
            len,
            used,
        } = self;
        if old_exp != 0 {
            del_opt(txn, cx.db.exp, &cexp_key(old_exp, &ek))?;
        }
        put_with(txn, cx.db.kv, &ek, len, |b| {
            b[..CREC_HEAD].copy_from_slice(&exp.to_le_bytes());
            write_tail(&mut b[CREC_HEAD..], full, &val);
        })?;
        if exp != 0 {
            txn.put(cx.db.exp, &cexp_key(exp, &ek), &[], NO_FLAGS)?;
        }
        store_used(txn, cx, used)
    }
}

fn check_value(val: &[u8]) -> Result<()> {
    if val.len() > CACHE_MAX_VALUE {
        return Err(StorageError::TooLarge);
    }
    Ok(())
}

pub(crate) fn put<'a>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    cx: &CacheCtx<'_>,
    key: &'a [u8],
    val: &'a [u8],
    exp: u64,
    now: u64,
) -> Result<KvWrite<'a>> {
    let k = CKey::new(key)?;
    check_value(val)?;
    let old = old_for_write(txn, cx, &k, now, false)?;
    plan_kv(txn, pass, cx, k, old.as_ref(), exp, Cow::Borrowed(val))
}

/// Reads a live string key; `f` extracts what the caller needs.
pub(crate) fn get<T: Transaction, R>(
    txn: &T,
    cx: &CacheCtx<'_>,
    key: &[u8],
    now: u64,
    f: impl FnOnce(&CRec<'_>) -> R,
) -> Result<R> {
    check_key(key)?;
    let ek = ekey(key);
    let long = is_long(&ek);
    let v = get_opt(txn, cx.db.kv, &ek)?.ok_or(StorageError::NotFound)?;
    let (r, full) = read_crec(v, long)?;
    if (long && full != Some(key)) || !live(r.exp, now) {
        return Err(StorageError::NotFound);
    }
    Ok(f(&r))
}

/// A checked removal of a string record (`del`).
pub(crate) struct KvDel<'a> {
    ek: Cow<'a, [u8]>,
    exp: u64,
    stored: usize,
    used: u64,
}

pub(crate) fn del<'a>(
    txn: &RwTransaction<'_>,
    cx: &CacheCtx<'_>,
    key: &'a [u8],
    now: u64,
) -> Result<KvDel<'a>> {
    let k = CKey::new(key)?;
    let o = match old_for_write(txn, cx, &k, now, false) {
        Ok(Some(o)) if live(o.exp, now) => o,
        Ok(_) | Err(StorageError::Invalid(_)) => return Err(StorageError::NotFound),
        Err(e) => return Err(e),
    };
    let used = load_used(txn, cx)?;
    Ok(KvDel {
        ek: k.ek,
        exp: o.exp,
        stored: o.stored,
        used,
    })
}

impl Apply<CacheDbs> for KvDel<'_> {
    type Out = ();

    fn apply(self, txn: &mut Wtx<'_, '_>, cx: &CacheCtx<'_>) -> Result<()> {
        let used = remove_kv(txn, cx, &self.ek, self.exp, self.stored, self.used)?;
        store_used(txn, cx, used)
    }
}

/// Removes a string record and its index entry; returns `used` without its charge.
fn remove_kv(
    txn: &mut Wtx<'_, '_>,
    cx: &CacheCtx<'_>,
    ek: &[u8],
    exp: u64,
    stored: usize,
    used: u64,
) -> Result<u64> {
    if exp != 0 {
        del_opt(txn, cx.db.exp, &cexp_key(exp, ek))?;
    }
    txn.del(cx.db.kv, &ek, None)?;
    Ok(used.saturating_sub(cfp(cx.room.psize, ek.len(), stored, exp)))
}

/// `expire` (`exp` = new expiry) and `persist` (`exp` 0, and `NotFound` without an expiry).
pub(crate) fn set_expiry<'a>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    cx: &CacheCtx<'_>,
    key: &'a [u8],
    exp: u64,
    now: u64,
    persist: bool,
) -> Result<KvWrite<'a>> {
    let k = CKey::new(key)?;
    let mut o = match old_for_write(txn, cx, &k, now, true) {
        Ok(Some(o)) if o.live.is_some() => o,
        Ok(_) | Err(StorageError::Invalid(_)) => return Err(StorageError::NotFound),
        Err(e) => return Err(e),
    };
    if persist && o.exp == 0 {
        return Err(StorageError::NotFound);
    }
    let val = o.live.take().unwrap_or_default();
    plan_kv(txn, pass, cx, k, Some(&o), exp, Cow::Owned(val))
}

pub(crate) fn append<'a>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    cx: &CacheCtx<'_>,
    key: &'a [u8],
    val: &[u8],
    now: u64,
) -> Result<KvWrite<'a>> {
    let k = CKey::new(key)?;
    let mut old = old_for_write(txn, cx, &k, now, true)?;
    let (exp, mut joined) = match &mut old {
        Some(COld {
            exp,
            live: Some(cur),
            ..
        }) => (*exp, std::mem::take(cur)),
        _ => (0, Vec::new()),
    };
    if joined.len() + val.len() > CACHE_MAX_VALUE {
        return Err(StorageError::TooLarge);
    }
    joined.extend_from_slice(val);
    plan_kv(txn, pass, cx, k, old.as_ref(), exp, Cow::Owned(joined))
}

// ---- hash tables

fn ckey(tb: &str, key: &[u8]) -> Result<(Vec<u8>, bool)> {
    check_table(tb)?;
    check_key(key)?;
    let ek = ekey(key);
    Ok((member_key(tb.as_bytes(), &ek), is_long(&ek)))
}

/// A checked write of a cache hash field.
pub(crate) struct HashWrite<'a, 'v> {
    mkey: Vec<u8>,
    full: Option<&'a [u8]>,
    new: Cow<'v, [u8]>,
    len: usize,
    /// Charged bytes after the write.
    used: u64,
}

/// Sets a field to what `f` makes of its current value (absent: `None`).
pub(crate) fn hset<'a, 'v>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    cx: &CacheCtx<'_>,
    tb: &str,
    key: &'a [u8],
    f: impl FnOnce(Option<&[u8]>) -> Result<Cow<'v, [u8]>>,
) -> Result<HashWrite<'a, 'v>> {
    let (mkey, long) = ckey(tb, key)?;
    let (old_stored, new) = match get_opt(txn, cx.db.hash, &mkey)? {
        Some(v) => {
            let t = read_tail(v, long)?;
            if long && t.full != Some(key) {
                return Err(StorageError::Invalid("key hash collision"));
            }
            (Some(v.len()), f(Some(t.payload))?)
        }
        None => (None, f(None)?),
    };
    check_value(&new)?;
    let psize = cx.room.psize;
    let full = full_if_long(key);
    let len = tail_len(full, new.len());
    let new_fp = entry_fp(psize, mkey.len(), len);
    let old_fp = old_stored.map_or(0, |n| entry_fp(psize, mkey.len(), n));
    let used = load_used(txn, cx)?;
    pass.charge(cx.env, cx.room, used, new_fp.saturating_sub(old_fp))?;
    Ok(HashWrite {
        mkey,
        full,
        new,
        len,
        used: (used + new_fp).saturating_sub(old_fp),
    })
}

impl Apply<CacheDbs> for HashWrite<'_, '_> {
    type Out = ();

    fn apply(self, txn: &mut Wtx<'_, '_>, cx: &CacheCtx<'_>) -> Result<()> {
        let HashWrite {
            mkey,
            full,
            new,
            len,
            used,
        } = self;
        put_with(txn, cx.db.hash, &mkey, len, |b| write_tail(b, full, &new))?;
        store_used(txn, cx, used)
    }
}

/// Adds `delta` to an integer field (absent = 0); `NotNumeric` on a non-integer or overflow.
pub(crate) fn hincrby<'a>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    cx: &CacheCtx<'_>,
    tb: &str,
    key: &'a [u8],
    delta: i64,
) -> Result<impl Apply<CacheDbs, Out = i64> + 'a> {
    let mut out = 0;
    let plan = hset(txn, pass, cx, tb, key, |old| {
        let cur = match old {
            Some(v) => parse_i64(v).ok_or(StorageError::NotNumeric)?,
            None => 0,
        };
        out = cur.checked_add(delta).ok_or(StorageError::NotNumeric)?;
        Ok(Cow::Owned(out.to_string().into_bytes()))
    })?;
    Ok(Map(plan, move |()| out))
}

/// Adds `delta` to a numeric field (absent = 0), stored as Rust prints an `f64`; `NotNumeric`
/// on a non-number or a non-finite result (a non-finite `delta` is refused before, see
/// `Write::refusal`).
pub(crate) fn hincrbyfloat<'a>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    cx: &CacheCtx<'_>,
    tb: &str,
    key: &'a [u8],
    delta: f64,
) -> Result<impl Apply<CacheDbs, Out = f64> + 'a> {
    let mut out = 0.0;
    let plan = hset(txn, pass, cx, tb, key, |old| {
        let cur = match old {
            Some(v) => parse_f64(v).ok_or(StorageError::NotNumeric)?,
            None => 0.0,
        };
        out = cur + delta;
        if !out.is_finite() {
            return Err(StorageError::NotNumeric);
        }
        Ok(Cow::Owned(format!("{out}").into_bytes()))
    })?;
    Ok(Map(plan, move |()| out))
}

pub(crate) fn hget<T: Transaction, R>(
    txn: &T,
    cx: &CacheCtx<'_>,
    tb: &str,
    key: &[u8],
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    let (mkey, long) = ckey(tb, key)?;
    let v = get_opt(txn, cx.db.hash, &mkey)?.ok_or(StorageError::NotFound)?;
    let t = read_tail(v, long)?;
    if long && t.full != Some(key) {
        return Err(StorageError::NotFound);
    }
    Ok(f(t.payload))
}

/// A checked removal of a cache hash field.
pub(crate) struct HashDel {
    mkey: Vec<u8>,
    /// Charged bytes after the removal.
    used: u64,
}

pub(crate) fn hdel(
    txn: &RwTransaction<'_>,
    cx: &CacheCtx<'_>,
    tb: &str,
    key: &[u8],
) -> Result<HashDel> {
    let (mkey, long) = ckey(tb, key)?;
    let stored = {
        let v = get_opt(txn, cx.db.hash, &mkey)?.ok_or(StorageError::NotFound)?;
        if long && read_tail(v, long)?.full != Some(key) {
            return Err(StorageError::NotFound);
        }
        v.len()
    };
    let used = load_used(txn, cx)?.saturating_sub(entry_fp(cx.room.psize, mkey.len(), stored));
    Ok(HashDel { mkey, used })
}

impl Apply<CacheDbs> for HashDel {
    type Out = ();

    fn apply(self, txn: &mut Wtx<'_, '_>, cx: &CacheCtx<'_>) -> Result<()> {
        txn.del(cx.db.hash, &self.mkey, None)?;
        store_used(txn, cx, self.used)
    }
}

/// A due `cexp` entry and the record it takes along: expiry and stored length, `None` for a
/// stale entry whose record was rewritten with another expiry.
type Due = (Vec<u8>, Option<(u64, usize)>);

/// A checked cache purge.
pub(crate) struct Purge {
    due: Vec<Due>,
    used: u64,
}

/// Finds up to `max` expired string keys, oldest first.
pub(crate) fn purge<T: Transaction>(
    txn: &T,
    cx: &CacheCtx<'_>,
    now: u64,
    max: usize,
) -> Result<Purge> {
    let keys = due_entries(txn, cx.db.exp, now, max)?;
    let mut due = Vec::with_capacity(keys.len());
    for k in keys {
        let exp = u64_be_at(&k, 0)?;
        let ek = &k[8..];
        let stored = match get_opt(txn, cx.db.kv, ek)? {
            Some(v) => {
                let (r, _) = read_crec(v, is_long(ek))?;
                (r.exp == exp).then_some((exp, v.len()))
            }
            None => None,
        };
        due.push((k, stored));
    }
    let used = load_used(txn, cx)?;
    Ok(Purge { due, used })
}

impl Apply<CacheDbs> for Purge {
    /// Records removed.
    type Out = usize;

    fn apply(self, txn: &mut Wtx<'_, '_>, cx: &CacheCtx<'_>) -> Result<usize> {
        let mut used = self.used;
        let mut removed = 0;
        for (k, stored) in &self.due {
            match stored {
                Some((exp, n)) => {
                    used = remove_kv(txn, cx, &k[8..], *exp, *n, used)?;
                    removed += 1;
                }
                None => del_opt(txn, cx.db.exp, k)?,
            }
        }
        if removed > 0 {
            store_used(txn, cx, used)?;
        }
        Ok(removed)
    }
}
