//! The peer protocol on the wire (`cluster.md` §1): each node serves `POST /raft` on its peer
//! address (`server`), and reaches the other members of its groups through one keep-alive
//! connection pool per node, shared by all its groups (`client`, openraft's network traits).
//! A request is a `peer::frame` (kind, group, payload) signed with the cluster's secret
//! (`peer::auth`); its payload and the answer are `raft::rpc_codec`'s. `http` is the little
//! HTTP/1.1 both ends speak; `forward` the proposal of a client write, here or forwarded to
//! the leader; `proposer` the client writes to a group that wait while its entries are in
//! flight, proposed together in the next; `read_batch` one read index shared by the reads of
//! a group that wait for it.

mod client;
mod forward;
mod http;
mod proposer;
mod read_batch;
mod server;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::Raft;

use crate::metrics::Counters;
use crate::raft::TypeConfig;

pub use client::{CallError, Contact, GroupNetwork, PeerClient, PeerConnection};
pub use forward::{decode_read_index, decode_write_result, encode_read_index};
pub use forward::{
    encode_write_result, leader_check_error, leader_read_index, propose, WriteError,
};
pub use proposer::Proposer;
pub use read_batch::{Fetch, IndexResult, ReadBatcher};
pub use server::Server;

/// The one path of the peer protocol.
pub const RAFT_PATH: &str = "/raft";

/// The largest request or response body: above openraft's snapshot chunks (3 MiB by default)
/// and a batch of appended entries of large values.
pub const MAX_BODY: u64 = 64 << 20;

/// Unix time in milliseconds, what `PeerKey` signs and checks against.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The Raft of each group this node serves, looked up by the server for every request.
///
/// It also keeps the groups whose log was empty when this node started (a first start, or a
/// disk lost, which this node cannot tell apart): until such a group has applied an entry
/// from a leader, its votes go only to candidates whose log holds nothing but the initial
/// membership (a bootstrap election). Otherwise a node that lost its disk could vote a
/// candidate lacking committed entries into leadership (`cluster.md` §8; openraft's FAQ on
/// wiping a node). The server applies it before handing a vote to the Raft.
#[derive(Default)]
pub struct Groups {
    rafts: RwLock<BTreeMap<u32, Raft<TypeConfig>>>,
    proposers: RwLock<BTreeMap<u32, Arc<Proposer>>>,
    empty_at_start: RwLock<BTreeSet<u32>>,
}

impl Groups {
    /// The Raft of `group`, if this node serves it.
    pub fn get(&self, group: u32) -> Option<Raft<TypeConfig>> {
        let rafts = self.rafts.read().unwrap_or_else(|e| e.into_inner());
        rafts.get(&group).cloned()
    }

    /// The proposer of client writes to `group`, if this node serves it.
    pub fn proposer(&self, group: u32) -> Option<Arc<Proposer>> {
        let proposers = self.proposers.read().unwrap_or_else(|e| e.into_inner());
        proposers.get(&group).cloned()
    }

    /// Serves `group` with `raft`, its proposals counted in `counters`.
    pub fn insert(&self, group: u32, raft: Raft<TypeConfig>, counters: Arc<Counters>) {
        let proposer = Proposer::new(raft.clone(), counters);
        let mut proposers = self.proposers.write().unwrap_or_else(|e| e.into_inner());
        proposers.insert(group, proposer);
        drop(proposers);
        let mut rafts = self.rafts.write().unwrap_or_else(|e| e.into_inner());
        rafts.insert(group, raft);
    }

    /// Marks `group` as started on an empty log.
    pub fn started_empty(&self, group: u32) {
        let mut empty = self
            .empty_at_start
            .write()
            .unwrap_or_else(|e| e.into_inner());
        empty.insert(group);
    }

    /// Whether `raft`, of `group`, must refuse its vote to a candidate whose last log entry
    /// has index `candidate_last` (see the type's doc). Once the group has applied an entry
    /// past the initial membership, never again for this run.
    pub fn withholds_vote(&self, group: u32, raft: &Raft<TypeConfig>, candidate_last: u64) -> bool {
        let empty = self
            .empty_at_start
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if !empty.contains(&group) {
            return false;
        }
        drop(empty);
        let applied = raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
        if applied > 0 {
            let mut empty = self
                .empty_at_start
                .write()
                .unwrap_or_else(|e| e.into_inner());
            empty.remove(&group);
            return false;
        }
        candidate_last > 0
    }

    /// Every group's Raft, taken out (the server answers `404` for them from now on).
    pub fn take_all(&self) -> BTreeMap<u32, Raft<TypeConfig>> {
        let mut proposers = self.proposers.write().unwrap_or_else(|e| e.into_inner());
        proposers.clear();
        drop(proposers);
        let mut rafts = self.rafts.write().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *rafts)
    }

    /// The groups served, in increasing order.
    pub fn ids(&self) -> Vec<u32> {
        let rafts = self.rafts.read().unwrap_or_else(|e| e.into_inner());
        rafts.keys().copied().collect()
    }
}
