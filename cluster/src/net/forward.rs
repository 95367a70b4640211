//! Client writes: proposing a command to a group's Raft here ([`propose`]), and the binary
//! form of its outcome ([`WriteError`] or the `Applied` answer) for a write forwarded to the
//! leader over the peer protocol (`ForwardWrite`: the payload is the encoded
//! `storage::Command`, the answer [`encode_write_result`]'s). A forwarded write is proposed
//! where it arrives and never forwarded again, so a stale view of the leader cannot loop.
//!
//! A [`WriteError`] says whether the command was certainly not applied (a `503` for the
//! client, who may retry) or may have been ([`WriteError::Fatal`], a `504`: it may have reached
//! a leader's log). [`WriteError::certainly_not_applied`] tells them apart.

use std::fmt;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{BasicNode, Raft};

use crate::metrics::Counters;
use crate::raft::rpc_codec::CodecError;
use crate::raft::{Applied, LogCommand, NodeId, TypeConfig};

/// Why a proposal or a read barrier did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// This node is not a member of the group (or there is no such group).
    NoGroup(u32),
    /// This node does not lead the group; `leader` does, if known. The caller retries there.
    NotLeader { leader: Option<NodeId> },
    /// The leader could not reach a majority (for a read barrier, or before appending a write).
    NoQuorum,
    /// The command certainly reached no log: the node to forward it to could not be reached
    /// or refused it before reading it (the message). The caller may retry.
    Unavailable(String),
    /// The outcome is unknown: the command may be in a leader's log (a forwarded write that
    /// timed out or lost its connection after it was sent, a Raft that stopped under it, an
    /// answer that did not decode). The message says which.
    Fatal(String),
}

impl WriteError {
    /// True when the command was certainly not applied and never will be (every variant but
    /// [`WriteError::Fatal`]): the client gets `503` and may retry; else `504`.
    pub fn certainly_not_applied(&self) -> bool {
        !matches!(self, WriteError::Fatal(_))
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::NoGroup(g) => write!(f, "this node is not a member of group {g}"),
            WriteError::NotLeader { leader: Some(l) } => write!(f, "not the leader; node {l} is"),
            WriteError::NotLeader { leader: None } => write!(f, "not the leader; none known"),
            WriteError::NoQuorum => write!(f, "no majority reachable"),
            WriteError::Unavailable(e) => write!(f, "not applied: {e}"),
            WriteError::Fatal(e) => write!(f, "outcome unknown: {e}"),
        }
    }
}

impl std::error::Error for WriteError {}

/// Proposes `cmd` to `raft` and waits until it is committed and applied here (counted in
/// `counters`). openraft answers `ForwardToLeader` before appending, or for an entry removed
/// from the log by a new leader's (which will never commit it): both certainly not applied.
pub async fn propose(
    raft: &Raft<TypeConfig>,
    cmd: LogCommand,
    counters: &Counters,
) -> Result<Applied, WriteError> {
    counters.proposals.bump();
    match raft.client_write(cmd).await {
        Ok(r) => Ok(r.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(WriteError::NotLeader {
                leader: f.leader_id,
            })
        }
        Err(e) => Err(WriteError::Fatal(e.to_string())),
    }
}

/// Why a leadership check (a read barrier, a read index) failed. A read changes nothing, so
/// every failure is retryable: none is [`WriteError::Fatal`].
pub fn leader_check_error(
    e: RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>,
) -> WriteError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => WriteError::NotLeader {
            leader: f.leader_id,
        },
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)) => WriteError::NoQuorum,
        RaftError::Fatal(e) => WriteError::Unavailable(e.to_string()),
    }
}

/// Confirms that `raft` leads its group (a heartbeat round to a majority, counted in
/// `counters`) and answers the index a linearizable read must see applied: openraft's read
/// log id (the commit index once the leader committed an entry of its term).
pub async fn leader_read_index(
    raft: &Raft<TypeConfig>,
    counters: &Counters,
) -> Result<Option<u64>, WriteError> {
    counters.leader_checks.bump();
    let read = raft.get_read_log_id().await;
    read.map(|(index, _applied)| index.map(|l| l.index))
        .map_err(leader_check_error)
}

/// The answer to a forwarded write: a tag, then its fields.
pub fn encode_write_result(r: &Result<Applied, WriteError>) -> Vec<u8> {
    let mut out = Vec::new();
    match r {
        Ok(applied) => {
            out.push(0);
            applied.encode(&mut out);
        }
        Err(WriteError::NotLeader { leader: None }) => out.push(1),
        Err(WriteError::NotLeader { leader: Some(l) }) => {
            out.push(2);
            out.extend_from_slice(&l.to_le_bytes());
        }
        Err(WriteError::NoGroup(g)) => {
            out.push(3);
            out.extend_from_slice(&g.to_le_bytes());
        }
        Err(WriteError::NoQuorum) => out.push(4),
        Err(WriteError::Fatal(msg)) => {
            out.push(5);
            out.extend_from_slice(msg.as_bytes());
        }
        Err(WriteError::Unavailable(msg)) => {
            out.push(6);
            out.extend_from_slice(msg.as_bytes());
        }
    }
    out
}

