//! The peer client: openraft's network traits over `POST /raft`. One [`PeerClient`] per node
//! holds a pool of idle keep-alive connections to each other node, shared by every group's
//! [`GroupNetwork`] (a group's replication to a node is one more user of the same pool, not a
//! connection of its own). A request takes an idle connection or opens one; a reused
//! connection that fails (the server closed it while idle) is retried once on a new one,
//! signed afresh (a new nonce), except a forwarded write, which is never sent twice (it could
//! be applied twice): an idle connection the peer closed is found before anything is sent on
//! it, and a forwarded write that fails after it was sent is [`CallError::Lost`], its outcome
//! unknown. A node that cannot be reached, or that refuses us (`401`, a group it does not
//! serve yet), is `Unreachable` to openraft, which backs off; the whole exchange is bounded by
//! the `RPCOption`'s hard timeout. Every call's outcome is recorded per node (the last
//! answer's and the last failure's time: `/cluster/status`'s reachability, and the leader's
//! check that a majority answers before it appends a write).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conf::ClusterConf;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError};
use openraft::error::{PayloadTooLarge, Timeout, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, Entry, EntryPayload, RPCTypes};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::http::{read_response, request_bytes};
use super::{unix_ms, MAX_BODY, RAFT_PATH};
use crate::metrics::Counters;
use crate::peer::auth::PeerKey;
use crate::peer::frame::{Frame, Kind, HEADER_LEN};
use crate::raft::rpc_codec::{self as rpc, CodecError};
use crate::raft::{NodeId, TypeConfig};

/// Idle connections kept per node; more concurrent requests open more, closed after use. A
/// forwarded write holds its connection until the write is applied, so under load there are
/// as many in use as writes in flight towards that node (measured with 8: about 200 new
/// connections a second under 100 clients); each idle one costs a descriptor and a task.
const MAX_IDLE: usize = 128;

/// Why a call got no answer from the peer's Raft.
#[derive(Debug)]
pub enum CallError {
    /// No connection: nothing was sent.
    Unreachable(io::Error),
    /// The request was sent, then the connection failed before the whole answer came.
    Lost(io::Error),
    /// No answer within the timeout; `sent` when the request had been written (in part or
    /// whole) by then.
    Timeout { sent: bool },
    /// The peer answered with another status than `200` (the status and its body): it did
    /// not act on the request.
    Refused(u16, String),
}

impl CallError {
    /// True when the peer certainly never received the request (or refused it unread).
    pub fn not_delivered(&self) -> bool {
        matches!(
            self,
            CallError::Unreachable(_) | CallError::Timeout { sent: false } | CallError::Refused(..)
        )
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "unreachable: {e}"),
            CallError::Lost(e) => write!(f, "connection lost after sending: {e}"),
            CallError::Timeout { sent: true } => write!(f, "no answer in time"),
            CallError::Timeout { sent: false } => write!(f, "could not connect in time"),
            CallError::Refused(status, body) => write!(f, "refused with {status}: {body}"),
        }
    }
}

/// What this node last heard from another (unix ms, 0 = never).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Contact {
    /// The last answer (any status).
    pub last_answer_ms: u64,
    /// The last call that got no answer.
    pub last_failure_ms: u64,
}

impl Contact {
    /// Whether the last call got an answer (never called: no).
    pub fn reachable(&self) -> bool {
        self.last_answer_ms > 0 && self.last_answer_ms >= self.last_failure_ms
    }
}

impl std::error::Error for CallError {}

/// The idle connections to one node, and what we last heard from it.
struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<TcpStream>>,
    last_answer_ms: AtomicU64,
    last_failure_ms: AtomicU64,
}

