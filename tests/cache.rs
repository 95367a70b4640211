//! The volatile cache (`kv-api.md` §8) against the real binary: the spec's example table in
//! order, parameters, binary keys and bodies, the 8 MiB value cap, ttl rounding and expiry,
//! hincrby/hincrbyfloat, one cache across connections and workers, emptied by a restart, and a
//! full cache.

mod common;

use common::kv::*;

use common::{get, wait_until, Client, Response, Server};
use std::time::{Duration, Instant};

// ---- helpers of this file (the shared ones are in common/kv.rs)

/// `200` with `body` and no contract header but `Content-Type` (cache answers carry no
/// versions).
#[track_caller]
fn ok(r: &Response, body: impl AsRef<[u8]>) {
    expect(r, 200, &[], body);
}

#[track_caller]
fn status(r: &Response, code: u16) {
    expect(r, code, &[], "");
}

#[test]
fn spec_example_table_of_section_8_in_order() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    let t0 = Instant::now();
    // 1
    ok(&post(&mut c, "/cache/put?key=c1&ttl=60", b"hello"), "");
    // 2, in full
    let r = g(&mut c, "/cache/get?key=c1");
    ok(&r, "hello");
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.header("Content-Length"), Some("5"));
    // 3
    ok(&g(&mut c, "/cache/exist?key=c1"), "");
    // 4
    let r = g(&mut c, "/cache/ttl?key=c1");
    if t0.elapsed() < Duration::from_millis(500) {
        ok(&r, "60");
    } else {
        // A loaded machine: more than half a second went by since row 1.
        assert!(r.text() == "60" || r.text() == "59", "{}", r.text());
    }
    // 5 .. 12
    ok(&g(&mut c, "/cache/append?key=c1&val=%21"), "");
    ok(&g(&mut c, "/cache/expire?key=c1&ttl=30"), "");
    ok(&g(&mut c, "/cache/persist?key=c1"), "");
    status(&g(&mut c, "/cache/persist?key=c1"), 404);
    ok(&g(&mut c, "/cache/ttl?key=c1"), "-1");
    ok(&g(&mut c, "/cache/get?key=c1"), "hello!");
    ok(&g(&mut c, "/cache/del?key=c1"), "");
    status(&g(&mut c, "/cache/get?key=c1"), 404);
    // 13 .. 20
    ok(&g(&mut c, "/cache/hset?tb=ch&key=f&val=1.5"), "");
    ok(
        &g(&mut c, "/cache/hincrbyfloat?tb=ch&key=f&val=0.25"),
        "1.75",
    );
    ok(&g(&mut c, "/cache/hget?tb=ch&key=f"), "1.75");
    ok(&g(&mut c, "/cache/hincrby?tb=ch&key=n&val=7"), "7");
    status(&g(&mut c, "/cache/hincrby?tb=ch&key=f&val=1"), 409);
    ok(&g(&mut c, "/cache/hexist?tb=ch&key=n"), "");
    ok(&g(&mut c, "/cache/hdel?tb=ch&key=n"), "");
    status(&g(&mut c, "/cache/hexist?tb=ch&key=n"), 404);
    // The persistent store saw none of it.
    expect(&g(&mut c, "/get?key=c1"), 404, &[("Version", "0")], "");
    expect(
        &g(&mut c, "/hget?tb=ch&key=f"),
        404,
        &[("Version", "0")],
        "",
    );
    expect(
        &g(&mut c, "/stat"),
        200,
        &[],
        r#"{"TOTALIZE":{"KVPAIR":{"count":0,"size":0,"capacity":0},"HASHTABLE":{"count":0,"size":0,"capacity":0}}}"#,
    );
}

