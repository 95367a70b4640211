//! Statistics and the cluster paths (`kv-api.md` §7, §9) against the real binary: the spec's
//! examples, exact counts, sizes and capacities through puts, overwrites, deletes and hash
//! operations, table order, `peer`, and the one-node answers of `/peer_count`, `/get_table`,
//! `/set_table`, `/sync_status` and `/sync_alive`.

mod common;

use common::kv::*;

use common::{get, wait_until, Client, Server};
use std::time::Duration;

// ---- helpers of this file (the shared ones are in common/kv.rs)

const EMPTY_TOTALS: &str = r#"{"TOTALIZE":{"KVPAIR":{"count":0,"size":0,"capacity":0},"HASHTABLE":{"count":0,"size":0,"capacity":0}}}"#;

/// §7's rounding: each record's key + value length rounded up to a multiple of 1024.
fn cap(key: usize, val: usize) -> u64 {
    (key + val).div_ceil(1024) as u64 * 1024
}

/// A usage object.
fn usage(count: u64, size: u64, capacity: u64) -> String {
    format!(r#"{{"count":{count},"size":{size},"capacity":{capacity}}}"#)
}

fn totals(kv: (u64, u64, u64), hash: (u64, u64, u64)) -> String {
    format!(
        r#"{{"TOTALIZE":{{"KVPAIR":{},"HASHTABLE":{}}}}}"#,
        usage(kv.0, kv.1, kv.2),
        usage(hash.0, hash.1, hash.2)
    )
}

#[test]
fn spec_examples_of_statistics() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    expect(&g(&mut c, "/stat"), 200, &[], EMPTY_TOTALS);
    expect(
        &g(&mut c, "/stat_all"),
        200,
        &[],
        format!("[{EMPTY_TOTALS}]"),
    );
    expect(&g(&mut c, "/put?key=k1&val=v1"), 200, W1, "");
    expect(&g(&mut c, "/hset?tb=h1&key=f1&val=10"), 200, W1, "");
    let r = g(&mut c, "/stat");
    expect(
        &r,
        200,
        &[],
        r#"{"TOTALIZE":{"KVPAIR":{"count":1,"size":4,"capacity":1024},"HASHTABLE":{"count":1,"size":4,"capacity":1024}}}"#,
    );
    assert_eq!(r.header("Content-Length"), Some("109"));
    let r = g(&mut c, "/stat?tb=h1");
    expect(
        &r,
        200,
        &[],
        r#"{"table":"h1","type":"H","count":1,"size":4,"capacity":1024}"#,
    );
    assert_eq!(r.header("Content-Length"), Some("60"));
    expect(&g(&mut c, "/sadd?tb=s1&key=m1"), 200, W1, "");
    expect(&g(&mut c, "/zadd?tb=z1&key=m1&score=60"), 200, W1, "60");
    let r = g(&mut c, "/stat_all");
    expect(
        &r,
        200,
        &[],
        r#"[{"TOTALIZE":{"KVPAIR":{"count":1,"size":4,"capacity":1024},"HASHTABLE":{"count":1,"size":4,"capacity":1024}}},{"table":"h1","type":"H","count":1,"size":4,"capacity":1024},{"table":"s1","type":"S","count":1},{"table":"z1","type":"Z","count":1}]"#,
    );
    assert_eq!(r.header("Content-Length"), Some("244"));
    expect(
        &g(&mut c, "/stat?tb=s1"),
        200,
        &[],
        r#"{"table":"s1","type":"S","count":1}"#,
    );
    expect(
        &g(&mut c, "/stat?tb=z1"),
        200,
        &[],
        r#"{"table":"z1","type":"Z","count":1}"#,
    );
    let r = g(&mut c, "/file_count");
    expect(&r, 200, &[], "1");
    // POST answers the same; peer=0 is the only node; tb= empty counts as absent.
    expect(&post(&mut c, "/file_count", b"ignored"), 200, &[], "1");
    expect(&g(&mut c, "/file_count?peer=0"), 200, &[], "1");
    let totals = g(&mut c, "/stat").text();
    expect(&g(&mut c, "/stat?peer=0&tb="), 200, &[], &totals);
    expect(
        &post(&mut c, "/stat?tb=h1", b"tb=s1"),
        200,
        &[],
        r#"{"table":"h1","type":"H","count":1,"size":4,"capacity":1024}"#,
    );
    // Bad parameters and absent tables.
    for target in [
        "/stat?peer=1",
        "/stat?peer=-1",
        "/stat?peer=x",
        "/stat?tb=bad%20name",
        "/stat?tb=a-b",
        "/stat_all?peer=1",
        "/file_count?peer=1",
        "/file_count?peer=abc",
    ] {
        expect(&g(&mut c, target), 400, &[], "");
    }
    expect(&g(&mut c, "/stat?tb=nothere"), 404, &[], "");
    expect(&g(&mut c, "/stat?tb=k1"), 404, &[], "");
    // peer is checked on the listings too.
    for target in [
        "/keys?offset=0&size=10&peer=1",
        "/hkeys?tb=h1&offset=0&size=10&peer=1",
        "/smembers?tb=s1&offset=0&size=10&peer=1",
    ] {
        expect(&g(&mut c, target), 400, &[], "");
    }
    let r = g(&mut c, "/hkeys?tb=h1&offset=0&size=10&peer=0");
    expect(
        &r,
        200,
        &[("Keys", "1"), ("TotalCount", "0")],
        r#"[{"key":"ZjE=","ver":1}]"#,
    );
}

