//! Sets (`kv-api.md` §5): `/sadd`, `/srem`, `/sismember` (and `/sismember2`), `/smembers`.

use super::{
    key_or_body, list_query, listing, only_zero, present, table, ttl, ver, written, Check,
    KvService,
};
use crate::http::Response;
use crate::service::{Pass, Request};

pub fn sadd(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, m, t, ve) = (table(req)?, key_or_body(req)?, ttl(req)?, ver(req)?);
    Ok(written(pass.batch.sadd(tb, m, t, ve, pass.now_ms)))
}

pub fn srem(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, m, ve) = (table(req)?, key_or_body(req)?, ver(req)?);
    Ok(written(pass.batch.srem(tb, m, ve, pass.now_ms)))
}

pub fn sismember(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, m) = (table(req)?, key_or_body(req)?);
    Ok(present(pass.batch.sismember(tb, m, pass.now_ms)))
}

pub fn smembers(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let tb = table(req)?;
    only_zero(req, "peer")?;
    let q = list_query(req)?;
    Ok(listing(pass.batch.smembers(tb, &q, pass.now_ms)))
}
