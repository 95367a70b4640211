//! The binary form of openraft's RPCs between the members of a group: vote, append-entries and
//! install-snapshot requests, and what a server answers to each (the response, or the error
//! its `Raft` returned). Built on `codec`'s log ids, votes, memberships and entries, so that
//! the wire and the disk say these things the same way. Every decoder reads a whole buffer and
//! answers [`CodecError`] on garbage (short input, bad tag, trailing bytes): the bytes come
//! from the network and must never panic the process.
//!
//! A server's error travels as what the caller needs to act on it: a stopped or panicked
//! `Raft`, a storage failure (its message: the caller cannot do more with it than log it) or a
//! snapshot chunk that does not follow the previous one.

use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::{AnyError, ErrorSubject, ErrorVerb, SnapshotMeta, SnapshotSegmentId};
use openraft::{StorageIOError, StoredMembership};

pub use super::codec::CodecError;
use super::codec::{
    decode_entry, get_membership, get_opt_log_id, get_vote, put_bytes, put_entry, put_membership,
    put_opt_log_id, put_u32, put_u64, put_vote, Reader,
};
use super::{NodeId, RaftStorageError, TypeConfig};

/// What a server answers to a vote or an append-entries.
pub type RaftResult<T> = Result<T, RaftError<NodeId>>;

/// What a server answers to a snapshot chunk.
pub type SnapshotResult =
    Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>;

fn put_bool(out: &mut Vec<u8>, b: bool) {
    out.push(u8::from(b));
}

fn get_bool(r: &mut Reader<'_>) -> Result<bool, CodecError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(CodecError),
    }
}

fn get_string(r: &mut Reader<'_>) -> Result<String, CodecError> {
    String::from_utf8(r.bytes()?.to_vec()).map_err(|_| CodecError)
}

/// Runs `read` over the whole of `buf`: trailing bytes are garbage too.
fn whole<T>(
    buf: &[u8],
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, CodecError>,
) -> Result<T, CodecError> {
    let mut r = Reader::new(buf);
    let v = read(&mut r)?;
    r.end()?;
    Ok(v)
}

pub fn encode_vote_request(req: &VoteRequest<NodeId>) -> Vec<u8> {
    let mut out = Vec::new();
    put_vote(&mut out, &req.vote);
    put_opt_log_id(&mut out, &req.last_log_id);
    out
}

pub fn decode_vote_request(buf: &[u8]) -> Result<VoteRequest<NodeId>, CodecError> {
    whole(buf, |r| {
        Ok(VoteRequest::new(get_vote(r)?, get_opt_log_id(r)?))
    })
}

pub fn encode_append_request(req: &AppendEntriesRequest<TypeConfig>) -> Vec<u8> {
    let mut out = Vec::new();
    put_vote(&mut out, &req.vote);
    put_opt_log_id(&mut out, &req.prev_log_id);
    put_opt_log_id(&mut out, &req.leader_commit);
    put_u32(&mut out, req.entries.len() as u32);
    let mut entry = Vec::new();
    for e in &req.entries {
        entry.clear();
        put_entry(&mut entry, e);
        put_bytes(&mut out, &entry);
    }
    out
}

pub fn decode_append_request(buf: &[u8]) -> Result<AppendEntriesRequest<TypeConfig>, CodecError> {
    whole(buf, |r| {
        let vote = get_vote(r)?;
        let prev_log_id = get_opt_log_id(r)?;
        let leader_commit = get_opt_log_id(r)?;
        let n = r.u32()?;
        // No reservation from the count: each entry takes 4 bytes at least, so a garbage
        // count fails as soon as the input runs out.
        let mut entries = Vec::new();
        for _ in 0..n {
            entries.push(decode_entry(r.bytes()?)?);
        }
        Ok(AppendEntriesRequest {
            vote,
            prev_log_id,
            leader_commit,
            entries,
        })
    })
}

