//! A consensus group's part of the persistent store, for cluster mode: its replication state
//! (opaque bytes in `meta`, written in the pass's transaction so that it commits with the
//! commands it covers) and the records of its slots. An operation like `kv` and `members`: it
//! reads and writes records through `Wtx`, never a command, the journal, the store or a batch.

mod wire;

use std::ops::Range;

use lmdb::{Cursor, RwTransaction, Transaction, WriteFlags};

use crate::codec::*;
use crate::env::{DataCtx, Dbs};
use crate::kv::kv_unlink;
use crate::members::{member_unlink, MemberKey};
use crate::old::{old_of, Old};
use crate::room::Pass;
use crate::tables::{load_totals, save_meta, store_totals};
use crate::txn::{get_opt, put_with, Apply, Wtx};
use crate::{bucket, Result, StorageError, TableType};

const NO_FLAGS: WriteFlags = WriteFlags::empty();

/// Key of a group's state in `meta`: `group/` and the group number, big-endian (so the
/// states are in group order and share no key with `totals` or the journal's `wal`).
fn group_key(group: u32) -> [u8; 10] {
    let mut k = *b"group/\0\0\0\0";
    k[6..].copy_from_slice(&group.to_be_bytes());
    k
}

/// The state last stored for `group`.
pub(crate) fn load_group_state<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    group: u32,
) -> Result<Option<Vec<u8>>> {
    Ok(get_opt(txn, cx.db.meta, &group_key(group))?.map(<[u8]>::to_vec))
}

/// Stores `group`'s state. `meta` is not charged against `map_size` (only records and table
/// metas are, see `codec::entry_fp`), nor in any statistic: a state changes no figure.
pub(crate) fn store_group_state(
    txn: &mut Wtx<'_, '_>,
    cx: &DataCtx<'_>,
    group: u32,
    state: &[u8],
) -> Result<()> {
    Ok(txn.put(cx.db.meta, &group_key(group), &state, NO_FLAGS)?)
}

// ---- slot snapshots

/// Slots a placement knows (`kv-api.md` §2.7).
const SLOTS: u32 = 1024;

fn check_range(slots: &Range<u32>) -> Result<()> {
    if slots.start < slots.end && slots.end <= SLOTS {
        Ok(())
    } else {
        Err(StorageError::Invalid(
            "slot range must be within 0..1024 and not empty",
        ))
    }
}

/// The slot of a plain record: its real key's (the full key of a long one).
fn kv_slot(ek: &[u8], stored: &[u8]) -> Result<u32> {
    Ok(bucket(read_rec(stored, is_long(ek))?.key(ek)))
}

/// A stored entry of a slot range, as [`walk`] meets it.
enum Item<'t> {
    /// A plain record: ekey, stored value.
    Kv(&'t [u8], &'t [u8]),
    /// A table: name, stored meta. Its members follow.
    Table(&'t [u8], &'t [u8]),
    /// A member of the last table: its key in `mem` (`table 0x00 ekey`), its ekey, its value.
    Member(&'t [u8], &'t [u8], &'t [u8]),
}

/// Every plain record, then every table with its members, of `slots` as `txn` holds them,
/// expired or not: one walk of `kv` and `tbl`, and of each table's members in `mem`.
fn walk<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    slots: &Range<u32>,
    mut f: impl FnMut(Item<'_>) -> Result<()>,
) -> Result<()> {
    let mut cur = txn.open_ro_cursor(cx.db.kv)?;
    for item in cur.iter_start() {
        let (ek, v) = item?;
        if slots.contains(&kv_slot(ek, v)?) {
            f(Item::Kv(ek, v))?;
        }
    }
    let mut cur = txn.open_ro_cursor(cx.db.tbl)?;
    for item in cur.iter_start() {
        let (tb, meta) = item?;
        if !slots.contains(&bucket(tb)) {
            continue;
        }
        f(Item::Table(tb, meta))?;
        let prefix = table_prefix(tb);
        let mut members = txn.open_ro_cursor(cx.db.mem)?;
        for item in members.iter_from(&prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            f(Item::Member(k, &k[prefix.len()..], v))?;
        }
    }
    Ok(())
}

