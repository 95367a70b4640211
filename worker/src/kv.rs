//! kv mode (`kv-api.md`): the service the event loop drives (expiry purge), the handler type of
//! the kv rows of the route table, and what every family shares: the parameter rules of §2.3
//! and the one mapping of storage errors to HTTP (§2.5, §2.9: [`write_error`], [`read_error`],
//! [`plain_error`]). The endpoints themselves are in one file per family.
//!
//! In cluster mode (a `cluster { }` block) replicated writes are not applied here: [`apply`]
//! hands the command to the node's cluster helper through the link (`cluster_link`), the
//! request parks, and the helper's answer becomes the reply (`cluster.md` §3), through the
//! same mapping as a local write's. The cache stays local (§3).

use crate::cluster_link::Answer;
use crate::conn::Outcome;
use crate::http::Response;
use crate::query::{parse_bool, parse_i64, parse_u64, valid_name};
use crate::service::{ConnRef, Pass, Replication, Request, Service};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cluster::placement::{group_of_slot, slot_of, Target};
use cluster::raft::Applied;
use replicated::{Forgot, Replicated};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use storage::{Command, ListItem, ListQuery, ListValue, Listing, StorageError, Write, Written};

pub mod admin;
pub mod cache;
pub mod hash;
pub mod replicated;
pub mod set;
pub mod stat;
pub mod strings;
pub mod zset;

const MAX_KEY: usize = 65_536;
const MAX_TTL: u64 = 2_592_000;
const MAX_OFFSET: u64 = 100_000_000;
const MAX_SIZE: u64 = 1000;
const BUCKETS: u64 = 1024;
/// Expired records removed per second and worker, so a burst of expiries never stalls a pass.
const PURGE_BATCH: usize = 1000;
const PURGE_EVERY: Duration = Duration::from_secs(1);

pub struct KvService {
    /// The first `listen` address as written (`/get_table`).
    node: String,
    next_purge: Instant,
    /// Cluster mode only.
    cluster: Option<Replicated>,
}

impl KvService {
    pub fn new(conf: &conf::Conf) -> KvService {
        KvService {
            node: conf
                .listen
                .first()
                .map_or_else(|| "127.0.0.1:8082".to_string(), |l| l.text.clone()),
            next_purge: Instant::now() + PURGE_EVERY,
            cluster: conf.cluster.as_ref().map(|c| Replicated::new(conf, c)),
        }
    }
}

/// The cluster helper's socket, in the data folder (the helper's own name for it).
pub const CLUSTER_SOCKET: &str = cluster::helper::SOCKET;

