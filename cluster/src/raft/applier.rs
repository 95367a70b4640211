//! The node's one applier ([`Applier`]): a thread that applies the committed entries of every
//! group of the node, taking all the applies pending at once into one storage batch and one
//! commit. Each group's openraft asks for its applies one at a time, so a batch holds at most
//! one apply per group, each group's entries in log order; groups own disjoint slots, so
//! applies of different groups commute and their order in the batch changes no answer.
//!
//! Why one thread and one commit: with 16 groups a write's apply was one LMDB write
//! transaction on a blocking thread per group, contending for LMDB's one write lock with the
//! other groups' and the workers' transactions, and each commit also writes the store's
//! journal record. One commit for every group's pending applies pays that once.
//!
//! If the shared batch fails (an LMDB error, a failed commit), nothing of it is written
//! (dropping a batch aborts it), and each of its applies is run again alone, so a failure is
//! reported to the group it belongs to and the others go on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use openraft::{BasicNode, Entry, EntryPayload, LogId, StoredMembership};
use storage::{Batch, Command, Store};
use tokio::sync::oneshot;

use super::codec;
use super::{Applied, NodeId, TypeConfig};

/// The last applied log id and the last membership.
pub(crate) type AppliedState = (Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>);

/// What the store holds for a group (`Batch::set_group_state`).
pub(crate) fn encode_applied_state(state: &AppliedState) -> Vec<u8> {
    let mut out = Vec::new();
    codec::put_opt_log_id(&mut out, &state.0);
    codec::put_opt_log_id(&mut out, state.1.log_id());
    codec::put_membership(&mut out, state.1.membership());
    out
}

/// Applies `entries` of `group` over `state` into `batch` (shared with other groups' applies,
/// see `applier`): the answers in order, `state` advanced past them, and the group's state
/// stored in the batch when it moved; or an LMDB error, after which the batch must not be
/// committed. Blocking (LMDB).
fn apply_into(
    batch: &mut Batch<'_>,
    group: u32,
    state: &mut AppliedState,
    entries: &[Entry<TypeConfig>],
) -> storage::Result<Vec<Applied>> {
    let before = state.0;
    let mut answers = Vec::with_capacity(entries.len());
    for entry in entries {
        state.0 = Some(entry.log_id);
        let answer = match &entry.payload {
            EntryPayload::Blank => Applied::Nothing,
            EntryPayload::Membership(m) => {
                state.1 = StoredMembership::new(Some(entry.log_id), m.clone());
                Applied::Nothing
            }
            EntryPayload::Normal(cmd) if cmd.is_batch() => match cmd.batch_members() {
                // A malformed batch applies none of its commands, on every replica.
                Err(_) => Applied::Undecodable,
                Ok(members) => {
                    let mut each = Vec::with_capacity(members.len());
                    for bytes in members {
                        each.push(apply_command(batch, bytes)?);
                    }
                    Applied::Batch(each)
                }
            },
            EntryPayload::Normal(cmd) => apply_command(batch, &cmd.bytes)?,
        };
        answers.push(answer);
    }
    if state.0 != before {
        batch.set_group_state(group, &encode_applied_state(state))?;
    }
    Ok(answers)
}

/// Applies one encoded command; its answer. Only an LMDB failure is an error (it stops the
/// group); every replica answers the same bytes, a command or not, alike.
fn apply_command(batch: &mut Batch<'_>, bytes: &[u8]) -> storage::Result<Applied> {
    let Ok(cmd) = Command::decode(bytes) else {
        return Ok(Applied::Undecodable);
    };
    match batch.apply(&cmd) {
        Err(e @ storage::StorageError::Lmdb(_)) => Err(e),
        r => Ok(Applied::of(r).unwrap_or(Applied::Undecodable)),
    }
}

/// The outcome of one apply: the answers in log order and the group's state after them.
pub(crate) type ApplyResult = storage::Result<(Vec<Applied>, AppliedState)>;

/// One group's apply waiting for the applier.
struct Job {
    group: u32,
    state: AppliedState,
    entries: Vec<Entry<TypeConfig>>,
    done: oneshot::Sender<ApplyResult>,
}

/// How many applies and commits the applier made.
#[derive(Debug, Default)]
struct Counts {
    applies: AtomicU64,
    commits: AtomicU64,
}

