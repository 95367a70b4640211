//! The volatile cache (`kv-api.md` §8), `/cache/*`: string keys (`put`, `get`, `exist`, `del`,
//! `ttl`, `expire`, `persist`, `append`) and hash tables (`hset`, `hget`, `hdel`, `hexist`,
//! `hincrby`, `hincrbyfloat`). No versions: errors are [`plain_error`]s.

use super::{
    apply, bad, key, plain_error, required, required_i64, required_ttl, table, val_or_body, Check,
    KvService,
};
use crate::http::Response;
use crate::service::{Pass, Request};
use storage::{expires_at, Write};

const MAX_CACHE_VALUE: usize = 8 << 20;

/// A cache value: 1..=8 MiB (`413` past it).
fn cache_val<'r>(req: &'r Request<'_>) -> Check<&'r [u8]> {
    let v = val_or_body(req)?;
    if v.len() > MAX_CACHE_VALUE {
        return Err(Response::empty(413));
    }
    Ok(v)
}

/// An empty `200`, or why not.
fn unit(r: storage::Result<()>) -> Response {
    match r {
        Ok(()) => Response::empty(200),
        Err(e) => plain_error(e),
    }
}

/// The value as the body, or why not.
fn text(r: storage::Result<impl Into<Vec<u8>>>) -> Response {
    match r {
        Ok(v) => Response::text(v),
        Err(e) => plain_error(e),
    }
}

pub fn put(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    // `super::ttl` is the parameter; `ttl` below is the `/cache/ttl` endpoint.
    let (k, v, t) = (key(req)?, cache_val(req)?, super::ttl(req)?);
    let expires_at = expires_at(t, pass.now_ms);
    Ok(apply(
        pass,
        Write::CachePut {
            key: k,
            val: v,
            expires_at,
        },
    ))
}

pub fn get(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    Ok(text(pass.batch.cache_get(key(req)?, pass.now_ms)))
}

pub fn exist(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    Ok(unit(pass.batch.cache_exist(key(req)?, pass.now_ms)))
}

pub fn del(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    Ok(apply(pass, Write::CacheDel { key: key(req)? }))
}

/// Seconds left, `-1` without expiry.
pub fn ttl(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let left = pass.batch.cache_ttl(key(req)?, pass.now_ms);
    Ok(text(left.map(|s| {
        s.map_or_else(|| "-1".to_string(), |s| s.to_string())
    })))
}

pub fn expire(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (k, t) = (key(req)?, required_ttl(req)?);
    let expires_at = expires_at(t, pass.now_ms);
    Ok(apply(pass, Write::CacheExpire { key: k, expires_at }))
}

pub fn persist(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    Ok(apply(pass, Write::CachePersist { key: key(req)? }))
}

pub fn append(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (k, v) = (key(req)?, cache_val(req)?);
    Ok(apply(pass, Write::CacheAppend { key: k, val: v }))
}

pub fn hset(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, k, v) = (table(req)?, key(req)?, cache_val(req)?);
    Ok(apply(pass, Write::CacheHset { tb, key: k, val: v }))
}

pub fn hget(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, k) = (table(req)?, key(req)?);
    Ok(text(pass.batch.cache_hget(tb, k)))
}

pub fn hdel(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, k) = (table(req)?, key(req)?);
    Ok(apply(pass, Write::CacheHdel { tb, key: k }))
}

pub fn hexist(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, k) = (table(req)?, key(req)?);
    Ok(unit(pass.batch.cache_hexist(tb, k)))
}

pub fn hincrby(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, k) = (table(req)?, key(req)?);
    let delta = required_i64(req, "val")?;
    Ok(apply(pass, Write::CacheHincrby { tb, key: k, delta }))
}

pub fn hincrbyfloat(_: &mut KvService, req: &Request, pass: &mut Pass) -> Check<Response> {
    let (tb, k) = (table(req)?, key(req)?);
    let delta = parse_decimal(required(req, "val")?).ok_or_else(bad)?;
    Ok(apply(pass, Write::CacheHincrbyfloat { tb, key: k, delta }))
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
