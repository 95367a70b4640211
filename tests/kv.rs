//! Plain key-value endpoints (`kv-api.md` §2, §3) against the real binary: the spec's examples
//! byte for byte, every malformed-request rule, percent decoding and binary keys, body vs
//! query precedence, methods, versions, TTLs, the order of checks and a full store.

mod common;

use common::kv::*;

use common::{get, wait_until, Client, Server};
use std::time::{Duration, Instant};

// ---- the spec's examples

#[test]
fn spec_examples_of_plain_kv() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    // /put
    expect(&post(&mut c, "/put?key=k1", b"v1"), 200, W1, "");
    // stale version: 401, value unchanged
    let r = g(&mut c, "/put?key=k1&val=v2&ver=5");
    expect(&r, 401, &[("Version", "1"), ("VerError", "true")], "");
    // /get, /get2, /exist
    expect(&g(&mut c, "/get?key=k1"), 200, R1, "v1");
    expect(&g(&mut c, "/get2?key=k1"), 200, R1, "v1");
    expect(&g(&mut c, "/exist?key=k1"), 200, R1, "");
    // /keys
    expect(&g(&mut c, "/put?key=k2&val=v2"), 200, W1, "");
    let r = g(&mut c, "/keys?offset=0&size=10");
    expect(
        &r,
        200,
        &[("Keys", "2"), ("TotalCount", "0")],
        r#"[{"key":"azE=","ver":1},{"key":"azI=","ver":1}]"#,
    );
    assert_eq!(r.header("Content-Length"), Some("47"));
    // /del
    expect(&g(&mut c, "/del?key=k1"), 200, W1, "");
    expect(&g(&mut c, "/get?key=k1"), 404, R0, "");
    expect(&g(&mut c, "/get2?key=k1"), 404, R0, "");
    expect(&g(&mut c, "/exist?key=k1"), 404, R0, "");
    expect(&g(&mut c, "/del?key=k1"), 404, W0, "");
    expect(&g(&mut c, "/del?key=k1&ver=7"), 404, W0, "");
    // Through POST, the same answers.
    expect(&post(&mut c, "/get?key=k2", b""), 200, R1, "v2");
    expect(&post(&mut c, "/exist?key=k2", b""), 200, R1, "");
}

#[test]
fn health_and_unknown_paths() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    expect(&g(&mut c, "/status.html"), 200, &[], "ok\n");
    expect(&post(&mut c, "/status.html", b""), 200, &[], "ok\n");
    let r = g(&mut c, "/version");
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("huststore ") && r.text().ends_with('\n'));
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.header("Version"), None);
    for p in [
        "/nope",
        "/get/",
        "/GET?key=a",
        "/get%20?key=a",
        "//get?key=a",
        "/cache",
        "/cache/",
        "/",
    ] {
        expect(&g(&mut c, p), 404, &[], "");
    }
}

// ---- §2.9 and the parameter rules

#[test]
fn malformed_request_table_of_section_2_9() {
    let server = Server::start(&[("client_max_body_size", "4k")]);
    let mut c = Client::connect(server.addr());
    // Put something so 400s cannot be mistaken for a 404 of an absent key.
    expect(&g(&mut c, "/put?key=a&val=1"), 200, W1, "");
    expect(&g(&mut c, "/zadd?tb=z&score=1&key=m"), 200, W1, "1");
    for target in [
        "/get",
        "/get?key=",
        "/put?key=a&val=1&ttl=abc",
        "/put?key=a&val=1&ttl=2592001",
        "/hget?tb=no%20spaces&key=a",
        "/keys?offset=0&size=1001",
        "/zrangebyscore?tb=z&min=5&max=1&offset=0&size=10",
    ] {
        expect(&g(&mut c, target), 400, &[], "");
    }
    expect(&g(&mut c, "/nope"), 404, &[], "");
    expect(
        &c.send("DELETE", "/get?key=a", &[], b""),
        405,
        &[("Allow", "GET, POST")],
        "",
    );
    let r = post(&mut c, "/put?key=a", &vec![b'x'; 4097]);
    expect(&r, 413, &[], "");
    // Nothing of that changed the data, and the connection is still usable.
    expect(&g(&mut c, "/get?key=a"), 200, R1, "1");
    expect(&g(&mut c, "/zscore?tb=z&key=m"), 200, R1, "1");
    // A body of exactly the limit is fine.
    expect(
        &post(&mut c, "/put?key=a", &vec![b'y'; 4096]),
        200,
        &[("Version", "2"), ("VerError", "false")],
        "",
    );
}

#[test]
fn missing_empty_and_valueless_parameters_are_400() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    for target in [
        "/put",
        "/put?key=a",
        "/put?val=a",
        "/put?key=&val=a",
        "/put?key=a&val=",
        "/put?key&val=a",
        "/put?key=a&val",
        "/get?key",
        "/get?ke=a",
        "/get?KEY=a",
        "/exist",
        "/exist?key=",
        "/del",
        "/del?key=",
        "/get2",
        "/keys",
        "/keys?offset=0",
        "/keys?size=10",
        "/keys?offset=&size=10",
        "/keys?offset=0&size=",
    ] {
        expect(&g(&mut c, target), 400, &[], "");
        expect(&post(&mut c, target, b""), 400, &[], "");
    }
    // No stray records were made by any of them.
    expect(
        &g(&mut c, "/keys?offset=0&size=10&async=true"),
        200,
        &[("Keys", "0"), ("TotalCount", "0")],
        "[]",
    );
}

