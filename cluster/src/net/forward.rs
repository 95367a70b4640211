//! Client writes: proposing a command to a group's Raft here ([`propose`]), and the binary
//! form of its outcome ([`WriteError`] or the `Applied` answer) for a write forwarded to the
//! leader over the peer protocol (`ForwardWrite`: the payload is the encoded
//! `storage::Command`, the answer [`encode_write_result`]'s). A forwarded write is proposed
//! where it arrives and never forwarded again, so a stale view of the leader cannot loop.

use std::fmt;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;

use crate::raft::rpc_codec::CodecError;
use crate::raft::{Applied, LogCommand, NodeId, TypeConfig};

/// Why a proposal or a read barrier did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// This node is not a member of the group (or there is no such group).
    NoGroup(u32),
    /// This node does not lead the group; `leader` does, if known. The caller retries there.
    NotLeader { leader: Option<NodeId> },
    /// The leader could not reach a majority for a read barrier.
    NoQuorum,
    /// The group's Raft stopped or failed, or the leader could not be asked (the message).
    Fatal(String),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::NoGroup(g) => write!(f, "this node is not a member of group {g}"),
            WriteError::NotLeader { leader: Some(l) } => write!(f, "not the leader; node {l} is"),
            WriteError::NotLeader { leader: None } => write!(f, "not the leader; none known"),
            WriteError::NoQuorum => write!(f, "no majority reachable"),
            WriteError::Fatal(e) => write!(f, "consensus failed: {e}"),
        }
    }
}

impl std::error::Error for WriteError {}

/// Proposes `cmd` to `raft` and waits until it is committed and applied here.
pub async fn propose(raft: &Raft<TypeConfig>, cmd: LogCommand) -> Result<Applied, WriteError> {
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
    }
    out
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
        ];
        for r in &all {
            let bytes = encode_write_result(r);
            assert_eq!(decode_write_result(&bytes).as_ref(), Ok(r));
            for cut in 0..bytes.len() {
                let _ = decode_write_result(&bytes[..cut]);
            }
            let mut longer = bytes.clone();
            longer.push(1);
            if !matches!(r, Err(WriteError::Fatal(_)) | Ok(Applied::Invalid(_))) {
                assert!(decode_write_result(&longer).is_err(), "{r:?}");
            }
        }
        assert!(decode_write_result(&[]).is_err());
        assert!(decode_write_result(&[9]).is_err());
        assert!(decode_write_result(&[5, 0xff]).is_err());
    }
}
