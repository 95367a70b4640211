//! Hash, set and sorted-set tables and their listings (`kv-api.md` §2.4, §2.7, §4, §5, §6)
//! against the real binary: the spec's examples, type binding, table existence and names,
//! hincrby, zadd modes, members as bodies, listing order, paging and buckets, expiry, the
//! table limit, and random operations checked against an in-memory model.

mod common;

use common::kv::*;

use common::{wait_until, Client, Response, Server};
use std::time::Duration;

// ---- helpers of this file (the shared ones are in common/kv.rs)

/// `Version: n, VerError: false`.
#[track_caller]
fn wrote(r: &Response, ver: u32, body: &str) {
    let v = ver.to_string();
    expect(r, 200, &[("Version", &v), ("VerError", "false")], body);
}

/// `200`, `Version: n`.
#[track_caller]
fn read(r: &Response, ver: u32, body: impl AsRef<[u8]>) {
    let v = ver.to_string();
    expect(r, 200, &[("Version", &v)], body);
}

/// One listing item as §2.7 writes it; `val` already rendered (base64 or decimal score).
fn item(key: &[u8], val: Option<&str>, ver: u32) -> String {
    match val {
        Some(v) => format!("{{\"key\":\"{}\",\"val\":\"{v}\",\"ver\":{ver}}}", b64(key)),
        None => format!("{{\"key\":\"{}\",\"ver\":{ver}}}", b64(key)),
    }
}

/// A listing page: body, `Keys`, `TotalCount`.
#[track_caller]
fn listed(r: &Response, items: &[String], total: usize) {
    let keys = items.len().to_string();
    let total = total.to_string();
    expect(
        r,
        200,
        &[("Keys", &keys), ("TotalCount", &total)],
        format!("[{}]", items.join(",")),
    );
}

/// §2.7's bucket: `h = h*31 + b mod 2^32` over unsigned bytes, mod 1024.
fn bucket(key: &[u8]) -> u32 {
    key.iter()
        .fold(0u32, |h, &b| h.wrapping_mul(31).wrapping_add(b as u32))
        % 1024
}

// ---- the spec's examples

#[test]
fn spec_examples_of_hash_tables() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    expect(&g(&mut c, "/hset?tb=h1&key=f1&val=10"), 200, W1, "");
    expect(&g(&mut c, "/hget?tb=h1&key=f1"), 200, R1, "10");
    expect(&g(&mut c, "/hget2?tb=h1&key=f1"), 200, R1, "10");
    expect(&g(&mut c, "/hexist?tb=h1&key=f1"), 200, R1, "");
    let r = g(&mut c, "/hincrby?tb=h1&key=f1&val=5");
    wrote(&r, 2, "15");
    assert_eq!(r.header("Content-Length"), Some("2"));
    let r = g(&mut c, "/hkeys?tb=h1&offset=0&size=10&noval=false");
    expect(
        &r,
        200,
        &[("Keys", "1"), ("TotalCount", "0")],
        r#"[{"key":"ZjE=","val":"MTU=","ver":2}]"#,
    );
    assert_eq!(r.header("Content-Length"), Some("37"));
    expect(
        &g(&mut c, "/hget?tb=h1&key=f1"),
        200,
        &[("Version", "2")],
        "15",
    );
    // /hdel returns the version the field had.
    wrote(&g(&mut c, "/hdel?tb=h1&key=f1"), 2, "");
    expect(&g(&mut c, "/hset?tb=h2&key=f1&val=10"), 200, W1, "");
    expect(&g(&mut c, "/hdel?tb=h2&key=f1"), 200, W1, "");
    expect(&g(&mut c, "/hget?tb=h2&key=f1"), 404, R0, "");
}

#[test]
fn spec_examples_of_sets() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    expect(&post(&mut c, "/sadd?tb=s1", b"m1"), 200, W1, "");
    expect(&post(&mut c, "/sismember?tb=s1", b"m1"), 200, R1, "");
    expect(&post(&mut c, "/sismember2?tb=s1", b"m1"), 200, R1, "");
    expect(&g(&mut c, "/sismember?tb=s1&key=m1"), 200, R1, "");
    expect(&g(&mut c, "/sadd?tb=s1&key=m2"), 200, W1, "");
    let r = g(&mut c, "/smembers?tb=s1&offset=0&size=10");
    expect(
        &r,
        200,
        &[("Keys", "2"), ("TotalCount", "0")],
        r#"[{"key":"bTE=","ver":1},{"key":"bTI=","ver":1}]"#,
    );
    assert_eq!(r.header("Content-Length"), Some("47"));
    // Sets never list values, even with noval=false.
    let r = g(&mut c, "/smembers?tb=s1&offset=0&size=10&noval=false");
    listed(&r, &[item(b"m1", None, 1), item(b"m2", None, 1)], 0);
    expect(&post(&mut c, "/srem?tb=s1", b"m1"), 200, W1, "");
    expect(&post(&mut c, "/sismember?tb=s1", b"m1"), 404, R0, "");
    expect(&post(&mut c, "/sismember2?tb=s1", b"m1"), 404, R0, "");
    expect(&post(&mut c, "/srem?tb=s1", b"m1"), 404, W0, "");
    // Adding an existing member is a write: version + 1.
    wrote(&post(&mut c, "/sadd?tb=s1", b"m2"), 2, "");
    read(&post(&mut c, "/sismember?tb=s1", b"m2"), 2, "");
    wrote(&post(&mut c, "/srem?tb=s1", b"m2"), 2, "");
}

#[test]
fn spec_examples_of_sorted_sets() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    let r = post(&mut c, "/zadd?tb=z1&score=60", b"m1");
    expect(&r, 200, W1, "60");
    assert_eq!(r.header("Content-Length"), Some("2"));
    expect(&post(&mut c, "/zismember?tb=z1", b"m1"), 200, R1, "");
    expect(&post(&mut c, "/zscore?tb=z1", b"m1"), 200, R1, "60");
    expect(&g(&mut c, "/zscore2?tb=z1&key=m1"), 200, R1, "60");
    expect(&g(&mut c, "/zadd?tb=z1&key=m2&score=30"), 200, W1, "30");
    let r = g(&mut c, "/zrangebyrank?tb=z1&offset=0&size=10&noval=false");
    expect(
        &r,
        200,
        &[("Keys", "2"), ("TotalCount", "0")],
        r#"[{"key":"bTI=","val":"30","ver":1},{"key":"bTE=","val":"60","ver":1}]"#,
    );
    assert_eq!(r.header("Content-Length"), Some("69"));
    let r = g(
        &mut c,
        "/zrangebyscore?tb=z1&min=0&max=50&offset=0&size=10&noval=false",
    );
    expect(
        &r,
        200,
        &[("Keys", "1"), ("TotalCount", "0")],
        r#"[{"key":"bTI=","val":"30","ver":1}]"#,
    );
    assert_eq!(r.header("Content-Length"), Some("35"));
    // noval defaults to true on sorted sets too.
    let r = g(&mut c, "/zrangebyrank?tb=z1&offset=0&size=10");
    listed(&r, &[item(b"m2", None, 1), item(b"m1", None, 1)], 0);
    expect(&post(&mut c, "/zrem?tb=z1", b"m1"), 200, W1, "");
    expect(&post(&mut c, "/zismember?tb=z1", b"m1"), 404, R0, "");
    expect(&post(&mut c, "/zscore?tb=z1", b"m1"), 404, R0, "");
    expect(&post(&mut c, "/zscore2?tb=z1", b"m1"), 404, R0, "");
    expect(&post(&mut c, "/zrem?tb=z1", b"m1"), 404, W0, "");
}

// ---- tables: types, existence, names