#[test]
fn repeated_parameters_first_wins_and_unknown_ones_are_ignored() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    expect(&g(&mut c, "/put?key=a&key=b&val=1&val=2"), 200, W1, "");
    expect(&g(&mut c, "/get?key=a"), 200, R1, "1");
    expect(&g(&mut c, "/get?key=b"), 404, R0, "");
    expect(&g(&mut c, "/get?key=a&key=b"), 200, R1, "1");
    expect(&g(&mut c, "/get?key=b&key=a"), 404, R0, "");
    // The first ttl is the valid one: accepted; the first is invalid: 400.
    expect(
        &g(&mut c, "/put?key=a&val=3&ttl=0&ttl=abc"),
        200,
        &[("Version", "2"), ("VerError", "false")],
        "",
    );
    expect(&g(&mut c, "/put?key=a&val=3&ttl=abc&ttl=0"), 400, &[], "");
    // ver: the first one decides.
    expect(
        &g(&mut c, "/put?key=a&val=4&ver=9&ver=2"),
        401,
        &[("Version", "2"), ("VerError", "true")],
        "",
    );
    expect(
        &g(&mut c, "/put?key=a&val=4&ver=2&ver=9"),
        200,
        &[("Version", "3"), ("VerError", "false")],
        "",
    );
    // An empty first occurrence counts as given-and-absent: the later value does not replace it.
    expect(&g(&mut c, "/get?key=&key=a"), 400, &[], "");
    // Legacy and unknown parameters change nothing.
    expect(
        &g(
            &mut c,
            "/put?key=u&val=v&is_dup=true&host=x&cover=1&tb=t&whatever",
        ),
        200,
        W1,
        "",
    );
    expect(&g(&mut c, "/get?key=u&noval=xx&offset=zz"), 200, R1, "v");
    // `tb` on plain kv does not make a table.
    expect(&g(&mut c, "/stat?tb=t"), 404, &[], "");
}

#[test]
fn percent_and_plus_decoding_and_binary_keys() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    // `+` is a space, %2B a plus, every parameter is decoded (val included).
    expect(&g(&mut c, "/put?key=a+b&val=x+y%2Bz"), 200, W1, "");
    expect(&g(&mut c, "/get?key=a%20b"), 200, R1, "x y+z");
    expect(&g(&mut c, "/get?key=a%2Bb"), 404, R0, "");
    expect(&g(&mut c, "/put?key=a%2Bb&val=plus"), 200, W1, "");
    expect(&g(&mut c, "/get?key=a%2bb"), 200, R1, "plus");
    expect(&g(&mut c, "/get?key=a+b"), 200, R1, "x y+z");
    // A literal % decoded from %25 is stored as is.
    expect(&g(&mut c, "/put?key=100%25&val=%25%32%30"), 200, W1, "");
    expect(&g(&mut c, "/get?key=100%25"), 200, R1, "%20");
    // Names are decoded too.
    expect(&g(&mut c, "/put?k%65y=named&v%61l=1"), 200, W1, "");
    expect(&g(&mut c, "/get?key=named"), 200, R1, "1");
    // Binary keys: NUL, 0xFF, CR, LF, '&', '=', '#'.
    let keys: Vec<Vec<u8>> = vec![
        vec![0],
        vec![0xff],
        vec![0, 0xff, 0, 0x80],
        b"a\r\nb".to_vec(),
        b"k&x=y#z".to_vec(),
        vec![0xff; 3],
    ];
    for (i, k) in keys.iter().enumerate() {
        let val: Vec<u8> = vec![0, i as u8, 0xff, b'\n'];
        expect(
            &g(&mut c, &format!("/put?key={}&val={}", pct(k), pct(&val))),
            200,
            W1,
            "",
        );
        expect(&g(&mut c, &format!("/get?key={}", pct(k))), 200, R1, &val);
        // lower-case hex escapes are accepted as well
        let lower = pct(k).to_lowercase();
        expect(&g(&mut c, &format!("/exist?key={lower}")), 200, R1, "");
    }
    // Values in a POST body are raw bytes, never decoded.
    expect(&post(&mut c, "/put?key=raw", b"%41+%zz"), 200, W1, "");
    expect(&g(&mut c, "/get?key=raw"), 200, R1, "%41+%zz");
    let all: Vec<u8> = (0..=255u8).collect();
    expect(&post(&mut c, "/put?key=bytes", &all), 200, W1, "");
    expect(&g(&mut c, "/get?key=bytes"), 200, R1, &all);
    // The binary keys come back in listings, base64, in bytewise order.
    let r = g(&mut c, "/keys?offset=0&size=100");
    let mut want: Vec<Vec<u8>> = keys.clone();
    for k in [&b"a b"[..], b"a+b", b"100%", b"named", b"raw", b"bytes"] {
        want.push(k.to_vec());
    }
    want.sort();
    let body: Vec<String> = want
        .iter()
        .map(|k| format!("{{\"key\":\"{}\",\"ver\":1}}", b64(k)))
        .collect();
    expect(
        &r,
        200,
        &[("Keys", &want.len().to_string()), ("TotalCount", "0")],
        format!("[{}]", body.join(",")),
    );
    // Malformed escapes anywhere: 400, nothing stored.
    for target in [
        "/put?key=%G1&val=1",
        "/put?key=ok&val=%4",
        "/put?key=ok&val=1%",
        "/put?key=ok&val=1&x=%zz",
        "/put?k%6=ok&val=1",
        "/get?key=%",
    ] {
        expect(&g(&mut c, target), 400, &[], "");
    }
    expect(&g(&mut c, "/get?key=ok"), 404, R0, "");
}

