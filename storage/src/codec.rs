//! Byte layouts of everything the store keeps in LMDB, and the arithmetic on them (versions,
//! expiry, statistics, footprints). No I/O here: every function is a pure transformation, so the
//! layouts can be unit-tested on their own.
//!
//! Persistent environment (named databases):
//!
//! | db     | key                                           | value                               |
//! |--------|-----------------------------------------------|-------------------------------------|
//! | `kv`   | ekey                                          | record (payload = the value)        |
//! | `mem`  | table `0x00` ekey                             | record (H: value, S: empty, Z: score i64 LE) |
//! | `zidx` | table `0x00` score (8, ordered) ekey          | ver u32, exp u64, [klen u32, key]   |
//! | `tbl`  | table                                         | [`TableMeta`]                       |
//! | `exp`  | exp ms (u64 BE) kind (0 kv, 1 member) ref     | empty                               |
//! | `meta` | `totals`                                      | [`Tot`]                             |
//!
//! A record is `ver u32 LE, exp u64 LE (0 = none), [klen u32 LE, key] (long keys only), payload`.
//!
//! Keys of at most [`LONG_KEY`] bytes are stored as they are ("ekey" = the key). Longer keys
//! (LMDB keys stop at 511 bytes) become their first [`LONG_KEY`] bytes followed by a 128-bit
//! hash of the whole key, and the full key is kept in the value. Encoded order is then the true
//! bytewise order except inside a run of long keys sharing their first [`LONG_KEY`] bytes: such a
//! run is contiguous (nothing else starts with those 400 bytes and is longer than 400 bytes), and
//! listings sort it by full key. Table names are at most 64 bytes without `0x00`, so `table 0x00`
//! is a prefix no other table shares, and the longest composite key (`exp` of a member:
//! 8 + 1 + 64 + 1 + 416 = 490 bytes) stays under 511.
//!
//! Cache environment: `ckv` (ekey → exp u64 LE, [klen, key], value), `chash` (table `0x00` ekey →
//! [klen, key], value), `cexp` (exp ms BE, ekey → empty), `cmeta` (`used` → u64 LE).

use std::borrow::Cow;

use crate::{Result, StorageError, TableType, Usage};

/// Keys up to this length are stored as they are.
pub(crate) const LONG_KEY: usize = 400;
/// Length of the hash that ends the encoded form of a long key.
pub(crate) const HASH_LEN: usize = 16;
/// Length of an encoded long key.
pub(crate) const LONG_EKEY: usize = LONG_KEY + HASH_LEN;
/// Longest key or member (kv-api §2.8).
pub(crate) const MAX_KEY: usize = 65536;
/// Longest table name.
pub(crate) const MAX_TABLE: usize = 64;
/// Versions wrap from this back to 1.
pub(crate) const MAX_VER: u32 = 4_194_303;
/// Tables that may exist at once.
pub(crate) const MAX_TABLES: u64 = 8192;
/// Largest cache value, also after `append`.
pub(crate) const CACHE_MAX_VALUE: usize = 8 * 1024 * 1024;
/// Fixed head of a persistent record: ver u32 + exp u64.
pub(crate) const REC_HEAD: usize = 12;
/// Fixed head of a cache string record: exp u64.
pub(crate) const CREC_HEAD: usize = 8;
/// `exp` kinds.
pub(crate) const EXP_KV: u8 = 0;
pub(crate) const EXP_MEMBER: u8 = 1;
/// Key of the totals record in `meta`, and of the used-bytes counter in `cmeta`.
pub(crate) const TOTALS_KEY: &[u8] = b"totals";
pub(crate) const CACHE_USED_KEY: &[u8] = b"used";

/// What a record or layout that cannot be decoded turns into.
pub(crate) fn corrupt() -> StorageError {
    StorageError::Lmdb(lmdb::Error::Corrupted)
}

pub(crate) fn u32_at(v: &[u8], off: usize) -> Result<u32> {
    let b = v.get(off..off + 4).ok_or_else(corrupt)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    Ok(u32::from_le_bytes(a))
}

pub(crate) fn u64_at(v: &[u8], off: usize) -> Result<u64> {
    let b = v.get(off..off + 8).ok_or_else(corrupt)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_le_bytes(a))
}

pub(crate) fn u64_be_at(v: &[u8], off: usize) -> Result<u64> {
    let b = v.get(off..off + 8).ok_or_else(corrupt)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_be_bytes(a))
}

// ---- validation (the HTTP layer validates first; these keep bad input from reaching LMDB)

pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(StorageError::Invalid("key must be 1..=65536 bytes"));
    }
    Ok(())
}

pub(crate) fn check_table(tb: &str) -> Result<()> {
    let ok = !tb.is_empty()
        && tb.len() <= MAX_TABLE
        && tb
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(StorageError::Invalid(
            "table name must be 1..=64 chars of A-Z a-z 0-9 _ : .",
        ))
    }
}

// ---- long keys

/// MurmurHash3 x64 128 (seed 0), hand-written: stable across Rust releases, unlike std's
/// hashers, which matters because the hash is part of the on-disk key.
pub(crate) fn hash128(data: &[u8]) -> [u8; 16] {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    fn fmix(mut k: u64) -> u64 {
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    }
    let (mut h1, mut h2) = (0u64, 0u64);
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&b[..8]);
        hi.copy_from_slice(&b[8..]);
        let k1 = u64::from_le_bytes(lo)
            .wrapping_mul(C1)
            .rotate_left(31)
            .wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        let k2 = u64::from_le_bytes(hi)
            .wrapping_mul(C2)
            .rotate_left(33)
            .wrapping_mul(C1);
        h2 ^= k2;
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    let (mut k1, mut k2) = (0u64, 0u64);
    for (i, &b) in tail.iter().enumerate() {
        if i < 8 {
            k1 ^= (b as u64) << (i * 8);
        } else {
            k2 ^= (b as u64) << ((i - 8) * 8);
        }
    }
    if tail.len() > 8 {
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    }
    if !tail.is_empty() {
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    }
    h1 ^= data.len() as u64;
    h2 ^= data.len() as u64;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&h1.to_be_bytes());
    out[8..].copy_from_slice(&h2.to_be_bytes());
    out
}

/// The key as LMDB stores it (see the module doc).
pub(crate) fn ekey(key: &[u8]) -> Cow<'_, [u8]> {
    match key.get(..LONG_KEY) {
        Some(prefix) if key.len() > LONG_KEY => {
            let mut v = Vec::with_capacity(LONG_EKEY);
            v.extend_from_slice(prefix);
            v.extend_from_slice(&hash128(key));
            Cow::Owned(v)
        }
        _ => Cow::Borrowed(key),
    }
}

/// Whether an encoded key stands for a long key (short keys are never longer than 400 bytes).
pub(crate) fn is_long(ekey: &[u8]) -> bool {
    ekey.len() == LONG_EKEY
}

/// The full key kept in the value when `key` is long, for [`write_tail`].
pub(crate) fn full_if_long(key: &[u8]) -> Option<&[u8]> {
    if key.len() > LONG_KEY {
        Some(key)
    } else {
        None
    }
}

// ---- composite keys

/// `table 0x00`: every member key of a table starts with it.
pub(crate) fn table_prefix(tb: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(tb.len() + 1);
    v.extend_from_slice(tb);
    v.push(0);
    v
}

pub(crate) fn member_key(tb: &[u8], ek: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(tb.len() + 1 + ek.len());
    v.extend_from_slice(tb);
    v.push(0);
    v.extend_from_slice(ek);
    v
}

/// Splits a member key back into table name and ekey.
pub(crate) fn split_member_key(mkey: &[u8]) -> Result<(&[u8], &[u8])> {
    let pos = mkey.iter().position(|&b| b == 0).ok_or_else(corrupt)?;
    Ok((&mkey[..pos], &mkey[pos + 1..]))
}

/// Scores as 8 bytes whose bytewise order is the numeric order (big-endian, sign bit flipped).
pub(crate) fn score_bytes(score: i64) -> [u8; 8] {
    ((score as u64) ^ (1u64 << 63)).to_be_bytes()
}

pub(crate) fn score_from_bytes(b: &[u8]) -> Result<i64> {
    Ok((u64_be_at(b, 0)? ^ (1u64 << 63)) as i64)
}

pub(crate) fn zidx_key(tb: &[u8], score: i64, ek: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(tb.len() + 9 + ek.len());
    v.extend_from_slice(tb);
    v.push(0);
    v.extend_from_slice(&score_bytes(score));
    v.extend_from_slice(ek);
    v
}

/// `exp` key: expiry big-endian (so the index is in time order), kind, reference.
pub(crate) fn exp_key(exp: u64, kind: u8, reference: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + reference.len());
    v.extend_from_slice(&exp.to_be_bytes());
    v.push(kind);
    v.extend_from_slice(reference);
    v
}

/// `cexp` key: expiry big-endian, ekey.
pub(crate) fn cexp_key(exp: u64, ek: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + ek.len());
    v.extend_from_slice(&exp.to_be_bytes());
    v.extend_from_slice(ek);
    v
}

