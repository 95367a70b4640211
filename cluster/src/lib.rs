//! huststore's cluster mode (`spec/cluster.md`): the 1024 slots spread over Raft groups, each
//! group a consensus log whose committed entries are `storage::Command`s applied to the node's
//! LMDB store, and the authenticated protocol between nodes. The consensus itself is
//! openraft's (a library behind its storage and network traits); this crate implements those
//! traits and nothing of the protocol.
//!
//! It runs in the cluster helper process (an async runtime lives there only). It must never
//! know HTTP's client API (the worker's), and the worker must never wait on it inside a pass.

pub mod expiry;
pub mod fetch;
pub mod helper;
pub mod local;
pub mod metrics;
pub mod net;
pub mod node;
pub mod peer;
pub mod placement;
pub mod raft;
pub mod report;

/// The stop channel of `helper::run`, re-exported so that the process that forks the helper
/// (the master, which has no async runtime and does not depend on tokio) can make one.
pub use tokio::sync::watch;