#[test]
fn key_length_limit_is_65536_bytes() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    let max = vec![0xA5u8; 65536];
    let over = vec![0xA5u8; 65537];
    let r = g(&mut c, &format!("/put?key={}&val=big", pct(&max)));
    expect(&r, 200, W1, "");
    expect(
        &g(&mut c, &format!("/get?key={}", pct(&max))),
        200,
        R1,
        "big",
    );
    expect(
        &post(&mut c, &format!("/put?key={}", pct(&max)), b"v2"),
        200,
        &[("Version", "2"), ("VerError", "false")],
        "",
    );
    expect(
        &g(&mut c, &format!("/exist?key={}", pct(&max))),
        200,
        &[("Version", "2")],
        "",
    );
    for path in ["/put", "/get", "/exist", "/del", "/get2"] {
        let r = g(&mut c, &format!("{path}?key={}&val=x", pct(&over)));
        expect(&r, 400, &[], "");
    }
    // A 65537-byte key that shares its first 65536 bytes was not confused with it.
    let r = g(&mut c, "/keys?offset=0&size=10&async=true");
    let want = format!("[{{\"key\":\"{}\",\"ver\":2}}]", b64(&max));
    expect(&r, 200, &[("Keys", "1"), ("TotalCount", "1")], want);
    expect(
        &g(&mut c, &format!("/del?key={}", pct(&max))),
        200,
        &[("Version", "2"), ("VerError", "false")],
        "",
    );
}

#[test]
fn numbers_and_booleans_are_strict() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    expect(&g(&mut c, "/put?key=a&val=1"), 200, W1, "");
    for bad in [
        "ttl=abc",
        "ttl=-1",
        "ttl=2592001",
        "ttl=%2B5",
        "ttl=5%20",
        "ttl=%205",
        "ttl=1.0",
        "ttl=1e3",
        "ttl=0x10",
        "ttl=99999999999999999999999",
        "ver=4294967296",
        "ver=-1",
        "ver=1.0",
        "ver=abc",
        "ver=%2B1",
    ] {
        let r = g(&mut c, &format!("/put?key=a&val=2&{bad}"));
        expect(&r, 400, &[], "");
        let r = g(&mut c, &format!("/put?key=new&val=2&{bad}"));
        expect(&r, 400, &[], "");
    }
    expect(&g(&mut c, "/del?key=a&ver=x"), 400, &[], "");
    expect(&g(&mut c, "/del?key=absent&ver=-1"), 400, &[], "");
    // Untouched by all of those.
    expect(&g(&mut c, "/get?key=a"), 200, R1, "1");
    expect(&g(&mut c, "/get?key=new"), 404, R0, "");
    // The extremes are valid.
    expect(
        &g(&mut c, "/put?key=a&val=3&ttl=2592000"),
        200,
        &[("Version", "2"), ("VerError", "false")],
        "",
    );
    expect(
        &g(&mut c, "/put?key=a&val=3&ttl=0000"),
        200,
        &[("Version", "3"), ("VerError", "false")],
        "",
    );
    expect(
        &g(&mut c, "/put?key=a&val=4&ver=4294967295"),
        401,
        &[("Version", "3"), ("VerError", "true")],
        "",
    );
    expect(
        &g(&mut c, "/put?key=a&val=4&ver=0003"),
        200,
        &[("Version", "4"), ("VerError", "false")],
        "",
    );
    // Listing numbers and booleans.
    for bad in [
        "offset=100000001&size=1",
        "offset=-1&size=1",
        "offset=0&size=1001",
        "offset=0&size=-1",
        "offset=0&size=1.5",
        "offset=0&size=10&start=5&end=5",
        "offset=0&size=10&start=6&end=5",
        "offset=0&size=10&end=1025",
        "offset=0&size=10&start=1024",
        "offset=0&size=10&start=-1",
        "offset=0&size=10&end=0",
        "offset=0&size=10&noval=yes",
        "offset=0&size=10&noval=TRUE",
        "offset=0&size=10&noval=2",
        "offset=0&size=10&async=no",
        "offset=0&size=10&async=False",
        "offset=0&size=10&peer=1",
        "offset=0&size=10&peer=-1",
        "offset=0&size=10&peer=x",
        "offset=0&size=10&file=1",
        "offset=0&size=10&file=-1",
    ] {
        expect(&g(&mut c, &format!("/keys?{bad}")), 400, &[], "");
    }
    for ok in [
        "offset=100000000&size=1000",
        "offset=0&size=0",
        "offset=0&size=10&start=0&end=1024",
        "offset=0&size=10&start=1023",
        "offset=0&size=10&end=1",
        "offset=0&size=10&noval=1&async=0",
        "offset=0&size=10&noval=true&async=false",
        "offset=0&size=10&peer=0&file=0",
    ] {
        let r = g(&mut c, &format!("/keys?{ok}"));
        assert_eq!(r.status, 200, "{ok}");
        assert_eq!(r.header("TotalCount"), Some("0"), "{ok}");
    }
    let r = g(&mut c, "/keys?offset=0&size=0&async=1");
    expect(&r, 200, &[("Keys", "0"), ("TotalCount", "1")], "[]");
    let r = g(&mut c, "/keys?offset=0&size=10&noval=0");
    let want = format!("[{{\"key\":\"YQ==\",\"val\":\"{}\",\"ver\":4}}]", b64(b"4"));
    expect(&r, 200, &[("Keys", "1"), ("TotalCount", "0")], want);
}

