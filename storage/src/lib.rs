//! The LMDB engine of huststore: plain keys, hash, set and sorted-set tables, the volatile cache,
//! TTLs, versions and exact statistics, with one write transaction per event-loop pass (group
//! commit). A worker opens one [`Store`] after the fork and, for every loop pass, one [`Batch`]:
//! every request of that pass runs against the batch, then [`Batch::commit`] makes all of the
//! pass's writes durable at once, and only then may the replies go out.
//!
//! Every write is a [`Command`] (a [`Write`] with its own time) applied by [`Batch::apply`],
//! which answers an [`Outcome`]; commands have a binary form ([`Command::encode`]) so that
//! a log of them can be shipped and replayed. The worker's handlers build the commands; the
//! queue crate's raw writes ([`Batch::write`]) are the one writer outside them.
//!
//! It must never know about HTTP: callers map [`StorageError`] to status codes.
//!
//! # Layers, bottom to top
//!
//! Each layer uses only the layers below it (`tools/modcycles.py` finds no circle):
//!
//! 1. `codec`: byte layouts and their arithmetic, pure. Knows no transaction.
//! 2. `env`, `room`, `warm`, `txn`, `direct`: environments and their transactions, the
//!    operations' context (`Ctx`: environment, named databases, room), capacity accounting and
//!    file blocks, the fresh pages read into the page cache ahead of the writes, the
//!    journaling write transaction (`Wtx`) and its change record (`Ops`), large values written
//!    into the file by `pwrite`. Never know a record's layout, an operation,
//!    the journal's files or a batch.
//! 3. `journal` (records, writer, replay) and `journal::checkpoint` (the checkpoint file and
//!    thread, restoring a meta page): durability of the persistent store's passes. Never
//!    know an operation or a batch: they see changes only as `Ops`.
//! 4. The operations, each a read-only check then an `Apply`, on a `Ctx`: `old` (the record a
//!    write replaces), `tables` (table metadata, totals, stats), `kv` (plain records),
//!    `members` (table members), `purge` (expiry of the persistent store), `cache`, `list`
//!    (listings), `slots` (a cluster group's replication state and its slots' records as one
//!    snapshot). They use lower operations (`members` uses `tables`, `purge` uses `kv` and
//!    `members`), never a command, the journal, the store or the batch.
//! 5. `command`: the write types, the one `apply` of a command to a write transaction, and
//!    their binary form. Never knows a batch, a journal or a clock.
//! 6. `store` ([`Store`]: opening, sync, usage), `pass_env` (one environment's transactions
//!    of a pass and the request runner), `batch` ([`Batch`]: the pass, its commit and the
//!    queue's raw writes), `reads` (the batch's reads).

use std::fmt;
use std::path::PathBuf;

/// What [`Store::open`] needs from the conf.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Folder of the persistent environment (created if missing).
    pub data_dir: PathBuf,
    /// `map_size`: the most data the persistent store holds; past it writes fail with
    /// [`StorageError::MapFull`] while reads and deletes keep working.
    pub map_size: u64,
    /// `sync_writes`: on = every commit is fsynced; off = the caller calls [`Store::sync`]
    /// every `sync_interval`.
    pub sync_writes: bool,
    /// Folder of the volatile cache environment (emptied by the master at start; created if
    /// missing). Never fsynced.
    pub cache_dir: PathBuf,
    /// `cache_size`: the most the cache holds; past it cache writes fail with `MapFull`.
    pub cache_size: u64,
    /// Open both environments with LMDB's `WRITEMAP`: pages are dirtied in the shared map, not
    /// written by one `pwrite` each. With `sync_writes` the data environment then runs without
    /// LMDB's flushes and a write-ahead journal makes each pass durable (see `journal`). LMDB forbids nested
    /// transactions then, so each write request runs straight in the pass's transaction
    /// (every operation checks everything that can refuse it before its first change); an
    /// LMDB failure in the middle of a request poisons the pass (see [`Batch`]). The data
    /// file becomes a sparse file of LMDB's whole map size (see `room`). The worker sets it
    /// in kv mode; the queue crate relies on [`Batch::write`] undoing a failed closure alone,
    /// which only `false` provides.
    pub write_map: bool,
    /// The daemon's fail-stop flag (shared by its workers) and the test-only fault switch;
    /// `FailStop::default()` is one of this process alone.
    pub fail_stop: FailStop,
}

