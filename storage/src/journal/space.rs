//! The journal's disk space: blocks kept allocated past the tail so that a pass that does not
//! grow the data (deletes, same-size overwrites) can always append its record on a full disk,
//! and the space a checkpoint covers given back while its segment is still being written.
//!
//! - Before a growing pass appends, the segment's blocks are allocated (`fallocate` with
//!   `KEEP_SIZE`: the file's length stays the records' end) up to the record's end plus
//!   [`RESERVE`], [`AHEAD`] further when the disk has it; when the disk cannot give them the
//!   pass is refused with `MapFull` (`507`) before anything is written. A pass that does not
//!   grow the data appends into the reserve without asking.
//! - After each checkpoint, on a disk short of space ([`PUNCH_BELOW_FREE`]), the covered
//!   start of the current segment is punched out (`FALLOC_FL_PUNCH_HOLE`): replay starts at
//!   the checkpoint's position and never reads it, and a small disk no longer fills up with a
//!   segment that rotates only at 64 MiB. It is punched in steps of [`PUNCH_STEP`], or of a
//!   page on a nearly full disk ([`NEARLY_FULL_BELOW`]), where checkpoints also come five
//!   times as often: there the covered records' blocks are what the data needs next.
//!   (Whole older segments are deleted as before.)
//!
//! Filesystems without these calls keep today's behaviour (space is taken as records are
//! written); a write that then fails for want of space is still a `507`, never a `500`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::StorageError;

/// Blocks kept allocated past the journal's tail for the records of passes that do not grow
/// the data.
pub(crate) const RESERVE: u64 = 1 << 20;
/// Allocated further when the disk has it, so that `fallocate` runs rarely.
const AHEAD: u64 = 4 << 20;
/// Covered bytes are punched out in steps of at least this much.
const PUNCH_STEP: u64 = 1 << 20;

/// Allocates the blocks of `file` below `end + RESERVE` (asking for `AHEAD` more first) for
/// a record to be written at `start..end`, from `allocated` (what this process already made
/// sure of in this segment) or `start`, whichever is further. Returns the new mark, or
/// `MapFull` when the disk cannot give them (logged, rate-limited).
pub(crate) fn ensure_room(
    file: &File,
    allocated: u64,
    start: u64,
    end: u64,
) -> std::result::Result<u64, StorageError> {
    let need = end.saturating_add(RESERVE);
    if need <= allocated {
        return Ok(allocated);
    }
    // Never below `start`: the records there were written (by any worker), and the covered
    // ones punched out (`punch_covered`); allocating from an older mark of this process
    // would fill those holes again, taking back what the checkpoints gave the disk.
    let from = allocated.max(start);
    // Ahead only into a quarter of the disk's free space (see `room`).
    let extra = crate::room::disk_free(file.as_raw_fd()).map_or(0, |free| AHEAD.min(free / 4));
    for to in [need.saturating_add(extra), need] {
        match fallocate(file, libc::FALLOC_FL_KEEP_SIZE, from, to) {
            Ok(()) => return Ok(to),
            Err(e) if no_space(&e) => continue,
            // No fallocate here: space is taken as records are written.
            Err(e) if unsupported(&e) => return Ok(u64::MAX),
            Err(e) => {
                log::error!("fallocate of a journal segment failed: {e}");
                break;
            }
        }
    }
    Err(journal_full(need))
}

/// Below this much free space on the journal's disk the covered start of the current segment
/// is punched out; above it the segment waits for its rotation to be deleted whole (at most
/// [`SEGMENT_BYTES`](super::record::SEGMENT_BYTES) more on the disk). A punch is not free: it
/// holds the segment's inode lock, which the next record's write waits for, in the loop and
/// under LMDB's write lock, and on a filesystem mounted with `discard` (and no ext4 journal)
/// the freed blocks are discarded within it, synchronously. Measured on the reference VM
/// (benches/RESULTS.md, 2026-12-02): the loop stalled in that write in 0.8% of the samples of
/// a 4 KiB PUT load.
pub(crate) const PUNCH_BELOW_FREE: u64 = 1 << 30;

/// Below this much free space on the journal's disk checkpoints come more often, so that the
/// records they cover give their blocks back sooner (see the checkpoint thread).
pub(crate) const NEARLY_FULL_BELOW: u64 = 128 << 20;

/// The free space of the disk of `file`; `None` when its filesystem does not say.
pub(crate) fn disk_free(file: &File) -> Option<u64> {
    crate::room::disk_free(file.as_raw_fd())
}