#[test]
fn body_wins_over_query_on_post_and_is_ignored_on_get() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    // A non-empty POST body wins.
    expect(&post(&mut c, "/put?key=k&val=query", b"body"), 200, W1, "");
    expect(&g(&mut c, "/get?key=k"), 200, R1, "body");
    // An empty POST body: the query parameter is used.
    expect(
        &post(&mut c, "/put?key=k&val=query", b""),
        200,
        &[("Version", "2"), ("VerError", "false")],
        "",
    );
    expect(&g(&mut c, "/get?key=k"), 200, &[("Version", "2")], "query");
    // A GET body is ignored (read and skipped, so the connection stays in step).
    let r = c.send("GET", "/put?key=k&val=fromget", &[], b"getbody");
    expect(&r, 200, &[("Version", "3"), ("VerError", "false")], "");
    expect(
        &g(&mut c, "/get?key=k"),
        200,
        &[("Version", "3")],
        "fromget",
    );
    let r = c.send("GET", "/put?key=k2", &[], b"getbody");
    expect(&r, 400, &[], "");
    expect(&g(&mut c, "/get?key=k2"), 404, R0, "");
    // PUT behaves as POST on /put.
    let r = c.send("PUT", "/put?key=k&val=q", &[], b"putbody");
    expect(&r, 200, &[("Version", "4"), ("VerError", "false")], "");
    expect(
        &g(&mut c, "/get?key=k"),
        200,
        &[("Version", "4")],
        "putbody",
    );
    // With neither: 400.
    expect(&post(&mut c, "/put?key=k", b""), 400, &[], "");
    expect(&c.send("PUT", "/put?key=k", &[], b""), 400, &[], "");
    // The key is never read from the body on plain kv.
    expect(&post(&mut c, "/get", b"k"), 400, &[], "");
    expect(&post(&mut c, "/del", b"k"), 400, &[], "");
    expect(
        &post(&mut c, "/get?key=k", b"other"),
        200,
        &[("Version", "4")],
        "putbody",
    );
    // A chunked POST body counts like any other.
    c.send_raw(b"POST /put?key=ch&val=q HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    expect(&c.read_response().unwrap(), 200, W1, "");
    expect(&g(&mut c, "/get?key=ch"), 200, R1, "abc");
}

/// Every path of §1 with the `Allow` it answers a wrong method with.
const ALLOW: &[(&str, &str)] = &[
    ("/put", "GET, POST, PUT"),
    ("/get", "GET, POST"),
    ("/get2", "GET, POST"),
    ("/exist", "GET, POST"),
    ("/del", "GET, POST"),
    ("/keys", "GET, POST"),
    ("/hset", "GET, POST, PUT"),
    ("/hget", "GET, POST"),
    ("/hget2", "GET, POST"),
    ("/hexist", "GET, POST"),
    ("/hdel", "GET, POST"),
    ("/hincrby", "GET, POST"),
    ("/hkeys", "GET, POST"),
    ("/sadd", "GET, POST"),
    ("/srem", "GET, POST"),
    ("/sismember", "GET, POST"),
    ("/sismember2", "GET, POST"),
    ("/smembers", "GET, POST"),
    ("/zadd", "GET, POST"),
    ("/zrem", "GET, POST"),
    ("/zismember", "GET, POST"),
    ("/zscore", "GET, POST"),
    ("/zscore2", "GET, POST"),
    ("/zrangebyrank", "GET, POST"),
    ("/zrangebyscore", "GET, POST"),
    ("/stat", "GET, POST"),
    ("/stat_all", "GET, POST"),
    ("/file_count", "GET, POST"),
    ("/cache/put", "GET, POST, PUT"),
    ("/cache/get", "GET, POST"),
    ("/cache/exist", "GET, POST"),
    ("/cache/del", "GET, POST"),
    ("/cache/ttl", "GET, POST"),
    ("/cache/expire", "GET, POST"),
    ("/cache/persist", "GET, POST"),
    ("/cache/append", "GET, POST, PUT"),
    ("/cache/hset", "GET, POST, PUT"),
    ("/cache/hget", "GET, POST"),
    ("/cache/hdel", "GET, POST"),
    ("/cache/hexist", "GET, POST"),
    ("/cache/hincrby", "GET, POST"),
    ("/cache/hincrbyfloat", "GET, POST"),
    ("/peer_count", "GET, POST"),
    ("/get_table", "GET, POST"),
    ("/set_table", "GET, POST"),
    ("/sync_status", "GET, POST"),
    ("/sync_alive", "GET, POST"),
    ("/version", "GET, POST"),
    ("/status.html", "GET, POST"),
];

#[test]
fn methods_405_with_allow_and_the_put_alias() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    for (path, allow) in ALLOW {
        for method in ["DELETE", "PATCH", "OPTIONS", "FOO"] {
            // Valid parameters, so only the method can be the reason.
            let target =
                format!("{path}?key=a&val=1&tb=t&offset=0&size=1&score=1&min=0&max=1&ttl=1");
            let r = c.send(method, &target, &[], b"");
            expect(&r, 405, &[("Allow", allow)], "");
        }
        let r = c.send("PUT", &format!("{path}?key=a&val=1&tb=t"), &[], b"x");
        if allow.ends_with("PUT") {
            assert_ne!(r.status, 405, "PUT {path}");
        } else {
            expect(&r, 405, &[("Allow", allow)], "");
        }
    }
    // The method is checked before the parameters.
    expect(
        &c.send("DELETE", "/put", &[], b""),
        405,
        &[("Allow", "GET, POST, PUT")],
        "",
    );
    expect(
        &c.send("PUT", "/get", &[], b""),
        405,
        &[("Allow", "GET, POST")],
        "",
    );
    // PUT on each of the five: a write like POST.
    expect(&c.send("PUT", "/put?key=p", &[], b"v"), 200, W1, "");
    expect(&c.send("PUT", "/hset?tb=h&key=f", &[], b"v"), 200, W1, "");
    expect(&c.send("PUT", "/cache/put?key=p", &[], b"v"), 200, &[], "");
    expect(
        &c.send("PUT", "/cache/append?key=p", &[], b"w"),
        200,
        &[],
        "",
    );
    expect(
        &c.send("PUT", "/cache/hset?tb=h&key=f", &[], b"v"),
        200,
        &[],
        "",
    );
    expect(&g(&mut c, "/get?key=p"), 200, R1, "v");
    expect(&g(&mut c, "/hget?tb=h&key=f"), 200, R1, "v");
    expect(&g(&mut c, "/cache/get?key=p"), 200, &[], "vw");
    expect(&g(&mut c, "/cache/hget?tb=h&key=f"), 200, &[], "v");
    // No PUT alias for the other writes: nothing happens.
    expect(
        &c.send("PUT", "/sadd?tb=s", &[], b"m"),
        405,
        &[("Allow", "GET, POST")],
        "",
    );
    expect(
        &c.send("PUT", "/del?key=p", &[], b""),
        405,
        &[("Allow", "GET, POST")],
        "",
    );
    expect(&g(&mut c, "/smembers?tb=s&offset=0&size=10"), 404, &[], "");
    expect(&g(&mut c, "/get?key=p"), 200, R1, "v");
    // HEAD is not among the methods either.
    let r = c.send("HEAD", "/get?key=p", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET, POST"));
}