/// Every plain record, table and member of `slots` as `txn` holds them, expired or not (the
/// state machine's state is what is stored: `apply` judges expiry against each command's own
/// time, so an importer must hold the expired records too to apply the next commands as the
/// exporter does). `taken_ms` only goes into the header.
pub(crate) fn export<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    slots: Range<u32>,
    taken_ms: u64,
) -> Result<Vec<u8>> {
    check_range(&slots)?;
    let mut w = wire::Writer::new(&slots, taken_ms);
    walk(txn, cx, &slots, |item| {
        match item {
            Item::Kv(ek, v) => w.kv(ek, v),
            Item::Table(tb, meta) => w.table(tb, meta),
            Item::Member(_, ek, v) => w.member(ek, v),
        }
        Ok(())
    })?;
    Ok(w.finish())
}

/// The `/stat` totals of `slots` alone (a cluster group's part of the store), counted as the
/// store's own totals count (`kv::put`, `members`): every plain record and every member of a
/// hash table, expired or not yet purged. One walk of the range (`cluster.md` §5).
pub(crate) fn totals_of<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    slots: Range<u32>,
) -> Result<crate::Totals> {
    check_range(&slots)?;
    let mut t = crate::Totals::default();
    let mut hash = false;
    walk(txn, cx, &slots, |item| {
        match item {
            Item::Kv(ek, v) => {
                let o = old_of(&read_rec(v, is_long(ek))?, ek, v.len(), None)?;
                usage_add(&mut t.kv, (o.klen + o.plen) as u64);
            }
            Item::Table(_, meta) => hash = TableMeta::decode(meta)?.kind == TableType::Hash,
            Item::Member(_, ek, v) if hash => {
                let kind = Some(TableType::Hash);
                let o = old_of(&read_rec(v, is_long(ek))?, ek, v.len(), kind)?;
                usage_add(&mut t.hash, (o.klen + o.plen) as u64);
            }
            Item::Member(..) => {}
        }
        Ok(())
    })?;
    Ok(t)
}

/// A record of a snapshot, checked: its ekey, its stored value, what accounting needs.
struct NewRec<'a> {
    ek: &'a [u8],
    stored: &'a [u8],
    old: Old,
}

/// A table of a snapshot, checked.
struct NewTable<'a> {
    name: &'a [u8],
    meta: TableMeta,
    stored_meta: &'a [u8],
    members: Vec<NewRec<'a>>,
}

/// Plain records of the store being replaced: ekey and record.
type GoneKv = Vec<(Vec<u8>, Old)>;

/// A table of the store being replaced: its meta and its members (member key, record).
struct GoneTable {
    name: Vec<u8>,
    meta: TableMeta,
    members: Vec<(Vec<u8>, Old)>,
}

/// A checked import: what goes (the store's records of the range) and what comes (the
/// snapshot's), with the totals as they are before either.
pub(crate) struct Import<'a> {
    gone_kv: GoneKv,
    gone_tables: Vec<GoneTable>,
    kv: Vec<NewRec<'a>>,
    tables: Vec<NewTable<'a>>,
    tot: Tot,
}

/// Checks a record of a snapshot (a plain record, or a member of a table of type `kind`): it
/// decodes, its ekey is its key's, its payload fits its table's type, and it follows the
/// previous one (`after`) in key order, so that no record comes twice. Its slot is the
/// caller's to check.
fn check_rec<'a>(
    e: &wire::Entry<'a>,
    kind: Option<TableType>,
    after: Option<&[u8]>,
) -> Result<NewRec<'a>> {
    let bad = |_| wire::malformed();
    let rec = read_rec(e.val, is_long(e.key)).map_err(bad)?;
    let key = rec.key(e.key);
    check_key(key).map_err(bad)?;
    let in_order = after.is_none_or(|a| a < e.key);
    let payload_ok = match kind {
        Some(TableType::Set) => rec.payload.is_empty(),
        Some(TableType::SortedSet) => rec.payload.len() == 8,
        _ => true,
    };
    if ekey(key) != e.key || !in_order || !payload_ok {
        return Err(wire::malformed());
    }
    let old = old_of(&rec, e.key, e.val.len(), kind).map_err(bad)?;
    Ok(NewRec {
        ek: e.key,
        stored: e.val,
        old,
    })
}

