//! kv mode (`kv-api.md`): parameter rules, the storage calls, and the exact status codes,
//! headers and bodies of every endpoint. Storage errors map to HTTP in one place per family
//! ([`write_error`], [`read_error`]).

use crate::conn::Outcome;
use crate::http::Response;
use crate::outq::OWN_CHUNK_MIN;
use crate::query::{parse_bool, parse_i64, parse_u64, valid_name};
use crate::routes::Op;
use crate::service::{ConnRef, Pass, Request, Service};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use storage::{
    ListItem, ListQuery, ListValue, Listing, ReplyValue, StorageError, TableStat, Usage, ZaddMode,
};

const MAX_KEY: usize = 65_536;
const MAX_TTL: u64 = 2_592_000;
const MAX_OFFSET: u64 = 100_000_000;
const MAX_SIZE: u64 = 1000;
const BUCKETS: u64 = 1024;
const MAX_CACHE_VALUE: usize = 8 << 20;
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

/// A parameter problem: the response to send instead (`400`, or `413` for an oversized value).
type Check<T> = Result<T, Response>;

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

fn ttl(req: &Request<'_>) -> Check<u32> {
    Ok(optional_u64(req, "ttl", 0, MAX_TTL)? as u32)
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

fn write_ok(ver: u32) -> Response {
    Response::empty(200)
        .header("Version", ver)
        .header("VerError", "false")
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

fn usage_json(out: &mut String, u: &Usage) {
    let _ = write!(
        out,
        "{{\"count\":{},\"size\":{},\"capacity\":{}}}",
        u.count, u.size, u.capacity
    );
}

fn totals_json(out: &mut String, t: &storage::Totals) {
    out.push_str("{\"TOTALIZE\":{\"KVPAIR\":");
    usage_json(out, &t.kv);
    out.push_str(",\"HASHTABLE\":");
    usage_json(out, &t.hash);
    out.push_str("}}");
}

fn table_json(out: &mut String, t: &TableStat) {
    // Table names are validated ASCII without quotes or backslashes: no escaping needed.
    let _ = write!(
        out,
        "{{\"table\":\"{}\",\"type\":\"{}\",\"count\":{}",
        t.name,
        t.kind.letter(),
        t.usage.count
    );
    if t.kind == storage::TableType::Hash {
        let _ = write!(
            out,
            ",\"size\":{},\"capacity\":{}",
            t.usage.size, t.usage.capacity
        );
    }
    out.push('}');
}

/// Numbers `/cache/hincrbyfloat` takes: optional `-`, digits, optional `.digits`, optional
/// exponent; finite.
pub fn parse_decimal(v: &[u8]) -> Option<f64> {
    let mut i = 0;
    if v.first() == Some(&b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < v.len() && v[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return None;
    }
    if v.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return None;
        }
    }
    if matches!(v.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(v.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
    }
    if i != v.len() {
        return None;
    }
    std::str::from_utf8(v)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
}

impl KvService {
    fn serve(&mut self, op: Op, req: &Request<'_>, pass: &mut Pass<'_, '_>) -> Check<Response> {
        let now = pass.now_ms;
        let b = &mut *pass.batch;
        Ok(match op {
            // ---- plain kv
            Op::Put => {
                let (k, v, t, ve) = (key(req)?, val_or_body(req)?, ttl(req)?, ver(req)?);
                match b.put(k, v, t, ve, now) {
                    Ok(w) => write_ok(w.ver),
                    Err(e) => write_error(e),
                }
            }
            Op::Get => match b.get_for_reply(key(req)?, now, OWN_CHUNK_MIN) {
                Ok((ver, ReplyValue::Copied(value))) => read_ok(ver, value),
                Ok((ver, ReplyValue::InPlace(value))) => {
                    Response::text_lent(value).header("Version", ver)
                }
                Err(e) => read_error(e),
            },
            Op::Exist => match b.exist(key(req)?, now) {
                Ok(v) => Response::empty(200).header("Version", v),
                Err(e) => read_error(e),
            },
            Op::Del => {
                let (k, ve) = (key(req)?, ver(req)?);
                match b.del(k, ve, now) {
                    Ok(w) => write_ok(w.ver),
                    Err(e) => write_error(e),
                }
            }
            Op::Keys => {
                only_zero(req, "file")?;
                only_zero(req, "peer")?;
                let q = list_query(req)?;
                listing(b.keys(&q, now))
            }
            // ---- hash
            Op::Hset => {
                let (tb, k, v) = (table(req)?, key(req)?, val_or_body(req)?);
                let (t, ve) = (ttl(req)?, ver(req)?);
                match b.hset(tb, k, v, t, ve, now) {
                    Ok(w) => write_ok(w.ver),
                    Err(e) => write_error(e),
                }
            }
            Op::Hget => {
                let (tb, k) = (table(req)?, key(req)?);
                match b.hget(tb, k, now) {
                    Ok(r) => read_ok(r.ver, r.value),
                    Err(e) => read_error(e),
                }
            }
            Op::Hexist => {
                let (tb, k) = (table(req)?, key(req)?);
                match b.hexist(tb, k, now) {
                    Ok(v) => Response::empty(200).header("Version", v),
                    Err(e) => read_error(e),
                }
            }
            Op::Hdel => {
                let (tb, k, ve) = (table(req)?, key(req)?, ver(req)?);
                match b.hdel(tb, k, ve, now) {
                    Ok(w) => write_ok(w.ver),
                    Err(e) => write_error(e),
                }
            }
            Op::Hincrby => {
                let (tb, k) = (table(req)?, key(req)?);
                let delta = required_i64(req, "val")?;
                let (t, ve) = (ttl(req)?, ver(req)?);
                match b.hincrby(tb, k, delta, t, ve, now) {
                    Ok((w, n)) => Response::text(n.to_string())
                        .header("Version", w.ver)
                        .header("VerError", "false"),
                    Err(e) => write_error(e),
                }
            }
            Op::Hkeys => {
                let tb = table(req)?;
                only_zero(req, "peer")?;
                let q = list_query(req)?;
                listing(b.hkeys(tb, &q, now))
            }
            // ---- set
            Op::Sadd => {
                let (tb, m, t, ve) = (table(req)?, key_or_body(req)?, ttl(req)?, ver(req)?);
                match b.sadd(tb, m, t, ve, now) {
                    Ok(w) => write_ok(w.ver),
                    Err(e) => write_error(e),
                }
            }
            Op::Srem => {
                let (tb, m, ve) = (table(req)?, key_or_body(req)?, ver(req)?);
                match b.srem(tb, m, ve, now) {
                    Ok(w) => write_ok(w.ver),
                    Err(e) => write_error(e),
                }
            }
            Op::Sismember => {
                let (tb, m) = (table(req)?, key_or_body(req)?);
                match b.sismember(tb, m, now) {
                    Ok(v) => Response::empty(200).header("Version", v),
                    Err(e) => read_error(e),
                }
            }
            Op::Smembers => {
                let tb = table(req)?;
                only_zero(req, "peer")?;
                let q = list_query(req)?;
                listing(b.smembers(tb, &q, now))
            }
            // ---- sorted set
            Op::Zadd => {
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
                match b.zadd(tb, m, score, mode, t, ve, now) {
                    Ok((w, s)) => Response::text(s.to_string())
                        .header("Version", w.ver)
                        .header("VerError", "false"),
                    Err(e) => write_error(e),
                }
            }
            Op::Zrem => {
                let (tb, m, ve) = (table(req)?, key_or_body(req)?, ver(req)?);
                match b.zrem(tb, m, ve, now) {
                    Ok(w) => write_ok(w.ver),
                    Err(e) => write_error(e),
                }
            }
            Op::Zismember => {
                let (tb, m) = (table(req)?, key_or_body(req)?);
                match b.zismember(tb, m, now) {
                    Ok(v) => Response::empty(200).header("Version", v),
                    Err(e) => read_error(e),
                }
            }
            Op::Zscore => {
                let (tb, m) = (table(req)?, key_or_body(req)?);
                match b.zscore(tb, m, now) {
                    Ok((v, s)) => read_ok(v, s.to_string().into_bytes()),
                    Err(e) => read_error(e),
                }
            }
            Op::ZrangeByRank => {
                let tb = table(req)?;
                let q = list_query(req)?;
                listing(b.zrange_by_rank(tb, &q, now))
            }
            Op::ZrangeByScore => {
                let tb = table(req)?;
                let (min, max) = (required_i64(req, "min")?, required_i64(req, "max")?);
                if min > max {
                    return Err(bad());
                }
                let q = list_query(req)?;
                listing(b.zrange_by_score(tb, min, max, &q, now))
            }
            // ---- statistics
            Op::Stat => {
                only_zero(req, "peer")?;
                let mut out = String::new();
                match req.params.get("tb") {
                    Some(_) => match b.table_stat(table(req)?, now) {
                        Ok(t) => table_json(&mut out, &t),
                        Err(e) => return Ok(plain_error(e)),
                    },
                    None => match b.totals() {
                        Ok(t) => totals_json(&mut out, &t),
                        Err(e) => return Ok(plain_error(e)),
                    },
                }
                Response::text(out)
            }
            Op::StatAll => {
                only_zero(req, "peer")?;
                let (totals, tables) = match b.totals().and_then(|t| Ok((t, b.all_tables(now)?))) {
                    Ok(x) => x,
                    Err(e) => return Ok(plain_error(e)),
                };
                let mut out = String::from("[");
                totals_json(&mut out, &totals);
                for t in &tables {
                    out.push(',');
                    table_json(&mut out, t);
                }
                out.push(']');
                Response::text(out)
            }
            Op::FileCount => {
                only_zero(req, "peer")?;
                Response::text("1")
            }
            // ---- cache
            Op::CachePut => {
                let (k, v, t) = (key(req)?, cache_val(req)?, ttl(req)?);
                unit(b.cache_put(k, v, t, now))
            }
            Op::CacheGet => match b.cache_get(key(req)?, now) {
                Ok(v) => Response::text(v),
                Err(e) => plain_error(e),
            },
            Op::CacheExist => unit(b.cache_exist(key(req)?, now)),
            Op::CacheDel => unit(b.cache_del(key(req)?, now)),
            Op::CacheTtl => match b.cache_ttl(key(req)?, now) {
                Ok(Some(secs)) => Response::text(secs.to_string()),
                Ok(None) => Response::text("-1"),
                Err(e) => plain_error(e),
            },
            Op::CacheExpire => {
                let k = key(req)?;
                let t = required_u64(req, "ttl", MAX_TTL)?;
                if t == 0 {
                    return Err(bad());
                }
                unit(b.cache_expire(k, t as u32, now))
            }
            Op::CachePersist => unit(b.cache_persist(key(req)?, now)),
            Op::CacheAppend => {
                let (k, v) = (key(req)?, cache_val(req)?);
                unit(b.cache_append(k, v, now))
            }
            Op::CacheHset => {
                let (tb, k, v) = (table(req)?, key(req)?, cache_val(req)?);
                unit(b.cache_hset(tb, k, v))
            }
            Op::CacheHget => {
                let (tb, k) = (table(req)?, key(req)?);
                match b.cache_hget(tb, k) {
                    Ok(v) => Response::text(v),
                    Err(e) => plain_error(e),
                }
            }
            Op::CacheHdel => {
                let (tb, k) = (table(req)?, key(req)?);
                unit(b.cache_hdel(tb, k))
            }
            Op::CacheHexist => {
                let (tb, k) = (table(req)?, key(req)?);
                unit(b.cache_hexist(tb, k))
            }
            Op::CacheHincrby => {
                let (tb, k) = (table(req)?, key(req)?);
                let delta = required_i64(req, "val")?;
                match b.cache_hincrby(tb, k, delta) {
                    Ok(n) => Response::text(n.to_string()),
                    Err(e) => plain_error(e),
                }
            }
            Op::CacheHincrbyfloat => {
                let (tb, k) = (table(req)?, key(req)?);
                let delta = parse_decimal(required(req, "val")?).ok_or_else(bad)?;
                match b.cache_hincrbyfloat(tb, k, delta) {
                    Ok(n) => Response::text(format!("{n}")),
                    Err(e) => plain_error(e),
                }
            }
            // ---- cluster administration, as a one-node cluster answers
            Op::PeerCount => Response::text("1"),
            Op::GetTable => Response::text(format!(
                "{{\"table\":[{{\"item\":{{\"key\":[0,1024],\"val\":[\"{0}\",\"{0}\"]}}}}]}}",
                self.node
            )),
            Op::SetTable => Response::empty(501),
            Op::SyncStatus => Response::text(
                "{\"status\":{},\"total_status\":{\"processed_items\":0,\"synced_items\":0}}",
            ),
            Op::SyncAlive => Response::text("ok\n"),
            Op::Metrics => Response::with_body(
                200,
                "text/plain; version=0.0.4",
                b"# huststore metrics\n".to_vec(),
            ),
            _ => Response::empty(404),
        })
    }
}

/// A cache value: 1..=8 MiB (`413` past it).
fn cache_val<'r>(req: &'r Request<'_>) -> Check<&'r [u8]> {
    let v = val_or_body(req)?;
    if v.len() > MAX_CACHE_VALUE {
        return Err(Response::empty(413));
    }
    Ok(v)
}

fn unit(r: storage::Result<()>) -> Response {
    match r {
        Ok(()) => Response::empty(200),
        Err(e) => plain_error(e),
    }
}

impl Service for KvService {
    fn call(
        &mut self,
        op: Op,
        req: &Request<'_>,
        _who: ConnRef,
        pass: &mut Pass<'_, '_>,
    ) -> Outcome {
        Outcome::Reply(self.serve(op, req, pass).unwrap_or_else(|r| r))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_for_hincrbyfloat() {
        assert_eq!(parse_decimal(b"1.5"), Some(1.5));
        assert_eq!(parse_decimal(b"-0.25"), Some(-0.25));
        assert_eq!(parse_decimal(b"1e3"), Some(1000.0));
        assert_eq!(parse_decimal(b"2E-2"), Some(0.02));
        for bad in [
            &b""[..],
            b"1.",
            b".5",
            b"+1",
            b"1e",
            b"inf",
            b"NaN",
            b"1e999",
            b"0x10",
        ] {
            assert_eq!(
                parse_decimal(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(format!("{}", 1.75f64), "1.75");
        assert_eq!(format!("{}", 10f64), "10");
    }
}