/// Every way a storage call can fail. Callers map them to HTTP in one place.
#[derive(Debug)]
pub enum StorageError {
    /// Key, member, field or table absent (or expired).
    NotFound,
    /// `ver` given and not the current version; `current` is 0 when the record is absent.
    VersionMismatch { current: u32 },
    /// The table exists with another type.
    WrongType,
    /// Stored value not a number for an increment, or the result overflows / is not finite.
    NotNumeric,
    /// The store (LMDB map), the table count limit or the cache is full; nothing was written.
    MapFull,
    /// A cache value (after `append`) would exceed 8 MiB.
    TooLarge,
    /// An argument the HTTP layer should have rejected (empty key, key over 64 KiB, ...).
    Invalid(&'static str),
    /// Any other LMDB failure; the write did not happen.
    Lmdb(lmdb::Error),
    /// The daemon is fail-stopped: a flush failed (now or earlier, see [`FailStop`]). With
    /// `committed` false nothing of the pass was written; with `committed` true the pass is
    /// committed (visible) but may not be on disk, and no reply of it may leave.
    Stopped { committed: bool },
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::NotFound => write!(f, "not found"),
            StorageError::VersionMismatch { current } => {
                write!(f, "version mismatch (current version {current})")
            }
            StorageError::WrongType => write!(f, "table exists with another type"),
            StorageError::NotNumeric => write!(f, "stored value is not a number or overflows"),
            StorageError::MapFull => write!(f, "store is full"),
            StorageError::TooLarge => write!(f, "value too large"),
            StorageError::Invalid(why) => write!(f, "invalid argument: {why}"),
            StorageError::Lmdb(e) => write!(f, "lmdb: {e}"),
            StorageError::Stopped { committed: false } => {
                write!(f, "fail-stopped after a failed flush: nothing written")
            }
            StorageError::Stopped { committed: true } => {
                write!(
                    f,
                    "fail-stopped after a failed flush: committed, maybe not on disk"
                )
            }
        }
    }
}

impl std::error::Error for StorageError {}

pub type Result<T> = std::result::Result<T, StorageError>;

/// Table types; one namespace for all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableType {
    Hash,
    Set,
    SortedSet,
}

impl TableType {
    /// `H`, `S` or `Z`, as `/stat` prints it.
    pub fn letter(self) -> &'static str {
        match self {
            TableType::Hash => "H",
            TableType::Set => "S",
            TableType::SortedSet => "Z",
        }
    }
}

/// A record read back: its version and value (empty for set members; the decimal score is in
/// [`Batch::zscore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub ver: u32,
    pub value: Vec<u8>,
}

/// The outcome of a write that was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Version after the write (for deletes: the version the record had).
    pub ver: u32,
}

/// Filters and paging of a listing (`kv-api.md` §2.7). Ranges are already validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    pub offset: u64,
    pub size: u32,
    /// Bucket range `start <= H(key) mod 1024 < end` (ignored for sorted sets).
    pub start: u32,
    pub end: u32,
    /// Return values (`noval=false`).
    pub with_values: bool,
    /// Count every match into [`Listing::total`] (`async=true`); else `total` is 0.
    pub count_total: bool,
}

/// One listed item. `val` is the raw value for kv and hash items, the score for sorted sets,
/// `None` for sets or when values were not asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListItem {
    pub key: Vec<u8>,
    pub val: Option<ListValue>,
    pub ver: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListValue {
    Bytes(Vec<u8>),
    Score(i64),
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    pub items: Vec<ListItem>,
    /// Matches before offset/size when `count_total`, else 0.
    pub total: u64,
}

/// `count`, `size`, `capacity` of `kv-api.md` §7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub count: u64,
    pub size: u64,
    pub capacity: u64,
}

/// `/stat` totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub kv: Usage,
    pub hash: Usage,
}

/// One table's `/stat` object (`size`/`capacity` meaningful for hashes only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStat {
    pub name: String,
    pub kind: TableType,
    pub usage: Usage,
}

