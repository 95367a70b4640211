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
//!
//! # Files
//!
//! This file opens the journal and writes records ([`Journal::append`]); `replay` replays
//! them up to the first hole; `record` holds their format, the journal's position and the
//! segment files; `checkpoint` the checkpoint file and thread; `fail_stop` what a failed
//! flush stops (no write acknowledged, no checkpoint, recovery at the next start). The journal sits on the bottom layer (environments, the
//! change record [`Ops`] a pass's write transaction fills) and knows no operation, record
//! layout of the store, or batch.

pub(crate) mod checkpoint;
mod fail_stop;
mod record;
mod replay;
mod space;

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use lmdb::{Database, Environment, RwTransaction, WriteFlags};

use crate::env::Dbs;
use crate::room::Room;
use crate::txn::Ops;
use crate::{io_error, Result, StorageError};
#[cfg(test)]
pub(crate) use checkpoint::Checkpoint;
pub(crate) use checkpoint::{boot_id, forget, read_checkpoint};
use checkpoint::{checkpoint_thread, discard, restore_meta, Checkpointer};
pub(crate) use fail_stop::open_without_journal;
pub use fail_stop::{FailState, FailStop};
pub use record::{decode_journal_record, encode_journal_record, DecodedRecord, RecordChange};
use record::{
    encode_record, load_position, lock, segment_path, sync_dir, txn_id, Position, SEGMENT_BYTES,
    WAL_KEY,
};
use replay::replay;

/// The journal of an open store: the writer's side (records, segments) and the checkpoint
/// thread.
pub(crate) struct Journal {
    dir: PathBuf,
    meta: Database,
    writer: Mutex<Writer>,
    fail: FailStop,
    /// Tells the checkpoint thread to stop (`true`: after a last checkpoint).
    checkpointer: Option<(mpsc::Sender<bool>, thread::JoinHandle<()>)>,
}

#[derive(Default)]
struct Writer {
    /// The segment last written to.
    segment: Option<(u64, Arc<File>)>,
    /// How far this process allocated that segment's blocks (`space::ensure_room`).
    allocated: u64,
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
        self.allocated = 0;
        Ok(f)
    }
}

/// The persistent environment as `Store::open` opens it.
pub(crate) type Opened = (Arc<Environment>, Dbs, Room);

