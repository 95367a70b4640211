//! The write-ahead journal behind `sync_writes on` with `write_map` (kv mode): a 200 made
//! durable by one small sequential `fdatasync` per loop pass instead of LMDB's own two flushes.
//!
//! # Why
//!
//! A durable LMDB commit flushes every page the transaction dirtied (B-tree leaves and
//! branches scattered over the file, about one disk write each), then the meta page. On the
//! reference VM that is about 1 ms per pass of 30-60 puts, and the first flush holds LMDB's
//! write lock, so the workers queue behind it. The same pass's changes appended to one file
//! are a few sequential blocks: 0.1-0.2 ms, outside the lock (benches/RESULTS.md has the
//! figures).
//!
//! # How
//!
//! - The data environment runs with `MDB_NOSYNC`. A pass's write transaction records each
//!   change it makes ([`Ops`]: put or delete of a key of one of the named databases). Just
//!   before the commit, under the write lock, the record (transaction id, changes, CRC) is
//!   written at the journal's tail, whose position the same transaction stores under
//!   [`WAL_KEY`] in `meta`; after the commit, the lock released, the segment is
//!   `fdatasync`ed ([`crate::JournalFlush`]: the worker hands it to a thread and goes on with
//!   its next passes) and only then do the pass's replies leave. There is one journal for all
//!   workers, in commit order, so an `fdatasync` makes every earlier record durable as well:
//!   no reply can depend on a write (another worker's, say) that is not on disk yet.
//! - Checkpoints: each worker's checkpoint thread, four times a second while the store changes
//!   and when the worker stops, flushes the data file (`mdb_env_sync`) and then stores in
//!   `journal/checkpoint` the transaction id that flush covers, a copy of that transaction's
//!   meta page and the journal position after its record. Segments before that position are
//!   then deleted. Segments are `journal/<gen>.wal`, a new one every [`SEGMENT_BYTES`].
//! - A machine crash leaves the data file with any subset of the pages written since the last
//!   checkpoint (`MDB_NOSYNC` flushes in no order), maybe a meta page pointing at pages that
//!   never reached the disk. The first worker to open after a reboot (the boot id differs
//!   from the checkpoint's) writes the checkpoint's meta page back into both meta slots, so
//!   LMDB opens at that snapshot, and replays the journal from the checkpoint's position.
//! - That snapshot's pages must still be intact: LMDB reuses a page freed by a later
//!   transaction only once no reader is older than that transaction, and each worker keeps
//!   a read transaction (the pin) open on the snapshot of its latest checkpoint until it has
//!   stored a newer one; the newest checkpoint is always pinned by a live worker or followed
//!   by no write.
//! - A process crash (`kill -9` of any or all processes) loses nothing and replays nothing:
//!   the data file's pages are in the page cache, and the boot id has not changed.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use lmdb::{Database, Environment, RoTransaction, RwTransaction, Transaction, WriteFlags};

use crate::store::{begin, io_error, Dbs, Room};
use crate::{Result, StorageError};

/// Key in `meta` of the journal's tail: where the next record goes.
pub(crate) const WAL_KEY: &[u8] = b"wal";
/// A segment past this size is left for a new one at the next record.
#[cfg(not(test))]
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;
/// Small in tests, so that a few puts fill several segments.
#[cfg(test)]
pub(crate) const SEGMENT_BYTES: u64 = 64 << 10;
/// How often a worker's checkpoint thread looks whether the store changed. The pin keeps LMDB
/// from reusing the pages freed in between, so a longer interval grows the file (measured: a
/// 4 s insert run left a 321-353 MiB file at 1 s, 193-225 MiB at 250 ms) and makes each
/// flush longer, which the journal's flushes then queue behind (p99 10 ms instead of 25-55).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// Bytes of a meta page kept in a checkpoint: the page header and `MDB_meta` (152 bytes in
/// LMDB 0.9); the rest of the page is unused.
const META_BYTES: usize = 256;
/// `MDB_MAGIC`, at the start of `MDB_meta` (after the 16-byte page header).
const MDB_MAGIC: u32 = 0xBEEF_C0DE;
const META_MAGIC_AT: usize = 16;
/// `mm_txnid`: page header 16 + magic 4 + version 4 + address 8 + mapsize 8 + 2 x `MDB_db` 48
/// + last_pg 8 (LMDB 0.9 on 64-bit targets).
const META_TXNID_AT: usize = 144;
// The offsets above are those of a 64-bit build (`void *`, `size_t` and `pgno_t` of 8 bytes).
const _: () = assert!(
    std::mem::size_of::<usize>() == 8,
    "the journal reads LMDB meta pages with 64-bit offsets"
);

