//! Capacity of one environment: what the operator configured ([`Room`]), what a pass has
//! charged against it ([`Pass`]), and how far the blocks of a `WRITEMAP` file are allocated
//! ([`Alloc`]). The bottom layer: it knows LMDB's environment info and the file, never a
//! record, an operation or a batch.
//!
//! # Files with `write_map`
//!
//! LMDB extends `data.mdb` (and the cache's) to its whole map size when it opens with
//! `WRITEMAP`, [`real_map_size`] of the configured limit: with the default `map_size 64g`, a
//! 128 GiB + 64 MiB file (the default `cache_size 2g`: 4 GiB + 64 MiB). The file is sparse:
//! `ls -l` shows that size, `du` shows the blocks really used (the pages in use plus up to
//! 64 MiB allocated ahead, see below), and copies need a sparse-aware tool (`cp` is one,
//! `rsync -S`, `tar -S`; `mdb_copy` writes only the pages in use). The file never shrinks,
//! not even for a smaller `map_size` later (see `env::map_size_for`). The file-size limit
//! (`ulimit -f`) must allow it, which `Store::open` checks.
//!
//! Writing into a hole of a sparse file through the map needs a free block on the spot, and a
//! full disk would then kill the worker with `SIGBUS` instead of refusing the write. So before
//! a request's first change the file's blocks are allocated (`fallocate`) past the pages in use
//! ([`reserve_blocks`]), and the request is refused with `MapFull` (`507`) when the disk cannot
//! give them.
//!
//! # A full disk
//!
//! A write that grows the data needs blocks for twice its bytes past the pages in use, plus a
//! reserve ([`reserve_of`]: 1/16 of the limit or the disk, 2-64 MiB) that it leaves allocated,
//! and leaves the disk's last [`KEEP_FREE`] to the journal; a request that does not grow the
//! data (a delete, a same-size overwrite) needs only its copy-on-write pages (at most half
//! the reserve), which growing writes kept allocated, and leaves only [`KEEP_FREE_COW`]: so
//! deletes succeed on a full disk. Blocks are asked for [`ALLOC_AHEAD`] further when the disk
//! has them (fewer `fallocate` calls), and exactly what is needed when it has not. Room is
//! judged by what `fallocate` really has to provide: another worker may have allocated
//! further than this process's mark, and the file's block count says how far.
//!
//! Deletes take new pages while the pages they free are still pinned by a snapshot (each
//! worker's checkpoint keeps one for up to its interval), so a burst of them eats the reserve
//! and then the disk. Once pages on LMDB's free-list are reusable (freed before the oldest
//! snapshot still open, [`reusable_free`]) LMDB takes them instead of growing the file: a
//! request whose worst case they cover twice over is let through with the blocks of that
//! worst case only (no page reused after all), leaving [`KEEP_FREE_REUSE`] free (a delete: no
//! margin). Writes so come back as soon as deletes or the disk give room again, without a
//! restart, however far the deletes took the disk. Every refusal for a full map or a full
//! disk is counted ([`take_refusals`], `/metrics`) and logged at most
//! once a minute per reason, saying which.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use lmdb::Environment;

use crate::codec;
use crate::warm::Warmer;
use crate::{Result, StorageError};

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
    /// The size of the data file's filesystem, when known.
    pub disk: Option<u64>,
}

/// LMDB's map size for a configured limit: twice the limit (B-tree pages are on average ~70%
/// full, so the data charged against `limit` needs up to ~1.5x in pages) plus 64 MiB for
/// copy-on-write of a pass and the free-list. Without `WRITEMAP` it is only address space and
/// LMDB grows the file as pages are used; with `WRITEMAP` it is also the (sparse) file's size.
pub(crate) fn real_map_size(limit: u64) -> u64 {
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
    /// Bytes of free pages this pass may reuse ([`reusable_free`]), read at most once.
    reusable: Option<u64>,
    /// Requests of the pass that asked for file blocks (`reserve_blocks`).
    requests: u32,
}

impl Pass {
    /// Refuses growth the environment has no room for; else charges it to the pass. `used` is
    /// the environment's charged bytes before this write.
    pub fn charge(&mut self, env: &Environment, room: &Room, used: u64, growth: u64) -> Result<()> {
        if growth == 0 {
            return Ok(());
        }
        if used.saturating_add(growth) > room.limit {
            return Err(map_full(room));
        }
        self.physical(env, room, room.guard, growth)?;
        self.growth += growth;
        Ok(())
    }

    /// The bytes charged so far, to [`Pass::rewind`] to when a request is undone.
    pub fn mark(&self) -> u64 {
        self.growth
    }

