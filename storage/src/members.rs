//! Members of hash, set and sorted-set tables: reads, the member writes (`hset`, `hincrby`,
//! `sadd`, `zadd`) and deletes (`hdel`, `srem`, `zrem`). Each write keeps its table's meta and
//! the totals exact in its own transaction, and comes in two halves like the plain records'
//! (see `kv`): a read-only check deciding every refusal, then an [`Apply`].

use std::borrow::Cow;

use lmdb::{Cursor, RwTransaction, Transaction, WriteFlags};

use crate::codec::*;
use crate::env::{DataCtx, Dbs};
use crate::old::{old_of, same_key, score_of, to_delete, Old, COLLISION};
use crate::room::Pass;
use crate::tables::{
    count_alive_tables, live_table_of, load_meta, load_totals, save_meta, store_totals, table_alive,
};
use crate::txn::{del_opt, get_opt, put_with, Apply, Map, Wtx};
use crate::{Result, StorageError, TableType, Written, ZaddMode};

const NO_FLAGS: WriteFlags = WriteFlags::empty();

/// Reads a live member of a table of type `kind`; `f` extracts what the caller needs from the
/// payload while it is still borrowed from LMDB.
pub(crate) fn member_get<T: Transaction, R>(
    txn: &T,
    cx: &DataCtx<'_>,
    tb: &str,
    kind: TableType,
    key: &[u8],
    now: u64,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<(u32, R)> {
    check_table(tb)?;
    check_key(key)?;
    live_table_of(txn, cx, tb, kind, now)?;
    let tbb = tb.as_bytes();
    let ek = ekey(key);
    let long = is_long(&ek);
    let v = get_opt(txn, cx.db.mem, &member_key(tbb, &ek))?.ok_or(StorageError::NotFound)?;
    let rec = read_rec(v, long)?;
    if !same_key(&rec, long, key) || !live(rec.exp, now) {
        return Err(StorageError::NotFound);
    }
    Ok((rec.ver, f(rec.payload)))
}

fn member_old(
    txn: &RwTransaction<'_>,
    cx: &DataCtx<'_>,
    mkey: &[u8],
    ek: &[u8],
    key: &[u8],
    kind: TableType,
) -> Result<Option<Old>> {
    let long = is_long(ek);
    match get_opt(txn, cx.db.mem, mkey)? {
        None => Ok(None),
        Some(v) => {
            let rec = read_rec(v, long)?;
            if !same_key(&rec, long, key) {
                return Err(COLLISION);
            }
            Ok(Some(old_of(&rec, ek, v.len(), Some(kind))?))
        }
    }
}

/// A stored member's names: its table, its key in `mem` (`table 0x00 ekey`) and its ekey.
#[derive(Clone, Copy)]
pub(crate) struct MemberKey<'k> {
    pub tb: &'k [u8],
    pub mkey: &'k [u8],
    pub ek: &'k [u8],
}

/// Removes a member's index entries (not the member entry itself).
fn member_unindex(
    txn: &mut Wtx<'_, '_>,
    cx: &DataCtx<'_>,
    at: MemberKey<'_>,
    o: &Old,
    kind: TableType,
) -> Result<()> {
    if o.exp != 0 {
        del_opt(txn, cx.db.exp, &exp_key(o.exp, EXP_MEMBER, at.mkey))?;
    }
    if kind == TableType::SortedSet {
        del_opt(txn, cx.db.zidx, &zidx_key(at.tb, o.score, at.ek))?;
    }
    Ok(())
}

/// Takes a member out of its table's and the store's statistics.
fn member_account(cx: &DataCtx<'_>, mkey: &[u8], o: &Old, m: &mut TableMeta, tot: &mut Tot) {
    let bytes = (o.klen + o.plen) as u64;
    m.sub(bytes, o.exp);
    if m.kind == TableType::Hash {
        usage_sub(&mut tot.hash, bytes);
    }
    let fp = member_fp(cx.room.psize, m.kind, mkey.len(), o.stored, o.exp);
    tot.used = tot.used.saturating_sub(fp);
}

/// Removes a member's index entries and accounting (not the member entry itself).
pub(crate) fn member_unlink(
    txn: &mut Wtx<'_, '_>,
    cx: &DataCtx<'_>,
    at: MemberKey<'_>,
    o: &Old,
    m: &mut TableMeta,
    tot: &mut Tot,
) -> Result<()> {
    member_unindex(txn, cx, at, o, m.kind)?;
    member_account(cx, at.mkey, o, m, tot);
    Ok(())
}