// ---- versions

#[test]
fn versions_count_writes_and_guard_them() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    // ver on an absent key: 401 with Version 0, nothing created.
    let r = g(&mut c, "/put?key=v&val=a&ver=1");
    expect(&r, 401, &[("Version", "0"), ("VerError", "true")], "");
    expect(&g(&mut c, "/exist?key=v"), 404, R0, "");
    // create = 1, +1 per write
    for n in 1..=5u32 {
        let r = g(&mut c, &format!("/put?key=v&val=a{n}"));
        expect(
            &r,
            200,
            &[("Version", &n.to_string()), ("VerError", "false")],
            "",
        );
    }
    expect(&g(&mut c, "/get?key=v"), 200, &[("Version", "5")], "a5");
    // matching ver applies, stale ones do not
    let r = g(&mut c, "/put?key=v&val=b&ver=5");
    expect(&r, 200, &[("Version", "6"), ("VerError", "false")], "");
    for stale in ["1", "5", "7", "4294967295"] {
        let r = g(&mut c, &format!("/put?key=v&val=c&ver={stale}"));
        expect(&r, 401, &[("Version", "6"), ("VerError", "true")], "");
    }
    expect(&g(&mut c, "/get?key=v"), 200, &[("Version", "6")], "b");
    // ver=0 is unconditional
    let r = g(&mut c, "/put?key=v&val=d&ver=0");
    expect(&r, 200, &[("Version", "7"), ("VerError", "false")], "");
    // delete: a stale ver refuses, the right one returns the version it had
    let r = g(&mut c, "/del?key=v&ver=6");
    expect(&r, 401, &[("Version", "7"), ("VerError", "true")], "");
    expect(&g(&mut c, "/get?key=v"), 200, &[("Version", "7")], "d");
    let r = g(&mut c, "/del?key=v&ver=7");
    expect(&r, 200, &[("Version", "7"), ("VerError", "false")], "");
    // absent again: deletes 404 whatever ver, ver writes 401 with 0, re-create starts at 1
    expect(&g(&mut c, "/del?key=v&ver=7"), 404, W0, "");
    expect(&g(&mut c, "/del?key=v"), 404, W0, "");
    let r = g(&mut c, "/put?key=v&val=e&ver=7");
    expect(&r, 401, &[("Version", "0"), ("VerError", "true")], "");
    expect(&g(&mut c, "/put?key=v&val=e"), 200, W1, "");
    expect(&g(&mut c, "/get?key=v"), 200, R1, "e");
    // versions are per key
    expect(&g(&mut c, "/put?key=w&val=x"), 200, W1, "");
    expect(
        &g(&mut c, "/keys?offset=0&size=10"),
        200,
        &[("Keys", "2"), ("TotalCount", "0")],
        r#"[{"key":"dg==","ver":1},{"key":"dw==","ver":1}]"#,
    );
}

#[test]
fn concurrent_versioned_writes_apply_once() {
    // Compare-and-set across connections (and both workers): each version is won once.
    let server = Server::start(&[]);
    let addr = server.addr();
    expect(&get(addr, "/put?key=cas&val=0"), 200, W1, "");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut wins = 0u32;
                for _ in 0..40 {
                    let r = c.send("GET", "/get?key=cas", &[], b"");
                    let ver: u32 = r.header("Version").unwrap().parse().unwrap();
                    let r = c.send("GET", &format!("/put?key=cas&val=t{t}&ver={ver}"), &[], b"");
                    match r.status {
                        200 => {
                            assert_eq!(r.header("Version"), Some((ver + 1).to_string().as_str()));
                            wins += 1;
                        }
                        401 => {
                            assert_eq!(r.header("VerError"), Some("true"));
                            let now: u32 = r.header("Version").unwrap().parse().unwrap();
                            assert!(now > ver, "{now} <= {ver}");
                        }
                        s => panic!("status {s}"),
                    }
                }
                wins
            })
        })
        .collect();
    let wins: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(wins >= 40, "only {wins} wins");
    let r = get(addr, "/get?key=cas");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Version"), Some((wins + 1).to_string().as_str()));
}

// ---- TTL

/// Polls `target` until it answers `status` (at most `secs`); returns the time it took.
fn until_status(c: &mut Client, target: &str, status: u16, secs: u64) -> Duration {
    let start = Instant::now();
    let ok = wait_until(Duration::from_secs(secs), || g(c, target).status == status);
    assert!(ok, "{target} never answered {status}");
    start.elapsed()
}