const OP_PUT: u8 = 1;
const OP_DEL: u8 = 2;
const RECORD_MAGIC: u32 = 0x4c57_5348; // "HSWL"
/// magic u32, payload length u64 (a pass of large bodies may pass 4 GiB), transaction id u64;
/// then the payload and a CRC32.
const RECORD_HEAD: usize = 20;
const CHECKPOINT_MAGIC: u32 = 0x4b43_5348; // "HSCK"
const CHECKPOINT_VERSION: u32 = 1;
/// The checkpoint file has two slots, each in its own block, written alternately.
const SLOT_BYTES: u64 = 4096;
const BOOT_MAX: usize = 64;

/// The changes of one pass's write transaction, in the order they were made.
#[derive(Default)]
pub(crate) struct Ops {
    buf: Vec<u8>,
}

impl Ops {
    pub(crate) fn put(&mut self, db: u8, key: &[u8], val: &[u8]) {
        self.buf.push(OP_PUT);
        self.buf.push(db);
        push_bytes(&mut self.buf, key);
        push_bytes(&mut self.buf, val);
    }

    pub(crate) fn del(&mut self, db: u8, key: &[u8]) {
        self.buf.push(OP_DEL);
        self.buf.push(db);
        push_bytes(&mut self.buf, key);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

fn push_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
    buf.extend_from_slice(b);
}

/// One recorded change: (database tag, key, value) or (database tag, key).
#[derive(Debug, PartialEq)]
pub(crate) enum Op<'a> {
    Put(u8, &'a [u8], &'a [u8]),
    Del(u8, &'a [u8]),
}

/// The changes of a record's payload; `None` when it is malformed (a CRC-valid record never
/// is, short of a bug).
pub(crate) fn decode_ops(mut p: &[u8]) -> Option<Vec<Op<'_>>> {
    fn take<'a>(p: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(p.get(..4)?.try_into().ok()?) as usize;
        let b = p.get(4..4 + len)?;
        *p = &p[4 + len..];
        Some(b)
    }
    let mut ops = Vec::new();
    while let [op, db, rest @ ..] = p {
        let (op, db) = (*op, *db);
        p = rest;
        let key = take(&mut p)?;
        ops.push(match op {
            OP_PUT => Op::Put(db, key, take(&mut p)?),
            OP_DEL => Op::Del(db, key),
            _ => return None,
        });
    }
    p.is_empty().then_some(ops)
}

/// Encodes the record of transaction `txnid` into `out` (cleared first).
fn encode_record(out: &mut Vec<u8>, txnid: u64, payload: &[u8]) {
    out.clear();
    out.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&txnid.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The record at the start of `buf`: (transaction id, payload, bytes it takes). `None` at
/// the end of the journal: zeros, a torn write, stale bytes.
fn parse_record(buf: &[u8]) -> Option<(u64, &[u8], usize)> {
    let head = buf.get(..RECORD_HEAD)?;
    if u32::from_le_bytes(head[0..4].try_into().ok()?) != RECORD_MAGIC {
        return None;
    }
    let len = usize::try_from(u64::from_le_bytes(head[4..12].try_into().ok()?)).ok()?;
    let txnid = u64::from_le_bytes(head[12..20].try_into().ok()?);
    let end = RECORD_HEAD.checked_add(len)?;
    let body = buf.get(..end)?;
    let crc = u32::from_le_bytes(buf.get(end..end + 4)?.try_into().ok()?);
    (crc32fast::hash(body) == crc).then(|| (txnid, &body[RECORD_HEAD..], end + 4))
}

/// A place in the journal: segment `gen`, byte `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub gen: u64,
    pub off: u64,
}

impl Position {
    const START: Position = Position { gen: 1, off: 0 };

    fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.gen.to_le_bytes());
        b[8..].copy_from_slice(&self.off.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Position> {
        Some(Position {
            gen: u64::from_le_bytes(b.get(..8)?.try_into().ok()?),
            off: u64::from_le_bytes(b.get(8..16)?.try_into().ok()?),
        })
    }
}