/// The statistics of wiping a table (one whose members have all expired and whose name is
/// being reused with another type): every member and the meta leave `tot`. Reads only, so a
/// request refused later has changed nothing; [`wipe_members`] does the removal.
fn wipe_account<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    tb: &[u8],
    m: &TableMeta,
    tot: &mut Tot,
) -> Result<()> {
    let prefix = table_prefix(tb);
    let mut scratch = *m;
    let mut cur = txn.open_ro_cursor(cx.db.mem)?;
    for item in cur.iter_from(&prefix) {
        let (k, v) = item?;
        if !k.starts_with(&prefix) {
            break;
        }
        let ek = &k[prefix.len()..];
        let o = old_of(&read_rec(v, is_long(ek))?, ek, v.len(), Some(m.kind))?;
        member_account(cx, k, &o, &mut scratch, tot);
    }
    tot.tables = tot.tables.saturating_sub(1);
    tot.used = tot.used.saturating_sub(meta_fp(cx.room.psize, tb.len()));
    Ok(())
}

/// Removes every member of a table with its index entries, the statistics being already
/// counted by [`wipe_account`]. The meta entry stays: the caller rewrites it.
fn wipe_members(txn: &mut Wtx<'_, '_>, cx: &DataCtx<'_>, tb: &[u8], m: &TableMeta) -> Result<()> {
    let prefix = table_prefix(tb);
    loop {
        let mut chunk = Vec::new();
        {
            let mut cur = txn.open_ro_cursor(cx.db.mem)?;
            for item in cur.iter_from(&prefix) {
                let (k, v) = item?;
                if !k.starts_with(&prefix) || chunk.len() >= 256 {
                    break;
                }
                let ek = &k[prefix.len()..];
                let rec = read_rec(v, is_long(ek))?;
                chunk.push((k.to_vec(), old_of(&rec, ek, v.len(), Some(m.kind))?));
            }
        }
        if chunk.is_empty() {
            return Ok(());
        }
        for (mkey, o) in &chunk {
            let ek = &mkey[prefix.len()..];
            let at = MemberKey { tb, mkey, ek };
            member_unindex(txn, cx, at, o, m.kind)?;
            txn.del(cx.db.mem, mkey, None)?;
        }
    }
}

/// What a member write decided once it saw the live payload.
pub(crate) enum Plan<'v> {
    /// Nothing to change (`zadd` with the same score).
    Keep,
    Write(Cow<'v, [u8]>),
}

/// A checked member write (`hset`, `hincrby`, `sadd`, `zadd`): the version after it.
pub(crate) enum MemberPlan<'a, 'v> {
    /// Nothing changes; the current version.
    Keep(u32),
    Write(Box<MemberWrite<'a, 'v>>),
}

pub(crate) struct MemberWrite<'a, 'v> {
    tb: &'a [u8],
    kind: TableType,
    /// The table exists with another type and no live member: its members go first.
    wipe: Option<TableMeta>,
    /// The table's meta (`None`: created by this write).
    meta: Option<TableMeta>,
    /// Totals, already without a wiped table.
    tot: Tot,
    ek: Cow<'a, [u8]>,
    full: Option<&'a [u8]>,
    key_len: usize,
    mkey: Vec<u8>,
    /// The stored member, live or expired (removed here either way).
    old: Option<Old>,
    exp: u64,
    ver: u32,
    payload: Cow<'v, [u8]>,
    /// Sorted sets: the score in `payload`.
    score: i64,
}

