//! Real faults on a real cluster (issue 11): three nodes of the real binary on loopback (five
//! for the last test), each with its master, workers and cluster helper, and faults made the
//! hard way: `kill -9` of a group leader's whole node, of a follower's, of a helper alone,
//! SIGSTOP of a leader's node and SIGCONT, a restart on a wiped data folder, two of five nodes
//! down. After each: the groups that keep a majority take writes again (the time it took is
//! printed, and only a generous bound is asserted), nothing acknowledged before is lost (every
//! acknowledged key is read back through every node that answers), and a node that comes back
//! catches up (its own replica, read with `consistency=local`, holds every acknowledged write).

mod common;

use std::time::{Duration, Instant};

use common::cluster::{workload, ClusterOpts, TestCluster};
use common::history::{Key, Record};

/// How long a fresh cluster may take to elect every group's leader and take writes.
const FIRST_WRITABLE: Duration = Duration::from_secs(20);
/// The generous bound on a failover (the spec's aim is a few election timeouts).
const FAILOVER_BOUND: Duration = Duration::from_secs(15);
/// How long a node that came back may take to hold every acknowledged write.
const CATCH_UP: Duration = Duration::from_secs(20);

fn three() -> TestCluster {
    let cluster = TestCluster::start(ClusterOpts::default());
    if let Err(e) = cluster.wait_writable(FIRST_WRITABLE) {
        panic!("the fresh cluster never took writes: {e}");
    }
    cluster
}

/// Acknowledged puts: key -> value (each key written once, so the value is exact).
type Acked = Vec<(String, String)>;

/// `n` puts of fresh keys `<tag>-<k>` spread over the groups, through `via` in turn; every
/// one must be acknowledged (the caller knows the cluster is healthy enough).
fn write_batch(cluster: &TestCluster, via: &[usize], tag: &str, n: usize) -> Acked {
    (0..n)
        .map(|k| {
            let key = format!("{tag}-{k}");
            let val = format!("v-{tag}-{k}");
            let node = via[k % via.len()];
            let r = cluster
                .put(node, &key, &val)
                .unwrap_or_else(|e| panic!("put {key} through node {node}: {e}"));
            assert_eq!(
                r.status,
                200,
                "put {key} through node {node}: {:?} {:?}",
                r.headers,
                r.text()
            );
            (key, val)
        })
        .collect()
}

/// Every acknowledged key reads back with its value through each of `nodes` (default reads).
fn assert_readable(cluster: &TestCluster, acked: &Acked, nodes: &[usize]) {
    for &i in nodes {
        for (key, val) in acked {
            let r = cluster
                .request(i, "GET", &format!("/get?key={key}"))
                .unwrap_or_else(|e| panic!("get {key} through node {i}: {e}"));
            assert_eq!(
                (r.status, r.text()),
                (200, val.clone()),
                "acknowledged {key} read through node {i} (group {}): {:?}",
                cluster.group_of_key(key),
                r.headers
            );
        }
    }
}

/// Waits until node `i`'s own replica holds every acknowledged key of a group it replicates;
/// panics with the first missing one. Gives how long it took.
fn assert_caught_up(cluster: &TestCluster, i: usize, acked: &Acked) -> Duration {
    let start = Instant::now();
    let mine: Vec<&(String, String)> = acked
        .iter()
        .filter(|(k, _)| cluster.members(cluster.group_of_key(k)).contains(&i))
        .collect();
    let mut missing = String::new();
    let done = common::wait_until(CATCH_UP, || {
        missing.clear();
        for (key, val) in &mine {
            match workload::read_local(cluster, i, &Key::kv(key)) {
                Ok(Some(Record { val: v, .. })) if v == *val => {}
                other => {
                    missing = format!("{key}: {other:?}");
                    return false;
                }
            }
        }
        true
    });
    assert!(
        done,
        "node {i} did not catch up within {CATCH_UP:?} ({} keys); first missing: {missing}",
        mine.len()
    );
    start.elapsed()
}

