//! [`Store`], one per worker process: opening both environments (the flags of each mode, the
//! journal, the named databases) and what is asked of the store outside a pass (sync, usage).
//! The front with `batch`: it knows every layer below and nothing above (no HTTP).

use std::fs;
use std::path::Path;
#[cfg(test)]
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use lmdb::{DatabaseFlags, Environment, EnvironmentFlags};

use crate::cache::load_used;
use crate::env::{open_env, write_map_flags, CacheCtx, CacheDbs, Ctx, DataCtx, Dbs};
use crate::journal::{self, Journal};
use crate::room::{Alloc, Room};
use crate::tables::load_totals;
use crate::{Result, StorageError, StoreOptions};

/// One worker's handle on the persistent and the cache environments. Open it after the fork.
pub struct Store {
    /// `sync_writes on`: every commit ends with an fsync of the meta page.
    pub(crate) sync_writes: bool,
    /// Both environments use `WRITEMAP`: write requests run without nested transactions.
    pub(crate) write_map: bool,
    /// `write_map` with `sync_writes on`: commits are made durable by the journal.
    pub(crate) journal: Option<Journal>,
    /// Folder of the persistent environment.
    pub(crate) data_dir: std::path::PathBuf,
    /// The daemon's fail-stop flag (see `journal::fail_stop`).
    pub(crate) fail_stop: crate::FailStop,
    pub(crate) env: Arc<Environment>,
    pub(crate) cache: Environment,
    pub(crate) db: Dbs,
    pub(crate) cdb: CacheDbs,
    pub(crate) room: Room,
    pub(crate) croom: Room,
    pub(crate) alloc: Alloc,
    pub(crate) calloc: Alloc,
    /// Tests: the next request fails as if by an I/O error once its changes are made.
    #[cfg(test)]
    pub(crate) fail_next_apply: AtomicBool,
    /// Tests: the next commit fails (after its journal record is written).
    #[cfg(test)]
    pub(crate) fail_next_commit: AtomicBool,
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

impl Store {
    /// Opens (creating if needed) both environments and all named databases, and clears reader
    /// slots left by killed processes (`mdb_reader_check`).
    ///
    /// Write locking across processes uses LMDB's process-shared mutex in `lock.mdb`;
    /// lmdb-rkv-sys compiles LMDB from source with `MDB_USE_POSIX_MUTEX` and, on Linux/glibc,
    /// `MDB_USE_ROBUST`, so a worker killed while holding the write lock does not block the
    /// others: the next locker gets `EOWNERDEAD` and LMDB recovers the lock.
    pub fn open(opts: &StoreOptions) -> Result<Store> {
        Store::open_at_boot(opts, journal::boot_id())
    }