/// Whether an idle connection is still open: the peer closed it (end of file) or sent bytes
/// nobody asked for, and it must not carry a request, unless reading would block.
fn still_open(s: &TcpStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: `recv` writes at most 1 byte into `byte`, which lives for the call; the
    // descriptor is the stream's, open while `s` is borrowed. MSG_PEEK consumes nothing and
    // MSG_DONTWAIT never blocks the runtime's thread.
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
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
    counters: Arc<Counters>,
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
    /// The client of this node (`conf.this`) towards the conf's nodes, signing with `key`;
    /// the snapshots it sends are counted in `counters`.
    pub fn new(key: Arc<PeerKey>, conf: &ClusterConf, counters: Arc<Counters>) -> PeerClient {
        let pools = conf
            .nodes
            .iter()
            .map(|n| Pool {
                addr: n.peer,
                idle: Mutex::new(Vec::new()),
                last_answer_ms: AtomicU64::new(0),
                last_failure_ms: AtomicU64::new(0),
            })
            .collect();
        PeerClient {
            key,
            this: conf.this as NodeId,
            pools,
            counters,
        }
    }

    /// What this node last heard from node `to` (all zero for itself or an unknown node).
    pub fn contact(&self, to: NodeId) -> Contact {
        let pool = usize::try_from(to).ok().and_then(|i| self.pools.get(i));
        pool.map_or_else(Contact::default, |p| Contact {
            last_answer_ms: p.last_answer_ms.load(Ordering::Relaxed),
            last_failure_ms: p.last_failure_ms.load(Ordering::Relaxed),
        })
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
        let sent = AtomicBool::new(false);
        // Never sent twice: a second copy could be applied too.
        let once = kind == Kind::ForwardWrite;
        let exchanged = tokio::time::timeout(timeout, self.exchange(to, &body, once, &sent)).await;
        let pool = usize::try_from(to).ok().and_then(|i| self.pools.get(i));
        let (stamp, result) = match exchanged {
            Ok(Ok(answer)) => (pool.map(|p| &p.last_answer_ms), Ok(answer)),
            Ok(Err(e)) => (pool.map(|p| &p.last_failure_ms), Err(e)),
            Err(_) => {
                let sent = sent.load(Ordering::Relaxed);
                (
                    pool.map(|p| &p.last_failure_ms),
                    Err(CallError::Timeout { sent }),
                )
            }
        };
        if let Some(stamp) = stamp {
            stamp.store(unix_ms(), Ordering::Relaxed);
        }
        let (status, answer) = result?;
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

    /// One request to `to` on an idle connection still open, or a new one; `once`: never
    /// sent a second time. `sent` turns true once the request may have left.
    async fn exchange(
        &self,
        to: NodeId,
        body: &[u8],
        once: bool,
        sent: &AtomicBool,
    ) -> Result<(u16, Vec<u8>), CallError> {
        let to = usize::try_from(to).unwrap_or(usize::MAX);
        let pool = self.pools.get(to).ok_or_else(|| {
            CallError::Unreachable(io::Error::other(format!("no node {to} in the conf")))
        })?;
        while let Some(mut s) = pool.take() {
            if !still_open(&s) {
                continue;
            }
            sent.store(true, Ordering::Relaxed);
            match round_trip(&mut s, &self.request(to, body)).await {
                Ok(answer) => {
                    pool.put(s);
                    return Ok(answer);
                }
                Err(e) if once => return Err(CallError::Lost(e)),
                // Closed under us: retried once on a new connection.
                Err(_) => break,
            }
        }
        self.counters.peer_connects.bump();
        let mut s = TcpStream::connect(pool.addr)
            .await
            .map_err(CallError::Unreachable)?;
        s.set_nodelay(true).map_err(CallError::Unreachable)?;
        sent.store(true, Ordering::Relaxed);
        let answer = round_trip(&mut s, &self.request(to, body))
            .await
            .map_err(CallError::Lost)?;
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
            Err(CallError::Timeout { .. }) => Err(RPCError::Timeout(Timeout {
                action,
                id: self.client.this,
                target: self.target,
                timeout,
            })),
            Err(e) => Err(RPCError::Unreachable(Unreachable::new(&e))),
        }
    }
}

/// How many of `entries`, from the first, take about `budget` bytes on the wire (at least
/// one): the hint of a `PayloadTooLarge` answer.
fn entries_that_fit(entries: &[Entry<TypeConfig>], budget: usize) -> u64 {
    // Above what the codec adds to an entry (log id, tags, lengths).
    const ENTRY_OVERHEAD: usize = 64;
    let mut used = 0usize;
    let mut fit = 0u64;
    for e in entries {
        used += ENTRY_OVERHEAD
            + match &e.payload {
                EntryPayload::Normal(cmd) => cmd.bytes.len(),
                EntryPayload::Membership(_) => 4096,
                EntryPayload::Blank => 0,
            };
        if used > budget {
            break;
        }
        fit += 1;
    }
    fit.max(1)
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        let payload = rpc::encode_append_request(&rpc);
        if payload.len() + HEADER_LEN > MAX_BODY as usize {
            // The peer would refuse it: openraft sends at most the hint's entries at once for
            // a while (a replica far behind, or batches of large values, fill a request fast).
            let fit = entries_that_fit(&rpc.entries, MAX_BODY as usize / 2);
            if rpc.entries.len() <= 1 {
                log::error!(
                    "an entry of {} bytes is over the peer protocol's limit of {MAX_BODY} bytes",
                    payload.len()
                );
            }
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fit),
            ));
        }
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
        let last = rpc.done;
        let payload = rpc::encode_snapshot_request(&rpc);
        let decode = rpc::decode_snapshot_result;
        let r = self
            .rpc(
                RPCTypes::InstallSnapshot,
                Kind::InstallSnapshot,
                payload,
                &option,
                decode,
            )
            .await;
        if last && r.is_ok() {
            self.client.counters.snapshots_sent.bump();
        }
        r
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

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};

    use super::*;
    use crate::raft::LogCommand;

    fn entry(index: u64, len: usize) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
            payload: EntryPayload::Normal(LogCommand {
                bytes: vec![7; len],
            }),
        }
    }

    #[test]
    fn an_append_over_the_limit_is_cut_to_the_entries_that_fit() {
        let entries: Vec<_> = (1..=10).map(|i| entry(i, 1000)).collect();
        assert_eq!(entries_that_fit(&entries, 1_000_000), 10);
        assert_eq!(entries_that_fit(&entries, 3 * 1064), 3);
        assert_eq!(entries_that_fit(&entries, 3 * 1064 - 1), 2);
        // One entry larger than the budget still goes (alone), never zero.
        assert_eq!(entries_that_fit(&entries, 10), 1);
        assert_eq!(entries_that_fit(&[], 10), 1);
    }
}
