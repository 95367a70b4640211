//! Statistics and footprints: the `/stat` counters, the bytes an entry is charged against
//! `map_size`, and the two records that keep them, the per-table meta in `tbl` and the
//! `totals` record of `meta`.

use super::{corrupt, u64_at};
use crate::{Result, TableType, Usage};

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
