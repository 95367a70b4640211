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
//! a request's first change the file's blocks are allocated (`fallocate`) a margin past the
//! pages in use ([`reserve_blocks`]), and the request is refused with `MapFull` when the disk
//! cannot give them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lmdb::Environment;

use crate::codec;
use crate::{io_error, Result, StorageError};

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
            return Err(StorageError::MapFull);
        }
        Ok(())
    }
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
    pub fn new(on: bool) -> Alloc {
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

/// Before a `write_map` request's changes: blocks of the file for every page the pass may take
/// past the high-water mark (twice the bytes charged so far, plus the margin `Alloc` keeps).
pub(crate) fn reserve_blocks(
    env: &Environment,
    room: &Room,
    alloc: &Alloc,
    pass: &mut Pass,
) -> Result<()> {
    let hw = pass.high_water(env, room)?;
    let need = hw
        .saturating_add(pass.growth.saturating_mul(2))
        .saturating_add(ALLOC_MARGIN);
    alloc.ensure(env, room, hw, need)
}