/// Every table operation, with `{tb}` for the table; valid parameters otherwise.
const HASH_OPS: &[&str] = &[
    "/hset?tb={tb}&key=f&val=1",
    "/hget?tb={tb}&key=f",
    "/hget2?tb={tb}&key=f",
    "/hexist?tb={tb}&key=f",
    "/hdel?tb={tb}&key=f",
    "/hincrby?tb={tb}&key=f&val=1",
    "/hkeys?tb={tb}&offset=0&size=10",
];
const SET_OPS: &[&str] = &[
    "/sadd?tb={tb}&key=m",
    "/srem?tb={tb}&key=m",
    "/sismember?tb={tb}&key=m",
    "/sismember2?tb={tb}&key=m",
    "/smembers?tb={tb}&offset=0&size=10",
];
const ZSET_OPS: &[&str] = &[
    "/zadd?tb={tb}&key=m&score=1",
    "/zrem?tb={tb}&key=m",
    "/zismember?tb={tb}&key=m",
    "/zscore?tb={tb}&key=m",
    "/zscore2?tb={tb}&key=m",
    "/zrangebyrank?tb={tb}&offset=0&size=10",
    "/zrangebyscore?tb={tb}&min=0&max=10&offset=0&size=10",
];

fn is_write(op: &str) -> bool {
    [
        "/hset", "/hdel", "/hincrby", "/sadd", "/srem", "/zadd", "/zrem",
    ]
    .iter()
    .any(|w| op.starts_with(&format!("{w}?")))
}

fn is_listing(op: &str) -> bool {
    ["/hkeys", "/smembers", "/zrange"]
        .iter()
        .any(|w| op.starts_with(w))
}

#[test]
fn a_table_is_bound_to_one_type_412() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    expect(&g(&mut c, "/hset?tb=h&key=f&val=v"), 200, W1, "");
    expect(&g(&mut c, "/sadd?tb=s&key=m"), 200, W1, "");
    expect(&g(&mut c, "/zadd?tb=z&key=m&score=5"), 200, W1, "5");
    let before = g(&mut c, "/stat_all").text();
    for (ops, others) in [
        (HASH_OPS, ["s", "z"]),
        (SET_OPS, ["h", "z"]),
        (ZSET_OPS, ["h", "s"]),
    ] {
        for tb in others {
            for op in ops {
                for extra in ["", "&ver=1", "&ver=7"] {
                    let target = format!("{}{extra}", op.replace("{tb}", tb));
                    let r = g(&mut c, &target);
                    if is_listing(op) {
                        expect(&r, 412, &[], "");
                    } else if is_write(op) {
                        expect(&r, 412, W0, "");
                    } else {
                        expect(&r, 412, R0, "");
                    }
                    // The member travelling as a body: same answer.
                    if op.contains("key=m") && !op.starts_with("/h") {
                        let r = post(&mut c, &target.replace("key=m", "x=y"), b"m");
                        assert_eq!(r.status, 412, "POST {target}");
                    }
                }
            }
        }
    }
    // Nothing changed.
    assert_eq!(g(&mut c, "/stat_all").text(), before);
    read(&g(&mut c, "/hget?tb=h&key=f"), 1, "v");
    read(&g(&mut c, "/sismember?tb=s&key=m"), 1, "");
    read(&g(&mut c, "/zscore?tb=z&key=m"), 1, "5");
    // Tables and plain keys are separate namespaces.
    expect(&g(&mut c, "/put?key=h&val=plain"), 200, W1, "");
    read(&g(&mut c, "/get?key=h"), 1, "plain");
    read(&g(&mut c, "/hget?tb=h&key=f"), 1, "v");
}

#[test]
fn an_absent_table_is_404_for_reads_deletes_and_listings() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    for op in HASH_OPS.iter().chain(SET_OPS).chain(ZSET_OPS) {
        let target = op.replace("{tb}", "nothere");
        if op.starts_with("/hset")
            || op.starts_with("/hincrby")
            || op.starts_with("/sadd")
            || op.starts_with("/zadd")
        {
            // A conditional write to an absent table: version mismatch with 0.
            let r = g(&mut c, &format!("{target}&ver=3"));
            expect(&r, 401, &[("Version", "0"), ("VerError", "true")], "");
            continue;
        }
        let r = g(&mut c, &target);
        if is_listing(op) {
            expect(&r, 404, &[], "");
        } else if is_write(op) {
            expect(&r, 404, W0, "");
            // ver does not matter for deletes of an absent record.
            expect(&g(&mut c, &format!("{target}&ver=3")), 404, W0, "");
        } else {
            expect(&r, 404, R0, "");
        }
    }
    expect(&g(&mut c, "/stat?tb=nothere"), 404, &[], "");
    // None of that created a table.
    expect(
        &g(&mut c, "/stat_all"),
        200,
        &[],
        r#"[{"TOTALIZE":{"KVPAIR":{"count":0,"size":0,"capacity":0},"HASHTABLE":{"count":0,"size":0,"capacity":0}}}]"#,
    );
    // An existing table without that member: 404 as well.
    expect(&g(&mut c, "/hset?tb=h&key=other&val=1"), 200, W1, "");
    expect(&g(&mut c, "/sadd?tb=s&key=other"), 200, W1, "");
    expect(&g(&mut c, "/zadd?tb=z&key=other&score=1"), 200, W1, "1");
    for op in HASH_OPS.iter().chain(SET_OPS).chain(ZSET_OPS) {
        if is_listing(op)
            || op.starts_with("/hset")
            || op.starts_with("/hincrby")
            || op.starts_with("/sadd")
            || op.starts_with("/zadd")
        {
            continue;
        }
        let tb = &op[1..2];
        let tb = if tb == "h" {
            "h"
        } else if op.starts_with("/s") {
            "s"
        } else {
            "z"
        };
        let r = g(&mut c, &op.replace("{tb}", tb));
        if is_write(op) {
            expect(&r, 404, W0, "");
        } else {
            expect(&r, 404, R0, "");
        }
    }
}

#[test]
fn a_table_ends_with_its_last_member_and_its_name_is_reusable() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    expect(&g(&mut c, "/hset?tb=t&key=a&val=1"), 200, W1, "");
    expect(&g(&mut c, "/hset?tb=t&key=b&val=2"), 200, W1, "");
    expect(&g(&mut c, "/sadd?tb=t&key=a"), 412, W0, "");
    expect(&g(&mut c, "/hdel?tb=t&key=a"), 200, W1, "");
    expect(&g(&mut c, "/sadd?tb=t&key=a"), 412, W0, "");
    expect(&g(&mut c, "/hdel?tb=t&key=b"), 200, W1, "");
    // Gone: 404 everywhere, and another type may take the name.
    expect(&g(&mut c, "/hkeys?tb=t&offset=0&size=10"), 404, &[], "");
    expect(&g(&mut c, "/hget?tb=t&key=b"), 404, R0, "");
    expect(&g(&mut c, "/stat?tb=t"), 404, &[], "");
    expect(&g(&mut c, "/sadd?tb=t&key=a"), 200, W1, "");
    expect(
        &g(&mut c, "/stat?tb=t"),
        200,
        &[],
        r#"{"table":"t","type":"S","count":1}"#,
    );
    expect(&g(&mut c, "/hset?tb=t&key=a&val=1"), 412, W0, "");
    expect(&g(&mut c, "/srem?tb=t&key=a"), 200, W1, "");
    expect(&g(&mut c, "/smembers?tb=t&offset=0&size=10"), 404, &[], "");
    expect(&g(&mut c, "/zadd?tb=t&key=a&score=-3"), 200, W1, "-3");
    expect(
        &g(&mut c, "/stat?tb=t"),
        200,
        &[],
        r#"{"table":"t","type":"Z","count":1}"#,
    );
    expect(&g(&mut c, "/zrem?tb=t&key=a"), 200, W1, "");
    expect(
        &g(&mut c, "/zrangebyrank?tb=t&offset=0&size=10"),
        404,
        &[],
        "",
    );
    // hincrby creates a hash table.
    expect(&g(&mut c, "/hincrby?tb=t&key=n&val=-4"), 200, W1, "-4");
    expect(
        &g(&mut c, "/stat?tb=t"),
        200,
        &[],
        r#"{"table":"t","type":"H","count":1,"size":3,"capacity":1024}"#,
    );
    // The re-created member starts again at version 1.
    expect(&g(&mut c, "/hdel?tb=t&key=n"), 200, W1, "");
    expect(&g(&mut c, "/sadd?tb=t&key=a"), 200, W1, "");
    expect(
        &g(&mut c, "/sadd?tb=t&key=a"),
        200,
        &[("Version", "2"), ("VerError", "false")],
        "",
    );
    expect(
        &g(&mut c, "/srem?tb=t&key=a"),
        200,
        &[("Version", "2"), ("VerError", "false")],
        "",
    );
    expect(&g(&mut c, "/sadd?tb=t&key=a"), 200, W1, "");
}

