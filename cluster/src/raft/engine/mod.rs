//! The node's one consensus log, shared by all its Raft groups ([`LogEngine`]): one
//! append-only file, `<data_dir>/raft/log`, whose records are tagged with their group and
//! kind (entry, vote, committed, truncate, purge), each length-prefixed and CRC-checked. A
//! flusher thread makes them durable by group commit: one `fdatasync` covers every append
//! pending at that moment, of every group, and then calls all their callbacks (TiKV's
//! raft-engine does the same for its regions).
//!
//! Every group has an in-memory index (where each entry lies, its vote, committed id and last
//! purged id) rebuilt at open by replaying the file; a torn or bad record is where the log
//! ends (the file is cut there), so a crash mid-write loses only unsynced records. Truncate
//! and purge are records too; when dead records outweigh live ones the flusher rewrites the
//! live ones into a new file and renames it over the old (file and folder fsynced). A failed
//! write or sync poisons the engine: every later call fails, since what reached the disk is
//! then unknown.
//!
//! One engine at a time holds the folder (an exclusive `flock` on `raft/lock`). It knows
//! openraft's log ids and votes only through `codec`; the traits are `log_store`'s.

use std::collections::{BTreeMap, HashMap};
mod flusher;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use openraft::{LogId, Vote};

use super::codec::{self, CodecError, Reader};
use super::NodeId;

const LOG_FILE: &str = "log";
const COMPACT_FILE: &str = "log.compact";
/// The file's first bytes: a file without them is not ours and is never cut or rewritten.
const MAGIC: &[u8; 8] = b"HSRAFTL1";
/// A record: body length (u32), CRC-32 of the body (u32), body = group (u32), kind (u8),
/// payload.
const HEADER: usize = 8;
const BODY_HEAD: usize = 5;
/// A longer record is garbage (an entry holds one command, at most a few MiB).
const MAX_BODY: usize = 256 << 20;
/// Below this size the file is never compacted.
const COMPACT_MIN: u64 = 64 << 20;

pub(crate) const ENTRY: u8 = 1;
pub(crate) const VOTE: u8 = 2;
pub(crate) const COMMITTED: u8 = 3;
pub(crate) const TRUNCATE: u8 = 4;
pub(crate) const PURGE: u8 = 5;

/// Where one whole record (header included) lies in the file.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: u64,
    len: u32,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    log_id: LogId<NodeId>,
    span: Span,
}

/// One group's index; every span in it is a live record.
#[derive(Default)]
struct GroupLog {
    entries: BTreeMap<u64, Slot>,
    vote: Option<(Vote<NodeId>, Span)>,
    committed: Option<(Option<LogId<NodeId>>, Span)>,
    purged: Option<(LogId<NodeId>, Span)>,
}

impl GroupLog {
    /// Every live record, in the order a compaction writes them (a purge before the entries
    /// it bounds).
    fn spans_mut(&mut self) -> impl Iterator<Item = &mut Span> {
        let purged = self.purged.iter_mut().map(|(_, s)| s);
        let vote = self.vote.iter_mut().map(|(_, s)| s);
        let committed = self.committed.iter_mut().map(|(_, s)| s);
        let entries = self.entries.values_mut().map(|slot| &mut slot.span);
        purged.chain(vote).chain(committed).chain(entries)
    }

    /// Drops the entries at `from` and above; the bytes they held.
    fn cut_from(&mut self, from: u64) -> u64 {
        let dropped = self.entries.split_off(&from);
        dropped.values().map(|s| u64::from(s.span.len)).sum()
    }
}

/// A group's log as openraft asks for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GroupView {
    pub last_purged: Option<LogId<NodeId>>,
    pub last_log: Option<LogId<NodeId>>,
    pub vote: Option<Vote<NodeId>>,
    pub committed: Option<LogId<NodeId>>,
}

/// Called by the flusher once the sync covering a write is done (or failed).
pub(crate) type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

struct State {
    file: Arc<File>,
    len: u64,
    /// Bytes of live records; `len - live` is garbage.
    live: u64,
    groups: HashMap<u32, GroupLog>,
    /// Callbacks of writes not yet covered by a sync.
    pending: Vec<Done>,
    /// Why the engine is poisoned.
    failed: Option<String>,
    closing: bool,
    /// Syncs done, for tests and metrics.
    syncs: u64,
    /// Log entries written (`/metrics`: entries per sync is the group commit's depth).
    entries: u64,
}