// ---- values

/// `[klen u32, key]` (long keys only) then the payload: the variable part of every value.
pub(crate) struct Tail<'a> {
    pub full: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

pub(crate) fn tail_len(full: Option<&[u8]>, payload: usize) -> usize {
    full.map_or(0, |k| 4 + k.len()) + payload
}

/// Fills `out` (exactly [`tail_len`] bytes).
pub(crate) fn write_tail(out: &mut [u8], full: Option<&[u8]>, payload: &[u8]) {
    let mut at = 0;
    if let Some(k) = full {
        out[..4].copy_from_slice(&(k.len() as u32).to_le_bytes());
        out[4..4 + k.len()].copy_from_slice(k);
        at = 4 + k.len();
    }
    out[at..at + payload.len()].copy_from_slice(payload);
}

pub(crate) fn read_tail(v: &[u8], long: bool) -> Result<Tail<'_>> {
    if !long {
        return Ok(Tail {
            full: None,
            payload: v,
        });
    }
    let klen = u32_at(v, 0)? as usize;
    let full = v.get(4..4 + klen).ok_or_else(corrupt)?;
    let payload = v.get(4 + klen..).ok_or_else(corrupt)?;
    Ok(Tail {
        full: Some(full),
        payload,
    })
}

/// A decoded persistent record (or `zidx` value, whose payload is empty).
pub(crate) struct Rec<'a> {
    pub ver: u32,
    pub exp: u64,
    pub full: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

impl<'a> Rec<'a> {
    /// The real key: the full key for long keys, else the ekey itself.
    pub fn key(&self, ek: &'a [u8]) -> &'a [u8] {
        self.full.unwrap_or(ek)
    }
}

pub(crate) fn rec_len(full: Option<&[u8]>, payload: usize) -> usize {
    REC_HEAD + tail_len(full, payload)
}

pub(crate) fn write_rec(out: &mut [u8], ver: u32, exp: u64, full: Option<&[u8]>, payload: &[u8]) {
    out[..4].copy_from_slice(&ver.to_le_bytes());
    out[4..12].copy_from_slice(&exp.to_le_bytes());
    write_tail(&mut out[REC_HEAD..], full, payload);
}

pub(crate) fn read_rec(v: &[u8], long: bool) -> Result<Rec<'_>> {
    let ver = u32_at(v, 0)?;
    let exp = u64_at(v, 4)?;
    let t = read_tail(v.get(REC_HEAD..).ok_or_else(corrupt)?, long)?;
    Ok(Rec {
        ver,
        exp,
        full: t.full,
        payload: t.payload,
    })
}

// ---- versions and time

/// Live at `now` (expiry 0 = never expires).
pub(crate) fn live(exp: u64, now: u64) -> bool {
    exp == 0 || now < exp
}

/// Expiry of a write made at `now` with `ttl` seconds (0 = none).
pub(crate) fn expiry(ttl: u32, now: u64) -> u64 {
    if ttl == 0 {
        0
    } else {
        now.saturating_add(ttl as u64 * 1000)
    }
}

/// Version after a write; `current` 0 = the record is (logically) new.
pub(crate) fn next_ver(current: u32) -> u32 {
    if current == 0 || current >= MAX_VER {
        1
    } else {
        current + 1
    }
}

// ---- statistics and footprints

pub(crate) fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to).saturating_mul(to)
}

pub(crate) fn usage_add(u: &mut Usage, bytes: u64) {
    u.count += 1;
    u.size += bytes;
    u.capacity += round_up(bytes, 1024);
}

pub(crate) fn usage_sub(u: &mut Usage, bytes: u64) {
    u.count = u.count.saturating_sub(1);
    u.size = u.size.saturating_sub(bytes);
    u.capacity = u.capacity.saturating_sub(round_up(bytes, 1024));
}

/// Bytes one LMDB entry is charged against `map_size`: key, value and node overhead; a value
/// too big for a leaf page lives on whole overflow pages, so it is charged whole pages. The
/// same lengths give the same charge on insert and removal, which keeps the counter exact.
pub(crate) fn entry_fp(psize: u64, klen: usize, vlen: usize) -> u64 {
    let (k, v) = (klen as u64, vlen as u64);
    if k + v + 8 > psize / 2 {
        k + 16 + round_up(v + 16, psize)
    } else {
        k + v + 16
    }
}