#[test]
fn table_names_are_validated() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    let long_ok = "a".repeat(64);
    let too_long = "a".repeat(65);
    for tb in [
        "no%20spaces",
        "no+spaces",
        "a-b",
        "a/b",
        "a%00",
        "%C3%A9t%C3%A9",
        "a%2Cb",
        "a\"b",
        "tab%09",
        too_long.as_str(),
    ] {
        for op in HASH_OPS.iter().chain(SET_OPS).chain(ZSET_OPS) {
            expect(&g(&mut c, &op.replace("{tb}", tb)), 400, &[], "");
        }
        expect(&g(&mut c, &format!("/stat?tb={tb}")), 400, &[], "");
        for cache in [
            "/cache/hset?tb={tb}&key=f&val=1",
            "/cache/hget?tb={tb}&key=f",
        ] {
            expect(&g(&mut c, &cache.replace("{tb}", tb)), 400, &[], "");
        }
    }
    // Missing or empty tb: 400 too.
    for op in HASH_OPS.iter().chain(SET_OPS).chain(ZSET_OPS) {
        expect(&g(&mut c, &op.replace("tb={tb}&", "")), 400, &[], "");
        expect(&g(&mut c, &op.replace("{tb}", "")), 400, &[], "");
    }
    // No table came out of it.
    let r = g(&mut c, "/stat_all");
    assert_eq!(r.text().matches("\"table\"").count(), 0, "{}", r.text());
    // The whole alphabet, and exactly 64 characters, are valid.
    for tb in ["Az09_:.", long_ok.as_str(), "A%3Ab"] {
        let r = g(&mut c, &format!("/hset?tb={tb}&key=f&val=1"));
        expect(&r, 200, W1, "");
    }
    let r = g(&mut c, "/stat_all");
    let want = format!(
        r#"[{{"TOTALIZE":{{"KVPAIR":{{"count":0,"size":0,"capacity":0}},"HASHTABLE":{{"count":3,"size":6,"capacity":3072}}}}}},{{"table":"A:b","type":"H","count":1,"size":2,"capacity":1024}},{{"table":"Az09_:.","type":"H","count":1,"size":2,"capacity":1024}},{{"table":"{long_ok}","type":"H","count":1,"size":2,"capacity":1024}}]"#
    );
    expect(&r, 200, &[], want);
}

// ---- hincrby

#[test]
fn hincrby_counts_from_zero_and_refuses_non_integers_and_overflow() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    wrote(&g(&mut c, "/hincrby?tb=h&key=n&val=5"), 1, "5");
    wrote(&g(&mut c, "/hincrby?tb=h&key=n&val=-12"), 2, "-7");
    wrote(&g(&mut c, "/hincrby?tb=h&key=n&val=0"), 3, "-7");
    read(&g(&mut c, "/hget?tb=h&key=n"), 3, "-7");
    // Stored text that parses as an integer.
    for (stored, delta, want) in [
        ("007", "1", "8"),
        ("-0", "3", "3"),
        ("9223372036854775806", "1", "9223372036854775807"),
        ("-9223372036854775807", "-1", "-9223372036854775808"),
    ] {
        expect(
            &g(&mut c, &format!("/hset?tb=h&key=i&val={stored}")),
            200,
            &[("Version", "1"), ("VerError", "false")],
            "",
        );
        wrote(
            &g(&mut c, &format!("/hincrby?tb=h&key=i&val={delta}")),
            2,
            want,
        );
        read(&g(&mut c, "/hget?tb=h&key=i"), 2, want);
        expect(
            &g(&mut c, "/hdel?tb=h&key=i"),
            200,
            &[("Version", "2"), ("VerError", "false")],
            "",
        );
    }
    // Not an integer, or overflow: 409 with Version 0, value and version unchanged.
    for (stored, delta) in [
        ("abc", "1"),
        ("1.5", "1"),
        ("%2B1", "1"),
        ("%201", "1"),
        ("1%20", "1"),
        ("1e3", "1"),
        ("9223372036854775808", "1"),
        ("9223372036854775807", "1"),
        ("-9223372036854775808", "-1"),
        ("-1", "-9223372036854775808"),
        ("--1", "1"),
        ("-", "1"),
    ] {
        expect(
            &g(&mut c, &format!("/hset?tb=h&key=x&val={stored}")),
            200,
            W1,
            "",
        );
        let r = g(&mut c, &format!("/hincrby?tb=h&key=x&val={delta}"));
        expect(&r, 409, W0, "");
        let raw = common_decode(stored);
        read(&g(&mut c, "/hget?tb=h&key=x"), 1, raw);
        expect(&g(&mut c, "/hdel?tb=h&key=x"), 200, W1, "");
    }
    // A binary value is not an integer either.
    expect(&post(&mut c, "/hset?tb=h&key=x", b"\x001"), 200, W1, "");
    expect(&g(&mut c, "/hincrby?tb=h&key=x&val=1"), 409, W0, "");
    // The increment must be a valid integer: 400.
    for bad in [
        "abc",
        "1.5",
        "%2B1",
        "9223372036854775808",
        "-9223372036854775809",
        "",
        "1e2",
        "0x1",
    ] {
        let r = g(&mut c, &format!("/hincrby?tb=h&key=n&val={bad}"));
        expect(&r, 400, &[], "");
    }
    // The increment travels in the query only: a POST body does not count.
    expect(&post(&mut c, "/hincrby?tb=h&key=n", b"5"), 400, &[], "");
    wrote(&post(&mut c, "/hincrby?tb=h&key=n&val=2", b"100"), 4, "-5");
    // ver and ttl as on hset.
    let r = g(&mut c, "/hincrby?tb=h&key=n&val=1&ver=3");
    expect(&r, 401, &[("Version", "4"), ("VerError", "true")], "");
    wrote(&g(&mut c, "/hincrby?tb=h&key=n&val=1&ver=4"), 5, "-4");
    let r = g(&mut c, "/hincrby?tb=h&key=new&val=1&ver=1");
    expect(&r, 401, &[("Version", "0"), ("VerError", "true")], "");
    wrote(&g(&mut c, "/hincrby?tb=h&key=exp&val=1&ttl=1"), 1, "1");
    let gone = wait_until(Duration::from_secs(3), || {
        g(&mut c, "/hget?tb=h&key=exp").status == 404
    });
    assert!(gone, "hincrby's ttl was not applied");
    // After expiry the field counts from 0 again, version 1.
    wrote(&g(&mut c, "/hincrby?tb=h&key=exp&val=10"), 1, "10");
}

/// Percent-decodes a test literal (only the escapes used above).
fn common_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

// ---- zadd

