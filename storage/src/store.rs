//! [`Store`] (one per worker process) and [`Batch`] (one per event-loop pass): environments,
//! transactions of a pass, capacity. The operations themselves are in `data`, `list`, `cache`.
//!
//! # Two ways to run a write request
//!
//! Every write operation is split in two: a check that only reads (it gets `&RwTransaction`,
//! so it cannot change anything) and decides every refusal (`NotFound`, `VersionMismatch`,
//! `WrongType`, `NotNumeric`, `TooLarge`, `Invalid`, and `MapFull` from the byte accounting or
//! the table limit), then an [`Apply`] step that makes the changes and can only fail the way
//! LMDB fails (a real `MDB_MAP_FULL`, I/O).
//!
//! - `write_map` off: each request runs in a nested transaction of the pass, so any failure
//!   undoes that request alone.
//! - `write_map` on (`StoreOptions::write_map`, LMDB's `MDB_WRITEMAP`, which has no nested
//!   transactions): each request runs straight in the pass's transaction. A refused check has
//!   changed nothing, so the pass goes on; a failure once the changes started leaves the
//!   request half done, so the batch is poisoned: every later read or write of the pass fails
//!   at once and [`Batch::commit`] aborts and returns an error (the worker answers the whole
//!   pass with 500).
//!
//! # Files with `write_map`
//!
//! LMDB extends `data.mdb` (and the cache's) to its whole map size when it opens with
//! `WRITEMAP`, [`real_map_size`] of the configured limit: with the default `map_size 64g`, a
//! 128 GiB + 64 MiB file (the default `cache_size 2g`: 4 GiB + 64 MiB). The file is sparse:
//! `ls -l` shows that size, `du` shows the blocks really used (the pages in use plus up to
//! 64 MiB allocated ahead, see below), and copies need a sparse-aware tool (`cp` is one,
//! `rsync -S`, `tar -S`; `mdb_copy` writes only the pages in use). The file never shrinks,
//! not even for a smaller `map_size` later (see `map_size_for`). The file-size limit
//! (`ulimit -f`) must allow it, which [`Store::open`] checks.
//!
//! Writing into a hole of a sparse file through the map needs a free block on the spot, and a
//! full disk would then kill the worker with `SIGBUS` instead of refusing the write. So before
//! a request's first change the file's blocks are allocated (`fallocate`) a margin past the
//! pages in use, and the request is refused with `MapFull` when the disk cannot give them.
//!
//! The maps are opened without readahead (see `write_map_flags`): a store write through the map
//! dirties a whole page-cache folio, and readahead would make those folios large.

use std::borrow::Cow;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use lmdb::{
    Database, DatabaseFlags, Environment, EnvironmentFlags, RoTransaction, RwTransaction,
    Transaction, WriteFlags,
};

use crate::codec::{self, Tot};
use crate::journal::{self, Journal, Ops};
use crate::*;

/// Named databases of the persistent environment (layouts in `codec`).
#[derive(Clone, Copy)]
pub(crate) struct Dbs {
    pub kv: Database,
    pub mem: Database,
    pub zidx: Database,
    pub tbl: Database,
    pub exp: Database,
    pub meta: Database,
}

impl Dbs {
    /// The databases in the order of their journal tags (never reorder: tags are on disk).
    pub(crate) fn by_tag(&self) -> [Database; 6] {
        [self.kv, self.mem, self.zidx, self.tbl, self.exp, self.meta]
    }

    /// The journal tag of `db` (a database of this environment).
    fn tag_of(&self, db: Database) -> u8 {
        let tag = self.by_tag().iter().position(|d| d.dbi() == db.dbi());
        debug_assert!(tag.is_some(), "a database outside Dbs");
        tag.map_or(u8::MAX, |t| t as u8)
    }
}

/// Named databases of the cache environment.
#[derive(Clone, Copy)]
pub(crate) struct CacheDbs {
    pub kv: Database,
    pub hash: Database,
    pub exp: Database,
    pub meta: Database,
}

/// Room of one environment. `limit` is what the operator configured (`map_size`,
/// `cache_size`); writes are refused once the bytes charged against it (`codec::entry_fp`,
/// kept exactly in the environment itself) would pass it. LMDB's real map is larger
/// ([`real_map_size`]) so that deletes, copy-on-write and commits always find pages, and
/// `guard` stops growth on the physical side too, should pages be unusually empty.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Room {
    pub limit: u64,
    pub real: u64,
    pub guard: u64,
    pub psize: u64,
    /// LMDB's map size as opened (`real`, or the file's size when that is larger).
    pub map: u64,
}

/// LMDB's map size for a configured limit: twice the limit (B-tree pages are on average ~70%
/// full, so the data charged against `limit` needs up to ~1.5x in pages) plus 64 MiB for
/// copy-on-write of a pass and the free-list. Without `WRITEMAP` it is only address space and
/// LMDB grows the file as pages are used; with `WRITEMAP` it is also the (sparse) file's size.
fn real_map_size(limit: u64) -> u64 {
    codec::round_up(limit.saturating_mul(2).saturating_add(64 << 20), 1 << 16)
}

/// Capacity bookkeeping of one environment during a pass. The high-water mark and the pages in
/// use are those of the last commit: a pass holds the environment's write lock, so nothing else
/// commits while it runs, and they are read at most once per pass.
#[derive(Default)]
pub(crate) struct Pass {
    /// Bytes charged by this pass's applied writes so far.
    growth: u64,
    high_water: Option<u64>,
    in_use: Option<u64>,
}

impl Pass {
    /// Refuses growth the environment has no room for; else charges it to the pass. `used` is
    /// the environment's charged bytes before this write.
    pub fn charge(&mut self, env: &Environment, room: &Room, used: u64, growth: u64) -> Result<()> {
        if growth == 0 {
            return Ok(());
        }
        if used.saturating_add(growth) > room.limit {
            return Err(StorageError::MapFull);
        }
        self.physical(env, room, room.guard, growth)?;
        self.growth += growth;
        Ok(())
    }

