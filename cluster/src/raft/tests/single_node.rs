//! A real openraft `Raft` of one node over our log and state machine: it elects itself,
//! commits and applies writes whose answers come back as `Applied`, and after a restart
//! (same data folder) resumes where it was, log, vote and store alike. Beyond the storage
//! suite, this checks that openraft drives our traits as a group will.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, Config, Raft, ServerState};

use super::suite::{open_sm, open_store, put};
use super::TempDir;
use crate::raft::{Applied, LogEngine, TypeConfig};

/// The network of a group of one: there is no one to call.
struct NoPeers;

fn unreachable<E: std::error::Error>() -> RPCError<u64, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&io::Error::other(
        "a group of one has no peers",
    )))
}

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;

    async fn new_client(&mut self, _target: u64, _node: &BasicNode) -> NoPeers {
        NoPeers
    }
}

impl RaftNetwork<TypeConfig> for NoPeers {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(unreachable())
    }
}

/// Node 0's Raft of group 2 over `engine` and `store` (initialized first when `first`),
/// once it leads; with its metrics then.
async fn lead_group_of_one(
    engine: &LogEngine,
    store: &Arc<storage::Store>,
    first: bool,
) -> (Raft<TypeConfig>, openraft::RaftMetrics<u64, BasicNode>) {
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        ..Default::default()
    };
    let config = Arc::new(config.validate().expect("config"));
    let sm = open_sm(store, 2, 0..1024).expect("state machine");
    let raft = Raft::<TypeConfig>::new(0, config, NoPeers, engine.group(2), sm)
        .await
        .expect("raft");
    if first {
        let node = BasicNode {
            addr: "127.0.0.1:9082".into(),
        };
        raft.initialize(BTreeMap::from([(0, node)]))
            .await
            .expect("initialize");
    }
    let metrics = raft
        .wait(Some(Duration::from_secs(10)))
        .state(ServerState::Leader, "leads its group of one")
        .await
        .expect("leader");
    (raft, metrics)
}

/// Starts node 0 of group 2 on the data folder, waits until it leads, writes `val` to `k`
/// with `ver`, and returns the answer and the term it led in.
async fn start_and_write(dir: &TempDir, first: bool, ver: u32) -> (Applied, u64, storage::Store) {
    // The previous run's log handles go with openraft's tasks, shortly after its shutdown.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let engine = loop {
        match LogEngine::open(dir.path()) {
            Err(e) if std::time::Instant::now() < deadline => {
                assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            r => break r.expect("log"),
        }
    };
    let store = Arc::new(open_store(dir.path()).expect("store"));
    let (raft, metrics) = lead_group_of_one(&engine, &store, first).await;
    let answer = raft
        .client_write(put(b"k", b"v", ver))
        .await
        .expect("write");
    raft.shutdown().await.expect("shutdown");
    drop(raft);
    // openraft's state machine task ends (and drops our state machine) after the core.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&store) > 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let store = Arc::into_inner(store).expect("openraft let go of the store");
    (answer.data, metrics.current_term, store)
}

/// The runtime of these tests: two threads, as the helper's, so openraft's tasks run
/// beside the test's.
fn two_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_group_of_one_commits_applies_and_resumes_after_a_restart() {
    let dir = TempDir::new("single-node");
    let rt = two_thread_runtime();
    let now = 1_700_000_000_001;
    let (answer, term, store) = rt.block_on(start_and_write(&dir, true, 0));
    assert_eq!(answer, Applied::Written { ver: 1 });
    assert_eq!(store.batch().get(b"k", now).expect("get").ver, 1);
    drop(store);

    // Restarted: not initialized again, the same vote's term or later, the version goes on.
    let (answer, term2, store) = rt.block_on(start_and_write(&dir, false, 1));
    assert_eq!(answer, Applied::Written { ver: 2 });
    assert!(term2 >= term);
    drop(store);
    let (answer, _, _) = rt.block_on(start_and_write(&dir, false, 1));
    assert_eq!(answer, Applied::VersionMismatch { current: 2 });
}

/// Writes proposed through a group's `Proposer` while its entries are in flight share
/// entries, and each gets its own answer: 64 overwrites of one key, all at once, answer
/// the versions 1 to 64, each once, in fewer entries than writes.
#[test]
fn concurrent_writes_share_entries_and_each_gets_its_own_answer() {
    let dir = TempDir::new("single-node-batch");
    let rt = two_thread_runtime();
    let engine = LogEngine::open(dir.path()).expect("log");
    let store = Arc::new(open_store(dir.path()).expect("store"));
    let counters = Arc::new(crate::metrics::Counters::default());
    let answers = rt.block_on(async {
        let (raft, _) = lead_group_of_one(&engine, &store, true).await;
        let proposer = crate::net::Proposer::new(raft.clone(), counters.clone());
        let mut writes = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let proposer = proposer.clone();
            writes.spawn(async move { proposer.propose(put(b"k", b"v", 0)).await });
        }
        let mut answers = Vec::new();
        while let Some(answer) = writes.join_next().await {
            answers.push(answer.expect("a write's task"));
        }
        raft.shutdown().await.expect("shutdown");
        answers
    });
    let mut versions: Vec<u32> = answers
        .into_iter()
        .map(|a| match a {
            Ok(Applied::Written { ver }) => ver,
            other => panic!("a write answered {other:?}"),
        })
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=64).collect::<Vec<u32>>());
    let (writes, entries) = (counters.proposals.get(), counters.proposal_entries.get());
    assert_eq!(writes, 64);
    assert!(entries < 32, "64 writes took {entries} entries");
    let now = 1_700_000_000_001;
    assert_eq!(store.batch().get(b"k", now).expect("get").ver, 64);
}