/// A kv endpoint. kv answers at once: it never parks, so it needs no connection.
pub type Handler = fn(&mut KvService, &Request<'_>, &mut Pass<'_, '_>) -> Check<Response>;

/// Runs a kv row's handler. In cluster mode a replicated write parks the request (`who`)
/// until the helper answers it, or the cluster `timeout` passes; so does a read that waits for
/// a barrier or another node (`replicated::call`).
pub fn call(
    handler: Handler,
    kv: &mut KvService,
    req: &Request,
    who: ConnRef,
    pass: &mut Pass,
) -> Outcome {
    if kv.cluster.is_none() {
        return Outcome::Reply(handler(kv, req, pass).unwrap_or_else(|r| r));
    }
    replicated::call(handler, kv, req, who, pass)
}

/// A parameter problem: the response to send instead (`400`, or `413` for an oversized value).
pub type Check<T> = Result<T, Response>;

fn bad() -> Response {
    Response::empty(400)
}

fn required<'r>(req: &'r Request<'_>, name: &str) -> Check<&'r [u8]> {
    req.params.get(name).ok_or_else(bad)
}

/// `key`: from the query, 1..=64 KiB.
fn key<'r>(req: &'r Request<'_>) -> Check<&'r [u8]> {
    let k = required(req, "key")?;
    if k.len() > MAX_KEY {
        return Err(bad());
    }
    Ok(k)
}

/// `key*`: a non-empty POST/PUT body wins over the query parameter.
fn key_or_body<'r>(req: &'r Request<'_>) -> Check<&'r [u8]> {
    match req.body() {
        Some(b) if b.len() > MAX_KEY => Err(bad()),
        Some(b) => Ok(b),
        None => key(req),
    }
}

/// `val*`: a non-empty POST/PUT body wins over the query parameter.
fn val_or_body<'r>(req: &'r Request<'_>) -> Check<&'r [u8]> {
    match req.body() {
        Some(b) => Ok(b),
        None => required(req, "val"),
    }
}

fn table<'r>(req: &'r Request<'_>) -> Check<&'r str> {
    let tb = required(req, "tb")?;
    if !valid_name(tb) {
        return Err(bad());
    }
    // valid_name admits ASCII only.
    std::str::from_utf8(tb).map_err(|_| bad())
}

fn optional_u64(req: &Request<'_>, name: &str, default: u64, max: u64) -> Check<u64> {
    match req.params.get(name) {
        None => Ok(default),
        Some(v) => parse_u64(v).filter(|&n| n <= max).ok_or_else(bad),
    }
}

fn required_u64(req: &Request<'_>, name: &str, max: u64) -> Check<u64> {
    parse_u64(required(req, name)?)
        .filter(|&n| n <= max)
        .ok_or_else(bad)
}

fn required_i64(req: &Request<'_>, name: &str) -> Check<i64> {
    parse_i64(required(req, name)?).ok_or_else(bad)
}

fn optional_bool(req: &Request<'_>, name: &str, default: bool) -> Check<bool> {
    match req.params.get(name) {
        None => Ok(default),
        Some(v) => parse_bool(v).ok_or_else(bad),
    }
}

/// `ttl`: 0 (none) ..= 30 days.
fn ttl(req: &Request<'_>) -> Check<u32> {
    Ok(optional_u64(req, "ttl", 0, MAX_TTL)? as u32)
}

/// `ttl` where it is required and 0 makes no sense (`/cache/expire`).
fn required_ttl(req: &Request<'_>) -> Check<u32> {
    match required_u64(req, "ttl", MAX_TTL)? {
        0 => Err(bad()),
        t => Ok(t as u32),
    }
}

fn ver(req: &Request<'_>) -> Check<u32> {
    Ok(optional_u64(req, "ver", 0, u32::MAX as u64)? as u32)
}

/// `peer` (and `file` on `/keys`): a single node has only index 0.
fn only_zero(req: &Request<'_>, name: &str) -> Check<()> {
    optional_u64(req, name, 0, 0).map(|_| ())
}

/// `peer`: a group in cluster mode (`0..groups`, `cluster.md` §5), only 0 on a single node.
fn peer(kv: &KvService, req: &Request<'_>) -> Check<Option<u32>> {
    let max = kv
        .cluster
        .as_ref()
        .map_or(0, |c| c.groups.saturating_sub(1));
    match req.params.get("peer") {
        None => Ok(None),
        Some(v) => parse_u64(v)
            .filter(|&n| n <= u64::from(max))
            .map(|n| Some(n as u32))
            .ok_or_else(bad),
    }
}

/// The group of what a read is placed by (0 on a single node, which never looks).
fn group_of(kv: &KvService, target: Target<'_>) -> u32 {
    kv.cluster.as_ref().map_or(0, |c| c.group_of(target))
}

/// A listing with nothing in it (a `peer` that holds none of it).
fn empty_listing() -> Response {
    listing(Ok(Listing {
        items: Vec::new(),
        total: 0,
    }))
}

fn list_query(req: &Request<'_>) -> Check<ListQuery> {
    let offset = required_u64(req, "offset", MAX_OFFSET)?;
    let size = required_u64(req, "size", MAX_SIZE)?;
    let start = optional_u64(req, "start", 0, BUCKETS)?;
    let end = optional_u64(req, "end", BUCKETS, BUCKETS)?;
    if start >= end {
        return Err(bad());
    }
    let noval = optional_bool(req, "noval", true)?;
    let count_total = optional_bool(req, "async", false)?;
    Ok(ListQuery {
        offset,
        size: size as u32,
        start: start as u32,
        end: end as u32,
        with_values: !noval,
        count_total,
    })
}

// ---- responses

fn read_ok(ver: u32, body: Vec<u8>) -> Response {
    Response::text(body).header("Version", ver)
}

/// Applies one write of a handler: the only way a kv handler changes the store. The answer is
/// the outcome's (`kv-api.md` §2.5: `Version` and `VerError` on versioned writes; the cache's
/// writes answer an empty `200` or their number), or the error's.
fn apply(pass: &mut Pass<'_, '_>, write: Write<'_>) -> Response {
    let command = Command {
        now_ms: pass.now_ms,
        write,
    };
    let replicated = match pass.replication {
        // A single node never looks at placement.
        Replication::Wanted { groups } => target(&write).map(|t| (t, groups)),
        _ => None,
    };
    if let Some((target, groups)) = replicated {
        let group = group_of_slot(slot_of(target), groups);
        let mut bytes = Vec::new();
        command.encode(&mut bytes);
        pass.replication = Replication::Proposed {
            group,
            command: bytes,
        };
        // Never sent: `call` parks the request and the helper's answer is the reply.
        return Response::empty(202);
    }
    match pass.batch.apply(&command) {
        Ok(outcome) => answer(outcome),
        Err(e) if write.is_cache() => plain_error(e),
        Err(e) => write_error(e),
    }
}

/// What a replicated write is placed by (`cluster.md` §2); `None` for writes that are not
/// replicated (the cache's, §3) or not a handler's (the purge).
fn target<'w>(write: &Write<'w>) -> Option<Target<'w>> {
    Some(match *write {
        Write::Put { key, .. } | Write::Del { key, .. } => Target::Key(key),
        Write::Hset { tb, .. }
        | Write::Hincrby { tb, .. }
        | Write::Hdel { tb, .. }
        | Write::Sadd { tb, .. }
        | Write::Srem { tb, .. }
        | Write::Zadd { tb, .. }
        | Write::Zrem { tb, .. } => Target::Table(tb),
        _ => return None,
    })
}

