//! openraft's storage test suite (`openraft::testing::Suite`) over a group's [`LogStore`]
//! and [`StateMachine`], each build in a fresh data folder with its own shared log engine
//! and LMDB store; and the state machine's own tests: commands applied in one batch with
//! their answers, the applied state surviving a reopen, garbage entries refused alike.

use std::collections::BTreeSet;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::testing::{StoreBuilder, Suite};
use openraft::RaftSnapshotBuilder;
use openraft::{AnyError, Entry, EntryPayload, Membership, StorageIOError};
use storage::{Command, Store, StoreOptions, Write};

use super::{log_id, TempDir};
use crate::raft::StateMachine;
use crate::raft::TypeConfig;
use crate::raft::{Applied, Applier, LogCommand, LogEngine, LogStore, RaftStorageError};

/// `group`'s state machine over `store`, with an applier of its own.
pub(super) fn open_sm(
    store: &Arc<Store>,
    group: u32,
    slots: std::ops::Range<u32>,
) -> storage::Result<StateMachine> {
    let applier = Applier::start(store.clone()).expect("the applier's thread");
    StateMachine::open(&applier, group, slots)
}

pub(super) fn open_store(dir: &std::path::Path) -> storage::Result<Store> {
    Store::open(&StoreOptions {
        data_dir: dir.join("data"),
        map_size: 64 << 20,
        sync_writes: true,
        cache_dir: dir.join("cache"),
        cache_size: 8 << 20,
        write_map: true,
        fail_stop: Default::default(),
    })
}

struct Builder;

fn setup_error(e: &dyn std::fmt::Display) -> RaftStorageError {
    RaftStorageError::IO {
        source: StorageIOError::write(AnyError::error(e)),
    }
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), RaftStorageError> {
        let dir = TempDir::new("suite");
        let engine = LogEngine::open(dir.path()).map_err(|e| setup_error(&e))?;
        let store = open_store(dir.path()).map_err(|e| setup_error(&e))?;
        let sm = open_sm(&Arc::new(store), 0, 0..1024).map_err(|e| setup_error(&e))?;
        Ok((dir, engine.group(0), sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft's storage suite");
}

pub(super) fn put(key: &[u8], val: &[u8], ver: u32) -> LogCommand {
    LogCommand::new(&Command {
        now_ms: 1_700_000_000_000,
        write: Write::Put {
            key,
            val,
            expires_at: 0,
            ver,
        },
    })
}

fn normal(index: u64, cmd: LogCommand) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(cmd),
    }
}

#[test]
fn commands_apply_in_one_batch_and_the_state_survives_a_reopen() {
    let dir = TempDir::new("sm");
    let store = Arc::new(open_store(dir.path()).expect("store"));
    let rt = super::rt();
    let membership = Membership::new(vec![BTreeSet::from([0, 1, 2])], ());
    let answers = rt.block_on(async {
        let mut sm = open_sm(&store, 3, 0..64).expect("open");
        sm.apply([
            Entry {
                log_id: log_id(1, 1),
                payload: EntryPayload::Membership(membership.clone()),
            },
            normal(2, put(b"k", b"v1", 0)),
            normal(3, put(b"k", b"v2", 0)),
            normal(4, put(b"k", b"v3", 1)),
            normal(
                5,
                LogCommand {
                    bytes: b"\xffgarbage".to_vec(),
                },
            ),
            normal(6, put(b"", b"v", 0)),
        ])
        .await
        .expect("apply")
    });
    assert_eq!(
        answers,
        vec![
            Applied::Nothing,
            Applied::Written { ver: 1 },
            Applied::Written { ver: 2 },
            Applied::VersionMismatch { current: 2 },
            Applied::Undecodable,
            answers[5].clone(),
        ]
    );
    assert!(
        matches!(answers[5], Applied::Invalid(_)),
        "{:?}",
        answers[5]
    );
    let rec = store.batch().get(b"k", 1_700_000_000_001).expect("get");
    assert_eq!((rec.ver, rec.value), (2, b"v2".to_vec()));

    // Another group's state is its own; this one's is back after a reopen of the store.
    drop(store);
    let store = Arc::new(open_store(dir.path()).expect("reopen"));
    rt.block_on(async {
        let mut other = open_sm(&store, 4, 64..128).expect("open");
        assert_eq!(other.applied_state().await.expect("state").0, None);
        let mut sm = open_sm(&store, 3, 0..64).expect("open");
        let (last, m) = sm.applied_state().await.expect("state");
        assert_eq!(last, Some(log_id(1, 6)));
        assert_eq!(
            (m.log_id(), m.membership()),
            (&Some(log_id(1, 1)), &membership)
        );
        let snap = sm
            .get_current_snapshot()
            .await
            .expect("snapshot")
            .expect("some");
        assert_eq!(snap.meta.last_log_id, Some(log_id(1, 6)));
        assert_eq!(snap.meta.snapshot_id, "g3-1-1-6");
    });
}