#[test]
fn absent_keys_and_fields_are_404_and_parameters_are_checked() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    for target in [
        "/cache/get?key=no",
        "/cache/exist?key=no",
        "/cache/del?key=no",
        "/cache/ttl?key=no",
        "/cache/expire?key=no&ttl=5",
        "/cache/persist?key=no",
        "/cache/hget?tb=t&key=no",
        "/cache/hdel?tb=t&key=no",
        "/cache/hexist?tb=t&key=no",
    ] {
        status(&g(&mut c, target), 404);
        status(&post(&mut c, target, b""), 404);
    }
    for target in [
        "/cache/put?key=k",
        "/cache/put?val=v",
        "/cache/put?key=&val=v",
        "/cache/put?key=k&val=",
        "/cache/put?key=k&val=v&ttl=abc",
        "/cache/put?key=k&val=v&ttl=-1",
        "/cache/put?key=k&val=v&ttl=2592001",
        "/cache/put?key=k&val=v&ttl=1.5",
        "/cache/get",
        "/cache/get?key=",
        "/cache/exist",
        "/cache/del",
        "/cache/ttl",
        "/cache/expire?key=k",
        "/cache/expire?key=k&ttl=0",
        "/cache/expire?key=k&ttl=-1",
        "/cache/expire?key=k&ttl=2592001",
        "/cache/expire?key=k&ttl=x",
        "/cache/expire?ttl=5",
        "/cache/persist",
        "/cache/append?key=k",
        "/cache/append?val=v",
        "/cache/hset?tb=t&key=f",
        "/cache/hset?tb=t&val=v",
        "/cache/hset?key=f&val=v",
        "/cache/hset?tb=bad%20name&key=f&val=v",
        "/cache/hget?tb=t",
        "/cache/hget?key=f",
        "/cache/hdel?tb=t",
        "/cache/hexist?key=f",
        "/cache/hincrby?tb=t&key=f",
        "/cache/hincrby?tb=t&key=f&val=1.5",
        "/cache/hincrby?tb=t&key=f&val=abc",
        "/cache/hincrby?tb=t&key=f&val=9223372036854775808",
        "/cache/hincrby?tb=t&val=1",
        "/cache/hincrbyfloat?tb=t&key=f",
        "/cache/hincrbyfloat?tb=t&key=f&val=abc",
        "/cache/hincrbyfloat?tb=t&key=f&val=1.",
        "/cache/hincrbyfloat?tb=t&key=f&val=.5",
        "/cache/hincrbyfloat?tb=t&key=f&val=%2B1",
        "/cache/hincrbyfloat?tb=t&key=f&val=inf",
        "/cache/hincrbyfloat?tb=t&key=f&val=NaN",
        "/cache/hincrbyfloat?tb=t&key=f&val=1e999",
        "/cache/hincrbyfloat?tb=t&key=f&val=1e",
        "/cache/hincrbyfloat?tb=t&key=f&val=0x1",
        "/cache/get?key=%zz",
    ] {
        status(&g(&mut c, target), 400);
    }
    // Nothing was created by the refused writes.
    for target in ["/cache/get?key=k", "/cache/hget?tb=t&key=f"] {
        status(&g(&mut c, target), 404);
    }
    // `ver` is ignored on the cache and no version header ever appears.
    ok(&g(&mut c, "/cache/put?key=k&val=v&ver=5"), "");
    ok(&g(&mut c, "/cache/get?key=k&ver=9"), "v");
    ok(&g(&mut c, "/cache/hset?tb=t&key=f&val=1&ver=3"), "");
    ok(&g(&mut c, "/cache/hincrby?tb=t&key=f&val=1&ver=3"), "2");
}