/// The journal's tail as `txn` sees it.
fn load_position<T: Transaction>(txn: &T, meta: Database) -> Result<Position> {
    match txn.get(meta, &WAL_KEY) {
        Ok(b) => Position::decode(b).ok_or(StorageError::Invalid("bad journal position")),
        Err(lmdb::Error::NotFound) => Ok(Position::START),
        Err(e) => Err(e.into()),
    }
}

fn segment_path(dir: &Path, gen: u64) -> PathBuf {
    dir.join(format!("{gen:016x}.wal"))
}

fn segment_gen(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".wal")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// Makes the folder's entries (a new file's name) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn txn_id<T: Transaction>(txn: &T) -> u64 {
    // SAFETY: `txn.txn()` is the live transaction handle owned by `txn`.
    unsafe { lmdb_sys::mdb_txn_id(txn.txn()) as u64 }
}

fn env_fd(env: &Environment) -> Result<libc::c_int> {
    let mut fd: libc::c_int = -1;
    // SAFETY: `env.env()` is the open environment owned by `env`; `fd` is a valid out-pointer.
    let rc = unsafe { lmdb_sys::mdb_env_get_fd(env.env(), &mut fd) };
    if rc != 0 {
        return Err(lmdb::Error::from_err_code(rc).into());
    }
    Ok(fd)
}

/// This boot of the machine (`None` where the kernel does not tell): what tells a restart of
/// the machine, after which the page cache is gone, from a restart of the daemon.
pub(crate) fn boot_id() -> Option<String> {
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty() && id.len() <= BOOT_MAX).then(|| id.to_string())
}

/// What a checkpoint stores: the data file was flushed up to transaction `txnid`, whose meta
/// page is `meta`; the journal's records from `pos` on are the transactions after it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Checkpoint {
    /// The data file's inode: a checkpoint is only ever restored into the file it was taken
    /// of (not into a backup copied in its place).
    pub file: u64,
    pub txnid: u64,
    pub pos: Position,
    pub psize: u64,
    pub boot: String,
    pub meta: Vec<u8>,
}

impl Checkpoint {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(512);
        b.extend_from_slice(&CHECKPOINT_MAGIC.to_le_bytes());
        b.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
        b.extend_from_slice(&self.file.to_le_bytes());
        b.extend_from_slice(&self.txnid.to_le_bytes());
        b.extend_from_slice(&self.pos.encode());
        b.extend_from_slice(&self.psize.to_le_bytes());
        let boot = &self.boot.as_bytes()[..self.boot.len().min(BOOT_MAX)];
        b.push(boot.len() as u8);
        b.extend_from_slice(boot);
        b.resize(b.len() + BOOT_MAX - boot.len(), 0);
        b.extend_from_slice(&self.meta);
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Checkpoint> {
        let u32_at = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
        let u64_at = |i: usize| Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?));
        if u32_at(0)? != CHECKPOINT_MAGIC || u32_at(4)? != CHECKPOINT_VERSION {
            return None;
        }
        let boot_len = *b.get(48)? as usize;
        let boot_at = 49;
        let meta_at = boot_at + BOOT_MAX;
        let end = meta_at + META_BYTES;
        if boot_len > BOOT_MAX || u32_at(end)? != crc32fast::hash(b.get(..end)?) {
            return None;
        }
        Some(Checkpoint {
            file: u64_at(8)?,
            txnid: u64_at(16)?,
            pos: Position::decode(b.get(24..40)?)?,
            psize: u64_at(40)?,
            boot: String::from_utf8(b[boot_at..boot_at + boot_len].to_vec()).ok()?,
            meta: b[meta_at..end].to_vec(),
        })
    }
}

/// Both slots of the checkpoint file (`None` for an empty or torn one).
fn read_slots(f: &File) -> io::Result<[Option<Checkpoint>; 2]> {
    let mut slots = [None, None];
    for (i, slot) in slots.iter_mut().enumerate() {
        let mut b = vec![0u8; SLOT_BYTES as usize];
        let n = f.read_at(&mut b, i as u64 * SLOT_BYTES)?;
        *slot = Checkpoint::decode(&b[..n]);
    }
    Ok(slots)
}

