//! Three nodes in one process over loopback (4 groups of 3 replicas): every group elects a
//! leader, writes through the leaders reach all three stores; with one node down every group
//! still takes writes; the node restarted on its folder catches up; a node restarted on a
//! wiped folder is refilled from a snapshot and the log after it; bad peer input (no headers,
//! the wrong secret, garbage bodies) is refused with 401/400 and the server goes on answering.
//! Every wait is a poll with a deadline.

use std::fs;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::node::{Node, WriteError};
use cluster::peer::auth::PeerKey;
use cluster::peer::frame::{Frame, Kind};
use cluster::placement::{Placement, Target};
use cluster::raft::rpc_codec;
use cluster::raft::Applied;
use openraft::raft::VoteRequest;
use openraft::{CommittedLeaderId, LogId, ServerState, Vote};
use storage::{Command, Store, Write};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;

use common::{open_store, TempDir, GROUPS, NODES, NOW};

fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

struct Cluster {
    _root: TempDir,
    confs: Vec<conf::Conf>,
    nodes: Vec<Option<(Node, Arc<Store>)>>,
    placement: Placement,
}

impl Cluster {
    async fn start() -> Cluster {
        let root = TempDir::new("three-nodes");
        let (confs, listeners) = common::confs(&root).await;
        let placement = Placement::from_conf(confs[0].cluster.as_ref().expect("cluster"));
        let mut nodes = Vec::new();
        for (conf, listener) in confs.iter().zip(listeners) {
            let store = open_store(conf);
            let node = Node::start_on(conf, store.clone(), listener)
                .await
                .expect("start");
            nodes.push(Some((node, store)));
        }
        Cluster {
            _root: root,
            confs,
            nodes,
            placement,
        }
    }

