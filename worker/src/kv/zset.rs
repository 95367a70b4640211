//! Sorted sets (`kv-api.md` §6): `/zadd`, `/zrem`, `/zismember`, `/zscore` (and `/zscore2`),
//! `/zrangebyrank`, `/zrangebyscore`.

use super::replicated::{compare, gate, Compare};
use super::{
    apply, bad, group_of, key_or_body, list_query, listing, present, read_error, read_ok,
    required_i64, table, ttl, ver, Check, KvService,
};
use crate::http::Response;
use crate::service::{Pass, Request};
use cluster::placement::Target;
use storage::ZaddMode;
use storage::{expires_at, Write};

pub fn zadd(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let tb = table(req)?;
    let score = required_i64(req, "score")?;
    let m = key_or_body(req)?;
    let mode = match req.params.get("opt") {
        None => ZaddMode::Set,
        Some(b"0") => ZaddMode::Set,
        Some(b"1") => ZaddMode::Add,
        Some(b"-1") => ZaddMode::Subtract,
        Some(_) => return Err(bad()),
    };
    let (t, ve) = (ttl(req)?, ver(req)?);
    let expires_at = expires_at(t, pass.now_ms);
    Ok(apply(
        pass,
        Write::Zadd {
            tb,
            member: m,
            score,
            mode,
            expires_at,
            ver: ve,
        },
    ))
}

pub fn zrem(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, m, ve) = (table(req)?, key_or_body(req)?, ver(req)?);
    Ok(apply(
        pass,
        Write::Zrem {
            tb,
            member: m,
            ver: ve,
        },
    ))
}

pub fn zismember(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, m) = (table(req)?, key_or_body(req)?);
    gate(kv, req, "/zismember", group_of(kv, Target::Table(tb)), true)?;
    Ok(present(pass.batch.zismember(tb, m, pass.now_ms)))
}

pub fn zscore(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, m) = (table(req)?, key_or_body(req)?);
    gate(kv, req, "/zscore", group_of(kv, Target::Table(tb)), true)?;
    Ok(match pass.batch.zscore(tb, m, pass.now_ms) {
        Ok((v, s)) => read_ok(v, s.to_string().into_bytes()),
        Err(e) => read_error(e),
    })
}

/// `/zscore` on a single node; every replica's, compared, in a cluster.
pub fn zscore2(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, _) = (table(req)?, key_or_body(req)?);
    let group = group_of(kv, Target::Table(tb));
    compare(kv, req, "/zscore", group, Compare::Value, zscore)?;
    zscore(kv, req, pass)
}

pub fn zrangebyrank(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let tb = table(req)?;
    let q = list_query(req)?;
    gate(
        kv,
        req,
        "/zrangebyrank",
        group_of(kv, Target::Table(tb)),
        false,
    )?;
    Ok(listing(pass.batch.zrange_by_rank(tb, &q, pass.now_ms)))
}

pub fn zrangebyscore(kv: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let tb = table(req)?;
    let (min, max) = (required_i64(req, "min")?, required_i64(req, "max")?);
    if min > max {
        return Err(bad());
    }
    let q = list_query(req)?;
    gate(
        kv,
        req,
        "/zrangebyscore",
        group_of(kv, Target::Table(tb)),
        false,
    )?;
    Ok(listing(pass.batch.zrange_by_score(
        tb,
        min,
        max,
        &q,
        pass.now_ms,
    )))
}