#[test]
fn cache_values_keys_and_bodies() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    // Binary keys and values; the body wins over val; a GET body is ignored.
    let key = [0u8, 0xff, b'&', b'='];
    let val: Vec<u8> = (0..=255u8).rev().collect();
    ok(
        &post(&mut c, &format!("/cache/put?key={}&val=q", pct(&key)), &val),
        "",
    );
    ok(&g(&mut c, &format!("/cache/get?key={}", pct(&key))), &val);
    ok(&post(&mut c, "/cache/put?key=b&val=query", b""), "");
    ok(&g(&mut c, "/cache/get?key=b"), "query");
    ok(
        &c.send("GET", "/cache/put?key=b&val=q2", &[], b"ignored"),
        "",
    );
    ok(&g(&mut c, "/cache/get?key=b"), "q2");
    ok(
        &c.send("PUT", "/cache/append?key=b&val=no", &[], b"+body"),
        "",
    );
    ok(&g(&mut c, "/cache/get?key=b"), "q2+body");
    ok(&g(&mut c, "/cache/append?key=b&val=%00%FF"), "");
    ok(&g(&mut c, "/cache/get?key=b"), b"q2+body\x00\xff");
    // append creates an absent key.
    ok(&g(&mut c, "/cache/append?key=fresh&val=x"), "");
    ok(&g(&mut c, "/cache/get?key=fresh"), "x");
    ok(&g(&mut c, "/cache/ttl?key=fresh"), "-1");
    // hash fields: body values, overwrite, and the table ends with its last field.
    ok(
        &post(&mut c, "/cache/hset?tb=t&key=f&val=q", b"bodyval"),
        "",
    );
    ok(&g(&mut c, "/cache/hget?tb=t&key=f"), "bodyval");
    ok(&g(&mut c, "/cache/hset?tb=t&key=f&val=2"), "");
    ok(&g(&mut c, "/cache/hget?tb=t&key=f"), "2");
    ok(
        &g(
            &mut c,
            &format!("/cache/hset?tb=t&key={}&val=bin", pct(&key)),
        ),
        "",
    );
    ok(
        &g(&mut c, &format!("/cache/hget?tb=t&key={}", pct(&key))),
        "bin",
    );
    ok(&g(&mut c, "/cache/hdel?tb=t&key=f"), "");
    status(&g(&mut c, "/cache/hget?tb=t&key=f"), 404);
    ok(
        &g(&mut c, &format!("/cache/hdel?tb=t&key={}", pct(&key))),
        "",
    );
    status(
        &g(&mut c, &format!("/cache/hexist?tb=t&key={}", pct(&key))),
        404,
    );
    // String keys and hash tables are separate namespaces (and apart from the store).
    ok(&g(&mut c, "/cache/put?key=same&val=string"), "");
    ok(&g(&mut c, "/cache/hset?tb=same&key=same&val=hash"), "");
    ok(&g(&mut c, "/cache/get?key=same"), "string");
    ok(&g(&mut c, "/cache/hget?tb=same&key=same"), "hash");
    ok(&g(&mut c, "/cache/del?key=same"), "");
    ok(&g(&mut c, "/cache/hget?tb=same&key=same"), "hash");
    expect(
        &g(&mut c, "/hset?tb=same&key=same&val=p"),
        200,
        &[("Version", "1"), ("VerError", "false")],
        "",
    );
    ok(&g(&mut c, "/cache/hget?tb=same&key=same"), "hash");
    // Keys: 65536 bytes fine, 65537 refused.
    let max = vec![b'k'; 65536];
    let over = vec![b'k'; 65537];
    ok(
        &g(&mut c, &format!("/cache/put?key={}&val=1", pct(&max))),
        "",
    );
    ok(&g(&mut c, &format!("/cache/get?key={}", pct(&max))), "1");
    status(
        &g(&mut c, &format!("/cache/put?key={}&val=1", pct(&over))),
        400,
    );
    status(&g(&mut c, &format!("/cache/get?key={}", pct(&over))), 400);
    ok(
        &g(&mut c, &format!("/cache/hset?tb=t&key={}&val=1", pct(&max))),
        "",
    );
    ok(
        &g(&mut c, &format!("/cache/hget?tb=t&key={}", pct(&max))),
        "1",
    );
    status(
        &g(
            &mut c,
            &format!("/cache/hset?tb=t&key={}&val=1", pct(&over)),
        ),
        400,
    );
    // A key sharing a long prefix with the 64 KiB one is another key.
    let mut near = max.clone();
    near[65535] = b'j';
    status(&g(&mut c, &format!("/cache/get?key={}", pct(&near))), 404);
}

#[test]
fn values_are_capped_at_8_mib_with_413() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    let max = vec![b'v'; 8 << 20];
    ok(&post(&mut c, "/cache/put?key=big", &max), "");
    // One byte more by append: 413, the value unchanged.
    status(&post(&mut c, "/cache/append?key=big", b"x"), 413);
    status(&g(&mut c, "/cache/append?key=big&val=x"), 413);
    let r = g(&mut c, "/cache/get?key=big");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 8 << 20);
    // Directly too large: 413 and nothing stored.
    let over = vec![b'w'; (8 << 20) + 1];
    status(&post(&mut c, "/cache/put?key=over", &over), 413);
    status(&post(&mut c, "/cache/append?key=over", &over), 413);
    status(&post(&mut c, "/cache/hset?tb=t&key=over", &over), 413);
    status(&g(&mut c, "/cache/get?key=over"), 404);
    status(&g(&mut c, "/cache/hget?tb=t&key=over"), 404);
    // Up to the limit by appends (two 8 MiB values do not fit in the 16m test cache).
    ok(&g(&mut c, "/cache/del?key=big"), "");
    ok(
        &post(&mut c, "/cache/put?key=grow", &max[..(8 << 20) - 2]),
        "",
    );
    ok(&g(&mut c, "/cache/append?key=grow&val=ab"), "");
    status(&g(&mut c, "/cache/append?key=grow&val=c"), 413);
    let r = g(&mut c, "/cache/get?key=grow");
    assert_eq!(r.body.len(), 8 << 20);
    assert!(r.body.ends_with(b"vvab"));
}