/// Checks a table of a snapshot: a valid name in range, after the previous one, a meta that
/// is its members' (counts, sizes, members without expiry; no member past `max_exp`).
fn check_table_of<'a>(
    t: &wire::Table<'a>,
    slots: &Range<u32>,
    after: Option<&[u8]>,
) -> Result<NewTable<'a>> {
    let name = t.meta.key;
    let valid = std::str::from_utf8(name).is_ok_and(|n| check_table(n).is_ok());
    if !valid || !slots.contains(&bucket(name)) || after.is_some_and(|a| a >= name) {
        return Err(wire::malformed());
    }
    let meta = TableMeta::decode(t.meta.val).map_err(|_| wire::malformed())?;
    let mut members = Vec::with_capacity(t.members.len());
    let mut sum = TableMeta::new(meta.kind);
    for m in &t.members {
        let r = check_rec(m, Some(meta.kind), members.last().map(|r: &NewRec| r.ek))?;
        sum.add((r.old.klen + r.old.plen) as u64, r.old.exp);
        members.push(r);
    }
    let same = (sum.count, sum.size, sum.cap, sum.permanent)
        == (meta.count, meta.size, meta.cap, meta.permanent);
    if t.meta.val.len() != META_LEN || sum.count == 0 || !same || sum.max_exp > meta.max_exp {
        return Err(wire::malformed());
    }
    Ok(NewTable {
        name,
        meta,
        stored_meta: t.meta.val,
        members,
    })
}

/// The store's records of `slots`, to be replaced.
fn gone_of(
    txn: &RwTransaction<'_>,
    cx: &DataCtx<'_>,
    slots: &Range<u32>,
) -> Result<(GoneKv, Vec<GoneTable>)> {
    let mut kv = Vec::new();
    let mut tables: Vec<GoneTable> = Vec::new();
    walk(txn, cx, slots, |item| {
        match item {
            Item::Kv(ek, v) => {
                let o = old_of(&read_rec(v, is_long(ek))?, ek, v.len(), None)?;
                kv.push((ek.to_vec(), o));
            }
            Item::Table(tb, meta) => tables.push(GoneTable {
                name: tb.to_vec(),
                meta: TableMeta::decode(meta)?,
                members: Vec::new(),
            }),
            Item::Member(mkey, ek, v) => {
                let t = tables.last_mut().ok_or_else(corrupt)?;
                let o = old_of(&read_rec(v, is_long(ek))?, ek, v.len(), Some(t.meta.kind))?;
                t.members.push((mkey.to_vec(), o));
            }
        }
        Ok(())
    })?;
    Ok((kv, tables))
}

/// The check of an import: decodes and checks the whole snapshot (of `slots`, exactly), reads
/// what it replaces, and charges the room its records take (`MapFull` when they do not fit
/// once the range's current records are gone). Changes nothing.
pub(crate) fn import<'a>(
    txn: &RwTransaction<'_>,
    pass: &mut Pass,
    cx: &DataCtx<'_>,
    slots: Range<u32>,
    snapshot: &'a [u8],
) -> Result<Import<'a>> {
    check_range(&slots)?;
    let snap = wire::decode(snapshot)?;
    if snap.slots != slots {
        return Err(StorageError::Invalid("slot snapshot of another slot range"));
    }
    let mut kv: Vec<NewRec<'a>> = Vec::with_capacity(snap.kv.len());
    for e in &snap.kv {
        let r = check_rec(e, None, kv.last().map(|r| r.ek))?;
        if !slots.contains(&kv_slot(r.ek, r.stored)?) {
            return Err(wire::malformed());
        }
        kv.push(r);
    }
    let mut tables: Vec<NewTable<'a>> = Vec::with_capacity(snap.tables.len());
    for t in &snap.tables {
        let checked = check_table_of(t, &slots, tables.last().map(|t| t.name))?;
        tables.push(checked);
    }
    let (gone_kv, gone_tables) = gone_of(txn, cx, &slots)?;
    let psize = cx.room.psize;
    let kv_fps = |ek: &[u8], o: &Old| kv_fp(psize, ek.len(), o.stored, o.exp);
    let mut removed: u64 = gone_kv.iter().map(|(ek, o)| kv_fps(ek, o)).sum();
    for t in &gone_tables {
        removed += meta_fp(psize, t.name.len());
        for (mkey, o) in &t.members {
            removed += member_fp(psize, t.meta.kind, mkey.len(), o.stored, o.exp);
        }
    }
    let mut added: u64 = kv.iter().map(|r| kv_fps(r.ek, &r.old)).sum();
    for t in &tables {
        added += meta_fp(psize, t.name.len());
        for r in &t.members {
            let mkey_len = t.name.len() + 1 + r.ek.len();
            added += member_fp(psize, t.meta.kind, mkey_len, r.old.stored, r.old.exp);
        }
    }
    let tot = load_totals(txn, cx)?;
    pass.charge(cx.env, cx.room, tot.used.saturating_sub(removed), added)?;
    Ok(Import {
        gone_kv,
        gone_tables,
        kv,
        tables,
        tot,
    })
}

