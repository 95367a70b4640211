//! What a write knows of the stored record (plain or member) it replaces or removes, read in
//! its check: [`Old`]. Pure: it decodes records (`codec`) and touches no database.

use crate::codec::{live, u64_at, Rec};
use crate::{Result, StorageError, TableType};

/// What replacing or removing a stored record needs to know about it.
#[derive(Clone, Copy)]
pub(crate) struct Old {
    pub ver: u32,
    pub exp: u64,
    /// Stored value length.
    pub stored: usize,
    /// Real key length and payload length (statistics).
    pub klen: usize,
    pub plen: usize,
    /// Sorted-set score (members of `Z` tables).
    pub score: i64,
}

pub(crate) fn old_of(
    rec: &Rec<'_>,
    ek: &[u8],
    stored: usize,
    kind: Option<TableType>,
) -> Result<Old> {
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
pub(crate) fn same_key(rec: &Rec<'_>, long: bool, key: &[u8]) -> bool {
    !long || rec.full == Some(key)
}

pub(crate) const COLLISION: StorageError = StorageError::Invalid("key hash collision");

/// The record a delete removes, from what its check found: `NotFound` unless there is a live
/// one (a hash collision counts as absent), `VersionMismatch` when `ver` is given and is not
/// its version.
pub(crate) fn to_delete(found: Result<Option<Old>>, ver: u32, now: u64) -> Result<Old> {
    let old = match found {
        Ok(Some(o)) if live(o.exp, now) => o,
        Ok(_) | Err(StorageError::Invalid(_)) => return Err(StorageError::NotFound),
        Err(e) => return Err(e),
    };
    if ver != 0 && ver != old.ver {
        return Err(StorageError::VersionMismatch { current: old.ver });
    }
    Ok(old)
}