struct Shared {
    dir: PathBuf,
    /// Holds the folder's exclusive lock while the engine lives.
    _lock: File,
    state: Mutex<State>,
    wake: Condvar,
    compact_min: u64,
}

struct Inner {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

/// The node's consensus log; clones share it. The flusher thread stops (after a last sync of
/// what is pending) when the last clone goes.
#[derive(Clone)]
pub struct LogEngine {
    inner: Arc<Inner>,
}

/// Records being built for one write.
#[derive(Default)]
pub(crate) struct Records {
    buf: Vec<u8>,
    /// A record is over `MAX_BODY`: replay would end the log there, so it is never written.
    too_large: bool,
    /// How many of the records are log entries.
    entries: u64,
}

impl Records {
    /// Adds a record of `group`; `payload` writes its payload.
    pub fn push(&mut self, group: u32, kind: u8, payload: impl FnOnce(&mut Vec<u8>)) {
        let start = self.buf.len();
        self.entries += u64::from(kind == ENTRY);
        self.buf.extend_from_slice(&[0; HEADER]);
        codec::put_u32(&mut self.buf, group);
        self.buf.push(kind);
        payload(&mut self.buf);
        let body = &self.buf[start + HEADER..];
        self.too_large |= body.len() > MAX_BODY;
        let (len, crc) = (body.len() as u32, crc32fast::hash(body));
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Bytes of the records.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.buf.len()
    }
}

/// The record at the start of `buf`: its body, or `None` when it is torn or bad.
fn parse_record(buf: &[u8]) -> Option<&[u8]> {
    let head = buf.get(..HEADER)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if !(BODY_HEAD..=MAX_BODY).contains(&len) {
        return None;
    }
    let body = buf.get(HEADER..HEADER + len)?;
    (crc32fast::hash(body) == crc).then_some(body)
}

fn poisoned(why: &str) -> io::Error {
    io::Error::other(format!(
        "the consensus log is unusable since an earlier failure: {why}"
    ))
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Opens `path` for reading and writing, created if missing, its content kept.
fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Takes `<dir>/lock` exclusively: a second engine on the folder (another process, or a
/// second open in this one) is refused instead of interleaving its records with ours.
fn lock_folder(dir: &Path) -> io::Result<File> {
    let path = dir.join("lock");
    let file = open_rw(&path)?;
    // SAFETY: flock takes a descriptor `file` owns and keeps open for the call; no memory
    // is passed.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(match e.kind() {
            io::ErrorKind::WouldBlock => io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is held by another consensus log engine", path.display()),
            ),
            _ => e,
        });
    }
    Ok(file)
}

impl State {
    /// Applies one record to the indexes: the one path of both the replay and every write.
    /// `Err` only for a record the engine never writes.
    fn index(&mut self, body: &[u8], span: Span) -> Result<(), CodecError> {
        let mut r = Reader::new(body);
        let (group, kind) = (r.u32()?, r.u8()?);
        let g = self.groups.entry(group).or_default();
        let size = u64::from(span.len);
        let (added, freed) = match kind {
            ENTRY => {
                // Only the log id: the rest is decoded when read.
                let log_id = codec::get_log_id(&mut r)?;
                if g.purged.is_some_and(|(p, _)| log_id.index <= p.index) {
                    (0, 0)
                } else {
                    // An entry replaces every entry at its index and above.
                    let freed = g.cut_from(log_id.index);
                    g.entries.insert(log_id.index, Slot { log_id, span });
                    (size, freed)
                }
            }
            VOTE => {
                let vote = codec::get_vote(&mut r)?;
                r.end()?;
                let old = g.vote.replace((vote, span));
                (size, old.map_or(0, |(_, s)| u64::from(s.len)))
            }
            COMMITTED => {
                let committed = codec::get_opt_log_id(&mut r)?;
                r.end()?;
                let old = g.committed.replace((committed, span));
                (size, old.map_or(0, |(_, s)| u64::from(s.len)))
            }
            TRUNCATE => {
                let from = r.u64()?;
                r.end()?;
                (0, g.cut_from(from))
            }
            PURGE => {
                let upto = codec::get_log_id(&mut r)?;
                r.end()?;
                let kept = g.entries.split_off(&(upto.index.saturating_add(1)));
                let purged = std::mem::replace(&mut g.entries, kept);
                let mut freed: u64 = purged.values().map(|s| u64::from(s.span.len)).sum();
                if let Some((_, s)) = g.purged.replace((upto, span)) {
                    freed += u64::from(s.len);
                }
                (size, freed)
            }
            _ => return Err(CodecError),
        };
        // `freed` counts only spans once added: no underflow, saturating all the same.
        self.live = (self.live + added).saturating_sub(freed);
        Ok(())
    }

