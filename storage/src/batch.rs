//! [`Batch`], one per event-loop pass: the pass's two environments ([`PassEnv`]), its one
//! write entry ([`Batch::apply`]), its commit (with the journal record) and the queue crate's
//! raw writes. The reads are in `reads`. The top of
//! the crate with `store`: it knows every layer below, nothing above (no HTTP).

use std::ops::Range;
use std::time::Instant;

use lmdb::Transaction;

use crate::command::{Command, Outcome, Write};
use crate::env::{reader_check, DataCtx, Dbs};
use crate::journal::JournalFlush;
use crate::pass_env::{Failure, PassEnv};
use crate::slots;
use crate::store::Store;
use crate::txn::{has_expired, Ops, Reader, Wtx};
use crate::{CommitStats, Result, StorageError};

/// The reads and writes of one loop pass: every write of the pass goes into one LMDB write
/// transaction per environment that [`Batch::commit`] commits once. Dropping a batch without
/// commit aborts it.
///
/// Without `write_map` each request runs in a nested transaction, so one failing request
/// leaves the others intact. With `write_map` a request's refusals all come before its first
/// change, so a refused request leaves the others intact too; but a request that fails once
/// its changes started (LMDB ran out of map, I/O) poisons the batch: every later read or write
/// of the pass fails with `Lmdb(BadTxn)` and [`Batch::commit`] aborts both transactions and
/// returns the error, so nothing of the pass is written.
///
/// Time is passed in as `now_ms` (unix epoch milliseconds), `ttl` in seconds (0 = none), `ver`
/// as the expected version (0 = unconditional).
pub struct Batch<'s> {
    pub(crate) store: &'s Store,
    pub(crate) data: PassEnv<'s>,
    pub(crate) cache: PassEnv<'s>,
    writes: usize,
    /// Set when a request failed half done (`write_map` only): the LMDB error to report.
    poisoned: Option<lmdb::Error>,
    /// The changes of the pass to the persistent store, for the journal record.
    ops: Ops,
    /// A value was handed out in place ([`Batch::get_for_reply`]): the read transaction must
    /// live as long as the batch.
    pub(crate) lent: bool,
}

impl Store {
    /// Starts the batch of one loop pass. Reads go through a read transaction until the first
    /// write of the pass opens the write transaction; from then on reads see the pass's writes.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            data: PassEnv::data(self),
            cache: PassEnv::cache(self),
            writes: 0,
            poisoned: None,
            ops: Ops::default(),
            lent: false,
        }
    }
}

/// What a poisoned batch reports for the failure that poisoned it.
fn lmdb_error_of(e: &StorageError) -> lmdb::Error {
    match e {
        StorageError::Lmdb(e) => *e,
        StorageError::MapFull => lmdb::Error::MapFull,
        _ => lmdb::Error::BadTxn,
    }
}

impl<'s> Batch<'s> {
    /// `Err` once the batch is poisoned.
    fn usable(&self) -> Result<()> {
        match self.poisoned {
            Some(_) => Err(StorageError::Lmdb(lmdb::Error::BadTxn)),
            None => Ok(()),
        }
    }

    /// Records a failed request; a poisoning one is logged, as every reply of the pass will
    /// turn into an error.
    fn failed(&mut self, f: Failure) -> StorageError {
        if f.poisoned && self.poisoned.is_none() {
            log::error!(
                "a write failed after its first change; the pass will not commit: {}",
                f.error
            );
            self.poisoned = Some(lmdb_error_of(&f.error));
        }
        f.error
    }

    /// The pass's view of the persistent store.
    pub(crate) fn reader(&mut self) -> Result<Reader<'_, 's>> {
        self.usable()?;
        self.data.reader()
    }

    /// The pass's view of the cache.
    pub(crate) fn cache_reader(&mut self) -> Result<Reader<'_, 's>> {
        self.usable()?;
        self.cache.reader()
    }

    /// The one write entry: runs `cmd` against its environment's write transaction (opened
    /// by the first write of the pass), through the request runner of `PassEnv`: check,
    /// then changes, in a nested transaction without `write_map`, else straight in the pass's
    /// transaction, where a failure after the first change poisons the batch.
    ///
    /// Every command counts as a write of the pass ([`Batch::has_writes`]), refused or not,
    /// except the refusals that need no state (an expire with `expires_at` 0, a non-finite
    /// float increment), which come first.
    pub fn apply(&mut self, cmd: &Command<'_>) -> Result<Outcome> {
        if let Some(e) = cmd.write.refusal() {
            return Err(e);
        }
        self.writes += 1;
        self.usable()?;
        let r = if cmd.write.is_cache() {
            self.cache.open_rw(false)?;
            self.cache.run(cmd, None)
        } else {
            self.data.open_rw(self.lent)?;
            let ops = self
                .store
                .journal
                .is_some()
                .then_some((&mut self.ops, &self.store.db));
            self.data.run(cmd, ops)
        };
        r.map_err(|f| self.failed(f))
    }