/// The answer to a `ReadIndex` request: the index a follower's applied state must reach
/// (`None`: nothing committed yet), or why the node asked gave none.
pub fn encode_read_index(r: &Result<Option<u64>, WriteError>) -> Vec<u8> {
    match r {
        Ok(index) => {
            let mut out = vec![0];
            if let Some(i) = index {
                out.extend_from_slice(&i.to_le_bytes());
            }
            out
        }
        Err(e) => encode_write_result(&Err(e.clone())),
    }
}

/// Reads what [`encode_read_index`] wrote, the whole of `buf`.
pub fn decode_read_index(buf: &[u8]) -> Result<Result<Option<u64>, WriteError>, CodecError> {
    match buf.split_first() {
        Some((0, [])) => Ok(Ok(None)),
        Some((0, rest)) => Ok(Ok(Some(u64::from_le_bytes(
            rest.try_into().map_err(|_| CodecError)?,
        )))),
        _ => match decode_write_result(buf)? {
            Err(e) => Ok(Err(e)),
            Ok(_) => Err(CodecError),
        },
    }
}

/// Reads what [`encode_write_result`] wrote, the whole of `buf`.
pub fn decode_write_result(buf: &[u8]) -> Result<Result<Applied, WriteError>, CodecError> {
    let (&tag, rest) = buf.split_first().ok_or(CodecError)?;
    Ok(Err(match tag {
        0 => return Ok(Ok(Applied::decode(rest)?)),
        1 if rest.is_empty() => WriteError::NotLeader { leader: None },
        2 => WriteError::NotLeader {
            leader: Some(u64::from_le_bytes(rest.try_into().map_err(|_| CodecError)?)),
        },
        3 => WriteError::NoGroup(u32::from_le_bytes(rest.try_into().map_err(|_| CodecError)?)),
        4 if rest.is_empty() => WriteError::NoQuorum,
        5 => WriteError::Fatal(String::from_utf8(rest.to_vec()).map_err(|_| CodecError)?),
        6 => WriteError::Unavailable(String::from_utf8(rest.to_vec()).map_err(|_| CodecError)?),
        _ => return Err(CodecError),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_results_round_trip_and_garbage_is_refused() {
        let all = [
            Ok(Applied::Written { ver: 3 }),
            Ok(Applied::Invalid("why".into())),
            Err(WriteError::NotLeader { leader: None }),
            Err(WriteError::NotLeader { leader: Some(2) }),
            Err(WriteError::NoGroup(7)),
            Err(WriteError::NoQuorum),
            Err(WriteError::Fatal("stopped".into())),
            Err(WriteError::Unavailable("refused".into())),
        ];
        for r in &all {
            let bytes = encode_write_result(r);
            assert_eq!(decode_write_result(&bytes).as_ref(), Ok(r));
            for cut in 0..bytes.len() {
                let _ = decode_write_result(&bytes[..cut]);
            }
            let mut longer = bytes.clone();
            longer.push(1);
            let text = matches!(r, Err(WriteError::Fatal(_) | WriteError::Unavailable(_)));
            if !text && !matches!(r, Ok(Applied::Invalid(_))) {
                assert!(decode_write_result(&longer).is_err(), "{r:?}");
            }
        }
        assert!(decode_write_result(&[]).is_err());
        assert!(decode_write_result(&[9]).is_err());
        assert!(decode_write_result(&[5, 0xff]).is_err());
        assert!(all.iter().all(|r| match r {
            Err(e) => e.certainly_not_applied() != matches!(e, WriteError::Fatal(_)),
            Ok(_) => true,
        }));
    }

    #[test]
    fn read_indexes_round_trip_and_garbage_is_refused() {
        let all = [
            Ok(None),
            Ok(Some(0)),
            Ok(Some(u64::MAX)),
            Err(WriteError::NotLeader { leader: Some(1) }),
            Err(WriteError::NoQuorum),
        ];
        for r in &all {
            let bytes = encode_read_index(r);
            assert_eq!(decode_read_index(&bytes).as_ref(), Ok(r));
            for cut in 1..bytes.len() {
                if bytes[0] == 0 && cut > 1 {
                    assert!(decode_read_index(&bytes[..cut]).is_err());
                }
            }
        }
        assert!(decode_read_index(&[]).is_err());
        assert!(decode_read_index(&[0, 1, 2]).is_err());
        assert!(decode_read_index(&[9]).is_err());
        // A write's answer is not a read index.
        let written = encode_write_result(&Ok(Applied::Done));
        assert!(decode_read_index(&written).is_err());
    }
}