    /// Forgets what was charged since [`Pass::mark`] returned `mark`.
    pub fn rewind(&mut self, mark: u64) {
        self.growth = mark;
    }

    /// For the queue's records, which are not in the byte count: `MapFull` when the pages in
    /// use plus the pass's growth plus `bytes` would pass `limit`; else charges `bytes`.
    pub fn charge_physical(&mut self, env: &Environment, room: &Room, bytes: u64) -> Result<()> {
        self.physical(env, room, room.limit, bytes)?;
        self.growth += bytes;
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
            return Err(map_full(room));
        }
        Ok(())
    }

    /// The bytes of free pages the pass may reuse, read at most once per pass: the pass
    /// holds the write lock, and readers only ever move to newer snapshots, so the count can
    /// only grow meanwhile.
    fn reusable(&mut self, env: &Environment, room: &Room) -> Result<u64> {
        match self.reusable {
            Some(r) => Ok(r),
            None => {
                let r = reusable_free(env)?.saturating_mul(room.psize);
                self.reusable = Some(r);
                Ok(r)
            }
        }
    }
}

/// Pages of LMDB's free-list that a write transaction may take now: those freed by
/// transactions older than every reader's snapshot and than the last commit (what LMDB's
/// `mdb_page_alloc` reuses, see its `mdb_find_oldest`). Pages freed since the oldest
/// snapshot still open (a checkpoint's pin, for up to its interval) are not counted: a write
/// would take new pages at the end of the file instead.
pub(crate) fn reusable_free(env: &Environment) -> Result<u64> {
    let last = env.info()?.last_txnid() as u64;
    let oldest = oldest_reader(env).map_or(last, |r| r.min(last));
    let txn = env.begin_ro_txn()?;
    let mut cursor: *mut lmdb_sys::MDB_cursor = std::ptr::null_mut();
    // SAFETY: `txn` is a live read transaction of `env`; DBI 0 is LMDB's free-list database,
    // always open; `cursor` is a valid out-pointer.
    let rc = unsafe { lmdb_sys::mdb_cursor_open(lmdb::Transaction::txn(&txn), 0, &mut cursor) };
    if rc != 0 {
        return Err(lmdb::Error::from_err_code(rc).into());
    }
    let mut pages = 0u64;
    let mut op = lmdb_sys::MDB_FIRST;
    loop {
        let mut key = lmdb_sys::MDB_val {
            mv_size: 0,
            mv_data: std::ptr::null_mut(),
        };
        let mut val = lmdb_sys::MDB_val {
            mv_size: 0,
            mv_data: std::ptr::null_mut(),
        };
        // SAFETY: `cursor` was opened above on `txn`, which outlives the loop; `key` and
        // `val` are valid out-pointers.
        let rc = unsafe { lmdb_sys::mdb_cursor_get(cursor, &mut key, &mut val, op) };
        op = lmdb_sys::MDB_NEXT;
        if rc != 0 {
            break;
        }
        let word = std::mem::size_of::<usize>();
        if key.mv_size != word || val.mv_size < word {
            break;
        }
        // SAFETY: LMDB returned `key` and `val` pointing at `mv_size` readable bytes, valid
        // until the next cursor operation: the free-list's key is a transaction id and its
        // value starts with the number of pages (both `size_t`, maybe unaligned).
        let (txnid, count) = unsafe {
            (
                std::ptr::read_unaligned(key.mv_data.cast::<usize>()) as u64,
                std::ptr::read_unaligned(val.mv_data.cast::<usize>()) as u64,
            )
        };
        // Keys ascend: the rest were freed too recently.
        if txnid >= oldest {
            break;
        }
        pages = pages.saturating_add(count);
    }
    // SAFETY: `cursor` is open, on `txn`, which is still alive; it is not used after this.
    unsafe { lmdb_sys::mdb_cursor_close(cursor) };
    Ok(pages)
}

