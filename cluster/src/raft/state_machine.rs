//! One group's state machine over the node's LMDB store ([`StateMachine`]): openraft's
//! `RaftStateMachine` and snapshot builder. Each `apply` of openraft goes into one storage
//! `Batch`, shared with the other groups' applies pending at the time (the node's `Applier`):
//! every entry's command applied in log order, then the group's applied state (last applied
//! log id, last membership) stored with `Batch::set_group_state`, then one commit, so the data
//! and the position it reflects never part, even in a crash. The answers go back as
//! [`Applied`]. An apply does not wait for the store's journal flush: the consensus log holds
//! the entries durably, and a snapshot, which lets the log be purged, first makes the store
//! durable.
//!
//! Snapshots are not kept: a snapshot is taken from the store when asked for (its group state
//! and its slots' records by `Batch::export_slots`, read in one read transaction, so the two
//! agree), and installing one replaces the group's slots (`Batch::import_slots`) and state in
//! one batch; records of other groups are untouched. Its id is the group and the log id
//! it reflects, so a snapshot asked for twice at one position is the same snapshot.
//!
//! The LMDB work runs off openraft's async tasks (applies on the applier's thread, snapshots
//! built and installed on tokio's blocking threads), which keep answering heartbeats meanwhile. A
//! failure stops the group on this node (openraft's storage error); the store being full is
//! logged at `alert` with its fix (`map_size`).
//!
//! It knows the group's slot range, given by the caller, never how slots are placed.

use std::io::Cursor;
use std::ops::Range;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{AnyError, BasicNode, Entry, OptionalSend};
use openraft::{RaftSnapshotBuilder, StorageIOError, StoredMembership};
use storage::{Batch, Store};

use super::applier::{encode_applied_state, AppliedState, Applier};
use super::codec::{self, CodecError, Reader};
use super::{Applied, NodeId, RaftStorageError, TypeConfig};

/// Reads a whole buffer written by [`encode_applied_state`].
pub(crate) fn decode_applied_state(buf: &[u8]) -> Result<AppliedState, CodecError> {
    let mut r = Reader::new(buf);
    let last = codec::get_opt_log_id(&mut r)?;
    let membership_log_id = codec::get_opt_log_id(&mut r)?;
    let membership = codec::get_membership(&mut r)?;
    r.end()?;
    Ok((last, StoredMembership::new(membership_log_id, membership)))
}

fn sm_error(e: impl std::error::Error + 'static) -> RaftStorageError {
    RaftStorageError::IO {
        source: StorageIOError::write_state_machine(AnyError::new(&e)),
    }
}

fn snapshot_read_error(e: storage::StorageError) -> RaftStorageError {
    RaftStorageError::IO {
        source: StorageIOError::read_snapshot(None, AnyError::new(&e)),
    }
}

/// The group's applied state in the store (none yet: nothing applied).
fn load_applied_state(batch: &mut Batch<'_>, group: u32) -> storage::Result<AppliedState> {
    match batch.group_state(group)? {
        Some(bytes) => decode_applied_state(&bytes)
            .map_err(|_| storage::StorageError::Invalid("the stored group state is malformed")),
        None => Ok(AppliedState::default()),
    }
}

fn now_ms() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis() as u64)
}

/// A group's part of the store.
#[derive(Clone)]
struct GroupStore {
    store: Arc<Store>,
    group: u32,
    slots: Range<u32>,
}

impl GroupStore {
    /// Makes every commit so far durable: one journal record (the group's state as it is,
    /// stored again) whose flush covers every earlier commit of any process.
    fn make_durable(&self) -> storage::Result<()> {
        let mut batch = self.store.batch();
        let state = load_applied_state(&mut batch, self.group)?;
        batch.set_group_state(self.group, &encode_applied_state(&state))?;
        batch.commit()?;
        Ok(())
    }

    /// Logs why the group stops applying; the operator's fix when it is the map being full
    /// (the one failure a conf change cures).
    fn alert(&self, e: &storage::StorageError) {
        match e {
            storage::StorageError::MapFull => conf::alert!(
                "cluster group {}: the store is full: this node stopped applying the group's \
                 log (its other replicas go on); raise map_size in the conf and restart the node",
                self.group
            ),
            e => log::error!(
                "cluster group {}: applying the log failed, the group stops here: {e}",
                self.group
            ),
        }
    }