    /// The end of the pages in use of the file, as of the last commit.
    fn high_water(&mut self, env: &Environment, room: &Room) -> Result<u64> {
        match self.high_water {
            Some(hw) => Ok(hw),
            None => {
                let info = env.info()?;
                let hw = (info.last_pgno() as u64 + 1) * room.psize;
                self.high_water = Some(hw);
                Ok(hw)
            }
        }
    }

    /// Checks that the pages in use plus the pass's growth plus `growth` stay within `bound`.
    /// The free-list is only read when the file's high-water mark is that close.
    fn physical(&mut self, env: &Environment, room: &Room, bound: u64, growth: u64) -> Result<()> {
        let hw = self.high_water(env, room)?;
        let want = self.growth.saturating_add(growth);
        if hw.saturating_add(want) <= bound {
            return Ok(());
        }
        let in_use = match self.in_use {
            Some(u) => u,
            None => {
                // Free pages are in LMDB's free-list database; this opens a read transaction,
                // fine under NO_TLS while this process holds the write transaction.
                let free = env.freelist()? as u64;
                let u = hw.saturating_sub(free * room.psize);
                self.in_use = Some(u);
                u
            }
        };
        if in_use.saturating_add(want) > bound {
            return Err(StorageError::MapFull);
        }
        Ok(())
    }
}

impl From<lmdb::Error> for StorageError {
    /// The one place LMDB errors are mapped. `NotFound` is only produced where absence is the
    /// answer; lookups that expect absence use `data::get_opt` instead.
    fn from(e: lmdb::Error) -> StorageError {
        match e {
            lmdb::Error::MapFull => StorageError::MapFull,
            lmdb::Error::NotFound => StorageError::NotFound,
            other => StorageError::Lmdb(other),
        }
    }
}

/// One worker's handle on the persistent and the cache environments. Open it after the fork.
pub struct Store {
    /// `sync_writes on`: every commit ends with an fsync of the meta page.
    sync_writes: bool,
    /// Both environments use `WRITEMAP`: write requests run without nested transactions.
    write_map: bool,
    /// `write_map` with `sync_writes on`: commits are made durable by the journal.
    journal: Option<Journal>,
    /// Folder of the persistent environment.
    data_dir: std::path::PathBuf,
    env: Arc<Environment>,
    cache: Environment,
    pub(crate) db: Dbs,
    pub(crate) cdb: CacheDbs,
    pub(crate) room: Room,
    pub(crate) croom: Room,
    alloc: Alloc,
    calloc: Alloc,
    /// Tests: the next request fails as if by an I/O error once its changes are made.
    #[cfg(test)]
    pub(crate) fail_next_apply: AtomicBool,
    /// Tests: the next commit fails (after its journal record is written).
    #[cfg(test)]
    pub(crate) fail_next_commit: AtomicBool,
}

/// Margin of allocated blocks kept past the pages in use of a `WRITEMAP` file, so that pages a
/// pass takes at the end of the file never fall into a hole (see the module docs).
const ALLOC_MARGIN: u64 = 32 << 20;

/// How far this process has had the blocks of a `WRITEMAP` environment's sparse file
/// allocated. Every process keeps its own mark; `fallocate` on blocks another process already
/// allocated is a cheap no-op.
pub(crate) struct Alloc {
    /// Blocks below this file offset are allocated.
    upto: AtomicU64,
    /// `fallocate` is in use: `WRITEMAP` is on and the filesystem supports it.
    on: AtomicBool,
}

impl Alloc {
    fn new(on: bool) -> Alloc {
        Alloc {
            upto: AtomicU64::new(0),
            on: AtomicBool::new(on),
        }
    }

    /// Makes sure the blocks below `need` (capped at the map size) are allocated; `MapFull`
    /// when the disk has no room for them. Called before a request's first change, so a
    /// refusal leaves the pass intact.
    fn ensure(&self, env: &Environment, room: &Room, high_water: u64, need: u64) -> Result<()> {
        if !self.on.load(Ordering::Relaxed) {
            return Ok(());
        }
        let need = need.min(room.map);
        let upto = self.upto.load(Ordering::Relaxed);
        if need <= upto {
            return Ok(());
        }
        // Pages below the high-water mark were written by committed transactions, so they
        // have their blocks; a margin past `need` keeps this call rare.
        let from = upto.max(high_water).min(need);
        let to = codec::round_up(need.saturating_add(ALLOC_MARGIN), room.psize).min(room.map);
        let mut fd: libc::c_int = -1;
        // SAFETY: `env.env()` is the open environment owned by `env`; `fd` is a valid
        // out-pointer.
        let rc = unsafe { lmdb_sys::mdb_env_get_fd(env.env(), &mut fd) };
        if rc != 0 {
            return Err(lmdb::Error::from_err_code(rc).into());
        }
        loop {
            // SAFETY: `fd` is the environment's open data file descriptor; mode 0 only
            // allocates blocks of a range inside the file (LMDB sized it to `room.map`).
            let r =
                unsafe { libc::fallocate(fd, 0, from as libc::off_t, (to - from) as libc::off_t) };
            if r == 0 {
                self.upto.store(to, Ordering::Relaxed);
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOSPC) | Some(libc::EDQUOT) => return Err(StorageError::MapFull),
                Some(libc::EOPNOTSUPP) => {
                    // A filesystem without fallocate (holes are then filled at fault time,
                    // and a full disk means SIGBUS): keep working, say it once.
                    log::warn!(
                        "fallocate is not supported here: with write_map, a full disk stops \
                         the worker with SIGBUS instead of refusing writes"
                    );
                    self.on.store(false, Ordering::Relaxed);
                    return Ok(());
                }
                _ => return Err(io_error(e)),
            }
        }
    }
}