/// The reply to a replicated write: the helper's answer. An applied write answers exactly as
/// a local one ([`answer`], [`write_error`]); the cluster's own refusals have an empty body,
/// no `Version`/`VerError` and a `Cluster-Error` (`cluster.md` §3).
fn replicated(answer_of: Answer) -> Response {
    use storage::Outcome as O;
    let w = |ver| Written { ver };
    let result = match answer_of {
        Answer::Unavailable(why) => {
            return cluster_error(503, &why).header("Retry-After", 1);
        }
        Answer::Unknown(why) => return cluster_error(504, &why),
        Answer::ReadReady => Err("a read barrier's answer to a write"),
        Answer::Reply { .. } => Err("an HTTP reply to a write"),
        Answer::Applied(applied) => match applied {
            Applied::Written { ver } => Ok(Ok(O::Written(w(ver)))),
            Applied::Counted { ver, value } => Ok(Ok(O::Counted(w(ver), value))),
            Applied::Scored { ver, score } => Ok(Ok(O::Scored(w(ver), score))),
            Applied::Done => Ok(Ok(O::Done)),
            Applied::Int(n) => Ok(Ok(O::Int(n))),
            Applied::Float(x) => Ok(Ok(O::Float(x))),
            Applied::Purged(n) => Ok(Ok(O::Purged(usize::try_from(n).unwrap_or(usize::MAX)))),
            Applied::NotFound => Ok(Err(StorageError::NotFound)),
            Applied::VersionMismatch { current } => {
                Ok(Err(StorageError::VersionMismatch { current }))
            }
            Applied::WrongType => Ok(Err(StorageError::WrongType)),
            Applied::NotNumeric => Ok(Err(StorageError::NotNumeric)),
            Applied::MapFull => Ok(Err(StorageError::MapFull)),
            Applied::TooLarge => Ok(Err(StorageError::TooLarge)),
            // The reason is the replica's; the reply (400) does not carry it.
            Applied::Invalid(_) => Ok(Err(StorageError::Invalid("refused by its group"))),
            Applied::Nothing => Err("no answer for a write"),
            Applied::Undecodable => Err("the group could not decode the write"),
            Applied::Batch(_) => Err("a batch's answers for one write"),
        },
    };
    match result {
        Ok(Ok(outcome)) => answer(outcome),
        Ok(Err(e)) => write_error(e),
        Err(why) => {
            log::error!("cluster helper: {why}");
            Response::empty(500)
        }
    }
}