fn newest(slots: &[Option<Checkpoint>; 2]) -> Option<&Checkpoint> {
    slots.iter().flatten().max_by_key(|c| c.txnid)
}

fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join("checkpoint")
}

/// The newest stored checkpoint, if any.
pub(crate) fn read_checkpoint(dir: &Path) -> Result<Option<Checkpoint>> {
    match File::open(checkpoint_path(dir)) {
        Ok(f) => Ok(newest(&read_slots(&f).map_err(io_error)?).cloned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(e)),
    }
}

/// An exclusive `flock` on `f`, released when `f` is closed.
fn lock(f: &File) -> io::Result<()> {
    loop {
        // SAFETY: `f` is an open file; flock has no memory effects.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Stores `ck` unless a newer checkpoint is stored already; returns the newest one.
fn store_checkpoint(dir: &Path, ck: &Checkpoint) -> Result<Checkpoint> {
    let path = checkpoint_path(dir);
    let created = !path.exists();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error)?;
    lock(&f).map_err(io_error)?;
    let slots = read_slots(&f).map_err(io_error)?;
    if let Some(best) = newest(&slots) {
        if best.txnid >= ck.txnid {
            return Ok(best.clone());
        }
    }
    // Overwrite the older (or empty) slot: a torn write leaves the other one intact.
    let slot = match &slots {
        [Some(a), Some(b)] => u64::from(a.txnid > b.txnid),
        [Some(_), None] => 1,
        _ => 0,
    };
    f.write_all_at(&ck.encode(), slot * SLOT_BYTES)
        .map_err(io_error)?;
    f.sync_data().map_err(io_error)?;
    if created {
        sync_dir(dir).map_err(io_error)?;
    }
    Ok(ck.clone())
}

/// Drops the stored checkpoint: a store opened without the journal (`sync_writes off`) writes
/// without pins, so that checkpoint's pages may be reused, and restoring it after a reboot
/// would be wrong.
pub(crate) fn forget(data_dir: &Path) {
    let _ = fs::remove_file(checkpoint_path(&data_dir.join("journal")));
}

/// Deletes the checkpoint and every segment.
fn discard(dir: &Path) {
    let _ = fs::remove_file(checkpoint_path(dir));
    remove_segments_before(dir, u64::MAX);
}

/// Deletes the segments before `gen` (every record in them is covered by a checkpoint).
fn remove_segments_before(dir: &Path, gen: u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if let Some(g) = name.to_str().and_then(segment_gen) {
            if g < gen {
                if let Err(e) = fs::remove_file(entry.path()) {
                    log::warn!("could not delete journal segment {name:?}: {e}");
                }
            }
        }
    }
}

/// Reads the first [`META_BYTES`] of the meta page of transaction `txnid` from the data file;
/// `None` if its slot no longer holds it.
fn read_meta(env: &Environment, psize: u64, txnid: u64) -> Result<Option<Vec<u8>>> {
    let fd = env_fd(env)?;
    // SAFETY: `fd` is the environment's open data file; `dup` gives this `File` its own
    // descriptor, closed on drop, so LMDB's stays open.
    let dup = unsafe { libc::dup(fd) };
    if dup < 0 {
        return Err(io_error(io::Error::last_os_error()));
    }
    // SAFETY: `dup` is a fresh descriptor owned by nothing else.
    let f = unsafe { <File as std::os::unix::io::FromRawFd>::from_raw_fd(dup) };
    let mut page = vec![0u8; META_BYTES];
    f.read_exact_at(&mut page, (txnid & 1) * psize)
        .map_err(io_error)?;
    let magic = u32::from_le_bytes(
        page[META_MAGIC_AT..META_MAGIC_AT + 4]
            .try_into()
            .unwrap_or_default(),
    );
    let stored = u64::from_le_bytes(
        page[META_TXNID_AT..META_TXNID_AT + 8]
            .try_into()
            .unwrap_or_default(),
    );
    Ok((magic == MDB_MAGIC && stored == txnid).then_some(page))
}