#[test]
fn a_batch_entry_applies_its_commands_in_order_each_with_its_own_answer() {
    let dir = TempDir::new("sm-batch");
    let store = Arc::new(open_store(dir.path()).expect("store"));
    let rt = super::rt();
    let batch = LogCommand::batch(&[
        put(b"a", b"1", 0),
        put(b"a", b"2", 1),
        // A failed condition refuses that command alone.
        put(b"a", b"3", 1),
        LogCommand {
            bytes: b"\x01garbage".to_vec(),
        },
        put(b"b", b"1", 0),
    ]);
    assert!(batch.is_batch() && !put(b"a", b"1", 0).is_batch());
    let mut cut = batch.clone();
    cut.bytes.pop();
    let answers = rt.block_on(async {
        let mut sm = open_sm(&store, 2, 0..1024).expect("open");
        sm.apply([
            normal(1, batch),
            normal(2, cut),
            normal(3, put(b"c", b"1", 0)),
        ])
        .await
        .expect("apply")
    });
    assert_eq!(
        answers,
        vec![
            Applied::Batch(vec![
                Applied::Written { ver: 1 },
                Applied::Written { ver: 2 },
                Applied::VersionMismatch { current: 2 },
                Applied::Undecodable,
                Applied::Written { ver: 1 },
            ]),
            // A batch cut short applies nothing of it.
            Applied::Undecodable,
            Applied::Written { ver: 1 },
        ]
    );
    let now = 1_700_000_000_001;
    let rec = store.batch().get(b"a", now).expect("get a");
    assert_eq!((rec.ver, rec.value), (2, b"2".to_vec()));
    assert_eq!(store.batch().get(b"b", now).expect("get b").ver, 1);
}

#[test]
fn batch_framing_refuses_garbage() {
    let one = put(b"k", b"v", 0);
    let batch = LogCommand::batch(&[one.clone(), one.clone()]);
    assert_eq!(
        batch.batch_members().expect("members"),
        vec![&one.bytes[..], &one.bytes[..]]
    );
    assert!(one.batch_members().is_err());
    assert!(LogCommand::batch(&[]).batch_members().is_err());
    for cut in 0..batch.bytes.len() {
        let short = LogCommand {
            bytes: batch.bytes[..cut].to_vec(),
        };
        assert!(short.batch_members().is_err(), "cut at {cut}");
    }
    let mut longer = batch.clone();
    longer.bytes.push(0);
    assert!(longer.batch_members().is_err());
    // A count beyond what the bytes can hold reserves nothing.
    let huge = LogCommand {
        bytes: vec![batch.bytes[0], 0xff, 0xff, 0xff, 0xff],
    };
    assert!(huge.batch_members().is_err());
}

#[test]
fn a_malformed_group_state_is_refused() {
    let dir = TempDir::new("sm-garbage");
    let store = Arc::new(open_store(dir.path()).expect("store"));
    let mut batch = store.batch();
    batch.set_group_state(9, b"\x01garbage").expect("set");
    batch.commit().expect("commit");
    assert!(open_sm(&store, 9, 0..1024).is_err());
}

/// A key whose slot is in `slots`.
fn key_in(slots: std::ops::Range<u32>, tag: u8) -> Vec<u8> {
    (0u32..)
        .map(|i| format!("key-{tag}-{i}").into_bytes())
        .find(|k| slots.contains(&storage::bucket(k)))
        .expect("some key")
}