pub(crate) fn io_error(e: std::io::Error) -> StorageError {
    StorageError::Lmdb(lmdb::Error::Other(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// Clears the reader slots of processes that died inside a read transaction (a killed worker),
/// which would otherwise pin old pages and make the file grow.
fn reader_check(env: &Environment, what: &str) -> Result<()> {
    let mut dead: libc::c_int = 0;
    // SAFETY: `env.env()` is the open environment owned by `env`, alive for this call;
    // `dead` is a valid out-pointer.
    let rc = unsafe { lmdb_sys::mdb_reader_check(env.env(), &mut dead) };
    if rc != 0 {
        return Err(lmdb::Error::from_err_code(rc).into());
    }
    if dead > 0 {
        log::info!("{what}: cleared {dead} reader slot(s) of dead processes");
    }
    Ok(())
}

/// LMDB's map size for an environment: `real`, and with `WRITEMAP` never less than the data
/// file already is. LMDB `ftruncate`s the file to its map size when it opens with `WRITEMAP`:
/// a smaller `map_size` after a reload must not shrink the file under the old workers, whose
/// larger maps would then fault (`SIGBUS`) on pages past the new end.
fn map_size_for(dir: &Path, real: u64, write_map: bool) -> Result<u64> {
    if !write_map {
        return Ok(real);
    }
    let file = match fs::metadata(dir.join("data.mdb")) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io_error(e)),
    };
    let map = real.max(codec::round_up(file, 1 << 16));
    // A file-size limit below the map would make the `ftruncate` fail with SIGXFSZ.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer for getrlimit.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim) };
    if rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < map {
        return Err(StorageError::Invalid(
            "the file-size limit (ulimit -f) is below the map file write_map needs",
        ));
    }
    Ok(map)
}

/// Opens (creating) an environment in `dir` and clears reader slots of dead processes.
fn open_env(dir: &Path, limit: u64, flags: EnvironmentFlags) -> Result<(Environment, Room)> {
    fs::create_dir_all(dir).map_err(io_error)?;
    let real = real_map_size(limit);
    let map_bytes = map_size_for(dir, real, flags.contains(EnvironmentFlags::WRITE_MAP))?;
    let map =
        usize::try_from(map_bytes).map_err(|_| StorageError::Invalid("map size too large"))?;
    let env = Environment::new()
        // Room for the queue crate's own databases.
        .set_max_dbs(32)
        // NO_TLS ties reader slots to transactions, and every worker may hold a few at once.
        .set_max_readers(1024)
        .set_map_size(map)
        .set_flags(flags)
        .open(dir)?;
    reader_check(&env, &dir.display().to_string())?;
    let psize = env.stat()?.page_size() as u64;
    let room = Room {
        limit,
        real,
        guard: real / 4 * 3,
        psize,
        map: map_bytes,
    };
    Ok((env, room))
}

/// WRITE_MAP, and with it NO_READAHEAD (`madvise(MADV_RANDOM)` on the map). A write through
/// the map dirties the whole page-cache folio it lands in, and the kernel writes every dirty
/// folio whole; readahead fills the cache with large folios (ext4 has them since Linux 6.16),
/// so one 4 KiB page of LMDB could cost a 64 KiB+ write at the next msync (measured: 19 MiB
/// written per commit of 40 puts instead of 330 KiB). Without readahead a fault brings in one
/// page. `pwrite` (no WRITE_MAP) dirties only the blocks it writes, so that mode keeps it.
fn write_map_flags() -> EnvironmentFlags {
    EnvironmentFlags::WRITE_MAP | EnvironmentFlags::NO_READAHEAD
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
            let (j, opened) = Journal::open(&opts.data_dir, boot, open_data)?;
            (Some(j), opened)
        } else {
            journal::forget(&opts.data_dir);
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

    /// Starts the batch of one loop pass. Reads go through a read transaction until the first
    /// write of the pass opens the write transaction; from then on reads see the pass's writes.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            ro: None,
            rw: None,
            cro: None,
            crw: None,
            writes: 0,
            pass: Pass::default(),
            cpass: Pass::default(),
            poisoned: None,
            ops: Ops::default(),
            lent: false,
        }
    }

    /// Flushes the persistent environment to disk (`sync_writes off`: every `sync_interval`).
    pub fn sync(&self) -> Result<()> {
        if self.journal.is_none() {
            // A checkpoint stored by a journaled worker of before a reload (`sync_writes` was
            // on) would be wrong to restore once this store has written without pins.
            journal::forget(&self.data_dir);
        }
        Ok(self.env.sync(true)?)
    }

    /// The persistent environment, for the queue crate's own databases. Do not begin a write
    /// transaction on it while a [`Batch`] of this process holds one (LMDB's write lock is not
    /// recursive); use [`Batch::write`].
    pub fn env(&self) -> &lmdb::Environment {
        &self.env
    }

    /// Bytes of the persistent map in use and the configured `map_size`. "In use" is what
    /// writes are charged against `map_size`: the exact sum of `codec::entry_fp` over every
    /// entry of the kv/table databases (the queue crate's databases are bounded by the
    /// physical check of [`Batch::ensure_room`] instead).
    pub fn map_usage(&self) -> (u64, u64) {
        let used = self
            .env
            .begin_ro_txn()
            .ok()
            .and_then(|t| crate::data::load_totals(&t, self).ok())
            .map_or(0, |t| t.used);
        (used, self.room.limit)
    }

    /// Bytes of the cache charged against `cache_size`, and `cache_size`.
    pub fn cache_usage(&self) -> (u64, u64) {
        let used = self
            .cache
            .begin_ro_txn()
            .ok()
            .and_then(|t| crate::cache::load_used(&t, self).ok())
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

    pub(crate) fn cache_env(&self) -> &Environment {
        &self.cache
    }
}

/// Begins a transaction; a map grown by another process (after a reload with a larger
/// `map_size`) is adopted once and the begin retried.
pub(crate) fn begin<'e, T>(
    env: &'e Environment,
    f: impl Fn(&'e Environment) -> lmdb::Result<T>,
) -> Result<T> {
    match f(env) {
        Err(lmdb::Error::MapResized) => {
            env.set_map_size(0)?;
            Ok(f(env)?)
        }
        r => Ok(r?),
    }
}

