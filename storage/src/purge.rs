//! Expiry of the persistent store: removing the records whose expiry has passed, with their
//! index entries and accounting, a table left without members going with them. Like every
//! write, a read-only check (which reads and decodes every due record) then an [`Apply`].

use std::collections::BTreeMap;
use std::ops::Range;

use lmdb::{Cursor, Transaction};

use crate::codec::{self, *};
use crate::env::{DataCtx, Dbs};
use crate::kv::kv_unlink;
use crate::members::{member_unlink, MemberKey};
use crate::old::{old_of, Old};
use crate::tables::{load_meta, load_totals, save_meta, store_totals};
use crate::txn::{del_opt, due_entries, get_opt, Apply, Wtx};
use crate::{bucket, Result};

/// What goes with one due entry of `exp`.
enum Gone {
    /// Only the index entry: its record is gone or was rewritten with another expiry.
    Index,
    Kv(Old),
    /// A member; `usize` is the length of the table name at the start of the reference.
    Member(Old, usize),
}

/// A checked purge: the due entries, what goes with each, the metas of their tables.
pub(crate) struct Purge {
    due: Vec<(Vec<u8>, Gone)>,
    metas: BTreeMap<Vec<u8>, TableMeta>,
    tot: Tot,
}

/// Finds up to `max` records whose expiry has passed, oldest first. Every record is read and
/// decoded here, so the removal cannot meet a record it cannot read.
pub(crate) fn purge<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    now: u64,
    max: usize,
) -> Result<Purge> {
    let keys = due_entries(txn, cx.db.exp, now, max)?;
    let mut metas: BTreeMap<Vec<u8>, TableMeta> = BTreeMap::new();
    let mut due = Vec::with_capacity(keys.len());
    for k in keys {
        let (gone, _) = classify(txn, cx, &k, &mut metas)?;
        due.push((k, gone));
    }
    let tot = load_totals(txn, cx)?;
    Ok(Purge { due, metas, tot })
}

/// Like [`purge`], restricted to the records of `slots` (a consensus group's, in cluster
/// mode): up to `max` of them removed, oldest first, whatever else is due. Only the records
/// of `slots` count and only their index entries go, so every replica of the group, whose
/// other groups may be at other log positions, removes the very same records. An index entry
/// whose slot cannot be told (a long key's, its record gone) is left alone.
pub(crate) fn purge_slots<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    now: u64,
    max: usize,
    slots: &Range<u32>,
) -> Result<Purge> {
    let mut metas: BTreeMap<Vec<u8>, TableMeta> = BTreeMap::new();
    let mut due = Vec::new();
    let mut removed = 0;
    let mut cur = txn.open_ro_cursor(cx.db.exp)?;
    for item in cur.iter_start() {
        let (k, _) = item?;
        if removed >= max || u64_be_at(k, 0)? > now {
            break;
        }
        let (gone, slot) = classify(txn, cx, k, &mut metas)?;
        if !slot.is_some_and(|s| slots.contains(&s)) {
            continue;
        }
        if !matches!(gone, Gone::Index) {
            removed += 1;
        }
        due.push((k.to_vec(), gone));
    }
    let tot = load_totals(txn, cx)?;
    Ok(Purge { due, metas, tot })
}

/// Whether a record of `slots` has expired at `now` (a read of the due entries only).
pub(crate) fn has_expired_in<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    now: u64,
    slots: &Range<u32>,
) -> Result<bool> {
    let mut metas = BTreeMap::new();
    let mut cur = txn.open_ro_cursor(cx.db.exp)?;
    for item in cur.iter_start() {
        let (k, _) = item?;
        if u64_be_at(k, 0)? > now {
            break;
        }
        let (gone, slot) = classify(txn, cx, k, &mut metas)?;
        if !matches!(gone, Gone::Index) && slot.is_some_and(|s| slots.contains(&s)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What goes with the due entry `k` of `exp`, and the slot of its record when known (a plain
/// record's real key's, a member's table's).
fn classify<T: Transaction>(
    txn: &T,
    cx: &DataCtx<'_>,
    k: &[u8],
    metas: &mut BTreeMap<Vec<u8>, TableMeta>,
) -> Result<(Gone, Option<u32>)> {
    let exp = u64_be_at(k, 0)?;
    let kind = *k.get(8).ok_or_else(codec::corrupt)?;
    let reference = &k[9..];
    // The record goes only if it still has this expiry.
    if kind == EXP_KV {
        let ek = reference;
        return Ok(match get_opt(txn, cx.db.kv, ek)? {
            Some(v) => {
                let rec = read_rec(v, is_long(ek))?;
                let slot = bucket(rec.key(ek));
                let o = old_of(&rec, ek, v.len(), None)?;
                let gone = if o.exp == exp {
                    Gone::Kv(o)
                } else {
                    Gone::Index
                };
                (gone, Some(slot))
            }
            None => (Gone::Index, (!is_long(ek)).then(|| bucket(ek))),
        });
    }
    let mkey = reference;
    let (tb, ek) = split_member_key(mkey)?;
    let slot = Some(bucket(tb));
    let m = match metas.get(tb) {
        Some(m) => Some(*m),
        None => {
            let m = load_meta(txn, cx, tb)?;
            if let Some(m) = m {
                metas.insert(tb.to_vec(), m);
            }
            m
        }
    };
    let gone = match (m, get_opt(txn, cx.db.mem, mkey)?) {
        (Some(m), Some(v)) => {
            let o = old_of(&read_rec(v, is_long(ek))?, ek, v.len(), Some(m.kind))?;
            if o.exp == exp {
                Gone::Member(o, tb.len())
            } else {
                Gone::Index
            }
        }
        _ => Gone::Index,
    };
    Ok((gone, slot))
}

impl Apply<Dbs> for Purge {
    /// Records removed.
    type Out = usize;

    /// Removes the due records with their index entries and accounting; tables left without
    /// members disappear.
    fn apply(self, txn: &mut Wtx<'_, '_>, cx: &DataCtx<'_>) -> Result<usize> {
        let Purge {
            due,
            mut metas,
            mut tot,
        } = self;
        let mut removed = 0;
        let mut touched = Vec::new();
        for (k, gone) in &due {
            del_opt(txn, cx.db.exp, k)?;
            let reference = &k[9..];
            match gone {
                Gone::Index => {}
                Gone::Kv(o) => {
                    kv_unlink(txn, cx, reference, o, &mut tot)?;
                    txn.del(cx.db.kv, &reference, None)?;
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
                    let at = MemberKey {
                        tb,
                        mkey: reference,
                        ek,
                    };
                    member_unlink(txn, cx, at, o, m, &mut tot)?;
                    txn.del(cx.db.mem, &reference, None)?;
                    touched.push(tb.to_vec());
                    removed += 1;
                }
            }
        }
        touched.sort();
        touched.dedup();
        for tb in &touched {
            if let Some(m) = metas.get(tb) {
                save_meta(txn, cx, tb, m, &mut tot)?;
            }
        }
        store_totals(txn, cx, &tot)?;
        Ok(removed)
    }
}
