//! What a committed entry answers once applied ([`Applied`]): an owned mirror of
//! `storage::Outcome` and of the deterministic `storage::StorageError` refusals, so that the
//! leader (or the node that forwarded the write) answers the client exactly as a single node
//! would. It has a binary form for the peer protocol; its decoder returns an error on garbage.
//! LMDB failures are not here: they are not deterministic, so they stop the group instead of
//! being answered (see `state_machine`).

use storage::{Outcome, StorageError, Written};

use super::codec::{CodecError, Reader};

/// The tag of [`Applied::Batch`]'s binary form.
const BATCH: u8 = 16;

/// The answer of one applied log entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// A blank or membership entry: nothing to answer.
    Nothing,
    /// `Outcome::Written`: the version after the write (deletes: the version it had).
    Written { ver: u32 },
    /// `Outcome::Counted` (`hincrby`): the version and the new value.
    Counted { ver: u32, value: i64 },
    /// `Outcome::Scored` (`zadd`): the version and the resulting score.
    Scored { ver: u32, score: i64 },
    /// `Outcome::Done`.
    Done,
    /// `Outcome::Int`.
    Int(i64),
    /// `Outcome::Float`.
    Float(f64),
    /// `Outcome::Purged`.
    Purged(u64),
    /// `StorageError::NotFound`.
    NotFound,
    /// `StorageError::VersionMismatch`.
    VersionMismatch { current: u32 },
    /// `StorageError::WrongType`.
    WrongType,
    /// `StorageError::NotNumeric`.
    NotNumeric,
    /// `StorageError::MapFull`.
    MapFull,
    /// `StorageError::TooLarge`.
    TooLarge,
    /// `StorageError::Invalid`, with its reason.
    Invalid(String),
    /// The entry's bytes are not a command (every replica refuses them alike).
    Undecodable,
    /// A batch entry's answers, one per command in order (`LogCommand::batch`); never nested.
    Batch(Vec<Applied>),
}

impl Applied {
    /// The answer of `storage::Batch::apply`'s result; `None` for an LMDB failure or a
    /// fail-stopped store, which is no answer (the caller stops the group).
    pub fn of(result: Result<Outcome, StorageError>) -> Option<Applied> {
        Some(match result {
            Ok(Outcome::Written(Written { ver })) => Applied::Written { ver },
            Ok(Outcome::Counted(Written { ver }, value)) => Applied::Counted { ver, value },
            Ok(Outcome::Scored(Written { ver }, score)) => Applied::Scored { ver, score },
            Ok(Outcome::Done) => Applied::Done,
            Ok(Outcome::Int(v)) => Applied::Int(v),
            Ok(Outcome::Float(v)) => Applied::Float(v),
            Ok(Outcome::Purged(n)) => Applied::Purged(n as u64),
            Err(StorageError::NotFound) => Applied::NotFound,
            Err(StorageError::VersionMismatch { current }) => Applied::VersionMismatch { current },
            Err(StorageError::WrongType) => Applied::WrongType,
            Err(StorageError::NotNumeric) => Applied::NotNumeric,
            Err(StorageError::MapFull) => Applied::MapFull,
            Err(StorageError::TooLarge) => Applied::TooLarge,
            Err(StorageError::Invalid(why)) => Applied::Invalid(why.to_string()),
            Err(StorageError::Lmdb(_) | StorageError::Stopped { .. }) => return None,
        })
    }

    /// Appends the binary form: a tag byte, then the fields (little endian); a batch's is
    /// its tag, a u32 count and each answer's form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (tag, a, b): (u8, u64, u64) = match self {
            Applied::Nothing => (0, 0, 0),
            Applied::Written { ver } => (1, u64::from(*ver), 0),
            Applied::Counted { ver, value } => (2, u64::from(*ver), *value as u64),
            Applied::Scored { ver, score } => (3, u64::from(*ver), *score as u64),
            Applied::Done => (4, 0, 0),
            Applied::Int(v) => (5, *v as u64, 0),
            Applied::Float(v) => (6, v.to_bits(), 0),
            Applied::Purged(n) => (7, *n, 0),
            Applied::NotFound => (8, 0, 0),
            Applied::VersionMismatch { current } => (9, u64::from(*current), 0),
            Applied::WrongType => (10, 0, 0),
            Applied::NotNumeric => (11, 0, 0),
            Applied::MapFull => (12, 0, 0),
            Applied::TooLarge => (13, 0, 0),
            Applied::Invalid(why) => {
                out.push(14);
                super::codec::put_bytes(out, why.as_bytes());
                return;
            }
            Applied::Undecodable => (15, 0, 0),
            Applied::Batch(answers) => {
                out.push(BATCH);
                super::codec::put_u32(out, answers.len() as u32);
                for a in answers {
                    a.encode(out);
                }
                return;
            }
        };
        out.push(tag);
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&b.to_le_bytes());
    }

    /// Reads what [`Applied::encode`] wrote, the whole of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Applied, CodecError> {
        let mut r = Reader::new(buf);
        let tag = r.u8()?;
        if tag == BATCH {
            // One answer takes at least a tag and a string's length.
            let n = r.count(5)?;
            let mut answers = Vec::with_capacity(n);
            for _ in 0..n {
                answers.push(Self::read_one(&mut r)?);
            }
            r.end()?;
            return Ok(Applied::Batch(answers));
        }
        let answer = Self::read_tagged(tag, &mut r)?;
        r.end()?;
        Ok(answer)
    }

    /// One answer that is not a batch, from `r`.
    fn read_one(r: &mut Reader<'_>) -> Result<Applied, CodecError> {
        let tag = r.u8()?;
        Self::read_tagged(tag, r)
    }

    /// The rest of an answer whose tag was `tag` (a batch's is refused: never nested).
    fn read_tagged(tag: u8, r: &mut Reader<'_>) -> Result<Applied, CodecError> {
        if tag == 14 {
            let why = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| CodecError)?;
            return Ok(Applied::Invalid(why));
        }
        let (a, b) = (r.u64()?, r.u64()?);
        let ver = || u32::try_from(a).map_err(|_| CodecError);
        Ok(match tag {
            0 => Applied::Nothing,
            1 => Applied::Written { ver: ver()? },
            2 => Applied::Counted {
                ver: ver()?,
                value: b as i64,
            },
            3 => Applied::Scored {
                ver: ver()?,
                score: b as i64,
            },
            4 => Applied::Done,
            5 => Applied::Int(a as i64),
            6 => Applied::Float(f64::from_bits(a)),
            7 => Applied::Purged(a),
            8 => Applied::NotFound,
            9 => Applied::VersionMismatch { current: ver()? },
            10 => Applied::WrongType,
            11 => Applied::NotNumeric,
            12 => Applied::MapFull,
            13 => Applied::TooLarge,
            15 => Applied::Undecodable,
            _ => return Err(CodecError),
        })
    }
}