/// A nested transaction of `parent`. lmdb-rkv ignores `mdb_txn_begin`'s result here, so a failed
/// begin shows up as a null handle, which must never reach LMDB (nor `mdb_txn_abort`, which
/// accepts null but the handle is useless).
fn nested<'p>(parent: &'p mut RwTransaction<'_>) -> Result<RwTransaction<'p>> {
    let child = parent.begin_nested_txn()?;
    if child.txn().is_null() {
        std::mem::forget(child);
        return Err(StorageError::Lmdb(lmdb::Error::BadTxn));
    }
    Ok(child)
}

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
/// `apply` can only fail the way LMDB fails (a real `MDB_MAP_FULL`, I/O).
pub(crate) trait Apply {
    type Out;
    fn apply(self, txn: &mut Wtx<'_, '_>, s: &Store) -> Result<Self::Out>;
}

/// The write transaction as a request's changes see it: every put and delete also goes into
/// the pass's journal record when there is one (`sync_writes on` with `write_map`), so all
/// changes to the persistent store must go through it.
pub(crate) struct Wtx<'a, 'e> {
    txn: &'a mut RwTransaction<'e>,
    ops: Option<(&'a mut Ops, &'a Dbs)>,
}

impl<'a, 'e> Wtx<'a, 'e> {
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

    /// Stores a value of `len` bytes that `fill` writes in place.
    pub(crate) fn put_with(
        &mut self,
        db: Database,
        key: &[u8],
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> lmdb::Result<()> {
        let buf = self.txn.reserve(db, &key, len, WriteFlags::empty())?;
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

/// A plan whose answer is `F` of what `P` answers.
pub(crate) struct Map<P, F>(pub P, pub F);

impl<P: Apply, T, F: FnOnce(P::Out) -> T> Apply for Map<P, F> {
    type Out = T;
    fn apply(self, txn: &mut Wtx<'_, '_>, s: &Store) -> Result<T> {
        let out = self.0.apply(txn, s)?;
        Ok((self.1)(out))
    }
}

/// One environment as a request runner needs it.
struct Side<'s> {
    env: &'s Environment,
    room: &'s Room,
    alloc: &'s Alloc,
    /// A database of the environment, to ask a transaction whether LMDB flagged it unusable.
    probe: Database,
}

/// How a request failed: `poisoned` when the pass's transaction can no longer commit.
struct Failure {
    error: StorageError,
    poisoned: bool,
}

impl Failure {
    fn kept(error: StorageError) -> Failure {
        Failure {
            error,
            poisoned: false,
        }
    }
}

/// Whether LMDB has flagged `txn` unusable (`MDB_TXN_ERROR`, set by a failed call, also by
/// some failed reads such as a corrupted page): every call then answers `MDB_BAD_TXN`.
fn txn_failed(txn: &RwTransaction<'_>, probe: Database) -> bool {
    matches!(txn.get(probe, &TOTALS_PROBE), Err(lmdb::Error::BadTxn))
}

/// Any key: only the transaction's state matters to the probe.
const TOTALS_PROBE: &[u8] = b"totals";

/// Before a `write_map` request's changes: blocks of the file for every page the pass may take
/// past the high-water mark (twice the bytes charged so far, plus the margin `Alloc` keeps).
fn reserve_blocks(side: &Side<'_>, pass: &mut Pass) -> Result<()> {
    let hw = pass.high_water(side.env, side.room)?;
    let need = hw
        .saturating_add(pass.growth.saturating_mul(2))
        .saturating_add(ALLOC_MARGIN);
    side.alloc.ensure(side.env, side.room, hw, need)
}

/// Makes the changes of a checked request.
fn apply<P: Apply>(plan: P, txn: &mut Wtx<'_, '_>, store: &Store) -> Result<P::Out> {
    let out = plan.apply(txn, store)?;
    #[cfg(test)]
    if store.fail_next_apply.swap(false, Ordering::Relaxed) {
        return Err(StorageError::Lmdb(lmdb::Error::Other(libc::EIO)));
    }
    Ok(out)
}

/// Runs one request against the pass's write transaction `rw`: in a nested transaction
/// without `write_map`, else straight in `rw`, the check first, then the changes.
fn run_request<'s, P: Apply>(
    store: &'s Store,
    side: &Side<'s>,
    rw: &mut RwTransaction<'s>,
    ops: Option<&mut Ops>,
    pass: &mut Pass,
    check: impl FnOnce(&RwTransaction<'_>, &mut Pass, &'s Store) -> Result<P>,
) -> std::result::Result<P::Out, Failure> {
    let growth = pass.growth;
    if !store.write_map {
        // No journal without write_map: a nested transaction's changes are not recorded.
        debug_assert!(ops.is_none());
        let mut txn = nested(rw).map_err(Failure::kept)?;
        let r = check(&txn, pass, store)
            .and_then(|plan| {
                let mut w = Wtx {
                    txn: &mut txn,
                    ops: None,
                };
                apply(plan, &mut w, store)
            })
            .and_then(|v| {
                txn.commit()?;
                Ok(v)
            });
        if r.is_err() {
            pass.growth = growth;
        }
        return r.map_err(Failure::kept);
    }
    let plan = check(rw, pass, store).and_then(|plan| {
        reserve_blocks(side, pass)?;
        Ok(plan)
    });
    let plan = match plan {
        Ok(plan) => plan,
        Err(error) => {
            pass.growth = growth;
            // A refusal changed nothing; only an LMDB failure of a read may have flagged the
            // transaction.
            let poisoned = matches!(error, StorageError::Lmdb(_)) && txn_failed(rw, side.probe);
            return Err(Failure { error, poisoned });
        }
    };
    let mut w = Wtx {
        txn: rw,
        ops: ops.map(|o| (o, &store.db)),
    };
    apply(plan, &mut w, store).map_err(|error| Failure {
        error,
        poisoned: true,
    })
}

/// The flush that makes a committed pass durable (see [`Batch::commit_deferred`]). It can be
/// sent to another thread.
pub struct JournalFlush {
    segment: Arc<std::fs::File>,
}

impl JournalFlush {
    /// `fdatasync`s the journal segment of the commit: that commit and every earlier one (of
    /// any worker) are then on disk.
    pub fn wait(self) -> Result<()> {
        self.segment.sync_data().map_err(|e| {
            log::error!("could not flush the journal: {e}");
            io_error(e)
        })
    }
}

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
    store: &'s Store,
    ro: Option<RoTransaction<'s>>,
    rw: Option<RwTransaction<'s>>,
    cro: Option<RoTransaction<'s>>,
    crw: Option<RwTransaction<'s>>,
    writes: usize,
    pass: Pass,
    cpass: Pass,
    /// Set when a request failed half done (`write_map` only): the LMDB error to report.
    poisoned: Option<lmdb::Error>,
    /// The changes of the pass to the persistent store, for the journal record.
    ops: Ops,
    /// A value was handed out in place ([`Batch::get_for_reply`]): the read transaction must
    /// live as long as the batch.
    lent: bool,
}