/// The check of every member write. Checks in the order of kv-api §2.9: capacity (growing
/// writes, table limit), table type, version, value. `est_len` is the payload length charged
/// when `plan` fails (its error is reported last).
fn member_write<'a, 'v>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    cx: &DataCtx<'_>,
    req: MemberReq<'a>,
    kind: TableType,
    est_len: usize,
    plan: impl FnOnce(Option<&[u8]>) -> Result<Plan<'v>>,
) -> Result<MemberPlan<'a, 'v>> {
    let MemberReq {
        tb,
        key,
        exp,
        ver,
        now,
    } = req;
    check_table(tb)?;
    check_key(key)?;
    let tbb = tb.as_bytes();
    let psize = cx.room.psize;
    let mut tot = load_totals(txn, cx)?;
    let mut meta = load_meta(txn, cx, tbb)?;
    let mut conflict = false;
    let mut wipe = None;
    if let Some(m) = meta {
        if m.kind != kind {
            if table_alive(txn, cx, tbb, &m, now)? {
                conflict = true;
            } else {
                // Every member expired: the name is free, and the remains of the old type go
                // before the write (counted out of `tot` now, removed in `apply`).
                wipe_account(txn, cx, tbb, &m, &mut tot)?;
                wipe = Some(m);
                meta = None;
            }
        }
    }
    let old_kind = meta.map_or(kind, |m| m.kind);
    let ek = ekey(key);
    let full = full_if_long(key);
    let mkey = member_key(tbb, &ek);
    let old = match wipe {
        // The wipe removes the member too.
        Some(_) => None,
        None => member_old(txn, cx, &mkey, &ek, key, old_kind)?,
    };
    let old_live = old.filter(|o| live(o.exp, now) && !conflict);
    let planned = if old_live.is_some() {
        let v = get_opt(txn, cx.db.mem, &mkey)?.ok_or_else(corrupt)?;
        plan(Some(read_rec(v, is_long(&ek))?.payload))
    } else {
        plan(None)
    };

    // Capacity.
    let new_len = match &planned {
        Ok(Plan::Keep) => None,
        Ok(Plan::Write(p)) => Some(p.len()),
        Err(_) => Some(est_len),
    };
    if let Some(plen) = new_len {
        let mut new_fp = member_fp(psize, kind, mkey.len(), rec_len(full, plen), exp);
        if meta.is_none() {
            new_fp += meta_fp(psize, tbb.len());
        }
        let old_fp = old.map_or(0, |o| {
            member_fp(psize, old_kind, mkey.len(), o.stored, o.exp)
        });
        pass.charge(cx.env, cx.room, tot.used, new_fp.saturating_sub(old_fp))?;
        let others = tot.tables.saturating_sub(u64::from(meta.is_some()));
        if !conflict && others >= MAX_TABLES {
            let alive = match &meta {
                Some(m) => old_live.is_some() || table_alive(txn, cx, tbb, m, now)?,
                None => false,
            };
            if !alive && count_alive_tables(txn, cx, tbb, now)? >= MAX_TABLES {
                return Err(StorageError::MapFull);
            }
        }
    }
    if conflict {
        return Err(StorageError::WrongType);
    }
    let current = old_live.map_or(0, |o| o.ver);
    if ver != 0 && ver != current {
        return Err(StorageError::VersionMismatch { current });
    }
    let payload = match planned? {
        Plan::Keep => return Ok(MemberPlan::Keep(current)),
        Plan::Write(p) => p,
    };
    let score = match kind {
        TableType::SortedSet => score_of(&payload)?,
        _ => 0,
    };
    Ok(MemberPlan::Write(Box::new(MemberWrite {
        tb: tbb,
        kind,
        wipe,
        meta,
        tot,
        ek,
        full,
        key_len: key.len(),
        mkey,
        old,
        exp,
        ver: next_ver(current),
        payload,
        score,
    })))
}

impl Apply<Dbs> for MemberPlan<'_, '_> {
    type Out = u32;

    fn apply(self, txn: &mut Wtx<'_, '_>, cx: &DataCtx<'_>) -> Result<u32> {
        let w = match self {
            MemberPlan::Keep(ver) => return Ok(ver),
            MemberPlan::Write(w) => *w,
        };
        let MemberWrite {
            tb,
            kind,
            wipe,
            meta,
            mut tot,
            ek,
            full,
            key_len,
            mkey,
            old,
            exp,
            ver,
            payload,
            score,
        } = w;
        let psize = cx.room.psize;
        if let Some(m) = &wipe {
            wipe_members(txn, cx, tb, m)?;
        }
        let mut m = match meta {
            Some(m) => m,
            None => {
                tot.tables += 1;
                tot.used += meta_fp(psize, tb.len());
                TableMeta::new(kind)
            }
        };
        if let Some(o) = &old {
            let at = MemberKey {
                tb,
                mkey: &mkey,
                ek: &ek,
            };
            member_unlink(txn, cx, at, o, &mut m, &mut tot)?;
        }
        let len = rec_len(full, payload.len());
        put_with(txn, cx.db.mem, &mkey, len, |b| {
            write_rec(b, ver, exp, full, &payload)
        })?;
        if kind == TableType::SortedSet {
            let zkey = zidx_key(tb, score, &ek);
            put_with(txn, cx.db.zidx, &zkey, rec_len(full, 0), |b| {
                write_rec(b, ver, exp, full, &[])
            })?;
        }
        if exp != 0 {
            txn.put(cx.db.exp, &exp_key(exp, EXP_MEMBER, &mkey), &[], NO_FLAGS)?;
        }
        let bytes = (key_len + payload.len()) as u64;
        m.add(bytes, exp);
        if kind == TableType::Hash {
            usage_add(&mut tot.hash, bytes);
        }
        tot.used += member_fp(psize, kind, mkey.len(), len, exp);
        save_meta(txn, cx, tb, &m, &mut tot)?;
        store_totals(txn, cx, &tot)?;
        Ok(ver)
    }
}

/// Which member a write is about, and its conditions.
#[derive(Clone, Copy)]
pub(crate) struct MemberReq<'a> {
    pub tb: &'a str,
    pub key: &'a [u8],
    /// Absolute expiry of the member (unix ms); 0 = none, which removes an existing one.
    pub exp: u64,
    /// Expected version; 0 = any.
    pub ver: u32,
    pub now: u64,
}

