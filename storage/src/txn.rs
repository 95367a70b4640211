//! Transactions as the operations see them, the bottom layer with [`crate::env`]: a read view
//! on whichever transaction a pass has ([`Reader`]), the write transaction that records every
//! change for the journal ([`Wtx`], [`Ops`]), the second half of a checked write ([`Apply`]),
//! and the lookups every operation shares. It knows nothing of records' layouts, the journal's
//! files or batches.

use lmdb::{Cursor, Database, RoTransaction, RwTransaction, Transaction, WriteFlags};

use crate::codec::u64_be_at;
use crate::direct;
use crate::env::{Ctx, Dbs};
use crate::Result;

/// A read view on whichever transaction the pass has: reads see the pass's own writes once the
/// write transaction is open.
pub(crate) enum Reader<'a, 'e> {
    Ro(&'a RoTransaction<'e>),
    Rw(&'a RwTransaction<'e>),
}

impl Transaction for Reader<'_, '_> {
    fn txn(&self) -> *mut lmdb_sys::MDB_txn {
        match self {
            Reader::Ro(t) => t.txn(),
            Reader::Rw(t) => t.txn(),
        }
    }

    // Never commit through a view: the transaction belongs to the batch.
    fn commit(self) -> lmdb::Result<()> {
        Err(lmdb::Error::BadTxn)
    }
}

/// A write request checked against the pass's transaction and ready to be made: the check
/// (which only had `&RwTransaction`, so it changed nothing) has decided every refusal, and
/// `apply` can only fail the way LMDB fails (a real `MDB_MAP_FULL`, I/O). `D` is the named
/// databases of the environment it writes to.
pub(crate) trait Apply<D> {
    type Out;
    fn apply(self, txn: &mut Wtx<'_, '_>, cx: &Ctx<'_, D>) -> Result<Self::Out>;
}

/// A plan whose answer is `F` of what `P` answers.
pub(crate) struct Map<P, F>(pub P, pub F);

impl<D, P: Apply<D>, T, F: FnOnce(P::Out) -> T> Apply<D> for Map<P, F> {
    type Out = T;
    fn apply(self, txn: &mut Wtx<'_, '_>, cx: &Ctx<'_, D>) -> Result<T> {
        let out = self.0.apply(txn, cx)?;
        Ok((self.1)(out))
    }
}

thread_local! {
    /// The bytes of a large value written by `pwrite` where no journal record holds them.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}
/// A larger scratch buffer is let go after use.
const SCRATCH_KEEP: usize = 4 << 20;

const OP_PUT: u8 = 1;
const OP_DEL: u8 = 2;

/// The changes of one pass's write transaction, in the order they were made: the payload of
/// the pass's journal record.
#[derive(Default)]
pub(crate) struct Ops {
    buf: Vec<u8>,
}

impl Ops {
    pub(crate) fn put(&mut self, db: u8, key: &[u8], val: &[u8]) {
        self.put_head(db, key, val.len());
        self.buf.extend_from_slice(val);
    }

    /// A put's opcode, database, key and value length: what comes before its value.
    fn put_head(&mut self, db: u8, key: &[u8], len: usize) {
        self.buf.push(OP_PUT);
        self.buf.push(db);
        push_bytes(&mut self.buf, key);
        self.buf.extend_from_slice(&(len as u32).to_le_bytes());
    }

    pub(crate) fn del(&mut self, db: u8, key: &[u8]) {
        self.buf.push(OP_DEL);
        self.buf.push(db);
        push_bytes(&mut self.buf, key);
    }

    /// Records a put of a value of `len` bytes that `fill` writes into the record itself;
    /// answers the value's bytes.
    pub(crate) fn put_filled(
        &mut self,
        db: u8,
        key: &[u8],
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> &[u8] {
        self.put_head(db, key, len);
        let start = self.buf.len();
        self.buf.resize(start + len, 0);
        fill(&mut self.buf[start..]);
        &self.buf[start..]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The encoded changes ([`decode_ops`] reads them back).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

fn push_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
    buf.extend_from_slice(b);
}

/// One recorded change: (database tag, key, value) or (database tag, key).
#[derive(Debug, PartialEq)]
pub(crate) enum Op<'a> {
    Put(u8, &'a [u8], &'a [u8]),
    Del(u8, &'a [u8]),
}

/// The changes of a record's payload; `None` when it is malformed (a CRC-valid record never
/// is, short of a bug).
pub(crate) fn decode_ops(mut p: &[u8]) -> Option<Vec<Op<'_>>> {
    fn take<'a>(p: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(p.get(..4)?.try_into().ok()?) as usize;
        let b = p.get(4..4 + len)?;
        *p = &p[4 + len..];
        Some(b)
    }
    let mut ops = Vec::new();
    while let [op, db, rest @ ..] = p {
        let (op, db) = (*op, *db);
        p = rest;
        let key = take(&mut p)?;
        ops.push(match op {
            OP_PUT => Op::Put(db, key, take(&mut p)?),
            OP_DEL => Op::Del(db, key),
            _ => return None,
        });
    }
    p.is_empty().then_some(ops)
}

/// The write transaction as a request's changes see it: every put and delete also goes into
/// the pass's journal record when there is one (`sync_writes on` with `write_map`), so all
/// changes to the persistent store must go through it.
pub(crate) struct Wtx<'a, 'e> {
    txn: &'a mut RwTransaction<'e>,
    ops: Option<(&'a mut Ops, &'a Dbs)>,
}

impl<'a, 'e> Wtx<'a, 'e> {
    /// `ops`: the pass's journal record and the databases whose tags it uses; `None` where
    /// nothing is journaled (the cache, stores without the journal).
    pub(crate) fn new(txn: &'a mut RwTransaction<'e>, ops: Option<(&'a mut Ops, &'a Dbs)>) -> Self {
        Wtx { txn, ops }
    }

    /// The transaction to read from (a check's view, which cannot change anything).
    pub(crate) fn view(&self) -> &RwTransaction<'e> {
        self.txn
    }

    pub(crate) fn put<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        db: Database,
        key: &K,
        val: &V,
        flags: WriteFlags,
    ) -> lmdb::Result<()> {
        self.txn.put(db, key, val, flags)?;
        if let Some((ops, dbs)) = self.ops.as_mut() {
            ops.put(dbs.tag_of(db), key.as_ref(), val.as_ref());
        }
        Ok(())
    }