#[test]
fn zadd_modes_no_ops_and_overflow() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    // opt=1 and opt=-1 on an absent member count from 0.
    wrote(&g(&mut c, "/zadd?tb=z&key=a&score=5&opt=1"), 1, "5");
    wrote(&g(&mut c, "/zadd?tb=z&key=b&score=5&opt=-1"), 1, "-5");
    wrote(&g(&mut c, "/zadd?tb=z&key=c&score=5&opt=0"), 1, "5");
    wrote(&g(&mut c, "/zadd?tb=z&key=a&score=10&opt=1"), 2, "15");
    wrote(&g(&mut c, "/zadd?tb=z&key=a&score=20&opt=-1"), 3, "-5");
    wrote(&g(&mut c, "/zadd?tb=z&key=a&score=7"), 4, "7");
    read(&g(&mut c, "/zscore?tb=z&key=a"), 4, "7");
    // opt=0 with the same score is a no-op: version unchanged, still the score as body.
    wrote(&g(&mut c, "/zadd?tb=z&key=a&score=7"), 4, "7");
    wrote(&g(&mut c, "/zadd?tb=z&key=a&score=7&opt=0"), 4, "7");
    read(&g(&mut c, "/zscore?tb=z&key=a"), 4, "7");
    // ... but the version check comes first.
    let r = g(&mut c, "/zadd?tb=z&key=a&score=7&ver=3");
    expect(&r, 401, &[("Version", "4"), ("VerError", "true")], "");
    wrote(&g(&mut c, "/zadd?tb=z&key=a&score=7&ver=4"), 4, "7");
    wrote(&g(&mut c, "/zadd?tb=z&key=a&score=8&ver=4"), 5, "8");
    // Adding 0 is a write (only opt=0 with an equal score is a no-op).
    wrote(&g(&mut c, "/zadd?tb=z&key=a&score=0&opt=1"), 6, "8");
    // Overflow: 409 with Version 0, nothing changes.
    wrote(
        &g(&mut c, "/zadd?tb=z&key=max&score=9223372036854775807"),
        1,
        "9223372036854775807",
    );
    expect(&g(&mut c, "/zadd?tb=z&key=max&score=1&opt=1"), 409, W0, "");
    expect(
        &g(&mut c, "/zadd?tb=z&key=max&score=-1&opt=-1"),
        409,
        W0,
        "",
    );
    wrote(
        &g(&mut c, "/zadd?tb=z&key=min&score=-9223372036854775808"),
        1,
        "-9223372036854775808",
    );
    expect(&g(&mut c, "/zadd?tb=z&key=min&score=1&opt=-1"), 409, W0, "");
    expect(
        &g(
            &mut c,
            "/zadd?tb=z&key=zero&score=-9223372036854775808&opt=-1",
        ),
        409,
        W0,
        "",
    );
    expect(&g(&mut c, "/zismember?tb=z&key=zero"), 404, R0, "");
    read(&g(&mut c, "/zscore?tb=z&key=max"), 1, "9223372036854775807");
    read(
        &g(&mut c, "/zscore?tb=z&key=min"),
        1,
        "-9223372036854775808",
    );
    // Bad parameters: 400.
    for bad in [
        "score=1.5",
        "score=abc",
        "score=%2B1",
        "score=9223372036854775808",
        "score=",
        "opt=2",
        "opt=%2B1",
        "opt=true",
        "opt=-2",
        "opt=1.0",
        "ttl=2592001",
        "ver=4294967296",
    ] {
        let target = format!("/zadd?tb=z&key=a&score=1&{bad}").replace("score=1&score=", "score=");
        let target = if bad.starts_with("score") {
            format!("/zadd?tb=z&key=a&{bad}")
        } else {
            target
        };
        expect(&g(&mut c, &target), 400, &[], "");
    }
    expect(&g(&mut c, "/zadd?tb=z&key=a"), 400, &[], "");
    read(&g(&mut c, "/zscore?tb=z&key=a"), 6, "8");
}

#[test]
fn zadd_no_op_keeps_the_expiry_and_a_write_replaces_it() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    wrote(&g(&mut c, "/zadd?tb=z&key=noop&score=1&ttl=1"), 1, "1");
    wrote(&g(&mut c, "/zadd?tb=z&key=write&score=1&ttl=1"), 1, "1");
    wrote(&g(&mut c, "/zadd?tb=z&key=perm&score=1"), 1, "1");
    // A no-op without ttl keeps the expiry; a real write without ttl removes it.
    wrote(&g(&mut c, "/zadd?tb=z&key=noop&score=1"), 1, "1");
    wrote(&g(&mut c, "/zadd?tb=z&key=write&score=2"), 2, "2");
    let gone = wait_until(Duration::from_secs(3), || {
        g(&mut c, "/zscore?tb=z&key=noop").status == 404
    });
    assert!(gone, "the no-op zadd dropped the expiry");
    read(&g(&mut c, "/zscore?tb=z&key=write"), 2, "2");
    let r = g(
        &mut c,
        "/zrangebyrank?tb=z&offset=0&size=10&noval=false&async=true",
    );
    listed(
        &r,
        &[item(b"perm", Some("1"), 1), item(b"write", Some("2"), 2)],
        2,
    );
}

// ---- members as bodies, key limits

#[test]
fn members_travel_as_body_or_key_and_are_limited_to_64_kib() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    // A non-empty POST body wins over `key`; an empty one leaves `key`; a GET body is ignored.
    expect(&post(&mut c, "/sadd?tb=s&key=query", b"body"), 200, W1, "");
    expect(&post(&mut c, "/sadd?tb=s&key=query2", b""), 200, W1, "");
    expect(
        &c.send("GET", "/sadd?tb=s&key=query3", &[], b"getbody"),
        200,
        W1,
        "",
    );
    expect(&c.send("GET", "/sadd?tb=s", &[], b"getbody"), 400, &[], "");
    expect(&post(&mut c, "/sadd?tb=s", b""), 400, &[], "");
    let r = g(&mut c, "/smembers?tb=s&offset=0&size=10");
    listed(
        &r,
        &[
            item(b"body", None, 1),
            item(b"query2", None, 1),
            item(b"query3", None, 1),
        ],
        0,
    );
    read(&post(&mut c, "/sismember?tb=s&key=nope", b"body"), 1, "");
    expect(
        &post(&mut c, "/sismember?tb=s&key=body", b"nope"),
        404,
        R0,
        "",
    );
    expect(
        &c.send("GET", "/sismember?tb=s&key=nope", &[], b"body"),
        404,
        R0,
        "",
    );
    // Binary members.
    let bin = [0u8, 0xff, b'\r', b'\n', 0];
    expect(&post(&mut c, "/zadd?tb=z&score=-1", &bin), 200, W1, "-1");
    read(
        &g(&mut c, &format!("/zscore?tb=z&key={}", pct(&bin))),
        1,
        "-1",
    );
    read(&post(&mut c, "/zismember?tb=z", &bin), 1, "");
    // hset: key from the query only, the body is the value.
    expect(&post(&mut c, "/hset?tb=h&key=f", b"value"), 200, W1, "");
    read(&g(&mut c, "/hget?tb=h&key=f"), 1, "value");
    expect(&post(&mut c, "/hset?tb=h", b"value"), 400, &[], "");
    expect(&post(&mut c, "/hget?tb=h", b"f"), 400, &[], "");
    // 65536 bytes: fine in a body and in the query; 65537: 400.
    let max = vec![b'm'; 65536];
    let over = vec![b'm'; 65537];
    expect(&post(&mut c, "/sadd?tb=big", &max), 200, W1, "");
    expect(&post(&mut c, "/sadd?tb=big", &over), 400, &[], "");
    expect(
        &g(&mut c, &format!("/sadd?tb=big&key={}", pct(&over))),
        400,
        &[],
        "",
    );
    read(
        &g(&mut c, &format!("/sismember?tb=big&key={}", pct(&max))),
        1,
        "",
    );
    expect(&post(&mut c, "/zadd?tb=zbig&score=3", &max), 200, W1, "3");
    expect(&post(&mut c, "/zadd?tb=zbig&score=3", &over), 400, &[], "");
    let r = g(&mut c, &format!("/hset?tb=hbig&key={}&val=v", pct(&max)));
    expect(&r, 200, W1, "");
    let r = g(&mut c, &format!("/hset?tb=hbig&key={}&val=v", pct(&over)));
    expect(&r, 400, &[], "");
    let r = g(&mut c, "/smembers?tb=big&offset=0&size=10&async=true");
    listed(&r, &[item(&max, None, 1)], 1);
    let r = g(&mut c, "/hkeys?tb=hbig&offset=0&size=10&noval=false");
    listed(&r, &[item(&max, Some(&b64(b"v")), 1)], 0);
    for target in [
        "/srem?tb=big",
        "/sismember?tb=big",
        "/zrem?tb=zbig",
        "/zscore?tb=zbig",
    ] {
        expect(&post(&mut c, target, &over), 400, &[], "");
    }
    wrote(&post(&mut c, "/srem?tb=big", &max), 1, "");
    wrote(&post(&mut c, "/zrem?tb=zbig", &max), 1, "");
}

// ---- listings