    /// [`Store::open`] on the machine boot `boot` (tests simulate a reboot with it).
    pub(crate) fn open_at_boot(opts: &StoreOptions, boot: Option<String>) -> Result<Store> {
        let journaled = opts.write_map && opts.sync_writes;
        let mut flags = EnvironmentFlags::NO_TLS;
        if journaled {
            // RISK: NO_SYNC: commits are not flushed; the journal makes them durable, and the
            // checkpoints (with their pins) keep a consistent snapshot on disk to replay it
            // onto after a machine crash (see `journal`).
            flags |= EnvironmentFlags::NO_SYNC;
        } else if opts.sync_writes {
            // NO_META_SYNC: a commit fsyncs its data pages (under the write lock) but not the
            // meta page; `Batch::commit` then fsyncs once more after the lock is released. So
            // a 200 is still fully on disk, integrity is kept (the meta page is written after
            // its data is durable), and the workers' second fsyncs overlap instead of queueing
            // behind the write lock.
            flags |= EnvironmentFlags::NO_META_SYNC;
        } else {
            // RISK: NO_SYNC: commits are not fsynced (`sync_writes off`); a machine crash loses
            // what the last `Store::sync` did not flush (and, as the kernel flushes pages in
            // any order, may leave the file inconsistent). A process crash loses nothing: the
            // pages are in the page cache, also with WRITE_MAP (a shared map).
            flags |= EnvironmentFlags::NO_SYNC;
        }
        if opts.write_map {
            flags |= write_map_flags();
        }
        if same_dir(&opts.data_dir, &opts.cache_dir) {
            // Both environments would be the same files.
            return Err(StorageError::Invalid("data_dir and cache_dir must differ"));
        }
        let open_data = || -> Result<(Arc<Environment>, Dbs, Room)> {
            let (env, room) = open_env(&opts.data_dir, opts.map_size, flags)?;
            let none = DatabaseFlags::empty();
            let db = Dbs {
                kv: env.create_db(Some("kv"), none)?,
                mem: env.create_db(Some("mem"), none)?,
                zidx: env.create_db(Some("zidx"), none)?,
                tbl: env.create_db(Some("tbl"), none)?,
                exp: env.create_db(Some("exp"), none)?,
                meta: env.create_db(Some("meta"), none)?,
            };
            Ok((Arc::new(env), db, room))
        };
        let (journal, (env, db, room)) = if journaled {
            let (j, opened) = Journal::open(&opts.data_dir, boot, opts.fail_stop, open_data)?;
            (Some(j), opened)
        } else {
            journal::forget(&opts.data_dir);
            journal::open_without_journal(&opts.data_dir.join("journal"), &opts.fail_stop);
            (None, open_data()?)
        };
        // RISK: NO_SYNC | NO_META_SYNC: the cache is volatile by contract and never fsynced;
        // a machine crash may leave it inconsistent, and the master empties it at start.
        let mut cflags =
            EnvironmentFlags::NO_TLS | EnvironmentFlags::NO_SYNC | EnvironmentFlags::NO_META_SYNC;
        if opts.write_map {
            // MAP_ASYNC: should anything sync the cache, an msync that does not wait.
            cflags |= write_map_flags() | EnvironmentFlags::MAP_ASYNC;
        }
        let (cache, croom) = open_env(&opts.cache_dir, opts.cache_size, cflags)?;
        let none = DatabaseFlags::empty();
        let cdb = CacheDbs {
            kv: cache.create_db(Some("ckv"), none)?,
            hash: cache.create_db(Some("chash"), none)?,
            exp: cache.create_db(Some("cexp"), none)?,
            meta: cache.create_db(Some("cmeta"), none)?,
        };
        Ok(Store {
            sync_writes: opts.sync_writes,
            write_map: opts.write_map,
            journal,
            data_dir: opts.data_dir.clone(),
            fail_stop: opts.fail_stop,
            env,
            cache,
            db,
            cdb,
            room,
            croom,
            alloc: Alloc::new(opts.write_map),
            calloc: Alloc::new(opts.write_map),
            #[cfg(test)]
            fail_next_apply: AtomicBool::new(false),
            #[cfg(test)]
            fail_next_commit: AtomicBool::new(false),
        })
    }

    /// Tests: the store as a machine crash leaves it: no last checkpoint.
    #[cfg(test)]
    pub(crate) fn drop_as_in_a_crash(mut self) {
        if let Some(j) = self.journal.as_mut() {
            j.stop_as_in_a_crash();
        }
    }

    /// True once a flush of this daemon failed (see [`crate::FailStop`]): writes are refused
    /// (`StorageError::Stopped`), reads go on from what is committed.
    pub fn fail_stopped(&self) -> bool {
        self.fail_stop.is_tripped()
    }

    /// Flushes the persistent environment to disk (`sync_writes off`: every `sync_interval`).
    /// A failure fail-stops the daemon (see [`crate::FailStop`]): the pages that could not
    /// be written may be dropped, so a later sync that succeeds would not mean they are on
    /// disk.
    pub fn sync(&self) -> Result<()> {
        self.syncer().sync()
    }

