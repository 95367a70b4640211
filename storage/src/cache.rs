//! The volatile cache (kv-api §8): string keys with optional expiry and hash tables, in their
//! own never-fsynced environment shared by every worker. No versions, no table types; the bytes
//! charged against `cache_size` are kept in `cmeta` like the persistent store's.

use std::borrow::Cow;

use lmdb::{Cursor, RwTransaction, Transaction, WriteFlags};

use crate::codec::*;
use crate::data::{del_opt, get_opt, put_with};
use crate::store::{Pass, Store};
use crate::{Result, StorageError};

const NO_FLAGS: WriteFlags = WriteFlags::empty();

pub(crate) fn load_used<T: Transaction>(txn: &T, s: &Store) -> Result<u64> {
    match get_opt(txn, s.cdb.meta, CACHE_USED_KEY)? {
        Some(v) => u64_at(v, 0),
        None => Ok(0),
    }
}

fn store_used(txn: &mut RwTransaction<'_>, s: &Store, used: u64) -> Result<()> {
    Ok(txn.put(s.cdb.meta, &CACHE_USED_KEY, &used.to_le_bytes(), NO_FLAGS)?)
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

/// Looks a string key up for a write; `copy` = keep the live payload (append, expire).
fn old_for_write(
    txn: &RwTransaction<'_>,
    s: &Store,
    ek: &[u8],
    key: &[u8],
    now: u64,
    copy: bool,
) -> Result<Option<COld>> {
    let long = is_long(ek);
    let Some(v) = get_opt(txn, s.cdb.kv, ek)? else {
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

/// Replaces (or creates) a string record.
#[allow(clippy::too_many_arguments)]
fn write_kv(
    txn: &mut RwTransaction<'_>,
    pass: &mut Pass,
    s: &Store,
    ek: &[u8],
    key: &[u8],
    old: Option<&COld>,
    exp: u64,
    val: &[u8],
) -> Result<()> {
    let psize = s.croom.psize;
    let full = full_if_long(key);
    let len = CREC_HEAD + tail_len(full, val.len());
    let new_fp = cfp(psize, ek.len(), len, exp);
    let old_fp = old.map_or(0, |o| cfp(psize, ek.len(), o.stored, o.exp));
    let used = load_used(txn, s)?;
    pass.charge(s.cache_env(), &s.croom, used, new_fp.saturating_sub(old_fp))?;
    if let Some(o) = old {
        if o.exp != 0 {
            del_opt(txn, s.cdb.exp, &cexp_key(o.exp, ek))?;
        }
    }
    put_with(txn, s.cdb.kv, ek, len, |b| {
        b[..CREC_HEAD].copy_from_slice(&exp.to_le_bytes());
        write_tail(&mut b[CREC_HEAD..], full, val);
    })?;
    if exp != 0 {
        txn.put(s.cdb.exp, &cexp_key(exp, ek), &[], NO_FLAGS)?;
    }
    store_used(txn, s, (used + new_fp).saturating_sub(old_fp))
}

fn check_value(val: &[u8]) -> Result<()> {
    if val.len() > CACHE_MAX_VALUE {
        return Err(StorageError::TooLarge);
    }
    Ok(())
}

pub(crate) fn put(
    txn: &mut RwTransaction<'_>,
    pass: &mut Pass,
    s: &Store,
    key: &[u8],
    val: &[u8],
    ttl: u32,
    now: u64,
) -> Result<()> {
    check_key(key)?;
    check_value(val)?;
    let ek = ekey(key);
    let old = old_for_write(txn, s, &ek, key, now, false)?;
    write_kv(txn, pass, s, &ek, key, old.as_ref(), expiry(ttl, now), val)
}

/// Reads a live string key; `f` extracts what the caller needs.
pub(crate) fn get<T: Transaction, R>(
    txn: &T,
    s: &Store,
    key: &[u8],
    now: u64,
    f: impl FnOnce(&CRec<'_>) -> R,
) -> Result<R> {
    check_key(key)?;
    let ek = ekey(key);
    let long = is_long(&ek);
    let v = get_opt(txn, s.cdb.kv, &ek)?.ok_or(StorageError::NotFound)?;
    let (r, full) = read_crec(v, long)?;
    if (long && full != Some(key)) || !live(r.exp, now) {
        return Err(StorageError::NotFound);
    }
    Ok(f(&r))
}

pub(crate) fn del(txn: &mut RwTransaction<'_>, s: &Store, key: &[u8], now: u64) -> Result<()> {
    check_key(key)?;
    let ek = ekey(key);
    let o = match old_for_write(txn, s, &ek, key, now, false) {
        Ok(Some(o)) if live(o.exp, now) => o,
        Ok(_) | Err(StorageError::Invalid(_)) => return Err(StorageError::NotFound),
        Err(e) => return Err(e),
    };
    remove_kv(txn, s, &ek, o.exp, o.stored)
}

fn remove_kv(
    txn: &mut RwTransaction<'_>,
    s: &Store,
    ek: &[u8],
    exp: u64,
    stored: usize,
) -> Result<()> {
    if exp != 0 {
        del_opt(txn, s.cdb.exp, &cexp_key(exp, ek))?;
    }
    txn.del(s.cdb.kv, &ek, None)?;
    let used = load_used(txn, s)?;
    let fp = cfp(s.croom.psize, ek.len(), stored, exp);
    store_used(txn, s, used.saturating_sub(fp))
}

/// `expire` (`exp` = new expiry) and `persist` (`exp` 0, and `NotFound` without an expiry).
#[allow(clippy::too_many_arguments)]
pub(crate) fn set_expiry(
    txn: &mut RwTransaction<'_>,
    pass: &mut Pass,
    s: &Store,
    key: &[u8],
    exp: u64,
    now: u64,
    persist: bool,
) -> Result<()> {
    check_key(key)?;
    let ek = ekey(key);
    let o = match old_for_write(txn, s, &ek, key, now, true) {
        Ok(Some(o)) if o.live.is_some() => o,
        Ok(_) | Err(StorageError::Invalid(_)) => return Err(StorageError::NotFound),
        Err(e) => return Err(e),
    };
    if persist && o.exp == 0 {
        return Err(StorageError::NotFound);
    }
    let val = o.live.clone().unwrap_or_default();
    write_kv(txn, pass, s, &ek, key, Some(&o), exp, &val)
}

pub(crate) fn append(
    txn: &mut RwTransaction<'_>,
    pass: &mut Pass,
    s: &Store,
    key: &[u8],
    val: &[u8],
    now: u64,
) -> Result<()> {
    check_key(key)?;
    let ek = ekey(key);
    let old = old_for_write(txn, s, &ek, key, now, true)?;
    let (exp, mut joined) = match &old {
        Some(COld {
            exp,
            live: Some(cur),
            ..
        }) => (*exp, cur.clone()),
        _ => (0, Vec::new()),
    };
    if joined.len() + val.len() > CACHE_MAX_VALUE {
        return Err(StorageError::TooLarge);
    }
    joined.extend_from_slice(val);
    write_kv(txn, pass, s, &ek, key, old.as_ref(), exp, &joined)
}

// ---- hash tables

fn ckey(tb: &str, key: &[u8]) -> Result<(Vec<u8>, bool)> {
    check_table(tb)?;
    check_key(key)?;
    let ek = ekey(key);
    Ok((member_key(tb.as_bytes(), &ek), is_long(&ek)))
}

/// Sets a field to what `f` makes of its current value (absent: `None`).
pub(crate) fn hset<'v>(
    txn: &mut RwTransaction<'_>,
    pass: &mut Pass,
    s: &Store,
    tb: &str,
    key: &[u8],
    f: impl FnOnce(Option<&[u8]>) -> Result<Cow<'v, [u8]>>,
) -> Result<()> {
    let (mkey, long) = ckey(tb, key)?;
    let (old_stored, new) = match get_opt(txn, s.cdb.hash, &mkey)? {
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
    let psize = s.croom.psize;
    let full = full_if_long(key);
    let len = tail_len(full, new.len());
    let new_fp = entry_fp(psize, mkey.len(), len);
    let old_fp = old_stored.map_or(0, |n| entry_fp(psize, mkey.len(), n));
    let used = load_used(txn, s)?;
    pass.charge(s.cache_env(), &s.croom, used, new_fp.saturating_sub(old_fp))?;
    put_with(txn, s.cdb.hash, &mkey, len, |b| write_tail(b, full, &new))?;
    store_used(txn, s, (used + new_fp).saturating_sub(old_fp))
}

pub(crate) fn hget<T: Transaction, R>(
    txn: &T,
    s: &Store,
    tb: &str,
    key: &[u8],
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    let (mkey, long) = ckey(tb, key)?;
    let v = get_opt(txn, s.cdb.hash, &mkey)?.ok_or(StorageError::NotFound)?;
    let t = read_tail(v, long)?;
    if long && t.full != Some(key) {
        return Err(StorageError::NotFound);
    }
    Ok(f(t.payload))
}

pub(crate) fn hdel(txn: &mut RwTransaction<'_>, s: &Store, tb: &str, key: &[u8]) -> Result<()> {
    let (mkey, long) = ckey(tb, key)?;
    let stored = {
        let v = get_opt(txn, s.cdb.hash, &mkey)?.ok_or(StorageError::NotFound)?;
        if long && read_tail(v, long)?.full != Some(key) {
            return Err(StorageError::NotFound);
        }
        v.len()
    };
    txn.del(s.cdb.hash, &mkey, None)?;
    let used = load_used(txn, s)?;
    store_used(
        txn,
        s,
        used.saturating_sub(entry_fp(s.croom.psize, mkey.len(), stored)),
    )
}

/// Removes up to `max` expired string keys, oldest first.
pub(crate) fn purge(txn: &mut RwTransaction<'_>, s: &Store, now: u64, max: usize) -> Result<usize> {
    let mut due = Vec::new();
    {
        let mut cur = txn.open_ro_cursor(s.cdb.exp)?;
        for item in cur.iter_start() {
            let (k, _) = item?;
            if due.len() >= max || u64_be_at(k, 0)? > now {
                break;
            }
            due.push(k.to_vec());
        }
    }
    let mut removed = 0;
    for k in &due {
        let exp = u64_be_at(k, 0)?;
        let ek = &k[8..];
        let stored = match get_opt(txn, s.cdb.kv, ek)? {
            Some(v) => {
                let (r, _) = read_crec(v, is_long(ek))?;
                (r.exp == exp).then_some(v.len())
            }
            None => None,
        };
        match stored {
            Some(n) => {
                remove_kv(txn, s, ek, exp, n)?;
                removed += 1;
            }
            // A stale index entry: the record was rewritten with another expiry.
            None => del_opt(txn, s.cdb.exp, k)?,
        }
    }
    Ok(removed)
}
