//! One read index for many reads ([`ReadBatcher`]): the standard batching of linearizable
//! reads. A read index (a leader's confirmation of its leadership by a majority, with the
//! commit index at that moment) costs a round trip to a majority; every read that arrives
//! while one is being obtained for its group waits for the NEXT one, which serves all of them
//! at once. So at most one request per group is in flight, and a burst of reads costs two
//! rounds, not one per read.
//!
//! Correctness: a read may only use an index obtained by a request that STARTED after the read
//! arrived (an index from an older request could predate a write acknowledged before the read
//! arrived). A read registers itself before it looks at the group's state, and the request
//! that serves it takes the waiting list when it starts; a read arriving later goes into the
//! next list.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::forward::{leader_read_index, WriteError};
use super::Groups;
use crate::metrics::Counters;

/// A read index: the log index a read's replica must have applied (`None`: nothing committed).
pub type IndexResult = Result<Option<u64>, WriteError>;

/// What obtains one read index for a group (one round: a leader check, or a call to the
/// leader).
pub type Fetch =
    Arc<dyn Fn(u32) -> Pin<Box<dyn Future<Output = IndexResult> + Send>> + Send + Sync>;

/// The reads of one group waiting for the next request.
#[derive(Default)]
struct Slot {
    /// A request is being made (by the group's driver task).
    running: bool,
    waiting: Vec<oneshot::Sender<IndexResult>>,
}

/// Shares read-index requests among the reads of each group (see the module's doc).
pub struct ReadBatcher {
    fetch: Fetch,
    slots: Mutex<HashMap<u32, Slot>>,
}

/// Marks the group idle if its driver ends in any way (a panic, the runtime dropping it), so
/// that the next read starts a new driver instead of waiting for a dead one.
struct Idle<'a> {
    batcher: &'a ReadBatcher,
    group: u32,
    armed: bool,
}

impl Drop for Idle<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut slots = self.batcher.lock();
            if let Some(slot) = slots.get_mut(&self.group) {
                slot.running = false;
                // Their senders go: they get an error and may retry.
                slot.waiting.clear();
            }
        }
    }
}

impl ReadBatcher {
    /// A batcher over `fetch`. Must be used inside a tokio runtime (each group's requests run
    /// in a task of their own).
    pub fn new(fetch: Fetch) -> Arc<ReadBatcher> {
        Arc::new(ReadBatcher {
            fetch,
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// The batcher of this node's leadership checks ([`leader_read_index`]): the read index
    /// of a group it leads, `NotLeader` otherwise. The peer server's `ReadIndex` answers and
    /// the node's own reads share it, so one heartbeat round serves both.
    pub fn leader_checks(groups: Arc<Groups>, counters: Arc<Counters>) -> Arc<ReadBatcher> {
        ReadBatcher::new(Arc::new(move |group| {
            let (groups, counters) = (groups.clone(), counters.clone());
            Box::pin(async move {
                match groups.get(group) {
                    Some(raft) => leader_read_index(&raft, &counters).await,
                    None => Err(WriteError::NoGroup(group)),
                }
            })
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A read index of `group` obtained by a request started after this call (shared with the
    /// other reads waiting for it). Dropping the future drops only this read's place.
    pub async fn read_index(self: &Arc<Self>, group: u32) -> IndexResult {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut slots = self.lock();
            let slot = slots.entry(group).or_default();
            slot.waiting.push(tx);
            !std::mem::replace(&mut slot.running, true)
        };
        if start {
            tokio::spawn(self.clone().drive(group));
        }
        rx.await.unwrap_or_else(|_| {
            Err(WriteError::Unavailable(format!(
                "the read index request of group {group} stopped"
            )))
        })
    }

    /// Runs the group's requests while reads wait: each takes the reads waiting when it starts.
    async fn drive(self: Arc<Self>, group: u32) {
        let mut idle = Idle {
            batcher: &self,
            group,
            armed: true,
        };
        loop {
            let batch = {
                let mut slots = self.lock();
                let slot = slots.entry(group).or_default();
                // Reads that gave up (their timeout) need no request.
                slot.waiting.retain(|tx| !tx.is_closed());
                if slot.waiting.is_empty() {
                    slot.running = false;
                    idle.armed = false;
                    return;
                }
                std::mem::take(&mut slot.waiting)
            };
            let r = (self.fetch)(group).await;
            for tx in batch {
                let _ = tx.send(r.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;
    use tokio::sync::Semaphore;

    /// A fetch that answers its call number, once the test lets each call through.
    fn gated() -> (Fetch, Arc<AtomicU64>, Arc<Semaphore>) {
        let calls = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let (c, g) = (calls.clone(), gate.clone());
        let fetch: Fetch = Arc::new(move |group| {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            let g = g.clone();
            Box::pin(async move {
                g.acquire().await.unwrap().forget();
                if group == 99 {
                    return Err(WriteError::NoQuorum);
                }
                Ok(Some(n * 100 + u64::from(group)))
            })
        });
        (fetch, calls, gate)
    }

    /// Yields until `calls` reaches `n` (bounded).
    async fn until_calls(calls: &AtomicU64, n: u64) {
        for _ in 0..10_000 {
            if calls.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("{} calls, not {n}", calls.load(Ordering::SeqCst));
    }

    /// A read of `group`'s index in a task of its own.
    fn spawn_read(b: &Arc<ReadBatcher>, group: u32) -> tokio::task::JoinHandle<IndexResult> {
        let b = b.clone();
        tokio::spawn(async move { b.read_index(group).await })
    }

    #[tokio::test]
    async fn a_read_arriving_during_a_request_waits_for_the_next_which_serves_all() {
        let (fetch, calls, gate) = gated();
        let b = ReadBatcher::new(fetch);
        let first = spawn_read(&b, 1);
        until_calls(&calls, 1).await;
        // Request 1 is in flight: these three must not be served by it.
        let later: Vec<_> = (0..3).map(|_| spawn_read(&b, 1)).collect();
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one request at a time");
        gate.add_permits(1);
        assert_eq!(first.await.unwrap(), Ok(Some(101)));
        until_calls(&calls, 2).await;
        gate.add_permits(1);
        for r in later {
            assert_eq!(r.await.unwrap(), Ok(Some(201)), "served by request 2");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Idle again: the next read starts a request of its own.
        gate.add_permits(1);
        assert_eq!(b.read_index(1).await, Ok(Some(301)));
    }

    #[tokio::test]
    async fn groups_do_not_share_requests_and_errors_reach_every_waiter() {
        let (fetch, calls, gate) = gated();
        let b = ReadBatcher::new(fetch);
        let spawn = |g: u32| spawn_read(&b, g);
        let (a, e1) = (spawn(2), spawn(99));
        until_calls(&calls, 2).await;
        let e2 = spawn(99);
        gate.add_permits(3);
        assert_eq!(a.await.unwrap().unwrap().map(|i| i % 100), Some(2));
        assert_eq!(e1.await.unwrap(), Err(WriteError::NoQuorum));
        assert_eq!(e2.await.unwrap(), Err(WriteError::NoQuorum));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_read_that_gave_up_costs_no_request() {
        let (fetch, calls, gate) = gated();
        let b = ReadBatcher::new(fetch);
        let first = spawn_read(&b, 5);
        until_calls(&calls, 1).await;
        let gone = tokio::time::timeout(Duration::from_millis(1), b.read_index(5)).await;
        assert!(gone.is_err());
        gate.add_permits(1);
        assert_eq!(first.await.unwrap(), Ok(Some(105)));
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        gate.add_permits(1);
        assert_eq!(b.read_index(5).await, Ok(Some(205)));
    }
}
