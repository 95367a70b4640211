//! Cluster mode's process model through the real binary (`cluster.md` §9): three nodes on
//! free loopback ports with temp data folders replicate a write; a `kill -9` of one node's
//! cluster helper alone is survived (the master respawns it, writes through that node work
//! again); QUIT leaves no process of a node behind (its helper included); a one-node cluster
//! serves writes; concurrent writes to one group share log entries and each is answered its
//! own version.
//!
//! The helper's pid is read from the master's error log: the last "started cluster helper PID"
//! line, checked to be a live child of the master (the master's other children are workers).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{
    children_of, cluster_helper_pid, free_port, get, is_alive, put_until_ok, try_request,
    wait_until, Server,
};

const SECRET: &str = "a secret shared by the three test nodes\n";

/// How long a replicated write or read may take to come through (elections included).
const REPLICATION: Duration = Duration::from_secs(30);

/// `count` nodes prepared (not started): each its own folder, client port and free peer
/// port, one worker, and a conf with a cluster block naming them all (`replicas`).
fn prepare(count: usize, replicas: usize) -> Vec<Server> {
    let servers: Vec<Server> = (0..count)
        .map(|_| Server::prepare(&[("worker_processes", "1")]))
        .collect();
    let peers: Vec<u16> = (0..count).map(|_| free_port()).collect();
    let mut nodes = String::new();
    for (i, s) in servers.iter().enumerate() {
        nodes.push_str(&format!(
            "    node n{} 127.0.0.1:{} 127.0.0.1:{};\n",
            i + 1,
            s.port,
            peers[i]
        ));
    }
    for (i, s) in servers.iter().enumerate() {
        let secret = s.dir.join("cluster.secret");
        std::fs::write(&secret, SECRET).expect("write the secret");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the secret");
        let base = std::fs::read_to_string(&s.conf_path).expect("read the conf");
        s.write_conf_text(&format!(
            "{base}cluster {{\n    name test;\n    node_id n{};\n{nodes}    groups 4;\n    replicas {replicas};\n    secret {};\n}}\n",
            i + 1,
            secret.display()
        ));
    }
    servers
}

/// GETs /get?key=`key` through `server` until it answers `value` (bounded: reads are the
/// node's own replica, which applies the write once it learns it is committed).
fn read_until(server: &Server, key: &str, value: &str) {
    let target = format!("/get?key={key}");
    let mut last = String::new();
    let seen = wait_until(REPLICATION, || {
        match try_request(server.addr(), "GET", &target, b"", Duration::from_secs(10)) {
            Ok(r) if r.status == 200 && r.text() == value => true,
            Ok(r) => {
                last = format!("{} {:?}", r.status, r.text());
                std::thread::sleep(Duration::from_millis(50));
                false
            }
            Err(e) => {
                last = e.to_string();
                false
            }
        }
    });
    assert!(
        seen,
        "{target} on {} never gave {value:?}: {last}\n{}",
        server.addr(),
        server.error_log()
    );
}