#[test]
fn ttl_is_rounded_to_the_nearest_second_and_expiry_is_seen_everywhere() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    let t0 = Instant::now();
    ok(&g(&mut c, "/cache/put?key=r&val=1&ttl=10"), "");
    let acked = t0.elapsed();
    ok(&g(&mut c, "/cache/put?key=e&val=1&ttl=1"), "");
    ok(&g(&mut c, "/cache/put?key=a&val=1&ttl=1"), "");
    // Rounded to the nearest second: `10` while more than 9.5 s are left, `9` after. So a `10`
    // can only come to a request sent within 0.5 s of the put's answer, and a `9` only to one
    // answered at least 0.5 s after the put was sent (a floor would give 9 at once, a ceiling
    // 10 for a whole second). Slack: the millisecond precision of expiry times.
    let slack = Duration::from_millis(20);
    let mut seen = Vec::new();
    let nine = wait_until(Duration::from_secs(3), || {
        let sent = t0.elapsed();
        let r = g(&mut c, "/cache/ttl?key=r");
        let answered = t0.elapsed();
        seen.push((r.text(), sent, answered));
        r.text() == "9"
    });
    assert!(nine, "ttl never went to 9: {seen:?}");
    for (text, sent, answered) in &seen {
        match text.as_str() {
            "10" => assert!(
                *sent <= acked + Duration::from_millis(500) + slack,
                "{seen:?}"
            ),
            "9" => assert!(*answered + slack >= Duration::from_millis(500), "{seen:?}"),
            _ => panic!("{seen:?}"),
        }
    }
    // Appending keeps the expiry.
    ok(&g(&mut c, "/cache/append?key=a&val=2"), "");
    // ttl=1 keys expire for every endpoint.
    let gone = wait_until(Duration::from_secs(3), || {
        g(&mut c, "/cache/get?key=e").status == 404
    });
    assert!(gone, "the key never expired");
    assert!(t0.elapsed() >= Duration::from_millis(950));
    for target in [
        "/cache/get?key=e",
        "/cache/exist?key=e",
        "/cache/ttl?key=e",
        "/cache/persist?key=e",
        "/cache/expire?key=e&ttl=5",
        "/cache/del?key=e",
    ] {
        status(&g(&mut c, target), 404);
    }
    assert!(wait_until(Duration::from_secs(2), || g(
        &mut c,
        "/cache/get?key=a"
    )
    .status
        == 404));
    // An append after expiry starts a new value without expiry.
    ok(&g(&mut c, "/cache/append?key=e&val=new"), "");
    ok(&g(&mut c, "/cache/get?key=e"), "new");
    ok(&g(&mut c, "/cache/ttl?key=e"), "-1");
    // put with ttl=0 or without ttl removes an expiry; expire sets a new one.
    ok(&g(&mut c, "/cache/put?key=p&val=1&ttl=100"), "");
    ok(&g(&mut c, "/cache/ttl?key=p"), "100");
    ok(&g(&mut c, "/cache/put?key=p&val=2&ttl=0"), "");
    ok(&g(&mut c, "/cache/ttl?key=p"), "-1");
    ok(&g(&mut c, "/cache/expire?key=p&ttl=2592000"), "");
    ok(&g(&mut c, "/cache/ttl?key=p"), "2592000");
    ok(&g(&mut c, "/cache/put?key=p&val=3"), "");
    ok(&g(&mut c, "/cache/ttl?key=p"), "-1");
    status(&g(&mut c, "/cache/persist?key=p"), 404);
    ok(&g(&mut c, "/cache/expire?key=p&ttl=1"), "");
    ok(&g(&mut c, "/cache/persist?key=p"), "");
    ok(&g(&mut c, "/cache/ttl?key=p"), "-1");
    ok(&g(&mut c, "/cache/get?key=p"), "3");
}

