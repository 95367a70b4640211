//! What a `cluster { }` block says (`cluster.md` §1), as plain data: the nodes, this node, the
//! placement numbers, the shared secret and the timeouts. The parser fills and checks it
//! (`parse/cluster.rs`); nothing here reads files or knows the conf syntax.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The default of `groups`: the spec gives none, and 16 groups over 1024 slots spread
/// leadership over up to 16 nodes while keeping one log per group cheap.
pub const DEFAULT_GROUPS: usize = 16;

/// The default of `replicas` when the cluster has at least this many nodes (else every node
/// holds every group): 3 survives the loss of one.
pub const DEFAULT_REPLICAS: usize = 3;

/// The fewest bytes a secret may have once trailing white space is trimmed.
pub const MIN_SECRET_LEN: usize = 16;

/// A parsed `cluster` block; every check of §1 has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConf {
    /// The line of `cluster {` in the conf, for messages about the block as a whole.
    pub line: usize,
    /// `name`: a node refuses peers of another cluster name.
    pub name: String,
    /// `node_id`: this node's name, one of `nodes`.
    pub node_id: String,
    /// The index of this node (`node_id`) in `nodes`.
    pub this: usize,
    /// The `node` lines, in conf order.
    pub nodes: Vec<ClusterNode>,
    /// `groups`: how many consensus groups the 1024 slots are spread over, 1..=1024.
    pub groups: usize,
    /// `replicas`: members of each group, 1..=nodes.
    pub replicas: usize,
    /// `secret`: the file the secret was read from, absolute.
    pub secret_path: PathBuf,
    /// The secret itself, read when the conf is parsed (see [`Secret`]).
    pub secret: Secret,
    /// `timeout`: how long a request may wait for its group (election, commit).
    pub timeout: Duration,
    /// `election_timeout`: heartbeats go every quarter of it.
    pub election_timeout: Duration,
    /// `reads`.
    pub reads: Reads,
}

impl ClusterConf {
    /// This node's `node` line.
    pub fn this_node(&self) -> &ClusterNode {
        &self.nodes[self.this]
    }
}

/// One `node NAME CLIENT_ADDR PEER_ADDR` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    pub name: String,
    /// Where clients reach the node (a `listen` address of that node).
    pub client: SocketAddr,
    /// `client` exactly as written in the conf.
    pub client_text: String,
    /// Where nodes talk to each other; never for clients.
    pub peer: SocketAddr,
    /// `peer` exactly as written in the conf.
    pub peer_text: String,
}

/// `reads`: how a read of a replicated key is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Observes every write acknowledged before it was sent (the default).
    Linearizable,
    /// From the receiving node's own replica; may lag behind acknowledged writes.
    Local,
}

/// The cluster's shared secret, trailing white space trimmed. Read when the conf is parsed,
/// not later: the master reads it while it may still be root (the file is not world-readable,
/// and workers run as `user`), `-t` checks exactly what a start would use, and a reload sees
/// the file as it is at the HUP. `Debug` never shows the bytes, so a logged conf leaks nothing.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// `bytes` without its trailing white space (a newline an editor adds is not part of it).
    pub fn trimmed(mut bytes: Vec<u8>) -> Secret {
        while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
            bytes.pop();
        }
        Secret(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}