#[test]
fn cluster_paths_answer_as_a_one_node_cluster() {
    // Two listen lines: /get_table names the first exactly as written.
    let server = Server::start(&[
        ("listen", "127.0.0.2:{port}"),
        ("listen", "127.0.0.1:{port}"),
    ]);
    let port = server.port;
    let mut c = Client::connect(server.addr());
    for method in ["GET", "POST"] {
        let r = c.send(method, "/peer_count", &[], b"");
        expect(&r, 200, &[], "1");
        let r = c.send(method, "/get_table", &[], b"");
        let want = format!(
            r#"{{"table":[{{"item":{{"key":[0,1024],"val":["127.0.0.2:{port}","127.0.0.2:{port}"]}}}}]}}"#
        );
        expect(&r, 200, &[], want);
        let r = c.send(method, "/sync_status", &[], b"");
        expect(
            &r,
            200,
            &[],
            r#"{"status":{},"total_status":{"processed_items":0,"synced_items":0}}"#,
        );
        assert_eq!(r.header("Content-Length"), Some("67"));
        let r = c.send(method, "/sync_alive", &[], b"");
        expect(&r, 200, &[], "ok\n");
        // set_table: 501 whatever the parameters and body.
        for target in [
            "/set_table",
            "/set_table?id=abc",
            "/set_table?peer=7&x=%zz0",
        ] {
            let r = c.send(method, target, &[], b"{\"table\":[]}");
            assert_eq!(
                r.status,
                if target.contains("%zz") { 400 } else { 501 },
                "{target}"
            );
            expect(&r, r.status, &[], "");
        }
    }
    // The connection survives the 501s.
    expect(&g(&mut c, "/peer_count"), 200, &[], "1");
}

#[test]
fn get_table_with_the_default_style_listen() {
    let server = Server::start(&[("listen", "127.0.0.1:{port}")]);
    let port = server.port;
    let r = get(server.addr(), "/get_table");
    let want = format!(
        r#"{{"table":[{{"item":{{"key":[0,1024],"val":["127.0.0.1:{port}","127.0.0.1:{port}"]}}}}]}}"#
    );
    expect(&r, 200, &[], &want);
    assert_eq!(want.len(), 79 + 2 * (port.to_string().len() - 4));
}

