//! Client writes to a group proposed together: a group's [`Proposer`] keeps at most
//! [`IN_FLIGHT`] log entries of client writes in flight, and the writes that arrive meanwhile
//! wait and go into the next entry together ([`LogCommand::batch`]), up to [`MAX_COMMANDS`]
//! commands or [`MAX_BYTES`] bytes. openraft's cost is per entry (its core's command loop,
//! the replication of each entry, the log's record, the answer), so under load a group pays
//! it once for many writes, as TiKV's raftstore batches its proposals; with nothing in
//! flight a write is proposed at once, alone, so a lone client waits no longer than before.
//!
//! Each command keeps its own answer (`Applied::Batch` holds them in order) and the entry's
//! fate is each command's: `NotLeader` before the append or for an entry a new leader
//! removed (certainly not applied) or an unknown outcome, for all of them alike.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use openraft::Raft;
use tokio::sync::oneshot;

use super::forward::{propose, WriteError};
use crate::metrics::Counters;
use crate::raft::{Applied, LogCommand, TypeConfig};

/// Entries of client writes a group keeps in flight at once: two, so that the next batch
/// is being appended and replicated while the one before commits.
pub const IN_FLIGHT: usize = 2;

/// The most commands one entry carries.
pub const MAX_COMMANDS: usize = 256;

/// The most command bytes one entry carries (a single larger command goes alone).
pub const MAX_BYTES: usize = 1 << 20;

/// What a write waiting for its entry gets.
type Answer = Result<Applied, WriteError>;

struct Waiting {
    cmd: LogCommand,
    answer: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Queue {
    /// Entries proposed and not yet answered.
    in_flight: usize,
    /// Writes waiting for an entry, in arrival order (only while `in_flight` is at its
    /// bound: a write that finds a free slot is proposed at once).
    waiting: VecDeque<Waiting>,
}

impl Queue {
    /// The next entry's writes: the oldest waiting ones, within the bounds.
    fn take_batch(&mut self) -> Vec<Waiting> {
        let mut taken = Vec::new();
        let mut bytes = 0;
        while let Some(next) = self.waiting.front() {
            let len = next.cmd.bytes.len();
            if !taken.is_empty() && (taken.len() == MAX_COMMANDS || bytes + len > MAX_BYTES) {
                break;
            }
            bytes += len;
            taken.extend(self.waiting.pop_front());
        }
        taken
    }
}

/// The proposals of client writes to one group's Raft on this node (see the module's doc).
pub struct Proposer {
    raft: Raft<TypeConfig>,
    counters: Arc<Counters>,
    queue: Mutex<Queue>,
}

impl Proposer {
    pub fn new(raft: Raft<TypeConfig>, counters: Arc<Counters>) -> Arc<Proposer> {
        Arc::new(Proposer {
            raft,
            counters,
            queue: Mutex::new(Queue::default()),
        })
    }

    /// The group's Raft.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// Proposes `cmd` (a single command's payload) in the group's next entry and waits until
    /// it is committed and applied here: its own answer.
    pub async fn propose(self: &Arc<Self>, cmd: LogCommand) -> Answer {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.waiting.push_back(Waiting { cmd, answer });
            if q.in_flight < IN_FLIGHT {
                q.in_flight += 1;
                Some(q.take_batch())
            } else {
                None
            }
        };
        if let Some(batch) = start {
            tokio::spawn(self.clone().drive(batch));
        }
        // The driver answers every write it took, even when its Raft stopped; a dropped
        // sender means its task was torn down with the runtime: the outcome is unknown.
        answered
            .await
            .unwrap_or_else(|_| Err(WriteError::Fatal("the proposal was dropped".into())))
    }

    /// Proposes `batch` as one entry, answers its writes, and goes on with the writes that
    /// waited meanwhile until none are left; then frees its slot.
    async fn drive(self: Arc<Self>, mut batch: Vec<Waiting>) {
        loop {
            self.propose_batch(batch).await;
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            batch = q.take_batch();
            if batch.is_empty() {
                q.in_flight -= 1;
                return;
            }
        }
    }

    async fn propose_batch(&self, batch: Vec<Waiting>) {
        self.counters.proposal_entries.bump();
        if batch.len() == 1 {
            let Some(w) = batch.into_iter().next() else {
                return;
            };
            let answer = propose(&self.raft, w.cmd, &self.counters).await;
            let _ = w.answer.send(answer);
            return;
        }
        let n = batch.len();
        let (cmds, answers): (Vec<LogCommand>, Vec<oneshot::Sender<Answer>>) =
            batch.into_iter().map(|w| (w.cmd, w.answer)).unzip();
        self.counters.proposals.add(n as u64 - 1);
        let entry = LogCommand::batch(&cmds);
        drop(cmds);
        match propose(&self.raft, entry, &self.counters).await {
            Ok(Applied::Batch(each)) if each.len() == n => {
                for (answer, applied) in answers.into_iter().zip(each) {
                    let _ = answer.send(Ok(applied));
                }
            }
            // Not a batch's answers: only a malformed batch answers so (`Undecodable`, nothing
            // of it applied), which `LogCommand::batch` never makes; each write gets it.
            Ok(other) => {
                for answer in answers {
                    let _ = answer.send(Ok(other.clone()));
                }
            }
            Err(e) => {
                for answer in answers {
                    let _ = answer.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(len: usize) -> (Waiting, oneshot::Receiver<Answer>) {
        let (answer, rx) = oneshot::channel();
        let cmd = LogCommand {
            bytes: vec![1; len],
        };
        (Waiting { cmd, answer }, rx)
    }

    #[test]
    fn a_batch_takes_the_oldest_writes_within_its_bounds() {
        let mut q = Queue::default();
        let mut keep = Vec::new();
        for _ in 0..MAX_COMMANDS + 3 {
            let (w, rx) = waiting(10);
            q.waiting.push_back(w);
            keep.push(rx);
        }
        assert_eq!(q.take_batch().len(), MAX_COMMANDS);
        assert_eq!(q.take_batch().len(), 3);
        assert!(q.take_batch().is_empty());

        for len in [MAX_BYTES / 2, MAX_BYTES / 2, 1, MAX_BYTES * 2, 5] {
            let (w, rx) = waiting(len);
            q.waiting.push_back(w);
            keep.push(rx);
        }
        let sizes = |b: Vec<Waiting>| b.iter().map(|w| w.cmd.bytes.len()).collect::<Vec<_>>();
        assert_eq!(sizes(q.take_batch()), [MAX_BYTES / 2, MAX_BYTES / 2]);
        assert_eq!(sizes(q.take_batch()), [1]);
        // A command larger than the bound goes alone, never stuck.
        assert_eq!(sizes(q.take_batch()), [MAX_BYTES * 2]);
        assert_eq!(sizes(q.take_batch()), [5]);
    }
}
