//! What a node reports of the cluster to the HTTP side (`cluster.md` §5): the bodies of
//! `/cluster/status`, `/sync_status` and `/get_table`, and the consensus figures appended to
//! `/metrics`. The helper answers a worker's `Report` frame with [`Node::report`]; the worker
//! relays the text as the reply's body. Built here, where the groups' metrics are, so that the
//! worker never knows openraft's types.

use openraft::ServerState;

use crate::net::unix_ms;
use crate::node::{GroupStatus, Node};
use crate::raft::NodeId;

/// Which report a worker asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// `/cluster/status`: JSON.
    ClusterStatus,
    /// `/sync_status`: JSON.
    SyncStatus,
    /// `/get_table`: JSON.
    Table,
    /// The consensus lines of `/metrics`: Prometheus text.
    Metrics,
}

impl Report {
    /// Its byte on the local protocol.
    pub fn code(self) -> u8 {
        match self {
            Report::ClusterStatus => 1,
            Report::SyncStatus => 2,
            Report::Table => 3,
            Report::Metrics => 4,
        }
    }

    /// The report of a byte of the local protocol, `None` for an unknown one.
    pub fn from_code(code: u8) -> Option<Report> {
        Some(match code {
            1 => Report::ClusterStatus,
            2 => Report::SyncStatus,
            3 => Report::Table,
            4 => Report::Metrics,
            _ => return None,
        })
    }

    /// The reply's `Content-Type`: the JSON reports are labelled `text/plain` as every body of
    /// the kv API is (kv-api.md D18, kept from the original, whose `/get_table` a single node
    /// answers the same way); the metrics in Prometheus's text format.
    pub fn content_type(self) -> &'static str {
        match self {
            Report::Metrics => "text/plain; version=0.0.4",
            _ => "text/plain",
        }
    }
}

/// A JSON string literal of `s`: quotes, backslashes and control characters escaped (names
/// are plain, but addresses and the cluster's name come from the conf).
fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON string of `s`.
fn string(s: &str) -> String {
    let mut out = String::new();
    push_str(&mut out, s);
    out
}

/// A JSON number, or `null` for `None`.
fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}

/// A JSON array of already-encoded values.
fn array(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(","))
}

/// The role a group's state reads as.
fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "none",
    }
}

/// A Prometheus metric: its HELP and TYPE lines, then its samples (`labels`, value).
fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    for (labels, v) in samples {
        out.push_str(&format!("{name}{labels} {v}\n"));
    }
}

impl Node {
    /// The body of `what`, as this node sees the cluster now.
    pub async fn report(&self, what: Report) -> String {
        let groups = self.status().await;
        match what {
            Report::ClusterStatus => self.cluster_status(&groups),
            Report::SyncStatus => self.sync_status(&groups),
            Report::Table => self.table(&groups),
            Report::Metrics => self.metrics_text(&groups),
        }
    }

    /// A node's name in the conf (its index when out of range: never from a sane peer).
    fn name_of(&self, n: NodeId) -> String {
        let named = usize::try_from(n)
            .ok()
            .and_then(|i| self.roster.nodes.get(i));
        named.map_or_else(|| n.to_string(), |(name, _, _)| name.clone())
    }

    fn opt_name(&self, n: Option<NodeId>) -> String {
        n.map_or_else(|| "null".into(), |n| string(&self.name_of(n)))
    }

    /// The members of `group`: from its membership where this node replicates it, else from
    /// the placement.
    fn members_of(&self, group: u32, st: Option<&GroupStatus>) -> Vec<NodeId> {
        match st {
            Some(st) if !st.members.is_empty() => st.members.clone(),
            _ => self
                .placement
                .members(group)
                .iter()
                .map(|&m| m as NodeId)
                .collect(),
        }
    }

