//! Plain kv records: reads, `put` and `del`. Every write comes in two halves (see `pass_env`): a
//! check that reads only (`&RwTransaction`) and returns every refusal, then an [`Apply`] that
//! makes the changes (the totals included) and fails only when LMDB does. So an expired record
//! a write replaces is removed in the second half, after the version and the room have been
//! checked.

use std::borrow::Cow;

use lmdb::{RwTransaction, Transaction, WriteFlags};

use crate::codec::*;
use crate::env::{DataCtx, Dbs};
use crate::old::{old_of, same_key, to_delete, Old, COLLISION};
use crate::room::Pass;
use crate::tables::{load_totals, store_totals};
use crate::txn::{del_opt, get_opt, put_with, Apply, Wtx};
use crate::{Record, Result, StorageError, Written};

const NO_FLAGS: WriteFlags = WriteFlags::empty();

fn kv_lookup<'t, T: Transaction>(
    txn: &'t T,
    cx: &DataCtx<'_>,
    key: &[u8],
    now: u64,
) -> Result<Rec<'t>> {
    check_key(key)?;
    let ek = ekey(key);
    let long = is_long(&ek);
    let v = get_opt(txn, cx.db.kv, &ek)?.ok_or(StorageError::NotFound)?;
    let rec = read_rec(v, long)?;
    if !same_key(&rec, long, key) || !live(rec.exp, now) {
        return Err(StorageError::NotFound);
    }
    Ok(rec)
}

pub(crate) fn kv_get<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    key: &[u8],
    now: u64,
) -> Result<Record> {
    let (ver, value) = kv_get_ref(txn, cx, key, now)?;
    Ok(Record {
        ver,
        value: value.to_vec(),
    })
}

/// The live value of `key` and its version, as a slice of `txn`'s pages.
pub(crate) fn kv_get_ref<'t, T: Transaction>(
    txn: &'t T,
    cx: &DataCtx<'_>,
    key: &[u8],
    now: u64,
) -> Result<(u32, &'t [u8])> {
    let rec = kv_lookup(txn, cx, key, now)?;
    Ok((rec.ver, rec.payload))
}

pub(crate) fn kv_exist<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    key: &[u8],
    now: u64,
) -> Result<u32> {
    Ok(kv_lookup(txn, cx, key, now)?.ver)
}

fn kv_old(txn: &RwTransaction<'_>, cx: &DataCtx<'_>, ek: &[u8], key: &[u8]) -> Result<Option<Old>> {
    let long = is_long(ek);
    match get_opt(txn, cx.db.kv, ek)? {
        None => Ok(None),
        Some(v) => {
            let rec = read_rec(v, long)?;
            if !same_key(&rec, long, key) {
                return Err(COLLISION);
            }
            Ok(Some(old_of(&rec, ek, v.len(), None)?))
        }
    }
}

/// Removes a kv record's index entry and accounting (not the record itself).
pub(crate) fn kv_unlink(
    txn: &mut Wtx<'_, '_>,
    cx: &DataCtx<'_>,
    ek: &[u8],
    o: &Old,
    tot: &mut Tot,
) -> Result<()> {
    if o.exp != 0 {
        del_opt(txn, cx.db.exp, &exp_key(o.exp, EXP_KV, ek))?;
    }
    usage_sub(&mut tot.kv, (o.klen + o.plen) as u64);
    tot.used = tot
        .used
        .saturating_sub(kv_fp(cx.room.psize, ek.len(), o.stored, o.exp));
    Ok(())
}

/// A checked `kv_put`: replaces (or creates) the record.
pub(crate) struct KvPut<'a> {
    ek: Cow<'a, [u8]>,
    full: Option<&'a [u8]>,
    key_len: usize,
    val: &'a [u8],
    /// The stored record, live or expired (removed here either way).
    old: Option<Old>,
    exp: u64,
    len: usize,
    ver: u32,
    new_fp: u64,
    tot: Tot,
}

/// A `put` as its check gets it.
#[derive(Clone, Copy)]
pub(crate) struct Put<'a> {
    pub key: &'a [u8],
    pub val: &'a [u8],
    /// Absolute expiry (unix ms); 0 = none, which removes an existing one.
    pub exp: u64,
    /// Expected version; 0 = any.
    pub ver: u32,
    pub now: u64,
}

pub(crate) fn kv_put<'a>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    cx: &DataCtx<'_>,
    put: Put<'a>,
) -> Result<KvPut<'a>> {
    let Put {
        key,
        val,
        exp,
        ver,
        now,
    } = put;
    check_key(key)?;
    let ek = ekey(key);
    let full = full_if_long(key);
    let tot = load_totals(txn, cx)?;
    let old = kv_old(txn, cx, &ek, key)?;
    let len = rec_len(full, val.len());
    let psize = cx.room.psize;
    let new_fp = kv_fp(psize, ek.len(), len, exp);
    let old_fp = old.map_or(0, |o| kv_fp(psize, ek.len(), o.stored, o.exp));
    pass.charge(cx.env, cx.room, tot.used, new_fp.saturating_sub(old_fp))?;
    let current = old.filter(|o| live(o.exp, now)).map_or(0, |o| o.ver);
    if ver != 0 && ver != current {
        return Err(StorageError::VersionMismatch { current });
    }
    Ok(KvPut {
        ek,
        full,
        key_len: key.len(),
        val,
        old,
        exp,
        len,
        ver: next_ver(current),
        new_fp,
        tot,
    })
}

impl Apply<Dbs> for KvPut<'_> {
    type Out = Written;

    fn apply(self, txn: &mut Wtx<'_, '_>, cx: &DataCtx<'_>) -> Result<Written> {
        let KvPut {
            ek,
            full,
            key_len,
            val,
            old,
            exp,
            len,
            ver,
            new_fp,
            mut tot,
        } = self;
        if let Some(o) = &old {
            kv_unlink(txn, cx, &ek, o, &mut tot)?;
        }
        put_with(txn, cx.db.kv, &ek, len, |b| {
            write_rec(b, ver, exp, full, val)
        })?;
        if exp != 0 {
            txn.put(cx.db.exp, &exp_key(exp, EXP_KV, &ek), &[], NO_FLAGS)?;
        }
        usage_add(&mut tot.kv, (key_len + val.len()) as u64);
        tot.used += new_fp;
        store_totals(txn, cx, &tot)?;
        Ok(Written { ver })
    }
}

/// A checked `kv_del`.
pub(crate) struct KvDel<'a> {
    ek: Cow<'a, [u8]>,
    old: Old,
    tot: Tot,
}

pub(crate) fn kv_del<'a>(
    txn: &RwTransaction<'_>,
    cx: &DataCtx<'_>,
    key: &'a [u8],
    ver: u32,
    now: u64,
) -> Result<KvDel<'a>> {
    check_key(key)?;
    let ek = ekey(key);
    let old = to_delete(kv_old(txn, cx, &ek, key), ver, now)?;
    let tot = load_totals(txn, cx)?;
    Ok(KvDel { ek, old, tot })
}

impl Apply<Dbs> for KvDel<'_> {
    type Out = Written;

    fn apply(self, txn: &mut Wtx<'_, '_>, cx: &DataCtx<'_>) -> Result<Written> {
        let KvDel { ek, old, mut tot } = self;
        kv_unlink(txn, cx, &ek, &old, &mut tot)?;
        txn.del(cx.db.kv, &ek, None)?;
        store_totals(txn, cx, &tot)?;
        Ok(Written { ver: old.ver })
    }
}