    /// Stores group `group`'s replication state (opaque bytes: the Raft applied log id and
    /// membership) in this pass's write transaction, so it commits atomically with the
    /// commands applied in the pass (and is journaled with them). It counts as a write of the
    /// pass, and in no statistic. Like a command that fails after its first change, a failure
    /// here poisons a `write_map` pass.
    pub fn set_group_state(&mut self, group: u32, state: &[u8]) -> Result<()> {
        self.data_write(|data, ops, cx| {
            data.run_raw(|rw| slots::store_group_state(&mut Wtx::new(rw, ops), cx, group, state))
        })
    }

    /// A write of the persistent store outside [`Batch::apply`] (a group's state, an import):
    /// counted as a write of the pass, run by `f` on the open write transaction with the
    /// pass's journal record.
    fn data_write<T>(
        &mut self,
        f: impl FnOnce(
            &mut PassEnv<'s>,
            Option<(&mut Ops, &Dbs)>,
            &DataCtx<'s>,
        ) -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        self.writes += 1;
        self.usable()?;
        self.data.open_rw(self.lent)?;
        let store = self.store;
        let cx = store.data_ctx();
        let ops = store
            .journal
            .is_some()
            .then_some((&mut self.ops, &store.db));
        f(&mut self.data, ops, &cx).map_err(|f| self.failed(f))
    }

    /// Group `slots`' records as of this pass's view (its read snapshot, or its write
    /// transaction once the pass wrote), in a self-describing binary form (version-tagged,
    /// CRC'd): every plain record and every table with its members, expired or not, versions
    /// and absolute expiries as stored. `now_ms` is only recorded in it, as the time it was
    /// taken. The cache is not in it. For a consistent snapshot while writes go on, export
    /// from a batch that has not written.
    pub fn export_slots(&mut self, slots: Range<u32>, now_ms: u64) -> Result<Vec<u8>> {
        let cx = self.store.data_ctx();
        slots::export(&self.reader()?, &cx, slots, now_ms)
    }

    /// Replaces every record of `slots` with those of `snapshot` (from
    /// [`Batch::export_slots`] of the same range), in this pass's write transaction: totals,
    /// table statistics and byte accounting end as if the snapshot's records had been written
    /// here; records outside `slots` and the cache are untouched. A snapshot that does not
    /// decode, is of another range or holds a record outside it is refused with `Invalid`
    /// before any change (so is one that does not fit, with `MapFull`).
    pub fn import_slots(&mut self, slots: Range<u32>, snapshot: &[u8]) -> Result<()> {
        self.data_write(|data, ops, cx| {
            data.run_checked(ops, cx, |txn, pass| {
                slots::import(txn, pass, cx, slots, snapshot)
            })
        })
    }

    /// Commits the pass's writes (fsynced when `sync_writes on`) and the cache's. A poisoned
    /// batch aborts both and returns the error that poisoned it.
    pub fn commit(self) -> Result<CommitStats> {
        let (stats, flush) = self.commit_deferred()?;
        if let Some(flush) = flush {
            flush.wait()?;
        }
        Ok(stats)
    }

    /// [`Batch::commit`], except that with the journal the commit's flush is returned instead
    /// of done: the writes are committed (visible to every later transaction) but durable
    /// only once [`JournalFlush::wait`] returns, and no reply may leave before. The caller
    /// may run further passes meanwhile (the flush of a later pass covers the earlier ones).
    pub fn commit_deferred(mut self) -> Result<(CommitStats, Option<JournalFlush>)> {
        let start = Instant::now();
        self.data.end_reads();
        self.cache.end_reads();
        if let Some(e) = self.poisoned {
            // Dropping the write transactions aborts them.
            self.data.abort();
            self.cache.abort();
            return Err(StorageError::Lmdb(e));
        }
        let store = self.store;
        if self.writes > 0 && store.fail_stop.is_tripped() {
            // Nothing more is committed once a flush failed (see `FailStop`).
            self.data.abort();
            self.cache.abort();
            return Err(StorageError::Stopped { committed: false });
        }
        let mut result = Ok(());
        let mut appended = None;
        if let Some(mut rw) = self.data.take_rw() {
            if let (Some(j), false) = (&store.journal, self.ops.is_empty()) {
                match j.append(&mut rw, &self.ops, self.data.grew()) {
                    Ok(a) => appended = Some((j, a)),
                    Err(e) => {
                        // Nothing of the pass is written: both transactions abort on drop. A
                        // full disk (MapFull) is logged, rate-limited, where it is found.
                        if !matches!(e, StorageError::MapFull) {
                            log::error!("could not write the journal: {e}");
                        }
                        self.cache.abort();
                        return Err(e);
                    }
                }
            }
            #[cfg(test)]
            if store
                .fail_next_commit
                .swap(false, std::sync::atomic::Ordering::Relaxed)
            {
                drop(rw);
                if let Some((j, a)) = &appended {
                    j.revoke(a);
                }
                self.cache.abort();
                return Err(StorageError::Lmdb(lmdb::Error::Other(libc::EIO)));
            }
            result = rw.commit().map_err(StorageError::from);
            if let (Err(_), Some((j, a))) = (&result, &appended) {
                j.revoke(a);
            }
        }
        if let Some(crw) = self.cache.take_rw() {
            let r = crw.commit().map_err(StorageError::from);
            if result.is_ok() {
                result = r;
            }
        }
        result?;
        if store.journal.is_none() && store.sync_writes && self.writes > 0 {
            // The meta page of the commit above (see NO_META_SYNC in `Store::open`). The
            // commit is visible to every worker: a failure cannot be undone, so the daemon
            // fail-stops and the pass's replies are not sent (`committed: true`).
            let fail = &store.fail_stop;
            let synced = match fail.flush_fault() {
                Some(e) => Err(StorageError::Lmdb(lmdb::Error::Other(
                    e.raw_os_error().unwrap_or(libc::EIO),
                ))),
                None => store.env.sync(true).map_err(StorageError::from),
            };
            if let Err(e) = synced {
                let data = store.data_dir.join("data.mdb");
                let journal = store.data_dir.join("journal");
                fail.trip("the commit sync", &data, &e, Some(&journal));
            }
            if fail.is_tripped() {
                return Err(StorageError::Stopped { committed: true });
            }
        }
        let micros = if self.writes == 0 {
            0
        } else {
            start.elapsed().as_micros() as u64
        };
        let (map_full, disk_full) = crate::room::take_refusals();
        let stats = CommitStats {
            writes: self.writes,
            micros,
            map_full,
            disk_full,
        };
        Ok((stats, appended.map(|(j, a)| a.flush(j))))
    }

