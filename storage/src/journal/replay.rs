//! Replay of the journal onto the last checkpoint's snapshot (after a machine crash, or a
//! restart after a fail-stop): the records from the checkpoint's position on, in one write
//! transaction, up to the first record that is not the next transaction. It never skips a
//! hole: a record that does not parse, or a segment that does not go on with the next
//! transaction, ends the replay there, and when anything follows (a later record, a later
//! segment) that is said at `alert` with the segment and byte, and the rest is set aside
//! (`<segment>.wal.lost`), so that new records never follow stale ones.

use std::fs;
use std::io;
use std::path::Path;

use lmdb::{Environment, Transaction, WriteFlags};

use super::checkpoint::Checkpoint;
use super::record::{parse_record, segment_gen, segment_path, Position, WAL_KEY};
use crate::env::{begin, Dbs};
use crate::txn::{decode_ops, Op};
use crate::{io_error, Result, StorageError};

/// How a replay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replayed {
    /// Transactions applied.
    pub count: u64,
    /// Where the journal now ends (the next record goes there).
    pub pos: Position,
    /// The replay stopped at a hole: records or segments after `pos` were not applied.
    pub hole: bool,
}

/// Applies the journal's records after `ck` (from `ck.pos` on, through the later segments)
/// in one transaction.
pub(crate) fn replay(
    env: &Environment,
    dbs: &Dbs,
    dir: &Path,
    ck: &Checkpoint,
) -> Result<Replayed> {
    let tables = dbs.by_tag();
    let mut rw = begin(env, |e| e.begin_rw_txn())?;
    let mut pos = ck.pos;
    let mut last = ck.txnid;
    let mut count = 0u64;
    let mut hole = false;
    let mut data: Vec<u8> = read_segment(dir, pos.gen)?.unwrap_or_default();
    loop {
        let mut off = usize::try_from(pos.off)
            .unwrap_or(usize::MAX)
            .min(data.len());
        while let Some((txnid, payload, taken)) = parse_record(&data[off..]) {
            if !follows(txnid, last, count) {
                break;
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
        // The segment ends here. A rotation left the rest of it unwritten and the next
        // segment starts with the next transaction; anything else is a hole.
        let next = read_segment(dir, pos.gen + 1)?;
        let continues = next.as_deref().is_some_and(|n| {
            parse_record(n).is_some_and(|(txnid, _, _)| follows(txnid, last, count))
        });
        if continues {
            pos = Position {
                gen: pos.gen + 1,
                off: 0,
            };
            data = next.unwrap_or_default();
            continue;
        }
        let later = later_record(&data[off..], last);
        let later_segments = later_segments(dir, pos.gen);
        // A next segment with nothing valid in it is a rotation the crash cut short (its
        // records were never acknowledged); one after it, or one with records, is a hole.
        let next_holds = next
            .as_deref()
            .is_some_and(|n| parse_record(n).is_some() || later_record(n, last).is_some());
        if later.is_some() || next_holds || later_segments.iter().any(|&g| g > pos.gen + 1) {
            hole = true;
            conf::alert!(
                "journal: replay stopped at segment {} byte {} ({}), after transaction {last}: \
                 {}; {} later segment(s); what follows is not replayed and is kept as *.wal.lost",
                pos.gen,
                pos.off,
                segment_path(dir, pos.gen).display(),
                match later {
                    Some((at, txnid)) => format!(
                        "the record there is bad, and a later record (transaction {txnid}) \
                         is at byte {}",
                        pos.off + at as u64
                    ),
                    None => "the record there is bad or missing".to_string(),
                },
                later_segments.len()
            );
            set_aside(dir, pos, &data, &later_segments)?;
        }
        break;
    }
    rw.put(dbs.meta, &WAL_KEY, &pos.encode(), WriteFlags::empty())?;
    rw.commit()?;
    env.sync(true)?;
    Ok(Replayed { count, pos, hole })
}

/// Whether the record of `txnid` is the next one after `last`. The first after the
/// checkpoint may be further on (a transaction without a record, such as the commit of a
/// replay, can sit in between); every later one is exactly the next.
fn follows(txnid: u64, last: u64, count: u64) -> bool {
    if count == 0 {
        if txnid > last + 1 {
            log::warn!(
                "journal: the first record after the checkpoint is transaction {txnid}, not {}",
                last + 1
            );
        }
        txnid > last
    } else {
        txnid == last + 1
    }
}

fn read_segment(dir: &Path, gen: u64) -> Result<Option<Vec<u8>>> {
    match fs::read(segment_path(dir, gen)) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(e)),
    }
}

/// A valid record of a later transaction than `last` somewhere in `rest` past its first
/// byte (past a bad record): its offset in `rest` and its transaction. The stale tail a
/// failed commit leaves is of older transactions, so it is not one. A byte-by-byte scan,
/// cheap where the magic does not match: only run when a replay stops.
fn later_record(rest: &[u8], last: u64) -> Option<(usize, u64)> {
    (1..rest.len()).find_map(|at| {
        parse_record(&rest[at..])
            .filter(|(txnid, _, _)| *txnid > last)
            .map(|(txnid, _, _)| (at, txnid))
    })
}

/// The segments after `gen`, in order.
fn later_segments(dir: &Path, gen: u64) -> Vec<u64> {
    let mut gens: Vec<u64> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(segment_gen))
        .filter(|&g| g > gen)
        .collect();
    gens.sort_unstable();
    gens
}

/// Keeps what the replay did not apply as `<segment>.wal.lost` (a copy of the stopped
/// segment, the later ones renamed), and cuts the stopped segment at `pos`: new records then
/// go there, with nothing stale after them.
fn set_aside(dir: &Path, pos: Position, data: &[u8], later: &[u64]) -> Result<()> {
    let lost = |gen: u64| {
        let mut p = segment_path(dir, gen).into_os_string();
        p.push(".lost");
        std::path::PathBuf::from(p)
    };
    fs::write(lost(pos.gen), data).map_err(io_error)?;
    for &g in later {
        fs::rename(segment_path(dir, g), lost(g)).map_err(io_error)?;
    }
    let f = fs::OpenOptions::new()
        .write(true)
        .open(segment_path(dir, pos.gen))
        .map_err(io_error)?;
    f.set_len(pos.off).map_err(io_error)?;
    f.sync_all().map_err(io_error)?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error)
}
