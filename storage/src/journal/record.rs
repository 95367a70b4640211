//! The journal on disk: the record of one pass (transaction id, changes, CRC), the place of
//! the journal's tail ([`Position`], stored in `meta` under [`WAL_KEY`]) and the segment files
//! `journal/<gen>.wal`. Formats and files only: what writes records and what replays them is
//! in the journal's `mod.rs`, what checkpoints them in `checkpoint`.

use std::fs::{self, File};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use lmdb::{Database, Transaction};

use crate::txn::{decode_ops, Op, Ops};
use crate::{Result, StorageError};

/// Key in `meta` of the journal's tail: where the next record goes.
pub(crate) const WAL_KEY: &[u8] = b"wal";
/// A segment past this size is left for a new one at the next record.
#[cfg(not(test))]
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;
/// Small in tests, so that a few puts fill several segments.
#[cfg(test)]
pub(crate) const SEGMENT_BYTES: u64 = 64 << 10;

const RECORD_MAGIC: u32 = 0x4c57_5348; // "HSWL"
/// magic u32, payload length u64 (a pass of large bodies may pass 4 GiB), transaction id u64;
/// then the payload and a CRC32.
const RECORD_HEAD: usize = 20;

/// Encodes the record of transaction `txnid` into `out` (cleared first).
pub(crate) fn encode_record(out: &mut Vec<u8>, txnid: u64, payload: &[u8]) {
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
pub(crate) fn parse_record(buf: &[u8]) -> Option<(u64, &[u8], usize)> {
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

/// One change of a journal record as [`decode_journal_record`] gives it back: the database
/// tag, the key and, for a put, the value (`None`: a delete).
pub type RecordChange = (u8, Vec<u8>, Option<Vec<u8>>);

/// What [`decode_journal_record`] read at the start of its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    pub txnid: u64,
    /// Bytes the record takes, its CRC included.
    pub taken: usize,
    /// The changes of its payload; `None` when a CRC-valid payload does not decode (replay
    /// stops there with an error).
    pub changes: Option<Vec<RecordChange>>,
}

/// The journal record decoder as replay runs it (the record, then its payload's changes), for
/// the fuzz targets (`fuzz/fuzz_targets/journal_record.rs`) and the corpus test; `None` where
/// replay sees the end of the journal. Not used by the store itself.
pub fn decode_journal_record(buf: &[u8]) -> Option<DecodedRecord> {
    let (txnid, payload, taken) = parse_record(buf)?;
    let changes = decode_ops(payload).map(|ops| {
        ops.into_iter()
            .map(|op| match op {
                Op::Put(db, k, v) => (db, k.to_vec(), Some(v.to_vec())),
                Op::Del(db, k) => (db, k.to_vec(), None),
            })
            .collect()
    });
    Some(DecodedRecord {
        txnid,
        taken,
        changes,
    })
}

/// The bytes of the record of `txnid` with these changes, as the store writes it: what
/// [`decode_journal_record`] reads back (the fuzz targets check that it does).
pub fn encode_journal_record(txnid: u64, changes: &[RecordChange]) -> Vec<u8> {
    let mut ops = Ops::default();
    for (db, k, v) in changes {
        match v {
            Some(v) => ops.put(*db, k, v),
            None => ops.del(*db, k),
        }
    }
    let mut out = Vec::new();
    encode_record(&mut out, txnid, ops.bytes());
    out
}

/// A place in the journal: segment `gen`, byte `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub gen: u64,
    pub off: u64,
}

impl Position {
    pub(crate) const START: Position = Position { gen: 1, off: 0 };

    pub(crate) fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.gen.to_le_bytes());
        b[8..].copy_from_slice(&self.off.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Position> {
        Some(Position {
            gen: u64::from_le_bytes(b.get(..8)?.try_into().ok()?),
            off: u64::from_le_bytes(b.get(8..16)?.try_into().ok()?),
        })
    }
}

/// The journal's tail as `txn` sees it.
pub(crate) fn load_position<T: Transaction>(txn: &T, meta: Database) -> Result<Position> {
    match txn.get(meta, &WAL_KEY) {
        Ok(b) => Position::decode(b).ok_or(StorageError::Invalid("bad journal position")),
        Err(lmdb::Error::NotFound) => Ok(Position::START),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn segment_path(dir: &Path, gen: u64) -> PathBuf {
    dir.join(format!("{gen:016x}.wal"))
}

pub(crate) fn segment_gen(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".wal")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// Makes the folder's entries (a new file's name) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(crate) fn txn_id<T: Transaction>(txn: &T) -> u64 {
    // SAFETY: `txn.txn()` is the live transaction handle owned by `txn`.
    unsafe { lmdb_sys::mdb_txn_id(txn.txn()) as u64 }
}

/// An exclusive `flock` on `f`, released when `f` is closed.
pub(crate) fn lock(f: &File) -> io::Result<()> {
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

/// Deletes the segments before `gen` (every record in them is covered by a checkpoint).
pub(crate) fn remove_segments_before(dir: &Path, gen: u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if let Some(g) = name.to_str().and_then(segment_gen) {
            if g < gen {
                match fs::remove_file(entry.path()) {
                    // Another worker's checkpoint thread deleted it first.
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        log::warn!("could not delete journal segment {name:?}: {e}")
                    }
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_stop_at_zeros_torn_and_stale_bytes() {
        let mut ops = Ops::default();
        ops.put(0, b"key", b"val");
        let mut rec = Vec::new();
        encode_record(&mut rec, 42, ops.bytes());
        let mut file = rec.clone();
        file.extend_from_slice(&[0u8; 64]);
        let (txnid, payload, taken) = parse_record(&file).unwrap();
        assert_eq!((txnid, payload, taken), (42, ops.bytes(), rec.len()));
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