pub fn encode_snapshot_request(req: &InstallSnapshotRequest<TypeConfig>) -> Vec<u8> {
    let mut out = Vec::new();
    put_vote(&mut out, &req.vote);
    put_opt_log_id(&mut out, &req.meta.last_log_id);
    put_opt_log_id(&mut out, req.meta.last_membership.log_id());
    put_membership(&mut out, req.meta.last_membership.membership());
    put_bytes(&mut out, req.meta.snapshot_id.as_bytes());
    put_u64(&mut out, req.offset);
    put_bytes(&mut out, &req.data);
    put_bool(&mut out, req.done);
    out
}

pub fn decode_snapshot_request(
    buf: &[u8],
) -> Result<InstallSnapshotRequest<TypeConfig>, CodecError> {
    whole(buf, |r| {
        let vote = get_vote(r)?;
        let last_log_id = get_opt_log_id(r)?;
        let membership_log_id = get_opt_log_id(r)?;
        let membership = get_membership(r)?;
        let snapshot_id = get_string(r)?;
        Ok(InstallSnapshotRequest {
            vote,
            meta: SnapshotMeta {
                last_log_id,
                last_membership: StoredMembership::new(membership_log_id, membership),
                snapshot_id,
            },
            offset: r.u64()?,
            data: r.bytes()?.to_vec(),
            done: get_bool(r)?,
        })
    })
}

/// Result tags: 0 the response follows; else the error.
const OK: u8 = 0;
const STOPPED: u8 = 1;
const PANICKED: u8 = 2;
const STORAGE: u8 = 3;
const MISMATCH: u8 = 4;

/// What a storage error decoded from a peer's answer begins with.
const PEER_PREFIX: &str = "on the peer: ";

fn put_fatal(out: &mut Vec<u8>, f: &Fatal<NodeId>) {
    match f {
        Fatal::Stopped => out.push(STOPPED),
        Fatal::Panicked => out.push(PANICKED),
        Fatal::StorageError(e) => {
            out.push(STORAGE);
            put_bytes(out, e.to_string().as_bytes());
        }
    }
}

fn get_fatal(tag: u8, r: &mut Reader<'_>) -> Result<Fatal<NodeId>, CodecError> {
    match tag {
        STOPPED => Ok(Fatal::Stopped),
        PANICKED => Ok(Fatal::Panicked),
        STORAGE => {
            let msg = get_string(r)?;
            // Said once: an answer relayed again (decoded, encoded as openraft displays it,
            // "when Read Store: on the peer: ...", decoded) keeps its text.
            let text = match msg.find(PEER_PREFIX) {
                Some(at) => msg[at..].to_string(),
                None => format!("{PEER_PREFIX}{msg}"),
            };
            let source =
                StorageIOError::new(ErrorSubject::Store, ErrorVerb::Read, AnyError::error(text));
            Ok(Fatal::StorageError(RaftStorageError::IO { source }))
        }
        _ => Err(CodecError),
    }
}

fn encode_result<T, E>(
    r: &Result<T, RaftError<NodeId, E>>,
    put_ok: impl FnOnce(&mut Vec<u8>, &T),
    put_api: impl FnOnce(&mut Vec<u8>, &E),
) -> Vec<u8> {
    let mut out = Vec::new();
    match r {
        Ok(v) => {
            out.push(OK);
            put_ok(&mut out, v);
        }
        Err(RaftError::Fatal(f)) => put_fatal(&mut out, f),
        Err(RaftError::APIError(e)) => put_api(&mut out, e),
    }
    out
}