#[test]
fn ttl_expiry_is_seen_by_every_endpoint() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    let written = Instant::now();
    expect(&g(&mut c, "/put?key=t&val=gone&ttl=1"), 200, W1, "");
    expect(
        &g(&mut c, "/put?key=t&val=soon&ttl=1"),
        200,
        &[("Version", "2"), ("VerError", "false")],
        "",
    );
    expect(&g(&mut c, "/put?key=perm&val=stays"), 200, W1, "");
    expect(&g(&mut c, "/get?key=t"), 200, &[("Version", "2")], "soon");
    let r = g(&mut c, "/keys?offset=0&size=10&async=true");
    assert_eq!(r.header("Keys"), Some("2"));
    // Gone within ~1-2 s of the write, not before 1 s.
    until_status(&mut c, "/get?key=t", 404, 3);
    let took = written.elapsed();
    assert!(took >= Duration::from_millis(950), "expired after {took:?}");
    expect(&g(&mut c, "/get?key=t"), 404, R0, "");
    expect(&g(&mut c, "/get2?key=t"), 404, R0, "");
    expect(&g(&mut c, "/exist?key=t"), 404, R0, "");
    expect(&g(&mut c, "/del?key=t"), 404, W0, "");
    let r = g(&mut c, "/keys?offset=0&size=10&async=true");
    expect(
        &r,
        200,
        &[("Keys", "1"), ("TotalCount", "1")],
        r#"[{"key":"cGVybQ==","ver":1}]"#,
    );
    // ver on an expired key: 401 with 0; the next write starts at 1.
    let r = g(&mut c, "/put?key=t&val=x&ver=2");
    expect(&r, 401, &[("Version", "0"), ("VerError", "true")], "");
    expect(&g(&mut c, "/put?key=t&val=again"), 200, W1, "");
    expect(&g(&mut c, "/get?key=t"), 200, R1, "again");
}

#[test]
fn a_put_without_ttl_makes_a_key_permanent_again() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    expect(&g(&mut c, "/put?key=p&val=1&ttl=1"), 200, W1, "");
    expect(&g(&mut c, "/put?key=witness&val=1&ttl=1"), 200, W1, "");
    // A write with ttl=0 (and one without) replaces the expiry.
    expect(
        &g(&mut c, "/put?key=p&val=2"),
        200,
        &[("Version", "2"), ("VerError", "false")],
        "",
    );
    expect(&g(&mut c, "/put?key=q&val=1&ttl=1"), 200, W1, "");
    expect(
        &g(&mut c, "/put?key=q&val=2&ttl=0"),
        200,
        &[("Version", "2"), ("VerError", "false")],
        "",
    );
    // And a longer ttl replaces a shorter one.
    expect(&g(&mut c, "/put?key=r&val=1&ttl=1"), 200, W1, "");
    expect(
        &g(&mut c, "/put?key=r&val=2&ttl=100"),
        200,
        &[("Version", "2"), ("VerError", "false")],
        "",
    );
    // A shorter ttl replaces a longer one.
    expect(&g(&mut c, "/put?key=s&val=1&ttl=100"), 200, W1, "");
    expect(
        &g(&mut c, "/put?key=s&val=2&ttl=1"),
        200,
        &[("Version", "2"), ("VerError", "false")],
        "",
    );
    until_status(&mut c, "/get?key=witness", 404, 3);
    until_status(&mut c, "/get?key=s", 404, 2);
    for k in ["p", "q", "r"] {
        expect(
            &g(&mut c, &format!("/get?key={k}")),
            200,
            &[("Version", "2")],
            "2",
        );
    }
    // A delete of a ttl key removes it at once.
    expect(&g(&mut c, "/put?key=d&val=1&ttl=100"), 200, W1, "");
    expect(&g(&mut c, "/del?key=d"), 200, W1, "");
    expect(&g(&mut c, "/get?key=d"), 404, R0, "");
}

// ---- order of checks

#[test]
fn parameter_errors_come_before_record_and_version_answers() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    expect(&g(&mut c, "/put?key=a&val=1"), 200, W1, "");
    // 400 before 404 (absent key) and before 401 (stale ver).
    expect(&g(&mut c, "/del?key=absent&ver=abc"), 400, &[], "");
    expect(&g(&mut c, "/put?key=a&val=1&ver=9&ttl=-5"), 400, &[], "");
    expect(&g(&mut c, "/put?key=absent&ver=1"), 400, &[], "");
    expect(&g(&mut c, "/get?key=%zz"), 400, &[], "");
    // 404 before 401 on deletes.
    expect(&g(&mut c, "/del?key=absent&ver=3"), 404, W0, "");
    // 405 before 400.
    expect(
        &c.send("DELETE", "/del?key=%zz", &[], b""),
        405,
        &[("Allow", "GET, POST")],
        "",
    );
    expect(&g(&mut c, "/get?key=a"), 200, R1, "1");
}

// ---- a full store