    /// A node up that leads `group`, once one does.
    async fn leader(&self, group: u32, until: Instant) -> usize {
        loop {
            for (i, n) in self.nodes.iter().enumerate() {
                let Some((node, _)) = n else { continue };
                let st = node.status().await.into_iter().find(|s| s.group == group);
                if st.is_some_and(|s| s.state == ServerState::Leader) {
                    return i;
                }
            }
            assert!(Instant::now() < until, "group {group} elected no leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes `key` = `val` through `group`'s leader, retrying through leader changes.
    async fn put(&self, key: &str, val: &str) -> Applied {
        let group = self.placement.group_of(Target::Key(key.as_bytes()));
        let until = deadline(10);
        let cmd = put_cmd(key, val);
        loop {
            let i = self.leader(group, until).await;
            let (node, _) = self.nodes[i].as_ref().expect("up");
            let r = tokio::time::timeout(Duration::from_secs(2), node.write(group, &cmd)).await;
            match r {
                Ok(Ok(applied)) => return applied,
                Ok(Err(WriteError::NotLeader { .. })) | Err(_) => {}
                Ok(Err(e)) => panic!("write {key}: {e}"),
            }
            assert!(Instant::now() < until, "no write of {key} went through");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every node up holds `key` = `val`.
    async fn applied_everywhere(&self, key: &str, val: &str) {
        let until = deadline(10);
        for (i, n) in self.nodes.iter().enumerate() {
            let Some((_, store)) = n else { continue };
            loop {
                let got = store.batch().get(key.as_bytes(), NOW).ok();
                if got.is_some_and(|r| r.value == val.as_bytes()) {
                    break;
                }
                assert!(Instant::now() < until, "node {i} lacks {key}={val}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Shuts node `i` down and waits until openraft let go of its store.
    async fn stop(&mut self, i: usize) {
        let (node, store) = self.nodes[i].take().expect("up");
        common::shut_down(i, node, store).await;
    }

    /// Starts node `i` again on its folder (its log's lock and port freed shortly after a stop).
    async fn restart(&mut self, i: usize) {
        let conf = &self.confs[i];
        let store = open_store(conf);
        let until = deadline(10);
        let node = loop {
            match Node::start(conf, store.clone()).await {
                Ok(n) => break n,
                Err(e) => assert!(Instant::now() < until, "restart {i}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.nodes[i] = Some((node, store));
    }

    fn peer_addr(&self, i: usize) -> SocketAddr {
        self.confs[i].cluster.as_ref().expect("cluster").nodes[i].peer
    }
}

fn put_cmd<'a>(key: &'a str, val: &'a str) -> Command<'a> {
    Command {
        now_ms: NOW,
        write: Write::Put {
            key: key.as_bytes(),
            val: val.as_bytes(),
            expires_at: 0,
            ver: 0,
        },
    }
}

/// Keys of every group: `key{n}` for the first n that lands in each.
fn keys(placement: &Placement, tag: &str) -> Vec<String> {
    (0..GROUPS)
        .map(|g| {
            (0..)
                .map(|n| format!("{tag}{n}"))
                .find(|k| placement.group_of(Target::Key(k.as_bytes())) == g)
                .expect("a key")
        })
        .collect()
}

/// Sends raw bytes to a peer server; the status and body of its answer.
async fn answer_of(addr: SocketAddr, request: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("send");
    let mut buf = Vec::new();
    let until = deadline(5);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = (head.lines())
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().expect("length"));
            if buf.len() >= end + 4 + len {
                let status = head[9..12].parse().expect("status");
                return (status, buf[end + 4..end + 4 + len].to_vec());
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(until.into(), s.read(&mut chunk))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed without an answer");
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn status_of(addr: SocketAddr, request: &[u8]) -> u16 {
    answer_of(addr, request).await.0
}

fn signed(key: &PeerKey, to: usize, body: &[u8]) -> Vec<u8> {
    let h = key.sign(to, "POST", "/raft", body, cluster::net::unix_ms());
    let mut out = b"POST /raft HTTP/1.1\r\n".to_vec();
    for (n, v) in h.pairs() {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

async fn bad_input_is_refused(c: &Cluster) {
    let addr = c.peer_addr(0);
    let plain = b"POST /raft HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    assert_eq!(status_of(addr, plain).await, 401, "no headers");
    let cluster = c.confs[1].cluster.as_ref().expect("cluster");
    let mut wrong = cluster.clone();
    wrong.secret = conf::Secret::trimmed(b"another secret of the wrong kind".to_vec());
    let vote = rpc_codec::encode_vote_request(&VoteRequest::new(Vote::new(0, 1), None));
    let frame = |kind, group, payload: &[u8]| {
        let f = Frame {
            kind,
            group,
            payload,
        };
        f.encode().expect("frame")
    };
    let good_frame = frame(Kind::Vote, 0, &vote);
    let wrong_key = PeerKey::new(&wrong, cluster::net::unix_ms());
    assert_eq!(
        status_of(addr, &signed(&wrong_key, 0, &good_frame)).await,
        401,
        "wrong secret"
    );
    // A key of node 1 made now: its nonces start above the running node 1's, so this comes
    // last (node 0 would take node 1's own requests for old ones from now on).
    let key = PeerKey::new(cluster, cluster::net::unix_ms());
    let garbage = signed(&key, 0, b"\x00garbage");
    assert_eq!(status_of(addr, &garbage).await, 400, "garbage frame");
    let bad_payload = frame(Kind::AppendEntries, 1, b"\x07\x07");
    assert_eq!(
        status_of(addr, &signed(&key, 0, &bad_payload)).await,
        400,
        "garbage payload"
    );
    let no_group = frame(Kind::Vote, GROUPS, &vote);
    assert_eq!(
        status_of(addr, &signed(&key, 0, &no_group)).await,
        404,
        "no such group"
    );
    assert_eq!(
        status_of(addr, b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n").await,
        400
    );
    // Still answering, a well-formed request (a stale vote, refused without harm) included.
    assert_eq!(
        status_of(addr, &signed(&key, 0, &good_frame)).await,
        200,
        "good request"
    );
}

async fn scenario() {
    let mut c = Cluster::start().await;
    for g in 0..GROUPS {
        c.leader(g, deadline(10)).await;
    }
    let first = keys(&c.placement, "a");
    for k in &first {
        assert_eq!(c.put(k, "one").await, Applied::Written { ver: 1 });
    }
    for k in &first {
        c.applied_everywhere(k, "one").await;
    }

    // A write through a follower is forwarded to the leader (once the follower knows it).
    let leader = c.leader(0, deadline(10)).await;
    let follower = &c.nodes[(leader + 1) % NODES].as_ref().expect("up").0;
    let key = &keys(&c.placement, "f")[0];
    let until = deadline(10);
    let forwarded = loop {
        match follower.write(0, &put_cmd(key, "forwarded")).await {
            Err(WriteError::NotLeader { leader: None }) if Instant::now() < until => {}
            r => break r,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(forwarded, Ok(Applied::Written { ver: 1 }));
    c.applied_everywhere(key, "forwarded").await;

    // Node 2 down: every group still takes writes (a new leader where node 2 led).
    c.stop(2).await;
    let second = keys(&c.placement, "b");
    for k in &second {
        c.put(k, "two").await;
    }
    // Back on its folder: it catches up.
    c.restart(2).await;
    for k in &second {
        c.applied_everywhere(k, "two").await;
    }

    // Snapshots everywhere (the log is purged up to them), then node 1 loses its disk.
    for (i, n) in c.nodes.iter().enumerate() {
        let node = &n.as_ref().expect("up").0;
        for g in 0..GROUPS {
            let raft = node.raft(g).expect("raft");
            raft.trigger().snapshot().await.expect("snapshot");
            let until = deadline(10);
            while raft.metrics().borrow().purged.is_none() {
                assert!(
                    Instant::now() < until,
                    "node {i}, group {g}: no snapshot, no purge"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    c.stop(1).await;
    let dir = &c.confs[1].data_dir;
    fs::remove_dir_all(dir).expect("wipe");
    fs::create_dir_all(dir).expect("recreate");
    let third = keys(&c.placement, "c");
    for k in &third {
        c.put(k, "three").await;
    }
    c.restart(1).await;
    for k in &second {
        c.applied_everywhere(k, "two").await;
    }
    for k in &third {
        c.applied_everywhere(k, "three").await;
    }
    for k in &first {
        c.applied_everywhere(k, "one").await;
    }
    // The wiped node got each group's snapshot (its log had been purged on the leaders).
    let wiped = &c.nodes[1].as_ref().expect("up").0;
    for st in wiped.status().await {
        assert!(st.snapshot_index.is_some(), "{st:?}");
        assert!(st.committed_index >= st.applied_index, "{st:?}");
        assert!(st.applied_index >= st.snapshot_index, "{st:?}");
    }

    bad_input_is_refused(&c).await;
    a_wiped_node_votes_only_in_bootstrap_elections(&mut c).await;
}

/// Node 1 back on a wiped folder with no one to refill it: in group 0 (which it does not
/// initialize, so its log there is empty) it refuses a candidate with entries past the initial
/// membership, and grants a bootstrap candidate.
async fn a_wiped_node_votes_only_in_bootstrap_elections(c: &mut Cluster) {
    for i in 0..NODES {
        c.stop(i).await;
    }
    let dir = &c.confs[1].data_dir;
    fs::remove_dir_all(dir).expect("wipe");
    fs::create_dir_all(dir).expect("recreate");
    c.restart(1).await;
    let key = PeerKey::new(
        c.confs[0].cluster.as_ref().expect("cluster"),
        cluster::net::unix_ms(),
    );
    let vote = |term: u64, last: LogId<u64>| {
        let req = VoteRequest::new(Vote::new(term, 0), Some(last));
        let payload = rpc_codec::encode_vote_request(&req);
        let frame = Frame {
            kind: Kind::Vote,
            group: 0,
            payload: &payload,
        };
        signed(&key, 1, &frame.encode().expect("frame"))
    };
    let granted = |(status, body): (u16, Vec<u8>)| {
        assert_eq!(status, 200);
        let resp = rpc_codec::decode_vote_result(&body)
            .expect("decodes")
            .expect("a response");
        resp.vote_granted
    };
    let addr = c.peer_addr(1);
    let long = LogId::new(CommittedLeaderId::new(50, 0), 5);
    assert!(
        !granted(answer_of(addr, &vote(100, long)).await),
        "a long log"
    );
    let bootstrap = LogId::new(CommittedLeaderId::new(0, 0), 0);
    assert!(
        granted(answer_of(addr, &vote(101, bootstrap)).await),
        "a bootstrap"
    );
    c.stop(1).await;
}

#[test]
fn three_nodes_elect_replicate_survive_a_loss_and_refill_a_wiped_node() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), scenario()).await })
        .expect("the scenario ends within 60 s");
}
