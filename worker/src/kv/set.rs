//! Sets (`kv-api.md` §5): `/sadd`, `/srem`, `/sismember` (and `/sismember2`), `/smembers`.

use super::replicated::{compare, gate, Compare};
use super::{
    apply, empty_listing, group_of, key_or_body, list_query, listing, peer, present, table, ttl,
    ver, Check, KvService,
};
use crate::http::Response;
use crate::service::{Pass, Request};
use cluster::placement::Target;
use storage::{expires_at, Write};

pub fn sadd(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, m, t, ve) = (table(req)?, key_or_body(req)?, ttl(req)?, ver(req)?);
    let expires_at = expires_at(t, pass.now_ms);
    Ok(apply(
        pass,
        Write::Sadd {
            tb,
            member: m,
            expires_at,
            ver: ve,
        },
    ))
}

pub fn srem(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, m, ve) = (table(req)?, key_or_body(req)?, ver(req)?);
    Ok(apply(
        pass,
        Write::Srem {
            tb,
            member: m,
            ver: ve,
        },
    ))
}

pub fn sismember(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, m) = (table(req)?, key_or_body(req)?);
    gate(kv, req, "/sismember", group_of(kv, Target::Table(tb)), true)?;
    Ok(present(pass.batch.sismember(tb, m, pass.now_ms)))
}

/// `/sismember` on a single node; every replica's, compared, in a cluster.
pub fn sismember2(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, _) = (table(req)?, key_or_body(req)?);
    let group = group_of(kv, Target::Table(tb));
    compare(kv, req, "/sismember", group, Compare::Member, sismember)?;
    sismember(kv, req, pass)
}

/// In a cluster, `peer=g` lists the set only when it lives in group `g` (`cluster.md` §5).
pub fn smembers(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let tb = table(req)?;
    let only = peer(kv, req)?;
    let q = list_query(req)?;
    let group = group_of(kv, Target::Table(tb));
    if only.is_some_and(|g| g != group) {
        return Ok(empty_listing());
    }
    gate(kv, req, "/smembers", group, false)?;
    Ok(listing(pass.batch.smembers(tb, &q, pass.now_ms)))
}
