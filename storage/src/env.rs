//! The environments and their transactions, the bottom layer with `room` and `txn`: opening
//! an environment (map sizing, flags, dead readers), the named databases of each, the context
//! an operation runs in ([`Ctx`]), and beginning transactions (a map grown by another
//! process, nested transactions, a transaction LMDB flagged unusable). It knows nothing of
//! records, operations, the journal or batches.

use std::fs;
use std::path::Path;

use lmdb::{Database, Environment, EnvironmentFlags, RwTransaction, Transaction};

use crate::codec;
use crate::room::{real_map_size, Room};
use crate::{io_error, Result, StorageError};

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
    pub(crate) fn tag_of(&self, db: Database) -> u8 {
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

/// What an operation needs of its environment besides the transaction: the environment (for
/// the physical room check), its named databases and its room.
pub(crate) struct Ctx<'s, D> {
    pub env: &'s Environment,
    pub db: &'s D,
    pub room: &'s Room,
}

// By hand: a derive would ask `D: Copy`, and the fields are references.
impl<D> Clone for Ctx<'_, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D> Copy for Ctx<'_, D> {}

/// The persistent store's context.
pub(crate) type DataCtx<'s> = Ctx<'s, Dbs>;
/// The cache's context.
pub(crate) type CacheCtx<'s> = Ctx<'s, CacheDbs>;

/// One of the two environments, with its context.
#[derive(Clone, Copy)]
pub(crate) enum Target<'s> {
    Data(DataCtx<'s>),
    Cache(CacheCtx<'s>),
}

impl<'s> Target<'s> {
    pub fn env(&self) -> &'s Environment {
        match self {
            Target::Data(cx) => cx.env,
            Target::Cache(cx) => cx.env,
        }
    }

    pub fn room(&self) -> &'s Room {
        match self {
            Target::Data(cx) => cx.room,
            Target::Cache(cx) => cx.room,
        }
    }

    /// A database of the environment, to ask a transaction whether LMDB flagged it unusable.
    pub fn probe(&self) -> Database {
        match self {
            Target::Data(cx) => cx.db.meta,
            Target::Cache(cx) => cx.db.meta,
        }
    }
}

/// Clears the reader slots of processes that died inside a read transaction (a killed worker),
/// which would otherwise pin old pages and make the file grow.
pub(crate) fn reader_check(env: &Environment, what: &str) -> Result<()> {
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
pub(crate) fn open_env(
    dir: &Path,
    limit: u64,
    flags: EnvironmentFlags,
) -> Result<(Environment, Room)> {
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
    let disk = fs::File::open(dir)
        .ok()
        .and_then(|d| crate::room::disk_space(std::os::fd::AsRawFd::as_raw_fd(&d)))
        .map(|(total, _)| total);
    let room = Room {
        limit,
        real,
        guard: real / 4 * 3,
        psize,
        map: map_bytes,
        disk,
    };
    Ok((env, room))
}

/// WRITE_MAP, and with it NO_READAHEAD (`madvise(MADV_RANDOM)` on the map). A write through
/// the map dirties the whole page-cache folio it lands in, and the kernel writes every dirty
/// folio whole; readahead fills the cache with large folios (ext4 has them since Linux 6.16),
/// so one 4 KiB page of LMDB could cost a 64 KiB+ write at the next msync (measured: 19 MiB
/// written per commit of 40 puts instead of 330 KiB). Without readahead a fault brings in one
/// page. `pwrite` (no WRITE_MAP) dirties only the blocks it writes, so that mode keeps it.
pub(crate) fn write_map_flags() -> EnvironmentFlags {
    EnvironmentFlags::WRITE_MAP | EnvironmentFlags::NO_READAHEAD
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
pub(crate) fn nested<'p>(parent: &'p mut RwTransaction<'_>) -> Result<RwTransaction<'p>> {
    let child = parent.begin_nested_txn()?;
    if child.txn().is_null() {
        std::mem::forget(child);
        return Err(StorageError::Lmdb(lmdb::Error::BadTxn));
    }
    Ok(child)
}

/// Whether LMDB has flagged `txn` unusable (`MDB_TXN_ERROR`, set by a failed call, also by
/// some failed reads such as a corrupted page): every call then answers `MDB_BAD_TXN`.
pub(crate) fn txn_failed(txn: &RwTransaction<'_>, probe: Database) -> bool {
    matches!(txn.get(probe, &TOTALS_PROBE), Err(lmdb::Error::BadTxn))
}

/// Any key: only the transaction's state matters to the probe.
const TOTALS_PROBE: &[u8] = b"totals";