impl Apply<Dbs> for Import<'_> {
    type Out = ();

    /// Removes the range's records with their index entries and accounting, then writes the
    /// snapshot's with theirs, as if each had been written here.
    fn apply(self, txn: &mut Wtx<'_, '_>, cx: &DataCtx<'_>) -> Result<()> {
        let Import {
            gone_kv,
            gone_tables,
            kv,
            tables,
            mut tot,
        } = self;
        let psize = cx.room.psize;
        for (ek, o) in &gone_kv {
            kv_unlink(txn, cx, ek, o, &mut tot)?;
            txn.del(cx.db.kv, ek, None)?;
        }
        for t in gone_tables {
            let mut m = t.meta;
            for (mkey, o) in &t.members {
                let ek = &mkey[t.name.len() + 1..];
                let at = MemberKey {
                    tb: &t.name,
                    mkey,
                    ek,
                };
                member_unlink(txn, cx, at, o, &mut m, &mut tot)?;
                txn.del(cx.db.mem, mkey, None)?;
            }
            // Gone whatever its meta counted.
            m.count = 0;
            save_meta(txn, cx, &t.name, &m, &mut tot)?;
        }
        for r in &kv {
            txn.put(cx.db.kv, &r.ek, &r.stored, NO_FLAGS)?;
            if r.old.exp != 0 {
                txn.put(cx.db.exp, &exp_key(r.old.exp, EXP_KV, r.ek), &[], NO_FLAGS)?;
            }
            usage_add(&mut tot.kv, (r.old.klen + r.old.plen) as u64);
            tot.used += kv_fp(psize, r.ek.len(), r.old.stored, r.old.exp);
        }
        for t in &tables {
            txn.put(cx.db.tbl, &t.name, &t.stored_meta, NO_FLAGS)?;
            tot.tables += 1;
            tot.used += meta_fp(psize, t.name.len());
            for r in &t.members {
                member_link(txn, cx, t, r, &mut tot)?;
            }
        }
        store_totals(txn, cx, &tot)
    }
}

/// Writes a member of an imported table with its index entries and accounting.
fn member_link(
    txn: &mut Wtx<'_, '_>,
    cx: &DataCtx<'_>,
    t: &NewTable<'_>,
    r: &NewRec<'_>,
    tot: &mut Tot,
) -> Result<()> {
    let (kind, o) = (t.meta.kind, &r.old);
    let mkey = member_key(t.name, r.ek);
    txn.put(cx.db.mem, &mkey, &r.stored, NO_FLAGS)?;
    if kind == TableType::SortedSet {
        let full = read_rec(r.stored, is_long(r.ek))?.full;
        let zkey = zidx_key(t.name, o.score, r.ek);
        put_with(txn, cx.db.zidx, &zkey, rec_len(full, 0), |b| {
            write_rec(b, o.ver, o.exp, full, &[])
        })?;
    }
    if o.exp != 0 {
        txn.put(cx.db.exp, &exp_key(o.exp, EXP_MEMBER, &mkey), &[], NO_FLAGS)?;
    }
    let bytes = (o.klen + o.plen) as u64;
    if kind == TableType::Hash {
        usage_add(&mut tot.hash, bytes);
    }
    tot.used += member_fp(cx.room.psize, kind, mkey.len(), o.stored, o.exp);
    Ok(())
}