#[test]
fn a_full_store_answers_507_and_keeps_serving() {
    let server = Server::start(&[("map_size", "1m")]);
    let mut c = Client::connect(server.addr());
    let value = |i: usize| -> Vec<u8> { (0..65536).map(|j| ((i * 7 + j) % 251) as u8).collect() };
    expect(&g(&mut c, "/sadd?tb=s1&key=m"), 200, W1, "");
    let mut stored = 0;
    let mut full = None;
    for i in 0..200 {
        let r = post(&mut c, &format!("/put?key=big{i}"), &value(i));
        if r.status == 507 {
            expect(&r, 507, &[], "");
            full = Some(i);
            break;
        }
        expect(&r, 200, W1, "");
        stored += 1;
    }
    let full = full.expect("a 1m store never answered 507");
    assert!(
        (4..=16).contains(&stored),
        "{stored} values of 64 KiB fit in a 1m map"
    );
    // The same write again: still refused. Parameter errors come first (400 before 507), and
    // capacity before the table type (507 before 412).
    let r = post(&mut c, &format!("/put?key=big{full}"), &value(full));
    expect(&r, 507, &[], "");
    let r = post(&mut c, &format!("/put?key=big{full}&ttl=abc"), &value(full));
    expect(&r, 400, &[], "");
    let r = post(&mut c, "/hset?tb=no%20good&key=f", &value(full));
    expect(&r, 400, &[], "");
    let r = post(&mut c, "/hset?tb=s1&key=f", &value(full));
    expect(&r, 507, &[], "");
    // A stale ver on a write that needs room: the capacity answer comes first.
    let r = post(
        &mut c,
        "/put?key=big0&ver=99",
        &[value(full), value(full)].concat(),
    );
    expect(&r, 507, &[], "");
    // Deletes need no room: their own answers come as usual.
    let r = g(&mut c, "/del?key=big0&ver=9");
    expect(&r, 401, &[("Version", "1"), ("VerError", "true")], "");
    expect(&g(&mut c, &format!("/del?key=big{full}")), 404, W0, "");
    // Reads still work, and so do deletes.
    for i in 0..stored {
        expect(&g(&mut c, &format!("/get?key=big{i}")), 200, R1, value(i));
    }
    expect(&g(&mut c, &format!("/get?key=big{full}")), 404, R0, "");
    let r = g(&mut c, "/keys?offset=0&size=1000&async=true");
    assert_eq!(r.header("TotalCount"), Some(stored.to_string().as_str()));
    expect(&g(&mut c, "/del?key=big0"), 200, W1, "");
    expect(&g(&mut c, "/del?key=big1"), 200, W1, "");
    // A delete made room: the next write is served.
    let r = post(&mut c, &format!("/put?key=big{full}"), &value(full));
    expect(&r, 200, W1, "");
    expect(
        &g(&mut c, &format!("/get?key=big{full}")),
        200,
        R1,
        value(full),
    );
    // The daemon is healthy, and other connections (other worker) see the same.
    expect(&get(server.addr(), "/status.html"), 200, &[], "ok\n");
    for _ in 0..4 {
        let r = get(server.addr(), &format!("/get?key=big{full}"));
        expect(&r, 200, R1, value(full));
    }
}

