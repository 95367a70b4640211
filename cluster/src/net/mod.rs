//! The peer protocol on the wire (`cluster.md` §1): each node serves `POST /raft` on its peer
//! address (`server`), and reaches the other members of its groups through one keep-alive
//! connection pool per node, shared by all its groups (`client`, openraft's network traits).
//! A request is a `peer::frame` (kind, group, payload) signed with the cluster's secret
//! (`peer::auth`); its payload and the answer are `raft::rpc_codec`'s. `http` is the little
//! HTTP/1.1 both ends speak.

mod client;
mod http;
mod server;

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::Raft;

use crate::raft::TypeConfig;

pub use client::{GroupNetwork, PeerClient, PeerConnection};
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
#[derive(Default)]
pub struct Groups {
    rafts: RwLock<BTreeMap<u32, Raft<TypeConfig>>>,
}

impl Groups {
    /// The Raft of `group`, if this node serves it.
    pub fn get(&self, group: u32) -> Option<Raft<TypeConfig>> {
        let rafts = self.rafts.read().unwrap_or_else(|e| e.into_inner());
        rafts.get(&group).cloned()
    }

    /// Serves `group` with `raft`.
    pub fn insert(&self, group: u32, raft: Raft<TypeConfig>) {
        let mut rafts = self.rafts.write().unwrap_or_else(|e| e.into_inner());
        rafts.insert(group, raft);
    }

    /// Every group's Raft, taken out (the server answers `404` for them from now on).
    pub fn take_all(&self) -> BTreeMap<u32, Raft<TypeConfig>> {
        let mut rafts = self.rafts.write().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *rafts)
    }

    /// The groups served, in increasing order.
    pub fn ids(&self) -> Vec<u32> {
        let rafts = self.rafts.read().unwrap_or_else(|e| e.into_inner());
        rafts.keys().copied().collect()
    }
}