/// The oldest snapshot a reader of `env` (any process) has open, `None` when none has.
fn oldest_reader(env: &Environment) -> Option<u64> {
    /// Each line of `mdb_reader_list` is `pid thread txnid` (`-` for a slot without a
    /// transaction); the header's third word is no number.
    unsafe extern "C" fn line(msg: *const libc::c_char, ctx: *mut libc::c_void) -> libc::c_int {
        // SAFETY: LMDB passes a NUL-terminated line and the `ctx` given below, a live
        // `Option<u64>`.
        let (text, oldest) = unsafe {
            (
                std::ffi::CStr::from_ptr(msg).to_string_lossy(),
                &mut *ctx.cast::<Option<u64>>(),
            )
        };
        if let Some(id) = text
            .split_whitespace()
            .nth(2)
            .and_then(|w| w.parse::<u64>().ok())
        {
            *oldest = Some(oldest.map_or(id, |o| o.min(id)));
        }
        0
    }
    let mut oldest: Option<u64> = None;
    // SAFETY: `env.env()` is the open environment; `line` only touches `oldest`, which
    // outlives the call.
    let rc = unsafe {
        lmdb_sys::mdb_reader_list(
            env.env(),
            Some(line),
            (&mut oldest as *mut Option<u64>).cast(),
        )
    };
    if rc < 0 {
        // Unknown: as if a reader held the oldest possible snapshot.
        return Some(0);
    }
    oldest
}

/// Refusals of this process since the last [`take_refusals`]: (full map, full disk).
static MAP_FULL: AtomicU64 = AtomicU64::new(0);
static DISK_FULL: AtomicU64 = AtomicU64::new(0);
/// When each reason was last logged (unix seconds).
static MAP_FULL_LOGGED: AtomicU64 = AtomicU64::new(0);
static DISK_FULL_LOGGED: AtomicU64 = AtomicU64::new(0);
/// At most one log line per reason per this many seconds.
const LOG_EVERY_SECS: u64 = 60;

/// The refusals for a full map and for a full disk since the last call (this process): a
/// commit's figures carry them, and a caller whose commit was refused takes them itself.
pub fn take_refusals() -> (u64, u64) {
    (
        MAP_FULL.swap(0, Ordering::Relaxed),
        DISK_FULL.swap(0, Ordering::Relaxed),
    )
}

/// Whether a line for `last` is due now (and marks it logged).
fn log_due(last: &AtomicU64) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let before = last.load(Ordering::Relaxed);
    if before != 0 && now.saturating_sub(before) < LOG_EVERY_SECS {
        return false;
    }
    last.store(now.max(1), Ordering::Relaxed);
    true
}

/// A write refused because the configured limit (or the map's pages) is reached.
fn map_full(room: &Room) -> StorageError {
    MAP_FULL.fetch_add(1, Ordering::Relaxed);
    if log_due(&MAP_FULL_LOGGED) {
        log::error!(
            "the map is full: the data reached its limit of {} bytes (map_size or cache_size); \
             writes that need room answer 507 until records are deleted or the limit is raised",
            room.limit
        );
    }
    StorageError::MapFull
}

/// Counts a write refused for a full disk (the journal's too).
pub(crate) fn count_disk_full() {
    DISK_FULL.fetch_add(1, Ordering::Relaxed);
}

/// A write refused because the disk cannot give the file's blocks.
fn disk_full(wanted: u64, in_use: u64) -> StorageError {
    count_disk_full();
    if log_due(&DISK_FULL_LOGGED) {
        log::error!(
            "the disk is full: could not allocate the data file's blocks up to {wanted} bytes \
             ({in_use} in use); writes that need room answer 507 until the disk or deletes \
             give room again (deletes still succeed)"
        );
    }
    StorageError::MapFull
}

/// Disk space the data file's allocations for growing writes leave free for the journal (its
/// reserve for the records of deletes, and the records written between two checkpoints).
const KEEP_FREE: u64 = 4 << 20;

/// What the allocations of requests that do not grow the data leave free: their records go
/// into the journal's reserve, which growing passes keep allocated; this is for a segment
/// started since (before any growing pass allocated its reserve), and for the growing writes
/// that come back after deletes ([`KEEP_FREE_REUSE`]).
const KEEP_FREE_COW: u64 = 1 << 20;

/// What a growing write leaves free when it reuses freed pages: the journal's room for its
/// record and reserve while the checkpoints give its covered blocks back. Below
/// [`KEEP_FREE_COW`], so that the deletes that took the disk that far leave writes room to
/// come back; such deletes themselves, when they reuse freed pages, may take the last blocks
/// (a few copy-on-write pages once).
const KEEP_FREE_REUSE: u64 = 512 << 10;

/// The blocks a request that does not grow the data may take past the pages in use: its
/// copy-on-write path and free-list pages.
const COW_PER_REQUEST: u64 = 32 << 10;

/// Blocks allocated past what a request needs when the disk has them, so that `fallocate`
/// runs rarely.
const ALLOC_AHEAD: u64 = 32 << 20;

