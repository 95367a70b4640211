//! The persistent store's operations: plain kv records, table members, table metas, totals,
//! expiry. Every write updates the statistics in its own transaction, so counters stay exact
//! across worker processes, and comes in two halves (see `store`): a check that reads only
//! (`&RwTransaction`) and returns every refusal, then an [`Apply`] that makes the changes and
//! fails only when LMDB does. So an expired record a write replaces is removed in the second
//! half, after the version and the room have been checked.

use std::borrow::Cow;
use std::collections::BTreeMap;

use lmdb::{Cursor, Database, RwTransaction, Transaction, WriteFlags};

use crate::codec::{self, *};
use crate::store::{Apply, Map, Pass, Store, Wtx};
use crate::{Record, Result, StorageError, TableStat, TableType, Written, ZaddMode};

const NO_FLAGS: WriteFlags = WriteFlags::empty();

/// A lookup where absence is an answer, not an error.
pub(crate) fn get_opt<'t, T: Transaction>(
    txn: &'t T,
    db: Database,
    key: &[u8],
) -> Result<Option<&'t [u8]>> {
    match txn.get(db, &key) {
        Ok(v) => Ok(Some(v)),
        Err(lmdb::Error::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A delete where absence is fine (index entries of a record being replaced).
pub(crate) fn del_opt(txn: &mut Wtx<'_, '_>, db: Database, key: &[u8]) -> Result<()> {
    match txn.del(db, &key, None) {
        Ok(()) | Err(lmdb::Error::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Writes a value of `len` bytes filled by `fill` straight into LMDB's page (one copy of large
/// values instead of two).
pub(crate) fn put_with(
    txn: &mut Wtx<'_, '_>,
    db: Database,
    key: &[u8],
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Result<()> {
    Ok(txn.put_with(db, key, len, fill)?)
}

pub(crate) fn load_totals<T: Transaction>(txn: &T, s: &Store) -> Result<Tot> {
    match get_opt(txn, s.db.meta, TOTALS_KEY)? {
        Some(v) => Tot::decode(v),
        None => Ok(Tot::default()),
    }
}

fn store_totals(txn: &mut Wtx<'_, '_>, s: &Store, t: &Tot) -> Result<()> {
    Ok(txn.put(s.db.meta, &TOTALS_KEY, &t.encode(), NO_FLAGS)?)
}

pub(crate) fn load_meta<T: Transaction>(
    txn: &T,
    s: &Store,
    tb: &[u8],
) -> Result<Option<TableMeta>> {
    get_opt(txn, s.db.tbl, tb)?
        .map(TableMeta::decode)
        .transpose()
}

/// Stores a table's meta, or removes the table once its last member is gone.
fn save_meta(
    txn: &mut Wtx<'_, '_>,
    s: &Store,
    tb: &[u8],
    m: &TableMeta,
    tot: &mut Tot,
) -> Result<()> {
    if m.count == 0 {
        del_opt(txn, s.db.tbl, tb)?;
        tot.tables = tot.tables.saturating_sub(1);
        tot.used = tot.used.saturating_sub(meta_fp(s.room.psize, tb.len()));
        Ok(())
    } else {
        Ok(txn.put(s.db.tbl, &tb, &m.encode(), NO_FLAGS)?)
    }
}

/// Whether the table has a live member. Exact at once, without a scan in the usual cases: a
/// member without expiry keeps it alive, and past `max_exp` every member has expired; only in
/// between are members read until a live one shows up.
pub(crate) fn table_alive<T: Transaction>(
    txn: &T,
    s: &Store,
    tb: &[u8],
    m: &TableMeta,
    now: u64,
) -> Result<bool> {
    if m.count == 0 {
        return Ok(false);
    }
    if m.permanent > 0 {
        return Ok(true);
    }
    if now >= m.max_exp {
        return Ok(false);
    }
    let prefix = table_prefix(tb);
    let mut cur = txn.open_ro_cursor(s.db.mem)?;
    for item in cur.iter_from(&prefix) {
        let (k, v) = item?;
        if !k.starts_with(&prefix) {
            break;
        }
        if live(u64_at(v, 4)?, now) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Live tables other than `except`, for the table limit (only read when the metas alone are at
/// the limit, so expired tables not yet purged do not block new ones).
fn count_alive_tables<T: Transaction>(txn: &T, s: &Store, except: &[u8], now: u64) -> Result<u64> {
    let mut n = 0;
    let mut cur = txn.open_ro_cursor(s.db.tbl)?;
    for item in cur.iter_start() {
        let (k, v) = item?;
        if k != except && table_alive(txn, s, k, &TableMeta::decode(v)?, now)? {
            n += 1;
        }
    }
    Ok(n)
}

/// Whether the first entry of an expiry index (`exp` or `cexp`) is due.
pub(crate) fn has_expired<T: Transaction>(txn: &T, db: Database, now: u64) -> Result<bool> {
    let mut cur = txn.open_ro_cursor(db)?;
    match cur.iter_start().next() {
        Some(item) => Ok(u64_be_at(item?.0, 0)? <= now),
        None => Ok(false),
    }
}

/// `has_expired` turned around: no record anywhere is expired and still counted, so the
/// statistics are exact right now.
pub(crate) fn counts_exact<T: Transaction>(txn: &T, s: &Store, now: u64) -> Result<bool> {
    Ok(!has_expired(txn, s.db.exp, now)?)
}

// ---- plain kv

/// What replacing or removing a stored record needs to know about it.
#[derive(Clone, Copy)]
struct Old {
    ver: u32,
    exp: u64,
    /// Stored value length.
    stored: usize,
    /// Real key length and payload length (statistics).
    klen: usize,
    plen: usize,
    /// Sorted-set score (members of `Z` tables).
    score: i64,
}

fn old_of(rec: &Rec<'_>, ek: &[u8], stored: usize, kind: Option<TableType>) -> Result<Old> {
    let score = if kind == Some(TableType::SortedSet) {
        score_of(rec.payload)?
    } else {
        0
    };
    Ok(Old {
        ver: rec.ver,
        exp: rec.exp,
        stored,
        klen: rec.key(ek).len(),
        plen: rec.payload.len(),
        score,
    })
}

/// A sorted-set member's payload: its score, i64 little-endian.
pub(crate) fn score_of(payload: &[u8]) -> Result<i64> {
    Ok(u64_at(payload, 0)? as i64)
}

/// A long key's stored full key must be the key asked for (else two keys share a 128-bit hash).
fn same_key(rec: &Rec<'_>, long: bool, key: &[u8]) -> bool {
    !long || rec.full == Some(key)
}

const COLLISION: StorageError = StorageError::Invalid("key hash collision");

fn kv_lookup<'t, T: Transaction>(txn: &'t T, s: &Store, key: &[u8], now: u64) -> Result<Rec<'t>> {
    check_key(key)?;
    let ek = ekey(key);
    let long = is_long(&ek);
    let v = get_opt(txn, s.db.kv, &ek)?.ok_or(StorageError::NotFound)?;
    let rec = read_rec(v, long)?;
    if !same_key(&rec, long, key) || !live(rec.exp, now) {
        return Err(StorageError::NotFound);
    }
    Ok(rec)
}

pub(crate) fn kv_get<T: Transaction>(txn: &T, s: &Store, key: &[u8], now: u64) -> Result<Record> {
    let (ver, value) = kv_get_ref(txn, s, key, now)?;
    Ok(Record {
        ver,
        value: value.to_vec(),
    })
}

/// The live value of `key` and its version, as a slice of `txn`'s pages.
pub(crate) fn kv_get_ref<'t, T: Transaction>(
    txn: &'t T,
    s: &Store,
    key: &[u8],
    now: u64,
) -> Result<(u32, &'t [u8])> {
    let rec = kv_lookup(txn, s, key, now)?;
    Ok((rec.ver, rec.payload))
}

pub(crate) fn kv_exist<T: Transaction>(txn: &T, s: &Store, key: &[u8], now: u64) -> Result<u32> {
    Ok(kv_lookup(txn, s, key, now)?.ver)
}

fn kv_old(txn: &RwTransaction<'_>, s: &Store, ek: &[u8], key: &[u8]) -> Result<Option<Old>> {
    let long = is_long(ek);
    match get_opt(txn, s.db.kv, ek)? {
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
fn kv_unlink(txn: &mut Wtx<'_, '_>, s: &Store, ek: &[u8], o: &Old, tot: &mut Tot) -> Result<()> {
    if o.exp != 0 {
        del_opt(txn, s.db.exp, &exp_key(o.exp, EXP_KV, ek))?;
    }
    usage_sub(&mut tot.kv, (o.klen + o.plen) as u64);
    tot.used = tot
        .used
        .saturating_sub(kv_fp(s.room.psize, ek.len(), o.stored, o.exp));
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

#[allow(clippy::too_many_arguments)]
pub(crate) fn kv_put<'a>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    s: &Store,
    key: &'a [u8],
    val: &'a [u8],
    ttl: u32,
    ver: u32,
    now: u64,
) -> Result<KvPut<'a>> {
    check_key(key)?;
    let ek = ekey(key);
    let full = full_if_long(key);
    let tot = load_totals(txn, s)?;
    let old = kv_old(txn, s, &ek, key)?;
    let exp = expiry(ttl, now);
    let len = rec_len(full, val.len());
    let psize = s.room.psize;
    let new_fp = kv_fp(psize, ek.len(), len, exp);
    let old_fp = old.map_or(0, |o| kv_fp(psize, ek.len(), o.stored, o.exp));
    pass.charge(s.env(), &s.room, tot.used, new_fp.saturating_sub(old_fp))?;
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

impl Apply for KvPut<'_> {
    type Out = Written;

    fn apply(self, txn: &mut Wtx<'_, '_>, s: &Store) -> Result<Written> {
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
            kv_unlink(txn, s, &ek, o, &mut tot)?;
        }
        put_with(txn, s.db.kv, &ek, len, |b| {
            write_rec(b, ver, exp, full, val)
        })?;
        if exp != 0 {
            txn.put(s.db.exp, &exp_key(exp, EXP_KV, &ek), &[], NO_FLAGS)?;
        }
        usage_add(&mut tot.kv, (key_len + val.len()) as u64);
        tot.used += new_fp;
        store_totals(txn, s, &tot)?;
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
    s: &Store,
    key: &'a [u8],
    ver: u32,
    now: u64,
) -> Result<KvDel<'a>> {
    check_key(key)?;
    let ek = ekey(key);
    let old = match kv_old(txn, s, &ek, key) {
        Ok(Some(o)) if live(o.exp, now) => o,
        Ok(_) | Err(StorageError::Invalid(_)) => return Err(StorageError::NotFound),
        Err(e) => return Err(e),
    };
    if ver != 0 && ver != old.ver {
        return Err(StorageError::VersionMismatch { current: old.ver });
    }
    let tot = load_totals(txn, s)?;
    Ok(KvDel { ek, old, tot })
}

impl Apply for KvDel<'_> {
    type Out = Written;

    fn apply(self, txn: &mut Wtx<'_, '_>, s: &Store) -> Result<Written> {
        let KvDel { ek, old, mut tot } = self;
        kv_unlink(txn, s, &ek, &old, &mut tot)?;
        txn.del(s.db.kv, &ek, None)?;
        store_totals(txn, s, &tot)?;
        Ok(Written { ver: old.ver })
    }
}

// ---- table members

/// The meta of `tb` when it is a live table of type `kind`: `WrongType` when a live table of
/// another type has the name, `NotFound` when no live table does.
pub(crate) fn live_table_of<T: Transaction>(
    txn: &T,
    s: &Store,
    tb: &str,
    kind: TableType,
    now: u64,
) -> Result<TableMeta> {
    check_table(tb)?;
    let tbb = tb.as_bytes();
    let m = load_meta(txn, s, tbb)?.ok_or(StorageError::NotFound)?;
    if m.kind != kind {
        return Err(if table_alive(txn, s, tbb, &m, now)? {
            StorageError::WrongType
        } else {
            StorageError::NotFound
        });
    }
    Ok(m)
}

/// Reads a live member of a table of type `kind`; `f` extracts what the caller needs from the
/// payload while it is still borrowed from LMDB.
pub(crate) fn member_get<T: Transaction, R>(
    txn: &T,
    s: &Store,
    tb: &str,
    kind: TableType,
    key: &[u8],
    now: u64,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<(u32, R)> {
    check_table(tb)?;
    check_key(key)?;
    live_table_of(txn, s, tb, kind, now)?;
    let tbb = tb.as_bytes();
    let ek = ekey(key);
    let long = is_long(&ek);
    let v = get_opt(txn, s.db.mem, &member_key(tbb, &ek))?.ok_or(StorageError::NotFound)?;
    let rec = read_rec(v, long)?;
    if !same_key(&rec, long, key) || !live(rec.exp, now) {
        return Err(StorageError::NotFound);
    }
    Ok((rec.ver, f(rec.payload)))
}

fn member_old(
    txn: &RwTransaction<'_>,
    s: &Store,
    mkey: &[u8],
    ek: &[u8],
    key: &[u8],
    kind: TableType,
) -> Result<Option<Old>> {
    let long = is_long(ek);
    match get_opt(txn, s.db.mem, mkey)? {
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

/// Removes a member's index entries (not the member entry itself).
fn member_unindex(
    txn: &mut Wtx<'_, '_>,
    s: &Store,
    tb: &[u8],
    mkey: &[u8],
    ek: &[u8],
    o: &Old,
    kind: TableType,
) -> Result<()> {
    if o.exp != 0 {
        del_opt(txn, s.db.exp, &exp_key(o.exp, EXP_MEMBER, mkey))?;
    }
    if kind == TableType::SortedSet {
        del_opt(txn, s.db.zidx, &zidx_key(tb, o.score, ek))?;
    }
    Ok(())
}

/// Takes a member out of its table's and the store's statistics.
fn member_account(s: &Store, mkey: &[u8], o: &Old, m: &mut TableMeta, tot: &mut Tot) {
    let bytes = (o.klen + o.plen) as u64;
    m.sub(bytes, o.exp);
    if m.kind == TableType::Hash {
        usage_sub(&mut tot.hash, bytes);
    }
    let fp = member_fp(s.room.psize, m.kind, mkey.len(), o.stored, o.exp);
    tot.used = tot.used.saturating_sub(fp);
}

/// Removes a member's index entries and accounting (not the member entry itself).
#[allow(clippy::too_many_arguments)]
fn member_unlink(
    txn: &mut Wtx<'_, '_>,
    s: &Store,
    tb: &[u8],
    mkey: &[u8],
    ek: &[u8],
    o: &Old,
    m: &mut TableMeta,
    tot: &mut Tot,
) -> Result<()> {
    member_unindex(txn, s, tb, mkey, ek, o, m.kind)?;
    member_account(s, mkey, o, m, tot);
    Ok(())
}

/// The statistics of wiping a table (one whose members have all expired and whose name is
/// being reused with another type): every member and the meta leave `tot`. Reads only, so a
/// request refused later has changed nothing; [`wipe_members`] does the removal.
fn wipe_account<T: Transaction>(
    txn: &T,
    s: &Store,
    tb: &[u8],
    m: &TableMeta,
    tot: &mut Tot,
) -> Result<()> {
    let prefix = table_prefix(tb);
    let mut scratch = *m;
    let mut cur = txn.open_ro_cursor(s.db.mem)?;
    for item in cur.iter_from(&prefix) {
        let (k, v) = item?;
        if !k.starts_with(&prefix) {
            break;
        }
        let ek = &k[prefix.len()..];
        let o = old_of(&read_rec(v, is_long(ek))?, ek, v.len(), Some(m.kind))?;
        member_account(s, k, &o, &mut scratch, tot);
    }
    tot.tables = tot.tables.saturating_sub(1);
    tot.used = tot.used.saturating_sub(meta_fp(s.room.psize, tb.len()));
    Ok(())
}

/// Removes every member of a table with its index entries, the statistics being already
/// counted by [`wipe_account`]. The meta entry stays: the caller rewrites it.
fn wipe_members(txn: &mut Wtx<'_, '_>, s: &Store, tb: &[u8], m: &TableMeta) -> Result<()> {
    let prefix = table_prefix(tb);
    loop {
        let mut chunk = Vec::new();
        {
            let mut cur = txn.open_ro_cursor(s.db.mem)?;
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
            member_unindex(txn, s, tb, mkey, ek, o, m.kind)?;
            txn.del(s.db.mem, mkey, None)?;
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
#[allow(clippy::too_many_arguments)]
fn member_write<'a, 'v>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    s: &Store,
    tb: &'a str,
    kind: TableType,
    key: &'a [u8],
    ttl: u32,
    ver: u32,
    now: u64,
    est_len: usize,
    plan: impl FnOnce(Option<&[u8]>) -> Result<Plan<'v>>,
) -> Result<MemberPlan<'a, 'v>> {
    check_table(tb)?;
    check_key(key)?;
    let tbb = tb.as_bytes();
    let psize = s.room.psize;
    let mut tot = load_totals(txn, s)?;
    let mut meta = load_meta(txn, s, tbb)?;
    let mut conflict = false;
    let mut wipe = None;
    if let Some(m) = meta {
        if m.kind != kind {
            if table_alive(txn, s, tbb, &m, now)? {
                conflict = true;
            } else {
                // Every member expired: the name is free, and the remains of the old type go
                // before the write (counted out of `tot` now, removed in `apply`).
                wipe_account(txn, s, tbb, &m, &mut tot)?;
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
        None => member_old(txn, s, &mkey, &ek, key, old_kind)?,
    };
    let old_live = old.filter(|o| live(o.exp, now) && !conflict);
    let planned = if old_live.is_some() {
        let v = get_opt(txn, s.db.mem, &mkey)?.ok_or_else(corrupt)?;
        plan(Some(read_rec(v, is_long(&ek))?.payload))
    } else {
        plan(None)
    };
    let exp = expiry(ttl, now);

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
        pass.charge(s.env(), &s.room, tot.used, new_fp.saturating_sub(old_fp))?;
        let others = tot.tables.saturating_sub(u64::from(meta.is_some()));
        if !conflict && others >= MAX_TABLES {
            let alive = match &meta {
                Some(m) => old_live.is_some() || table_alive(txn, s, tbb, m, now)?,
                None => false,
            };
            if !alive && count_alive_tables(txn, s, tbb, now)? >= MAX_TABLES {
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

impl Apply for MemberPlan<'_, '_> {
    type Out = u32;

    fn apply(self, txn: &mut Wtx<'_, '_>, s: &Store) -> Result<u32> {
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
        let psize = s.room.psize;
        if let Some(m) = &wipe {
            wipe_members(txn, s, tb, m)?;
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
            member_unlink(txn, s, tb, &mkey, &ek, o, &mut m, &mut tot)?;
        }
        let len = rec_len(full, payload.len());
        put_with(txn, s.db.mem, &mkey, len, |b| {
            write_rec(b, ver, exp, full, &payload)
        })?;
        if kind == TableType::SortedSet {
            let zkey = zidx_key(tb, score, &ek);
            put_with(txn, s.db.zidx, &zkey, rec_len(full, 0), |b| {
                write_rec(b, ver, exp, full, &[])
            })?;
        }
        if exp != 0 {
            txn.put(s.db.exp, &exp_key(exp, EXP_MEMBER, &mkey), &[], NO_FLAGS)?;
        }
        let bytes = (key_len + payload.len()) as u64;
        m.add(bytes, exp);
        if kind == TableType::Hash {
            usage_add(&mut tot.hash, bytes);
        }
        tot.used += member_fp(psize, kind, mkey.len(), len, exp);
        save_meta(txn, s, tb, &m, &mut tot)?;
        store_totals(txn, s, &tot)?;
        Ok(ver)
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn hset<'a>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    s: &Store,
    tb: &'a str,
    key: &'a [u8],
    val: &'a [u8],
    ttl: u32,
    ver: u32,
    now: u64,
) -> Result<impl Apply<Out = Written> + 'a> {
    let plan = member_write(
        txn,
        pass,
        s,
        tb,
        TableType::Hash,
        key,
        ttl,
        ver,
        now,
        val.len(),
        |_| Ok(Plan::Write(Cow::Borrowed(val))),
    )?;
    Ok(Map(plan, |ver| Written { ver }))
}

/// Longest decimal i64 (`-9223372036854775808`), charged when the stored value is no number.
const I64_TEXT: usize = 20;

#[allow(clippy::too_many_arguments)]
pub(crate) fn hincrby<'a>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    s: &Store,
    tb: &'a str,
    key: &'a [u8],
    delta: i64,
    ttl: u32,
    ver: u32,
    now: u64,
) -> Result<impl Apply<Out = (Written, i64)> + 'a> {
    let mut result = 0;
    let plan = member_write(
        txn,
        pass,
        s,
        tb,
        TableType::Hash,
        key,
        ttl,
        ver,
        now,
        I64_TEXT,
        |old| {
            let cur = match old {
                Some(v) => parse_i64(v).ok_or(StorageError::NotNumeric)?,
                None => 0,
            };
            result = cur.checked_add(delta).ok_or(StorageError::NotNumeric)?;
            Ok(Plan::Write(Cow::Owned(result.to_string().into_bytes())))
        },
    )?;
    Ok(Map(plan, move |ver| (Written { ver }, result)))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn sadd<'a>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    s: &Store,
    tb: &'a str,
    member: &'a [u8],
    ttl: u32,
    ver: u32,
    now: u64,
) -> Result<impl Apply<Out = Written> + 'a> {
    let plan = member_write(
        txn,
        pass,
        s,
        tb,
        TableType::Set,
        member,
        ttl,
        ver,
        now,
        0,
        |_| Ok(Plan::Write(Cow::Borrowed(&[]))),
    )?;
    Ok(Map(plan, |ver| Written { ver }))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn zadd<'a>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    s: &Store,
    tb: &'a str,
    member: &'a [u8],
    score: i64,
    mode: ZaddMode,
    ttl: u32,
    ver: u32,
    now: u64,
) -> Result<impl Apply<Out = (Written, i64)> + 'a> {
    let mut result = 0;
    let plan = member_write(
        txn,
        pass,
        s,
        tb,
        TableType::SortedSet,
        member,
        ttl,
        ver,
        now,
        8,
        |old| {
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
        },
    )?;
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
    s: &Store,
    tb: &'a str,
    kind: TableType,
    key: &'a [u8],
    ver: u32,
    now: u64,
) -> Result<MemberDel<'a>> {
    check_table(tb)?;
    check_key(key)?;
    let tbb = tb.as_bytes();
    let meta = load_meta(txn, s, tbb)?.ok_or(StorageError::NotFound)?;
    if meta.kind != kind {
        return Err(if table_alive(txn, s, tbb, &meta, now)? {
            StorageError::WrongType
        } else {
            StorageError::NotFound
        });
    }
    let ek = ekey(key);
    let mkey = member_key(tbb, &ek);
    let old = match member_old(txn, s, &mkey, &ek, key, kind) {
        Ok(Some(o)) if live(o.exp, now) => o,
        Ok(_) | Err(StorageError::Invalid(_)) => return Err(StorageError::NotFound),
        Err(e) => return Err(e),
    };
    if ver != 0 && ver != old.ver {
        return Err(StorageError::VersionMismatch { current: old.ver });
    }
    let tot = load_totals(txn, s)?;
    Ok(MemberDel {
        tb: tbb,
        ek,
        mkey,
        old,
        meta,
        tot,
    })
}

impl Apply for MemberDel<'_> {
    type Out = Written;

    fn apply(self, txn: &mut Wtx<'_, '_>, s: &Store) -> Result<Written> {
        let MemberDel {
            tb,
            ek,
            mkey,
            old,
            mut meta,
            mut tot,
        } = self;
        member_unlink(txn, s, tb, &mkey, &ek, &old, &mut meta, &mut tot)?;
        txn.del(s.db.mem, &mkey, None)?;
        save_meta(txn, s, tb, &meta, &mut tot)?;
        store_totals(txn, s, &tot)?;
        Ok(Written { ver: old.ver })
    }
}

// ---- statistics

fn stat_of(tb: &[u8], m: &TableMeta) -> TableStat {
    TableStat {
        name: String::from_utf8_lossy(tb).into_owned(),
        kind: m.kind,
        usage: m.usage(),
    }
}

pub(crate) fn table_stat<T: Transaction>(
    txn: &T,
    s: &Store,
    tb: &str,
    now: u64,
) -> Result<TableStat> {
    check_table(tb)?;
    let tbb = tb.as_bytes();
    let m = load_meta(txn, s, tbb)?.ok_or(StorageError::NotFound)?;
    if !table_alive(txn, s, tbb, &m, now)? {
        return Err(StorageError::NotFound);
    }
    Ok(stat_of(tbb, &m))
}

pub(crate) fn all_tables<T: Transaction>(txn: &T, s: &Store, now: u64) -> Result<Vec<TableStat>> {
    let mut out = Vec::new();
    let mut cur = txn.open_ro_cursor(s.db.tbl)?;
    for item in cur.iter_start() {
        let (k, v) = item?;
        let m = TableMeta::decode(v)?;
        if table_alive(txn, s, k, &m, now)? {
            out.push(stat_of(k, &m));
        }
    }
    Ok(out)
}

// ---- expiry

/// What goes with one due entry of `exp`.
enum Gone {
    /// Only the index entry: its record is gone or was rewritten with another expiry.
    Index,
    Kv(Old),
    /// A member; `usize` is the length of the table name at the start of the reference.
    Member(Old, usize),
}

/// Up to `max` entries of an expiry index (keys start with the big-endian expiry time)
/// that are due at `now`, oldest first.
pub(crate) fn due_entries<T: Transaction>(
    txn: &T,
    index: Database,
    now: u64,
    max: usize,
) -> Result<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    let mut cur = txn.open_ro_cursor(index)?;
    for item in cur.iter_start() {
        let (k, _) = item?;
        if keys.len() >= max || u64_be_at(k, 0)? > now {
            break;
        }
        keys.push(k.to_vec());
    }
    Ok(keys)
}

/// A checked purge: the due entries, what goes with each, the metas of their tables.
pub(crate) struct Purge {
    due: Vec<(Vec<u8>, Gone)>,
    metas: BTreeMap<Vec<u8>, TableMeta>,
    tot: Tot,
}

/// Finds up to `max` records whose expiry has passed, oldest first. Every record is read and
/// decoded here, so the removal cannot meet a record it cannot read.
pub(crate) fn purge<T: Transaction>(txn: &T, s: &Store, now: u64, max: usize) -> Result<Purge> {
    let keys = due_entries(txn, s.db.exp, now, max)?;
    let mut metas: BTreeMap<Vec<u8>, TableMeta> = BTreeMap::new();
    let mut due = Vec::with_capacity(keys.len());
    for k in keys {
        let exp = u64_be_at(&k, 0)?;
        let kind = *k.get(8).ok_or_else(codec::corrupt)?;
        let reference = &k[9..];
        // The record goes only if it still has this expiry.
        let gone = if kind == EXP_KV {
            let ek = reference;
            match get_opt(txn, s.db.kv, ek)? {
                Some(v) => {
                    let o = old_of(&read_rec(v, is_long(ek))?, ek, v.len(), None)?;
                    if o.exp == exp {
                        Gone::Kv(o)
                    } else {
                        Gone::Index
                    }
                }
                None => Gone::Index,
            }
        } else {
            let mkey = reference;
            let (tb, ek) = split_member_key(mkey)?;
            let m = match metas.get(tb) {
                Some(m) => Some(*m),
                None => {
                    let m = load_meta(txn, s, tb)?;
                    if let Some(m) = m {
                        metas.insert(tb.to_vec(), m);
                    }
                    m
                }
            };
            match (m, get_opt(txn, s.db.mem, mkey)?) {
                (Some(m), Some(v)) => {
                    let o = old_of(&read_rec(v, is_long(ek))?, ek, v.len(), Some(m.kind))?;
                    if o.exp == exp {
                        Gone::Member(o, tb.len())
                    } else {
                        Gone::Index
                    }
                }
                _ => Gone::Index,
            }
        };
        due.push((k, gone));
    }
    let tot = load_totals(txn, s)?;
    Ok(Purge { due, metas, tot })
}

impl Apply for Purge {
    /// Records removed.
    type Out = usize;

    /// Removes the due records with their index entries and accounting; tables left without
    /// members disappear.
    fn apply(self, txn: &mut Wtx<'_, '_>, s: &Store) -> Result<usize> {
        let Purge {
            due,
            mut metas,
            mut tot,
        } = self;
        let mut removed = 0;
        let mut touched = Vec::new();
        for (k, gone) in &due {
            del_opt(txn, s.db.exp, k)?;
            let reference = &k[9..];
            match gone {
                Gone::Index => {}
                Gone::Kv(o) => {
                    kv_unlink(txn, s, reference, o, &mut tot)?;
                    txn.del(s.db.kv, &reference, None)?;
                    removed += 1;
                }
                Gone::Member(o, tb_len) => {
                    // `split_member_key` split this reference in the check.
                    let (Some(tb), Some(ek)) =
                        (reference.get(..*tb_len), reference.get(*tb_len + 1..))
                    else {
                        continue;
                    };
                    let Some(m) = metas.get_mut(tb) else {
                        continue;
                    };
                    member_unlink(txn, s, tb, reference, ek, o, m, &mut tot)?;
                    txn.del(s.db.mem, &reference, None)?;
                    touched.push(tb.to_vec());
                    removed += 1;
                }
            }
        }
        touched.sort();
        touched.dedup();
        for tb in &touched {
            if let Some(m) = metas.get(tb) {
                save_meta(txn, s, tb, m, &mut tot)?;
            }
        }
        store_totals(txn, s, &tot)?;
        Ok(removed)
    }
}