    /// What runs [`Store::sync`] from another thread: the worker's periodic flush runs off its
    /// loop, which would otherwise stop serving for as long as the flush takes (hundreds of
    /// milliseconds under a write load: every page written since the last one).
    pub fn syncer(&self) -> Syncer {
        Syncer {
            env: self.env.clone(),
            data_dir: self.data_dir.clone(),
            fail_stop: self.fail_stop,
            journaled: self.journal.is_some(),
        }
    }

    /// The persistent environment, for the queue crate's own databases. Do not begin a write
    /// transaction on it while a [`Batch`](crate::Batch) of this process holds one (LMDB's write lock is not
    /// recursive); use [`Batch::write`](crate::Batch::write).
    pub fn env(&self) -> &lmdb::Environment {
        &self.env
    }

    /// Bytes of the persistent map in use and the configured `map_size`. "In use" is what
    /// writes are charged against `map_size`: the exact sum of `codec::entry_fp` over every
    /// entry of the kv/table databases (the queue crate's databases are bounded by the
    /// physical check of [`Batch::ensure_room`](crate::Batch::ensure_room) instead).
    pub fn map_usage(&self) -> (u64, u64) {
        let used = self
            .env
            .begin_ro_txn()
            .ok()
            .and_then(|t| load_totals(&t, &self.data_ctx()).ok())
            .map_or(0, |t| t.used);
        (used, self.room.limit)
    }

    /// Bytes of the cache charged against `cache_size`, and `cache_size`.
    pub fn cache_usage(&self) -> (u64, u64) {
        let used = self
            .cache
            .begin_ro_txn()
            .ok()
            .and_then(|t| load_used(&t, &self.cache_ctx()).ok())
            .unwrap_or(0);
        (used, self.croom.limit)
    }

    /// Pages in use in the persistent file (allocated minus free), in bytes, and LMDB's real
    /// map size (see `map_usage` for what `map_size` bounds).
    pub fn file_usage(&self) -> Result<(u64, u64)> {
        let info = self.env.info()?;
        let free = self.env.freelist()? as u64;
        let used = (info.last_pgno() as u64 + 1).saturating_sub(free) * self.room.psize;
        Ok((used, self.room.real))
    }

    #[cfg(test)]
    pub(crate) fn cache_env(&self) -> &Environment {
        &self.cache
    }

    /// What the persistent store's operations run with.
    pub(crate) fn data_ctx(&self) -> DataCtx<'_> {
        Ctx {
            env: &self.env,
            db: &self.db,
            room: &self.room,
        }
    }

    /// What the cache's operations run with.
    pub(crate) fn cache_ctx(&self) -> CacheCtx<'_> {
        Ctx {
            env: &self.cache,
            db: &self.cdb,
            room: &self.croom,
        }
    }
}

/// [`Store::sync`] for another thread than the store's ([`Store::syncer`]).
#[derive(Clone)]
pub struct Syncer {
    env: Arc<Environment>,
    data_dir: std::path::PathBuf,
    fail_stop: crate::FailStop,
    journaled: bool,
}

impl Syncer {
    /// Flushes the persistent environment to disk; see [`Store::sync`].
    pub fn sync(&self) -> Result<()> {
        if !self.journaled {
            // A checkpoint stored by a journaled worker of before a reload (`sync_writes` was
            // on) would be wrong to restore once this store has written without pins.
            journal::forget(&self.data_dir);
        }
        let synced = match self.fail_stop.flush_fault() {
            Some(e) => Err(lmdb::Error::Other(e.raw_os_error().unwrap_or(libc::EIO))),
            None => self.env.sync(true),
        };
        if let Err(e) = synced {
            let data = self.data_dir.join("data.mdb");
            let journal = self.data_dir.join("journal");
            self.fail_stop
                .trip("the periodic sync", &data, &e, Some(&journal));
            return Err(e.into());
        }
        Ok(())
    }
}
