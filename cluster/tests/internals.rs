//! In-process clusters over loopback for the node's internals: linearizable reads on a
//! follower (its store holds a write right after the barrier; cut from the leader it gets an
//! error), writes from a node outside the group (forwarded to its members), failures that
//! certainly did not apply a write, expiry purged through the log (gone from every replica,
//! at the same applied index), and the reports (`/cluster/status`, `/sync_status`,
//! `/get_table` as JSON, `/metrics` as Prometheus text) whose figures move with the writes.
//! Every wait is a poll with a deadline.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::node::{Node, WriteError};
use cluster::placement::{Placement, Target};
use cluster::raft::Applied;
use cluster::report::Report;
use openraft::ServerState;
use serde_json::Value;
use storage::{Command, Store, Write};

#[allow(dead_code)] // the three-node fixture: this file uses its store and secret only
mod common;

use common::{open_store, TempDir, GROUPS, SECRET};

fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

fn now_ms() -> u64 {
    cluster::net::unix_ms()
}

/// `nodes` nodes with groups of `replicas`.
struct Cluster {
    _root: TempDir,
    nodes: Vec<Option<(Node, Arc<Store>)>>,
    placement: Placement,
}

impl Cluster {
    async fn start(tag: &str, nodes: usize, replicas: usize) -> Cluster {
        let root = TempDir::new(tag);
        let secret = root.0.join("cluster.secret");
        fs::write(&secret, format!("{SECRET}\n")).expect("secret");
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod");
        let mut listeners = Vec::new();
        let mut lines = String::new();
        let mut probes = Vec::new();
        let mut clients = Vec::new();
        for n in 0..nodes {
            let peer = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let client = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let (c, p) = (client.local_addr().expect("addr"), peer.local_addr());
            lines.push_str(&format!("    node n{n} {c} {};\n", p.expect("addr")));
            listeners.push(peer);
            probes.push(client);
            clients.push(c);
        }
        let mut started = Vec::new();
        let mut placement = None;
        for (i, listener) in listeners.into_iter().enumerate() {
            let dir = root.0.join(format!("n{i}"));
            fs::create_dir_all(&dir).expect("node dir");
            let text = format!(
                "listen {};\ndata_dir {};\nmap_size 64m;\ncluster {{\n    name test;\n    node_id n{i};\n{lines}    groups {GROUPS};\n    replicas {replicas};\n    secret {};\n    timeout 2s;\n    election_timeout 300ms;\n}}\n",
                clients[i],
                dir.display(),
                secret.display()
            );
            let conf = conf::parse_str(&text, &root.0.join(format!("n{i}.conf"))).expect("conf");
            let cluster = conf.cluster.as_ref().expect("cluster");
            placement.get_or_insert_with(|| Placement::from_conf(cluster));
            let store = open_store(&conf);
            let node = Node::start_on(&conf, store.clone(), listener)
                .await
                .expect("start");
            started.push(Some((node, store)));
        }
        Cluster {
            _root: root,
            nodes: started,
            placement: placement.expect("a node"),
        }
    }

    fn node(&self, i: usize) -> &Node {
        &self.nodes[i].as_ref().expect("up").0
    }

    fn store(&self, i: usize) -> &Store {
        &self.nodes[i].as_ref().expect("up").1
    }

