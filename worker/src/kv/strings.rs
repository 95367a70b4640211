//! Plain kv records (`kv-api.md` §3): `/put`, `/get` (and `/get2`), `/exist`, `/del`, `/keys`.

use super::{
    apply, key, list_query, listing, only_zero, present, read_error, read_ok, ttl, val_or_body,
    ver, Check, KvService,
};
use crate::http::Response;
use crate::outq::OWN_CHUNK_MIN;
use crate::service::{Pass, Request};
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
pub fn get(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    Ok(
        match pass
            .batch
            .get_for_reply(key(req)?, pass.now_ms, OWN_CHUNK_MIN)
        {
            Ok((ver, ReplyValue::Copied(value))) => read_ok(ver, value),
            Ok((ver, ReplyValue::InPlace(value))) => {
                Response::text_lent(value).header("Version", ver)
            }
            Err(e) => read_error(e),
        },
    )
}

pub fn exist(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    Ok(present(pass.batch.exist(key(req)?, pass.now_ms)))
}

pub fn del(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (k, ve) = (key(req)?, ver(req)?);
    Ok(apply(pass, Write::Del { key: k, ver: ve }))
}

pub fn keys(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    only_zero(req, "file")?;
    only_zero(req, "peer")?;
    let q = list_query(req)?;
    Ok(listing(pass.batch.keys(&q, pass.now_ms)))
}
