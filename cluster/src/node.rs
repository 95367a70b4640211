//! A node of the cluster in one process: its durable log (`<data_dir>/raft`), one openraft
//! `Raft` per group it is a member of (over that log and the node's store), the peer server
//! on its peer address and the client towards the other nodes. Bootstrap is deterministic:
//! each group's initializer (the placement's) initializes the group with its members once,
//! whatever the start order; a node whose log already holds the group is refused by openraft
//! ("not allowed") and goes on. The API the rest of the process uses: [`Node::write`]
//! (forwarded to the leader when this node is not it),
//! [`Node::linearizable_read_barrier`], [`Node::status`].

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, InitializeError, RaftError};
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use storage::{Command, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use crate::net::WriteError;
use crate::net::{decode_write_result, propose, GroupNetwork, Groups, PeerClient, Server};
use crate::peer::auth::PeerKey;
use crate::peer::frame::Kind;
use crate::placement::Placement;
use crate::raft::{Applied, LogCommand, LogEngine, NodeId, StateMachine, TypeConfig};

/// Logs after which a group takes a snapshot (its log is purged up to it).
const SNAPSHOT_EVERY: u64 = 10_000;

/// What a group's Raft reports of itself (openraft's metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    pub group: u32,
    pub state: ServerState,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    /// What this node knows is committed: the later of what its log last recorded (openraft
    /// saves it as it learns it, but not on installing a snapshot) and what it applied.
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
}

/// A running node.
pub struct Node {
    this: NodeId,
    groups: Arc<Groups>,
    client: Arc<PeerClient>,
    engine: LogEngine,
    /// How long a forwarded write may take (the conf's `timeout`).
    timeout: Duration,
    peer_addr: SocketAddr,
    /// Dropped (or sent `true`) to stop the peer server and its connections.
    stop: watch::Sender<bool>,
}

/// openraft's config for a cluster whose election timeout is `election`.
fn raft_config(election: Duration) -> io::Result<Arc<Config>> {
    let ms = (election.as_millis() as u64).max(10);
    let config = Config {
        cluster_name: "huststore".into(),
        heartbeat_interval: (ms / 4).max(1),
        election_timeout_min: ms,
        election_timeout_max: ms * 2,
        install_snapshot_timeout: ms * 4,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
        // Purge right after a snapshot: a member too far behind gets the snapshot.
        max_in_snapshot_log_to_keep: 0,
        ..Default::default()
    };
    let config = config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    Ok(Arc::new(config))
}

