//! The peer server: accepts connections on the node's peer address and answers `POST /raft`,
//! one request after another on each keep-alive connection. Every request is authenticated
//! before anything else is looked at (`401`, nothing dispatched; the reason logged once per
//! cause, so a misconfigured peer retrying every heartbeat does not flood the log), then its
//! frame and payload are decoded (`400` on garbage) and handed to the group's Raft (`404` for
//! a group this node does not serve). A malformed message closes the connection after the
//! answer: where the next one would start is not known.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::raft::VoteResponse;
use openraft::Raft;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::forward::{encode_read_index, encode_write_result, propose};
use super::http::{read_request, response_bytes, HttpError, Request};
use super::read_batch::ReadBatcher;
use super::{unix_ms, Groups, MAX_BODY, RAFT_PATH};
use crate::metrics::Counters;
use crate::peer::auth::PeerKey;
use crate::peer::frame::{Frame, FrameError, Kind, Limits};
use crate::raft::rpc_codec as rpc;
use crate::raft::{LogCommand, TypeConfig};

/// How long a connection may sit idle between requests before the server closes it.
const IDLE: Duration = Duration::from_secs(120);

/// What every connection of the peer server shares.
pub struct Server {
    key: Arc<PeerKey>,
    groups: Arc<Groups>,
    limits: Limits,
    counters: Arc<Counters>,
    /// The `ReadIndex` requests of a group (and this node's own reads) share one leadership
    /// check.
    reads: Arc<ReadBatcher>,
    /// The refusal causes logged already.
    logged: Mutex<HashSet<String>>,
}

/// An answer: status and body.
type Answer = (u16, Vec<u8>);

fn answer(status: u16, text: &str) -> Answer {
    (status, text.as_bytes().to_vec())
}

impl Server {
    /// The server of `groups` (of the cluster's `group_count`), checking requests with `key`,
    /// counting what it serves in `counters`; `ReadIndex` requests share the leadership checks
    /// of `reads` ([`ReadBatcher::leader_checks`], shared with the node's own reads).
    pub fn new(
        key: Arc<PeerKey>,
        groups: Arc<Groups>,
        group_count: u32,
        counters: Arc<Counters>,
        reads: Arc<ReadBatcher>,
    ) -> Server {
        let limits = Limits {
            groups: group_count,
            max_payload: (MAX_BODY as u32).saturating_sub(crate::peer::frame::HEADER_LEN as u32),
        };
        Server {
            key,
            groups,
            limits,
            counters,
            reads,
            logged: Mutex::new(HashSet::new()),
        }
    }

