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

/// One log entry's application data: the bytes of one encoded `storage::Command`, encoded
/// once by the proposer so that every replica decodes and applies the very same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCommand {
    pub bytes: Vec<u8>,
}

impl LogCommand {
    /// The log payload of `cmd`.
    pub fn new(cmd: &storage::Command<'_>) -> LogCommand {
        let mut bytes = Vec::new();
        cmd.encode(&mut bytes);
        LogCommand { bytes }
    }
}