fn decode_result<T, E>(
    buf: &[u8],
    get_ok: impl FnOnce(&mut Reader<'_>) -> Result<T, CodecError>,
    get_api: impl FnOnce(u8, &mut Reader<'_>) -> Result<E, CodecError>,
) -> Result<Result<T, RaftError<NodeId, E>>, CodecError> {
    whole(buf, |r| match r.u8()? {
        OK => Ok(Ok(get_ok(r)?)),
        tag @ (STOPPED | PANICKED | STORAGE) => Ok(Err(RaftError::Fatal(get_fatal(tag, r)?))),
        tag => Ok(Err(RaftError::APIError(get_api(tag, r)?))),
    })
}

fn no_api_error(_: u8, _: &mut Reader<'_>) -> Result<openraft::error::Infallible, CodecError> {
    Err(CodecError)
}

pub fn encode_vote_result(r: &RaftResult<VoteResponse<NodeId>>) -> Vec<u8> {
    let put = |out: &mut Vec<u8>, v: &VoteResponse<NodeId>| {
        put_vote(out, &v.vote);
        put_bool(out, v.vote_granted);
        put_opt_log_id(out, &v.last_log_id);
    };
    encode_result(r, put, |_, e| match *e {})
}

pub fn decode_vote_result(buf: &[u8]) -> Result<RaftResult<VoteResponse<NodeId>>, CodecError> {
    let get = |r: &mut Reader<'_>| {
        let vote = get_vote(r)?;
        let granted = get_bool(r)?;
        Ok(VoteResponse::new(vote, get_opt_log_id(r)?, granted))
    };
    decode_result(buf, get, no_api_error)
}

pub fn encode_append_result(r: &RaftResult<AppendEntriesResponse<NodeId>>) -> Vec<u8> {
    let put = |out: &mut Vec<u8>, v: &AppendEntriesResponse<NodeId>| match v {
        AppendEntriesResponse::Success => out.push(0),
        AppendEntriesResponse::PartialSuccess(id) => {
            out.push(1);
            put_opt_log_id(out, id);
        }
        AppendEntriesResponse::Conflict => out.push(2),
        AppendEntriesResponse::HigherVote(v) => {
            out.push(3);
            put_vote(out, v);
        }
    };
    encode_result(r, put, |_, e| match *e {})
}

pub fn decode_append_result(
    buf: &[u8],
) -> Result<RaftResult<AppendEntriesResponse<NodeId>>, CodecError> {
    let get = |r: &mut Reader<'_>| match r.u8()? {
        0 => Ok(AppendEntriesResponse::Success),
        1 => Ok(AppendEntriesResponse::PartialSuccess(get_opt_log_id(r)?)),
        2 => Ok(AppendEntriesResponse::Conflict),
        3 => Ok(AppendEntriesResponse::HigherVote(get_vote(r)?)),
        _ => Err(CodecError),
    };
    decode_result(buf, get, no_api_error)
}

fn put_segment(out: &mut Vec<u8>, s: &SnapshotSegmentId) {
    put_bytes(out, s.id.as_bytes());
    put_u64(out, s.offset);
}

fn get_segment(r: &mut Reader<'_>) -> Result<SnapshotSegmentId, CodecError> {
    let id = get_string(r)?;
    Ok(SnapshotSegmentId {
        id,
        offset: r.u64()?,
    })
}

pub fn encode_snapshot_result(r: &SnapshotResult) -> Vec<u8> {
    let put = |out: &mut Vec<u8>, v: &InstallSnapshotResponse<NodeId>| put_vote(out, &v.vote);
    let put_api = |out: &mut Vec<u8>, e: &InstallSnapshotError| match e {
        InstallSnapshotError::SnapshotMismatch(m) => {
            out.push(MISMATCH);
            put_segment(out, &m.expect);
            put_segment(out, &m.got);
        }
    };
    encode_result(r, put, put_api)
}

pub fn decode_snapshot_result(buf: &[u8]) -> Result<SnapshotResult, CodecError> {
    let get = |r: &mut Reader<'_>| Ok(InstallSnapshotResponse { vote: get_vote(r)? });
    let get_api = |tag: u8, r: &mut Reader<'_>| match tag {
        MISMATCH => {
            let expect = get_segment(r)?;
            let got = get_segment(r)?;
            Ok(InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                expect,
                got,
            }))
        }
        _ => Err(CodecError),
    };
    decode_result(buf, get, get_api)
}

#[cfg(test)]
#[path = "rpc_codec_tests.rs"]
mod tests;