#[test]
fn listings_order_paging_buckets_values_and_counts() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    // The spec's bucket examples.
    assert_eq!((bucket(b"a"), bucket(b"ab"), bucket(b"k1")), (97, 33, 294));
    let mut keys: Vec<Vec<u8>> = vec![
        b"a".to_vec(),
        b"ab".to_vec(),
        b"k1".to_vec(),
        b"B".to_vec(),
        b"b".to_vec(),
        vec![0xff],
        vec![0x80, 1],
        vec![0],
        b"a\x00".to_vec(),
        b"aa".to_vec(),
    ];
    for i in 0..40 {
        keys.push(format!("key{i:03}").into_bytes());
    }
    for (i, k) in keys.iter().enumerate() {
        let val = format!("v{i}");
        expect(
            &g(&mut c, &format!("/put?key={}&val={val}", pct(k))),
            200,
            W1,
            "",
        );
        expect(
            &g(&mut c, &format!("/hset?tb=h&key={}&val={val}", pct(k))),
            200,
            W1,
            "",
        );
        expect(&post(&mut c, "/sadd?tb=s", k), 200, W1, "");
    }
    // Written twice: ver 2 for a few, to see versions listed.
    for k in [&b"a"[..], b"key007"] {
        let r = post(&mut c, &format!("/put?key={}", pct(k)), b"new");
        expect(&r, 200, &[("Version", "2"), ("VerError", "false")], "");
        let r = post(&mut c, &format!("/hset?tb=h&key={}", pct(k)), b"new");
        expect(&r, 200, &[("Version", "2"), ("VerError", "false")], "");
    }
    let value_of = |k: &[u8]| -> Vec<u8> {
        if k == b"a" || k == b"key007" {
            b"new".to_vec()
        } else {
            let i = keys.iter().position(|x| x == k).unwrap();
            format!("v{i}").into_bytes()
        }
    };
    let ver_of = |k: &[u8]| if k == b"a" || k == b"key007" { 2 } else { 1 };
    let mut sorted = keys.clone();
    sorted.sort();
    for (path, with_vals) in [
        ("/keys?", true),
        ("/hkeys?tb=h&", true),
        ("/smembers?tb=s&", false),
    ] {
        let set = !with_vals;
        for (start, end) in [
            (0, 1024),
            (0, 34),
            (33, 98),
            (97, 295),
            (295, 1024),
            (500, 501),
            (33, 34),
        ] {
            let want: Vec<&Vec<u8>> = sorted
                .iter()
                .filter(|k| (start..end).contains(&bucket(k)))
                .collect();
            for noval in [true, false] {
                // The spec's client loop, with a page size that does not divide the total.
                let mut got: Vec<String> = Vec::new();
                let mut offset = 0;
                for _ in 0..100 {
                    let target = format!(
                        "{path}offset={offset}&size=7&start={start}&end={end}&noval={noval}&async=true"
                    );
                    let r = g(&mut c, &target);
                    assert_eq!(r.status, 200, "{target}");
                    assert_eq!(
                        r.header("TotalCount"),
                        Some(want.len().to_string().as_str()),
                        "{target}"
                    );
                    let n: usize = r.header("Keys").unwrap().parse().unwrap();
                    let page: Vec<String> = want
                        .iter()
                        .skip(offset)
                        .take(7)
                        .map(|k| {
                            let v = (!noval && !set).then(|| b64(&value_of(k)));
                            item(k, v.as_deref(), if set { 1 } else { ver_of(k) })
                        })
                        .collect();
                    listed(&r, &page, want.len());
                    got.extend(page);
                    offset += n;
                    if n < 7 {
                        break;
                    }
                }
                assert_eq!(got.len(), want.len(), "{path} {start}..{end}");
            }
            // async=false: TotalCount 0.
            let r = g(
                &mut c,
                &format!("{path}offset=0&size=1000&start={start}&end={end}"),
            );
            let all: Vec<String> = want
                .iter()
                .map(|k| item(k, None, if set { 1 } else { ver_of(k) }))
                .collect();
            listed(&r, &all, 0);
        }
        // Past the end, and size=0: empty pages.
        listed(&g(&mut c, &format!("{path}offset=50&size=10")), &[], 0);
        listed(
            &g(&mut c, &format!("{path}offset=100000000&size=10&async=1")),
            &[],
            50,
        );
        listed(
            &g(&mut c, &format!("{path}offset=0&size=0&async=1")),
            &[],
            50,
        );
    }
    // Every listed value is base64 of the bytes stored.
    let r = g(&mut c, "/keys?offset=0&size=1&noval=false");
    listed(&r, &[item(&[0], Some(&b64(b"v7")), 1)], 0);
}

#[test]
fn sorted_set_ranges_are_numeric_with_key_ties_and_page_within_the_range() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    let members: Vec<(&str, i64)> = vec![
        ("m", -9223372036854775808),
        ("b", -100),
        ("a", -100),
        ("c", -2),
        ("neg1", -1),
        ("zero", 0),
        ("z1", 1),
        ("a2", 2),
        ("x10", 10),
        ("y10", 10),
        ("w10", 10),
        ("big", 1_000_000_000_000),
        ("top", 9223372036854775807),
    ];
    for (m, s) in &members {
        let r = g(&mut c, &format!("/zadd?tb=z&key={m}&score={s}"));
        wrote(&r, 1, &s.to_string());
    }
    let mut sorted = members.clone();
    sorted.sort_by(|x, y| x.1.cmp(&y.1).then(x.0.as_bytes().cmp(y.0.as_bytes())));
    let render = |v: &[&(&str, i64)], noval: bool| -> Vec<String> {
        v.iter()
            .map(|(m, s)| item(m.as_bytes(), (!noval).then(|| s.to_string()).as_deref(), 1))
            .collect()
    };
    // By rank, paged by 4.
    let mut offset = 0;
    let mut all = Vec::new();
    loop {
        let r = g(
            &mut c,
            &format!("/zrangebyrank?tb=z&offset={offset}&size=4&noval=false&async=true"),
        );
        let want: Vec<&(&str, i64)> = sorted.iter().skip(offset).take(4).collect();
        listed(&r, &render(&want, false), sorted.len());
        all.extend(want.iter().map(|x| x.0));
        offset += want.len();
        if want.len() < 4 {
            break;
        }
    }
    assert_eq!(all.len(), members.len());
    // Score ranges, inclusive, paged within the range.
    for (min, max) in [
        (-100i64, 10i64),
        (-9223372036854775808, 9223372036854775807),
        (10, 10),
        (-1, -1),
        (3, 9),
        (-101, -99),
        (11, 9223372036854775806),
    ] {
        let want: Vec<&(&str, i64)> = sorted.iter().filter(|x| min <= x.1 && x.1 <= max).collect();
        for (offset, size) in [(0usize, 1000usize), (0, 2), (1, 2), (2, 3), (want.len(), 5)] {
            let r = g(
                &mut c,
                &format!("/zrangebyscore?tb=z&min={min}&max={max}&offset={offset}&size={size}&async=true"),
            );
            let page: Vec<&(&str, i64)> = want.iter().copied().skip(offset).take(size).collect();
            listed(&r, &render(&page, true), want.len());
        }
    }
    // min > max is a 400; bad bounds too.
    for bad in [
        "min=5&max=1",
        "min=0&max=-1",
        "min=a&max=1",
        "min=1.5&max=2",
        "min=0",
        "max=0",
        "min=-9223372036854775809&max=0",
    ] {
        let r = g(
            &mut c,
            &format!("/zrangebyscore?tb=z&{bad}&offset=0&size=10"),
        );
        expect(&r, 400, &[], "");
    }
    // start/end are validated, then ignored on sorted sets.
    let r = g(
        &mut c,
        "/zrangebyrank?tb=z&offset=0&size=3&start=500&end=501",
    );
    listed(
        &r,
        &render(&sorted.iter().take(3).collect::<Vec<_>>(), true),
        0,
    );
    let r = g(
        &mut c,
        "/zrangebyscore?tb=z&min=10&max=10&offset=0&size=10&start=0&end=1",
    );
    listed(
        &r,
        &render(
            &sorted.iter().filter(|x| x.1 == 10).collect::<Vec<_>>(),
            true,
        ),
        0,
    );
    for bad in [
        "start=5&end=5",
        "end=1025",
        "start=-1",
        "noval=no",
        "async=2",
    ] {
        let r = g(&mut c, &format!("/zrangebyrank?tb=z&offset=0&size=3&{bad}"));
        expect(&r, 400, &[], "");
    }
    // A moved member moves in the order, with its new version.
    wrote(&g(&mut c, "/zadd?tb=z&key=top&score=-1000"), 2, "-1000");
    let r = g(
        &mut c,
        "/zrangebyscore?tb=z&min=-1000&max=-2&offset=0&size=10&noval=false",
    );
    listed(
        &r,
        &[
            item(b"top", Some("-1000"), 2),
            item(b"a", Some("-100"), 1),
            item(b"b", Some("-100"), 1),
            item(b"c", Some("-2"), 1),
        ],
        0,
    );
}