/// `zadd`'s `opt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZaddMode {
    /// `opt=0`: set the score.
    Set,
    /// `opt=1`: current + score.
    Add,
    /// `opt=-1`: current - score.
    Subtract,
}

/// Figures of one commit, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// Writes (applied or not) in the batch.
    pub writes: usize,
    /// Wall time of the commit, microseconds (0 when nothing was written).
    pub micros: u64,
    /// Writes refused (`507`) since the last commit of this process because the map is full.
    pub map_full: u64,
    /// ... because the disk cannot give the data file's blocks.
    pub disk_full: u64,
}

/// A step storage times for `/metrics` and reports to the process's [`observe_steps`] hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Beginning a pass's write transaction on one environment: waiting for LMDB's write
    /// lock, which serialises the worker processes (and the checkpoint's short hold).
    WriteLockWait,
    /// The checkpoint thread's msync of the data file (`env.sync`), the writeback of the map's
    /// dirty pages.
    CheckpointSync,
}

type StepHook = Box<dyn Fn(Step, std::time::Duration) + Send + Sync>;
static STEP_HOOK: std::sync::OnceLock<StepHook> = std::sync::OnceLock::new();

/// Sets where this process's storage reports its [`Step`] times (the worker: its `/metrics`
/// histograms); once per process, later calls are ignored. The hook runs on the thread that
/// did the step (the event loop, the checkpoint thread), so it must be cheap and never block.
pub fn observe_steps(hook: impl Fn(Step, std::time::Duration) + Send + Sync + 'static) {
    let _ = STEP_HOOK.set(Box::new(hook));
}

/// Reports that `step` took since `start` (nothing when no hook is set).
pub(crate) fn step_done(step: Step, start: std::time::Instant) {
    if let Some(hook) = STEP_HOOK.get() {
        hook(step, start.elapsed());
    }
}

/// Bucket of a key, `kv-api.md` §2.7: `h = h*31 + b (mod 2^32)` over unsigned bytes, mod 1024.
pub fn bucket(key: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &b in key {
        h = h.wrapping_mul(31).wrapping_add(b as u32);
    }
    h % 1024
}

impl From<lmdb::Error> for StorageError {
    /// The one place LMDB errors are mapped. `NotFound` is only produced where absence is the
    /// answer; lookups that expect absence use `txn::get_opt` instead.
    fn from(e: lmdb::Error) -> StorageError {
        match e {
            lmdb::Error::MapFull => StorageError::MapFull,
            lmdb::Error::NotFound => StorageError::NotFound,
            other => StorageError::Lmdb(other),
        }
    }
}

/// An I/O failure as the storage error it is (an LMDB-style error code).
pub(crate) fn io_error(e: std::io::Error) -> StorageError {
    StorageError::Lmdb(lmdb::Error::Other(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// Runs `call`, a system call answering 0 or -1 with `errno`, again for as long as it is
/// interrupted by a signal (`EINTR`); its error otherwise.
pub(crate) fn retry_interrupted(mut call: impl FnMut() -> libc::c_int) -> std::io::Result<()> {
    loop {
        if call() == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

// Bottom: environments, room, transactions, large values by pwrite.
mod codec;
mod direct;
mod env;
mod room;
mod txn;
mod warm;
// The journal and its checkpoints.
mod journal;
// Operations.
mod cache;
mod kv;
mod list;
mod members;
mod old;
mod purge;
mod slots;
mod tables;
// Writes as data.
mod command;
// Top: the store and the pass.
mod batch;
mod pass_env;
mod reads;
mod store;

pub use batch::Batch;
pub use command::{expires_at, Command, Outcome, Write};
pub use journal::{FailState, FailStop, JournalFlush};
pub use room::take_refusals;
// The journal record decoder, public for the fuzz targets and the corpus test only.
pub use journal::{decode_journal_record, encode_journal_record, DecodedRecord, RecordChange};
pub use reads::{InPlace, ReplyValue};
pub use store::{Store, Syncer};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod bucket_tests {
    use super::bucket;

    #[test]
    fn bucket_matches_the_spec_examples() {
        assert_eq!(bucket(b"a"), 97);
        assert_eq!(bucket(b"ab"), 33);
        assert_eq!(bucket(b"k1"), 294);
    }
}
