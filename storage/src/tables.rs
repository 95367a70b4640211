//! Table metadata and the store's totals: the meta of each table (type, counts, expiry
//! bounds), whether a table is alive, the table limit's count, `/stat` figures, and the
//! totals every write keeps exact in its own transaction. Below the writes of `kv`,
//! `members` and `purge` and the listings, above the bottom layer.

use lmdb::{Cursor, Transaction, WriteFlags};

use crate::codec::*;
use crate::env::DataCtx;
use crate::txn::{del_opt, get_opt, has_expired, Wtx};
use crate::{Result, StorageError, TableStat, TableType};

const NO_FLAGS: WriteFlags = WriteFlags::empty();

pub(crate) fn load_totals<T: Transaction>(txn: &T, cx: &DataCtx<'_>) -> Result<Tot> {
    match get_opt(txn, cx.db.meta, TOTALS_KEY)? {
        Some(v) => Tot::decode(v),
        None => Ok(Tot::default()),
    }
}

pub(crate) fn store_totals(txn: &mut Wtx<'_, '_>, cx: &DataCtx<'_>, t: &Tot) -> Result<()> {
    Ok(txn.put(cx.db.meta, &TOTALS_KEY, &t.encode(), NO_FLAGS)?)
}

pub(crate) fn load_meta<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    tb: &[u8],
) -> Result<Option<TableMeta>> {
    get_opt(txn, cx.db.tbl, tb)?
        .map(TableMeta::decode)
        .transpose()
}

/// Stores a table's meta, or removes the table once its last member is gone.
pub(crate) fn save_meta(
    txn: &mut Wtx<'_, '_>,
    cx: &DataCtx<'_>,
    tb: &[u8],
    m: &TableMeta,
    tot: &mut Tot,
) -> Result<()> {
    if m.count == 0 {
        del_opt(txn, cx.db.tbl, tb)?;
        tot.tables = tot.tables.saturating_sub(1);
        tot.used = tot.used.saturating_sub(meta_fp(cx.room.psize, tb.len()));
        Ok(())
    } else {
        Ok(txn.put(cx.db.tbl, &tb, &m.encode(), NO_FLAGS)?)
    }
}

/// Whether the table has a live member. Exact at once, without a scan in the usual cases: a
/// member without expiry keeps it alive, and past `max_exp` every member has expired; only in
/// between are members read until a live one shows up.
pub(crate) fn table_alive<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
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
    let mut cur = txn.open_ro_cursor(cx.db.mem)?;
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
pub(crate) fn count_alive_tables<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    except: &[u8],
    now: u64,
) -> Result<u64> {
    let mut n = 0;
    let mut cur = txn.open_ro_cursor(cx.db.tbl)?;
    for item in cur.iter_start() {
        let (k, v) = item?;
        if k != except && table_alive(txn, cx, k, &TableMeta::decode(v)?, now)? {
            n += 1;
        }
    }
    Ok(n)
}

/// `has_expired` turned around: no record anywhere is expired and still counted, so the
/// statistics are exact right now.
pub(crate) fn counts_exact<T: Transaction>(txn: &T, cx: &DataCtx<'_>, now: u64) -> Result<bool> {
    Ok(!has_expired(txn, cx.db.exp, now)?)
}

/// The meta of `tb` when it is a live table of type `kind`: `WrongType` when a live table of
/// another type has the name, `NotFound` when no live table does.
pub(crate) fn live_table_of<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    tb: &str,
    kind: TableType,
    now: u64,
) -> Result<TableMeta> {
    check_table(tb)?;
    let tbb = tb.as_bytes();
    let m = load_meta(txn, cx, tbb)?.ok_or(StorageError::NotFound)?;
    if m.kind != kind {
        return Err(if table_alive(txn, cx, tbb, &m, now)? {
            StorageError::WrongType
        } else {
            StorageError::NotFound
        });
    }
    Ok(m)
}

fn stat_of(tb: &[u8], m: &TableMeta) -> TableStat {
    TableStat {
        name: String::from_utf8_lossy(tb).into_owned(),
        kind: m.kind,
        usage: m.usage(),
    }
}

pub(crate) fn table_stat<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    tb: &str,
    now: u64,
) -> Result<TableStat> {
    check_table(tb)?;
    let tbb = tb.as_bytes();
    let m = load_meta(txn, cx, tbb)?.ok_or(StorageError::NotFound)?;
    if !table_alive(txn, cx, tbb, &m, now)? {
        return Err(StorageError::NotFound);
    }
    Ok(stat_of(tbb, &m))
}

pub(crate) fn all_tables<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    now: u64,
) -> Result<Vec<TableStat>> {
    let mut out = Vec::new();
    let mut cur = txn.open_ro_cursor(cx.db.tbl)?;
    for item in cur.iter_start() {
        let (k, v) = item?;
        let m = TableMeta::decode(v)?;
        if table_alive(txn, cx, k, &m, now)? {
            out.push(stat_of(k, &m));
        }
    }
    Ok(out)
}
