//! A consensus group's part of the persistent store, for cluster mode: its replication state
//! (opaque bytes in `meta`, written in the pass's transaction so that it commits with the
//! commands it covers) and the records of its slots. An operation like `kv` and `members`: it
//! reads and writes records through `Wtx`, never a command, the journal, the store or a batch.

use lmdb::{Transaction, WriteFlags};

use crate::env::DataCtx;
use crate::txn::{get_opt, Wtx};
use crate::Result;

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
    Ok(txn.put(cx.db.meta, &group_key(group), &state, WriteFlags::empty())?)
}