#[test]
fn a_snapshot_carries_the_groups_slots_to_another_store() {
    let (dir_l, dir_f) = (TempDir::new("snap-l"), TempDir::new("snap-f"));
    let leader = Arc::new(open_store(dir_l.path()).expect("store"));
    let follower = Arc::new(open_store(dir_f.path()).expect("store"));
    let (inside, outside) = (key_in(0..512, 1), key_in(512..1024, 2));
    let now = 1_700_000_000_001;
    super::rt().block_on(async {
        let mut sm_l = open_sm(&leader, 0, 0..512).expect("open");
        let mut sm_f = open_sm(&follower, 0, 0..512).expect("open");
        sm_l.apply([normal(1, put(&inside, b"replicated", 0))])
            .await
            .expect("apply");
        // The follower has a record of another group, and a stale one of this group.
        let mut other = open_sm(&follower, 1, 512..1024).expect("open");
        other
            .apply([normal(1, put(&outside, b"other group", 0))])
            .await
            .expect("apply");
        sm_f.apply([normal(1, put(&key_in(0..512, 3), b"stale", 0))])
            .await
            .expect("apply");

        let snap = sm_l
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        let mut data = sm_f.begin_receiving_snapshot().await.expect("begin");
        *data = *snap.snapshot;
        sm_f.install_snapshot(&snap.meta, data)
            .await
            .expect("install");

        assert_eq!(
            sm_f.applied_state().await.expect("state").0,
            Some(log_id(1, 1))
        );
        let current = sm_f
            .get_current_snapshot()
            .await
            .expect("current")
            .expect("some");
        assert_eq!(current.meta, snap.meta);
        // A state machine opened afresh on the follower's store resumes from the snapshot.
        let mut again = open_sm(&follower, 0, 0..512).expect("open");
        assert_eq!(
            again.applied_state().await.expect("state").0,
            Some(log_id(1, 1))
        );
    });
    let mut batch = follower.batch();
    assert_eq!(
        batch.get(&inside, now).expect("replicated").value,
        b"replicated"
    );
    assert_eq!(
        batch.get(&outside, now).expect("kept").value,
        b"other group"
    );
    assert!(
        batch.get(&key_in(0..512, 3), now).is_err(),
        "the stale record is gone"
    );

    // A garbage snapshot is refused and changes nothing.
    super::rt().block_on(async {
        let mut sm_f = open_sm(&follower, 0, 0..512).expect("open");
        let snap = sm_f
            .get_current_snapshot()
            .await
            .expect("current")
            .expect("some");
        let mut meta = snap.meta.clone();
        meta.last_log_id = Some(log_id(2, 9));
        let garbage = Box::new(std::io::Cursor::new(b"not a snapshot".to_vec()));
        assert!(sm_f.install_snapshot(&meta, garbage).await.is_err());
        assert_eq!(
            sm_f.applied_state().await.expect("state").0,
            Some(log_id(1, 1))
        );
    });
    assert_eq!(
        follower
            .batch()
            .get(&inside, now)
            .expect("still there")
            .value,
        b"replicated"
    );
}

#[test]
fn the_applies_of_several_groups_pending_together_take_one_commit() {
    let dir = TempDir::new("applier");
    let store = Arc::new(open_store(dir.path()).expect("store"));
    let ranges = [0..256, 256..512, 512..1024];
    let keys: Vec<Vec<u8>> = (0u8..)
        .zip(&ranges)
        .map(|(t, r)| key_in(r.clone(), t))
        .collect();
    let applies = (0u32..)
        .zip(&keys)
        .map(|(g, key)| {
            let entries = vec![
                normal(1, put(key, b"one", 0)),
                normal(2, put(key, b"two", 1)),
            ];
            (g, Default::default(), entries)
        })
        .collect();
    let (results, commits) = crate::raft::applier::apply_together(&store, applies);
    assert_eq!(commits, 1, "one commit for the three groups");
    for result in results {
        let (answers, state) = result.expect("applied");
        assert_eq!(
            answers,
            vec![Applied::Written { ver: 1 }, Applied::Written { ver: 2 }]
        );
        assert_eq!(state.0, Some(log_id(1, 2)));
    }
    // Each group's records and applied state are its own, as if applied alone.
    let now = 1_700_000_000_001;
    for (g, key) in (0u32..).zip(&keys) {
        let rec = store.batch().get(key, now).expect("get");
        assert_eq!((rec.ver, rec.value), (2, b"two".to_vec()));
        let ranges = ranges[g as usize].clone();
        let mut sm = open_sm(&store, g, ranges).expect("open");
        let state = super::rt().block_on(sm.applied_state()).expect("state");
        assert_eq!(state.0, Some(log_id(1, 2)));
    }

    // Through the thread: one applier serves every group's state machine, and counts.
    let applier = Applier::start(store.clone()).expect("applier");
    let fresh = key_in(0..256, 9);
    let answers = super::rt().block_on(async {
        let mut sm = StateMachine::open(&applier, 0, 0..256).expect("open");
        sm.apply([normal(3, put(&fresh, b"three", 0))]).await
    });
    assert_eq!(answers.expect("apply"), vec![Applied::Written { ver: 1 }]);
    assert_eq!(applier.counts(), (1, 1));
}