impl Journal {
    /// Opens the journal of the environment in `data_dir`, which `open_env` opens; call with
    /// the environment not yet open. After a reboot it restores the last checkpoint's snapshot
    /// and replays the journal onto it; then it stores a fresh checkpoint and starts the
    /// checkpoint thread. Opens of all workers are serialised by `journal/open.lock`.
    ///
    /// Fail-stop: a daemon whose flag is set (a worker respawned after a failed flush) opens
    /// without recovery and takes no checkpoint. A fail-stop marker left by a daemon that is
    /// gone asks for the recovery of a reboot (the last good checkpoint, then the journal up
    /// to its first bad record); one left by a daemon still running sets the flag.
    pub(crate) fn open(
        data_dir: &Path,
        boot: Option<String>,
        fail: FailStop,
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
        let marked = if fail.is_tripped() {
            None
        } else {
            fail_stop::marker(&dir)
        };
        if marked == Some(true) {
            log::error!(
                "journal: {} is fail-stopped (its marker names a running master): this \
                 worker acknowledges no write either",
                dir.display()
            );
            fail.inherit();
        }
        let recover = marked == Some(false);
        if let Some(ck) = stored
            .as_ref()
            .filter(|c| (!boot.is_empty() && c.boot != boot) || recover)
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
            let r = replay(&env, &dbs, &dir, ck)?;
            conf::notice!(
                "journal: {}; restored the data file to its checkpoint (transaction {}) and \
                 replayed {} transaction(s) from the journal, up to segment {} byte {}{}",
                if recover {
                    "the last daemon stopped after a failed flush"
                } else {
                    "the machine restarted"
                },
                ck.txnid,
                r.count,
                r.pos.gen,
                r.pos.off,
                if r.hole {
                    " (a hole: see the alert above)"
                } else {
                    ""
                }
            );
        }
        let ctx = Checkpointer {
            env: env.clone(),
            dir: dir.clone(),
            meta: dbs.meta,
            psize: room.psize,
            boot,
            file,
            fail,
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
            fail,
            checkpointer: Some((stop_tx, handle)),
        };
        first?;
        if recover && !fail.is_tripped() {
            // The first checkpoint, of the recovered store, is stored.
            fail_stop::clear_marker(&journal.dir);
        }
        drop(open_lock);
        Ok((journal, (env, dbs, room)))
    }

    /// Under the write lock, just before `rw` commits: writes the record of `rw` with `ops` at
    /// the journal's tail and stores the new tail in `rw`. Returns where, with the segment to
    /// `fdatasync` once the commit is done. An error leaves `rw` to be aborted.
    /// `grows`: the pass adds data; it must then leave the journal's reserve of blocks
    /// allocated past its record (`space`), which a pass that does not grow may use.
    pub(crate) fn append(
        &self,
        rw: &mut RwTransaction<'_>,
        ops: &Ops,
        grows: bool,
    ) -> Result<Appended> {
        let txnid = txn_id(rw);
        let mut pos = load_position(rw, self.meta)?;
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut record = std::mem::take(&mut w.record);
        encode_record(&mut record, txnid, ops.bytes());
        let len = record.len() as u64;
        let result = (|| {
            if pos.off > 0 && pos.off.saturating_add(len) > SEGMENT_BYTES {
                // The full segment durable before the next one starts, so that an fdatasync
                // of the new one never leaves an earlier record behind.
                let full = w.segment(&self.dir, pos.gen, false)?;
                let synced = match self.fail.flush_fault() {
                    Some(e) => Err(e),
                    None => full.sync_data(),
                };
                if let Err(e) = synced {
                    // Records of acknowledged passes may be gone with it.
                    let path = segment_path(&self.dir, pos.gen);
                    self.fail
                        .trip("the journal fdatasync", &path, &e, Some(&self.dir));
                    return Err(StorageError::Stopped { committed: false });
                }
                pos = Position {
                    gen: pos.gen + 1,
                    off: 0,
                };
                w.segment(&self.dir, pos.gen, true)?;
            }
            let file = w.segment(&self.dir, pos.gen, false)?;
            if grows {
                w.allocated = space::ensure_room(&file, w.allocated, pos.off, pos.off + len)?;
            }
            file.write_all_at(&record, pos.off)
                .map_err(|e| space::write_error(e, pos.off + len))?;
            let next = Position {
                gen: pos.gen,
                off: pos.off + len,
            };
            rw.put(self.meta, &WAL_KEY, &next.encode(), WriteFlags::empty())?;
            Ok(Appended {
                file,
                at: pos.off,
                gen: pos.gen,
            })
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
    file: Arc<File>,
    at: u64,
    gen: u64,
}

impl Appended {
    /// The flush that makes the record durable, once its transaction has committed.
    pub(crate) fn flush(self, journal: &Journal) -> JournalFlush {
        JournalFlush {
            segment: self.file,
            dir: journal.dir.clone(),
            gen: self.gen,
            fail: journal.fail,
        }
    }
}

/// The flush that makes a committed pass durable (see [`crate::Batch::commit_deferred`]). It
/// can be sent to another thread.
pub struct JournalFlush {
    segment: Arc<File>,
    dir: PathBuf,
    gen: u64,
    fail: FailStop,
}

impl JournalFlush {
    /// `fdatasync`s the journal segment of the commit: that commit and every earlier one (of
    /// any worker) are then on disk. A failure fail-stops the daemon (see [`FailStop`]); once
    /// it is stopped, a flush that succeeds still answers `Stopped`: Linux reports a writeback
    /// error once, so a later success does not cover the pages lost then.
    pub fn wait(self) -> Result<()> {
        let synced = match self.fail.flush_fault() {
            Some(e) => Err(e),
            None => self.segment.sync_data(),
        };
        if let Err(e) = synced {
            let path = segment_path(&self.dir, self.gen);
            self.fail
                .trip("the journal fdatasync", &path, &e, Some(&self.dir));
        }
        if self.fail.is_tripped() {
            return Err(StorageError::Stopped { committed: true });
        }
        Ok(())
    }
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
