//! A node of the cluster in one process: its durable log (`<data_dir>/raft`), one openraft
//! `Raft` per group it is a member of (over that log and the node's store), the peer server
//! on its peer address and the client towards the other nodes. Bootstrap is deterministic:
//! each group's initializer (the placement's) initializes the group with its members once,
//! whatever the start order; a node whose log already holds the group is refused by openraft
//! ("not allowed") and goes on. The API the rest of the process uses: [`Node::write`]
//! (forwarded to the leader when this node is not it, or to the group's members when this
//! node is not one), [`Node::linearizable_read_barrier`] (a read index, the leader's own or,
//! on a follower, asked of the leader, shared by every read of the group waiting for one
//! (`net::read_batch`); then this node's applied state catching up with it), [`Node::status`],
//! [`Node::report`] (`report`), [`Node::count_refusal`]. Each group's leader purges its
//! expired records through its log (`expiry`).
//!
//! Which failures are certainly not applied ([`WriteError::certainly_not_applied`], a `503`):
//! no leader known, no majority answering the leader before it appends, the node forwarded to
//! unreachable or refusing before reading the command, `NotLeader` from it. Anything after
//! the command may have reached a leader's log is [`WriteError::Fatal`] (a `504`).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use storage::{Command, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

pub use crate::metrics::Refusal;
use crate::metrics::{watch_group, Counters};
pub use crate::net::WriteError;
use crate::net::{decode_read_index, decode_write_result, unix_ms};
use crate::net::{Fetch, GroupNetwork, Groups, IndexResult, PeerClient, ReadBatcher, Server};
use crate::peer::auth::PeerKey;
use crate::peer::frame::Kind;
use crate::placement::Placement;
use crate::raft::{Applied, Applier, LogCommand, LogEngine, NodeId, StateMachine, TypeConfig};

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
    /// The voters of the group's membership, in node order.
    pub members: Vec<NodeId>,
    /// The index of the log entry of the membership in force (the membership epoch).
    pub membership_index: Option<u64>,
    /// On the leader: each other member and the last index it is known to hold.
    pub followers: Vec<(NodeId, Option<u64>)>,
}

/// The names and addresses of the conf's nodes, for the reports.
pub(crate) struct Roster {
    /// The cluster's `name`.
    pub cluster: String,
    /// Each node's name, client address and peer address as written in the conf.
    pub nodes: Vec<(String, String, String)>,
}

/// A running node.
pub struct Node {
    this: NodeId,
    groups: Arc<Groups>,
    client: Arc<PeerClient>,
    engine: LogEngine,
    /// Applies the committed entries of every group of the node.
    applier: Applier,
    /// How long a forwarded write may take (the conf's `timeout`).
    timeout: Duration,
    /// The conf's `election_timeout`.
    election: Duration,
    peer_addr: SocketAddr,
    pub(crate) placement: Placement,
    pub(crate) counters: Arc<Counters>,
    pub(crate) store: Arc<Store>,
    pub(crate) roster: Roster,
    /// The node that last took a write of each group this node does not replicate: asked
    /// first next time.
    hints: Mutex<BTreeMap<u32, NodeId>>,
    /// The read indexes of this node's linearizable reads, one request per group at a time.
    reads: Arc<ReadBatcher>,
    /// Dropped (or sent `true`) to stop the peer server and its connections.
    stop: watch::Sender<bool>,
}