#[test]
fn three_nodes_replicate_and_survive_a_helper_killed_and_a_node_quitting() {
    let mut nodes = prepare(3, 3);
    for n in &mut nodes {
        n.restart();
    }
    for n in &nodes {
        let helper = cluster_helper_pid(n).expect("a cluster helper among the master's children");
        // One worker and the helper.
        assert_eq!(children_of(n.master_pid()).len(), 2, "{}", n.error_log());
        assert!(is_alive(helper));
    }

    // A write through node 1 is read through nodes 2 and 3.
    put_until_ok(&nodes[0], "k1", "one");
    read_until(&nodes[1], "k1", "one");
    read_until(&nodes[2], "k1", "one");

    // kill -9 of node 2's helper alone: the master logs it, respawns it, and a write through
    // node 2 commits again.
    let old = cluster_helper_pid(&nodes[1]).expect("node 2's helper");
    // SAFETY: kill(2) has no memory effects.
    assert_eq!(unsafe { libc::kill(old, libc::SIGKILL) }, 0);
    let respawned = wait_until(Duration::from_secs(10), || {
        cluster_helper_pid(&nodes[1]).is_some_and(|p| p != old)
    });
    assert!(respawned, "{}", nodes[1].error_log());
    let log = nodes[1].error_log();
    assert!(
        log.contains(&format!(
            "cluster helper {old} exited on signal 9, respawning"
        )),
        "{log}"
    );
    assert!(!is_alive(old));
    put_until_ok(&nodes[1], "k2", "two");
    read_until(&nodes[0], "k2", "two");
    read_until(&nodes[2], "k2", "two");

    // QUIT of node 3 leaves none of its processes.
    let master = nodes[2].master_pid();
    let helper = cluster_helper_pid(&nodes[2]).expect("node 3's helper");
    let worker = children_of(master)
        .into_iter()
        .find(|&p| p != helper)
        .expect("node 3's worker");
    let mut tree = children_of(master);
    tree.push(master);
    assert_eq!(tree.len(), 3);
    nodes[2].signal(libc::SIGQUIT);
    let status = nodes[2].wait_exit();
    assert!(status.success(), "{status:?}\n{}", nodes[2].error_log());
    let gone = wait_until(Duration::from_secs(10), || {
        tree.iter().all(|&p| !is_alive(p))
    });
    assert!(gone, "{tree:?} still alive\n{}", nodes[2].error_log());
    let log = nodes[2].error_log();
    assert!(
        log.contains(&format!("cluster helper {helper} exited with code 0")),
        "{log}"
    );
    // The worker went first; the helper was asked after it had exited.
    let worker_exit = log
        .find(&format!("worker {worker} exited with code 0"))
        .expect("the worker's exit");
    let helper_asked = log
        .find(&format!("sending SIGQUIT to the cluster helper {helper}"))
        .expect("the helper asked");
    assert!(worker_exit < helper_asked, "{log}");

    // Two of three still make a majority.
    put_until_ok(&nodes[0], "k3", "three");
    read_until(&nodes[1], "k3", "three");
}

#[test]
fn a_one_node_cluster_serves_writes() {
    let mut nodes = prepare(1, 1);
    nodes[0].restart();
    assert!(
        cluster_helper_pid(&nodes[0]).is_some(),
        "{}",
        nodes[0].error_log()
    );
    put_until_ok(&nodes[0], "solo", "yes");
    let r = get(nodes[0].addr(), "/get?key=solo");
    assert_eq!((r.status, r.text()), (200, "yes".to_string()));
    let status = nodes[0].stop();
    assert!(status.success(), "{status:?}");
    // TERM stops the helper with the workers, not after them.
    let log = nodes[0].error_log();
    assert!(
        log.contains("sending SIGTERM to the cluster helper"),
        "{log}"
    );
}

#[test]
fn a_helper_that_keeps_dying_is_respawned_with_a_back_off() {
    let mut nodes = prepare(1, 1);
    nodes[0].restart();
    let node = &nodes[0];
    put_until_ok(node, "k", "v");
    // Three quick deaths: the first two are respawned at once, the third after 1 s.
    for round in 1..=3 {
        let pid = cluster_helper_pid(node).expect("the helper");
        // SAFETY: kill(2) has no memory effects.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        let gone = wait_until(Duration::from_secs(5), || {
            node.error_log().contains(&format!(
                "cluster helper {pid} exited on signal 9, respawning"
            ))
        });
        assert!(gone, "round {round}\n{}", node.error_log());
        if round < 3 {
            let back = wait_until(Duration::from_secs(5), || {
                cluster_helper_pid(node).is_some_and(|p| p != pid)
            });
            assert!(back, "round {round}\n{}", node.error_log());
        }
    }
    let log = node.error_log();
    assert!(
        log.contains("cluster helper crashed 3 times in 10 s, respawning in 1 s"),
        "{log}"
    );
    put_until_ok(node, "k", "again");
}

