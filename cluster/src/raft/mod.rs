//! The consensus of one node's Raft groups: openraft's type config for huststore
//! ([`TypeConfig`]), the node's one durable log shared by all its groups ([`LogEngine`], one
//! [`LogStore`] handle per group) and each group's state machine over the node's LMDB store
//! ([`StateMachine`]). We implement openraft's storage traits and nothing of the protocol:
//! elections, quorums and log matching are openraft's.
//!
//! Why openraft 0.9.25: 0.9 is openraft's stable line; 0.10 is still alpha and its API moves
//! between alphas. It is pinned exactly (root `Cargo.toml`) so that an upgrade is a deliberate
//! change. Only this module knows openraft's types: the rest of the crate (placement, the peer
//! protocol) and the worker see [`LogCommand`], [`Applied`], group numbers and node indexes, so
//! that an upgrade of openraft stays inside `cluster/src/raft/`.
//!
//! Layers, bottom up: `codec` (the binary form of openraft's log ids, votes, memberships
//! and entries; every decoder returns an error on garbage), `engine` (the shared append-only
//! file and its replay; its `flusher` thread: group commit and compaction), `log_store`
//! (openraft's `RaftLogStorage` over the engine for one group), `applied` (what an applied
//! command answers), `state_machine` (openraft's `RaftStateMachine` over `storage::Store`),
//! `applier` (the node's one thread that applies every group's committed entries, those pending
//! at once in one commit).

mod applied;
pub(crate) mod applier;
mod codec;
mod engine;
mod log_store;
pub mod rpc_codec;
mod state_machine;
#[cfg(test)]
mod tests;

use std::io::Cursor;

pub use applied::Applied;
pub use applier::Applier;
pub use codec::CodecError;
pub use engine::LogEngine;
pub use log_store::LogStore;
pub use state_machine::{SnapshotBuilder, StateMachine};

openraft::declare_raft_types!(
    /// huststore's Raft types: a node is its index in the conf's node list, its `BasicNode`
    /// holds its peer address; an entry carries one encoded `storage::Command`.
    pub TypeConfig:
        D = LogCommand,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A node of a group: its index in the conf's node list.
pub type NodeId = u64;

/// The error of every storage call openraft makes.
pub type RaftStorageError = openraft::StorageError<NodeId>;

/// One log entry's application data, encoded once by the proposer so that every replica
/// decodes and applies the very same bytes: the bytes of one encoded `storage::Command`, or a
/// batch of them ([`LogCommand::batch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCommand {
    pub bytes: Vec<u8>,
}

/// The first byte of a batch payload. An encoded command starts with its encoding's version
/// (1), never this, so the logs written before batches existed still read the same. A binary
/// from before batches would refuse a batch entry as undecodable while the others apply it:
/// every node of a cluster must run a binary that reads them (mixed binaries in one cluster
/// are not supported yet; rolling upgrades across log formats come with membership changes,
/// `cluster.md` §6).
const BATCH_TAG: u8 = 0xB7;

impl LogCommand {
    /// The log payload of `cmd`.
    pub fn new(cmd: &storage::Command<'_>) -> LogCommand {
        let mut bytes = Vec::new();
        cmd.encode(&mut bytes);
        LogCommand { bytes }
    }

    /// One payload carrying the commands of `cmds` in order (each a single command's
    /// payload): the tag, a u32 count, each command's bytes prefixed by their u32 length. It
    /// is applied as one entry, the commands one after the other in one transaction, and
    /// answers [`Applied::Batch`]: several clients' writes to a group cost the consensus one
    /// entry (`net::proposer`).
    pub fn batch(cmds: &[LogCommand]) -> LogCommand {
        let len = 5 + cmds.iter().map(|c| 4 + c.bytes.len()).sum::<usize>();
        let mut bytes = Vec::with_capacity(len);
        bytes.push(BATCH_TAG);
        codec::put_u32(&mut bytes, cmds.len() as u32);
        for c in cmds {
            codec::put_bytes(&mut bytes, &c.bytes);
        }
        LogCommand { bytes }
    }

    /// Whether this is a batch payload ([`LogCommand::batch`]).
    pub fn is_batch(&self) -> bool {
        self.bytes.first() == Some(&BATCH_TAG)
    }

    /// The bytes of each command of a batch payload, in order; `CodecError` when this is not
    /// a batch or its framing is malformed (cut short, bytes left over, no command at all),
    /// which every replica refuses alike.
    pub fn batch_members(&self) -> Result<Vec<&[u8]>, CodecError> {
        let Some((&BATCH_TAG, rest)) = self.bytes.split_first() else {
            return Err(CodecError);
        };
        let mut r = codec::Reader::new(rest);
        let n = r.count(4)?;
        if n == 0 {
            return Err(CodecError);
        }
        let mut members = Vec::with_capacity(n);
        for _ in 0..n {
            members.push(r.bytes()?);
        }
        r.end()?;
        Ok(members)
    }
}