/// Writes `ck`'s meta page into both meta slots of `data.mdb` in `data_dir`, so that LMDB opens
/// at the checkpoint's snapshot. Before the environment is opened, after a reboot only.
fn restore_meta(data_dir: &Path, ck: &Checkpoint) -> Result<bool> {
    let path = data_dir.join("data.mdb");
    let f = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(e)),
    };
    let md = f.metadata().map_err(io_error)?;
    // Both meta slots' transaction ids as the crash left them: a real crash leaves at least
    // the checkpoint's (it was flushed); a file with only older ones is not the one the
    // checkpoint was taken of.
    let mut newest_on_disk = 0u64;
    for slot in 0..2u64 {
        let mut id = [0u8; 8];
        if f.read_exact_at(&mut id, slot * ck.psize + META_TXNID_AT as u64)
            .is_ok()
        {
            newest_on_disk = newest_on_disk.max(u64::from_le_bytes(id));
        }
    }
    if md.ino() != ck.file
        || md.len() < 2 * ck.psize
        || ck.meta.len() != META_BYTES
        || newest_on_disk < ck.txnid
    {
        return Ok(false);
    }
    for slot in 0..2u64 {
        let mut page = ck.meta.clone();
        // The page header's page number: 0 and 1 for the two meta pages.
        page[..8].copy_from_slice(&slot.to_le_bytes());
        f.write_all_at(&page, slot * ck.psize).map_err(io_error)?;
    }
    f.sync_data().map_err(io_error)?;
    Ok(true)
}

/// The journal of an open store: the writer's side (records, segments) and the checkpoint
/// thread.
pub(crate) struct Journal {
    dir: PathBuf,
    meta: Database,
    writer: Mutex<Writer>,
    /// Tells the checkpoint thread to stop (`true`: after a last checkpoint).
    checkpointer: Option<(mpsc::Sender<bool>, thread::JoinHandle<()>)>,
}

#[derive(Default)]
struct Writer {
    /// The segment last written to.
    segment: Option<(u64, Arc<File>)>,
    record: Vec<u8>,
}

impl Writer {
    /// The file of segment `gen`; `fresh` empties it (a new segment).
    fn segment(&mut self, dir: &Path, gen: u64, fresh: bool) -> Result<Arc<File>> {
        if let (Some((g, f)), false) = (&self.segment, fresh) {
            if *g == gen {
                return Ok(f.clone());
            }
        }
        let path = segment_path(dir, gen);
        let existed = path.exists();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(fresh)
            .open(&path)
            .map_err(io_error)?;
        if fresh || !existed {
            sync_dir(dir).map_err(io_error)?;
        }
        let f = Arc::new(f);
        self.segment = Some((gen, f.clone()));
        Ok(f)
    }
}

/// The persistent environment as `Store::open` opens it.
pub(crate) type Opened = (Arc<Environment>, Dbs, Room);

/// Everything the checkpoint thread needs.
struct Ctx {
    env: Arc<Environment>,
    dir: PathBuf,
    meta: Database,
    psize: u64,
    boot: String,
    /// The data file's inode.
    file: u64,
}

