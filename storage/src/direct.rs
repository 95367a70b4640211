//! Large values written into the data file with `pwrite` instead of through the map.
//!
//! With `WRITEMAP` a value LMDB reserves for us lies in the shared map, and filling it there
//! costs the kernel twice per 4 KiB page: a page fault on the first write to a fresh page
//! (`ext4_page_mkwrite`), and at the next checkpoint's `msync` a write-protect of every page
//! it writes back, with a TLB shootdown (an IPI to each CPU that runs a worker mapping the
//! file). `perf` of a 64 KiB `sync_writes off` PUT load put a third of the workers' CPU
//! there (`smp_call_function_many_cond` under `msync`, `native_write_msr`, `exc_page_fault`).
//! Writing the same bytes with `pwrite` at the same file offset puts them in the same page
//! cache pages (Linux's page cache is one for the map and for `read`/`write`), so every later
//! read through the map sees them, and the checkpoint's `msync` writes them back like any
//! other dirty page of the file; but no page table entry is made writable, so there is
//! nothing to fault now and nothing to write-protect later.
//!
//! Only a value on overflow pages of its own qualifies (at least a page long: LMDB keeps
//! smaller ones inside leaf pages shared with other records). Its place in the file is read
//! from the overflow page's header, which LMDB has just written in front of the reserved bytes
//! (its page number), and checked against the page size and the map; anything unexpected and
//! the caller fills the map as before. `WRITEMAP` only: without it the reserved bytes are a
//! heap copy that LMDB writes out at commit.

use std::fs::File;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::FileExt;

use lmdb_sys::{MDB_envinfo, MDB_stat, MDB_txn};

/// The size of LMDB's page header (`PAGEHDRSZ`: page number u64, pad u16, flags u16, overflow
/// count u32), in front of an overflow value's bytes.
const PAGE_HEADER: usize = 16;
/// Where the flags lie in the header, and the two an overflow page of this transaction has.
const FLAGS_AT: usize = 10;
const P_OVERFLOW: u16 = 0x04;
const P_DIRTY: u16 = 0x10;
/// LMDB's page is the OS page, 4 KiB or more.
const SMALLEST_PAGE: usize = 4096;

/// Where a reserved value lies in the data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    fd: RawFd,
    offset: u64,
}

/// The file offset of `reserved`, the bytes `mdb_put(MDB_RESERVE)` of write transaction `txn`
/// answered, when they are a value on overflow pages of a `WRITEMAP` environment; `None`
/// otherwise (the caller then fills `reserved` itself).
pub(crate) fn place_of(txn: *mut MDB_txn, reserved: &[u8]) -> Option<Place> {
    // Most values are small: no call into LMDB for them (its pages are never below 4 KiB).
    if reserved.len() < SMALLEST_PAGE {
        return None;
    }
    // SAFETY: `txn` is a live write transaction (the caller holds it), so its environment is
    // open; the three calls only read the environment's settings into the out parameters.
    let (flags, psize, map_size, fd) = unsafe {
        let env = lmdb_sys::mdb_txn_env(txn);
        if env.is_null() {
            return None;
        }
        let mut flags = 0;
        let mut stat = MaybeUninit::<MDB_stat>::uninit();
        let mut info = MaybeUninit::<MDB_envinfo>::uninit();
        let mut fd: RawFd = -1;
        if lmdb_sys::mdb_env_get_flags(env, &mut flags) != 0
            || lmdb_sys::mdb_env_stat(env, stat.as_mut_ptr()) != 0
            || lmdb_sys::mdb_env_info(env, info.as_mut_ptr()) != 0
            || lmdb_sys::mdb_env_get_fd(env, &mut fd) != 0
        {
            return None;
        }
        let psize = stat.assume_init().ms_psize as usize;
        (flags, psize, info.assume_init().me_mapsize, fd)
    };
    if flags & lmdb_sys::MDB_WRITEMAP == 0 || fd < 0 || psize == 0 || reserved.len() < psize {
        return None;
    }
    let page = (reserved.as_ptr() as usize).checked_sub(PAGE_HEADER)?;
    if page % psize != 0 {
        return None;
    }
    // SAFETY: with `WRITEMAP` every page a write transaction dirties lies in the map, and a
    // value of at least a page lies on overflow pages: `reserved` starts right after its first
    // page's header, so `page` is the start of that page, inside the same mapping (checked
    // aligned above). LMDB wrote the header before answering; unaligned reads, since nothing
    // here proves the alignment of the fields to the compiler.
    let (pgno, page_flags) = unsafe {
        let base = page as *const u8;
        (
            (base as *const u64).read_unaligned(),
            (base.add(FLAGS_AT) as *const u16).read_unaligned(),
        )
    };
    if page_flags & (P_OVERFLOW | P_DIRTY) != P_OVERFLOW | P_DIRTY {
        return None;
    }
    let offset = (pgno as usize)
        .checked_mul(psize)?
        .checked_add(PAGE_HEADER)?;
    if offset.checked_add(reserved.len())? > map_size {
        return None;
    }
    Some(Place {
        fd,
        offset: offset as u64,
    })
}

/// Writes `bytes` at `place`, whole: an I/O error (a full disk cannot be one, the blocks are
/// allocated before a request's first change) is LMDB's `Other(errno)` to the caller.
pub(crate) fn write_at(place: Place, bytes: &[u8]) -> lmdb::Result<()> {
    // SAFETY: `place.fd` is the environment's open data file, which LMDB owns and keeps open
    // for as long as the transaction lives; `ManuallyDrop` never closes it.
    let file = ManuallyDrop::new(unsafe { File::from_raw_fd(place.fd) });
    file.write_all_at(bytes, place.offset)
        .map_err(|e| lmdb::Error::Other(e.raw_os_error().unwrap_or(libc::EIO)))?;
    #[cfg(test)]
    WRITES.with(|w| w.set(w.get() + 1));
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// Tests: values this thread wrote by `pwrite`.
    pub(crate) static WRITES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Tests: values this thread has written by `pwrite` so far.
#[cfg(test)]
pub(crate) fn writes() -> u64 {
    WRITES.with(|w| w.get())
}
