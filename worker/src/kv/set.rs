//! Sets (`kv-api.md` §5): `/sadd`, `/srem`, `/sismember` (and `/sismember2`), `/smembers`.

use super::{
    apply, key_or_body, list_query, listing, only_zero, present, table, ttl, ver, Check, KvService,
};
use crate::http::Response;
use crate::service::{Pass, Request};
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