    pub(crate) fn del<K: AsRef<[u8]>>(
        &mut self,
        db: Database,
        key: &K,
        data: Option<&[u8]>,
    ) -> lmdb::Result<()> {
        self.txn.del(db, key, data)?;
        if let Some((ops, dbs)) = self.ops.as_mut() {
            debug_assert!(data.is_none(), "no duplicate-sorted databases");
            ops.del(dbs.tag_of(db), key.as_ref());
        }
        Ok(())
    }

    /// Stores a value of `len` bytes that `fill` writes: into the journal record and then the
    /// file by `pwrite` when the value has overflow pages of its own in a `WRITEMAP` file
    /// (`direct`), else in place.
    pub(crate) fn put_with(
        &mut self,
        db: Database,
        key: &[u8],
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> lmdb::Result<()> {
        let txn = self.txn.txn();
        let buf = self.txn.reserve(db, &key, len, WriteFlags::empty())?;
        if let Some(place) = direct::place_of(txn, buf) {
            return match self.ops.as_mut() {
                Some((ops, dbs)) => {
                    direct::write_at(place, ops.put_filled(dbs.tag_of(db), key, len, fill))
                }
                None => SCRATCH.with(|s| {
                    let mut s = s.borrow_mut();
                    s.clear();
                    s.resize(len, 0);
                    fill(&mut s);
                    let r = direct::write_at(place, &s);
                    if s.capacity() > SCRATCH_KEEP {
                        *s = Vec::new();
                    }
                    r
                }),
            };
        }
        fill(buf);
        if let Some((ops, dbs)) = self.ops.as_mut() {
            ops.put(dbs.tag_of(db), key, buf);
        }
        Ok(())
    }
}

impl Transaction for Wtx<'_, '_> {
    fn txn(&self) -> *mut lmdb_sys::MDB_txn {
        self.txn.txn()
    }

    // Never commit through a view: the transaction belongs to the batch.
    fn commit(self) -> lmdb::Result<()> {
        Err(lmdb::Error::BadTxn)
    }
}

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

/// Whether the first entry of an expiry index (`exp` or `cexp`) is due.
pub(crate) fn has_expired<T: Transaction>(txn: &T, db: Database, now: u64) -> Result<bool> {
    let mut cur = txn.open_ro_cursor(db)?;
    match cur.iter_start().next() {
        Some(item) => Ok(u64_be_at(item?.0, 0)? <= now),
        None => Ok(false),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip() {
        let mut ops = Ops::default();
        ops.put(0, b"k", b"value");
        ops.del(5, b"gone");
        ops.put(3, b"", b"");
        assert_eq!(
            decode_ops(&ops.buf).unwrap(),
            vec![
                Op::Put(0, b"k", b"value"),
                Op::Del(5, b"gone"),
                Op::Put(3, b"", b"")
            ]
        );
        // Cut inside an op, the payload is malformed rather than misread; cut between two
        // ops, it is the ops before the cut.
        let full = decode_ops(&ops.buf).unwrap();
        let mut whole = 0;
        for cut in 1..ops.buf.len() {
            if let Some(prefix) = decode_ops(&ops.buf[..cut]) {
                assert_eq!(prefix[..], full[..prefix.len()], "cut at {cut}");
                whole += 1;
            }
        }
        assert_eq!(whole, 2, "two cuts fall between ops");
    }
}