    fn usable(&self) -> io::Result<()> {
        match &self.failed {
            Some(why) => Err(poisoned(why)),
            None => Ok(()),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves indexes we cannot trust: poison on.
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => {
                let mut g = p.into_inner();
                g.failed.get_or_insert_with(|| "a thread panicked".into());
                g
            }
        }
    }
}

/// Replays the records of `file` after the magic; returns the state and where the last good
/// record ends.
fn replay(file: File) -> io::Result<(State, u64)> {
    let size = file.metadata()?.len();
    let file = Arc::new(file);
    let mut st = State {
        file: file.clone(),
        len: MAGIC.len() as u64,
        live: 0,
        groups: HashMap::new(),
        pending: Vec::new(),
        failed: None,
        closing: false,
        syncs: 0,
        entries: 0,
    };
    let mut reader = BufReader::with_capacity(1 << 20, &*file);
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic)?;
    let mut head = [0u8; HEADER];
    let mut rec = Vec::new();
    while st.len + HEADER as u64 <= size {
        reader.read_exact(&mut head)?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > MAX_BODY || st.len + (HEADER + len) as u64 > size {
            break;
        }
        rec.clear();
        rec.extend_from_slice(&head);
        rec.resize(HEADER + len, 0);
        reader.read_exact(&mut rec[HEADER..])?;
        let Some(body) = parse_record(&rec) else {
            break;
        };
        let span = Span {
            offset: st.len,
            len: rec.len() as u32,
        };
        if st.index(body, span).is_err() {
            break;
        }
        st.len += u64::from(span.len);
    }
    let end = st.len;
    Ok((st, end))
}

impl LogEngine {
    /// Opens (or creates) the log in `<data_dir>/raft/` and starts its flusher.
    pub fn open(data_dir: &Path) -> io::Result<LogEngine> {
        LogEngine::open_with(data_dir, COMPACT_MIN)
    }