impl Journal {
    /// Opens the journal of the environment in `data_dir`, which `open_env` opens; call with
    /// the environment not yet open. After a reboot it restores the last checkpoint's snapshot
    /// and replays the journal onto it; then it stores a fresh checkpoint and starts the
    /// checkpoint thread. Opens of all workers are serialised by `journal/open.lock`.
    pub(crate) fn open(
        data_dir: &Path,
        boot: Option<String>,
        open_env: impl FnOnce() -> Result<Opened>,
    ) -> Result<(Journal, Opened)> {
        let dir = data_dir.join("journal");
        fs::create_dir_all(&dir).map_err(io_error)?;
        let open_lock = File::create(dir.join("open.lock")).map_err(io_error)?;
        lock(&open_lock).map_err(io_error)?;
        let boot = match boot {
            Some(b) => b,
            None => {
                log::warn!(
                    "this system has no boot id: after a machine crash the journal is not \
                     replayed, and data of the last second may be lost"
                );
                String::new()
            }
        };
        let stored = read_checkpoint(&dir)?;
        let mut restored = None;
        if let Some(ck) = stored
            .as_ref()
            .filter(|c| !boot.is_empty() && c.boot != boot)
        {
            if restore_meta(data_dir, ck)? {
                restored = Some(ck.clone());
            }
        }
        let (env, dbs, room) = open_env()?;
        let file = fs::metadata(data_dir.join("data.mdb"))
            .map_err(io_error)?
            .ino();
        if let (Some(ck), None) = (&stored, &restored) {
            // Not restored: it must be of this data file and not ahead of it; otherwise the
            // file was replaced (a backup put in its place), and the checkpoint and the
            // journal describe another file.
            let last = env.info()?.last_txnid() as u64;
            if ck.file != file || ck.txnid > last {
                log::warn!(
                    "journal: the checkpoint in {} is not of this data file (a backup restored \
                     in its place?); it and the journal are dropped",
                    dir.display()
                );
                discard(&dir);
            }
        }
        if let Some(ck) = &restored {
            let (n, pos) = replay(&env, &dbs, &dir, ck)?;
            conf::notice!(
                "journal: the machine restarted; restored the data file to its checkpoint \
                 (transaction {}) and replayed {n} transaction(s) from the journal, up to \
                 segment {} byte {}",
                ck.txnid,
                pos.gen,
                pos.off
            );
        }
        let ctx = Ctx {
            env: env.clone(),
            dir: dir.clone(),
            meta: dbs.meta,
            psize: room.psize,
            boot,
            file,
        };
        // The first checkpoint is taken before this open returns: the data file is then
        // flushed, and the journal holds nothing older than it.
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let (stop_tx, stop_rx) = mpsc::channel::<bool>();
        let handle = thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || checkpoint_thread(ctx, ready_tx, stop_rx))
            .map_err(io_error)?;
        let first = ready_rx
            .recv()
            .unwrap_or(Err(StorageError::Invalid("the checkpoint thread failed")));
        let journal = Journal {
            dir,
            meta: dbs.meta,
            writer: Mutex::new(Writer::default()),
            checkpointer: Some((stop_tx, handle)),
        };
        first?;
        drop(open_lock);
        Ok((journal, (env, dbs, room)))
    }

    /// Under the write lock, just before `rw` commits: writes the record of `rw` with `ops` at
    /// the journal's tail and stores the new tail in `rw`. Returns where, with the segment to
    /// `fdatasync` once the commit is done. An error leaves `rw` to be aborted.
    pub(crate) fn append(&self, rw: &mut RwTransaction<'_>, ops: &Ops) -> Result<Appended> {
        let txnid = txn_id(rw);
        let mut pos = load_position(rw, self.meta)?;
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut record = std::mem::take(&mut w.record);
        encode_record(&mut record, txnid, &ops.buf);
        let len = record.len() as u64;
        let result = (|| {
            if pos.off > 0 && pos.off.saturating_add(len) > SEGMENT_BYTES {
                // The full segment durable before the next one starts, so that an fdatasync
                // of the new one never leaves an earlier record behind.
                w.segment(&self.dir, pos.gen, false)?
                    .sync_data()
                    .map_err(io_error)?;
                pos = Position {
                    gen: pos.gen + 1,
                    off: 0,
                };
                w.segment(&self.dir, pos.gen, true)?;
            }
            let file = w.segment(&self.dir, pos.gen, false)?;
            file.write_all_at(&record, pos.off).map_err(io_error)?;
            let next = Position {
                gen: pos.gen,
                off: pos.off + len,
            };
            rw.put(self.meta, &WAL_KEY, &next.encode(), WriteFlags::empty())?;
            Ok(Appended { file, at: pos.off })
        })();
        w.record = record;
        result
    }

    /// The commit of an appended record failed: the record is made invalid, so that a replay
    /// after a machine crash cannot apply a transaction its clients were told failed. (The next
    /// record would overwrite it too: the tail did not move.)
    pub(crate) fn revoke(&self, appended: &Appended) {
        if let Err(e) = appended.file.write_all_at(&[0u8; 4], appended.at) {
            log::error!("could not revoke a journal record of a failed commit: {e}");
        }
    }
}

/// A record written by [`Journal::append`].
pub(crate) struct Appended {
    pub file: Arc<File>,
    at: u64,
}

impl Journal {
    fn stop(&mut self, last_checkpoint: bool) {
        if let Some((stop, handle)) = self.checkpointer.take() {
            let _ = stop.send(last_checkpoint);
            if handle.join().is_err() {
                log::error!("the checkpoint thread panicked");
            }
        }
    }