    /// The node up that leads `group`, once one does.
    async fn leader(&self, group: u32) -> usize {
        let until = deadline(10);
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

    /// `write` through node `i`, retried while no leader is known yet.
    async fn write(&self, i: usize, group: u32, cmd: &Command<'_>) -> Applied {
        let until = deadline(10);
        loop {
            match self.node(i).write(group, cmd).await {
                Ok(a) => return a,
                Err(e) if e.certainly_not_applied() && Instant::now() < until => {}
                Err(e) => panic!("write through node {i}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops node `i`.
    async fn stop(&mut self, i: usize) {
        let (node, store) = self.nodes[i].take().expect("up");
        common::shut_down(i, node, store).await;
    }
}

fn put<'a>(key: &'a str, val: &'a str, expires_at: u64) -> Command<'a> {
    Command {
        now_ms: now_ms(),
        write: Write::Put {
            key: key.as_bytes(),
            val: val.as_bytes(),
            expires_at,
            ver: 0,
        },
    }
}

/// A key of `group`.
fn key_of(placement: &Placement, group: u32, tag: &str) -> String {
    (0..)
        .map(|n| format!("{tag}{n}"))
        .find(|k| placement.group_of(Target::Key(k.as_bytes())) == group)
        .expect("a key")
}

fn value_of(store: &Store, key: &str) -> Option<Vec<u8>> {
    store
        .batch()
        .get(key.as_bytes(), now_ms())
        .ok()
        .map(|r| r.value.to_vec())
}

/// Checks Prometheus' text format line by line; the value of each sample by its name and
/// labels.
fn samples(text: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut typed = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            typed.push(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let name = series.split('{').next().expect("name");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && name.starts_with("huststore_cluster_"),
            "{line}"
        );
        assert!(typed.iter().any(|t| t == name), "{name} has no TYPE line");
        if let Some(labels) = series.strip_prefix(name) {
            assert!(labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')));
        }
        out.push((series.to_string(), value.parse().expect("an integer value")));
    }
    out
}

fn sample(all: &[(String, u64)], series: &str) -> u64 {
    all.iter()
        .find(|(s, _)| s == series)
        .unwrap_or_else(|| panic!("no {series}"))
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_reads_are_linearizable_and_reports_follow_the_writes() {
    let mut c = Cluster::start("internals-reads", 3, 3).await;
    let group = 1;
    let l = c.leader(group).await;
    let f = (l + 1) % 3;
    let before = samples(&c.node(l).report(Report::Metrics).await);
    for n in 0..20 {
        let key = key_of(&c.placement, group, &format!("r{n}-"));
        let val = format!("v{n}");
        let applied = c.write(l, group, &put(&key, &val, 0)).await;
        assert!(
            matches!(applied, Applied::Written { ver: 1 }),
            "{applied:?}"
        );
        c.node(f)
            .linearizable_read_barrier(group)
            .await
            .expect("a barrier on the follower");
        // Right after the barrier, without waiting: the follower has applied the write.
        assert_eq!(value_of(c.store(f), &key), Some(val.into_bytes()), "{key}");
    }
    // A write through the follower goes to the leader.
    let key = key_of(&c.placement, group, "via-follower");
    c.write(f, group, &put(&key, "x", 0)).await;
    c.node(l)
        .linearizable_read_barrier(group)
        .await
        .expect("barrier");
    assert_eq!(value_of(c.store(l), &key), Some(b"x".to_vec()));

    // The figures moved.
    let after = samples(&c.node(l).report(Report::Metrics).await);
    let proposals = "huststore_cluster_proposals_total";
    assert!(sample(&after, proposals) >= sample(&before, proposals) + 21);
    assert!(sample(&after, "huststore_cluster_read_index_served_total") >= 20);
    let fm = samples(&c.node(f).report(Report::Metrics).await);
    assert!(sample(&fm, "huststore_cluster_read_index_total") >= 20);
    assert!(sample(&fm, "huststore_cluster_read_barriers_total") >= 20);
    assert!(sample(&after, "huststore_cluster_leader_checks_total") >= 20);
    assert!(sample(&after, "huststore_cluster_log_syncs_total") >= 1);
    assert!(sample(&after, "huststore_cluster_log_entries_total") >= 21);
    assert!(sample(&fm, "huststore_cluster_peer_connects_total") >= 1);
    assert!(sample(&fm, "huststore_cluster_forwarded_total") >= 1);
    assert!(sample(&fm, "huststore_cluster_commits_total") >= 21);
    assert!(sample(&after, "huststore_cluster_log_bytes") > 0);
    assert_eq!(
        sample(
            &after,
            &format!("huststore_cluster_leader{{group=\"{group}\"}}")
        ),
        1
    );

    // The leader's view: every follower's lag reaches 0.
    let until = deadline(10);
    loop {
        let text = c.node(l).report(Report::ClusterStatus).await;
        let status: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(status["node"], format!("n{l}"));
        assert_eq!(status["nodes"].as_array().expect("nodes").len(), 3);
        let g = &status["groups"][group as usize];
        assert_eq!(g["role"], "leader");
        assert_eq!(g["leader"], format!("n{l}"));
        assert_eq!(g["members"].as_array().expect("members").len(), 3);
        assert!(g["applied"].as_u64().expect("applied") >= 21);
        let followers = g["followers"].as_array().expect("followers");
        assert_eq!(followers.len(), 2, "{text}");
        if followers.iter().all(|f| f["lag"] == 0) {
            assert!(status["nodes"]
                .as_array()
                .expect("nodes")
                .iter()
                .all(|n| n["reachable"] == true));
            break;
        }
        assert!(Instant::now() < until, "followers still lag: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fs: Value =
        serde_json::from_str(&c.node(f).report(Report::ClusterStatus).await).expect("JSON");
    assert_eq!(fs["groups"][group as usize]["role"], "follower");
    let table: Value = serde_json::from_str(&c.node(f).report(Report::Table).await).expect("JSON");
    let items = table["table"].as_array().expect("table");
    assert_eq!(items.len(), GROUPS as usize);
    assert_eq!(items[0]["item"]["key"][0], 0);
    assert_eq!(items[GROUPS as usize - 1]["item"]["key"][1], 1024);
    assert_eq!(items[group as usize]["leader"], format!("n{l}"));
    // The initial membership is the log's entry 0.
    assert_eq!(items[group as usize]["epoch"].as_u64(), Some(0));
    assert_eq!(
        items[group as usize]["item"]["val"]
            .as_array()
            .expect("val")
            .len(),
        3
    );
    let sync: Value =
        serde_json::from_str(&c.node(l).report(Report::SyncStatus).await).expect("JSON");
    assert_eq!(sync["status"].as_object().expect("status").len(), 3);
    assert!(sync["total_status"]["processed_items"].is_u64());

    // Cut from the leader (and from the majority): an error, never a stale success.
    let cut = f;
    let led: Vec<u32> = (c.node(cut).status().await.into_iter())
        .filter(|s| s.state == ServerState::Leader)
        .map(|s| s.group)
        .collect();
    for i in 0..3 {
        if i != cut {
            c.stop(i).await;
        }
    }
    for g in 0..GROUPS {
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            c.node(cut).linearizable_read_barrier(g),
        );
        let r = r.await.expect("the barrier ends within its timeout");
        assert!(
            matches!(r, Err(ref e) if e.certainly_not_applied()),
            "group {g}: {r:?}"
        );
    }
    // A write now never succeeds; once the leader (this node, for some groups) has heard
    // from no majority for two election timeouts, it refuses before appending: certainly
    // not applied (503), not a timeout (504).
    for g in 0..GROUPS {
        let key = key_of(&c.placement, g, "alone");
        let cmd = put(&key, "x", 0);
        let until = deadline(10);
        loop {
            let w = tokio::time::timeout(Duration::from_secs(1), c.node(cut).write(g, &cmd));
            match w.await {
                Ok(Ok(a)) => panic!("group {g}: applied without a majority: {a:?}"),
                Ok(Err(e)) if e.certainly_not_applied() => {
                    if led.contains(&g) {
                        assert_eq!(e, WriteError::NoQuorum, "group {g}");
                    }
                    break;
                }
                Ok(Err(_)) | Err(_) => assert!(Instant::now() < until, "group {g}: no 503"),
            }
        }
    }
    c.stop(cut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_outside_a_group_forwards_its_writes_to_the_members() {
    let mut c = Cluster::start("internals-outside", 4, 3).await;
    for group in 0..GROUPS {
        let outside = (0..4)
            .find(|&n| !c.placement.is_member(group, n))
            .expect("4 nodes, 3 replicas: one outside");
        let key = key_of(&c.placement, group, &format!("out{group}-"));
        let applied = c.write(outside, group, &put(&key, "far", 0)).await;
        assert!(
            matches!(applied, Applied::Written { ver: 1 }),
            "{applied:?}"
        );
        // The outsider replicates nothing of it; a member reads it after its barrier.
        assert_eq!(value_of(c.store(outside), &key), None);
        let member = c.placement.members(group)[0];
        c.node(member)
            .linearizable_read_barrier(group)
            .await
            .expect("barrier");
        assert_eq!(value_of(c.store(member), &key), Some(b"far".to_vec()));
        assert_eq!(
            c.node(outside).linearizable_read_barrier(group).await,
            Err(WriteError::NoGroup(group))
        );
    }
    assert_eq!(
        c.node(0).write(GROUPS, &put("k", "v", 0)).await,
        Err(WriteError::NoGroup(GROUPS))
    );
    // Every member of a group down: the outsider's write certainly did not happen.
    let group = 0;
    let outside = (0..4)
        .find(|&n| !c.placement.is_member(group, n))
        .expect("one");
    for m in c.placement.members(group).to_vec() {
        c.stop(m).await;
    }
    let key = key_of(&c.placement, group, "nobody");
    match c.node(outside).write(group, &put(&key, "x", 0)).await {
        Err(e) => assert!(e.certainly_not_applied(), "{e}"),
        Ok(a) => panic!("applied with every member down: {a:?}"),
    }
    c.stop(outside).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_records_are_purged_on_every_replica_at_the_same_position() {
    let mut c = Cluster::start("internals-expiry", 3, 3).await;
    let group = 2;
    let l = c.leader(group).await;
    let key = key_of(&c.placement, group, "ttl-record-");
    let keep = key_of(&c.placement, group, "kept-record-");
    c.write(l, group, &put(&key, "soon gone", now_ms() + 1000))
        .await;
    c.write(l, group, &put(&keep, "stays", 0)).await;
    let slots = c.placement.slots_of_group(group);
    let holds = |s: &Store, k: &str| {
        let snapshot = s.batch().export_slots(slots.clone(), 0).expect("export");
        snapshot.windows(k.len()).any(|w| w == k.as_bytes())
    };
    // Stored everywhere first (not vacuous), then gone everywhere, expired or not.
    let until = deadline(10);
    for i in 0..3 {
        while !holds(c.store(i), &key) {
            assert!(Instant::now() < until, "node {i} never got {key}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let until = deadline(15);
    for i in 0..3 {
        while holds(c.store(i), &key) {
            assert!(Instant::now() < until, "node {i} still holds {key}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(holds(c.store(i), &keep), "node {i} lost {keep}");
    }
    // The purge was one log entry, applied at the same position everywhere.
    let until = deadline(10);
    loop {
        let mut applied = Vec::new();
        for i in 0..3 {
            let st = c.node(i).status().await;
            applied.push(
                st.into_iter()
                    .find(|s| s.group == group)
                    .and_then(|s| s.applied_index),
            );
        }
        if applied.iter().all(|a| *a == applied[0]) {
            break;
        }
        assert!(
            Instant::now() < until,
            "applied indexes differ: {applied:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = samples(&c.node(c.leader(group).await).report(Report::Metrics).await);
    assert!(sample(&m, "huststore_cluster_expired_purged_total") >= 1);
    for i in 0..3 {
        c.stop(i).await;
    }
}
