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
//!
//! This file holds the limits and fixed sizes, the readers of fixed-width fields and the input
//! checks; `keys` encodes keys (long keys, composite keys, index keys), `records` the values and
//! the version and expiry arithmetic, `stats` the statistics, footprints, table metas and totals,
//! and `numbers` the numbers stored as text.

mod keys;
mod numbers;
mod records;
mod stats;

pub(crate) use keys::{
    cexp_key, ekey, exp_key, full_if_long, is_long, member_key, score_bytes, score_from_bytes,
    split_member_key, table_prefix, zidx_key,
};
pub(crate) use numbers::{parse_f64, parse_i64};
pub(crate) use records::{
    expiry, live, next_ver, read_rec, read_tail, rec_len, tail_len, write_rec, write_tail, Rec,
};
pub(crate) use stats::{
    entry_fp, kv_fp, member_fp, meta_fp, round_up, usage_add, usage_sub, TableMeta, Tot, META_LEN,
};

use crate::{Result, StorageError};

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