/// A `503`/`504` of the cluster: `why` in a header, kept to printable ASCII so that no
/// helper's message can break the reply's head.
fn cluster_error(status: u16, why: &str) -> Response {
    let why: String = why
        .chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    let why = if why.trim().is_empty() {
        "unavailable".to_string()
    } else {
        why
    };
    Response::empty(status).header("Cluster-Error", why)
}

fn answer(outcome: storage::Outcome) -> Response {
    let versioned =
        |resp: Response, w: Written| resp.header("Version", w.ver).header("VerError", "false");
    match outcome {
        storage::Outcome::Written(w) => versioned(Response::empty(200), w),
        storage::Outcome::Counted(w, n) | storage::Outcome::Scored(w, n) => {
            versioned(Response::text(n.to_string()), w)
        }
        storage::Outcome::Int(n) => Response::text(n.to_string()),
        storage::Outcome::Float(x) => Response::text(format!("{x}")),
        // The periodic purge (`KvService::tick`) is not a handler's write.
        storage::Outcome::Done | storage::Outcome::Purged(_) => Response::empty(200),
    }
}

/// A versioned existence test: its version, or why not.
fn present(result: storage::Result<u32>) -> Response {
    match result {
        Ok(ver) => Response::empty(200).header("Version", ver),
        Err(e) => read_error(e),
    }
}

/// Storage errors of writes (`kv-api.md` §2.5 table).
fn write_error(e: StorageError) -> Response {
    match e {
        StorageError::NotFound => Response::empty(404)
            .header("Version", 0)
            .header("VerError", "false"),
        StorageError::VersionMismatch { current } => Response::empty(401)
            .header("Version", current)
            .header("VerError", "true"),
        StorageError::WrongType => Response::empty(412)
            .header("Version", 0)
            .header("VerError", "false"),
        StorageError::NotNumeric => Response::empty(409)
            .header("Version", 0)
            .header("VerError", "false"),
        other => plain_error(other),
    }
}

/// Storage errors of versioned reads.
fn read_error(e: StorageError) -> Response {
    match e {
        StorageError::NotFound => Response::empty(404).header("Version", 0),
        StorageError::WrongType => Response::empty(412).header("Version", 0),
        other => plain_error(other),
    }
}

/// Errors that carry no version headers (listings, stats, the cache, capacity, I/O).
fn plain_error(e: StorageError) -> Response {
    match e {
        StorageError::NotFound => Response::empty(404),
        StorageError::WrongType => Response::empty(412),
        StorageError::NotNumeric => Response::empty(409),
        StorageError::MapFull => Response::empty(507),
        StorageError::TooLarge => Response::empty(413),
        StorageError::Invalid(_) => Response::empty(400),
        // Fail-stopped after a failed flush (see `storage::FailStop`): nothing was written.
        StorageError::Stopped { .. } => Response::empty(503),
        e @ (StorageError::VersionMismatch { .. } | StorageError::Lmdb(_)) => {
            log::error!("storage failure: {e}");
            Response::empty(500)
        }
    }
}

/// A page of a listing (§2.7) as its JSON list.
fn listing(result: storage::Result<Listing>) -> Response {
    let page = match result {
        Ok(page) => page,
        Err(e) => return plain_error(e),
    };
    let mut body = String::with_capacity(2 + page.items.len() * 32);
    body.push('[');
    for (i, ListItem { key, val, ver }) in page.items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str("{\"key\":\"");
        STANDARD.encode_string(key, &mut body);
        body.push('"');
        match val {
            Some(ListValue::Bytes(v)) => {
                body.push_str(",\"val\":\"");
                STANDARD.encode_string(v, &mut body);
                body.push('"');
            }
            Some(ListValue::Score(s)) => {
                let _ = write!(body, ",\"val\":\"{s}\"");
            }
            None => {}
        }
        let _ = write!(body, ",\"ver\":{ver}}}");
    }
    body.push(']');
    Response::text(body)
        .header("Keys", page.items.len())
        .header("TotalCount", page.total)
}

impl Service for KvService {
    fn bad_request(&self, _why: &str) -> Response {
        bad()
    }

