//! What a node reports of the cluster to the HTTP side (`cluster.md` §5): the bodies of
//! `/cluster/status`, `/sync_status` and `/get_table`, and the consensus figures appended to
//! `/metrics`. The helper answers a worker's `Report` frame with [`Node::report`]; the worker
//! relays the text as the reply's body. Built here, where the groups' metrics are, so that the
//! worker never knows openraft's types.

use crate::node::Node;

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

    /// The reply's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Report::Metrics => "text/plain; version=0.0.4",
            _ => "application/json",
        }
    }
}

impl Node {
    /// The body of `what`, as this node sees the cluster now.
    pub async fn report(&self, what: Report) -> String {
        // The first cut: each group's raw figures. The full shapes of cluster.md §5 replace it.
        let groups = self.status().await;
        match what {
            Report::Metrics => groups
                .iter()
                .map(|g| {
                    format!(
                        "huststore_cluster_term{{group=\"{}\"}} {}\n",
                        g.group, g.term
                    )
                })
                .collect(),
            _ => {
                let rows: Vec<String> = groups
                    .iter()
                    .map(|g| {
                        format!(
                            "{{\"group\":{},\"leader\":{},\"term\":{}}}",
                            g.group,
                            g.leader.map_or("null".to_string(), |l| l.to_string()),
                            g.term
                        )
                    })
                    .collect();
                format!("{{\"groups\":[{}]}}", rows.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
