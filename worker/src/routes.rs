//! The route table: one static list per mode, each row naming a path, the methods it takes,
//! what it does ([`Kind`]), whether it sits behind auth, and the function that serves it. The
//! generic checks (auth `401`, path `404`, method `405` with `Allow`) run here once, before any
//! handler sees the request. A row's index in its table is its metrics label.
//!
//! Handlers live by family: `kv/*.rs` and `mq_service/*.rs` per mode, [`health`] for the paths
//! both modes share. This module knows nothing of their parameters or replies.

use crate::auth::{Users, CHALLENGE};
use crate::conn::Outcome;
use crate::http::{Method, Response};
use crate::service::{ConnRef, Pass, Request, Service};
use crate::{kv, mq_service};

pub mod health;
pub mod openapi;
#[cfg(test)]
mod spec;

/// Methods a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Methods {
    GetPost,
    GetPostPut,
    Get,
    GetPostPutMq,
    Post,
}

impl Methods {
    pub fn allows(self, m: Method) -> bool {
        match self {
            Methods::GetPost => matches!(m, Method::Get | Method::Post),
            Methods::GetPostPut | Methods::GetPostPutMq => {
                matches!(m, Method::Get | Method::Post | Method::Put)
            }
            Methods::Get => m == Method::Get,
            Methods::Post => m == Method::Post,
        }
    }

    /// The `Allow` header of a `405`.
    pub fn allow_header(self) -> &'static str {
        match self {
            Methods::GetPost => "GET, POST",
            Methods::GetPostPut | Methods::GetPostPutMq => "GET, POST, PUT",
            Methods::Get => "GET",
            Methods::Post => "POST",
        }
    }
}

/// What a row does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reads the store, the cache or the queues and changes nothing.
    Read,
    /// Changes what later requests see (store, cache, queues, RPC slots).
    Write,
    /// `/status.html`, `/version`, `/metrics`: answered from the worker's own state.
    Health,
    /// Answers without the store: a one-node cluster's fixed answers (kv §9), mq's no-op.
    Admin,
    /// Test-only (`debug_endpoints on`): not in the table otherwise, nor in the specs.
    Debug,
}

/// The function a row leads to.
#[derive(Debug, Clone, Copy)]
pub enum Handler {
    /// Called before the query is decoded, and without it: a health check with a malformed
    /// `%` escape still gets its answer.
    Health(health::Handler),
    /// Called once the query is decoded (a malformed escape is the mode's `400` first).
    Request(RequestHandler),
}

/// A handler of a decoded request.
#[derive(Debug, Clone, Copy)]
pub enum RequestHandler {
    Kv(kv::Handler),
    Mq(mq_service::Handler),
    /// The test-only rows of both modes.
    Debug(health::DebugHandler),
}

impl RequestHandler {
    /// Serves the request with the mode's service.
    pub fn call(
        self,
        req: &Request<'_>,
        who: ConnRef,
        service: &mut dyn Service,
        pass: &mut Pass<'_, '_>,
    ) -> Outcome {
        // The loop holds its mode's service as a trait object, and `Service` cannot take the
        // handlers (they name the services implementing it: a module cycle), so a handler
        // gets its concrete service back from the trait object.
        let any: &mut dyn std::any::Any = &mut *service;
        match self {
            RequestHandler::Debug(debug) => debug(req, service, pass),
            RequestHandler::Kv(handler) => match any.downcast_mut() {
                Some(kv) => kv::call(handler, kv, req, who, pass),
                None => wrong_mode(),
            },
            RequestHandler::Mq(handler) => match any.downcast_mut() {
                Some(mq) => mq_service::call(handler, mq, req, who, pass),
                None => wrong_mode(),
            },
        }
    }
}

/// A worker serves one mode and routes through that mode's table only, which holds only that
/// mode's handlers (`tables_hold_their_own_modes_handlers`): this is never reached.
fn wrong_mode() -> Outcome {
    Outcome::Reply(Response::empty(404))
}

/// One row of a route table.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub path: &'static str,
    pub methods: Methods,
    pub kind: Kind,
    /// Open rows are never behind auth (the two health paths).
    pub open: bool,
    pub handler: Handler,
}

const fn kv(path: &'static str, methods: Methods, kind: Kind, h: kv::Handler) -> Route {
    Route {
        path,
        methods,
        kind,
        open: false,
        handler: Handler::Request(RequestHandler::Kv(h)),
    }
}

const fn mq(path: &'static str, methods: Methods, kind: Kind, h: mq_service::Handler) -> Route {
    Route {
        path,
        methods,
        kind,
        open: false,
        handler: Handler::Request(RequestHandler::Mq(h)),
    }
}

const fn health(path: &'static str, methods: Methods, h: health::Handler) -> Route {
    Route {
        path,
        methods,
        kind: Kind::Health,
        open: false,
        handler: Handler::Health(h),
    }
}

const fn debug(path: &'static str, methods: Methods, h: health::DebugHandler) -> Route {
    Route {
        path,
        methods,
        kind: Kind::Debug,
        open: false,
        handler: Handler::Request(RequestHandler::Debug(h)),
    }
}

