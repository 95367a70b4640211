//! Hash tables (`kv-api.md` §4): `/hset`, `/hget` (and `/hget2`), `/hexist`, `/hdel`,
//! `/hincrby`, `/hkeys`.

use super::replicated::{compare, gate, Compare};
use super::{
    apply, empty_listing, group_of, key, list_query, listing, peer, present, read_error, read_ok,
    required_i64, table, ttl, val_or_body, ver, Check, KvService,
};
use crate::http::Response;
use crate::service::{Pass, Request};
use cluster::placement::Target;
use storage::{expires_at, Write};

pub fn hset(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, k, v) = (table(req)?, key(req)?, val_or_body(req)?);
    let (t, ve) = (ttl(req)?, ver(req)?);
    let expires_at = expires_at(t, pass.now_ms);
    Ok(apply(
        pass,
        Write::Hset {
            tb,
            key: k,
            val: v,
            expires_at,
            ver: ve,
        },
    ))
}

pub fn hget(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, k) = (table(req)?, key(req)?);
    gate(kv, req, "/hget", group_of(kv, Target::Table(tb)), false)?;
    Ok(match pass.batch.hget(tb, k, pass.now_ms) {
        Ok(r) => read_ok(r.ver, r.value),
        Err(e) => read_error(e),
    })
}

/// `/hget` on a single node; every replica's `/hget`, compared, in a cluster.
pub fn hget2(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, _) = (table(req)?, key(req)?);
    let group = group_of(kv, Target::Table(tb));
    compare(kv, req, "/hget", group, Compare::Value, hget)?;
    hget(kv, req, pass)
}

pub fn hexist(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, k) = (table(req)?, key(req)?);
    gate(kv, req, "/hexist", group_of(kv, Target::Table(tb)), false)?;
    Ok(present(pass.batch.hexist(tb, k, pass.now_ms)))
}

pub fn hdel(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, k, ve) = (table(req)?, key(req)?, ver(req)?);
    Ok(apply(
        pass,
        Write::Hdel {
            tb,
            key: k,
            ver: ve,
        },
    ))
}

pub fn hincrby(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, k) = (table(req)?, key(req)?);
    let delta = required_i64(req, "val")?;
    let (t, ve) = (ttl(req)?, ver(req)?);
    let expires_at = expires_at(t, pass.now_ms);
    Ok(apply(
        pass,
        Write::Hincrby {
            tb,
            key: k,
            delta,
            expires_at,
            ver: ve,
        },
    ))
}

/// In a cluster, `peer=g` lists the table only when it lives in group `g` (`cluster.md` §5).
pub fn hkeys(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let tb = table(req)?;
    let only = peer(kv, req)?;
    let q = list_query(req)?;
    let group = group_of(kv, Target::Table(tb));
    if only.is_some_and(|g| g != group) {
        return Ok(empty_listing());
    }
    gate(kv, req, "/hkeys", group, false)?;
    Ok(listing(pass.batch.hkeys(tb, &q, pass.now_ms)))
}