/// openraft's config for a cluster whose election timeout is `election`.
fn raft_config(election: Duration) -> io::Result<Arc<Config>> {
    let ms = (election.as_millis() as u64).max(10);
    let config = Config {
        cluster_name: "huststore".into(),
        heartbeat_interval: (ms / 4).max(1),
        // A narrow range: a follower waits out the leader's lease (`election_timeout_max`)
        // and then a random timeout in [min, max) before it stands, so max bounds failover
        // (measured with 2x: 3.4-3.9 s at 1 s; the target is 3x election_timeout).
        election_timeout_min: ms,
        election_timeout_max: ms + (ms / 4).max(1),
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
        let counters = Arc::new(Counters::default());
        let client = Arc::new(PeerClient::new(key.clone(), cluster, counters.clone()));
        let groups = Arc::new(Groups::default());
        let this = cluster.this as NodeId;
        let members_of = |g: u32| -> BTreeMap<NodeId, BasicNode> {
            let nodes = placement.members(g).iter();
            let node = |&i: &usize| (i as NodeId, BasicNode::new(&cluster.nodes[i].peer_text));
            nodes.map(node).collect()
        };
        let applier = Applier::start(store.clone())?;
        for g in placement.groups_of_node(cluster.this) {
            let sm = StateMachine::open(&applier, g, placement.slots_of_group(g))
                .map_err(io::Error::other)?;
            let network = GroupNetwork::new(client.clone(), g);
            let raft = Raft::new(this, config.clone(), network, engine.group(g), sm)
                .await
                .map_err(io::Error::other)?;
            let m = raft.metrics().borrow().clone();
            if m.last_log_index.is_none() && m.last_applied.is_none() {
                groups.started_empty(g);
            }
            groups.insert(g, raft.clone(), counters.clone());
            tokio::spawn(watch_group(raft.clone(), counters.clone()));
            if placement.initializer(g) == Some(cluster.this) {
                tokio::spawn(initialize(raft, g, members_of(g)));
            }
        }
        let (stop, stopped) = watch::channel(false);
        let peer_addr = listener.local_addr()?;
        let leader_checks = ReadBatcher::leader_checks(groups.clone(), counters.clone());
        let server = Server::new(
            key,
            groups.clone(),
            placement.groups(),
            counters.clone(),
            leader_checks.clone(),
        );
        tokio::spawn(Arc::new(server).run(listener, stopped.clone()));
        let roster = Roster {
            cluster: cluster.name.clone(),
            nodes: cluster
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.client_text.clone(), n.peer_text.clone()))
                .collect(),
        };
        let indexes = Arc::new(ReadIndexes {
            groups: groups.clone(),
            client: client.clone(),
            counters: counters.clone(),
            leader_checks,
            this,
            timeout: cluster.timeout,
            leader_wait: leader_wait(cluster.election_timeout, cluster.timeout),
        });
        let fetch: Fetch = Arc::new(move |group| Box::pin(indexes.clone().get(group)));
        let node = Node {
            reads: ReadBatcher::new(fetch),
            this,
            groups,
            client,
            engine,
            applier,
            timeout: cluster.timeout,
            election: cluster.election_timeout,
            peer_addr,
            stop,
            placement,
            counters,
            store,
            roster,
            hints: Mutex::new(BTreeMap::new()),
        };
        tokio::spawn(node.expiry_task(stopped));
        Ok(node)
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

    /// The groups' Rafts, for a task of the node's own (`expiry`).
    pub(crate) fn groups_handle(&self) -> Arc<Groups> {
        self.groups.clone()
    }

    /// The Raft of `group`, if this node is a member.
    pub fn raft(&self, group: u32) -> Option<Raft<TypeConfig>> {
        self.groups.get(group)
    }

    /// Proposes `cmd` to `group` and waits until it is committed and applied (here, or on
    /// the leader it was forwarded to); its answer. A follower forwards the write to the
    /// leader it knows, a node that is not a member to the group's members (its preferred
    /// leader first); a `NotLeader` answer naming another leader is followed once. Errors say
    /// whether the write certainly did not happen (see the module's doc).
    pub async fn write(&self, group: u32, cmd: &Command<'_>) -> Result<Applied, WriteError> {
        if group >= self.placement.groups() {
            return Err(WriteError::NoGroup(group));
        }
        let cmd = LogCommand::new(cmd);
        let deadline = Instant::now() + self.timeout;
        let Some(proposer) = self.groups.proposer(group) else {
            return self.write_elsewhere(group, &cmd, deadline).await;
        };
        let raft = proposer.raft();
        await_leader(raft, leader_wait(self.election, self.timeout)).await;
        let leading = raft.metrics().borrow().state == ServerState::Leader;
        if leading {
            self.check_majority(raft)?;
        }
        match proposer.propose(cmd.clone()).await {
            Err(WriteError::NotLeader { leader: Some(l) }) if l != self.this => {
                self.forward(l, group, &cmd, deadline).await
            }
            r => r,
        }
    }

    /// A leader refuses a write before appending it when fewer than a majority of its voters
    /// (itself included) answered a call within two election timeouts (at least 1 s): the
    /// write could not commit, and refused now it is certainly not applied (`503`, not a `504`
    /// at the timeout).
    /// Heartbeats go every quarter of an election timeout, so a healthy group always passes.
    fn check_majority(&self, raft: &Raft<TypeConfig>) -> Result<(), WriteError> {
        let voters: Vec<NodeId> = {
            let m = raft.metrics().borrow().membership_config.clone();
            m.membership().voter_ids().collect()
        };
        // At least a second: a loaded machine may delay heartbeats past short timeouts.
        let window = (2 * self.election.as_millis() as u64).max(1000);
        let now = unix_ms();
        let fresh = |&&v: &&NodeId| {
            v == self.this || now.saturating_sub(self.client.contact(v).last_answer_ms) <= window
        };
        let answering = voters.iter().filter(fresh).count();
        if answering * 2 > voters.len() {
            Ok(())
        } else {
            Err(WriteError::NoQuorum)
        }
    }

    /// A write to a group this node does not replicate: each member in turn (the one that
    /// last took such a write, else the preferred leader, first) until one takes it or the
    /// outcome is unknown.
    async fn write_elsewhere(
        &self,
        group: u32,
        cmd: &LogCommand,
        deadline: Instant,
    ) -> Result<Applied, WriteError> {
        let hint = self
            .hints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&group)
            .copied();
        let preferred = self.placement.preferred_leader(group).map(|n| n as NodeId);
        let mut order: Vec<NodeId> = hint.into_iter().chain(preferred).collect();
        for &m in self.placement.members(group) {
            order.push(m as NodeId);
        }
        let mut tried = Vec::new();
        let mut last = WriteError::NotLeader { leader: None };
        for to in order {
            if tried.contains(&to) {
                continue;
            }
            tried.push(to);
            match self.forward(to, group, cmd, deadline).await {
                Err(e) if e.certainly_not_applied() => last = e,
                r => return r,
            }
        }
        Err(last)
    }

    /// Sends a write to `to`, which proposes it there; a `NotLeader` answer naming another
    /// node is followed once.
    async fn forward(
        &self,
        to: NodeId,
        group: u32,
        cmd: &LogCommand,
        deadline: Instant,
    ) -> Result<Applied, WriteError> {
        match self.forward_once(to, group, cmd, deadline).await {
            Err(WriteError::NotLeader { leader: Some(l) }) if l != to && l != self.this => {
                self.forward_once(l, group, cmd, deadline).await
            }
            r => r,
        }
    }

    async fn forward_once(
        &self,
        to: NodeId,
        group: u32,
        cmd: &LogCommand,
        deadline: Instant,
    ) -> Result<Applied, WriteError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WriteError::Unavailable(format!(
                "no time left to forward to node {to}"
            )));
        }
        self.counters.forwarded.bump();
        let call = self
            .client
            .call(to, Kind::ForwardWrite, group, &cmd.bytes, left);
        let r = match call.await {
            Ok(body) => decode_write_result(&body).unwrap_or_else(|e| {
                Err(WriteError::Fatal(format!(
                    "node {to}: undecodable answer: {e}"
                )))
            }),
            Err(e) if e.not_delivered() => Err(WriteError::Unavailable(format!(
                "forwarding to node {to}: {e}"
            ))),
            Err(e) => Err(WriteError::Fatal(format!("forwarding to node {to}: {e}"))),
        };
        if r.is_ok() && !self.placement.is_member(group, self.this as usize) {
            let mut hints = self.hints.lock().unwrap_or_else(|e| e.into_inner());
            hints.insert(group, to);
        }
        r
    }

    /// Waits until a read of this node's store observes every write of `group` acknowledged
    /// before the call: once this node's applied state reached a read index obtained after
    /// the call (on the leader, after it confirmed its leadership with a majority; on a
    /// follower, the leader's answer to `ReadIndex`, after the same confirmation there). The
    /// reads of a group waiting at once share one such request. Every failure is retryable (a
    /// read changed nothing); a follower that cannot reach the leader gets an error, never a
    /// stale success.
    pub async fn linearizable_read_barrier(&self, group: u32) -> Result<(), WriteError> {
        let raft = self.groups.get(group).ok_or(WriteError::NoGroup(group))?;
        let deadline = Instant::now() + self.timeout;
        self.counters.read_barriers.bump();
        let Some(index) = self.reads.read_index(group).await? else {
            return Ok(());
        };
        let applied = raft.metrics().borrow().last_applied.map(|l| l.index);
        if applied >= Some(index) {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        raft.wait(Some(left))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map(|_| ())
            .map_err(|e| {
                WriteError::Unavailable(format!(
                    "read index {index} of group {group} not applied here: {e}"
                ))
            })
    }

    /// Counts a client request the helper refused (`/metrics`' 503s and 504s).
    pub fn count_refusal(&self, why: Refusal) {
        match why {
            Refusal::Unavailable => self.counters.refused_503.bump(),
            Refusal::Unknown => self.counters.unknown_504.bump(),
        }
    }

    /// What this node last heard from node `n`.
    pub fn contact(&self, n: NodeId) -> crate::net::Contact {
        self.client.contact(n)
    }

    /// The node's counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The syncs of the node's log and the entries written to it so far.
    pub fn log_counts(&self) -> (u64, u64) {
        (self.engine.syncs(), self.engine.entries())
    }

    /// The applies of committed entries so far (every group) and the store commits that made
    /// them.
    pub fn apply_counts(&self) -> (u64, u64) {
        self.applier.counts()
    }

    /// The node's log file size and the bytes of its live records.
    pub fn log_sizes(&self) -> (u64, u64) {
        self.engine.sizes()
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
                members: m.membership_config.membership().voter_ids().collect(),
                membership_index: m.membership_config.log_id().as_ref().map(|l| l.index),
                followers: m
                    .replication
                    .iter()
                    .flatten()
                    .filter(|(n, _)| **n != self.this)
                    .map(|(n, l)| (*n, l.as_ref().map(|l| l.index)))
                    .collect(),
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

/// What a read index request of this node needs (the `ReadBatcher`'s fetch).
struct ReadIndexes {
    groups: Arc<Groups>,
    client: Arc<PeerClient>,
    counters: Arc<Counters>,
    /// This node's leadership checks, shared with the peer server's `ReadIndex` answers.
    leader_checks: Arc<ReadBatcher>,
    this: NodeId,
    timeout: Duration,
    /// How long a read waits for its group to know a leader (`leader_wait`).
    leader_wait: Duration,
}

/// How long a request waits for a group that knows no leader to elect or hear from one
/// before it is refused: two election timeouts (a follower that has not yet heard the new
/// leader's first heartbeat, an election under way), never past the request's `timeout`.
fn leader_wait(election: Duration, timeout: Duration) -> Duration {
    (2 * election).min(timeout)
}

/// Returns once `raft` knows a leader (itself or another node), or after `within`; the
/// caller then reads the state it finds. A follower right after an election, before the
/// leader's first append reached it, would otherwise refuse reads and writes it can serve.
async fn await_leader(raft: &Raft<TypeConfig>, within: Duration) {
    let knows = |m: &openraft::RaftMetrics<NodeId, BasicNode>| {
        m.state == ServerState::Leader || m.current_leader.is_some()
    };
    if knows(&raft.metrics().borrow()) {
        return;
    }
    let _ = raft
        .wait(Some(within))
        .metrics(knows, "a known leader")
        .await;
}

impl ReadIndexes {
    /// One read index of `group`: this node's own when it leads the group (a leadership
    /// check), else the leader's answer to a `ReadIndex` call.
    async fn get(self: Arc<Self>, group: u32) -> IndexResult {
        let raft = self.groups.get(group).ok_or(WriteError::NoGroup(group))?;
        await_leader(&raft, self.leader_wait).await;
        let known = {
            let m = raft.metrics();
            let m = m.borrow();
            match m.state {
                ServerState::Leader => None,
                _ => m.current_leader.filter(|&l| l != self.this),
            }
        };
        let leader = match known {
            Some(l) => l,
            None => match self.leader_checks.read_index(group).await {
                Err(WriteError::NotLeader { leader: Some(l) }) if l != self.this => l,
                r => return r,
            },
        };
        self.counters.read_index_asked.bump();
        let unavailable = |e: &dyn std::fmt::Display| {
            WriteError::Unavailable(format!(
                "read index of group {group} from node {leader}: {e}"
            ))
        };
        let body = self
            .client
            .call(leader, Kind::ReadIndex, group, &[], self.timeout)
            .await
            .map_err(|e| unavailable(&e))?;
        decode_read_index(&body).map_err(|e| unavailable(&e))?
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