    /// Accepts connections until `stop` says so (or its sender is gone); each connection
    /// ends then too.
    pub async fn run(self: Arc<Self>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = stop.changed() => return,
            };
            match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(self.clone().connection(stream, stop.clone()));
                }
                Err(e) => {
                    // Out of descriptors, most likely: wait rather than spin.
                    log::warn!("peer server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn connection(self: Arc<Self>, mut stream: TcpStream, mut stop: watch::Receiver<bool>) {
        let mut buf = Vec::new();
        loop {
            let read = tokio::select! {
                r = tokio::time::timeout(IDLE, read_request(&mut stream, &mut buf, MAX_BODY)) => r,
                _ = stop.changed() => return,
            };
            let (status, body, close) = match read {
                Err(_) | Ok(Err(HttpError::Closed)) | Ok(Err(HttpError::Io(_))) => return,
                Ok(Err(e @ HttpError::TooLarge(_))) => (413, e.to_string().into_bytes(), true),
                Ok(Err(e @ HttpError::Malformed(_))) => (400, e.to_string().into_bytes(), true),
                Ok(Ok(req)) => {
                    let (status, body) = tokio::select! {
                        a = self.handle(&req) => a,
                        _ = stop.changed() => return,
                    };
                    (status, body, false)
                }
            };
            if stream
                .write_all(&response_bytes(status, &body, close))
                .await
                .is_err()
                || close
            {
                return;
            }
        }
    }

    /// Logs a refusal the first time its cause is seen (numbers left out of the cause, so
    /// that every stale time or replayed nonce of one node counts once).
    fn log_refusal(&self, reason: &str) {
        let cause: String = reason.chars().filter(|c| !c.is_ascii_digit()).collect();
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if logged.insert(cause) {
            log::warn!("peer request refused (401): {reason}");
        }
    }

    /// The answer to one request.
    pub(super) async fn handle(&self, req: &Request) -> Answer {
        let verified = self.key.verify(
            req.header_pairs(),
            &req.method,
            &req.target,
            &req.body,
            unix_ms(),
        );
        if let Err(e) = verified {
            self.log_refusal(&e.to_string());
            return answer(401, "unauthorized");
        }
        if req.method != "POST" || req.target != RAFT_PATH {
            return answer(404, "no such peer endpoint");
        }
        let frame = match Frame::decode(&req.body, &self.limits) {
            Ok(f) => f,
            Err(e @ FrameError::Group { .. }) => return answer(404, &e.to_string()),
            Err(e) => return answer(400, &e.to_string()),
        };
        let Some(raft) = self.groups.get(frame.group) else {
            return answer(404, "this node does not serve the group");
        };
        let at = Target {
            groups: &self.groups,
            group: frame.group,
            raft: &raft,
            counters: &self.counters,
            reads: &self.reads,
        };
        match dispatch(at, frame.kind, frame.payload).await {
            Some(body) => (200, body),
            None => answer(400, &format!("malformed {} payload", frame.kind.name())),
        }
    }
}

/// Where a request goes: the group, its Raft, and what the server shares.
struct Target<'a> {
    groups: &'a Groups,
    group: u32,
    raft: &'a Raft<TypeConfig>,
    counters: &'a Counters,
    reads: &'a Arc<ReadBatcher>,
}

/// Hands a decoded payload to the group's Raft; its encoded answer, or `None` for a payload
/// that does not decode (or a kind this server does not take).
async fn dispatch(at: Target<'_>, kind: Kind, payload: &[u8]) -> Option<Vec<u8>> {
    let Target {
        groups,
        group,
        raft,
        counters,
        reads,
    } = at;
    match kind {
        Kind::AppendEntries => {
            let req = rpc::decode_append_request(payload).ok()?;
            Some(rpc::encode_append_result(&raft.append_entries(req).await))
        }
        Kind::Vote => {
            let req = rpc::decode_vote_request(payload).ok()?;
            let candidate_last = req.last_log_id.map_or(0, |l| l.index);
            if groups.withholds_vote(group, raft, candidate_last) {
                // Refused as openraft would refuse a stale candidate: our vote, not granted.
                let m = raft.metrics().borrow().clone();
                let refusal = VoteResponse::new(m.vote, m.last_applied, false);
                return Some(rpc::encode_vote_result(&Ok(refusal)));
            }
            Some(rpc::encode_vote_result(&raft.vote(req).await))
        }
        Kind::InstallSnapshot => {
            let req = rpc::decode_snapshot_request(payload).ok()?;
            let last = req.done;
            let r = raft.install_snapshot(req).await;
            if last && r.is_ok() {
                counters.snapshots_received.bump();
            }
            Some(rpc::encode_snapshot_result(&r))
        }
        Kind::ForwardWrite => {
            // Only a command this node can read goes into the log.
            storage::Command::decode(payload).ok()?;
            let cmd = LogCommand {
                bytes: payload.to_vec(),
            };
            let answer = match groups.proposer(group) {
                Some(proposer) => proposer.propose(cmd).await,
                None => propose(raft, cmd, counters).await,
            };
            Some(encode_write_result(&answer))
        }
        Kind::ReadIndex => {
            if !payload.is_empty() {
                return None;
            }
            counters.read_index_served.bump();
            // The index alone: the follower waits for its own state machine, not ours. Every
            // request arriving meanwhile shares the next leadership check.
            Some(encode_read_index(&reads.read_index(group).await))
        }
        // Reads are served where they arrive (after a barrier); none is forwarded yet.
        Kind::ForwardRead => None,
    }
}