    fn park_timeout(&mut self, who: ConnRef, _pass: &mut Pass<'_, '_>) -> Response {
        match self.cluster.as_mut().map(|c| c.forget(who)) {
            // A replicated write may still be applied: its outcome is unknown.
            Some(Forgot::Write) => cluster_error(504, "timeout"),
            // A read changed nothing: it may simply be retried.
            Some(Forgot::Read) => cluster_error(503, "timeout").header("Retry-After", 1),
            _ => Response::empty(404),
        }
    }

    fn park_cancel(&mut self, who: ConnRef) {
        if let Some(c) = self.cluster.as_mut() {
            c.forget(who);
        }
    }

    fn tick(&mut self, pass: &mut Pass<'_, '_>, wakeups: &mut Vec<(ConnRef, Response)>) {
        let clustered = self.cluster.is_some();
        if clustered {
            replicated::tick(self, pass, wakeups);
        }
        if pass.now < self.next_purge {
            return;
        }
        self.next_purge = pass.now + PURGE_EVERY;
        if clustered {
            // The store's expiry is a replicated command in cluster mode (`cluster.md` §3:
            // each group's leader proposes it); the cache is this node's own (not in the log).
            let purge = Command {
                now_ms: pass.now_ms,
                write: Write::CachePurgeExpired { max: PURGE_BATCH },
            };
            if let Err(e) = pass.batch.apply(&purge) {
                log::error!("purging expired cache entries failed: {e}");
            }
            return;
        }
        match pass.batch.purge_expired(pass.now_ms, PURGE_BATCH) {
            Ok(n) if n > 0 => log::debug!("purged {n} expired records"),
            Ok(_) => {}
            Err(e) => log::error!("purging expired records failed: {e}"),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let purge = Some(self.next_purge);
        match &self.cluster {
            Some(c) => c.next_deadline().min(purge).or(purge),
            None => purge,
        }
    }

    /// Cluster mode: the helper's consensus lines (`cluster.md` §5).
    fn metrics(&mut self, pass: &mut Pass<'_, '_>, out: &mut String) {
        if let Some(c) = &self.cluster {
            c.metrics(pass.now, out);
        }
    }

    /// A parked replicated write is a request in progress: it finishes on its own time (its
    /// answer or its timeout) while the worker retires.
    fn retire(&mut self, _pass: &mut Pass<'_, '_>, _wakeups: &mut Vec<(ConnRef, Response)>) {}

    fn attach(&mut self, registry: &mio::Registry, token: mio::Token, now: Instant) {
        if let Some(c) = self.cluster.as_mut() {
            if let Err(e) = c.link.attach(registry, token, now) {
                log::error!("could not set up the cluster link: {e}");
            }
        }
    }

    fn on_link_ready(&mut self, now: Instant) {
        if let Some(c) = self.cluster.as_mut() {
            c.link.on_ready(now);
        }
    }
}

#[cfg(test)]
mod cluster_tests {
    //! Cluster mode's writes: the mapping of the helper's answers to replies, and a kv
    //! service driven against a fake helper.
    use super::*;
    use crate::http::Method;
    use crate::query::Params;
    use cluster::local::{decode_prefix, Frame, Message};
    use std::io::{Read as _, Write as _};
    use std::os::unix::net::UnixListener;

    fn headers(r: &Response) -> Vec<(&'static str, String)> {
        r.headers.clone()
    }

    fn same(a: &Response, b: &Response) {
        assert_eq!(
            (a.status, headers(a), &a.body),
            (b.status, headers(b), &b.body)
        );
    }