/// The blocks kept allocated past the pages in use for requests that do not grow the data:
/// 1/16 of the limit (or of the disk, when smaller), 2-64 MiB. Deletes take new pages while
/// the pages they free are still pinned by a snapshot (the checkpoint's, for up to its
/// interval), about five per delete: 4 MiB lets some 200 deletes through per interval.
pub(crate) fn reserve_of(room: &Room) -> u64 {
    let base = room.limit.min(room.disk.unwrap_or(u64::MAX)) / 16;
    codec::round_up(base.clamp(2 << 20, 64 << 20), room.psize.max(1))
}

/// How far this process has had the blocks of a `WRITEMAP` environment's sparse file
/// allocated. Every process keeps its own mark; `fallocate` on blocks another process already
/// allocated is a cheap no-op (and needs no free block).
pub(crate) struct Alloc {
    /// Blocks below this file offset are allocated.
    upto: AtomicU64,
    /// `fallocate` is in use: `WRITEMAP` is on and the filesystem supports it.
    on: AtomicBool,
    /// Keeps the allocated pages past the high-water mark in the page cache (`warm`).
    warmer: Warmer,
}

/// What [`Alloc::ensure`] answers when the disk cannot give the blocks.
struct NoRoom;

impl Alloc {
    pub fn new(on: bool) -> Alloc {
        Alloc {
            upto: AtomicU64::new(0),
            on: AtomicBool::new(on),
            warmer: Warmer::new(),
        }
    }

    /// After a request's blocks are allocated: the pages it and the next ones will take,
    /// past `high_water`, are read into the page cache off this thread (see `warm`).
    fn warm(&self, env: &Environment, high_water: u64) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        let mut fd: libc::c_int = -1;
        // SAFETY: `env.env()` is the open environment owned by `env`; `fd` is a valid
        // out-pointer.
        if unsafe { lmdb_sys::mdb_env_get_fd(env.env(), &mut fd) } == 0 {
            self.warmer
                .want(fd, high_water, self.upto.load(Ordering::Relaxed));
        }
    }

    /// Makes sure the blocks below `need` (capped at the map size) are allocated, asking for
    /// those below `ahead` first, leaving `keep` bytes of the disk free; `Err(NoRoom)` inside
    /// when the disk cannot give them. Called before a request's first change, so a refusal
    /// leaves the pass intact.
    fn ensure(
        &self,
        env: &Environment,
        room: &Room,
        high_water: u64,
        need: u64,
        ahead: u64,
        keep: u64,
    ) -> Result<std::result::Result<(), NoRoom>> {
        if !self.on.load(Ordering::Relaxed) {
            return Ok(Ok(()));
        }
        let need = need.min(room.map);
        let upto = self.upto.load(Ordering::Relaxed);
        if need <= upto {
            return Ok(Ok(()));
        }
        // Pages below the high-water mark were written by committed transactions, so they
        // have their blocks.
        let from = upto.max(high_water).min(need);
        let psize = room.psize.max(1);
        let mut fd: libc::c_int = -1;
        // SAFETY: `env.env()` is the open environment owned by `env`; `fd` is a valid
        // out-pointer.
        let rc = unsafe { lmdb_sys::mdb_env_get_fd(env.env(), &mut fd) };
        if rc != 0 {
            return Err(lmdb::Error::from_err_code(rc).into());
        }
        // Ahead only into a quarter of the disk's free space: blocks taken ahead are lost to
        // the journal and the other files until the data reaches them.
        let extra = ahead
            .saturating_sub(need)
            .min(disk_free(fd).unwrap_or(0) / 4);
        let wanted = codec::round_up(need + extra, psize).min(room.map);
        let least = codec::round_up(need, psize).min(room.map);
        let free = disk_free(fd);
        // What is really missing: the file's blocks are allocated from its start up to the
        // furthest any process allocated (pages below the high-water mark were written, and
        // each process allocates from its own mark or that, whichever is higher), which this
        // process's own mark may lag behind; the file's block count tells how far.
        let allocated = file_blocks(fd).unwrap_or(0);
        for to in [wanted, least] {
            if to <= from {
                continue;
            }
            // Leave the journal its room: its records (deletes' too) are written after the
            // data's pages, and blocks given to the data file are not given back. (Only to
            // judge room: `fallocate` below still covers the whole range, a no-op where the
            // blocks are there.)
            let missing = to.saturating_sub(from.max(allocated));
            if missing > 0 && free.is_some_and(|f| f < missing.saturating_add(keep)) {
                continue;
            }
            match allocate(fd, from, to) {
                Ok(true) => {
                    self.upto.store(to, Ordering::Relaxed);
                    return Ok(Ok(()));
                }
                // Not enough: try the least it needs.
                Ok(false) => {}
                Err(Unsupported) => {
                    // A filesystem without fallocate (holes are then filled at fault time,
                    // and a full disk means SIGBUS): keep working, say it once.
                    log::warn!(
                        "fallocate is not supported here: with write_map, a full disk stops \
                         the worker with SIGBUS instead of refusing writes"
                    );
                    self.on.store(false, Ordering::Relaxed);
                    return Ok(Ok(()));
                }
            }
        }
        // `least <= from`: nothing was left to allocate.
        if least <= from {
            self.upto.store(least.max(upto), Ordering::Relaxed);
            return Ok(Ok(()));
        }
        Ok(Err(NoRoom))
    }
}