#[test]
fn hincrby_and_hincrbyfloat() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    ok(&g(&mut c, "/cache/hincrby?tb=t&key=i&val=-3"), "-3");
    ok(&g(&mut c, "/cache/hincrby?tb=t&key=i&val=10"), "7");
    ok(&g(&mut c, "/cache/hget?tb=t&key=i"), "7");
    ok(
        &g(&mut c, "/cache/hset?tb=t&key=i&val=9223372036854775807"),
        "",
    );
    status(&g(&mut c, "/cache/hincrby?tb=t&key=i&val=1"), 409);
    ok(&g(&mut c, "/cache/hget?tb=t&key=i"), "9223372036854775807");
    ok(
        &g(&mut c, "/cache/hincrby?tb=t&key=i&val=-9223372036854775808"),
        "-1",
    );
    for stored in ["abc", "1.5", "%201", "1e3"] {
        ok(
            &g(&mut c, &format!("/cache/hset?tb=t&key=x&val={stored}")),
            "",
        );
        status(&g(&mut c, "/cache/hincrby?tb=t&key=x&val=1"), 409);
    }
    // Floats: Rust's `{}` formatting of the f64 result.
    for (delta, want) in [
        ("7.5", "7.5"),
        ("2.5", "10"),
        ("-10", "0"),
        ("0.1", "0.1"),
        ("0.2", "0.30000000000000004"),
        ("-0.30000000000000004", "0"),
        ("1e21", "1000000000000000000000"),
        ("-1E21", "0"),
        ("1e-7", "0.0000001"),
        ("-2e-7", "-0.0000001"),
    ] {
        let r = g(
            &mut c,
            &format!("/cache/hincrbyfloat?tb=f&key=x&val={delta}"),
        );
        ok(&r, want);
        ok(&g(&mut c, "/cache/hget?tb=f&key=x"), want);
    }
    // An integer field takes float increments; a float field refuses integer ones.
    ok(&g(&mut c, "/cache/hincrby?tb=f&key=n&val=5"), "5");
    ok(&g(&mut c, "/cache/hincrbyfloat?tb=f&key=n&val=0.5"), "5.5");
    status(&g(&mut c, "/cache/hincrby?tb=f&key=n&val=1"), 409);
    // Non-numbers and non-finite results: 409, value unchanged.
    for stored in ["abc", "1.", ".5", "inf", "NaN", "%2B1", "1e"] {
        ok(
            &g(&mut c, &format!("/cache/hset?tb=f&key=y&val={stored}")),
            "",
        );
        status(&g(&mut c, "/cache/hincrbyfloat?tb=f&key=y&val=1"), 409);
    }
    ok(&g(&mut c, "/cache/hset?tb=f&key=y&val=1e308"), "");
    status(&g(&mut c, "/cache/hincrbyfloat?tb=f&key=y&val=1e308"), 409);
    ok(&g(&mut c, "/cache/hget?tb=f&key=y"), "1e308");
    // hincrby* on an absent field counts from 0 and creates the table.
    ok(
        &g(&mut c, "/cache/hincrbyfloat?tb=new&key=z&val=-1.25"),
        "-1.25",
    );
    ok(&g(&mut c, "/cache/hexist?tb=new&key=z"), "");
}