    /// `/cluster/status`: the nodes (`last_contact_ms`: how long ago this node last got an
    /// answer from it, `null` never; 0 for itself) and every group, with this node's role in
    /// it (`none` where it is not a member) and, on its leader, each follower's lag.
    fn cluster_status(&self, groups: &[GroupStatus]) -> String {
        let now = unix_ms();
        let nodes = self.roster.nodes.iter().enumerate().map(|(i, (name, client, peer))| {
            let (reachable, age) = if i as NodeId == self.id() {
                (true, Some(0))
            } else {
                let c = self.contact(i as NodeId);
                let age = (c.last_answer_ms > 0).then(|| now.saturating_sub(c.last_answer_ms));
                (c.reachable(), age)
            };
            format!(
                "{{\"name\":{},\"client\":{},\"peer\":{},\"reachable\":{reachable},\"last_contact_ms\":{}}}",
                string(name),
                string(client),
                string(peer),
                opt(age)
            )
        });
        let rows = (0..self.placement.groups()).map(|g| {
            let st = groups.iter().find(|s| s.group == g);
            let slots = self.placement.slots_of_group(g);
            let members = array(self.members_of(g, st).into_iter().map(|m| string(&self.name_of(m))));
            let mut row = format!(
                "{{\"group\":{g},\"slots\":[{},{}],\"members\":{members}",
                slots.start, slots.end
            );
            match st {
                None => row.push_str(
                    ",\"leader\":null,\"term\":null,\"last_log_index\":null,\"committed\":null,\"applied\":null,\"role\":\"none\",\"followers\":[]",
                ),
                Some(st) => {
                    let last = st.last_log_index.unwrap_or(0);
                    let followers = st.followers.iter().map(|(n, matched)| {
                        format!(
                            "{{\"node\":{},\"matched\":{},\"lag\":{}}}",
                            string(&self.name_of(*n)),
                            opt(*matched),
                            last.saturating_sub(matched.unwrap_or(0))
                        )
                    });
                    row.push_str(&format!(
                        ",\"leader\":{},\"term\":{},\"last_log_index\":{},\"committed\":{},\"applied\":{},\"role\":\"{}\",\"followers\":{}",
                        self.opt_name(st.leader),
                        st.term,
                        opt(st.last_log_index),
                        opt(st.committed_index),
                        opt(st.applied_index),
                        role(st.state),
                        array(followers)
                    ));
                }
            }
            row.push('}');
            row
        });
        format!(
            "{{\"node\":{},\"cluster\":{},\"nodes\":{},\"groups\":{}}}",
            string(&self.name_of(self.id())),
            string(&self.roster.cluster),
            array(nodes),
            array(rows)
        )
    }

    /// `/sync_status` in the original's shape, per node by client address: `processed_items`
    /// the committed entries it has not applied, `synced_items` those it has not received,
    /// as far as this node knows (its own groups; the others' replication where it leads).
    fn sync_status(&self, groups: &[GroupStatus]) -> String {
        let n = self.roster.nodes.len();
        let (mut processed, mut synced) = (vec![0u64; n], vec![0u64; n]);
        let this = self.id() as usize;
        for st in groups {
            let committed = st.committed_index.unwrap_or(0);
            if let Some(p) = processed.get_mut(this) {
                *p += committed.saturating_sub(st.applied_index.unwrap_or(0));
            }
            for (f, matched) in &st.followers {
                if let Some(s) = usize::try_from(*f).ok().and_then(|i| synced.get_mut(i)) {
                    *s += committed.saturating_sub(matched.unwrap_or(0));
                }
            }
        }
        let status = self
            .roster
            .nodes
            .iter()
            .enumerate()
            .map(|(i, (_, client, _))| {
                format!(
                    "{}:{{\"processed_items\":{},\"synced_items\":{}}}",
                    string(client),
                    processed[i],
                    synced[i]
                )
            });
        format!(
            "{{\"status\":{{{}}},\"total_status\":{{\"processed_items\":{},\"synced_items\":{}}}}}",
            status.collect::<Vec<_>>().join(","),
            processed.iter().sum::<u64>(),
            synced.iter().sum::<u64>()
        )
    }

    /// `/get_table`: the original's items (a `[start,end)` range of buckets and the client
    /// addresses of its nodes), each with its group, members, leader (as this node knows it)
    /// and membership epoch (the index of the membership's log entry, 0 when not known here).
    fn table(&self, groups: &[GroupStatus]) -> String {
        let items = (0..self.placement.groups()).map(|g| {
            let st = groups.iter().find(|s| s.group == g);
            let slots = self.placement.slots_of_group(g);
            let members = self.members_of(g, st);
            let client = |m: &NodeId| {
                let node = usize::try_from(*m).ok().and_then(|i| self.roster.nodes.get(i));
                string(node.map_or("", |(_, c, _)| c.as_str()))
            };
            format!(
                "{{\"item\":{{\"key\":[{},{}],\"val\":{}}},\"group\":{g},\"members\":{},\"leader\":{},\"epoch\":{}}}",
                slots.start,
                slots.end,
                array(members.iter().map(client)),
                array(members.iter().map(|m| string(&self.name_of(*m)))),
                self.opt_name(st.and_then(|s| s.leader)),
                st.and_then(|s| s.membership_index).unwrap_or(0)
            )
        });
        format!("{{\"table\":{}}}", array(items))
    }