/// One request on a fresh connection, `Connection: close`; the raw response bytes.
fn raw(server: &Server, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn status_lines_carry_the_standard_reason_phrases() {
    let server = Server::start(&[]);
    let close = "Host: x\r\nConnection: close\r\n\r\n";
    let out = raw(
        &server,
        &format!("POST /put?key=k1 HTTP/1.1\r\nContent-Length: 2\r\n{close}v1"),
    );
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    let out = raw(
        &server,
        &format!("GET /put?key=k1&val=v2&ver=5 HTTP/1.1\r\n{close}"),
    );
    assert!(out.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{out}");
    assert!(out.contains("\r\nVerError: true\r\n") && out.contains("\r\nVersion: 1\r\n"));
    assert!(!out.contains("WWW-Authenticate"));
    let out = raw(&server, &format!("GET /get?key=nope HTTP/1.1\r\n{close}"));
    assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"), "{out}");
    let out = raw(&server, &format!("GET /get HTTP/1.1\r\n{close}"));
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    let out = raw(&server, &format!("DELETE /get?key=a HTTP/1.1\r\n{close}"));
    assert!(
        out.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{out}"
    );
    let out = raw(&server, &format!("GET /set_table HTTP/1.1\r\n{close}"));
    assert!(out.starts_with("HTTP/1.1 501 Not Implemented\r\n"), "{out}");
    assert!(out.contains("\r\nContent-Length: 0\r\n"), "{out}");
    assert_eq!(get(server.addr(), "/sadd?tb=s&key=m").status, 200);
    let out = raw(
        &server,
        &format!("GET /hget?tb=s&key=m HTTP/1.1\r\n{close}"),
    );
    assert!(
        out.starts_with("HTTP/1.1 412 Precondition Failed\r\n"),
        "{out}"
    );
    assert_eq!(get(server.addr(), "/hset?tb=h&key=f&val=x").status, 200);
    let out = raw(
        &server,
        &format!("GET /hincrby?tb=h&key=f&val=1 HTTP/1.1\r\n{close}"),
    );
    assert!(out.starts_with("HTTP/1.1 409 Conflict\r\n"), "{out}");
}

#[test]
fn auth_401_and_version_401_never_look_alike() {
    let dir = common::temp_dir();
    let file = dir.join("htpasswd");
    std::fs::write(&file, "u:{PLAIN}p\n").unwrap();
    let server = Server::start(&[("auth_basic_user_file", file.to_str().unwrap())]);
    let mut c = Client::connect(server.addr());
    // "u:p" in base64.
    let auth = [("Authorization", "Basic dTpw")];
    // The spec's example: no credentials, 401 with the challenge and nothing else.
    let r = g(&mut c, "/get?key=k1");
    expect(
        &r,
        401,
        &[("WWW-Authenticate", "Basic realm=\"huststore\"")],
        "",
    );
    // Auth is checked before the path, the method and the parameters.
    for (m, t) in [
        ("GET", "/nope"),
        ("DELETE", "/get"),
        ("GET", "/get?key=%zz"),
        ("GET", "/put?key=k1&val=x&ver=9"),
    ] {
        let r = c.send(m, t, &[], b"");
        expect(
            &r,
            401,
            &[("WWW-Authenticate", "Basic realm=\"huststore\"")],
            "",
        );
    }
    // With credentials, a version mismatch: VerError, no challenge.
    expect(
        &c.send("GET", "/put?key=k1&val=v1", &auth, b""),
        200,
        W1,
        "",
    );
    let r = c.send("GET", "/put?key=k1&val=v2&ver=5", &auth, b"");
    expect(&r, 401, &[("Version", "1"), ("VerError", "true")], "");
    expect(&c.send("GET", "/get?key=k1", &auth, b""), 200, R1, "v1");
    // Health paths stay open.
    expect(&g(&mut c, "/status.html"), 200, &[], "ok\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn large_values_round_trip() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    let big: Vec<u8> = (0..(4 << 20) as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    expect(&post(&mut c, "/put?key=big", &big), 200, W1, "");
    expect(&g(&mut c, "/get?key=big"), 200, R1, &big);
    expect(&c.send("PUT", "/hset?tb=h&key=big", &[], &big), 200, W1, "");
    expect(&g(&mut c, "/hget?tb=h&key=big"), 200, R1, &big);
    // Listed with its value: base64 of all of it.
    let r = g(&mut c, "/keys?offset=0&size=10&noval=false");
    let want = format!("[{{\"key\":\"Ymln\",\"val\":\"{}\",\"ver\":1}}]", b64(&big));
    expect(&r, 200, &[("Keys", "1"), ("TotalCount", "0")], want);
    // Shrinking and growing again.
    let r = post(&mut c, "/put?key=big", b"small");
    expect(&r, 200, &[("Version", "2"), ("VerError", "false")], "");
    expect(
        &g(&mut c, "/get?key=big"),
        200,
        &[("Version", "2")],
        "small",
    );
    let r = post(&mut c, "/put?key=big", &big[..3 << 20]);
    expect(&r, 200, &[("Version", "3"), ("VerError", "false")], "");
    expect(
        &g(&mut c, "/get?key=big"),
        200,
        &[("Version", "3")],
        &big[..3 << 20],
    );
    let r = g(&mut c, "/stat");
    let want = format!(
        r#"{{"TOTALIZE":{{"KVPAIR":{{"count":1,"size":{},"capacity":{}}},"HASHTABLE":{{"count":1,"size":{},"capacity":{}}}}}}}"#,
        3 + (3 << 20),
        (3 << 20) + 1024,
        3 + (4 << 20),
        (4 << 20) + 1024
    );
    expect(&r, 200, &[], want);
}

#[test]
fn empty_optional_parameters_take_their_defaults() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    // ver= is ver=0 (unconditional), ttl= is no expiry.
    expect(&g(&mut c, "/put?key=a&val=1&ver=&ttl="), 200, W1, "");
    expect(
        &g(&mut c, "/put?key=a&val=2&ver&ttl"),
        200,
        &[("Version", "2"), ("VerError", "false")],
        "",
    );
    // noval= and async= are their defaults (true, false); start=/end= are 0 and 1024.
    let r = g(
        &mut c,
        "/keys?offset=0&size=10&noval=&async=&start=&end=&peer=&file=",
    );
    expect(
        &r,
        200,
        &[("Keys", "1"), ("TotalCount", "0")],
        r#"[{"key":"YQ==","ver":2}]"#,
    );
    // opt= is opt=0.
    expect(&g(&mut c, "/zadd?tb=z&key=m&score=5&opt="), 200, W1, "5");
    expect(&g(&mut c, "/zadd?tb=z&key=m&score=5&opt="), 200, W1, "5");
    // The expiry really is absent: a sibling with ttl=1 goes, `a` stays.
    expect(&g(&mut c, "/put?key=w&val=1&ttl=1"), 200, W1, "");
    assert!(wait_until(Duration::from_secs(3), || g(
        &mut c,
        "/get?key=w"
    )
    .status
        == 404));
    expect(&g(&mut c, "/get?key=a"), 200, &[("Version", "2")], "2");
}

/// A large GET value goes from the store's map straight into the socket, uncopied; what the
/// socket does not take at once is copied before the pass's read snapshot ends, since later
/// writes may free and reuse those pages. A client with a small receive buffer asks for an
/// 8 MiB value and reads only the status line; the value is then overwritten on other
/// connections and many small keys are written (which take freed pages first; sync_writes
/// off: no checkpoint pins, so LMDB reuses them at once). The reply must be the old value.
#[test]
fn a_large_value_sent_slowly_is_the_value_at_the_time_of_the_get() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::io::AsRawFd;
    let server = Server::start(&[("worker_processes", "2"), ("sync_writes", "off")]);
    let addr = server.addr();
    const SIZE: usize = 8 << 20;
    let old: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let mut writers: Vec<Client> = (0..8).map(|_| Client::connect(addr)).collect();
    assert_eq!(
        writers[0].send("POST", "/put?key=big", &[], &old).status,
        200
    );

    let stream = std::net::TcpStream::connect(addr).unwrap();
    let small: libc::c_int = 64 << 10;
    // SAFETY: a valid socket and a pointer to a c_int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &small as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    reader
        .get_mut()
        .write_all(b"GET /get?key=big HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    let small_value = vec![7u8; 2000];
    for (w, writer) in writers.iter_mut().enumerate() {
        let new = vec![w as u8 + 1; SIZE];
        assert_eq!(writer.send("POST", "/put?key=big", &[], &new).status, 200);
        let mut pipelined = Vec::new();
        for i in 0..600 {
            pipelined.extend_from_slice(
                format!(
                    "POST /put?key=s{w}_{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n"
                )
                .as_bytes(),
            );
            pipelined.extend_from_slice(&small_value);
        }
        writer.send_raw(&pipelined);
        for _ in 0..600 {
            assert_eq!(writer.read_response().expect("a reply").status, 200);
        }
    }

    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    assert_eq!(length, Some(SIZE));
    let mut body = vec![0u8; SIZE];
    reader.read_exact(&mut body).unwrap();
    let first_bad = body.iter().zip(&old).position(|(a, b)| a != b);
    assert_eq!(first_bad, None, "the reply changed after the GET");
}
