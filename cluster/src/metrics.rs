//! This node's consensus counters (`cluster.md` §5, the `/metrics` figures): plain atomics
//! bumped where the events happen (proposals in `net::forward`, forwarded writes and read
//! indexes in `node`, snapshots in the peer client and server, refusals by the helper) and by
//! one watcher task per group over openraft's metrics (leader changes, applied entries).
//! Relaxed ordering throughout: each figure is a count read for a report, ordered with nothing.

use std::sync::atomic::{AtomicU64, Ordering};

use openraft::Raft;
use tokio::sync::watch;

use crate::raft::TypeConfig;

/// A counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// One more.
    pub fn bump(&self) {
        self.add(1);
    }

    /// `n` more.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why the helper refused a client request (what `Node::count_refusal` counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `503`: certainly not applied, retry.
    Unavailable,
    /// `504`: the outcome is unknown.
    Unknown,
}

/// Every counter of the node, since it started.
#[derive(Debug, Default)]
pub struct Counters {
    /// Commands proposed to a group's Raft on this node (its own clients' and forwarded ones).
    pub proposals: Counter,
    /// Log entries of client writes proposed on this node: one carries every write to its
    /// group that waited meanwhile (`net::proposer`).
    pub proposal_entries: Counter,
    /// Log entries applied to this node's store, every group.
    pub applied: Counter,
    /// Times a group learned of a new leader (this node or another).
    pub leader_changes: Counter,
    /// Writes this node sent to another node to propose.
    pub forwarded: Counter,
    /// Read indexes this node asked a leader for (linearizable reads on a follower).
    pub read_index_asked: Counter,
    /// Read indexes this node answered as a leader.
    pub read_index_served: Counter,
    /// Linearizable read barriers asked of this node by its workers.
    pub read_barriers: Counter,
    /// Leadership confirmations (a heartbeat round to a majority) this node ran for reads:
    /// one serves every read waiting when it starts (`net::read_batch`).
    pub leader_checks: Counter,
    /// New connections this node opened to other nodes (the rest reuse idle ones).
    pub peer_connects: Counter,
    /// Snapshots this node sent whole to a follower.
    pub snapshots_sent: Counter,
    /// Snapshots this node received whole from a leader.
    pub snapshots_received: Counter,
    /// Expired records removed by the purges this node proposed as a leader.
    pub expiry_purges: Counter,
    /// Client requests answered `503`.
    pub refused_503: Counter,
    /// Client requests answered `504`.
    pub unknown_504: Counter,
}

/// Follows one group's openraft metrics until its Raft stops: a change of known leader is a
/// leader change; the applied index's growth counts the entries applied (a snapshot installed
/// counts what it covers).
pub(crate) async fn watch_group(raft: Raft<TypeConfig>, counters: std::sync::Arc<Counters>) {
    let mut rx: watch::Receiver<_> = raft.metrics();
    drop(raft);
    let (mut leader, mut applied) = {
        let m = rx.borrow_and_update();
        (m.current_leader, m.last_applied.map_or(0, |l| l.index))
    };
    while rx.changed().await.is_ok() {
        let (now_leader, now_applied) = {
            let m = rx.borrow_and_update();
            (m.current_leader, m.last_applied.map_or(0, |l| l.index))
        };
        if now_leader != leader {
            if now_leader.is_some() {
                counters.leader_changes.bump();
            }
            leader = now_leader;
        }
        if now_applied > applied {
            counters.applied.add(now_applied - applied);
        }
        applied = applied.max(now_applied);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_count() {
        let c = Counters::default();
        c.proposals.bump();
        c.proposals.add(2);
        assert_eq!(c.proposals.get(), 3);
        assert_eq!(c.refused_503.get(), 0);
    }
}