/// The row without auth.
const fn open(route: Route) -> Route {
    Route {
        open: true,
        ..route
    }
}

use kv::{admin, cache, hash, set, stat, strings, zset};
use mq_service::{longpoll, pubsub, queue, rpc};
use Kind::{Admin as A, Read as R, Write as W};
use Methods::{Get as G, GetPost as GP, GetPostPut as GPP, GetPostPutMq as GPPM, Post as P};

// The rows of both modes (`ops.md`), at the end of each table.
const VERSION: Route = open(health("/version", GP, health::version));
const STATUS: Route = open(health("/status.html", GP, health::status));
const METRICS: Route = health("/metrics", G, health::metrics);
// The mode's OpenAPI document (huststore(8)): kv and mq have one each.
const OPENAPI_KV: Route = health("/openapi.json", G, openapi::kv);
const OPENAPI_MQ: Route = health("/openapi.json", G, openapi::mq);
const DEBUG_SLEEP: Route = debug("/debug/sleep", GP, health::debug_sleep);

/// kv mode (`kv-api.md` §1), plus `/metrics` (`ops.md`), `/openapi.json` (huststore(8)) and the
/// test-only `/debug/sleep`.
pub static KV_ROUTES: &[Route] = &[
    kv("/put", GPP, W, strings::put),
    kv("/get", GP, R, strings::get),
    kv("/get2", GP, R, strings::get2),
    kv("/exist", GP, R, strings::exist),
    kv("/del", GP, W, strings::del),
    kv("/keys", GP, R, strings::keys),
    kv("/hset", GPP, W, hash::hset),
    kv("/hget", GP, R, hash::hget),
    kv("/hget2", GP, R, hash::hget2),
    kv("/hexist", GP, R, hash::hexist),
    kv("/hdel", GP, W, hash::hdel),
    kv("/hincrby", GP, W, hash::hincrby),
    kv("/hkeys", GP, R, hash::hkeys),
    kv("/sadd", GP, W, set::sadd),
    kv("/srem", GP, W, set::srem),
    kv("/sismember", GP, R, set::sismember),
    kv("/sismember2", GP, R, set::sismember2),
    kv("/smembers", GP, R, set::smembers),
    kv("/zadd", GP, W, zset::zadd),
    kv("/zrem", GP, W, zset::zrem),
    kv("/zismember", GP, R, zset::zismember),
    kv("/zscore", GP, R, zset::zscore),
    kv("/zscore2", GP, R, zset::zscore2),
    kv("/zrangebyrank", GP, R, zset::zrangebyrank),
    kv("/zrangebyscore", GP, R, zset::zrangebyscore),
    kv("/stat", GP, R, stat::stat),
    kv("/stat_all", GP, R, stat::stat_all),
    kv("/file_count", GP, A, stat::file_count),
    kv("/cache/put", GPP, W, cache::put),
    kv("/cache/get", GP, R, cache::get),
    kv("/cache/exist", GP, R, cache::exist),
    kv("/cache/del", GP, W, cache::del),
    kv("/cache/ttl", GP, R, cache::ttl),
    kv("/cache/expire", GP, W, cache::expire),
    kv("/cache/persist", GP, W, cache::persist),
    kv("/cache/append", GPP, W, cache::append),
    kv("/cache/hset", GPP, W, cache::hset),
    kv("/cache/hget", GP, R, cache::hget),
    kv("/cache/hdel", GP, W, cache::hdel),
    kv("/cache/hexist", GP, R, cache::hexist),
    kv("/cache/hincrby", GP, W, cache::hincrby),
    kv("/cache/hincrbyfloat", GP, W, cache::hincrbyfloat),
    kv("/peer_count", GP, A, admin::peer_count),
    kv("/get_table", GP, A, admin::get_table),
    kv("/set_table", GP, A, admin::set_table),
    kv("/sync_status", GP, A, admin::sync_status),
    kv("/sync_alive", GP, A, admin::sync_alive),
    kv("/cluster/status", GP, A, admin::cluster_status),
    VERSION,
    STATUS,
    METRICS,
    OPENAPI_KV,
    DEBUG_SLEEP,
];

/// mq mode (`mq-api.md` §1), plus the health paths, `/metrics`, `/openapi.json` and `/debug/sleep`.
pub static MQ_ROUTES: &[Route] = &[
    mq("/put", GPPM, W, queue::put),
    mq("/get", G, W, queue::get),
    mq("/ack", G, W, queue::ack),
    mq("/timeout", G, W, mq_service::admin::timeout),
    mq("/lock", G, W, mq_service::admin::lock),
    mq("/max", G, W, mq_service::admin::max),
    mq("/purge", G, W, mq_service::admin::purge),
    mq("/worker", G, R, mq_service::stat::worker),
    mq("/stat", G, R, mq_service::stat::stat),
    mq("/stat_all", G, R, mq_service::stat::stat_all),
    mq("/autost", G, A, mq_service::admin::autost),
    mq("/evget", G, W, longpoll::evget),
    mq("/pub", GPPM, W, pubsub::publish),
    mq("/sub", G, R, pubsub::sub),
    mq("/evsub", G, R, longpoll::evsub),
    mq("/do_get", P, W, rpc::do_get),
    mq("/do_post", P, W, rpc::do_post),
    mq("/do_get_status", G, R, rpc::do_get_status),
    mq("/do_post_status", G, R, rpc::do_post_status),
    VERSION,
    STATUS,
    METRICS,
    OPENAPI_MQ,
    DEBUG_SLEEP,
];

