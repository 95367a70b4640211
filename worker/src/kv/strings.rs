//! Plain kv records (`kv-api.md` §3): `/put`, `/get` (and `/get2`), `/exist`, `/del`, `/keys`.

use super::replicated::{compare, gate, Compare};
use super::{
    apply, empty_listing, group_of, key, list_query, listing, only_zero, peer, present, read_error,
    read_ok, ttl, val_or_body, ver, Check, KvService,
};
use crate::http::Response;
use crate::outq::OWN_CHUNK_MIN;
use crate::service::{Pass, Request};
use cluster::placement::Target;
use storage::ReplyValue;
use storage::{expires_at, Write};

pub fn put(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (k, v, t, ve) = (key(req)?, val_or_body(req)?, ttl(req)?, ver(req)?);
    let expires_at = expires_at(t, pass.now_ms);
    Ok(apply(
        pass,
        Write::Put {
            key: k,
            val: v,
            expires_at,
            ver: ve,
        },
    ))
}

/// Large values are lent from the map for the rest of the pass instead of copied (see `outq`).
pub fn get(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let k = key(req)?;
    gate(kv, req, "/get", group_of(kv, Target::Key(k)), false)?;
    Ok(
        match pass.batch.get_for_reply(k, pass.now_ms, OWN_CHUNK_MIN) {
            Ok((ver, ReplyValue::Copied(value))) => read_ok(ver, value),
            Ok((ver, ReplyValue::InPlace(value))) => {
                Response::text_lent(value).header("Version", ver)
            }
            Err(e) => read_error(e),
        },
    )
}

/// `/get` on a single node; every replica's `/get`, compared, in a cluster.
pub fn get2(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let k = key(req)?;
    let group = group_of(kv, Target::Key(k));
    compare(kv, req, "/get", group, Compare::Value, get)?;
    get(kv, req, pass)
}

pub fn exist(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let k = key(req)?;
    gate(kv, req, "/exist", group_of(kv, Target::Key(k)), false)?;
    Ok(present(pass.batch.exist(k, pass.now_ms)))
}

pub fn del(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (k, ve) = (key(req)?, ver(req)?);
    Ok(apply(pass, Write::Del { key: k, ver: ve }))
}

/// In a cluster, `peer=g` (default 0) lists group `g`'s slots only (`cluster.md` §5).
pub fn keys(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    only_zero(req, "file")?;
    let group = peer(kv, req)?.unwrap_or(0);
    let mut q = list_query(req)?;
    if let Some(slots) = kv.cluster.as_ref().map(|c| c.slots_of(group)) {
        q.start = q.start.max(slots.start);
        q.end = q.end.min(slots.end);
        if q.start >= q.end {
            return Ok(empty_listing());
        }
        gate(kv, req, "/keys", group, false)?;
    }
    Ok(listing(pass.batch.keys(&q, pass.now_ms)))
}
