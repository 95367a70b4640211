//! Cluster / HA administration (`kv-api.md` §9): `/peer_count`, `/get_table`, `/set_table`
//! (refused until the cluster phase), `/sync_status`, `/sync_alive`, and `/cluster/status`
//! (`cluster.md` §5). A single node answers as a one-node cluster; in cluster mode
//! `/peer_count` is the number of groups and the reports are the cluster helper's, relayed.

use super::replicated::report;
use super::{Check, KvService};
use crate::http::Response;
use crate::service::{Pass, Request};
use cluster::report::Report;

pub fn peer_count(kv: &mut KvService, _: &Request, _: &mut Pass) -> Check<Response> {
    let groups = kv.cluster.as_ref().map_or(1, |c| c.groups);
    Ok(Response::text(groups.to_string()))
}

/// One item covering every bucket, with this node as both replicas.
pub fn get_table(kv: &mut KvService, _: &Request, _: &mut Pass) -> Check<Response> {
    report(kv, Report::Table)?;
    Ok(Response::text(format!(
        "{{\"table\":[{{\"item\":{{\"key\":[0,1024],\"val\":[\"{0}\",\"{0}\"]}}}}]}}",
        kv.node
    )))
}

pub fn set_table(_: &mut KvService, _: &Request, _: &mut Pass) -> Check<Response> {
    Ok(Response::empty(501))
}

pub fn sync_status(kv: &mut KvService, _: &Request, _: &mut Pass) -> Check<Response> {
    report(kv, Report::SyncStatus)?;
    Ok(Response::text(
        "{\"status\":{},\"total_status\":{\"processed_items\":0,\"synced_items\":0}}",
    ))
}

pub fn sync_alive(_: &mut KvService, _: &Request, _: &mut Pass) -> Check<Response> {
    Ok(Response::text("ok\n"))
}

/// This node's view of the cluster; a single node is no cluster (`404`).
pub fn cluster_status(kv: &mut KvService, _: &Request, _: &mut Pass) -> Check<Response> {
    report(kv, Report::ClusterStatus)?;
    Ok(Response::empty(404))
}
