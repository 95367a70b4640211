//! The end of every history test: once the cluster settled (every group takes writes through
//! every node that answers), the checks of tests/common/history.rs over the whole history,
//! each failure a panic naming the ops or replicas that show it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::super::history::{
    check_acknowledged_writes, check_key_histories, check_replicas_agree, check_versions_grow,
    Call, History, Key, Outcome, Replicas, Violation,
};
use super::workload::{group_of, settled_replicas};
use super::TestCluster;

/// Waits up to `settle` for the cluster to take writes everywhere and its replicas to agree,
/// then checks: each key linearizable (on a refusal, whether the writes alone are, which tells
/// a stale read from a lost or doubled write), versions only growing, every acknowledged write
/// in every replica of its group, the replicas of each group identical.
pub fn check_history(cluster: &TestCluster, history: &History, settle: Duration) {
    if let Err(e) = cluster.wait_writable(settle) {
        panic!("the cluster did not settle: {e}");
    }
    let t = Instant::now();
    if let Err(v) = check_key_histories(history) {
        // Which kind of op it takes: the writes alone (reads dropped) checked again.
        let writes = history.filtered(|o| !matches!(o.op.call, Call::Get));
        let without_reads = match check_key_histories(&writes) {
            Ok(()) => "linearizable: the reads are what no order explains".to_string(),
            Err(w) => format!("also refused: {w}"),
        };
        panic!(
            "{v}\nkeys with unknown writes:\n{}the writes alone: {without_reads}",
            per_key(history)
        );
    }
    println!("linearizability checked in {:?}", t.elapsed());
    if let Err(v) = check_versions_grow(history) {
        panic!("{v}");
    }
    let keys: Vec<Key> = history.by_key().into_keys().collect();
    let groups = settled_replicas(cluster, &keys, settle)
        .unwrap_or_else(|e| panic!("reading the replicas: {e}"));
    assert_eq!(
        groups.values().map(|g| g.len()).sum::<usize>(),
        keys.iter()
            .map(|k| group_of(cluster, k))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|g| cluster.members(g).len())
            .sum::<usize>(),
        "every member of every group was read"
    );
    for (g, replicas) in &groups {
        let mine = history.filtered(|o| group_of(cluster, &o.op.key) == *g);
        if let Err(v) = check_acknowledged_writes(&mine, replicas) {
            panic!("group {g}: {v}");
        }
        if let Err(v) = check_replicas_agree(replicas) {
            panic!("group {g}: {v}");
        }
    }
    assert!(
        a_lost_write_is_caught(cluster, history, &groups),
        "no record of any replica was needed by an acknowledged write: the checks proved nothing"
    );
}

/// The checks are not vacuous on this very run: removing one record from one replica's final
/// state (as a node that lost an acknowledged write would show) makes the acknowledged-writes
/// check fail, for at least one record.
fn a_lost_write_is_caught(
    cluster: &TestCluster,
    history: &History,
    groups: &BTreeMap<u32, Replicas>,
) -> bool {
    groups.iter().any(|(g, replicas)| {
        let mine = history.filtered(|o| group_of(cluster, &o.op.key) == *g);
        replicas.iter().any(|(name, records)| {
            records.keys().any(|key| {
                let mut lossy = replicas.clone();
                if let Some(r) = lossy.get_mut(name) {
                    r.remove(key);
                }
                matches!(
                    check_acknowledged_writes(&mine, &lossy),
                    Err(Violation::LostWrite { .. })
                )
            })
        })
    })
}

/// The keys with unknown writes (the search's cost grows with those): ops, unknown, failed.
fn per_key(history: &History) -> String {
    history
        .by_key()
        .iter()
        .map(|(key, ops)| {
            let unknown = ops
                .iter()
                .filter(|o| o.indefinite() && !matches!(o.op.call, Call::Get))
                .count();
            let failed = ops.iter().filter(|o| o.outcome == Outcome::Failed).count();
            (key, ops.len(), unknown, failed)
        })
        .filter(|(_, _, unknown, _)| *unknown > 0)
        .map(|(key, n, unknown, failed)| {
            format!("{key}: {n} ops, {unknown} unknown writes, {failed} failed\n")
        })
        .collect()
}