#[test]
fn every_connection_sees_one_cache_and_a_restart_empties_it() {
    let mut server = Server::start(&[("worker_processes", "2")]);
    let addr = server.addr();
    let mut conns: Vec<Client> = (0..10).map(|_| Client::connect(addr)).collect();
    // Each connection writes; every other connection reads what it wrote at once.
    for i in 0..conns.len() {
        ok(
            &g(&mut conns[i], &format!("/cache/put?key=c{i}&val=v{i}")),
            "",
        );
        ok(
            &g(&mut conns[i], &format!("/cache/hset?tb=t&key=f{i}&val={i}")),
            "",
        );
        ok(
            &g(&mut conns[i], "/cache/hincrby?tb=t&key=count&val=1"),
            (i + 1).to_string(),
        );
        for (j, other) in conns.iter_mut().enumerate() {
            ok(&g(other, &format!("/cache/get?key=c{i}")), format!("v{i}"));
            ok(
                &g(other, &format!("/cache/hget?tb=t&key=f{i}")),
                i.to_string(),
            );
            if j != i {
                ok(&g(other, "/cache/hget?tb=t&key=count"), (i + 1).to_string());
            }
        }
    }
    // Deletes are seen everywhere too.
    ok(&g(&mut conns[3], "/cache/del?key=c0"), "");
    for other in conns.iter_mut() {
        status(&g(other, "/cache/get?key=c0"), 404);
    }
    // Fresh connections (spread over both workers) agree.
    for _ in 0..10 {
        ok(&get(addr, "/cache/get?key=c9"), "v9");
    }
    ok(&get(addr, "/cache/hget?tb=t&key=count"), "10");
    expect(
        &get(addr, "/put?key=durable&val=1"),
        200,
        &[("Version", "1"), ("VerError", "false")],
        "",
    );
    drop(conns);
    // kill -9 of the whole tree and a restart: the cache is empty, the store is not.
    server.kill_all();
    server.restart();
    for i in 1..10 {
        status(&get(addr, &format!("/cache/get?key=c{i}")), 404);
    }
    status(&get(addr, "/cache/hget?tb=t&key=count"), 404);
    expect(
        &get(addr, "/get?key=durable"),
        200,
        &[("Version", "1")],
        "1",
    );
    // And it works again after the restart.
    ok(&get(addr, "/cache/put?key=again&val=1"), "");
    ok(&get(addr, "/cache/get?key=again"), "1");
}

#[test]
fn a_full_cache_answers_507_and_keeps_serving() {
    let server = Server::start(&[("cache_size", "1m")]);
    let mut c = Client::connect(server.addr());
    let value = |i: usize| -> Vec<u8> { (0..65536).map(|j| ((i + j) % 253) as u8).collect() };
    let mut stored = 0;
    for i in 0..100 {
        let r = post(&mut c, &format!("/cache/put?key=k{i}"), &value(i));
        if r.status == 507 {
            status(&r, 507);
            break;
        }
        ok(&r, "");
        stored += 1;
    }
    assert!(
        (4..=16).contains(&stored),
        "{stored} values of 64 KiB in a 1m cache"
    );
    // Refused writes of every kind that needs room; nothing is evicted.
    status(
        &post(&mut c, &format!("/cache/put?key=k{stored}"), &value(0)),
        507,
    );
    status(&post(&mut c, "/cache/hset?tb=t&key=f", &value(0)), 507);
    status(&post(&mut c, "/cache/append?key=k0", &value(0)), 507);
    // Parameter errors still come first.
    status(&post(&mut c, "/cache/put?key=x&ttl=abc", &value(0)), 400);
    for i in 0..stored {
        ok(&g(&mut c, &format!("/cache/get?key=k{i}")), value(i));
    }
    // A delete makes room.
    ok(&g(&mut c, "/cache/del?key=k0"), "");
    ok(&g(&mut c, "/cache/del?key=k1"), "");
    ok(
        &post(&mut c, &format!("/cache/put?key=k{stored}"), &value(stored)),
        "",
    );
    ok(
        &g(&mut c, &format!("/cache/get?key=k{stored}")),
        value(stored),
    );
    // The persistent store is not affected by the cache's budget.
    expect(
        &post(&mut c, "/put?key=p", &value(0)),
        200,
        &[("Version", "1"), ("VerError", "false")],
        "",
    );
}

#[test]
fn concurrent_cache_increments_from_both_workers_add_up() {
    let server = Server::start(&[("worker_processes", "2")]);
    let addr = server.addr();
    let threads: Vec<_> = (0..6)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..50 {
                    assert_eq!(g(&mut c, "/cache/hincrby?tb=t&key=n&val=1").status, 200);
                    let r = g(&mut c, "/cache/hincrbyfloat?tb=t&key=f&val=0.5");
                    assert_eq!(r.status, 200);
                    let r = g(&mut c, "/cache/append?key=log&val=x");
                    assert_eq!(r.status, 200);
                    ok(&g(&mut c, &format!("/cache/put?key=t{t}i{i}&val={i}")), "");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut c = Client::connect(addr);
    ok(&g(&mut c, "/cache/hget?tb=t&key=n"), "300");
    ok(&g(&mut c, "/cache/hget?tb=t&key=f"), "150");
    ok(&g(&mut c, "/cache/get?key=log"), "x".repeat(300));
    for t in 0..6 {
        ok(&g(&mut c, &format!("/cache/get?key=t{t}i49")), "49");
    }
}