#[test]
fn sizes_and_capacities_are_exact() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    // Model: key -> value length, per store.
    use std::collections::BTreeMap;
    let mut kv: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    let mut hash: BTreeMap<(String, Vec<u8>), usize> = BTreeMap::new();
    let sum = |m: &BTreeMap<Vec<u8>, usize>| {
        (
            m.len() as u64,
            m.iter().map(|(k, v)| (k.len() + v) as u64).sum::<u64>(),
            m.iter().map(|(k, v)| cap(k.len(), *v)).sum::<u64>(),
        )
    };
    let hsum = |m: &BTreeMap<(String, Vec<u8>), usize>, tb: Option<&str>| {
        let it = m.iter().filter(|((t, _), _)| tb.is_none_or(|tb| tb == t));
        let (mut n, mut s, mut cp) = (0, 0, 0);
        for ((_, k), v) in it {
            n += 1;
            s += (k.len() + v) as u64;
            cp += cap(k.len(), *v);
        }
        (n, s, cp)
    };
    let check = |c: &mut Client,
                 kv: &BTreeMap<Vec<u8>, usize>,
                 hash: &BTreeMap<(String, Vec<u8>), usize>| {
        expect(&g(c, "/stat"), 200, &[], totals(sum(kv), hsum(hash, None)));
    };
    // Boundaries of the 1024 rounding: 1023, 1024, 1025 bytes of key + value.
    for (k, n) in [
        (&b"k1"[..], 2usize),
        (b"k2", 1021),
        (b"k3", 1022),
        (b"k4", 1023),
        (b"k5", 5000),
    ] {
        let r = post(&mut c, &format!("/put?key={}", pct(k)), &vec![b'v'; n]);
        expect(&r, 200, W1, "");
        kv.insert(k.to_vec(), n);
        check(&mut c, &kv, &hash);
    }
    // Overwrites with other sizes, up and down.
    for (k, n, ver) in [
        (&b"k1"[..], 3000usize, "2"),
        (b"k5", 1, "2"),
        (b"k3", 1022, "2"),
        (b"k1", 7, "3"),
    ] {
        let r = post(&mut c, &format!("/put?key={}", pct(k)), &vec![b'w'; n]);
        expect(&r, 200, &[("Version", ver), ("VerError", "false")], "");
        kv.insert(k.to_vec(), n);
        check(&mut c, &kv, &hash);
    }
    // A long key counts with its full length.
    let long = vec![b'L'; 2000];
    expect(
        &g(&mut c, &format!("/put?key={}&val=x", pct(&long))),
        200,
        W1,
        "",
    );
    kv.insert(long.clone(), 1);
    check(&mut c, &kv, &hash);
    // Deletes.
    expect(&g(&mut c, "/del?key=k2"), 200, W1, "");
    kv.remove(&b"k2"[..]);
    check(&mut c, &kv, &hash);
    // Refused writes change nothing: stale ver, 400s, 412, 409.
    expect(
        &g(&mut c, "/put?key=k1&val=zzzz&ver=1"),
        401,
        &[("Version", "3"), ("VerError", "true")],
        "",
    );
    expect(&g(&mut c, "/put?key=k1&val=zzzz&ttl=x"), 400, &[], "");
    expect(
        &g(&mut c, "/del?key=k1&ver=2"),
        401,
        &[("Version", "3"), ("VerError", "true")],
        "",
    );
    check(&mut c, &kv, &hash);
    // Hash tables: hset, overwrite, hincrby changing the length, hdel.
    for (tb, f, v) in [
        ("h1", "f1", "10"),
        ("h1", "f2", "abc"),
        ("h2", "f1", "9"),
        ("h1", "f1", "1000"),
    ] {
        let r = g(&mut c, &format!("/hset?tb={tb}&key={f}&val={v}"));
        assert_eq!(r.status, 200);
        hash.insert((tb.to_string(), f.as_bytes().to_vec()), v.len());
        check(&mut c, &kv, &hash);
    }
    let r = post(&mut c, "/hset?tb=h2&key=big", &vec![b'b'; 1500]);
    expect(&r, 200, W1, "");
    hash.insert(("h2".into(), b"big".to_vec()), 1500);
    check(&mut c, &kv, &hash);
    let r = g(&mut c, "/hincrby?tb=h2&key=f1&val=1");
    expect(&r, 200, &[("Version", "2"), ("VerError", "false")], "10");
    hash.insert(("h2".into(), b"f1".to_vec()), 2);
    let r = g(&mut c, "/hincrby?tb=h2&key=f1&val=-20");
    expect(&r, 200, &[("Version", "3"), ("VerError", "false")], "-10");
    hash.insert(("h2".into(), b"f1".to_vec()), 3);
    let r = g(&mut c, "/hincrby?tb=h3&key=n&val=123456");
    expect(&r, 200, W1, "123456");
    hash.insert(("h3".into(), b"n".to_vec()), 6);
    check(&mut c, &kv, &hash);
    expect(
        &g(&mut c, "/hincrby?tb=h1&key=f2&val=1"),
        409,
        &[("Version", "0"), ("VerError", "false")],
        "",
    );
    expect(
        &g(&mut c, "/hset?tb=h1&key=f2&val=xx&ver=9"),
        401,
        &[("Version", "1"), ("VerError", "true")],
        "",
    );
    check(&mut c, &kv, &hash);
    expect(&g(&mut c, "/hdel?tb=h1&key=f2"), 200, W1, "");
    hash.remove(&("h1".to_string(), b"f2".to_vec()));
    check(&mut c, &kv, &hash);
    // Sets and sorted sets: counts only, and never in the totals.
    for m in ["a", "b", "c"] {
        expect(&g(&mut c, &format!("/sadd?tb=s&key={m}")), 200, W1, "");
        expect(
            &g(&mut c, &format!("/zadd?tb=z&key={m}&score=1")),
            200,
            W1,
            "1",
        );
    }
    expect(
        &g(&mut c, "/sadd?tb=s&key=a"),
        200,
        &[("Version", "2"), ("VerError", "false")],
        "",
    );
    expect(
        &g(&mut c, "/zadd?tb=z&key=a&score=5"),
        200,
        &[("Version", "2"), ("VerError", "false")],
        "5",
    );
    expect(&g(&mut c, "/srem?tb=s&key=b"), 200, W1, "");
    expect(
        &g(&mut c, "/hset?tb=s&key=x&val=1"),
        412,
        &[("Version", "0"), ("VerError", "false")],
        "",
    );
    check(&mut c, &kv, &hash);
    // Per table, and /stat_all in name order.
    for tb in ["h1", "h2", "h3"] {
        let (n, s, cp) = hsum(&hash, Some(tb));
        let want =
            format!(r#"{{"table":"{tb}","type":"H","count":{n},"size":{s},"capacity":{cp}}}"#);
        expect(&g(&mut c, &format!("/stat?tb={tb}")), 200, &[], want);
    }
    expect(
        &g(&mut c, "/stat?tb=s"),
        200,
        &[],
        r#"{"table":"s","type":"S","count":2}"#,
    );
    expect(
        &g(&mut c, "/stat?tb=z"),
        200,
        &[],
        r#"{"table":"z","type":"Z","count":3}"#,
    );
    let mut want = format!("[{}", totals(sum(&kv), hsum(&hash, None)));
    for tb in ["h1", "h2", "h3"] {
        let (n, s, cp) = hsum(&hash, Some(tb));
        want.push_str(&format!(
            r#",{{"table":"{tb}","type":"H","count":{n},"size":{s},"capacity":{cp}}}"#
        ));
    }
    want.push_str(r#",{"table":"s","type":"S","count":2},{"table":"z","type":"Z","count":3}]"#);
    expect(&g(&mut c, "/stat_all"), 200, &[], &want);
    // Every connection (either worker) reads the same numbers.
    for _ in 0..8 {
        expect(&get(server.addr(), "/stat_all"), 200, &[], &want);
    }
    // Emptying everything brings the totals back to zero.
    for k in kv.keys() {
        let r = g(&mut c, &format!("/del?key={}", pct(k)));
        assert_eq!(r.status, 200);
    }
    for (tb, f) in hash.keys() {
        let r = g(&mut c, &format!("/hdel?tb={tb}&key={}", pct(f)));
        assert_eq!(r.status, 200);
    }
    for m in ["a", "c"] {
        assert_eq!(g(&mut c, &format!("/srem?tb=s&key={m}")).status, 200);
    }
    for m in ["a", "b", "c"] {
        assert_eq!(g(&mut c, &format!("/zrem?tb=z&key={m}")).status, 200);
    }
    expect(
        &g(&mut c, "/stat_all"),
        200,
        &[],
        format!("[{EMPTY_TOTALS}]"),
    );
}

#[test]
fn stat_all_orders_tables_bytewise() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    let names = ["a", "B", "A:b", "_x", "Z", "a.b", "a0", "9", ":"];
    for (i, tb) in names.iter().enumerate() {
        let r = match i % 3 {
            0 => g(&mut c, &format!("/sadd?tb={tb}&key=m")),
            1 => g(&mut c, &format!("/zadd?tb={tb}&key=m&score=0")),
            _ => g(&mut c, &format!("/hset?tb={tb}&key=m&val=v")),
        };
        assert_eq!(r.status, 200, "{tb}");
    }
    let mut sorted: Vec<(usize, &str)> = names.iter().copied().enumerate().collect();
    sorted.sort_by(|a, b| a.1.as_bytes().cmp(b.1.as_bytes()));
    let mut want = format!("[{}", totals((0, 0, 0), (3, 6, 3072)));
    for (i, tb) in sorted {
        want.push_str(&match i % 3 {
            0 => format!(r#",{{"table":"{tb}","type":"S","count":1}}"#),
            1 => format!(r#",{{"table":"{tb}","type":"Z","count":1}}"#),
            _ => format!(r#",{{"table":"{tb}","type":"H","count":1,"size":2,"capacity":1024}}"#),
        });
    }
    want.push(']');
    expect(&g(&mut c, "/stat_all"), 200, &[], want);
}

#[test]
fn expired_records_leave_the_counters() {
    // §2.6/§7: counters may include records that expired less than 60 s ago; after that they
    // are exact again (the background purge removes them).
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    expect(&g(&mut c, "/put?key=keep&val=1"), 200, W1, "");
    expect(&g(&mut c, "/put?key=tmp&val=12345&ttl=1"), 200, W1, "");
    expect(&g(&mut c, "/hset?tb=h&key=keep&val=1"), 200, W1, "");
    expect(
        &g(&mut c, "/hset?tb=h&key=tmp&val=12345&ttl=1"),
        200,
        W1,
        "",
    );
    expect(&g(&mut c, "/hset?tb=gone&key=tmp&val=1&ttl=1"), 200, W1, "");
    expect(&g(&mut c, "/sadd?tb=s&key=keep"), 200, W1, "");
    expect(&g(&mut c, "/sadd?tb=s&key=tmp&ttl=1"), 200, W1, "");
    expect(&g(&mut c, "/zadd?tb=z&key=tmp&score=1&ttl=1"), 200, W1, "1");
    // Long keys (stored by prefix and hash) expire the same way.
    let long = "L".repeat(500);
    for target in [
        format!("/put?key={long}&val=1&ttl=1"),
        format!("/hset?tb=h&key={long}&val=1&ttl=1"),
        format!("/sadd?tb=s&key={long}&ttl=1"),
        format!("/zadd?tb=z&key={long}&score=1&ttl=1"),
    ] {
        assert_eq!(g(&mut c, &target).status, 200, "{target}");
    }
    let want = format!(
        r#"[{},{{"table":"h","type":"H","count":1,"size":5,"capacity":1024}},{{"table":"s","type":"S","count":1}}]"#,
        totals((1, 5, 1024), (1, 5, 1024))
    );
    let exact = wait_until(Duration::from_secs(61), || {
        g(&mut c, "/stat_all").text() == want
    });
    assert!(exact, "{}", g(&mut c, "/stat_all").text());
    expect(&g(&mut c, "/stat?tb=gone"), 404, &[], "");
    expect(&g(&mut c, "/stat?tb=z"), 404, &[], "");
}

#[test]
fn thousands_of_expiries_are_absent_at_once_and_purged_in_batches() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    expect(&g(&mut c, "/put?key=keep&val=1"), 200, W1, "");
    // 2500 keys and 500 set members with ttl=1, pipelined.
    let mut wire = Vec::new();
    for i in 0..2500 {
        wire.extend_from_slice(
            format!("GET /put?key=e{i}&val=v&ttl=1 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
    }
    for i in 0..500 {
        wire.extend_from_slice(
            format!("GET /sadd?tb=s&key=e{i}&ttl=1 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
    }
    c.send_raw(&wire);
    for i in 0..3000 {
        let r = c.read_response().expect("an answer");
        assert_eq!(r.status, 200, "write {i}");
    }
    let r = g(&mut c, "/keys?offset=0&size=0&async=true");
    assert_eq!(r.header("TotalCount"), Some("2501"));
    // Absent for every reader as soon as they expire, purged or not.
    let gone = wait_until(Duration::from_secs(5), || {
        g(&mut c, "/keys?offset=0&size=0&async=true").header("TotalCount") == Some("1")
    });
    assert!(gone, "the expired keys are still listed");
    expect(&g(&mut c, "/get?key=e2499"), 404, &[("Version", "0")], "");
    expect(&g(&mut c, "/smembers?tb=s&offset=0&size=10"), 404, &[], "");
    // The counters follow within the 60 s the spec allows.
    let want = format!("[{}]", totals((1, 5, 1024), (0, 0, 0)));
    let exact = wait_until(Duration::from_secs(61), || {
        g(&mut c, "/stat_all").text() == want
    });
    assert!(exact, "{}", g(&mut c, "/stat_all").text());
    // The daemon kept answering quickly while it purged.
    let started = std::time::Instant::now();
    for _ in 0..20 {
        expect(&g(&mut c, "/get?key=keep"), 200, &[("Version", "1")], "1");
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}