impl Node {
    /// Starts this node of `conf`'s cluster over `store` (its `<data_dir>/db`), serving peers
    /// on `listener` (bound to the conf's peer address by [`Node::start`]).
    pub async fn start_on(
        conf: &conf::Conf,
        store: Arc<Store>,
        listener: TcpListener,
    ) -> io::Result<Node> {
        let cluster = conf.cluster.as_ref().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the conf has no cluster block")
        })?;
        let placement = Placement::from_conf(cluster);
        let engine = LogEngine::open(&conf.data_dir)?;
        let config = raft_config(cluster.election_timeout)?;
        let key = Arc::new(PeerKey::new(cluster, crate::net::unix_ms()));
        let client = Arc::new(PeerClient::new(key.clone(), cluster));
        let groups = Arc::new(Groups::default());
        let this = cluster.this as NodeId;
        let members_of = |g: u32| -> BTreeMap<NodeId, BasicNode> {
            let nodes = placement.members(g).iter();
            let node = |&i: &usize| (i as NodeId, BasicNode::new(&cluster.nodes[i].peer_text));
            nodes.map(node).collect()
        };
        for g in placement.groups_of_node(cluster.this) {
            let sm = StateMachine::open(store.clone(), g, placement.slots_of_group(g))
                .map_err(io::Error::other)?;
            let network = GroupNetwork::new(client.clone(), g);
            let raft = Raft::new(this, config.clone(), network, engine.group(g), sm)
                .await
                .map_err(io::Error::other)?;
            let m = raft.metrics().borrow().clone();
            if m.last_log_index.is_none() && m.last_applied.is_none() {
                groups.started_empty(g);
            }
            groups.insert(g, raft.clone());
            if placement.initializer(g) == Some(cluster.this) {
                tokio::spawn(initialize(raft, g, members_of(g)));
            }
        }
        let (stop, stopped) = watch::channel(false);
        let peer_addr = listener.local_addr()?;
        let server = Arc::new(Server::new(key, groups.clone(), placement.groups()));
        tokio::spawn(server.run(listener, stopped));
        Ok(Node {
            this,
            groups,
            client,
            engine,
            timeout: cluster.timeout,
            peer_addr,
            stop,
        })
    }

    /// [`Node::start_on`] a listener bound to the conf's peer address.
    pub async fn start(conf: &conf::Conf, store: Arc<Store>) -> io::Result<Node> {
        let cluster = conf.cluster.as_ref().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the conf has no cluster block")
        })?;
        let listener = TcpListener::bind(cluster.this_node().peer).await?;
        Node::start_on(conf, store, listener).await
    }

    /// This node's index in the conf.
    pub fn id(&self) -> NodeId {
        self.this
    }

    /// Where the peer server listens.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The Raft of `group`, if this node is a member.
    pub fn raft(&self, group: u32) -> Option<Raft<TypeConfig>> {
        self.groups.get(group)
    }

    /// Proposes `cmd` to `group` and waits until it is committed and applied (here, or on
    /// the leader it was forwarded to); its answer. A follower that knows the leader forwards
    /// the write to it once; [`WriteError::NotLeader`] when no leader is known (the caller
    /// retries later) or the one asked no longer leads.
    pub async fn write(&self, group: u32, cmd: &Command<'_>) -> Result<Applied, WriteError> {
        let raft = self.groups.get(group).ok_or(WriteError::NoGroup(group))?;
        let cmd = LogCommand::new(cmd);
        match propose(&raft, cmd.clone()).await {
            Err(WriteError::NotLeader { leader: Some(l) }) if l != self.this => {
                self.forward(l, group, &cmd).await
            }
            r => r,
        }
    }

    /// Sends a write to `leader`, which proposes it there.
    async fn forward(
        &self,
        leader: NodeId,
        group: u32,
        cmd: &LogCommand,
    ) -> Result<Applied, WriteError> {
        let call = self
            .client
            .call(leader, Kind::ForwardWrite, group, &cmd.bytes, self.timeout);
        let body = call
            .await
            .map_err(|e| WriteError::Fatal(format!("forwarding to node {leader}: {e}")))?;
        decode_write_result(&body).map_err(|e| WriteError::Fatal(format!("node {leader}: {e}")))?
    }

    /// Waits until this node, the group's leader, has confirmed its leadership with a majority
    /// and applied everything committed before the call: a read of the store after it is
    /// linearizable.
    pub async fn linearizable_read_barrier(&self, group: u32) -> Result<(), WriteError> {
        let raft = self.groups.get(group).ok_or(WriteError::NoGroup(group))?;
        match raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(WriteError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
                Err(WriteError::NoQuorum)
            }
            Err(e) => Err(WriteError::Fatal(e.to_string())),
        }
    }

    /// Every group's status, in group order.
    pub async fn status(&self) -> Vec<GroupStatus> {
        let mut all = Vec::new();
        for g in self.groups.ids() {
            let Some(raft) = self.groups.get(g) else {
                continue;
            };
            let m = raft.metrics().borrow().clone();
            let committed = self.engine.group(g).read_committed().await;
            all.push(GroupStatus {
                group: g,
                state: m.state,
                leader: m.current_leader,
                term: m.current_term,
                last_log_index: m.last_log_index,
                committed_index: committed
                    .ok()
                    .flatten()
                    .max(m.last_applied)
                    .map(|l| l.index),
                applied_index: m.last_applied.map(|l| l.index),
                snapshot_index: m.snapshot.map(|l| l.index),
            });
        }
        all
    }

    /// Stops the peer server and every group's Raft. openraft's tasks let go of the log and
    /// the store shortly after (a restart on the same folder waits for the log's lock).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for (g, raft) in self.groups.take_all() {
            if let Err(e) = raft.shutdown().await {
                log::warn!("group {g}: shutdown: {e}");
            }
        }
    }
}

/// Initializes `group` with `members` unless its log already holds it; retried while it fails
/// for another reason (the Raft is not ready), until the Raft stops.
async fn initialize(raft: Raft<TypeConfig>, group: u32, members: BTreeMap<NodeId, BasicNode>) {
    loop {
        match raft.initialize(members.clone()).await {
            Ok(()) => {
                log::info!("group {group}: initialized with {} members", members.len());
                return;
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => return,
            Err(RaftError::Fatal(_)) => return,
            Err(e) => {
                log::warn!("group {group}: initialize: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