/// Charge of a plain kv record: its entry and its expiry index entry.
pub(crate) fn kv_fp(psize: u64, ek_len: usize, stored: usize, exp: u64) -> u64 {
    let mut fp = entry_fp(psize, ek_len, stored);
    if exp != 0 {
        fp += entry_fp(psize, 9 + ek_len, 0);
    }
    fp
}

/// Charge of a table member: its entry, its score index entry (sorted sets; the index value is
/// the record minus the 8-byte score) and its expiry index entry.
pub(crate) fn member_fp(
    psize: u64,
    kind: TableType,
    mkey_len: usize,
    stored: usize,
    exp: u64,
) -> u64 {
    let mut fp = entry_fp(psize, mkey_len, stored);
    if kind == TableType::SortedSet {
        fp += entry_fp(psize, mkey_len + 8, stored.saturating_sub(8));
    }
    if exp != 0 {
        fp += entry_fp(psize, 9 + mkey_len, 0);
    }
    fp
}

/// Charge of a table's meta entry.
pub(crate) fn meta_fp(psize: u64, tb_len: usize) -> u64 {
    entry_fp(psize, tb_len, META_LEN)
}

// ---- table meta

pub(crate) const META_LEN: usize = 41;

/// Per-table record in `tbl`: type, statistics, and what decides cheaply whether the table is
/// alive: members without expiry, and an upper bound of the expiries of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableMeta {
    pub kind: TableType,
    /// Members stored, expired-but-not-purged included.
    pub count: u64,
    /// Σ key + value (hash tables only).
    pub size: u64,
    pub cap: u64,
    /// Members without expiry.
    pub permanent: u64,
    /// No member expires later than this (it only grows while the table exists).
    pub max_exp: u64,
}

impl TableMeta {
    pub fn new(kind: TableType) -> TableMeta {
        TableMeta {
            kind,
            count: 0,
            size: 0,
            cap: 0,
            permanent: 0,
            max_exp: 0,
        }
    }

    pub fn encode(&self) -> [u8; META_LEN] {
        let mut out = [0u8; META_LEN];
        out[0] = match self.kind {
            TableType::Hash => b'H',
            TableType::Set => b'S',
            TableType::SortedSet => b'Z',
        };
        for (i, n) in [
            self.count,
            self.size,
            self.cap,
            self.permanent,
            self.max_exp,
        ]
        .iter()
        .enumerate()
        {
            out[1 + i * 8..9 + i * 8].copy_from_slice(&n.to_le_bytes());
        }
        out
    }

    pub fn decode(v: &[u8]) -> Result<TableMeta> {
        let kind = match v.first() {
            Some(b'H') => TableType::Hash,
            Some(b'S') => TableType::Set,
            Some(b'Z') => TableType::SortedSet,
            _ => return Err(corrupt()),
        };
        Ok(TableMeta {
            kind,
            count: u64_at(v, 1)?,
            size: u64_at(v, 9)?,
            cap: u64_at(v, 17)?,
            permanent: u64_at(v, 25)?,
            max_exp: u64_at(v, 33)?,
        })
    }

    /// Accounts a member (`bytes` = key + value length) with expiry `exp`.
    pub fn add(&mut self, bytes: u64, exp: u64) {
        self.count += 1;
        if self.kind == TableType::Hash {
            self.size += bytes;
            self.cap += round_up(bytes, 1024);
        }
        if exp == 0 {
            self.permanent += 1;
        } else {
            self.max_exp = self.max_exp.max(exp);
        }
    }

    pub fn sub(&mut self, bytes: u64, exp: u64) {
        self.count = self.count.saturating_sub(1);
        if self.kind == TableType::Hash {
            self.size = self.size.saturating_sub(bytes);
            self.cap = self.cap.saturating_sub(round_up(bytes, 1024));
        }
        if exp == 0 {
            self.permanent = self.permanent.saturating_sub(1);
        }
    }

    pub fn usage(&self) -> Usage {
        Usage {
            count: self.count,
            size: self.size,
            capacity: self.cap,
        }
    }
}

// ---- totals

const TOT_LEN: usize = 64;

/// The `totals` record of `meta`: `/stat` totals, the bytes charged against `map_size`, and
/// the number of table metas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Tot {
    pub kv: Usage,
    pub hash: Usage,
    pub used: u64,
    pub tables: u64,
}

