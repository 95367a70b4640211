//! The end checks of the cluster test, beside linearizability: versions only grow along real
//! time on each key, every acknowledged write is in every replica's final state, and the
//! replicas of a group hold the same records. Each is cheaper than the linearizability search
//! and names the two ops (or the op and the replica) that disagree. Versions are compared
//! without the wrap at 4194303 (kv-api.md §2.5): a test never writes one key that often.

use super::{Call, History, Key, OpRecord, Outcome, Record, Replicas, Ret, Violation};
use std::collections::{BTreeMap, BTreeSet};

/// For every key, every pair of definite ops where the first completed before the second was
/// invoked: the version the second saw (before its own write) is at least the one the first
/// left, unless a delete may lie between them (a re-created record starts again at 1).
pub fn check_versions_grow(history: &History) -> Result<(), Violation> {
    for (key, ops) in history.by_key() {
        for a in &ops {
            let Some(after_a) = a.ret().and_then(version_after) else {
                continue;
            };
            for b in ops.iter().filter(|b| a.precedes(b)) {
                let Some(before_b) = b.ret().and_then(version_before) else {
                    continue;
                };
                if before_b < after_a && !delete_may_lie_between(&ops, a, b) {
                    return Err(Violation::VersionWentBack {
                        key,
                        earlier: Box::new(a.clone()),
                        later: Box::new(b.clone()),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The record's version once the op took effect; a delete's "version it had" is before it.
fn version_after(ret: &Ret) -> Option<u32> {
    match ret {
        Ret::Written { version } | Ret::Value { version, .. } => Some(*version),
        Ret::Incremented { version, .. } => Some(*version),
        Ret::Mismatch { current } => Some(*current),
        Ret::NotFound => Some(0),
        Ret::Deleted { .. } | Ret::NotNumber => None,
    }
}

/// The record's version just before the op took effect.
fn version_before(ret: &Ret) -> Option<u32> {
    match ret {
        // A buggy store may answer version 0: that must not underflow here.
        Ret::Written { version } | Ret::Incremented { version, .. } => {
            Some(version.saturating_sub(1))
        }
        Ret::Value { version, .. } | Ret::Deleted { version } => Some(*version),
        Ret::Mismatch { current } => Some(*current),
        Ret::NotFound => Some(0),
        Ret::NotNumber => None,
    }
}

/// May an op that removes the record take effect after `a` and before `b`?
fn delete_may_lie_between(ops: &[OpRecord], a: &OpRecord, b: &OpRecord) -> bool {
    ops.iter()
        .any(|d| d.id != a.id && d.id != b.id && may_delete(d) && !d.precedes(a) && !b.precedes(d))
}

fn may_delete(op: &OpRecord) -> bool {
    op.op.call == Call::Del
        && match &op.outcome {
            Outcome::Ok(ret) => matches!(ret, Ret::Deleted { .. }),
            Outcome::Unknown | Outcome::Pending => true,
            Outcome::Failed => false,
        }
}

/// May `op` change the record (anything but a read, a delete, or a definite no-op answer)?
fn may_write(op: &OpRecord) -> bool {
    op.op.call != Call::Get
        && op.op.call != Call::Del
        && match &op.outcome {
            Outcome::Ok(ret) => matches!(ret, Ret::Written { .. } | Ret::Incremented { .. }),
            Outcome::Unknown | Outcome::Pending => true,
            Outcome::Failed => false,
        }
}

/// Checks each replica's final records (`replicas`: one group, name -> key -> record; call it
/// once per group with the keys that group owns, after the cluster settled): an acknowledged
/// write that no later write or delete may have replaced is there (at its version, or a later
/// one), an acknowledged delete that no write may have followed left no record, and every
/// record holds a value some op wrote.
pub fn check_acknowledged_writes(history: &History, replicas: &Replicas) -> Result<(), Violation> {
    let by_key = history.by_key();
    for (replica, records) in replicas {
        let keys: BTreeSet<&Key> = by_key.keys().chain(records.keys()).collect();
        for key in keys {
            let ops = by_key.get(key).map_or(&[][..], Vec::as_slice);
            check_replica_key(key, ops, replica, records.get(key))?;
        }
    }
    Ok(())
}

fn check_replica_key(
    key: &Key,
    ops: &[OpRecord],
    replica: &str,
    found: Option<&Record>,
) -> Result<(), Violation> {
    let lost = |write: &OpRecord| Violation::LostWrite {
        key: key.clone(),
        replica: replica.to_string(),
        write: Box::new(write.clone()),
        found: found.cloned(),
    };
    // A value no op wrote says more than the write it displaced: report it first.
    if let Some(record) = found {
        let unknown_increment = ops
            .iter()
            .any(|o| matches!(o.op.call, Call::Hincrby { .. }) && o.indefinite());
        let written = ops
            .iter()
            .filter(|o| may_write(o))
            .any(|o| written_value(o).as_deref() == Some(record.val.as_str()));
        if !written && !unknown_increment {
            return Err(Violation::NeverWritten {
                key: key.clone(),
                replica: replica.to_string(),
                record: record.clone(),
            });
        }
    }
    for w in ops {
        let may_follow = |pred: fn(&OpRecord) -> bool| {
            ops.iter()
                .any(|o| o.id != w.id && pred(o) && !o.precedes(w))
        };
        match w.ret() {
            Some(Ret::Written { version }) | Some(Ret::Incremented { version, .. }) => {
                if may_follow(may_delete) {
                    continue;
                }
                let kept = found.is_some_and(|r| {
                    r.version > *version
                        || (r.version == *version
                            && Some(r.val.as_str()) == written_value(w).as_deref())
                });
                if !kept {
                    return Err(lost(w));
                }
            }
            Some(Ret::Deleted { .. }) if !may_follow(may_write) && found.is_some() => {
                return Err(lost(w));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The value an op stores if it takes effect (an unanswered increment's is not known).
fn written_value(op: &OpRecord) -> Option<String> {
    match (&op.op.call, op.ret()) {
        (Call::Put { val } | Call::PutIfVersion { val, .. }, _) => Some(val.clone()),
        (Call::Hincrby { .. }, Some(Ret::Incremented { value, .. })) => Some(value.to_string()),
        _ => None,
    }
}

/// Checks that all replicas of one group hold the same records (same keys, values, versions).
pub fn check_replicas_agree(replicas: &Replicas) -> Result<(), Violation> {
    let keys: BTreeSet<&Key> = replicas.values().flat_map(BTreeMap::keys).collect();
    for key in keys {
        let records: Vec<(String, Option<Record>)> = replicas
            .iter()
            .map(|(name, recs)| (name.clone(), recs.get(key).cloned()))
            .collect();
        if records.windows(2).any(|w| w[0].1 != w[1].1) {
            return Err(Violation::ReplicasDiffer {
                key: key.clone(),
                records,
            });
        }
    }
    Ok(())
}