    /// True once a write of this pass has been attempted (the replies of this pass must then
    /// wait for [`Batch::commit`]).
    pub fn has_writes(&self) -> bool {
        self.writes > 0
    }

    /// Removes at most `max` expired records (persistent store and cache); returns how many.
    /// Opens a write transaction only when something has expired, so the call every worker
    /// makes every second costs one cursor read per environment otherwise.
    pub fn purge_expired(&mut self, now_ms: u64, max: usize) -> Result<usize> {
        let mut n = 0;
        let s = self.store;
        if s.fail_stop.is_tripped() {
            // Nothing commits any more: a purge would turn the pass's replies into 503s.
            return Ok(0);
        }
        // The periodic call is also the moment to free reader slots of killed workers.
        for (env, what) in [(&*s.env, "data"), (&s.cache, "cache")] {
            if let Err(e) = reader_check(env, what) {
                log::warn!("{what}: reader check failed: {e}");
            }
        }
        let purged = |o: Outcome| match o {
            Outcome::Purged(n) => n,
            _ => 0,
        };
        if max > 0 && has_expired(&self.reader()?, s.db.exp, now_ms)? {
            let write = Write::PurgeExpired { max };
            n += purged(self.apply(&Command { now_ms, write })?);
        }
        if n < max && has_expired(&self.cache_reader()?, s.cdb.exp, now_ms)? {
            let write = Write::CachePurgeExpired { max: max - n };
            n += purged(self.apply(&Command { now_ms, write })?);
        }
        Ok(n)
    }

    /// Whether a record of the persistent store in `slots` has expired at `now_ms` (a
    /// consensus group's leader asks before proposing its purge, `Write::PurgeExpiredSlots`).
    pub fn has_expired_in_slots(
        &mut self,
        slots: std::ops::Range<u32>,
        now_ms: u64,
    ) -> Result<bool> {
        let s = self.store;
        let cx = s.data_ctx();
        crate::purge::has_expired_in(&self.reader()?, &cx, now_ms, &slots)
    }

    // ---- for the queue crate
    /// Runs `f` in a nested write transaction of this pass: on `Err` only `f`'s changes are
    /// undone and the pass's other writes stay.
    ///
    /// With `write_map` there are no nested transactions: `f` runs straight in the pass's
    /// transaction and, as nothing tells what it changed before failing, an `Err` poisons the
    /// batch (the pass commits nothing). The queue crate needs `write_map` off.
    ///
    /// The queue's records are the one write outside [`Command`]: they live in the queue's own
    /// databases, in its own codec, and only in mq mode, where `write_map` is off and a nested
    /// transaction undoes a failed closure alone; nothing else may write through here.
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&mut lmdb::RwTransaction<'_>) -> Result<T>,
    ) -> Result<T> {
        self.writes += 1;
        self.usable()?;
        self.data.open_rw(self.lent)?;
        self.data.run_raw(f).map_err(|f| self.failed(f))
    }

    /// For the queue crate, before a write that adds about `bytes`: `MapFull` when the pages in
    /// use (allocated minus free, as of the last commit) plus this pass's charged growth plus
    /// `bytes` would pass `map_size`. The queue's data is not in the kv byte count, so this
    /// physical check is what bounds it. Deletes need no check.
    pub fn ensure_room(&mut self, bytes: u64) -> Result<()> {
        self.usable()?;
        self.data.open_rw(self.lent)?;
        self.data.ensure_room(bytes)
    }
}
