//! Hash tables (`kv-api.md` §4): `/hset`, `/hget` (and `/hget2`), `/hexist`, `/hdel`,
//! `/hincrby`, `/hkeys`.

use super::{
    apply, key, list_query, listing, only_zero, present, read_error, read_ok, required_i64, table,
    ttl, val_or_body, ver, Check, KvService,
};
use crate::http::Response;
use crate::service::{Pass, Request};
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

pub fn hget(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, k) = (table(req)?, key(req)?);
    Ok(match pass.batch.hget(tb, k, pass.now_ms) {
        Ok(r) => read_ok(r.ver, r.value),
        Err(e) => read_error(e),
    })
}

pub fn hexist(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, k) = (table(req)?, key(req)?);
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

pub fn hkeys(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let tb = table(req)?;
    only_zero(req, "peer")?;
    let q = list_query(req)?;
    Ok(listing(pass.batch.hkeys(tb, &q, pass.now_ms)))
}
