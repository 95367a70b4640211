//! Checkpoints of the journal: the checkpoint file (two slots written alternately), the
//! checkpoint thread of each worker (flush the data file, store what the flush covers, keep a
//! pin on its snapshot, delete the segments it covers), and, after a machine crash, writing the
//! checkpoint's meta page back into the data file (`restore_meta`). It never writes records.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use lmdb::{Database, Environment, RoTransaction};

use super::fail_stop::FailStop;
use super::record::{
    load_position, lock, remove_segments_before, segment_path, sync_dir, txn_id, Position,
};
use crate::env::begin;
use crate::{io_error, Result, StorageError};

/// How often a worker's checkpoint thread looks whether the store changed. The pin keeps LMDB
/// from reusing the pages freed in between, so a longer interval grows the file (measured: a
/// 4 s insert run left a 321-353 MiB file at 1 s, 193-225 MiB at 250 ms) and makes each
/// flush longer, which the journal's flushes then queue behind (p99 10 ms instead of 25-55).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// The interval on a disk nearly full ([`NEARLY_FULL_BELOW`](super::space::NEARLY_FULL_BELOW)):
/// the records written since the last checkpoint hold their blocks until the next one covers
/// them, which the data cannot have meanwhile. At 250 ms a 64 MiB disk filled by 16 KiB
/// puts held up to 9 MiB of them when the data file first found no room (tests/disk_full.rs).
const CHECKPOINT_EVERY_NEARLY_FULL: Duration = Duration::from_millis(50);
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

const CHECKPOINT_MAGIC: u32 = 0x4b43_5348; // "HSCK"
const CHECKPOINT_VERSION: u32 = 1;
/// The checkpoint file has two slots, each in its own block, written alternately.
const SLOT_BYTES: u64 = 4096;
const BOOT_MAX: usize = 64;

fn env_fd(env: &Environment) -> Result<libc::c_int> {
    let mut fd: libc::c_int = -1;
    // SAFETY: `env.env()` is the open environment owned by `env`; `fd` is a valid out-pointer.
    let rc = unsafe { lmdb_sys::mdb_env_get_fd(env.env(), &mut fd) };
    if rc != 0 {
        return Err(lmdb::Error::from_err_code(rc).into());
    }
    Ok(fd)
}

/// A checkpoint writes the data file's dirty pages back in slices of at least this much
/// before its sync (see [`write_back_in_slices`]).
const WRITE_BACK_SLICE: u64 = 4 << 20;
/// And in at most this many: each costs two calls even where nothing is dirty, so a store of
/// 64 GiB is written back in 64 MiB slices (2048 calls a checkpoint, not 32768).
const WRITE_BACK_SLICES_MOST: u64 = 1024;

/// The data file of `env` opened anew, for [`write_back_in_slices`]: through `/proc/self/fd`,
/// so that it is the very file LMDB has open (checked by its inode), with an open file
/// description of its own. That matters: waiting for writeback reports a write-back error once
/// per open file description, and one reported here must still reach the checkpoint's sync on
/// LMDB's descriptor, which decides about fail-stop. `None` without `/proc`: no slices then.
fn open_for_write_back(env: &Environment, inode: u64) -> Option<File> {
    let fd = env_fd(env).ok()?;
    let file = File::open(format!("/proc/self/fd/{fd}")).ok()?;
    (file.metadata().ok()?.ino() == inode).then_some(file)
}

/// Writes back the dirty pages of the first `used` bytes of the data file, a slice at a time
/// ([`WRITE_BACK_SLICE`], or a [`WRITE_BACK_SLICES_MOST`]th of `used`), at most two in flight (each waited for before the
/// one after the next is started), so that the checkpoint's sync that follows has little left
/// to write.
///
/// Why: a sync of the data file submits every page dirtied since the last checkpoint at once
/// (tens of MB under a write load), and the journal's `fdatasync`, which a durable write's
/// reply waits for, queues behind all of it on the same disk: its tail (p99.9 50-100 ms) was
/// the checkpoint's length. In slices the journal's writes get the disk between them. Errors
/// are left to the sync (this descriptor's report of them does not consume LMDB's, see
/// [`open_for_write_back`]); a failed slice just ends the slicing.
fn write_back_in_slices(file: &File, used: u64) {
    let fd = file.as_raw_fd();
    let slice = WRITE_BACK_SLICE.max(used / WRITE_BACK_SLICES_MOST);
    let mut off = 0;
    while off < used {
        let len = slice.min(used - off);
        // Started, then the slice before it waited for: two slices in flight at most.
        if range_sync(fd, off, len, libc::SYNC_FILE_RANGE_WRITE).is_err() {
            return;
        }
        if off > 0 {
            let wait = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER;
            if range_sync(fd, off - slice, slice, wait).is_err() {
                return;
            }
        }
        off += len;
    }
}