/// The generic checks, in the spec's order: auth, path, method. `Ok` is the row and its index
/// in the table (its metrics label); `Err` the answer, with the row's index when the path was
/// known.
pub fn route(
    table: &'static [Route],
    path: &[u8],
    method: Method,
    authorization: Option<&[u8]>,
    users: Option<&Users>,
    debug_endpoints: bool,
) -> Result<(usize, &'static Route), (Option<usize>, Response)> {
    let found = table
        .iter()
        .position(|r| r.path.as_bytes() == path)
        .filter(|&i| debug_endpoints || table[i].kind != Kind::Debug);
    let is_open = found.is_some_and(|i| table[i].open);
    if let Some(users) = users {
        if !is_open && !users.check(authorization) {
            return Err((
                None,
                Response::empty(401).header("WWW-Authenticate", CHALLENGE),
            ));
        }
    }
    let index = found.ok_or((None, Response::empty(404)))?;
    let route = &table[index];
    if !route.methods.allows(method) {
        return Err((
            Some(index),
            Response::empty(405).header("Allow", route.methods.allow_header()),
        ));
    }
    Ok((index, route))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(
        table: &'static [Route],
        path: &[u8],
        method: Method,
        debug: bool,
    ) -> Option<&'static str> {
        route(table, path, method, None, None, debug)
            .ok()
            .map(|(i, r)| {
                assert_eq!(table[i].path, r.path);
                r.path
            })
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_405_with_allow() {
        let err = route(KV_ROUTES, b"/nope", Method::Get, None, None, false)
            .unwrap_err()
            .1;
        assert_eq!(err.status, 404);
        let err = route(KV_ROUTES, b"/get", Method::Other, None, None, false)
            .unwrap_err()
            .1;
        assert_eq!(err.status, 405);
        assert_eq!(err.headers, vec![("Allow", "GET, POST".to_string())]);
        let err = route(KV_ROUTES, b"/put", Method::Other, None, None, false)
            .unwrap_err()
            .1;
        assert_eq!(err.headers, vec![("Allow", "GET, POST, PUT".to_string())]);
        let err = route(MQ_ROUTES, b"/do_get", Method::Get, None, None, false)
            .unwrap_err()
            .1;
        assert_eq!(err.headers, vec![("Allow", "POST".to_string())]);
        assert_eq!(found(KV_ROUTES, b"/put", Method::Put, false), Some("/put"));
        assert_eq!(
            route(KV_ROUTES, b"/get", Method::Put, None, None, false)
                .unwrap_err()
                .1
                .status,
            405
        );
    }

    #[test]
    fn paths_match_byte_for_byte() {
        for p in [&b"/get/"[..], b"/GET", b"get", b"/get%20"] {
            assert_eq!(
                route(KV_ROUTES, p, Method::Get, None, None, false)
                    .unwrap_err()
                    .1
                    .status,
                404
            );
        }
    }

    #[test]
    fn debug_routes_exist_only_when_enabled() {
        assert_eq!(
            route(KV_ROUTES, b"/debug/sleep", Method::Get, None, None, false)
                .unwrap_err()
                .1
                .status,
            404
        );
        assert_eq!(
            found(KV_ROUTES, b"/debug/sleep", Method::Get, true),
            Some("/debug/sleep")
        );
    }

    #[test]
    fn every_path_is_listed_once_per_table() {
        for table in [KV_ROUTES, MQ_ROUTES] {
            for (i, a) in table.iter().enumerate() {
                assert!(
                    table[i + 1..].iter().all(|b| b.path != a.path),
                    "{} twice",
                    a.path
                );
            }
        }
    }

    #[test]
    fn tables_hold_their_own_modes_handlers() {
        for (table, kv_mode) in [(KV_ROUTES, true), (MQ_ROUTES, false)] {
            for r in table {
                let ok = match r.handler {
                    Handler::Health(_) => r.kind == Kind::Health,
                    Handler::Request(RequestHandler::Debug(_)) => r.kind == Kind::Debug,
                    Handler::Request(RequestHandler::Kv(_)) => kv_mode && r.kind != Kind::Health,
                    Handler::Request(RequestHandler::Mq(_)) => !kv_mode && r.kind != Kind::Health,
                };
                assert!(ok, "{}: handler of the wrong mode or kind", r.path);
                assert_eq!(r.open, matches!(r.path, "/version" | "/status.html"));
            }
        }
    }
}
