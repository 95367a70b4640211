//! The binary form of a slot snapshot: a group's records as one read snapshot held them, to
//! be streamed to a replica that is behind or new. Self-describing and checked: a magic, a
//! format version, the slot range and the time it was taken, the records, and a CRC-32 of
//! everything before it. Pure: bytes in, bytes out; decoding garbage is an error, never a
//! panic, and no length is trusted before it is checked against what is there.
//!
//! ```text
//! "HSNP" | version u8 | start u32 | end u32 | taken_ms u64 | item* | 0 | crc32 u32
//! item = 1 kv:     klen u32, ekey, vlen u32, stored record       (a `kv` entry)
//!      | 2 table:  nlen u32, name, mlen u32, table meta           (a `tbl` entry)
//!      | 3 member: klen u32, ekey, vlen u32, stored record       (a `mem` entry of the
//!                                                                  last table)
//! ```
//!
//! Integers are little-endian. The index entries (`zidx`, `exp`) are not in it: they follow
//! from the records, and the importer writes them.

use std::ops::Range;

use crate::{Result, StorageError};

const MAGIC: &[u8; 4] = b"HSNP";
/// Bump on any change of the layout above; a reader refuses versions it does not know.
const VERSION: u8 = 1;
const HEAD: usize = 4 + 1 + 4 + 4 + 8;
const CRC: usize = 4;

const END: u8 = 0;
const KV: u8 = 1;
const TABLE: u8 = 2;
const MEMBER: u8 = 3;

/// What a snapshot that cannot be read turns into.
pub(crate) fn malformed() -> StorageError {
    StorageError::Invalid("malformed slot snapshot")
}

/// One LMDB entry as it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    pub key: &'a [u8],
    pub val: &'a [u8],
}

/// A table: its `tbl` entry (name and meta) and its members (`key` = the member's ekey).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Table<'a> {
    pub meta: Entry<'a>,
    pub members: Vec<Entry<'a>>,
}

/// A decoded snapshot, borrowing its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot<'a> {
    pub slots: Range<u32>,
    pub taken_ms: u64,
    pub kv: Vec<Entry<'a>>,
    pub tables: Vec<Table<'a>>,
}

/// Builds a snapshot's bytes.
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new(slots: &Range<u32>, taken_ms: u64) -> Writer {
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(MAGIC);
        buf.push(VERSION);
        buf.extend_from_slice(&slots.start.to_le_bytes());
        buf.extend_from_slice(&slots.end.to_le_bytes());
        buf.extend_from_slice(&taken_ms.to_le_bytes());
        Writer { buf }
    }

    fn item(&mut self, tag: u8, key: &[u8], val: &[u8]) {
        self.buf.push(tag);
        for b in [key, val] {
            self.buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(b);
        }
    }

    /// A plain record: its ekey and stored value.
    pub fn kv(&mut self, ekey: &[u8], stored: &[u8]) {
        self.item(KV, ekey, stored);
    }

    /// A table's name and meta; its members follow.
    pub fn table(&mut self, name: &[u8], meta: &[u8]) {
        self.item(TABLE, name, meta);
    }

    /// A member of the last table: its ekey and stored value.
    pub fn member(&mut self, ekey: &[u8], stored: &[u8]) {
        self.item(MEMBER, ekey, stored);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(END);
        let crc = crc32fast::hash(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// Reads from the front of a slice, every read checked.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.0.len() {
            return Err(malformed());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }

    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = usize::try_from(self.u32()?).map_err(|_| malformed())?;
        self.take(n)
    }

    fn entry(&mut self) -> Result<Entry<'a>> {
        Ok(Entry {
            key: self.bytes()?,
            val: self.bytes()?,
        })
    }
}

/// Decodes a snapshot: its CRC, magic and version checked first, then every item. The
/// records themselves are checked by the importer, which knows their layouts.
pub(crate) fn decode(bytes: &[u8]) -> Result<Snapshot<'_>> {
    if bytes.len() < HEAD + 1 + CRC {
        return Err(malformed());
    }
    let (body, crc) = bytes.split_at(bytes.len() - CRC);
    let mut c = Cursor(crc);
    if crc32fast::hash(body) != c.u32()? {
        return Err(malformed());
    }
    let mut c = Cursor(body);
    if c.take(4)? != MAGIC {
        return Err(malformed());
    }
    if c.u8()? != VERSION {
        return Err(StorageError::Invalid(
            "slot snapshot of an unknown format version",
        ));
    }
    let slots = c.u32()?..c.u32()?;
    let taken_ms = c.u64()?;
    let mut snap = Snapshot {
        slots,
        taken_ms,
        kv: Vec::new(),
        tables: Vec::new(),
    };
    loop {
        match c.u8()? {
            END => break,
            KV => snap.kv.push(c.entry()?),
            TABLE => snap.tables.push(Table {
                meta: c.entry()?,
                members: Vec::new(),
            }),
            MEMBER => {
                let m = c.entry()?;
                snap.tables
                    .last_mut()
                    .ok_or_else(malformed)?
                    .members
                    .push(m);
            }
            _ => return Err(malformed()),
        }
    }
    if !c.0.is_empty() {
        return Err(malformed());
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(&(3..9), 77);
        w.kv(b"k", b"record");
        w.table(b"t", b"meta");
        w.member(b"m1", b"");
        w.member(b"m2", b"v");
        w.table(b"u", b"meta2");
        w.finish()
    }

    #[test]
    fn a_snapshot_round_trips() {
        let bytes = sample();
        let s = decode(&bytes).unwrap();
        assert_eq!((s.slots.clone(), s.taken_ms), (3..9, 77));
        let e = |key: &'static [u8], val: &'static [u8]| Entry { key, val };
        assert_eq!(s.kv, vec![e(b"k", b"record")]);
        assert_eq!(
            s.tables,
            vec![
                Table {
                    meta: e(b"t", b"meta"),
                    members: vec![e(b"m1", b""), e(b"m2", b"v")]
                },
                Table {
                    meta: e(b"u", b"meta2"),
                    members: vec![]
                }
            ]
        );
        let empty = Writer::new(&(0..1024), 0).finish();
        assert_eq!(decode(&empty).unwrap().kv, vec![]);
    }

    #[test]
    fn every_cut_and_every_flipped_bit_is_refused() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(decode(&b).is_err(), "bit {i}");
        }
    }

    /// Garbage whose CRC is right (as a bug of a writer would make): the structure itself is
    /// checked, and nothing panics.
    #[test]
    fn garbage_with_a_valid_crc_is_refused_or_read_without_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..20_000 {
            let mut b = Vec::new();
            b.extend_from_slice(MAGIC);
            b.push(VERSION);
            let len = round % 200;
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Small bytes, so that tags and short lengths turn up often.
                b.push(if x.is_multiple_of(3) {
                    (x >> 8) as u8
                } else {
                    (x % 5) as u8
                });
            }
            let crc = crc32fast::hash(&b);
            b.extend_from_slice(&crc.to_le_bytes());
            let _ = decode(&b);
        }
    }
}