pub(crate) fn hset<'a>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    cx: &DataCtx<'_>,
    req: MemberReq<'a>,
    val: &'a [u8],
) -> Result<impl Apply<Dbs, Out = Written> + 'a> {
    let plan = member_write(txn, pass, cx, req, TableType::Hash, val.len(), |_| {
        Ok(Plan::Write(Cow::Borrowed(val)))
    })?;
    Ok(Map(plan, |ver| Written { ver }))
}

/// Longest decimal i64 (`-9223372036854775808`), charged when the stored value is no number.
const I64_TEXT: usize = 20;

pub(crate) fn hincrby<'a>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    cx: &DataCtx<'_>,
    req: MemberReq<'a>,
    delta: i64,
) -> Result<impl Apply<Dbs, Out = (Written, i64)> + 'a> {
    let mut result = 0;
    let plan = member_write(txn, pass, cx, req, TableType::Hash, I64_TEXT, |old| {
        let cur = match old {
            Some(v) => parse_i64(v).ok_or(StorageError::NotNumeric)?,
            None => 0,
        };
        result = cur.checked_add(delta).ok_or(StorageError::NotNumeric)?;
        Ok(Plan::Write(Cow::Owned(result.to_string().into_bytes())))
    })?;
    Ok(Map(plan, move |ver| (Written { ver }, result)))
}

pub(crate) fn sadd<'a>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    cx: &DataCtx<'_>,
    req: MemberReq<'a>,
) -> Result<impl Apply<Dbs, Out = Written> + 'a> {
    let plan = member_write(txn, pass, cx, req, TableType::Set, 0, |_| {
        Ok(Plan::Write(Cow::Borrowed(&[])))
    })?;
    Ok(Map(plan, |ver| Written { ver }))
}

pub(crate) fn zadd<'a>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    cx: &DataCtx<'_>,
    req: MemberReq<'a>,
    score: i64,
    mode: ZaddMode,
) -> Result<impl Apply<Dbs, Out = (Written, i64)> + 'a> {
    let mut result = 0;
    let plan = member_write(txn, pass, cx, req, TableType::SortedSet, 8, |old| {
        let cur = old.map(score_of).transpose()?;
        let new = match mode {
            ZaddMode::Set => Some(score),
            ZaddMode::Add => cur.unwrap_or(0).checked_add(score),
            ZaddMode::Subtract => cur.unwrap_or(0).checked_sub(score),
        };
        result = new.ok_or(StorageError::NotNumeric)?;
        if mode == ZaddMode::Set && cur == Some(score) {
            return Ok(Plan::Keep);
        }
        Ok(Plan::Write(Cow::Owned(result.to_le_bytes().to_vec())))
    })?;
    Ok(Map(plan, move |ver| (Written { ver }, result)))
}

/// A checked member delete (`hdel`, `srem`, `zrem`).
pub(crate) struct MemberDel<'a> {
    tb: &'a [u8],
    ek: Cow<'a, [u8]>,
    mkey: Vec<u8>,
    old: Old,
    meta: TableMeta,
    tot: Tot,
}

pub(crate) fn member_del<'a>(
    txn: &RwTransaction<'_>,
    cx: &DataCtx<'_>,
    tb: &'a str,
    kind: TableType,
    key: &'a [u8],
    ver: u32,
    now: u64,
) -> Result<MemberDel<'a>> {
    check_table(tb)?;
    check_key(key)?;
    let tbb = tb.as_bytes();
    let meta = load_meta(txn, cx, tbb)?.ok_or(StorageError::NotFound)?;
    if meta.kind != kind {
        return Err(if table_alive(txn, cx, tbb, &meta, now)? {
            StorageError::WrongType
        } else {
            StorageError::NotFound
        });
    }
    let ek = ekey(key);
    let mkey = member_key(tbb, &ek);
    let old = to_delete(member_old(txn, cx, &mkey, &ek, key, kind), ver, now)?;
    let tot = load_totals(txn, cx)?;
    Ok(MemberDel {
        tb: tbb,
        ek,
        mkey,
        old,
        meta,
        tot,
    })
}

impl Apply<Dbs> for MemberDel<'_> {
    type Out = Written;

    fn apply(self, txn: &mut Wtx<'_, '_>, cx: &DataCtx<'_>) -> Result<Written> {
        let MemberDel {
            tb,
            ek,
            mkey,
            old,
            mut meta,
            mut tot,
        } = self;
        let at = MemberKey {
            tb,
            mkey: &mkey,
            ek: &ek,
        };
        member_unlink(txn, cx, at, &old, &mut meta, &mut tot)?;
        txn.del(cx.db.mem, &mkey, None)?;
        save_meta(txn, cx, tb, &meta, &mut tot)?;
        store_totals(txn, cx, &tot)?;
        Ok(Written { ver: old.ver })
    }
}