    /// The consensus lines of `/metrics` (Prometheus text exposition).
    fn metrics_text(&self, groups: &[GroupStatus]) -> String {
        let per_group = |f: &dyn Fn(&GroupStatus) -> u64| -> Vec<(String, u64)> {
            groups
                .iter()
                .map(|g| (format!("{{group=\"{}\"}}", g.group), f(g)))
                .collect()
        };
        let one = |v: u64| vec![(String::new(), v)];
        let c = self.counters();
        let (file, live) = self.log_sizes();
        let (syncs, entries) = self.log_counts();
        let (applies, apply_commits) = self.apply_counts();
        let mut out = String::new();
        let lag = |g: &GroupStatus| {
            let applied = g.applied_index.unwrap_or(0);
            g.committed_index.unwrap_or(0).saturating_sub(applied)
        };
        let leader = |g: &GroupStatus| u64::from(g.state == ServerState::Leader);
        let m = &mut out;
        metric(
            m,
            "huststore_cluster_term",
            "gauge",
            "The Raft term of each group this node replicates.",
            &per_group(&|g| g.term),
        );
        metric(
            m,
            "huststore_cluster_leader",
            "gauge",
            "1 where this node leads the group.",
            &per_group(&leader),
        );
        metric(
            m,
            "huststore_cluster_apply_lag",
            "gauge",
            "Committed entries of the group not yet applied here.",
            &per_group(&lag),
        );
        metric(
            m,
            "huststore_cluster_applied_index",
            "gauge",
            "The last log index applied here.",
            &per_group(&|g| g.applied_index.unwrap_or(0)),
        );
        metric(
            m,
            "huststore_cluster_leader_changes_total",
            "counter",
            "Times a group of this node learned of a new leader.",
            &one(c.leader_changes.get()),
        );
        metric(
            m,
            "huststore_cluster_proposals_total",
            "counter",
            "Commands proposed to a Raft on this node.",
            &one(c.proposals.get()),
        );
        metric(
            m,
            "huststore_cluster_proposal_entries_total",
            "counter",
            "Log entries of client writes proposed on this node (one carries the writes to its group that waited meanwhile).",
            &one(c.proposal_entries.get()),
        );
        metric(
            m,
            "huststore_cluster_commits_total",
            "counter",
            "Committed log entries applied to this node's store.",
            &one(c.applied.get()),
        );
        metric(
            m,
            "huststore_cluster_log_bytes",
            "gauge",
            "Size of this node's consensus log file.",
            &one(file),
        );
        metric(
            m,
            "huststore_cluster_log_live_bytes",
            "gauge",
            "Bytes of the live records of the consensus log.",
            &one(live),
        );
        metric(
            m,
            "huststore_cluster_snapshots_sent_total",
            "counter",
            "Snapshots sent whole to followers.",
            &one(c.snapshots_sent.get()),
        );
        metric(
            m,
            "huststore_cluster_snapshots_received_total",
            "counter",
            "Snapshots received whole from leaders.",
            &one(c.snapshots_received.get()),
        );
        metric(
            m,
            "huststore_cluster_forwarded_total",
            "counter",
            "Writes forwarded to another node.",
            &one(c.forwarded.get()),
        );
        metric(
            m,
            "huststore_cluster_read_index_total",
            "counter",
            "Read indexes asked of a leader (linearizable reads on a follower).",
            &one(c.read_index_asked.get()),
        );
        metric(
            m,
            "huststore_cluster_read_index_served_total",
            "counter",
            "Read indexes answered as a leader.",
            &one(c.read_index_served.get()),
        );
        metric(
            m,
            "huststore_cluster_read_barriers_total",
            "counter",
            "Linearizable read barriers asked by this node's workers.",
            &one(c.read_barriers.get()),
        );
        metric(
            m,
            "huststore_cluster_leader_checks_total",
            "counter",
            "Leadership confirmations run for reads (each serves every read waiting when it starts).",
            &one(c.leader_checks.get()),
        );
        metric(
            m,
            "huststore_cluster_peer_connects_total",
            "counter",
            "Connections opened to other nodes (requests reuse idle ones first).",
            &one(c.peer_connects.get()),
        );
        metric(
            m,
            "huststore_cluster_log_syncs_total",
            "counter",
            "fdatasyncs of the consensus log (one covers every write pending then).",
            &one(syncs),
        );
        metric(
            m,
            "huststore_cluster_log_entries_total",
            "counter",
            "Entries written to the consensus log, every group (per sync: the group commit's depth).",
            &one(entries),
        );
        metric(
            m,
            "huststore_cluster_applies_total",
            "counter",
            "Applies of committed entries to this node's store (one per group and batch of entries).",
            &one(applies),
        );
        metric(
            m,
            "huststore_cluster_apply_commits_total",
            "counter",
            "Store commits of those applies (one covers every group's apply pending then).",
            &one(apply_commits),
        );
        metric(
            m,
            "huststore_cluster_expired_purged_total",
            "counter",
            "Expired records purged by this node's proposals as a leader.",
            &one(c.expiry_purges.get()),
        );
        metric(
            m,
            "huststore_cluster_refused_503_total",
            "counter",
            "Client requests answered 503 (certainly not applied).",
            &one(c.refused_503.get()),
        );
        metric(
            m,
            "huststore_cluster_unknown_504_total",
            "counter",
            "Client requests answered 504 (outcome unknown).",
            &one(c.unknown_504.get()),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        assert_eq!(string("127.0.0.1:80"), "\"127.0.0.1:80\"");
        assert_eq!(opt(None), "null");
        assert_eq!(array(["1".to_string(), "2".to_string()]), "[1,2]");
    }

    #[test]
    fn codes_round_trip_and_unknown_codes_are_refused() {
        for r in [
            Report::ClusterStatus,
            Report::SyncStatus,
            Report::Table,
            Report::Metrics,
        ] {
            assert_eq!(Report::from_code(r.code()), Some(r));
        }
        assert_eq!(Report::from_code(0), None);
        assert_eq!(Report::from_code(200), None);
    }
}
