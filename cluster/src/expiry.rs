//! Expiry in cluster mode (`cluster.md` §3: "expiry removes a record on every replica at the
//! same log position"). The worker never purges a replicated store; instead, every second,
//! the leader of each group proposes the purge of its group's expired records as a command
//! of the group's log (`Write::PurgeExpiredSlots` over the group's slot range, at most
//! [`PURGE_BATCH`] records, at the leader's `now_ms`), only when its slots hold an expired
//! record. Every replica applies it at its log position with the leader's time, so each
//! removes the very same records; records of other groups are not touched.

use std::future::Future;
use std::time::Duration;

use storage::{Command, Write};
use tokio::sync::watch;

use crate::net::{propose, unix_ms};
use crate::node::Node;
use crate::raft::{Applied, LogCommand};

/// How often a leader looks for expired records.
pub const PURGE_EVERY: Duration = Duration::from_secs(1);

/// The most records one purge command removes (one group, one round).
pub const PURGE_BATCH: usize = 1000;

impl Node {
    /// The task that purges, on the groups this node leads, their expired records through
    /// their logs, until `stop` turns true (or its sender is gone). Spawned by
    /// [`Node::start_on`].
    pub(crate) fn expiry_task(&self, mut stop: watch::Receiver<bool>) -> impl Future<Output = ()> {
        let groups = self.groups_handle();
        let placement = self.placement.clone();
        let store = self.store.clone();
        let counters = self.counters.clone();
        async move {
            let mut tick = tokio::time::interval(PURGE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    r = stop.changed() => if r.is_err() || *stop.borrow() { return },
                }
                for g in groups.ids() {
                    let Some(raft) = groups.get(g) else { continue };
                    if raft.metrics().borrow().state != openraft::ServerState::Leader {
                        continue;
                    }
                    let slots = placement.slots_of_group(g);
                    let now_ms = unix_ms();
                    match store.batch().has_expired_in_slots(slots.clone(), now_ms) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            log::warn!("group {g}: looking for expired records: {e}");
                            continue;
                        }
                    }
                    let write = Write::PurgeExpiredSlots {
                        start: slots.start,
                        end: slots.end,
                        max: PURGE_BATCH,
                    };
                    let cmd = LogCommand::new(&Command { now_ms, write });
                    // Bounded: a leader that lost its majority does not hold the round up.
                    let proposed =
                        tokio::time::timeout(PURGE_EVERY * 5, propose(&raft, cmd, &counters));
                    match proposed.await {
                        Ok(Ok(Applied::Purged(n))) => {
                            counters.expiry_purges.add(n);
                            log::debug!("group {g}: purged {n} expired records");
                        }
                        Ok(Ok(other)) => log::warn!("group {g}: expiry purge answered {other:?}"),
                        Ok(Err(e)) => log::debug!("group {g}: expiry purge: {e}"),
                        Err(_) => log::debug!("group {g}: expiry purge not applied in time"),
                    }
                }
            }
        }
    }
}