/// Puts to a key of group `g` through `via` in turn until one is acknowledged; how long since
/// `since`, or panics past [`FAILOVER_BOUND`].
fn wait_group_writable(cluster: &TestCluster, g: u32, via: &[usize], since: Instant) -> Duration {
    let left = FAILOVER_BOUND.saturating_sub(since.elapsed());
    match cluster.wait_group_writable(g, via, left) {
        Ok(_) => since.elapsed(),
        Err(e) => panic!("{e}"),
    }
}

fn others(cluster: &TestCluster, but: &[usize]) -> Vec<usize> {
    (0..cluster.len()).filter(|i| !but.contains(i)).collect()
}

#[test]
fn killing_a_leaders_node_fails_over_and_loses_nothing() {
    let cluster = three();
    let acked = write_batch(&cluster, &[0, 1, 2], "before", 30);
    let (leader, reported) = cluster.leader_or_guess(0);
    let rest = others(&cluster, &[leader]);
    cluster.kill9(leader);
    let since = Instant::now();
    let took = wait_group_writable(&cluster, 0, &rest, since);
    let et = cluster.opts.election_timeout;
    println!(
        "group 0: leader node {leader} ({}) killed; writes again after {took:?} \
         (3 x election_timeout = {:?}{})",
        if reported {
            "from /cluster/status"
        } else {
            "guessed: its preferred leader"
        },
        et * 3,
        if took <= et * 3 { "" } else { ", exceeded" }
    );
    let mut acked = acked;
    acked.extend(write_batch(&cluster, &rest, "during", 15));
    assert_readable(&cluster, &acked, &rest);
    cluster.restart(leader);
    let caught = assert_caught_up(&cluster, leader, &acked);
    println!("node {leader} restarted and caught up in {caught:?}");
    assert_readable(&cluster, &acked, &[0, 1, 2]);
}

#[test]
fn killing_a_followers_node_keeps_its_groups_serving() {
    let cluster = three();
    let (leader, _) = cluster.leader_or_guess(0);
    let follower = (leader + 1) % 3;
    let acked = write_batch(&cluster, &[0, 1, 2], "before", 30);
    cluster.kill9(follower);
    let rest = others(&cluster, &[follower]);
    let since = Instant::now();
    let took = wait_group_writable(&cluster, 0, &rest, since);
    println!(
        "group 0 (leader {leader}): follower node {follower} killed; next write after {took:?}"
    );
    match cluster.wait_writable(FAILOVER_BOUND) {
        Ok(t) => println!("every group writable through nodes {rest:?} after {t:?} more"),
        Err(e) => panic!("with one node of three down: {e}"),
    }
    let mut acked = acked;
    acked.extend(write_batch(&cluster, &rest, "during", 15));
    assert_readable(&cluster, &acked, &rest);
    cluster.restart(follower);
    let caught = assert_caught_up(&cluster, follower, &acked);
    println!("node {follower} restarted and caught up in {caught:?}");
}

#[test]
fn a_killed_helper_is_respawned_and_its_node_serves_again() {
    let cluster = three();
    let node = 1;
    let workers = cluster.worker_pids(node);
    let old = cluster.kill9_helper(node);
    let since = Instant::now();
    let new = cluster
        .wait_helper(node, Some(old), FAILOVER_BOUND)
        .unwrap_or_else(|| panic!("node {node}'s master did not respawn its helper {old}"));
    println!(
        "node {node}: helper {old} killed, {new} respawned after {:?}",
        since.elapsed()
    );
    assert!(cluster.is_running(node), "the master died with its helper");
    match cluster.wait_writable_via(node, FAILOVER_BOUND) {
        Ok(t) => println!(
            "writes through node {node} resumed after {:?}",
            since.elapsed().max(t)
        ),
        Err(e) => panic!("after the helper's respawn: {e}"),
    }
    assert_eq!(
        cluster.worker_pids(node),
        workers,
        "the workers were not meant to be restarted with the helper"
    );
    let acked = write_batch(&cluster, &[node], "after", 12);
    assert_readable(&cluster, &acked, &[0, 1, 2]);
}