/// A value read in place, in the data file's map, by [`Batch::get_for_reply`]: a pointer and
/// a length, valid until the batch that read it ends (commits or is dropped). Its holder
/// must copy or write out the bytes before then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPlace {
    ptr: *const u8,
    len: usize,
}

/// Bytes that live for ever are always valid (tests of the holders use it).
impl From<&'static [u8]> for InPlace {
    fn from(bytes: &'static [u8]) -> InPlace {
        InPlace {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }
}

impl InPlace {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    ///
    /// # Safety
    /// The batch that returned this value must not have ended yet (see [`InPlace`]).
    pub unsafe fn bytes<'a>(&self) -> &'a [u8] {
        // SAFETY: `ptr`/`len` were a slice of a page of the batch's read snapshot, which
        // LMDB keeps unchanged while that read transaction lives (the caller's promise).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A value for a reply: copied, or in place when large (see [`Batch::get_for_reply`]).
#[derive(Debug)]
pub enum ReplyValue {
    Copied(Vec<u8>),
    InPlace(InPlace),
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

    fn data_side(&self) -> Side<'s> {
        let s = self.store;
        Side {
            env: &s.env,
            room: &s.room,
            alloc: &s.alloc,
            probe: s.db.meta,
        }
    }

    fn cache_side(&self) -> Side<'s> {
        let s = self.store;
        Side {
            env: &s.cache,
            room: &s.croom,
            alloc: &s.calloc,
            probe: s.cdb.meta,
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
    fn reader(&mut self) -> Result<Reader<'_, 's>> {
        self.usable()?;
        if let Some(rw) = &self.rw {
            return Ok(Reader::Rw(rw));
        }
        let ro = match self.ro {
            Some(ref ro) => ro,
            None => self
                .ro
                .insert(begin(&self.store.env, |e| e.begin_ro_txn())?),
        };
        Ok(Reader::Ro(ro))
    }

    fn cache_reader(&mut self) -> Result<Reader<'_, 's>> {
        self.usable()?;
        if let Some(rw) = &self.crw {
            return Ok(Reader::Rw(rw));
        }
        let ro = match self.cro {
            Some(ref ro) => ro,
            None => self
                .cro
                .insert(begin(&self.store.cache, |e| e.begin_ro_txn())?),
        };
        Ok(Reader::Ro(ro))
    }

    /// Opens the pass's write transaction (taking LMDB's write lock, which serialises the
    /// worker processes) unless it is open.
    fn open_rw(&mut self) -> Result<()> {
        if self.rw.is_none() {
            // The read snapshot is older than anything the write transaction sees; drop it so
            // it does not pin old pages, unless a value was lent from it.
            if !self.lent {
                self.ro = None;
            }
            self.rw = Some(begin(&self.store.env, |e| e.begin_rw_txn())?);
            self.pass = Pass::default();
        }
        Ok(())
    }

    fn open_crw(&mut self) -> Result<()> {
        if self.crw.is_none() {
            self.cro = None;
            self.crw = Some(begin(&self.store.cache, |e| e.begin_rw_txn())?);
            self.cpass = Pass::default();
        }
        Ok(())
    }

    /// Runs one write request of the persistent store (see [`run_request`]).
    fn write_op<P: Apply>(
        &mut self,
        check: impl FnOnce(&RwTransaction<'_>, &mut Pass, &'s Store) -> Result<P>,
    ) -> Result<P::Out> {
        self.writes += 1;
        self.usable()?;
        self.open_rw()?;
        let side = self.data_side();
        let Some(rw) = self.rw.as_mut() else {
            return Err(StorageError::Lmdb(lmdb::Error::BadTxn));
        };
        let ops = self.store.journal.is_some().then_some(&mut self.ops);
        match run_request(self.store, &side, rw, ops, &mut self.pass, check) {
            Ok(v) => Ok(v),
            Err(f) => Err(self.failed(f)),
        }
    }

    /// Runs one cache write request (see [`run_request`]).
    fn cache_op<P: Apply>(
        &mut self,
        check: impl FnOnce(&RwTransaction<'_>, &mut Pass, &'s Store) -> Result<P>,
    ) -> Result<P::Out> {
        self.writes += 1;
        self.usable()?;
        self.open_crw()?;
        let side = self.cache_side();
        let Some(rw) = self.crw.as_mut() else {
            return Err(StorageError::Lmdb(lmdb::Error::BadTxn));
        };
        match run_request(self.store, &side, rw, None, &mut self.cpass, check) {
            Ok(v) => Ok(v),
            Err(f) => Err(self.failed(f)),
        }
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
        self.ro = None;
        self.cro = None;
        if let Some(e) = self.poisoned {
            // Dropping the write transactions aborts them.
            self.rw = None;
            self.crw = None;
            return Err(StorageError::Lmdb(e));
        }
        let mut result = Ok(());
        let mut appended = None;
        if let Some(mut rw) = self.rw.take() {
            if let (Some(j), false) = (&self.store.journal, self.ops.is_empty()) {
                match j.append(&mut rw, &self.ops) {
                    Ok(a) => appended = Some((j, a)),
                    Err(e) => {
                        // Nothing of the pass is written: both transactions abort on drop.
                        log::error!("could not write the journal: {e}");
                        self.crw = None;
                        return Err(e);
                    }
                }
            }
            #[cfg(test)]
            if self.store.fail_next_commit.swap(false, Ordering::Relaxed) {
                drop(rw);
                if let Some((j, a)) = &appended {
                    j.revoke(a);
                }
                self.crw = None;
                return Err(StorageError::Lmdb(lmdb::Error::Other(libc::EIO)));
            }
            result = rw.commit().map_err(StorageError::from);
            if let (Err(_), Some((j, a))) = (&result, &appended) {
                j.revoke(a);
            }
        }
        if let Some(crw) = self.crw.take() {
            let r = crw.commit().map_err(StorageError::from);
            if result.is_ok() {
                result = r;
            }
        }
        result?;
        if self.store.journal.is_none() && self.store.sync_writes && self.writes > 0 {
            // The meta page of the commit above (see NO_META_SYNC in `Store::open`).
            self.store.env.sync(true)?;
        }
        let micros = if self.writes == 0 {
            0
        } else {
            start.elapsed().as_micros() as u64
        };
        let stats = CommitStats {
            writes: self.writes,
            micros,
        };
        Ok((
            stats,
            appended.map(|(_, a)| JournalFlush { segment: a.file }),
        ))
    }

    /// True once a write of this pass has been attempted (the replies of this pass must then
    /// wait for [`Batch::commit`]).
    pub fn has_writes(&self) -> bool {
        self.writes > 0
    }

    // ---- plain kv
    /// Stores `val` under `key`: version 1 when new, +1 otherwise; `ttl` replaces the expiry.
    pub fn put(
        &mut self,
        key: &[u8],
        val: &[u8],
        ttl: u32,
        ver: u32,
        now_ms: u64,
    ) -> Result<Written> {
        self.write_op(|t, p, s| data::kv_put(t, p, s, key, val, ttl, ver, now_ms))
    }
    /// The live value and its version; `NotFound` if absent or expired.
    pub fn get(&mut self, key: &[u8], now_ms: u64) -> Result<Record> {
        let s = self.store;
        data::kv_get(&self.reader()?, s, key, now_ms)
    }

    /// [`Batch::get`] for a reply: a value of `in_place_from` bytes or more read before the
    /// pass's first write is not copied but lent in place ([`InPlace`]), so that it is copied
    /// only once, into the socket. After a write the pass reads through its write
    /// transaction, whose pages later writes of the pass may change: then it is copied.
    pub fn get_for_reply(
        &mut self,
        key: &[u8],
        now_ms: u64,
        in_place_from: usize,
    ) -> Result<(u32, ReplyValue)> {
        let s = self.store;
        if self.rw.is_some() {
            let r = data::kv_get(&self.reader()?, s, key, now_ms)?;
            return Ok((r.ver, ReplyValue::Copied(r.value)));
        }
        let reader = self.reader()?;
        let (ver, payload) = data::kv_get_ref(&reader, s, key, now_ms)?;
        if payload.len() < in_place_from {
            return Ok((ver, ReplyValue::Copied(payload.to_vec())));
        }
        let lent = InPlace {
            ptr: payload.as_ptr(),
            len: payload.len(),
        };
        self.lent = true;
        Ok((ver, ReplyValue::InPlace(lent)))
    }
    /// The current version.
    pub fn exist(&mut self, key: &[u8], now_ms: u64) -> Result<u32> {
        let s = self.store;
        data::kv_exist(&self.reader()?, s, key, now_ms)
    }
    /// Deletes a live key; returns the version it had. `NotFound` before any version check.
    pub fn del(&mut self, key: &[u8], ver: u32, now_ms: u64) -> Result<Written> {
        self.write_op(|t, _, s| data::kv_del(t, s, key, ver, now_ms))
    }
    /// Plain kv records by key (kv-api §2.7).
    pub fn keys(&mut self, q: &ListQuery, now_ms: u64) -> Result<Listing> {
        let s = self.store;
        list::keys(&self.reader()?, s, q, now_ms)
    }

    // ---- hash tables
    /// Sets a hash field, creating table `tb` (type H) if needed.
    pub fn hset(
        &mut self,
        tb: &str,
        key: &[u8],
        val: &[u8],
        ttl: u32,
        ver: u32,
        now_ms: u64,
    ) -> Result<Written> {
        self.write_op(|t, p, s| data::hset(t, p, s, tb, key, val, ttl, ver, now_ms))
    }
    /// A live hash field and its version.
    pub fn hget(&mut self, tb: &str, key: &[u8], now_ms: u64) -> Result<Record> {
        let s = self.store;
        let r = self.reader()?;
        let (ver, value) =
            data::member_get(&r, s, tb, TableType::Hash, key, now_ms, |p| p.to_vec())?;
        Ok(Record { ver, value })
    }
    /// The version of a live hash field.
    pub fn hexist(&mut self, tb: &str, key: &[u8], now_ms: u64) -> Result<u32> {
        let s = self.store;
        let r = self.reader()?;
        Ok(data::member_get(&r, s, tb, TableType::Hash, key, now_ms, |_| ())?.0)
    }
    /// Deletes a hash field; the last one removes the table.
    pub fn hdel(&mut self, tb: &str, key: &[u8], ver: u32, now_ms: u64) -> Result<Written> {
        self.write_op(|t, _, s| data::member_del(t, s, tb, TableType::Hash, key, ver, now_ms))
    }
    /// Returns the write and the new value.
    pub fn hincrby(
        &mut self,
        tb: &str,
        key: &[u8],
        delta: i64,
        ttl: u32,
        ver: u32,
        now_ms: u64,
    ) -> Result<(Written, i64)> {
        self.write_op(|t, p, s| data::hincrby(t, p, s, tb, key, delta, ttl, ver, now_ms))
    }
    /// A hash table's fields by key.
    pub fn hkeys(&mut self, tb: &str, q: &ListQuery, now_ms: u64) -> Result<Listing> {
        let s = self.store;
        list::members(&self.reader()?, s, tb, TableType::Hash, q, now_ms)
    }

    // ---- sets
    /// Adds (or rewrites: version +1) a set member, creating table `tb` (type S) if needed.
    pub fn sadd(
        &mut self,
        tb: &str,
        member: &[u8],
        ttl: u32,
        ver: u32,
        now_ms: u64,
    ) -> Result<Written> {
        self.write_op(|t, p, s| data::sadd(t, p, s, tb, member, ttl, ver, now_ms))
    }
    /// Removes a set member; the last one removes the table.
    pub fn srem(&mut self, tb: &str, member: &[u8], ver: u32, now_ms: u64) -> Result<Written> {
        self.write_op(|t, _, s| data::member_del(t, s, tb, TableType::Set, member, ver, now_ms))
    }
    /// The version of a live set member.
    pub fn sismember(&mut self, tb: &str, member: &[u8], now_ms: u64) -> Result<u32> {
        let s = self.store;
        let r = self.reader()?;
        Ok(data::member_get(&r, s, tb, TableType::Set, member, now_ms, |_| ())?.0)
    }
    /// A set's members by key (never values).
    pub fn smembers(&mut self, tb: &str, q: &ListQuery, now_ms: u64) -> Result<Listing> {
        let s = self.store;
        list::members(&self.reader()?, s, tb, TableType::Set, q, now_ms)
    }

    // ---- sorted sets
    /// Returns the write (for a no-op: the current, unchanged version) and the resulting score.
    #[allow(clippy::too_many_arguments)]
    pub fn zadd(
        &mut self,
        tb: &str,
        member: &[u8],
        score: i64,
        mode: ZaddMode,
        ttl: u32,
        ver: u32,
        now_ms: u64,
    ) -> Result<(Written, i64)> {
        self.write_op(|t, p, s| data::zadd(t, p, s, tb, member, score, mode, ttl, ver, now_ms))
    }
    /// Removes a sorted-set member; the last one removes the table.
    pub fn zrem(&mut self, tb: &str, member: &[u8], ver: u32, now_ms: u64) -> Result<Written> {
        self.write_op(|t, _, s| {
            data::member_del(t, s, tb, TableType::SortedSet, member, ver, now_ms)
        })
    }
    /// The version of a live sorted-set member.
    pub fn zismember(&mut self, tb: &str, member: &[u8], now_ms: u64) -> Result<u32> {
        let s = self.store;
        let r = self.reader()?;
        Ok(data::member_get(&r, s, tb, TableType::SortedSet, member, now_ms, |_| ())?.0)
    }
    /// Version and score.
    pub fn zscore(&mut self, tb: &str, member: &[u8], now_ms: u64) -> Result<(u32, i64)> {
        let s = self.store;
        let r = self.reader()?;
        let (ver, score) = data::member_get(
            &r,
            s,
            tb,
            TableType::SortedSet,
            member,
            now_ms,
            data::score_of,
        )?;
        Ok((ver, score?))
    }
    /// Members by score then key, from rank `q.offset` (no bucket filter).
    pub fn zrange_by_rank(&mut self, tb: &str, q: &ListQuery, now_ms: u64) -> Result<Listing> {
        let s = self.store;
        list::zrange(&self.reader()?, s, tb, None, q, now_ms)
    }
    /// Members with `min <= score <= max`, by score then key (no bucket filter).
    pub fn zrange_by_score(
        &mut self,
        tb: &str,
        min: i64,
        max: i64,
        q: &ListQuery,
        now_ms: u64,
    ) -> Result<Listing> {
        let s = self.store;
        list::zrange(&self.reader()?, s, tb, Some((min, max)), q, now_ms)
    }

    // ---- statistics
    /// `KVPAIR` and `HASHTABLE` totals (may include records expired < 60 s ago).
    pub fn totals(&mut self) -> Result<Totals> {
        let s = self.store;
        let t: Tot = data::load_totals(&self.reader()?, s)?;
        Ok(Totals {
            kv: t.kv,
            hash: t.hash,
        })
    }
    /// One live table's statistics; `NotFound` when it does not exist.
    pub fn table_stat(&mut self, tb: &str, now_ms: u64) -> Result<TableStat> {
        let s = self.store;
        data::table_stat(&self.reader()?, s, tb, now_ms)
    }
    /// Every existing table, by name bytewise.
    pub fn all_tables(&mut self, now_ms: u64) -> Result<Vec<TableStat>> {
        let s = self.store;
        data::all_tables(&self.reader()?, s, now_ms)
    }

    /// Removes at most `max` expired records (persistent store and cache); returns how many.
    /// Opens a write transaction only when something has expired, so the call every worker
    /// makes every second costs one cursor read per environment otherwise.
    pub fn purge_expired(&mut self, now_ms: u64, max: usize) -> Result<usize> {
        let mut n = 0;
        let s = self.store;
        // The periodic call is also the moment to free reader slots of killed workers.
        for (env, what) in [(&*s.env, "data"), (&s.cache, "cache")] {
            if let Err(e) = reader_check(env, what) {
                log::warn!("{what}: reader check failed: {e}");
            }
        }
        if max > 0 && data::has_expired(&self.reader()?, s.db.exp, now_ms)? {
            n += self.write_op(|t, _, s| data::purge(t, s, now_ms, max))?;
        }
        if n < max && data::has_expired(&self.cache_reader()?, s.cdb.exp, now_ms)? {
            n += self.cache_op(|t, _, s| cache::purge(t, s, now_ms, max - n))?;
        }
        Ok(n)
    }

    // ---- cache (volatile, no versions)
    /// Sets a cache string; `ttl` 0 = no expiry (removes an existing one).
    pub fn cache_put(&mut self, key: &[u8], val: &[u8], ttl: u32, now_ms: u64) -> Result<()> {
        self.cache_op(|t, p, s| cache::put(t, p, s, key, val, ttl, now_ms))
    }
    /// A live cache string.
    pub fn cache_get(&mut self, key: &[u8], now_ms: u64) -> Result<Vec<u8>> {
        let s = self.store;
        cache::get(&self.cache_reader()?, s, key, now_ms, |r| {
            r.payload.to_vec()
        })
    }
    /// `Ok` when the cache string is live.
    pub fn cache_exist(&mut self, key: &[u8], now_ms: u64) -> Result<()> {
        let s = self.store;
        cache::get(&self.cache_reader()?, s, key, now_ms, |_| ())
    }
    /// Deletes a live cache string.
    pub fn cache_del(&mut self, key: &[u8], now_ms: u64) -> Result<()> {
        self.cache_op(|t, _, s| cache::del(t, s, key, now_ms))
    }
    /// Seconds left rounded to nearest, or `None` when the key has no expiry.
    pub fn cache_ttl(&mut self, key: &[u8], now_ms: u64) -> Result<Option<u64>> {
        let s = self.store;
        let exp = cache::get(&self.cache_reader()?, s, key, now_ms, |r| r.exp)?;
        Ok((exp != 0).then(|| (exp.saturating_sub(now_ms) + 500) / 1000))
    }
    /// Gives a live cache string a new expiry, `ttl` seconds from `now_ms` (at least 1).
    pub fn cache_expire(&mut self, key: &[u8], ttl: u32, now_ms: u64) -> Result<()> {
        if ttl == 0 {
            return Err(StorageError::Invalid("expire needs a ttl of at least 1 s"));
        }
        self.cache_op(|t, p, s| {
            cache::set_expiry(t, p, s, key, codec::expiry(ttl, now_ms), now_ms, false)
        })
    }
    /// `NotFound` when absent or without expiry.
    pub fn cache_persist(&mut self, key: &[u8], now_ms: u64) -> Result<()> {
        self.cache_op(|t, p, s| cache::set_expiry(t, p, s, key, 0, now_ms, true))
    }
    /// `TooLarge` past 8 MiB.
    pub fn cache_append(&mut self, key: &[u8], val: &[u8], now_ms: u64) -> Result<()> {
        self.cache_op(|t, p, s| cache::append(t, p, s, key, val, now_ms))
    }
    /// Sets a cache hash field.
    pub fn cache_hset(&mut self, tb: &str, key: &[u8], val: &[u8]) -> Result<()> {
        self.cache_op(|t, p, s| cache::hset(t, p, s, tb, key, |_| Ok(Cow::Borrowed(val))))
    }
    /// A cache hash field.
    pub fn cache_hget(&mut self, tb: &str, key: &[u8]) -> Result<Vec<u8>> {
        let s = self.store;
        cache::hget(&self.cache_reader()?, s, tb, key, |v| v.to_vec())
    }
    /// Deletes a cache hash field.
    pub fn cache_hdel(&mut self, tb: &str, key: &[u8]) -> Result<()> {
        self.cache_op(|t, _, s| cache::hdel(t, s, tb, key))
    }
    /// `Ok` when the cache hash field exists.
    pub fn cache_hexist(&mut self, tb: &str, key: &[u8]) -> Result<()> {
        let s = self.store;
        cache::hget(&self.cache_reader()?, s, tb, key, |_| ())
    }
    /// Adds `delta` to an integer cache field (absent = 0); `NotNumeric` on a non-integer or overflow.
    pub fn cache_hincrby(&mut self, tb: &str, key: &[u8], delta: i64) -> Result<i64> {
        self.cache_op(|t, p, s| {
            let mut out = 0;
            let plan = cache::hset(t, p, s, tb, key, |old| {
                let cur = match old {
                    Some(v) => codec::parse_i64(v).ok_or(StorageError::NotNumeric)?,
                    None => 0,
                };
                out = cur.checked_add(delta).ok_or(StorageError::NotNumeric)?;
                Ok(Cow::Owned(out.to_string().into_bytes()))
            })?;
            Ok(Map(plan, move |()| out))
        })
    }
    /// Adds `delta` to a numeric cache field (absent = 0), stored as Rust prints an `f64`; `NotNumeric` on a non-number or a non-finite result.
    pub fn cache_hincrbyfloat(&mut self, tb: &str, key: &[u8], delta: f64) -> Result<f64> {
        if !delta.is_finite() {
            return Err(StorageError::NotNumeric);
        }
        self.cache_op(|t, p, s| {
            let mut out = 0.0;
            let plan = cache::hset(t, p, s, tb, key, |old| {
                let cur = match old {
                    Some(v) => codec::parse_f64(v).ok_or(StorageError::NotNumeric)?,
                    None => 0.0,
                };
                out = cur + delta;
                if !out.is_finite() {
                    return Err(StorageError::NotNumeric);
                }
                Ok(Cow::Owned(format!("{out}").into_bytes()))
            })?;
            Ok(Map(plan, move |()| out))
        })
    }

    // ---- for the queue crate
    /// Runs `f` in a nested write transaction of this pass: on `Err` only `f`'s changes are
    /// undone and the pass's other writes stay.
    ///
    /// With `write_map` there are no nested transactions: `f` runs straight in the pass's
    /// transaction and, as nothing tells what it changed before failing, an `Err` poisons the
    /// batch (the pass commits nothing). The queue crate needs `write_map` off.
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&mut lmdb::RwTransaction<'_>) -> Result<T>,
    ) -> Result<T> {
        self.writes += 1;
        self.usable()?;
        self.open_rw()?;
        let side = self.data_side();
        let store = self.store;
        let Some(rw) = self.rw.as_mut() else {
            return Err(StorageError::Lmdb(lmdb::Error::BadTxn));
        };
        let r = if store.write_map {
            reserve_blocks(&side, &mut self.pass)
                .map_err(Failure::kept)
                .and_then(|()| {
                    f(rw).map_err(|error| Failure {
                        error,
                        poisoned: true,
                    })
                })
        } else {
            nested(rw)
                .and_then(|mut txn| {
                    let v = f(&mut txn)?;
                    txn.commit()?;
                    Ok(v)
                })
                .map_err(Failure::kept)
        };
        r.map_err(|f| self.failed(f))
    }

    /// For the queue crate, before a write that adds about `bytes`: `MapFull` when the pages in
    /// use (allocated minus free, as of the last commit) plus this pass's charged growth plus
    /// `bytes` would pass `map_size`. The queue's data is not in the kv byte count, so this
    /// physical check is what bounds it. Deletes need no check.
    pub fn ensure_room(&mut self, bytes: u64) -> Result<()> {
        self.usable()?;
        self.open_rw()?;
        let s = self.store;
        self.pass.physical(&s.env, &s.room, s.room.limit, bytes)?;
        self.pass.growth += bytes;
        Ok(())
    }
}