#[test]
fn expired_members_are_skipped_and_do_not_keep_a_table() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    expect(&g(&mut c, "/hset?tb=h&key=f&val=1&ttl=1"), 200, W1, "");
    expect(&g(&mut c, "/sadd?tb=s&key=gone&ttl=1"), 200, W1, "");
    expect(&g(&mut c, "/sadd?tb=s&key=stays"), 200, W1, "");
    expect(
        &g(&mut c, "/zadd?tb=z&key=gone&score=1&ttl=1"),
        200,
        W1,
        "1",
    );
    expect(&g(&mut c, "/zadd?tb=z&key=stays&score=2"), 200, W1, "2");
    let r = g(&mut c, "/smembers?tb=s&offset=0&size=10&async=true");
    listed(&r, &[item(b"gone", None, 1), item(b"stays", None, 1)], 2);
    // Wait for the last one written; the others expired before it.
    let gone = wait_until(Duration::from_secs(3), || {
        g(&mut c, "/zscore?tb=z&key=gone").status == 404
    });
    assert!(gone, "the member never expired");
    // Every view agrees.
    expect(&g(&mut c, "/hget?tb=h&key=f"), 404, R0, "");
    expect(&g(&mut c, "/hexist?tb=h&key=f"), 404, R0, "");
    expect(&g(&mut c, "/hkeys?tb=h&offset=0&size=10"), 404, &[], "");
    expect(&g(&mut c, "/stat?tb=h"), 404, &[], "");
    expect(&g(&mut c, "/hdel?tb=h&key=f"), 404, W0, "");
    expect(&g(&mut c, "/sismember?tb=s&key=gone"), 404, R0, "");
    expect(&g(&mut c, "/srem?tb=s&key=gone"), 404, W0, "");
    expect(&g(&mut c, "/zismember?tb=z&key=gone"), 404, R0, "");
    expect(&g(&mut c, "/zscore?tb=z&key=gone"), 404, R0, "");
    let r = g(&mut c, "/smembers?tb=s&offset=0&size=10&async=true");
    listed(&r, &[item(b"stays", None, 1)], 1);
    let r = g(&mut c, "/zrangebyrank?tb=z&offset=0&size=10&async=true");
    listed(&r, &[item(b"stays", None, 1)], 1);
    let r = g(
        &mut c,
        "/zrangebyscore?tb=z&min=0&max=5&offset=0&size=10&async=true",
    );
    listed(&r, &[item(b"stays", None, 1)], 1);
    // The table of the expired field is gone: another type may take it; versions restart.
    expect(&g(&mut c, "/sadd?tb=h&key=f"), 200, W1, "");
    let r = g(&mut c, "/sadd?tb=s&key=gone&ver=1");
    expect(&r, 401, &[("Version", "0"), ("VerError", "true")], "");
    expect(&g(&mut c, "/sadd?tb=s&key=gone"), 200, W1, "");
    expect(
        &g(&mut c, "/zadd?tb=z&key=gone&score=1&opt=1"),
        200,
        W1,
        "1",
    );
}

// ---- the table limit