    /// Tests: stops the checkpoint thread without its last checkpoint, as a machine crash
    /// would.
    #[cfg(test)]
    pub(crate) fn stop_as_in_a_crash(&mut self) {
        self.stop(false);
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // The thread takes a last checkpoint, so a clean stop leaves nothing to replay.
        self.stop(true);
    }
}

fn checkpoint_thread(ctx: Ctx, ready: mpsc::Sender<Result<()>>, stop: mpsc::Receiver<bool>) {
    let env = &*ctx.env;
    let (mut pin, mut kept_from) = match checkpoint(env, &ctx) {
        Ok((pin, needed)) => {
            remove_segments_before(&ctx.dir, needed);
            let _ = ready.send(Ok(()));
            (pin, needed)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    loop {
        let stopping = match stop.recv_timeout(CHECKPOINT_EVERY) {
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Ok(false) => return,
            Ok(true) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
        };
        let changed = env
            .info()
            .map(|i| i.last_txnid() as u64 > txn_id(&pin))
            .unwrap_or(true);
        if changed {
            // The new pin is taken before the old one is dropped (see the module docs).
            match checkpoint(env, &ctx) {
                Ok((p, needed)) => {
                    pin = p;
                    // Segments before `kept_from` are gone: list the folder only when the
                    // checkpoint moved past it.
                    if needed > kept_from {
                        remove_segments_before(&ctx.dir, needed);
                        kept_from = needed;
                    }
                }
                Err(e) => log::error!("journal checkpoint failed: {e}"),
            }
        }
        if stopping {
            return;
        }
    }
}

/// Takes a checkpoint and returns its pin (the read transaction on its snapshot) and the
/// oldest segment the newest stored checkpoint still needs.
fn checkpoint<'e>(env: &'e Environment, ctx: &Ctx) -> Result<(RoTransaction<'e>, u64)> {
    // The write lock, so that no commit rewrites a meta page while it is read; the pin is
    // then the snapshot of the newest meta page.
    let rw = begin(env, |e| e.begin_rw_txn())?;
    let pin = begin(env, |e| e.begin_ro_txn())?;
    let txnid = txn_id(&pin);
    let pos = load_position(&pin, ctx.meta)?;
    let meta = read_meta(env, ctx.psize, txnid)?;
    drop(rw);
    let Some(meta) = meta else {
        return Err(StorageError::Invalid(
            "the meta page does not match its transaction",
        ));
    };
    let ck = Checkpoint {
        file: ctx.file,
        txnid,
        pos,
        psize: ctx.psize,
        boot: ctx.boot.clone(),
        meta,
    };
    env.sync(true)?;
    let best = store_checkpoint(&ctx.dir, &ck)?;
    Ok((pin, best.pos.gen))
}

/// Applies the journal's records after `ck` (from `ck.pos` on, through the later segments)
/// in one transaction; returns how many and where the journal now ends.
fn replay(env: &Environment, dbs: &Dbs, dir: &Path, ck: &Checkpoint) -> Result<(u64, Position)> {
    let tables = dbs.by_tag();
    let mut rw = begin(env, |e| e.begin_rw_txn())?;
    let mut pos = ck.pos;
    let mut last = ck.txnid;
    let mut count = 0u64;
    loop {
        let data = match fs::read(segment_path(dir, pos.gen)) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(io_error(e)),
        };
        let mut off = usize::try_from(pos.off)
            .unwrap_or(usize::MAX)
            .min(data.len());
        while let Some((txnid, payload, taken)) = parse_record(&data[off..]) {
            if txnid <= last {
                break;
            }
            if count == 0 && txnid != last + 1 {
                log::warn!(
                    "journal: the first record after the checkpoint is transaction {txnid}, \
                     not {}",
                    last + 1
                );
            }
            let ops = decode_ops(payload).ok_or(StorageError::Invalid("bad journal record"))?;
            for op in ops {
                match op {
                    Op::Put(tag, k, v) => {
                        let db = *tables
                            .get(tag as usize)
                            .ok_or(StorageError::Invalid("bad journal record"))?;
                        rw.put(db, &k, &v, WriteFlags::empty())?;
                    }
                    Op::Del(tag, k) => {
                        let db = *tables
                            .get(tag as usize)
                            .ok_or(StorageError::Invalid("bad journal record"))?;
                        match rw.del(db, &k, None) {
                            Ok(()) | Err(lmdb::Error::NotFound) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
            last = txnid;
            count += 1;
            off += taken;
        }
        pos.off = off as u64;
        if !segment_path(dir, pos.gen + 1).exists() {
            break;
        }
        pos = Position {
            gen: pos.gen + 1,
            off: 0,
        };
    }
    rw.put(dbs.meta, &WAL_KEY, &pos.encode(), WriteFlags::empty())?;
    rw.commit()?;
    env.sync(true)?;
    Ok((count, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip() {
        let mut ops = Ops::default();
        ops.put(0, b"k", b"value");
        ops.del(5, b"gone");
        ops.put(3, b"", b"");
        assert_eq!(
            decode_ops(&ops.buf).unwrap(),
            vec![
                Op::Put(0, b"k", b"value"),
                Op::Del(5, b"gone"),
                Op::Put(3, b"", b"")
            ]
        );
        // Cut inside an op, the payload is malformed rather than misread; cut between two
        // ops, it is the ops before the cut.
        let full = decode_ops(&ops.buf).unwrap();
        let mut whole = 0;
        for cut in 1..ops.buf.len() {
            if let Some(prefix) = decode_ops(&ops.buf[..cut]) {
                assert_eq!(prefix[..], full[..prefix.len()], "cut at {cut}");
                whole += 1;
            }
        }
        assert_eq!(whole, 2, "two cuts fall between ops");
    }

    #[test]
    fn records_stop_at_zeros_torn_and_stale_bytes() {
        let mut ops = Ops::default();
        ops.put(0, b"key", b"val");
        let mut rec = Vec::new();
        encode_record(&mut rec, 42, &ops.buf);
        let mut file = rec.clone();
        file.extend_from_slice(&[0u8; 64]);
        let (txnid, payload, taken) = parse_record(&file).unwrap();
        assert_eq!((txnid, payload, taken), (42, &ops.buf[..], rec.len()));
        assert!(
            parse_record(&file[taken..]).is_none(),
            "zeros end the journal"
        );
        for cut in 0..rec.len() {
            assert!(parse_record(&rec[..cut]).is_none(), "torn at {cut}");
        }
        let mut flipped = rec.clone();
        flipped[RECORD_HEAD + 2] ^= 1;
        assert!(
            parse_record(&flipped).is_none(),
            "a changed byte fails the CRC"
        );
    }

    #[test]
    fn checkpoint_slots_alternate_and_keep_the_newest() {
        let dir = crate::tests::TempDir::new("ckpt");
        let ck = |txnid| Checkpoint {
            file: 12345,
            txnid,
            pos: Position {
                gen: 2,
                off: txnid * 10,
            },
            psize: 4096,
            boot: "boot-a".into(),
            meta: vec![txnid as u8; META_BYTES],
        };
        assert_eq!(read_checkpoint(dir.path()).unwrap(), None);
        assert_eq!(store_checkpoint(dir.path(), &ck(5)).unwrap(), ck(5));
        assert_eq!(store_checkpoint(dir.path(), &ck(7)).unwrap(), ck(7));
        // An older one is not stored over a newer one.
        assert_eq!(store_checkpoint(dir.path(), &ck(6)).unwrap(), ck(7));
        assert_eq!(read_checkpoint(dir.path()).unwrap(), Some(ck(7)));
        // Tear the newest slot: the other one is still there.
        let f = OpenOptions::new()
            .write(true)
            .open(checkpoint_path(dir.path()))
            .unwrap();
        let slots = read_slots(&File::open(checkpoint_path(dir.path())).unwrap()).unwrap();
        let newest_slot = slots
            .iter()
            .position(|s| s.as_ref().map(|c| c.txnid) == Some(7));
        f.write_all_at(&[0xff; 8], newest_slot.unwrap() as u64 * SLOT_BYTES + 8)
            .unwrap();
        assert_eq!(read_checkpoint(dir.path()).unwrap(), Some(ck(5)));
    }

    #[test]
    fn segment_names() {
        assert_eq!(segment_gen("000000000000002a.wal"), Some(42));
        assert_eq!(segment_gen("2a.wal"), None);
        assert_eq!(segment_gen("checkpoint"), None);
        let p = segment_path(Path::new("/j"), 42);
        assert_eq!(
            segment_gen(p.file_name().unwrap().to_str().unwrap()),
            Some(42)
        );
    }
}