#[test]
fn a_helper_that_cannot_start_fails_the_start_with_one_line() {
    let nodes = prepare(1, 1);
    let conf = std::fs::read_to_string(&nodes[0].conf_path).expect("read the conf");
    let peer = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("node n1 "))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .map(|a| a.trim_end_matches(';').to_string())
        .expect("n1's peer address");
    // The peer port taken: the helper's init fails (exit 2), which is not respawned.
    let _taken = std::net::TcpListener::bind(&peer).expect("bind the peer port");
    let out = nodes[0].command(&[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "huststore: the cluster helper could not start (fatal init error), see {}",
            nodes[0].error_log_path().display()
        )
    );
    let log = nodes[0].error_log();
    // It tried again for a while first (a helper still stopping holds the port a moment).
    assert!(log.contains("trying again in 500ms"), "{log}");
    assert!(
        log.contains("fatal init error, not respawned until the next reload"),
        "{log}"
    );
    assert!(!nodes[0].pid_file().exists());
}

/// The sum over `nodes` of the `/metrics` counter `name` (a worker shows its helper's
/// figures of up to two seconds ago).
fn counter_sum(nodes: &[Server], name: &str) -> u64 {
    nodes
        .iter()
        .map(|n| {
            let r = get(n.addr(), "/metrics");
            let text = r.text();
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} in /metrics of {}:\n{text}", n.addr()))
        })
        .sum()
}

/// Concurrent writes to one key (so one group), through all three nodes (most of them
/// forwarded to the leader): every one is answered `200` with a version of its own, the
/// versions are exactly the next ones in a row, and writes waiting at once were proposed
/// together, several in one log entry (`net::proposer`), as the consensus counters in
/// `/metrics` show (summed over the nodes: a follower counts its attempt before it forwards).
#[test]
fn concurrent_writes_share_log_entries_and_each_gets_its_own_version() {
    const CLIENTS: usize = 24;
    const WRITES: usize = 10;
    let mut nodes = prepare(3, 3);
    for n in &mut nodes {
        n.restart();
    }
    put_until_ok(&nodes[0], "hot", "first");
    for n in &nodes {
        read_until(n, "hot", "first");
    }
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr()).collect();
    let versions: Vec<u32> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let addr = addrs[c % addrs.len()];
                s.spawn(move || {
                    let mut got = Vec::new();
                    for w in 0..WRITES {
                        let body = format!("client {c} write {w}");
                        // A 503 certainly did not happen: tried again (bounded).
                        let mut tries = 0;
                        loop {
                            let r = try_request(
                                addr,
                                "POST",
                                "/put?key=hot",
                                body.as_bytes(),
                                Duration::from_secs(20),
                            )
                            .expect("a PUT's answer");
                            tries += 1;
                            if r.status == 503 && tries < 50 {
                                std::thread::sleep(Duration::from_millis(20));
                                continue;
                            }
                            assert_eq!(r.status, 200, "{:?}", r.text());
                            let ver = r.header("Version").expect("a Version header");
                            got.push(ver.parse::<u32>().expect("a version"));
                            break;
                        }
                    }
                    got
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("a client thread"))
            .collect()
    });
    let mut sorted = versions.clone();
    sorted.sort_unstable();
    let total = (CLIENTS * WRITES) as u32;
    // The first write made version 1; each of these made the next one.
    assert_eq!(sorted, (2..=total + 1).collect::<Vec<u32>>());

    let counted = wait_until(Duration::from_secs(10), || {
        counter_sum(&nodes, "huststore_cluster_proposals_total") > u64::from(total)
    });
    assert!(counted, "the proposals never showed in /metrics");
    let proposals = counter_sum(&nodes, "huststore_cluster_proposals_total");
    let entries = counter_sum(&nodes, "huststore_cluster_proposal_entries_total");
    assert!(
        entries > 0 && entries < proposals,
        "{proposals} writes proposed in {entries} log entries"
    );
}
