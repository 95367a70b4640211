//! The Jepsen-style test of a real cluster (issue 11): five client threads run put / get / CAS
//! (`put` with `ver`) / del on five keys and hset / hget / hincrby on two fields of one table,
//! through every node in turn, for about sixteen seconds while faults are injected: `kill -9`
//! of a group leader's node and its restart, `kill -9` of a helper, SIGSTOP of a leader's node
//! and SIGCONT, `kill -9` of a node restarted at once. Every op is recorded with its invocation
//! and completion (`503` or a connection never made: failed; `504`, a timeout or a lost
//! connection: unknown), and once the cluster settled the history is checked
//! (tests/common/history.rs): each key linearizable, versions only growing, every acknowledged
//! write in every replica, replicas identical. It cannot pass vacuously: a minimum of
//! acknowledged writes and of faults that really happened are asserted.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::cluster::verdict;
use common::cluster::workload::{self, Plan, Stats};
use common::cluster::{ClusterOpts, TestCluster};
use common::history::History;

const CLIENTS: usize = 5;
const RUN: Duration = Duration::from_secs(16);
/// The records get new names every EPOCH (workload::Plan::epoch).
const EPOCH: Duration = Duration::from_secs(2);
/// Acknowledged writes below which the run says too little (a healthy run makes thousands).
const MIN_ACKED_WRITES: usize = 150;
const MIN_FAULTS: usize = 4;
const SETTLE: Duration = Duration::from_secs(20);

/// Waits until `at` past `start` (or `stop` is set).
fn sleep_until(start: Instant, at: Duration) {
    let left = at.saturating_sub(start.elapsed());
    std::thread::sleep(left);
}

/// The fault schedule, run beside the clients; the faults that really happened.
fn faults(cluster: &TestCluster, start: Instant) -> Vec<String> {
    let mut done = Vec::new();
    let group = |g: u32| g % cluster.opts.groups;

    sleep_until(start, Duration::from_secs(2));
    let (victim, known) = cluster.leader_or_guess(group(0));
    cluster.kill9(victim);
    done.push(format!(
        "{:?}: kill -9 of node {victim}, leader of group {} ({})",
        start.elapsed(),
        group(0),
        if known { "reported" } else { "guessed" }
    ));
    sleep_until(start, Duration::from_secs(4));
    cluster.restart(victim);
    done.push(format!("{:?}: node {victim} restarted", start.elapsed()));

    sleep_until(start, Duration::from_secs(6));
    let node = (victim + 1) % cluster.len();
    let old = cluster.kill9_helper(node);
    let new = cluster.wait_helper(node, Some(old), Duration::from_secs(10));
    done.push(format!(
        "{:?}: kill -9 of node {node}'s helper {old}; respawned: {new:?}",
        start.elapsed()
    ));

    sleep_until(start, Duration::from_secs(9));
    let (stopped, _) = cluster.leader_or_guess(group(2));
    cluster.sigstop(stopped);
    done.push(format!(
        "{:?}: SIGSTOP of node {stopped}, leader of group {}",
        start.elapsed(),
        group(2)
    ));
    sleep_until(start, Duration::from_millis(10_500));
    cluster.sigcont(stopped);
    done.push(format!("{:?}: SIGCONT of node {stopped}", start.elapsed()));

    sleep_until(start, Duration::from_secs(12));
    let (victim, _) = cluster.leader_or_guess(group(1));
    cluster.kill9(victim);
    cluster.restart(victim);
    done.push(format!(
        "{:?}: kill -9 of node {victim} and restart at once",
        start.elapsed()
    ));
    done
}

#[test]
fn concurrent_clients_under_faults_keep_every_key_linearizable() {
    let cluster = TestCluster::start(ClusterOpts {
        workers: 2,
        ..ClusterOpts::default()
    });
    if let Err(e) = cluster.wait_writable(Duration::from_secs(20)) {
        panic!("the fresh cluster never took writes: {e}");
    }
    let plan = Plan {
        keys: workload::records(5, 2),
        clients: CLIENTS,
        duration: RUN,
        epoch: EPOCH,
        backoff: Duration::from_millis(150),
    };
    let history = History::new();
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let (stats, faults): (Stats, Vec<String>) = std::thread::scope(|scope| {
        let clients = scope.spawn(|| workload::run_clients(&cluster, &history, &plan, &stop));
        let faults = faults(&cluster, start);
        let stats = clients.join();
        stop.store(true, Ordering::Relaxed);
        (stats.expect("a client thread panicked"), faults)
    });
    println!("faults:\n  {}", faults.join("\n  "));
    println!(
        "{}; {} acknowledged writes; run {:?}",
        workload::summary(&history),
        stats.acked_writes,
        start.elapsed()
    );
    assert!(
        stats.anomalies.is_empty(),
        "answers outside the contract:\n{}",
        stats.anomalies.join("\n")
    );
    assert!(
        faults.len() >= MIN_FAULTS && faults.iter().all(|f| !f.ends_with("None")),
        "the faults did not all happen: {faults:?}"
    );
    assert!(
        stats.acked_writes >= MIN_ACKED_WRITES,
        "only {} acknowledged writes: the run proves little ({stats:?})",
        stats.acked_writes
    );

    verdict::check_history(&cluster, &history, SETTLE);
}