    #[test]
    fn applied_answers_reply_as_local_writes() {
        let w = |ver| Written { ver };
        let ok = [
            (Applied::Written { ver: 4 }, storage::Outcome::Written(w(4))),
            (
                Applied::Counted { ver: 2, value: -7 },
                storage::Outcome::Counted(w(2), -7),
            ),
            (
                Applied::Scored { ver: 3, score: 9 },
                storage::Outcome::Scored(w(3), 9),
            ),
            (Applied::Done, storage::Outcome::Done),
            (Applied::Int(12), storage::Outcome::Int(12)),
            (Applied::Float(1.5), storage::Outcome::Float(1.5)),
            (Applied::Purged(3), storage::Outcome::Purged(3)),
        ];
        for (applied, outcome) in ok {
            same(&replicated(Answer::Applied(applied)), &answer(outcome));
        }
        let refused = [
            (Applied::NotFound, StorageError::NotFound),
            (
                Applied::VersionMismatch { current: 5 },
                StorageError::VersionMismatch { current: 5 },
            ),
            (Applied::WrongType, StorageError::WrongType),
            (Applied::NotNumeric, StorageError::NotNumeric),
            (Applied::MapFull, StorageError::MapFull),
            (Applied::TooLarge, StorageError::TooLarge),
            (Applied::Invalid("x".into()), StorageError::Invalid("x")),
        ];
        for (applied, e) in refused {
            same(&replicated(Answer::Applied(applied)), &write_error(e));
        }
        // The exact replies of kv-api.md, spelled out for a few.
        let r = replicated(Answer::Applied(Applied::Written { ver: 4 }));
        assert_eq!(r.status, 200);
        assert_eq!(
            headers(&r),
            vec![("Version", "4".into()), ("VerError", "false".into())]
        );
        let r = replicated(Answer::Applied(Applied::VersionMismatch { current: 5 }));
        assert_eq!(r.status, 401);
        assert_eq!(
            headers(&r),
            vec![("Version", "5".into()), ("VerError", "true".into())]
        );
        let r = replicated(Answer::Applied(Applied::Counted { ver: 2, value: -7 }));
        assert_eq!((r.status, r.body.as_slice()), (200, &b"-7"[..]));
        assert_eq!(replicated(Answer::Applied(Applied::MapFull)).status, 507);
        for odd in [
            Answer::Applied(Applied::Nothing),
            Answer::Applied(Applied::Undecodable),
            Answer::ReadReady,
        ] {
            let r = replicated(odd);
            assert_eq!((r.status, headers(&r), r.body.len()), (500, vec![], 0));
        }
    }

    #[test]
    fn cluster_refusals_are_503_or_504_without_versions() {
        let r = replicated(Answer::Unavailable("no leader".into()));
        assert_eq!(r.status, 503);
        assert!(r.body.is_empty());
        assert_eq!(
            headers(&r),
            vec![
                ("Cluster-Error", "no leader".into()),
                ("Retry-After", "1".into())
            ]
        );
        let r = replicated(Answer::Unknown("leader lost\r\nX: y".into()));
        assert_eq!(r.status, 504);
        assert!(r.body.is_empty());
        assert_eq!(
            headers(&r),
            vec![("Cluster-Error", "leader lost??X: y".into())]
        );
        let r = replicated(Answer::Unknown(String::new()));
        assert_eq!(headers(&r), vec![("Cluster-Error", "unavailable".into())]);
    }