impl Tot {
    pub fn encode(&self) -> [u8; TOT_LEN] {
        let mut out = [0u8; TOT_LEN];
        let ns = [
            self.kv.count,
            self.kv.size,
            self.kv.capacity,
            self.hash.count,
            self.hash.size,
            self.hash.capacity,
            self.used,
            self.tables,
        ];
        for (i, n) in ns.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&n.to_le_bytes());
        }
        out
    }

    pub fn decode(v: &[u8]) -> Result<Tot> {
        let n = |i: usize| u64_at(v, i * 8);
        Ok(Tot {
            kv: Usage {
                count: n(0)?,
                size: n(1)?,
                capacity: n(2)?,
            },
            hash: Usage {
                count: n(3)?,
                size: n(4)?,
                capacity: n(5)?,
            },
            used: n(6)?,
            tables: n(7)?,
        })
    }
}

// ---- numbers stored as text

/// An optional `-` then digits, fitting i64 (`hincrby`'s rule for stored values).
pub(crate) fn parse_i64(b: &[u8]) -> Option<i64> {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse::<i64>().ok()
}

/// `-`? digits (`.` digits)? ([eE] [+-]? digits)?, finite (`hincrbyfloat`'s rule).
pub(crate) fn parse_f64(b: &[u8]) -> Option<f64> {
    fn digits(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    }
    let mut i = usize::from(b.first() == Some(&b'-'));
    let j = digits(b, i);
    if j == i {
        return None;
    }
    i = j;
    if b.get(i) == Some(&b'.') {
        let j = digits(b, i + 1);
        if j == i + 1 {
            return None;
        }
        i = j;
    }
    if matches!(b.get(i), Some(b'e') | Some(b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+') | Some(b'-')) {
            i += 1;
        }
        let j = digits(b, i);
        if j == i {
            return None;
        }
        i = j;
    }
    if i != b.len() {
        return None;
    }
    let f = std::str::from_utf8(b).ok()?.parse::<f64>().ok()?;
    f.is_finite().then_some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        assert_eq!(hash128(b""), [0u8; 16]);
        // mmh3.hash64("hello") = (-3758069500696749310, 6565844092913065241)
        let h = hash128(b"hello");
        assert_eq!(&h[..8], &0xcbd8_a7b3_41bd_9b02u64.to_be_bytes());
        assert_eq!(&h[8..], &0x5b1e_906a_48ae_1d19u64.to_be_bytes());
    }

    #[test]
    fn score_bytes_sort_numerically() {
        let scores = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for w in scores.windows(2) {
            assert!(score_bytes(w[0]) < score_bytes(w[1]));
        }
        for s in scores {
            assert_eq!(score_from_bytes(&score_bytes(s)).ok(), Some(s));
        }
    }

    #[test]
    fn ekeys_keep_order_outside_long_runs() {
        let a = vec![b'a'; 400];
        let mut b = a.clone();
        b.push(b'x');
        let mut c = vec![b'a'; 399];
        c.push(b'b');
        assert_eq!(ekey(&a).len(), 400);
        assert_eq!(ekey(&b).len(), LONG_EKEY);
        assert!(ekey(&a) < ekey(&b));
        assert!(ekey(&b) < ekey(&c));
        assert!(is_long(&ekey(&b)) && !is_long(&ekey(&a)));
    }

    #[test]
    fn records_round_trip() {
        let key = vec![7u8; 500];
        let full = full_if_long(&key);
        let mut buf = vec![0u8; rec_len(full, 3)];
        write_rec(&mut buf, 9, 1234, full, b"abc");
        let r = read_rec(&buf, true).ok();
        let r = r.as_ref();
        assert_eq!(
            r.map(|r| (r.ver, r.exp, r.payload)),
            Some((9, 1234, &b"abc"[..]))
        );
        assert_eq!(r.and_then(|r| r.full), Some(&key[..]));
        assert!(read_rec(&buf[..10], false).is_err());
        assert!(read_rec(&buf[..20], true).is_err());
    }

    #[test]
    fn numbers_parse_by_the_spec_rules() {
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"007"), Some(7));
        for bad in [&b""[..], b"-", b"+1", b"1.5", b" 1", b"9223372036854775808"] {
            assert_eq!(parse_i64(bad), None);
        }
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-2e3"), Some(-2000.0));
        assert_eq!(parse_f64(b"1E+2"), Some(100.0));
        for bad in [
            &b""[..],
            b".5",
            b"1.",
            b"1e",
            b"inf",
            b"NaN",
            b"1e400",
            b"+1",
            b"0x1",
        ] {
            assert_eq!(parse_f64(bad), None);
        }
    }

    #[test]
    fn versions_wrap() {
        assert_eq!(next_ver(0), 1);
        assert_eq!(next_ver(1), 2);
        assert_eq!(next_ver(MAX_VER), 1);
    }
}
