//! kv mode (`kv-api.md`): the service the event loop drives (expiry purge), the handler type of
//! the kv rows of the route table, and what every family shares: the parameter rules of §2.3
//! and the one mapping of storage errors to HTTP (§2.5, §2.9: [`write_error`], [`read_error`],
//! [`plain_error`]). The endpoints themselves are in one file per family.

use crate::conn::Outcome;
use crate::http::Response;
use crate::query::{parse_bool, parse_i64, parse_u64, valid_name};
use crate::service::{ConnRef, Pass, Request, Service};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use storage::{Command, ListItem, ListQuery, ListValue, Listing, StorageError, Write, Written};

pub mod admin;
pub mod cache;
pub mod hash;
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
}

impl KvService {
    pub fn new(conf: &conf::Conf) -> KvService {
        KvService {
            node: conf
                .listen
                .first()
                .map_or_else(|| "127.0.0.1:8082".to_string(), |l| l.text.clone()),
            next_purge: Instant::now() + PURGE_EVERY,
        }
    }
}

/// A kv endpoint. kv answers at once: it never parks, so it needs no connection.
pub type Handler = fn(&mut KvService, &Request<'_>, &mut Pass<'_, '_>) -> Check<Response>;

/// Runs a kv row's handler.
pub fn call(handler: Handler, kv: &mut KvService, req: &Request, pass: &mut Pass) -> Outcome {
    Outcome::Reply(handler(kv, req, pass).unwrap_or_else(|r| r))
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
    match pass.batch.apply(&command) {
        Ok(outcome) => answer(outcome),
        Err(e) if write.is_cache() => plain_error(e),
        Err(e) => write_error(e),
    }
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

    fn park_timeout(&mut self, _who: ConnRef, _pass: &mut Pass<'_, '_>) -> Response {
        Response::empty(404)
    }

    fn park_cancel(&mut self, _who: ConnRef) {}

    fn tick(&mut self, pass: &mut Pass<'_, '_>, _wakeups: &mut Vec<(ConnRef, Response)>) {
        if pass.now < self.next_purge {
            return;
        }
        self.next_purge = pass.now + PURGE_EVERY;
        match pass.batch.purge_expired(pass.now_ms, PURGE_BATCH) {
            Ok(n) if n > 0 => log::debug!("purged {n} expired records"),
            Ok(_) => {}
            Err(e) => log::error!("purging expired records failed: {e}"),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        Some(self.next_purge)
    }

    fn retire(&mut self, _pass: &mut Pass<'_, '_>, _wakeups: &mut Vec<(ConnRef, Response)>) {}
}