    #[test]
    fn writes_are_placed_by_key_or_table_and_the_cache_is_not_replicated() {
        let put = Write::Put {
            key: b"k",
            val: b"v",
            expires_at: 0,
            ver: 0,
        };
        assert_eq!(target(&put), Some(Target::Key(b"k")));
        let hset = Write::Hset {
            tb: "t",
            key: b"k",
            val: b"v",
            expires_at: 0,
            ver: 0,
        };
        assert_eq!(target(&hset), Some(Target::Table("t")));
        assert_eq!(target(&Write::CacheDel { key: b"k" }), None);
        assert_eq!(target(&Write::PurgeExpired { max: 1 }), None);
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "huststore-kv-cluster-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A kv service in cluster mode of 4 groups against a fake helper: a replicated write
    /// parks and is answered by the helper's frame; a cache write stays local; a write whose
    /// park times out answers 504 and its late answer is dropped.
    #[test]
    fn kv_writes_go_through_the_link() {
        const TOKEN: mio::Token = mio::Token(5);
        let dir = temp_dir("drive");
        let sock = dir.join(CLUSTER_SOCKET);
        let listener = UnixListener::bind(&sock).unwrap();
        let helper = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = Vec::new();
            let mut groups = Vec::new();
            while groups.len() < 2 {
                if let Some((f, used)) = decode_prefix(&buf).unwrap() {
                    buf.drain(..used);
                    let group = match f.message {
                        Message::Propose { group, .. } => group,
                        // The worker's periodic ask for the `/metrics` report: unanswered.
                        Message::Report { .. } => continue,
                        _ => panic!("not a proposal: {f:?}"),
                    };
                    groups.push(group);
                    let mut out = Vec::new();
                    Frame {
                        id: f.id,
                        message: Message::Applied(Applied::Written { ver: 1 }),
                    }
                    .encode(&mut out);
                    s.write_all(&out).unwrap();
                    continue;
                }
                let mut chunk = [0u8; 4096];
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            std::thread::sleep(Duration::from_millis(200));
            groups
        });
        let store = crate::test_store(&dir);
        let timeout = Duration::from_secs(3);
        let mut kv = KvService {
            node: "127.0.0.1:8082".into(),
            next_purge: Instant::now() + PURGE_EVERY,
            cluster: Some(replicated::for_test(
                crate::cluster_link::Link::new(sock),
                cluster::placement::Placement::new(1, 4, 1),
                0,
                conf::Reads::Linearizable,
                timeout,
            )),
        };
        let mut poll = mio::Poll::new().unwrap();
        kv.attach(poll.registry(), TOKEN, Instant::now());
        let who = ConnRef {
            key: 1,
            generation: 1,
        };
        let params = Params::parse(b"key=abc&val=v").unwrap();
        let req = Request {
            method: Method::Get,
            params: &params,
            body: b"",
            authorization: None,
            forwarded: false,
        };
        let mut batch = store.batch();
        let mut pass = Pass {
            batch: &mut batch,
            now: Instant::now(),
            now_ms: 1,
            replication: Replication::Local,
        };
        let Outcome::Park { deadline } = call(strings::put, &mut kv, &req, who, &mut pass) else {
            panic!("a replicated write parks");
        };
        assert_eq!(deadline, pass.now + timeout);
        assert_eq!(pass.replication, Replication::Local);
        assert!(!pass.batch.has_writes(), "nothing applied locally");
        // The cache is local: answered at once, in the batch.
        let Outcome::Reply(r) = call(cache::put, &mut kv, &req, who, &mut pass) else {
            panic!("a cache write does not park");
        };
        assert_eq!(r.status, 200);
        assert!(pass.batch.has_writes());

        let mut wakeups = Vec::new();
        let mut events = mio::Events::with_capacity(8);
        let until = Instant::now() + Duration::from_secs(5);
        while wakeups.is_empty() && Instant::now() < until {
            poll.poll(&mut events, Some(Duration::from_millis(20)))
                .unwrap();
            if events.iter().any(|e| e.token() == TOKEN) {
                kv.on_link_ready(Instant::now());
            }
            kv.tick(&mut pass, &mut wakeups);
        }
        assert_eq!(wakeups.len(), 1);
        assert_eq!(wakeups[0].0, who);
        same(
            &wakeups[0].1,
            &answer(storage::Outcome::Written(Written { ver: 1 })),
        );

        // A second write times out before its answer is read: 504, and the answer is dropped.
        let other = ConnRef {
            key: 2,
            generation: 7,
        };
        let table = Params::parse(b"tb=t&key=k&val=v").unwrap();
        let req = Request {
            method: Method::Get,
            params: &table,
            body: b"",
            authorization: None,
            forwarded: false,
        };
        assert!(matches!(
            call(hash::hset, &mut kv, &req, other, &mut pass),
            Outcome::Park { .. }
        ));
        let r = kv.park_timeout(other, &mut pass);
        assert_eq!(
            (r.status, headers(&r)),
            (504, vec![("Cluster-Error", "timeout".into())])
        );
        std::thread::sleep(Duration::from_millis(100));
        kv.on_link_ready(Instant::now());
        wakeups.clear();
        kv.tick(&mut pass, &mut wakeups);
        assert!(wakeups.is_empty());
        let groups = helper.join().unwrap();
        let group = |b: &[u8]| group_of_slot(storage::bucket(b), 4);
        assert_eq!(groups, vec![group(b"abc"), group(b"t")]);
        // A connection that never parked times out as before.
        assert_eq!(kv.park_timeout(who, &mut pass).status, 404);
    }
}
