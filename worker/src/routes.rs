//! The route table: one static list per mode mapping a path to an operation, the methods it
//! takes and whether it sits behind auth. The generic checks (auth `401`, path `404`, method
//! `405` with `Allow`) run here once, before any handler sees the request.

use crate::auth::{Users, CHALLENGE};
use crate::http::{Method, Response};

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

/// Everything a route can lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    // health, both modes
    Status,
    Version,
    Metrics,
    DebugSleep,
    // kv: plain
    Put,
    Get,
    Exist,
    Del,
    Keys,
    // kv: hash
    Hset,
    Hget,
    Hexist,
    Hdel,
    Hincrby,
    Hkeys,
    // kv: set
    Sadd,
    Srem,
    Sismember,
    Smembers,
    // kv: sorted set
    Zadd,
    Zrem,
    Zismember,
    Zscore,
    ZrangeByRank,
    ZrangeByScore,
    // kv: statistics
    Stat,
    StatAll,
    FileCount,
    // kv: cache
    CachePut,
    CacheGet,
    CacheExist,
    CacheDel,
    CacheTtl,
    CacheExpire,
    CachePersist,
    CacheAppend,
    CacheHset,
    CacheHget,
    CacheHdel,
    CacheHexist,
    CacheHincrby,
    CacheHincrbyfloat,
    // kv: cluster, one-node answers
    PeerCount,
    GetTable,
    SetTable,
    SyncStatus,
    SyncAlive,
    // mq
    MqPut,
    MqGet,
    MqAck,
    MqTimeout,
    MqLock,
    MqMax,
    MqPurge,
    MqWorker,
    MqStat,
    MqStatAll,
    MqAutost,
    MqEvget,
    MqPub,
    MqSub,
    MqEvsub,
    MqDoGet,
    MqDoPost,
    MqDoGetStatus,
    MqDoPostStatus,
}

/// One row of a route table.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub path: &'static str,
    pub methods: Methods,
    pub op: Op,
    /// Health paths are never behind auth.
    pub open: bool,
}

const fn r(path: &'static str, methods: Methods, op: Op) -> Route {
    Route {
        path,
        methods,
        op,
        open: false,
    }
}

const fn open(path: &'static str, methods: Methods, op: Op) -> Route {
    Route {
        path,
        methods,
        op,
        open: true,
    }
}

use Methods::{Get as G, GetPost as GP, GetPostPut as GPP, GetPostPutMq as GPPM, Post as P};

/// kv mode (`kv-api.md` §1), plus `/metrics` and the test-only `/debug/sleep`.
pub static KV_ROUTES: &[Route] = &[
    r("/put", GPP, Op::Put),
    r("/get", GP, Op::Get),
    r("/get2", GP, Op::Get),
    r("/exist", GP, Op::Exist),
    r("/del", GP, Op::Del),
    r("/keys", GP, Op::Keys),
    r("/hset", GPP, Op::Hset),
    r("/hget", GP, Op::Hget),
    r("/hget2", GP, Op::Hget),
    r("/hexist", GP, Op::Hexist),
    r("/hdel", GP, Op::Hdel),
    r("/hincrby", GP, Op::Hincrby),
    r("/hkeys", GP, Op::Hkeys),
    r("/sadd", GP, Op::Sadd),
    r("/srem", GP, Op::Srem),
    r("/sismember", GP, Op::Sismember),
    r("/sismember2", GP, Op::Sismember),
    r("/smembers", GP, Op::Smembers),
    r("/zadd", GP, Op::Zadd),
    r("/zrem", GP, Op::Zrem),
    r("/zismember", GP, Op::Zismember),
    r("/zscore", GP, Op::Zscore),
    r("/zscore2", GP, Op::Zscore),
    r("/zrangebyrank", GP, Op::ZrangeByRank),
    r("/zrangebyscore", GP, Op::ZrangeByScore),
    r("/stat", GP, Op::Stat),
    r("/stat_all", GP, Op::StatAll),
    r("/file_count", GP, Op::FileCount),
    r("/cache/put", GPP, Op::CachePut),
    r("/cache/get", GP, Op::CacheGet),
    r("/cache/exist", GP, Op::CacheExist),
    r("/cache/del", GP, Op::CacheDel),
    r("/cache/ttl", GP, Op::CacheTtl),
    r("/cache/expire", GP, Op::CacheExpire),
    r("/cache/persist", GP, Op::CachePersist),
    r("/cache/append", GPP, Op::CacheAppend),
    r("/cache/hset", GPP, Op::CacheHset),
    r("/cache/hget", GP, Op::CacheHget),
    r("/cache/hdel", GP, Op::CacheHdel),
    r("/cache/hexist", GP, Op::CacheHexist),
    r("/cache/hincrby", GP, Op::CacheHincrby),
    r("/cache/hincrbyfloat", GP, Op::CacheHincrbyfloat),
    r("/peer_count", GP, Op::PeerCount),
    r("/get_table", GP, Op::GetTable),
    r("/set_table", GP, Op::SetTable),
    r("/sync_status", GP, Op::SyncStatus),
    r("/sync_alive", GP, Op::SyncAlive),
    open("/version", GP, Op::Version),
    open("/status.html", GP, Op::Status),
    r("/metrics", G, Op::Metrics),
    r("/debug/sleep", GP, Op::DebugSleep),
];

/// mq mode (`mq-api.md` §1), plus the health paths, `/metrics` and `/debug/sleep`.
pub static MQ_ROUTES: &[Route] = &[
    r("/put", GPPM, Op::MqPut),
    r("/get", G, Op::MqGet),
    r("/ack", G, Op::MqAck),
    r("/timeout", G, Op::MqTimeout),
    r("/lock", G, Op::MqLock),
    r("/max", G, Op::MqMax),
    r("/purge", G, Op::MqPurge),
    r("/worker", G, Op::MqWorker),
    r("/stat", G, Op::MqStat),
    r("/stat_all", G, Op::MqStatAll),
    r("/autost", G, Op::MqAutost),
    r("/evget", G, Op::MqEvget),
    r("/pub", GPPM, Op::MqPub),
    r("/sub", G, Op::MqSub),
    r("/evsub", G, Op::MqEvsub),
    r("/do_get", P, Op::MqDoGet),
    r("/do_post", P, Op::MqDoPost),
    r("/do_get_status", G, Op::MqDoGetStatus),
    r("/do_post_status", G, Op::MqDoPostStatus),
    open("/version", GP, Op::Version),
    open("/status.html", GP, Op::Status),
    r("/metrics", G, Op::Metrics),
    r("/debug/sleep", GP, Op::DebugSleep),
];

/// The generic checks, in the spec's order: auth, path, method. `Ok` is the route's operation
/// and its index in the table (its metrics label); `Err` the answer, with the route's index
/// when the path was known.
pub fn route(
    table: &'static [Route],
    path: &[u8],
    method: Method,
    authorization: Option<&[u8]>,
    users: Option<&Users>,
    debug_endpoints: bool,
) -> Result<(usize, Op), (Option<usize>, Response)> {
    let found = table
        .iter()
        .position(|r| r.path.as_bytes() == path)
        .filter(|&i| debug_endpoints || table[i].op != Op::DebugSleep);
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
    Ok((index, route.op))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            route(KV_ROUTES, b"/put", Method::Put, None, None, false)
                .map(|r| r.1)
                .ok(),
            Some(Op::Put)
        );
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
            route(KV_ROUTES, b"/debug/sleep", Method::Get, None, None, true)
                .map(|r| r.1)
                .ok(),
            Some(Op::DebugSleep)
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
}