/// The bytes of blocks the file `fd` has (`st_blocks`), `None` when unknown.
fn file_blocks(fd: libc::c_int) -> Option<u64> {
    // SAFETY: an all-zero stat is a valid value of that plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open descriptor; `st` is a valid out-pointer for the call.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some((st.st_blocks as u64).saturating_mul(512))
}

/// The bytes free on the filesystem of `fd` for an unprivileged user, `None` when unknown.
pub(crate) fn disk_free(fd: libc::c_int) -> Option<u64> {
    disk_space(fd).map(|(_, free)| free)
}

/// (size, bytes free for an unprivileged user) of the filesystem of `fd`.
pub(crate) fn disk_space(fd: libc::c_int) -> Option<(u64, u64)> {
    // SAFETY: an all-zero statvfs is a valid value of that plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open descriptor; `st` is a valid out-pointer for the call.
    if unsafe { libc::fstatvfs(fd, &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((
        (st.f_blocks as u64).saturating_mul(frsize),
        (st.f_bavail as u64).saturating_mul(frsize),
    ))
}

/// `fallocate` of `[from, to)`: `Ok(false)` when the disk is full, `Err` when the filesystem
/// cannot. Other errors count as a full disk too (logged): a write is refused, never
/// risked in a hole.
fn allocate(fd: libc::c_int, from: u64, to: u64) -> std::result::Result<bool, Unsupported> {
    // SAFETY: `fd` is the environment's open data file descriptor; mode 0 only allocates
    // blocks of a range inside the file (LMDB sized it to the map).
    let allocated = crate::retry_interrupted(|| unsafe {
        libc::fallocate(fd, 0, from as libc::off_t, (to - from) as libc::off_t)
    });
    match allocated {
        Ok(()) => Ok(true),
        Err(e) => match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Ok(false),
            Some(libc::EOPNOTSUPP) => Err(Unsupported),
            _ => {
                log::error!("fallocate of the data file failed: {e}");
                Ok(false)
            }
        },
    }
}

/// The filesystem has no `fallocate`.
struct Unsupported;

/// Before a `write_map` request's changes: the file's blocks for every page the pass may take
/// past the high-water mark (see the module docs: twice the pass's growth plus the reserve,
/// or half the reserve for a pass that does not grow the data).
pub(crate) fn reserve_blocks(
    env: &Environment,
    room: &Room,
    alloc: &Alloc,
    pass: &mut Pass,
) -> Result<()> {
    let hw = pass.high_water(env, room)?;
    let reserve = reserve_of(room);
    let worst = pass.growth.saturating_mul(2);
    pass.requests = pass.requests.saturating_add(1);
    // Copy-on-write pages: a few per request (the path from the root to a leaf, the
    // free-list's own pages), out of the reserve growing writes kept.
    let cow = u64::from(pass.requests)
        .saturating_mul(COW_PER_REQUEST)
        .min(reserve / 2);
    let (need, keep) = if worst == 0 {
        (hw.saturating_add(cow), KEEP_FREE_COW)
    } else {
        (hw.saturating_add(worst).saturating_add(reserve), KEEP_FREE)
    };
    let ahead = hw
        .saturating_add(worst)
        .saturating_add(reserve)
        .saturating_add(ALLOC_AHEAD);
    if alloc.ensure(env, room, hw, need, ahead, keep)?.is_ok() {
        alloc.warm(env, hw);
        return Ok(());
    }
    // Pages freed by deletes are reused before the file grows: when the reusable ones cover
    // the pass's worst case twice over, that worst case (no page reused after all) is all it
    // needs past the pages in use, and it may take room the journal would keep (see the
    // module docs); the reserve is still asked for when the disk has it.
    let least = hw.saturating_add(worst).saturating_add(cow);
    if pass.reusable(env, room)? >= (least - hw).saturating_mul(2) {
        let keep = if worst == 0 { 0 } else { KEEP_FREE_REUSE };
        if alloc.ensure(env, room, hw, least, need, keep)?.is_ok() {
            return Ok(());
        }
    }
    Err(disk_full(need, hw))
}