#[test]
fn a_stopped_leader_is_replaced_and_catches_up_after_sigcont() {
    let cluster = three();
    let (leader, _) = cluster.leader_or_guess(0);
    let rest = others(&cluster, &[leader]);
    let mut acked = write_batch(&cluster, &[0, 1, 2], "before", 30);
    cluster.sigstop(leader);
    let since = Instant::now();
    let took = wait_group_writable(&cluster, 0, &rest, since);
    println!("group 0: leader node {leader} stopped; writes through the others after {took:?}");
    if let Err(e) = cluster.wait_writable(FAILOVER_BOUND) {
        panic!("with node {leader} stopped: {e}");
    }
    acked.extend(write_batch(&cluster, &rest, "during", 15));
    // Stopped well past an election timeout by now.
    assert!(since.elapsed() > cluster.opts.election_timeout);
    cluster.sigcont(leader);
    let caught = assert_caught_up(&cluster, leader, &acked);
    println!(
        "node {leader} continued after {:?} stopped, caught up in {caught:?}",
        since.elapsed()
    );
    if let Err(e) = cluster.wait_writable_via(leader, FAILOVER_BOUND) {
        panic!("through the continued node: {e}");
    }
    assert_readable(&cluster, &acked, &[0, 1, 2]);
}

#[test]
fn a_node_restarted_on_a_wiped_disk_is_refilled() {
    let cluster = three();
    let node = 2;
    let mut acked = write_batch(&cluster, &[0, 1, 2], "before", 30);
    cluster.kill9(node);
    cluster.wipe(node);
    // Node 2 led group 2: the others elect a new leader first.
    if let Err(e) = cluster.wait_writable(FAILOVER_BOUND) {
        panic!("with node {node} down: {e}");
    }
    acked.extend(write_batch(&cluster, &[0, 1], "while-down", 9));
    cluster.restart(node);
    let caught = assert_caught_up(&cluster, node, &acked);
    println!("node {node} restarted on an empty data folder, refilled in {caught:?}");
    acked.extend(write_batch(&cluster, &[0, 1], "after", 9));
    if let Err(e) = cluster.wait_writable_via(node, FAILOVER_BOUND) {
        panic!("through the refilled node: {e}");
    }
    assert_readable(&cluster, &acked, &[0, 1, 2]);
}

#[test]
fn five_nodes_with_two_down_serve_every_group_that_keeps_a_majority() {
    let cluster = TestCluster::start(ClusterOpts {
        nodes: 5,
        groups: 5,
        replicas: 3,
        ..ClusterOpts::default()
    });
    if let Err(e) = cluster.wait_writable(FIRST_WRITABLE) {
        panic!("the fresh cluster never took writes: {e}");
    }
    let acked = write_batch(&cluster, &[0, 1, 2, 3, 4], "before", 40);
    let down = [0, 1];
    for &i in &down {
        cluster.kill9(i);
    }
    let rest = others(&cluster, &down);
    let since = Instant::now();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for g in 0..cluster.opts.groups {
        let alive = cluster
            .members(g)
            .iter()
            .filter(|m| !down.contains(m))
            .count();
        if alive * 2 > cluster.opts.replicas {
            with.push(g);
        } else {
            without.push(g);
        }
    }
    assert!(
        !with.is_empty(),
        "no group keeps a majority: the test says nothing"
    );
    for &g in &with {
        let took = wait_group_writable(&cluster, g, &rest, since);
        println!(
            "group {g} (members {:?}) writable after {took:?}",
            cluster.members(g)
        );
    }
    for &g in &without {
        let key = cluster.key_in_group(g, "minority-");
        for &i in &rest {
            let r = cluster
                .put(i, &key, "x")
                .expect("an answer within the timeout");
            assert!(
                matches!(r.status, 503 | 504),
                "group {g} (members {:?}, majority down) answered a write through node {i} \
                 with {} {:?}",
                cluster.members(g),
                r.status,
                r.headers
            );
        }
        println!(
            "group {g} (members {:?}): no majority, writes refused",
            cluster.members(g)
        );
    }
    let served: Acked = acked
        .into_iter()
        .filter(|(k, _)| with.contains(&cluster.group_of_key(k)))
        .collect();
    assert_readable(&cluster, &served, &rest);
}
