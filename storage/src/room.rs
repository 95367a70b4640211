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
//! reserve ([`reserve_of`]: 1/16 of the limit or the disk, 2-64 MiB) that it leaves allocated; a request
//! that does not grow the data (a delete, a same-size overwrite) needs only its copy-on-write
//! pages (at most half the reserve), which growing writes kept allocated: so deletes succeed
//! on a full disk. Blocks are asked
//! for [`ALLOC_AHEAD`] further when the disk has them (fewer `fallocate` calls), and exactly
//! what is needed when it has not. Once deletes have put pages on LMDB's free-list, LMDB
//! reuses them instead of growing the file: a growing write is then let through when the
//! free pages cover it four times over and the blocks it would need in the worst case (no
//! page reusable) are within the allocated reserve; should the free pages be pinned by a
//! reader after all, the write takes the reserve's blocks, never a hole. Writes so come back
//! as soon as deletes or the disk give room again, without a restart. The data file never
//! takes the last [`KEEP_FREE`] bytes of the disk: the journal needs them for the records of
//! the passes that reuse freed pages. Every refusal for a
//! full map or a full disk is counted ([`take_refusals`], `/metrics`) and logged at most
//! once a minute per reason, saying which.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use lmdb::Environment;

use crate::codec;
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

    /// The bytes of the environment's free-list, read at most once per pass.
    fn free_bytes(&mut self, env: &Environment, room: &Room) -> Result<u64> {
        let hw = self.high_water(env, room)?;
        let in_use = match self.in_use {
            Some(u) => u,
            None => {
                let free = env.freelist()? as u64;
                let u = hw.saturating_sub(free * room.psize);
                self.in_use = Some(u);
                u
            }
        };
        Ok(hw.saturating_sub(in_use))
    }
}

/// Refusals of this process since the last [`take_refusals`]: (full map, full disk).
static MAP_FULL: AtomicU64 = AtomicU64::new(0);
static DISK_FULL: AtomicU64 = AtomicU64::new(0);
/// When each reason was last logged (unix seconds).
static MAP_FULL_LOGGED: AtomicU64 = AtomicU64::new(0);
static DISK_FULL_LOGGED: AtomicU64 = AtomicU64::new(0);
/// At most one log line per reason per this many seconds.
const LOG_EVERY_SECS: u64 = 60;

/// The refusals for a full map and for a full disk since the last call (this process).
pub(crate) fn take_refusals() -> (u64, u64) {
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

/// Disk space the data file's allocations leave free for the journal (its reserve for the
/// records of deletes, and the records written between two checkpoints).
const KEEP_FREE: u64 = 4 << 20;

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
}

/// What [`Alloc::ensure`] answers when the disk cannot give the blocks.
struct NoRoom;

impl Alloc {
    pub fn new(on: bool) -> Alloc {
        Alloc {
            upto: AtomicU64::new(0),
            on: AtomicBool::new(on),
        }
    }

    /// Makes sure the blocks below `need` (capped at the map size) are allocated, asking for
    /// those below `ahead` first; `Err(NoRoom)` inside when the disk cannot give them. Called
    /// before a request's first change, so a refusal leaves the pass intact.
    fn ensure(
        &self,
        env: &Environment,
        room: &Room,
        high_water: u64,
        need: u64,
        ahead: u64,
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
        for to in [wanted, least] {
            if to <= from {
                continue;
            }
            // Leave the journal its room: its records (deletes' too) are written after the
            // data's pages, and blocks given to the data file are not given back.
            if free.is_some_and(|f| f < (to - from).saturating_add(KEEP_FREE)) {
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
    loop {
        // SAFETY: `fd` is the environment's open data file descriptor; mode 0 only allocates
        // blocks of a range inside the file (LMDB sized it to the map).
        let r = unsafe { libc::fallocate(fd, 0, from as libc::off_t, (to - from) as libc::off_t) };
        if r == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => return Ok(false),
            Some(libc::EOPNOTSUPP) => return Err(Unsupported),
            _ => {
                log::error!("fallocate of the data file failed: {e}");
                return Ok(false);
            }
        }
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
    let need = if worst == 0 {
        // Copy-on-write pages only: a few per request (the path from the root to a leaf,
        // the free-list's own pages), out of the reserve growing writes kept.
        let cow = u64::from(pass.requests).saturating_mul(COW_PER_REQUEST);
        hw.saturating_add(cow.min(reserve / 2))
    } else {
        hw.saturating_add(worst).saturating_add(reserve)
    };
    let ahead = hw
        .saturating_add(worst)
        .saturating_add(reserve)
        .saturating_add(ALLOC_AHEAD);
    if alloc.ensure(env, room, hw, need, ahead)?.is_ok() {
        return Ok(());
    }
    if worst > 0 {
        // Pages freed by deletes are reused before the file grows: when they cover the pass
        // four times over, its worst case may dip into the reserve (see the module docs).
        let free = pass.free_bytes(env, room)?;
        if free >= worst.saturating_mul(2) {
            let dip = hw.saturating_add(worst).saturating_add(reserve / 2);
            if alloc.ensure(env, room, hw, dip, dip)?.is_ok() {
                return Ok(());
            }
        }
    }
    Err(disk_full(need, hw))
}