#[test]
fn the_8193rd_table_is_refused_with_507() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    // Pipelined, so 8192 creations take a few loop passes rather than 8192 round trips.
    for chunk in (0..8192).collect::<Vec<u32>>().chunks(512) {
        let mut wire = Vec::new();
        for i in chunk {
            wire.extend_from_slice(
                format!("GET /sadd?tb=t{i}&key=m HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            );
        }
        c.send_raw(&wire);
        for i in chunk {
            let r = c.read_response().expect("a response");
            assert_eq!(r.status, 200, "table {i}");
        }
    }
    for op in [
        "/sadd?tb=more&key=m",
        "/hset?tb=more&key=f&val=1",
        "/hincrby?tb=more&key=f&val=1",
        "/zadd?tb=more&key=m&score=1",
    ] {
        expect(&g(&mut c, op), 507, &[], "");
    }
    expect(
        &g(&mut c, "/smembers?tb=more&offset=0&size=1"),
        404,
        &[],
        "",
    );
    // Existing tables take more members; plain keys and the cache are not tables.
    expect(&g(&mut c, "/sadd?tb=t5&key=m2"), 200, W1, "");
    expect(&g(&mut c, "/put?key=k&val=1"), 200, W1, "");
    expect(&g(&mut c, "/cache/hset?tb=more&key=f&val=1"), 200, &[], "");
    // Removing a table makes room for one.
    expect(&g(&mut c, "/srem?tb=t0&key=m"), 200, W1, "");
    expect(&g(&mut c, "/zadd?tb=more&key=m&score=1"), 200, W1, "1");
    expect(&g(&mut c, "/sadd?tb=more2&key=m"), 507, &[], "");
    let r = g(&mut c, "/stat_all");
    assert_eq!(r.text().matches("\"table\"").count(), 8192);
}

// ---- a model of the order, random operations

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_operations_agree_with_an_in_memory_model() {
    use std::collections::BTreeMap;
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // member -> (score, version) and member -> version.
    let mut zset: BTreeMap<Vec<u8>, (i64, u32)> = BTreeMap::new();
    let mut set: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
    // field -> (value, version)
    let mut hash: BTreeMap<Vec<u8>, (Vec<u8>, u32)> = BTreeMap::new();
    let member = |rng: &mut Rng| -> Vec<u8> {
        // Short members over a small alphabet (with binary bytes) so they collide often.
        let len = 1 + rng.below(3) as usize;
        (0..len)
            .map(|_| [b'a', b'b', 0, 0xff, b'A'][rng.below(5) as usize])
            .collect()
    };
    for step in 0..800 {
        let m = member(&mut rng);
        if rng.below(4) == 0 {
            // Hash fields: hset with a random value, or hdel.
            if rng.below(3) == 0 {
                let r = g(&mut c, &format!("/hdel?tb=h&key={}", pct(&m)));
                match hash.remove(&m) {
                    Some((_, v)) => wrote(&r, v, ""),
                    None => assert_eq!(r.status, 404),
                }
            } else {
                let val: Vec<u8> = (0..1 + rng.below(5))
                    .map(|_| rng.below(256) as u8)
                    .collect();
                let r = post(&mut c, &format!("/hset?tb=h&key={}", pct(&m)), &val);
                let v = hash.get(&m).map_or(1, |x| x.1 + 1);
                hash.insert(m.clone(), (val, v));
                wrote(&r, v, "");
            }
            continue;
        }
        match rng.below(10) {
            0..=4 => {
                let score = rng.below(21) as i64 - 10;
                let opt = [0i64, 0, 1, -1][rng.below(4) as usize];
                let r = post(&mut c, &format!("/zadd?tb=z&score={score}&opt={opt}"), &m);
                let cur = zset.get(&m).copied();
                let new = match opt {
                    0 => score,
                    1 => cur.map_or(0, |x| x.0) + score,
                    _ => cur.map_or(0, |x| x.0) - score,
                };
                let ver = match cur {
                    Some((s, v)) if opt == 0 && s == score => v,
                    Some((_, v)) => v + 1,
                    None => 1,
                };
                zset.insert(m.clone(), (new, ver));
                wrote(&r, ver, &new.to_string());
            }
            5..=6 => {
                let r = post(&mut c, "/zrem?tb=z", &m);
                match zset.remove(&m) {
                    Some((_, v)) => wrote(&r, v, ""),
                    None if zset.is_empty() => assert_eq!(r.status, 404),
                    None => expect(&r, 404, W0, ""),
                }
            }
            7 => {
                let r = post(&mut c, "/sadd?tb=s", &m);
                let v = set.get(&m).map_or(1, |v| v + 1);
                set.insert(m.clone(), v);
                wrote(&r, v, "");
            }
            _ => {
                let r = post(&mut c, "/srem?tb=s", &m);
                match set.remove(&m) {
                    Some(v) => wrote(&r, v, ""),
                    None => assert_eq!(r.status, 404),
                }
            }
        }
        if step % 25 != 24 {
            continue;
        }
        // Compare every view with the model.
        let mut by_score: Vec<(&Vec<u8>, &(i64, u32))> = zset.iter().collect();
        by_score.sort_by(|x, y| x.1 .0.cmp(&y.1 .0).then(x.0.cmp(y.0)));
        let all: Vec<String> = by_score
            .iter()
            .map(|(k, (s, v))| item(k, Some(&s.to_string()), *v))
            .collect();
        let r = g(
            &mut c,
            "/zrangebyrank?tb=z&offset=0&size=1000&noval=false&async=true",
        );
        if zset.is_empty() {
            assert_eq!(r.status, 404, "step {step}");
        } else {
            listed(&r, &all, all.len());
            let (lo, hi) = (rng.below(21) as i64 - 10, rng.below(21) as i64 - 10);
            let (min, max) = (lo.min(hi), lo.max(hi));
            let off = rng.below(3) as usize;
            let want: Vec<String> = by_score
                .iter()
                .filter(|(_, (s, _))| min <= *s && *s <= max)
                .skip(off)
                .take(4)
                .map(|(k, (s, v))| item(k, Some(&s.to_string()), *v))
                .collect();
            let total = by_score
                .iter()
                .filter(|(_, (s, _))| min <= *s && *s <= max)
                .count();
            let r = g(
                &mut c,
                &format!("/zrangebyscore?tb=z&min={min}&max={max}&offset={off}&size=4&noval=false&async=true"),
            );
            listed(&r, &want, total);
        }
        // The hash with values, a random bucket range, paged by a random size.
        let (a, b) = (rng.below(1025) as u32, rng.below(1025) as u32);
        let (start, end) = (a.min(b), a.max(b).max(a.min(b) + 1));
        let size = 1 + rng.below(4) as usize;
        let want: Vec<String> = hash
            .iter()
            .filter(|(k, _)| (start..end).contains(&bucket(k)))
            .map(|(k, (v, ver))| item(k, Some(&b64(v)), *ver))
            .collect();
        if hash.is_empty() {
            assert_eq!(g(&mut c, "/hkeys?tb=h&offset=0&size=1").status, 404);
        } else {
            let mut offset = 0;
            loop {
                let r = g(
                    &mut c,
                    &format!("/hkeys?tb=h&offset={offset}&size={size}&start={start}&end={end}&noval=false&async=true"),
                );
                let page: Vec<String> = want.iter().skip(offset).take(size).cloned().collect();
                listed(&r, &page, want.len());
                offset += page.len();
                if page.len() < size {
                    break;
                }
            }
        }
        let r = g(&mut c, "/smembers?tb=s&offset=0&size=1000&async=true");
        if set.is_empty() {
            assert_eq!(r.status, 404, "step {step}");
        } else {
            let want: Vec<String> = set.iter().map(|(k, v)| item(k, None, *v)).collect();
            listed(&r, &want, want.len());
        }
    }
}

#[test]
fn versions_guard_every_table_write() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    // (write that creates/bumps, delete) per type; each record gets versions 1, 2, 3.
    for (write, del, read) in [
        (
            "/hset?tb=h&key=f&val=x",
            "/hdel?tb=h&key=f",
            "/hexist?tb=h&key=f",
        ),
        (
            "/sadd?tb=s&key=m",
            "/srem?tb=s&key=m",
            "/sismember?tb=s&key=m",
        ),
        (
            "/zadd?tb=z&key=m&score=1&opt=1",
            "/zrem?tb=z&key=m",
            "/zismember?tb=z&key=m",
        ),
        (
            "/hincrby?tb=i&key=f&val=1",
            "/hdel?tb=i&key=f",
            "/hget?tb=i&key=f",
        ),
    ] {
        let r = g(&mut c, &format!("{write}&ver=1"));
        expect(&r, 401, &[("Version", "0"), ("VerError", "true")], "");
        assert_eq!(
            g(&mut c, read).status,
            404,
            "{write} with a stale ver created it"
        );
        for n in 1..=3u32 {
            let r = g(&mut c, &format!("{write}&ver={}", n - 1));
            assert_eq!(r.status, 200, "{write} #{n}");
            assert_eq!(
                r.header("Version"),
                Some(n.to_string().as_str()),
                "{write} #{n}"
            );
            assert_eq!(r.header("VerError"), Some("false"));
        }
        for stale in [1, 2, 4, 4294967295u32] {
            let r = g(&mut c, &format!("{write}&ver={stale}"));
            expect_headers(&r, 401, "3", "true");
            let r = g(&mut c, &format!("{del}&ver={stale}"));
            expect(&r, 401, &[("Version", "3"), ("VerError", "true")], "");
        }
        assert_eq!(g(&mut c, read).header("Version"), Some("3"));
        expect(
            &g(&mut c, &format!("{del}&ver=3")),
            200,
            &[("Version", "3"), ("VerError", "false")],
            "",
        );
        expect(&g(&mut c, &format!("{del}&ver=3")), 404, W0, "");
        let r = g(&mut c, &format!("{write}&ver=3"));
        expect(&r, 401, &[("Version", "0"), ("VerError", "true")], "");
        let r = g(&mut c, write);
        assert_eq!(r.header("Version"), Some("1"), "{write} after delete");
    }
    // The version check comes before the value check (401 before 409).
    expect(&g(&mut c, "/hset?tb=h&key=t&val=text"), 200, W1, "");
    let r = g(&mut c, "/hincrby?tb=h&key=t&val=1&ver=5");
    expect(&r, 401, &[("Version", "1"), ("VerError", "true")], "");
    expect(&g(&mut c, "/hincrby?tb=h&key=t&val=1&ver=1"), 409, W0, "");
    wrote(
        &g(&mut c, "/zadd?tb=z&key=top&score=9223372036854775807"),
        1,
        "9223372036854775807",
    );
    let r = g(&mut c, "/zadd?tb=z&key=top&score=1&opt=1&ver=2");
    expect(&r, 401, &[("Version", "1"), ("VerError", "true")], "");
    expect(
        &g(&mut c, "/zadd?tb=z&key=top&score=1&opt=1&ver=1"),
        409,
        W0,
        "",
    );
    // The type check comes before both (412).
    expect(&g(&mut c, "/hincrby?tb=z&key=top&val=1&ver=5"), 412, W0, "");
}

/// Status, `Version` and `VerError` of a write answer whose body is not looked at (zadd and
/// hincrby answer a body on 200 only).
#[track_caller]
fn expect_headers(r: &Response, status: u16, ver: &str, ver_error: &str) {
    expect(r, status, &[("Version", ver), ("VerError", ver_error)], "");
}

#[test]
fn concurrent_writers_on_one_table_are_atomic() {
    // Several connections (spread over both workers) increment one field and add members to
    // one set: no update is lost, every version is handed out once.
    let server = Server::start(&[("worker_processes", "2")]);
    let addr = server.addr();
    let threads: Vec<_> = (0..6)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut versions = Vec::new();
                for i in 0..40 {
                    let r = c.send("GET", "/hincrby?tb=h&key=n&val=1", &[], b"");
                    assert_eq!(r.status, 200);
                    let v: u32 = r.header("Version").unwrap().parse().unwrap();
                    // The new value and the version move together.
                    assert_eq!(r.text(), v.to_string());
                    versions.push(v);
                    let r = c.send("GET", &format!("/sadd?tb=s&key=t{t}m{i}"), &[], b"");
                    assert_eq!(r.status, 200);
                    let r = c.send("GET", "/zadd?tb=z&key=shared&score=1&opt=1", &[], b"");
                    assert_eq!(r.status, 200);
                }
                versions
            })
        })
        .collect();
    let mut all: Vec<u32> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (1..=240).collect::<Vec<u32>>());
    let mut c = Client::connect(addr);
    read(&g(&mut c, "/hget?tb=h&key=n"), 240, "240");
    read(&g(&mut c, "/zscore?tb=z&key=shared"), 240, "240");
    expect(
        &g(&mut c, "/stat?tb=s"),
        200,
        &[],
        r#"{"table":"s","type":"S","count":240}"#,
    );
    let r = g(&mut c, "/smembers?tb=s&offset=0&size=0&async=true");
    listed(&r, &[], 240);
}