    /// Replaces the group's slots and state with a snapshot's (`data`, stating `state`), in
    /// one batch. Blocking.
    fn install(&self, state: &AppliedState, data: &[u8]) -> storage::Result<()> {
        let mut batch = self.store.batch();
        batch.import_slots(self.slots.clone(), data)?;
        batch.set_group_state(self.group, &encode_applied_state(state))?;
        batch.commit()?;
        Ok(())
    }

    /// The group's state and slots as they are now, from one read transaction.
    fn snapshot(&self) -> storage::Result<Snapshot<TypeConfig>> {
        let mut batch = self.store.batch();
        let (last_log_id, last_membership) = load_applied_state(&mut batch, self.group)?;
        let data = batch.export_slots(self.slots.clone(), now_ms())?;
        drop(batch);
        // The applies do not wait for their journal flush (see `applier`), and openraft
        // purges the log up to a snapshot: the state read above must be on disk first. It
        // was committed before the read began, so a flush begun now covers it.
        self.make_durable()?;
        let snapshot_id = match &last_log_id {
            Some(id) => format!(
                "g{}-{}-{}-{}",
                self.group, id.leader_id.term, id.leader_id.node_id, id.index
            ),
            None => format!("g{}-empty", self.group),
        };
        Ok(Snapshot {
            meta: SnapshotMeta {
                last_log_id,
                last_membership,
                snapshot_id,
            },
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// A group's state machine.
pub struct StateMachine {
    group: GroupStore,
    /// The node's applier, shared by its groups.
    applier: Applier,
    /// What the store holds for the group, kept here so `applied_state` reads nothing.
    applied: AppliedState,
}

/// Takes a group's snapshot from the store (openraft runs it in a task of its own).
pub struct SnapshotBuilder {
    group: GroupStore,
}

impl StateMachine {
    /// The state machine of `group`, whose records are those of `slots`, over the store of
    /// `applier`, which applies its entries; resumes from the applied state the store holds.
    pub fn open(
        applier: &Applier,
        group: u32,
        slots: Range<u32>,
    ) -> Result<StateMachine, storage::StorageError> {
        let store = applier.store().clone();
        let applied = load_applied_state(&mut store.batch(), group)?;
        let group = GroupStore {
            store,
            group,
            slots,
        };
        Ok(StateMachine {
            group,
            applier: applier.clone(),
            applied,
        })
    }
}

/// Runs `f` (LMDB work) on a blocking thread, off openraft's async tasks.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> storage::Result<T> + Send + 'static,
) -> storage::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(storage::StorageError::Invalid(
            "the runtime is shutting down",
        )),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        let group = self.group.clone();
        blocking(move || group.snapshot())
            .await
            .map_err(snapshot_read_error)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<AppliedState, RaftStorageError> {
        Ok(self.applied.clone())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let applying = self
            .applier
            .apply(self.group.group, self.applied.clone(), entries);
        match applying.await {
            Ok((answers, state)) => {
                self.applied = state;
                Ok(answers)
            }
            Err(e) => {
                self.group.alert(&e);
                Err(sm_error(e))
            }
        }
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            group: self.group.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), RaftStorageError> {
        let state = (meta.last_log_id, meta.last_membership.clone());
        let (group, stored) = (self.group.clone(), state.clone());
        let installed = blocking(move || group.install(&stored, snapshot.get_ref())).await;
        match installed {
            Ok(()) => {
                self.applied = state;
                Ok(())
            }
            Err(e) => {
                self.group.alert(&e);
                Err(RaftStorageError::IO {
                    source: StorageIOError::write_snapshot(
                        Some(meta.signature()),
                        AnyError::new(&e),
                    ),
                })
            }
        }
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        if self.applied.0.is_none() {
            return Ok(None);
        }
        let group = self.group.clone();
        blocking(move || group.snapshot())
            .await
            .map(Some)
            .map_err(snapshot_read_error)
    }
}