/// `sync_file_range` of `len` bytes at `off`, retried on `EINTR`.
fn range_sync(fd: libc::c_int, off: u64, len: u64, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: `fd` is an open descriptor the caller owns for the call's length; the call only
    // writes back that file's cached pages in the given range.
    crate::retry_interrupted(|| unsafe {
        libc::sync_file_range(fd, off as libc::off64_t, len as libc::off64_t, flags)
    })
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

/// Stores `ck` unless a newer checkpoint is stored already; returns the newest one.
pub(crate) fn store_checkpoint(dir: &Path, ck: &Checkpoint) -> Result<Checkpoint> {
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
    // Both slots' blocks before either is written: a slot's first write on a full disk would
    // fail for want of a block (see `space`), and a checkpoint must not.
    if f.metadata().map_err(io_error)?.len() < 2 * SLOT_BYTES {
        super::space::allocate(&f, 2 * SLOT_BYTES).map_err(io_error)?;
    }
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
pub(crate) fn discard(dir: &Path) {
    let _ = fs::remove_file(checkpoint_path(dir));
    remove_segments_before(dir, u64::MAX);
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
pub(crate) fn restore_meta(data_dir: &Path, ck: &Checkpoint) -> Result<bool> {
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

/// Everything the checkpoint thread needs.
pub(crate) struct Checkpointer {
    pub env: Arc<Environment>,
    pub dir: PathBuf,
    pub meta: Database,
    pub psize: u64,
    pub boot: String,
    /// The data file's inode.
    pub file: u64,
    pub fail: FailStop,
}

/// Tests: journal folders whose thread takes no periodic checkpoint (only the first and the
/// last), so that a test's history stays in the journal however slowly the machine runs it.
#[cfg(test)]
pub(crate) static PERIODIC_HELD: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

#[cfg(test)]
fn periodic_held(dir: &Path) -> bool {
    PERIODIC_HELD
        .lock()
        .map(|held| held.iter().any(|d| d == dir))
        .unwrap_or(false)
}

#[cfg(not(test))]
fn periodic_held(_: &Path) -> bool {
    false
}

/// The checkpoint thread of one worker: the first checkpoint (answered on `ready`), then one
/// every [`CHECKPOINT_EVERY`] ([`CHECKPOINT_EVERY_NEARLY_FULL`] on a nearly full disk) while
/// the store changes, and a last one when told to stop with
/// `true`. Once the daemon is fail-stopped it takes none (a checkpoint would say the data
/// file is on disk, and its success would drop journal segments that recovery needs): it
/// keeps its pin, so the last good checkpoint's pages stay intact, and waits to be stopped.
pub(crate) fn checkpoint_thread(
    ctx: Checkpointer,
    ready: mpsc::Sender<Result<()>>,
    stop: mpsc::Receiver<bool>,
) {
    let env = &*ctx.env;
    let mut punch = Punch::default();
    let write_back = open_for_write_back(env, ctx.file);
    let (mut pin, mut kept_from) = if ctx.fail.is_tripped() {
        (None, 0)
    } else {
        match checkpoint(env, &ctx, write_back.as_ref()) {
            Ok((pin, covered)) => {
                remove_segments_before(&ctx.dir, covered.gen);
                punch.covered(&ctx.dir, covered);
                (Some(pin), covered.gen)
            }
            // This very sync failed: the worker serves, fail-stopped.
            Err(StorageError::Stopped { .. }) => (None, 0),
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        }
    };
    let _ = ready.send(Ok(()));
    loop {
        let every = if punch.nearly_full {
            CHECKPOINT_EVERY_NEARLY_FULL
        } else {
            CHECKPOINT_EVERY
        };
        let stopping = match stop.recv_timeout(every) {
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Ok(false) => return,
            Ok(true) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
        };
        if ctx.fail.is_tripped() {
            if stopping {
                return;
            }
            continue;
        }
        if !stopping && periodic_held(&ctx.dir) {
            continue;
        }
        let changed = match (&pin, env.info()) {
            (Some(p), Ok(i)) => i.last_txnid() as u64 > txn_id(p),
            _ => true,
        };
        if changed {
            // The new pin is taken before the old one is dropped (see the module docs).
            match checkpoint(env, &ctx, write_back.as_ref()) {
                Ok((p, covered)) => {
                    pin = Some(p);
                    // Segments before `kept_from` are gone: list the folder only when the
                    // checkpoint moved past it.
                    if covered.gen > kept_from && !ctx.fail.is_tripped() {
                        remove_segments_before(&ctx.dir, covered.gen);
                        kept_from = covered.gen;
                    }
                    punch.covered(&ctx.dir, covered);
                }
                // The disk is full (and said so by the writes it refuses): tried again
                // at the next interval.
                Err(StorageError::MapFull) => {}
                Err(e) => log::error!("journal checkpoint failed: {e}"),
            }
        }
        if stopping {
            return;
        }
    }
}

/// The covered start of the current segment, given back to a disk short of space (`space`),
/// and whether that disk was nearly full, which sets the checkpoint interval.
#[derive(Default)]
struct Punch {
    /// The segment, open, and how far its start is punched out.
    segment: Option<(u64, File, u64)>,
    /// Whether the disk was nearly full at the last checkpoint.
    nearly_full: bool,
}

impl Punch {
    /// The newest stored checkpoint covers the journal up to `pos`.
    fn covered(&mut self, dir: &Path, pos: Position) {
        if self
            .segment
            .as_ref()
            .is_none_or(|(gen, _, _)| *gen != pos.gen)
        {
            self.segment = OpenOptions::new()
                .write(true)
                .open(segment_path(dir, pos.gen))
                .ok()
                .map(|f| (pos.gen, f, 0));
        }
        self.nearly_full = false;
        if let Some((_, file, punched)) = self.segment.as_mut() {
            let free = super::space::disk_free(file);
            self.nearly_full = free.is_some_and(|f| f < super::space::NEARLY_FULL_BELOW);
            if *punched != u64::MAX && free.is_some_and(|f| f < super::space::PUNCH_BELOW_FREE) {
                *punched = super::space::punch_covered(file, *punched, pos.off, self.nearly_full);
            }
        }
    }
}

/// Takes a checkpoint and returns its pin (the read transaction on its snapshot) and where
/// the newest stored checkpoint's journal starts (the oldest segment it still needs).
fn checkpoint<'e>(
    env: &'e Environment,
    ctx: &Checkpointer,
    write_back: Option<&File>,
) -> Result<(RoTransaction<'e>, Position)> {
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
    let synced = match ctx.fail.checkpoint_fault() {
        Some(e) => Err(StorageError::Lmdb(lmdb::Error::Other(
            e.raw_os_error().unwrap_or(libc::EIO),
        ))),
        None => {
            let start = std::time::Instant::now();
            if let (Some(file), Ok(info)) = (write_back, env.info()) {
                write_back_in_slices(file, (info.last_pgno() as u64 + 1) * ctx.psize);
            }
            let synced = env.sync(true).map_err(StorageError::from);
            crate::step_done(crate::Step::CheckpointSync, start);
            synced
        }
    };
    let data = ctx.dir.parent().unwrap_or(&ctx.dir).join("data.mdb");
    if let Err(e) = synced {
        ctx.fail
            .trip("the checkpoint msync", &data, &e, Some(&ctx.dir));
    }
    // Tripped by this sync or by another process meanwhile: a success now proves nothing.
    if ctx.fail.is_tripped() {
        return Err(StorageError::Stopped { committed: false });
    }
    let best = match store_checkpoint(&ctx.dir, &ck) {
        Ok(best) => best,
        // No block for the file (an older one, whose slots were not allocated ahead): nothing
        // was written, the stored checkpoint stands, and the journal is kept until one can be
        // stored. Not a lost write: no fail-stop.
        Err(StorageError::Lmdb(lmdb::Error::Other(libc::ENOSPC | libc::EDQUOT))) => {
            return Err(StorageError::MapFull)
        }
        Err(e) => {
            let path = checkpoint_path(&ctx.dir);
            ctx.fail
                .trip("the checkpoint write", &path, &e, Some(&ctx.dir));
            return Err(e);
        }
    };
    Ok((pin, best.pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_back_opens_lmdbs_own_file_and_slices_any_length() {
        let dir = crate::tests::TempDir::new("ckpt-wb");
        let env = Environment::new().open(dir.path()).unwrap();
        let inode = fs::metadata(dir.path().join("data.mdb")).unwrap().ino();
        let file = open_for_write_back(&env, inode).expect("/proc/self/fd reopens the data file");
        assert_eq!(file.metadata().unwrap().ino(), inode);
        // Another inode (the file replaced under LMDB) is not taken for it.
        assert!(open_for_write_back(&env, inode + 1).is_none());
        // Lengths that are not whole slices, and past the file's end: the bytes stay as written.
        let path = dir.path().join("slices");
        let bytes: Vec<u8> = (0..(9 * WRITE_BACK_SLICE + 100) as usize)
            .map(|i| (i % 251) as u8)
            .collect();
        fs::write(&path, &bytes).unwrap();
        let f = File::open(&path).unwrap();
        for used in [
            0,
            100,
            WRITE_BACK_SLICE,
            bytes.len() as u64,
            12 * WRITE_BACK_SLICE,
            // Slices larger than the least (a 1024th of 20 GiB).
            5000 * WRITE_BACK_SLICE,
        ] {
            write_back_in_slices(&f, used);
        }
        assert_eq!(fs::read(&path).unwrap(), bytes);
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
}