#[test]
fn a_write_without_ttl_makes_a_member_permanent_again() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    expect(&g(&mut c, "/sadd?tb=s&key=renewed&ttl=1"), 200, W1, "");
    expect(&g(&mut c, "/sadd?tb=s&key=witness&ttl=1"), 200, W1, "");
    wrote(&g(&mut c, "/sadd?tb=s&key=renewed"), 2, "");
    expect(
        &g(&mut c, "/hset?tb=h&key=renewed&val=1&ttl=1"),
        200,
        W1,
        "",
    );
    wrote(&g(&mut c, "/hset?tb=h&key=renewed&val=2&ttl=0"), 2, "");
    expect(
        &g(&mut c, "/hset?tb=h&key=shortened&val=1&ttl=100"),
        200,
        W1,
        "",
    );
    wrote(
        &g(&mut c, "/hincrby?tb=h&key=shortened&val=1&ttl=1"),
        2,
        "2",
    );
    let gone = wait_until(Duration::from_secs(3), || {
        g(&mut c, "/sismember?tb=s&key=witness").status == 404
    });
    assert!(gone, "the witness never expired");
    assert!(wait_until(Duration::from_secs(2), || {
        g(&mut c, "/hget?tb=h&key=shortened").status == 404
    }));
    read(&g(&mut c, "/sismember?tb=s&key=renewed"), 2, "");
    read(&g(&mut c, "/hget?tb=h&key=renewed"), 2, "2");
}

#[test]
fn long_keys_list_in_bytewise_order_across_pages() {
    // Keys past 400 bytes are stored by prefix + hash (storage/src/codec/keys.rs); listings must
    // still be in full bytewise order, also when a page boundary falls inside a run of long
    // keys sharing their first 400 bytes.
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    let prefix = vec![b'p'; 400];
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for tail in [
        &b""[..],
        b"a",
        b"b",
        b"\x00",
        b"\xff",
        b"aa",
        b"ab",
        b"a\x00",
        b"zzzzzzzz",
        b"m",
        b"mm",
        b"c",
    ] {
        let mut k = prefix.clone();
        k.extend_from_slice(tail);
        keys.push(k);
    }
    keys.push(prefix[..399].to_vec());
    keys.push([&prefix[..399], b"q"].concat());
    keys.push([&prefix[..399], b"q", &[b'x'; 300]].concat());
    keys.push([&prefix[..399], b"o", &[b'x'; 300]].concat());
    keys.push(vec![b'p'; 1000]);
    keys.push(vec![b'p'; 65536]);
    keys.push(b"short".to_vec());
    keys.push(vec![b'a'; 700]);
    for (i, k) in keys.iter().enumerate() {
        expect(
            &post(&mut c, &format!("/put?key={}&val={i}", pct(k)), b""),
            200,
            W1,
            "",
        );
        expect(
            &g(&mut c, &format!("/hset?tb=h&key={}&val={i}", pct(k))),
            200,
            W1,
            "",
        );
        expect(&post(&mut c, "/sadd?tb=s", k), 200, W1, "");
        // All in one score: ties are ordered by member bytes.
        expect(&post(&mut c, "/zadd?tb=z&score=7", k), 200, W1, "7");
    }
    let mut sorted = keys.clone();
    sorted.sort();
    for (path, val) in [
        ("/keys?", true),
        ("/hkeys?tb=h&", true),
        ("/smembers?tb=s&", false),
        ("/zrangebyrank?tb=z&", false),
        ("/zrangebyscore?tb=z&min=7&max=7&", false),
    ] {
        for (start, end) in [(0u32, 1024u32), (0, 512), (512, 1024)] {
            let zset = path.starts_with("/zrange");
            let want: Vec<&Vec<u8>> = sorted
                .iter()
                .filter(|k| zset || (start..end).contains(&bucket(k)))
                .collect();
            for size in [1usize, 3, 5, 1000] {
                let mut got = 0;
                for _ in 0..100 {
                    let target = format!(
                        "{path}offset={got}&size={size}&start={start}&end={end}&noval=false&async=true"
                    );
                    let r = g(&mut c, &target);
                    let page: Vec<String> = want
                        .iter()
                        .skip(got)
                        .take(size)
                        .map(|k| {
                            let i = keys.iter().position(|x| x == *k).unwrap();
                            let v = if zset {
                                Some("7".to_string())
                            } else {
                                val.then(|| b64(i.to_string().as_bytes()))
                            };
                            item(k, v.as_deref(), 1)
                        })
                        .collect();
                    listed(&r, &page, want.len());
                    got += page.len();
                    if page.len() < size {
                        break;
                    }
                }
                assert_eq!(got, want.len(), "{path} {start}..{end} size {size}");
            }
        }
    }
    // Each long key is its own record.
    for (i, k) in keys.iter().enumerate() {
        let r = g(&mut c, &format!("/get?key={}", pct(k)));
        read(&r, 1, i.to_string());
    }
}

#[test]
fn racing_table_types_and_lifetimes_stay_consistent() {
    // Threads on both workers create and empty the same table names with different types:
    // every answer is 200, 404 or 412, and a table never ends up with two types.
    let server = Server::start(&[("worker_processes", "2")]);
    let addr = server.addr();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut rng = Rng(0x1234_5678 + t as u64);
                for _ in 0..150 {
                    let tb = format!("race{}", rng.below(3));
                    let m = format!("m{}", rng.below(2));
                    let target = match rng.below(6) {
                        0 => format!("/hset?tb={tb}&key={m}&val=1"),
                        1 => format!("/hdel?tb={tb}&key={m}"),
                        2 => format!("/sadd?tb={tb}&key={m}"),
                        3 => format!("/srem?tb={tb}&key={m}"),
                        4 => format!("/zadd?tb={tb}&key={m}&score=1&opt=1"),
                        _ => format!("/zrem?tb={tb}&key={m}"),
                    };
                    let r = c.send("GET", &target, &[], b"");
                    assert!(
                        [200, 404, 412].contains(&r.status),
                        "{target}: {}",
                        r.status
                    );
                    if r.status != 200 {
                        assert_eq!(r.header("Version"), Some("0"), "{target}");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Each table is one type whose members the matching listing shows, and /stat agrees.
    let mut c = Client::connect(addr);
    for i in 0..3 {
        let tb = format!("race{i}");
        let r = g(&mut c, &format!("/stat?tb={tb}"));
        if r.status == 404 {
            for list in ["/hkeys", "/smembers", "/zrangebyrank"] {
                let r = g(&mut c, &format!("{list}?tb={tb}&offset=0&size=10"));
                expect(&r, 404, &[], "");
            }
            continue;
        }
        let text = r.text();
        let kind = &text[text.find("\"type\":\"").unwrap() + 8..][..1];
        let count: usize = text[text.find("\"count\":").unwrap() + 8..]
            .split(|ch: char| !ch.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let (mine, others) = match kind {
            "H" => ("/hkeys", ["/smembers", "/zrangebyrank"]),
            "S" => ("/smembers", ["/hkeys", "/zrangebyrank"]),
            _ => ("/zrangebyrank", ["/hkeys", "/smembers"]),
        };
        let r = g(
            &mut c,
            &format!("{mine}?tb={tb}&offset=0&size=10&async=true"),
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("TotalCount"),
            Some(count.to_string().as_str()),
            "{text}"
        );
        assert!(count >= 1);
        for other in others {
            let r = g(&mut c, &format!("{other}?tb={tb}&offset=0&size=10"));
            expect(&r, 412, &[], "");
        }
    }
}
