//! The peer client: openraft's network traits over `POST /raft`. One [`PeerClient`] per node
//! holds a pool of idle keep-alive connections to each other node, shared by every group's
//! [`GroupNetwork`] (a group's replication to a node is one more user of the same pool, not a
//! connection of its own). A request takes an idle connection or opens one; a reused
//! connection that fails (the server closed it while idle) is retried once on a new one,
//! signed afresh (a new nonce). A node that cannot be reached, or that refuses us (`401`, a
//! group it does not serve yet), is `Unreachable` to openraft, which backs off; the whole
//! exchange is bounded by the `RPCOption`'s hard timeout.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conf::ClusterConf;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError};
use openraft::error::{Timeout, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, RPCTypes};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::http::{read_response, request_bytes};
use super::{unix_ms, MAX_BODY, RAFT_PATH};
use crate::peer::auth::PeerKey;
use crate::peer::frame::{Frame, Kind};
use crate::raft::rpc_codec::{self as rpc, CodecError};
use crate::raft::{NodeId, TypeConfig};

/// Idle connections kept per node; more concurrent requests open more, closed after use.
const MAX_IDLE: usize = 8;

/// Why a call got no answer from the peer's Raft.
#[derive(Debug)]
pub enum CallError {
    /// No connection, or it failed mid-exchange.
    Unreachable(io::Error),
    /// No answer within the timeout.
    Timeout,
    /// The peer answered with another status than `200` (the status and its body).
    Refused(u16, String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "unreachable: {e}"),
            CallError::Timeout => write!(f, "timed out"),
            CallError::Refused(status, body) => write!(f, "refused with {status}: {body}"),
        }
    }
}

impl std::error::Error for CallError {}

/// The idle connections to one node.
struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<TcpStream>>,
}

impl Pool {
    fn take(&self) -> Option<TcpStream> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn put(&self, s: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(s);
        }
    }
}

/// This node's connections to every other node, and its key to sign with.
pub struct PeerClient {
    key: Arc<PeerKey>,
    this: NodeId,
    pools: Vec<Pool>,
}

/// One request and its response on `s`: the status and body.
async fn round_trip(s: &mut TcpStream, bytes: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    s.write_all(bytes).await?;
    let mut buf = Vec::new();
    read_response(s, &mut buf, MAX_BODY)
        .await
        .map_err(io::Error::other)
}

impl PeerClient {
    /// The client of this node (`conf.this`) towards the conf's nodes, signing with `key`.
    pub fn new(key: Arc<PeerKey>, conf: &ClusterConf) -> PeerClient {
        let pools = conf
            .nodes
            .iter()
            .map(|n| Pool {
                addr: n.peer,
                idle: Mutex::new(Vec::new()),
            })
            .collect();
        PeerClient {
            key,
            this: conf.this as NodeId,
            pools,
        }
    }

    /// Sends `payload` as a frame of `kind` for `group` to node `to`; the answer's body.
    pub async fn call(
        &self,
        to: NodeId,
        kind: Kind,
        group: u32,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        let frame = Frame {
            kind,
            group,
            payload,
        };
        let body = frame
            .encode()
            .map_err(|e| CallError::Unreachable(io::Error::other(e)))?;
        let (status, answer) = tokio::time::timeout(timeout, self.exchange(to, &body))
            .await
            .map_err(|_| CallError::Timeout)?
            .map_err(CallError::Unreachable)?;
        match status {
            200 => Ok(answer),
            _ => Err(CallError::Refused(
                status,
                String::from_utf8_lossy(&answer).into_owned(),
            )),
        }
    }

    fn request(&self, to: usize, body: &[u8]) -> Vec<u8> {
        let headers = self.key.sign(to, "POST", RAFT_PATH, body, unix_ms());
        request_bytes(RAFT_PATH, &headers.pairs(), body)
    }

    async fn exchange(&self, to: NodeId, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        let to = usize::try_from(to).unwrap_or(usize::MAX);
        let pool = self
            .pools
            .get(to)
            .ok_or_else(|| io::Error::other(format!("no node {to} in the conf")))?;
        if let Some(mut s) = pool.take() {
            if let Ok(answer) = round_trip(&mut s, &self.request(to, body)).await {
                pool.put(s);
                return Ok(answer);
            }
        }
        let mut s = TcpStream::connect(pool.addr).await?;
        s.set_nodelay(true)?;
        let answer = round_trip(&mut s, &self.request(to, body)).await?;
        pool.put(s);
        Ok(answer)
    }
}

/// A group's network: openraft's factory of connections to the group's members.
pub struct GroupNetwork {
    client: Arc<PeerClient>,
    group: u32,
}

impl GroupNetwork {
    pub fn new(client: Arc<PeerClient>, group: u32) -> GroupNetwork {
        GroupNetwork { client, group }
    }
}

/// A group's connection to one member (a view on the shared pool).
pub struct PeerConnection {
    client: Arc<PeerClient>,
    group: u32,
    target: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for GroupNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> PeerConnection {
        PeerConnection {
            client: self.client.clone(),
            group: self.group,
            target,
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

/// A decoder of what a server answers to one kind of RPC.
type Decoder<T, E> = fn(&[u8]) -> Result<Result<T, RaftError<NodeId, E>>, CodecError>;

impl PeerConnection {
    /// One RPC: `payload` out, the answer decoded by `decode`, every failure as openraft
    /// wants it.
    async fn rpc<T, E: std::error::Error>(
        &self,
        action: RPCTypes,
        kind: Kind,
        payload: Vec<u8>,
        option: &RPCOption,
        decode: Decoder<T, E>,
    ) -> RpcResult<T, E> {
        let timeout = option.hard_ttl();
        let call = self
            .client
            .call(self.target, kind, self.group, &payload, timeout);
        match call.await {
            Ok(body) => match decode(&body) {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
                Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
            },
            Err(CallError::Timeout) => Err(RPCError::Timeout(Timeout {
                action,
                id: self.client.this,
                target: self.target,
                timeout,
            })),
            Err(e) => Err(RPCError::Unreachable(Unreachable::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        let payload = rpc::encode_append_request(&rpc);
        let decode = rpc::decode_append_result;
        self.rpc(
            RPCTypes::AppendEntries,
            Kind::AppendEntries,
            payload,
            &option,
            decode,
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let payload = rpc::encode_snapshot_request(&rpc);
        let decode = rpc::decode_snapshot_result;
        self.rpc(
            RPCTypes::InstallSnapshot,
            Kind::InstallSnapshot,
            payload,
            &option,
            decode,
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        let payload = rpc::encode_vote_request(&rpc);
        let decode = rpc::decode_vote_result;
        self.rpc(RPCTypes::Vote, Kind::Vote, payload, &option, decode)
            .await
    }
}
