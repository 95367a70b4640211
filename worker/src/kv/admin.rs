//! Cluster / HA administration (`kv-api.md` §9), as a one-node cluster answers: `/peer_count`,
//! `/get_table`, `/set_table` (refused until the cluster phase), `/sync_status`, `/sync_alive`.

use super::{Check, KvService};
use crate::http::Response;
use crate::service::{Pass, Request};

pub fn peer_count(_: &mut KvService, _: &Request, _: &mut Pass) -> Check<Response> {
    Ok(Response::text("1"))
}

/// One item covering every bucket, with this node as both replicas.
pub fn get_table(kv: &mut KvService, _: &Request, _: &mut Pass) -> Check<Response> {
    Ok(Response::text(format!(
        "{{\"table\":[{{\"item\":{{\"key\":[0,1024],\"val\":[\"{0}\",\"{0}\"]}}}}]}}",
        kv.node
    )))
}

pub fn set_table(_: &mut KvService, _: &Request, _: &mut Pass) -> Check<Response> {
    Ok(Response::empty(501))
}

pub fn sync_status(_: &mut KvService, _: &Request, _: &mut Pass) -> Check<Response> {
    Ok(Response::text(
        "{\"status\":{},\"total_status\":{\"processed_items\":0,\"synced_items\":0}}",
    ))
}

pub fn sync_alive(_: &mut KvService, _: &Request, _: &mut Pass) -> Check<Response> {
    Ok(Response::text("ok\n"))
}