/// The handle of a node's applier thread over its store; clones share the thread. The last
/// one dropped stops the thread and waits for it, so the store is no longer used once it is
/// gone (a store reopened in the same process must not be open twice).
#[derive(Clone)]
pub struct Applier {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    counts: Arc<Counts>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The thread ends once the queue has no sender and is empty.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Applier {
    /// Starts the applier of `store`.
    pub fn start(store: Arc<Store>) -> std::io::Result<Applier> {
        let (jobs, queue) = mpsc::channel();
        let counts = Arc::new(Counts::default());
        let (thread_store, thread_counts) = (store.clone(), counts.clone());
        let thread = std::thread::Builder::new()
            .name("cluster-apply".into())
            .spawn(move || run(&thread_store, &queue, &thread_counts))?;
        let inner = Inner {
            store,
            jobs: Some(jobs),
            thread: Some(thread),
            counts,
        };
        Ok(Applier {
            inner: Arc::new(inner),
        })
    }

    /// The store the applier writes.
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// Applies `entries` of `group` over `state`, with whatever other groups' applies are
    /// pending, and answers once their commit is done.
    pub(crate) async fn apply(
        &self,
        group: u32,
        state: AppliedState,
        entries: Vec<Entry<TypeConfig>>,
    ) -> ApplyResult {
        let (done, answer) = oneshot::channel();
        let job = Job {
            group,
            state,
            entries,
            done,
        };
        let stopped = || storage::StorageError::Invalid("the applier thread stopped");
        let jobs = self.inner.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(job).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// The applies made so far and the store commits that made them (applies per commit: how
    /// many groups one commit served).
    pub fn counts(&self) -> (u64, u64) {
        let c = &self.inner.counts;
        (
            c.applies.load(Ordering::Relaxed),
            c.commits.load(Ordering::Relaxed),
        )
    }
}

/// The applier thread: waits for an apply, takes every other one pending, applies them.
fn run(store: &Store, queue: &mpsc::Receiver<Job>, counts: &Counts) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        jobs.extend(queue.try_iter());
        let n = jobs.len() as u64;
        let results = apply_jobs(store, &jobs);
        counts.applies.fetch_add(n, Ordering::Relaxed);
        counts.commits.fetch_add(results.commits, Ordering::Relaxed);
        for (job, result) in jobs.into_iter().zip(results.each) {
            // A group whose Raft stopped meanwhile no longer waits for its answer.
            let _ = job.done.send(result);
        }
    }
}

/// What [`apply_jobs`] did: one result per job, in order, and the commits it took.
struct Results {
    each: Vec<ApplyResult>,
    commits: u64,
}

/// Applies `jobs` in one batch and one commit; if that fails, each alone (see the module's
/// doc).
fn apply_jobs(store: &Store, jobs: &[Job]) -> Results {
    if jobs.len() > 1 {
        if let Ok(each) = apply_in_one_batch(store, jobs) {
            return Results { each, commits: 1 };
        }
    }
    let alone = |job| match apply_in_one_batch(store, std::slice::from_ref(job)) {
        Ok(mut each) => each
            .pop()
            .unwrap_or(Err(storage::StorageError::Invalid("no apply"))),
        Err(e) => Err(e),
    };
    Results {
        each: jobs.iter().map(alone).collect(),
        commits: jobs.len() as u64,
    }
}

/// Every job's entries applied over its state in one batch, committed once: each job's
/// answers and state after; or the batch's error, with nothing of it written.
fn apply_in_one_batch(store: &Store, jobs: &[Job]) -> storage::Result<Vec<ApplyResult>> {
    let mut batch: Batch<'_> = store.batch();
    let mut each = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut state = job.state.clone();
        let answers = apply_into(&mut batch, job.group, &mut state, &job.entries)?;
        each.push(Ok((answers, state)));
    }
    // No wait for the journal's fdatasync: every entry applied here is already durable in
    // the consensus log, fsynced before it was committed, and a store that loses the commit
    // in a machine crash resumes from an older applied state whose entries the log still
    // holds (openraft applies them again). What makes that true is the state machine's
    // snapshot, which makes the store durable before a snapshot lets the log be purged. A
    // process crash loses nothing either way: the commit is in the page cache. Waiting here
    // put a second fdatasync in series behind every write.
    let (_, unflushed) = batch.commit_deferred()?;
    drop(unflushed);
    Ok(each)
}

/// [`apply_jobs`] of one apply per `(group, state, entries)`, as the thread takes them when
/// they are pending together: each result and the commits made.
#[cfg(test)]
pub(crate) fn apply_together(
    store: &Store,
    applies: Vec<(u32, AppliedState, Vec<Entry<TypeConfig>>)>,
) -> (Vec<ApplyResult>, u64) {
    let jobs: Vec<Job> = applies
        .into_iter()
        .map(|(group, state, entries)| Job {
            group,
            state,
            entries,
            done: oneshot::channel().0,
        })
        .collect();
    let results = apply_jobs(store, &jobs);
    (results.each, results.commits)
}