/// Punches out `[0, covered)` of `file` (rounded down to whole pages) when it has grown by
/// [`PUNCH_STEP`] since `punched`, or by any whole page when the disk is `nearly_full`;
/// returns the new mark.
///
/// On a nearly full disk the step would strand up to a step of covered blocks: once the data
/// file has taken the rest, no growing record can be written, so the covered mark never moves
/// on by a step, and writes would not come back after deletes (seen in tests/disk_full.rs).
pub(crate) fn punch_covered(file: &File, punched: u64, covered: u64, nearly_full: bool) -> u64 {
    let upto = covered - covered % 4096;
    let step = if nearly_full { 4096 } else { PUNCH_STEP };
    if upto < punched.saturating_add(step) {
        return punched;
    }
    match fallocate(
        file,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        0,
        upto,
    ) {
        Ok(()) => upto,
        Err(e) if unsupported(&e) => u64::MAX,
        Err(e) => {
            log::warn!("could not give back the covered start of a journal segment: {e}");
            punched
        }
    }
}

/// Allocates the blocks of `file` below `len` (extending it to `len` if shorter); a
/// filesystem without `fallocate` is left as it is.
pub(crate) fn allocate(file: &File, len: u64) -> std::io::Result<()> {
    match fallocate(file, 0, 0, len) {
        Err(e) if unsupported(&e) => Ok(()),
        r => r,
    }
}

/// A write of the journal failed with `e`: `MapFull` (logged, rate-limited) when for want of
/// space, else the I/O error.
pub(crate) fn write_error(e: std::io::Error, at: u64) -> StorageError {
    if no_space(&e) {
        return journal_full(at);
    }
    crate::io_error(e)
}

fn fallocate(file: &File, mode: libc::c_int, from: u64, to: u64) -> std::io::Result<()> {
    if to <= from {
        return Ok(());
    }
    // SAFETY: `file` is an open descriptor we own for the call's length; fallocate only
    // changes the blocks of that file in the given range.
    crate::retry_interrupted(|| unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            mode,
            from as libc::off_t,
            (to - from) as libc::off_t,
        )
    })
}

fn no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

fn unsupported(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS))
}

/// When the last "journal full" line was logged (unix seconds).
static LOGGED: AtomicU64 = AtomicU64::new(0);

fn journal_full(need: u64) -> StorageError {
    crate::room::count_disk_full();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let before = LOGGED.load(Ordering::Relaxed);
    if before == 0 || now.saturating_sub(before) >= 60 {
        LOGGED.store(now.max(1), Ordering::Relaxed);
        log::error!(
            "the disk is full: the journal could not get room for its segment up to {need} bytes; \
             writes that need room answer 507 until the disk or deletes give room again"
        );
    }
    StorageError::MapFull
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn room_is_allocated_past_the_end_without_growing_the_file() {
        let dir = std::env::temp_dir().join(format!("hust-jspace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("seg");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"0123456789").unwrap();
        let mark = ensure_room(&f, 0, 0, 10).unwrap();
        assert!(mark >= 10 + RESERVE);
        assert_eq!(
            f.metadata().unwrap().len(),
            10,
            "KEEP_SIZE changed the length"
        );
        // Already there: no call.
        assert_eq!(ensure_room(&f, mark, 10, 20).unwrap(), mark);
        // Punching keeps the length and the bytes past the punched pages.
        let big = vec![7u8; 3 << 20];
        f.write_all(&big).unwrap();
        let covered = (2 << 20) + 100;
        let punched = punch_covered(&f, 0, covered, false);
        assert!(punched == 2 << 20 || punched == u64::MAX, "{punched}");
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len(), 10 + (3 << 20));
        if punched != u64::MAX {
            assert!(data[..2 << 20].iter().all(|&b| b == 0));
        }
        assert!(data[(2 << 20)..].iter().all(|&b| b == 7));
        // Less than a step more: nothing to do.
        assert_eq!(punch_covered(&f, punched, covered + 4096, false), punched);
        if punched != u64::MAX {
            // On a nearly full disk a page is enough.
            assert_eq!(
                punch_covered(&f, punched, covered + 4096, true),
                punched + 4096
            );
            // Another worker's older mark (0 here) does not fill the punched start again:
            // only the blocks past the tail are allocated.
            use std::os::unix::fs::MetadataExt;
            let tail = 10 + (3 << 20);
            let before = f.metadata().unwrap().blocks() * 512;
            ensure_room(&f, 0, tail, tail + 10).unwrap();
            let grown = (f.metadata().unwrap().blocks() * 512).saturating_sub(before);
            // Past what the first call allocated (`mark`), at most up to the new need plus
            // what is asked for ahead.
            let past = (tail + 10 + RESERVE + AHEAD).saturating_sub(mark);
            assert!(
                grown <= past + (64 << 10),
                "{grown} bytes allocated, {past} expected"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