    /// [`LogEngine::open`], compacting once the file passes `compact_min` bytes.
    pub(crate) fn open_with(data_dir: &Path, compact_min: u64) -> io::Result<LogEngine> {
        let dir = data_dir.join("raft");
        fs::create_dir_all(&dir)?;
        let lock = lock_folder(&dir)?;
        // A compaction that did not reach its rename: the log is still whole.
        match fs::remove_file(dir.join(COMPACT_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let path = dir.join(LOG_FILE);
        let file = open_rw(&path)?;
        let size = file.metadata()?.len();
        let mut start = [0u8; 8];
        let n = (size as usize).min(MAGIC.len());
        file.read_exact_at(&mut start[..n], 0)?;
        if start[..n] != MAGIC[..n] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a huststore consensus log", path.display()),
            ));
        }
        if size < MAGIC.len() as u64 {
            // New, or its creation was cut short.
            file.write_all_at(MAGIC, 0)?;
            file.sync_all()?;
            fsync_dir(&dir)?;
        }
        let (state, end) = replay(file.try_clone()?)?;
        let size = file.metadata()?.len();
        if end < size {
            log::warn!(
                "{}: the consensus log ends at byte {end}; the {} bytes after it (a torn or bad record) are dropped",
                path.display(),
                size - end
            );
            file.set_len(end)?;
            file.sync_all()?;
        }
        let shared = Arc::new(Shared {
            dir,
            _lock: lock,
            state: Mutex::new(state),
            wake: Condvar::new(),
            compact_min,
        });
        let flusher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("raft-log-flusher".into())
                .spawn(move || flusher::flush_loop(&shared))?
        };
        Ok(LogEngine {
            inner: Arc::new(Inner {
                shared,
                flusher: Some(flusher),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Writes `records` at the end of the file and indexes them; `done` is called after the
    /// next sync (the group commit). Without `done` the records become durable with the next
    /// sync anyone asks for.
    pub(crate) fn write(&self, records: Records, done: Option<Done>) -> io::Result<()> {
        let shared = self.shared();
        if records.too_large {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a consensus log record over 256 MiB",
            ));
        }
        let mut st = shared.lock();
        st.usable()?;
        if let Err(e) = st.file.write_all_at(&records.buf, st.len) {
            // Part of it may be on disk: a later record after it would be lost at replay.
            st.failed = Some(format!("write: {e}"));
            return Err(e);
        }
        let mut rest = &records.buf[..];
        while let Some(body) = parse_record(rest) {
            let span = Span {
                offset: st.len,
                len: (HEADER + body.len()) as u32,
            };
            if st.index(body, span).is_err() {
                st.failed = Some("an unreadable record was written".into());
                return Err(io::Error::other("an unreadable record was written"));
            }
            st.len += u64::from(span.len);
            rest = &rest[span.len as usize..];
        }
        st.entries += records.entries;
        if let Some(done) = done {
            st.pending.push(done);
            shared.wake.notify_one();
        }
        Ok(())
    }

    /// [`LogEngine::write`], returning once the records are durable.
    pub(crate) async fn write_durable(&self, records: Records) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let done: Done = Box::new(move |r| {
            let _ = tx.send(r);
        });
        self.write(records, Some(done))?;
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(io::Error::other("the consensus log's flusher stopped")),
        }
    }

    /// The group's log ids, vote and committed id.
    pub(crate) fn view(&self, group: u32) -> io::Result<GroupView> {
        let st = self.shared().lock();
        st.usable()?;
        let Some(g) = st.groups.get(&group) else {
            return Ok(GroupView::default());
        };
        let last_purged = g.purged.map(|(id, _)| id);
        let last_log = g.entries.values().next_back().map(|s| s.log_id);
        Ok(GroupView {
            last_purged,
            last_log: last_log.or(last_purged),
            vote: g.vote.map(|(v, _)| v),
            committed: g.committed.and_then(|(c, _)| c),
        })
    }

    /// The bodies' payloads of the group's entries in `range` (each a `codec::put_entry`).
    pub(crate) fn read_entries(
        &self,
        group: u32,
        range: impl RangeBounds<u64>,
    ) -> io::Result<Vec<Vec<u8>>> {
        let (file, spans) = {
            let st = self.shared().lock();
            st.usable()?;
            let spans: Vec<Span> = match st.groups.get(&group) {
                Some(g) => g.entries.range(range).map(|(_, s)| s.span).collect(),
                None => Vec::new(),
            };
            (st.file.clone(), spans)
        };
        // Outside the lock: a compaction meanwhile leaves `file` (unlinked) as it was.
        let mut out = Vec::with_capacity(spans.len());
        for span in spans {
            let mut rec = vec![0u8; span.len as usize];
            file.read_exact_at(&mut rec, span.offset)?;
            let body = parse_record(&rec).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "a consensus log record changed")
            })?;
            out.push(body[BODY_HEAD..].to_vec());
        }
        Ok(out)
    }

    /// Rewrites the live records into a new file now, whatever the garbage.
    #[cfg(test)]
    pub(crate) fn compact(&self) -> io::Result<()> {
        let shared = self.shared();
        let mut st = shared.lock();
        st.usable()?;
        flusher::compact(shared, &mut st)
    }

    /// Syncs done so far (`/metrics`).
    pub fn syncs(&self) -> u64 {
        self.shared().lock().syncs
    }

    /// Log entries written so far (`/metrics`).
    pub fn entries(&self) -> u64 {
        self.shared().lock().entries
    }

    /// The file's size and the bytes of its live records (`/metrics`: log size).
    pub fn sizes(&self) -> (u64, u64) {
        let st = self.shared().lock();
        (st.len, st.live)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(flusher) = self.flusher.take() {
            // The last handle may go in a callback the flusher runs: it then ends by itself.
            if flusher.thread().id() != std::thread::current().id() {
                let _ = flusher.join();
            }
        }
    }
}
