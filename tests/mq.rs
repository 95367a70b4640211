//! mq mode against the real binary (`mq-api.md`): ordering, ack and redelivery, lock/max/purge,
//! every error code, long polling, push, worker RPC, the status JSON, and a crash test.

mod common;

use common::{get, request, wait_until, Client, Response, Server};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// An mq-mode daemon where one `/timeout` minute lasts one second.
fn mq(extra: &[(&str, &str)]) -> Server {
    let mut conf = vec![("mode", "mq"), ("mq_timeout_unit", "1s")];
    conf.extend_from_slice(extra);
    Server::start(&conf)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn put(addr: SocketAddr, queue: &str, item: &str, priori: u8) -> u16 {
    get(
        addr,
        &format!("/put?queue={queue}&item={item}&priori={priori}"),
    )
    .status
}

fn take(addr: SocketAddr, queue: &str) -> Response {
    get(addr, &format!("/get?queue={queue}&worker=w1"))
}

/// A gauge of `/metrics` (parked requests by kind).
fn gauge(addr: SocketAddr, name: &str) -> u64 {
    let m = get(addr, "/metrics").text();
    m.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{m}"))
}

fn wait_parked(addr: SocketAddr, name: &str, n: u64) {
    assert!(
        wait_until(Duration::from_secs(5), || gauge(addr, name) == n),
        "{name} never reached {n}"
    );
}

/// A 400 carries a one-line reason.
fn assert_400(r: &Response, what: &str) {
    assert_eq!(r.status, 400, "{what}: {}", r.text());
    let t = r.text();
    assert!(
        !t.is_empty() && t.ends_with('\n') && t.trim_end().lines().count() == 1,
        "{what}: reason {t:?}"
    );
}

/// Starts a request on its own connection in a thread; join it for the response.
fn spawn_request(
    addr: SocketAddr,
    method: &'static str,
    target: String,
    body: Vec<u8>,
) -> thread::JoinHandle<(Response, Instant)> {
    thread::spawn(move || {
        let mut c = Client::connect(addr);
        let r = c.send(method, &target, &[], &body);
        (r, Instant::now())
    })
}

#[test]
fn priorities_first_then_fifo_binary_safe() {
    let server = mq(&[]);
    let a = server.addr();
    for (item, p) in [
        ("a0", 0),
        ("b1", 1),
        ("c2", 2),
        ("d0", 0),
        ("e2", 2),
        ("f1", 1),
    ] {
        assert_eq!(put(a, "jobs", item, p), 200);
    }
    let order: Vec<String> = (0..6).map(|_| take(a, "jobs").text()).collect();
    assert_eq!(order, ["c2", "e2", "b1", "f1", "a0", "d0"]);
    let r = take(a, "jobs");
    assert_eq!((r.status, r.body.len()), (404, 0));

    // A body wins over item, whatever the method; bytes come back as they went in.
    let bin: Vec<u8> = (0..=255u8).chain([0, 0xff, b'\r', b'\n']).collect();
    let r = request(a, "POST", "/put?queue=bin&item=ignored", &bin);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 0);
    let r = request(a, "PUT", "/put?queue=bin", b"second");
    assert_eq!(r.status, 200);
    assert_eq!(put(a, "bin", "a+b%26c", 0), 200);
    let r = take(a, "bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.header("Ack-Token"), None);
    assert_eq!(r.body, bin);
    assert_eq!(take(a, "bin").body, b"second");
    assert_eq!(take(a, "bin").body, b"a b&c", "item is form-decoded");
}

#[test]
fn ack_and_redelivery_after_the_timeout() {
    let server = mq(&[]);
    let a = server.addr();
    assert_eq!(put(a, "q", "x", 0), 200);
    assert_eq!(get(a, "/timeout?queue=q&minute=1").status, 200);
    let r = get(a, "/get?queue=q&worker=w&ack=false");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"x");
    assert_eq!(r.header("Ack-Token"), Some("0:1"));
    assert_eq!(r.header("Ack-Peer"), Some("0"));
    // Acked at once: it never comes back.
    assert_eq!(get(a, "/ack?queue=q&token=0:1&peer=0").status, 200);
    assert_eq!(get(a, "/ack?queue=q&token=0:1").status, 404);
    assert_eq!(get(a, "/ack?queue=q&token=2:99").status, 404);

    assert_eq!(put(a, "q", "y", 2), 200);
    let r = get(a, "/get?queue=q&worker=w&ack=FALSE");
    let handed = Instant::now();
    assert_eq!((r.status, r.header("Ack-Token")), (200, Some("2:1")));
    let stat = get(a, "/stat?queue=q").text();
    assert!(
        stat.contains(r#""ready":[0,0,0]"#) && stat.contains(r#""unacked":1,"timeout":1"#),
        "{stat}"
    );
    // Not acked: delivered again (same token) once a minute (1 s here) has passed.
    let mut again = None;
    assert!(wait_until(Duration::from_secs(5), || {
        let r = get(a, "/get?queue=q&worker=w&ack=false");
        let got = r.status == 200;
        again = Some(r);
        got
    }));
    let again = again.unwrap();
    assert!(
        handed.elapsed() >= Duration::from_millis(900),
        "redelivered too early"
    );
    assert_eq!(
        (again.body.as_slice(), again.header("Ack-Token")),
        (&b"y"[..], Some("2:1"))
    );
    // Redelivered with ack=true: removed for good, the old token is dead.
    assert!(wait_until(Duration::from_secs(5), || get(
        a,
        "/get?queue=q&worker=w"
    )
    .status
        == 200));
    assert_eq!(get(a, "/ack?queue=q&token=2:1").status, 404);
    let stat = get(a, "/stat?queue=q").text();
    assert!(stat.contains(r#""unacked":0"#), "{stat}");
}

#[test]
fn evget_gets_a_redelivery_when_its_deadline_passes() {
    let server = mq(&[]);
    let a = server.addr();
    put(a, "r", "m", 0);
    get(a, "/timeout?queue=r&minute=1");
    assert_eq!(get(a, "/get?queue=r&worker=w&ack=false").status, 200);
    let handed = Instant::now();
    let waiter = spawn_request(a, "GET", "/evget?queue=r&worker=w2".into(), vec![]);
    let (r, at) = waiter.join().unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"m"[..]));
    let waited = at.duration_since(handed);
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(2000),
        "redelivered after {waited:?}"
    );
}

#[test]
fn lock_max_and_purge() {
    let server = mq(&[]);
    let a = server.addr();
    assert_eq!(
        get(a, "/lock?queue=q&on=1").status,
        404,
        "lock cannot create"
    );
    assert_eq!(get(a, "/max?queue=q&num=1").status, 404);
    assert_eq!(get(a, "/purge?queue=q&priori=0").status, 404);
    assert_eq!(put(a, "q", "a", 0), 200);
    assert_eq!(get(a, "/lock?queue=q&on=1").status, 200);
    assert_eq!(put(a, "q", "b", 0), 404, "locked");
    assert_eq!(
        get(a, "/get?queue=q&worker=w&ack=false").status,
        200,
        "reads ignore the lock"
    );
    assert_eq!(get(a, "/lock?queue=q&on=0").status, 200);
    assert_eq!(get(a, "/max?queue=q&num=2").status, 200);
    assert_eq!(put(a, "q", "b", 0), 200);
    assert_eq!(
        put(a, "q", "c", 1),
        200,
        "the pending message does not count"
    );
    assert_eq!(put(a, "q", "d", 2), 404, "full");
    let stat = get(a, "/stat?queue=q").text();
    assert!(
        stat.contains(r#""ready":[1,1,0],"max":2,"lock":0"#),
        "{stat}"
    );
    // Purge priority 0 and 1: the pending message keeps the queue alive.
    assert_eq!(get(a, "/purge?queue=q&priori=0").status, 200);
    assert_eq!(get(a, "/purge?queue=q&priori=1").status, 200);
    let stat = get(a, "/stat?queue=q").text();
    assert!(
        stat.contains(r#""ready":[0,0,0],"max":2"#) && stat.contains(r#""unacked":1"#),
        "{stat}"
    );
    assert_eq!(get(a, "/ack?queue=q&token=0:1").status, 200);
    // Empty now: the next purge deletes the queue and its settings.
    assert_eq!(get(a, "/purge?queue=q&priori=2").status, 200);
    assert_eq!(get(a, "/stat?queue=q").status, 404);
    assert_eq!(get(a, "/stat_all").text(), "[]");
    assert_eq!(put(a, "q", "e", 0), 200);
    let stat = get(a, "/stat?queue=q").text();
    assert!(
        stat.contains(r#""max":0,"lock":0,"si":0,"ci":1"#),
        "settings reset: {stat}"
    );
    // Push queues: lock and max apply to pub; purge removes the whole queue.
    assert_eq!(get(a, "/pub?queue=n&item=1").status, 200);
    assert_eq!(get(a, "/max?queue=n&num=1").status, 200);
    assert_eq!(get(a, "/pub?queue=n&item=2").status, 404);
    assert_eq!(get(a, "/max?queue=n&num=0").status, 200);
    assert_eq!(get(a, "/lock?queue=n&on=1").status, 200);
    assert_eq!(get(a, "/pub?queue=n&item=2").status, 404);
    assert_eq!(get(a, "/purge?queue=n&priori=0").status, 200);
    assert_eq!(get(a, "/stat?queue=n").status, 404);
}

#[test]
fn worker_list_and_stat_json() {
    let server = mq(&[]);
    let a = server.addr();
    let before = unix_now();
    put(a, "test_queue", "x", 0);
    put(a, "test_queue", "y", 2);
    get(a, "/pub?queue=news&item=hello");
    get(a, "/pub?queue=news&item=world");
    let after = unix_now();
    assert_eq!(
        get(a, "/get?queue=test_queue&worker=host1.9999&ack=false").status,
        200
    );
    assert_eq!(
        get(a, "/get?queue=test_queue&worker=host1.9998").status,
        200
    );
    assert_eq!(
        get(a, "/get?queue=test_queue&worker=host1.9998").status,
        404
    );

    let r = get(a, "/stat?queue=test_queue");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let tm = (before..=after)
        .find(|tm| {
            r.text()
                == format!(
                    r#"{{"queue":"test_queue","type":0,"ready":[0,0,0],"max":0,"lock":0,"si":1,"ci":1,"tm":{tm},"unacked":1,"timeout":5}}"#
                )
        })
        .unwrap_or_else(|| panic!("unexpected /stat: {}", r.text()));
    let all = get(a, "/stat_all");
    assert_eq!(all.header("Content-Type"), Some("application/json"));
    let found = (before..=after).any(|ptm| {
        all.text()
            == format!(
                r#"[{{"queue":"news","type":1,"ready":[2,0,0],"max":0,"lock":0,"si":0,"ci":2,"tm":{ptm},"unacked":0,"timeout":5}},{{"queue":"test_queue","type":0,"ready":[0,0,0],"max":0,"lock":0,"si":1,"ci":1,"tm":{tm},"unacked":1,"timeout":5}}]"#
            )
    });
    assert!(found, "unexpected /stat_all: {}", all.text());

    let w = get(a, "/worker?queue=test_queue");
    assert_eq!(w.header("Content-Type"), Some("application/json"));
    let t = w.text();
    assert!(
        t.starts_with(r#"[{"w":"host1.9998","t":"#) && t.contains(r#"},{"w":"host1.9999","t":"#),
        "{t}"
    );
    assert_eq!(get(a, "/worker?queue=news").status, 409);
    assert_eq!(get(a, "/worker?queue=none").status, 404);
    let r = get(a, "/autost");
    assert_eq!((r.status, r.body.len()), (200, 0));
}

#[test]
fn every_error_code() {
    let server = mq(&[
        ("client_max_body_size", "64k"),
        ("max_do_task_body_size", "1k"),
        ("max_queue_size", "3"),
        ("mq_ttl_maximum", "60s"),
        ("max_timer_count", "1"),
        ("do_get_cache_size", "1"),
        ("do_post_cache_size", "1"),
        ("long_polling_timeout", "10s"),
        ("subscribe_timeout", "10s"),
        ("do_get_timeout", "10s"),
        ("do_post_timeout", "10s"),
    ]);
    let a = server.addr();
    put(a, "q", "x", 0);
    get(a, "/pub?queue=n&item=x");
    // 400: parameters (2.2, 2.3).
    for target in [
        "/put?item=x",
        "/put?queue=&item=x",
        "/put?queue=bad%20name&item=x",
        "/put?queue=q",
        "/put?queue=q&item=",
        "/put?queue=q&item=x&priori=3",
        "/put?queue=q&item=x&priori=-1",
        "/put?queue=q&item=%zz",
        "/get?queue=q",
        "/get?queue=q&worker=has%20space",
        "/get?queue=q&worker=a%22b",
        "/get?queue=q&worker=123456789012345678901234567890123",
        "/get?queue=q&worker=w&ack=no",
        "/ack?queue=q",
        "/ack?queue=q&token=a%2Fb",
        "/timeout?queue=q&minute=0",
        "/timeout?queue=q&minute=256",
        "/lock?queue=q&on=2",
        "/lock?queue=q&on=true",
        "/max?queue=q&num=5000001",
        "/purge?queue=q",
        "/purge?queue=q&priori=3",
        "/worker",
        "/stat",
        "/pub?queue=n&item=x&ttl=0",
        "/pub?queue=n&item=x&ttl=61",
        "/pub?queue=n&item=x&idx=9007199254740992",
        "/pub?queue=n",
        "/sub?queue=n",
        "/sub?queue=n&idx=x",
        "/evsub?queue=n&idx=%2B1",
        "/evget?queue=q",
    ] {
        assert_400(&get(a, target), target);
    }
    assert_400(
        &request(a, "POST", "/do_get?queue=t", b""),
        "do_get without args",
    );
    assert_400(&request(a, "POST", "/do_get", b"x"), "do_get without queue");
    assert_400(&request(a, "POST", "/do_post?token=", b""), "empty token");
    assert_400(
        &request(a, "POST", "/do_post?token=12a", b""),
        "token digits",
    );
    assert_400(
        &request(a, "POST", "/do_post?token=123456789012345678901", b""),
        "token length",
    );
    // 404: no queue, nothing to return, unknown token.
    for target in [
        "/get?queue=none&worker=w",
        "/ack?queue=none&token=0:1",
        "/timeout?queue=none&minute=1",
        "/lock?queue=none&on=1",
        "/max?queue=none&num=1",
        "/purge?queue=none&priori=0",
        "/worker?queue=none",
        "/stat?queue=none",
        "/sub?queue=none&idx=1",
        "/sub?queue=n&idx=2",
        "/ack?queue=q&token=0:7",
        "/nope",
    ] {
        let r = get(a, target);
        assert_eq!((r.status, r.body.len()), (404, 0), "{target}");
    }
    assert_eq!(
        request(a, "POST", "/do_post?token=99999999999999999999", b"r").status,
        404
    );
    assert_eq!(request(a, "POST", "/do_post?token=1", b"r").status, 404);
    // 405 with Allow.
    let r = request(a, "POST", "/get?queue=q&worker=w", b"");
    assert_eq!((r.status, r.header("Allow")), (405, Some("GET")));
    let r = get(a, "/do_get?queue=t");
    assert_eq!((r.status, r.header("Allow")), (405, Some("POST")));
    let r = request(a, "DELETE", "/put?queue=q&item=x", b"");
    assert_eq!((r.status, r.header("Allow")), (405, Some("GET, POST, PUT")));
    // 409: the other family of operations.
    for target in [
        "/get?queue=n&worker=w",
        "/evget?queue=n&worker=w",
        "/ack?queue=n&token=0:1",
        "/timeout?queue=n&minute=1",
        "/worker?queue=n",
        "/put?queue=n&item=x",
        "/pub?queue=q&item=x",
        "/sub?queue=q&idx=1",
        "/evsub?queue=q&idx=1",
    ] {
        assert_eq!(get(a, target).status, 409, "{target}");
    }
    // 403 with the window.
    let r = get(a, "/sub?queue=n&idx=3");
    assert_eq!((r.status, r.header("Index")), (403, Some("0-1")));
    let r = get(a, "/evsub?queue=n&idx=0");
    assert_eq!((r.status, r.header("Index")), (403, Some("0-1")));
    let r = get(a, "/evsub?queue=fresh&idx=2");
    assert_eq!((r.status, r.header("Index")), (403, Some("0-0")));
    // 413: bodies.
    assert_eq!(
        request(a, "POST", "/put?queue=q", &vec![b'x'; 65 * 1024]).status,
        413
    );
    assert_eq!(
        request(a, "POST", "/do_get?queue=t", &[b'x'; 1025]).status,
        413
    );
    assert_eq!(
        request(a, "POST", "/do_post?token=1", &[b'x'; 1025]).status,
        413
    );
    // 503: queue count (q, n, and one more), parked requests, RPC slots.
    put(a, "third", "x", 0);
    assert_eq!(put(a, "fourth", "x", 0), 503);
    assert_eq!(get(a, "/pub?queue=fourth&item=x").status, 503);
    let ev = spawn_request(a, "GET", "/evget?queue=q2&worker=w".into(), vec![]);
    wait_parked(a, "huststore_mq_parked_evget", 1);
    assert_eq!(get(a, "/evget?queue=q3&worker=w").status, 503);
    let es = spawn_request(a, "GET", "/evsub?queue=n&idx=2".into(), vec![]);
    wait_parked(a, "huststore_mq_parked_evsub", 1);
    assert_eq!(get(a, "/evsub?queue=n&idx=2").status, 503);
    let dg = spawn_request(a, "POST", "/do_get?queue=t".into(), b"args".to_vec());
    wait_parked(a, "huststore_mq_rpc_tasks", 1);
    assert_eq!(request(a, "POST", "/do_get?queue=t", b"more").status, 503);
    // The parked do_post claims the waiting task at once; a second one parks, a third is
    // one too many.
    let claim = request(a, "POST", "/do_post", b"");
    assert_eq!((claim.status, claim.header("Queue")), (200, Some("t")));
    let dp = spawn_request(a, "POST", "/do_post".into(), vec![]);
    wait_parked(a, "huststore_mq_rpc_workers", 1);
    assert_eq!(request(a, "POST", "/do_post", b"").status, 503);
    // Release everything (the evget needs a queue: q2 would exceed max_queue_size, so purge
    // `third` first).
    assert_eq!(get(a, "/purge?queue=third&priori=0").status, 200);
    assert_eq!(put(a, "q2", "go", 0), 200);
    assert_eq!(ev.join().unwrap().0.body, b"go");
    assert_eq!(get(a, "/pub?queue=n&item=y").status, 200);
    assert_eq!(es.join().unwrap().0.body, b"y");
    let token = claim.header("Token").unwrap().to_string();
    assert_eq!(
        request(a, "POST", &format!("/do_post?token={token}"), b"").status,
        200
    );
    let (r, _) = dg.join().unwrap();
    assert_eq!(
        (r.status, r.body.len()),
        (200, 0),
        "an empty result is a result"
    );
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    let caller = spawn_request(a, "POST", "/do_get?queue=t".into(), b"for dp".to_vec());
    let (r, _) = dp.join().unwrap();
    assert_eq!(r.body, b"for dp");
    let token = r.header("Token").unwrap().to_string();
    assert_eq!(
        request(a, "POST", &format!("/do_post?token={token}"), b"ok").status,
        200
    );
    assert_eq!(caller.join().unwrap().0.body, b"ok");
}

#[test]
fn storage_full_answers_507_and_writes_nothing() {
    let server = mq(&[("map_size", "1m")]);
    let a = server.addr();
    let chunk = vec![b'z'; 100 * 1024];
    let mut stored = 0;
    let mut full = None;
    for _ in 0..40 {
        let r = request(a, "POST", "/put?queue=big", &chunk);
        if r.status != 200 {
            full = Some(r.status);
            break;
        }
        stored += 1;
    }
    assert_eq!(full, Some(507), "after {stored} puts");
    assert!(stored > 0);
    let stat = get(a, "/stat?queue=big").text();
    assert!(
        stat.contains(&format!(r#""ready":[{stored},0,0]"#)),
        "{stat}"
    );
    // A refusal by the queue itself comes first.
    assert_eq!(get(a, "/lock?queue=big&on=1").status, 200);
    assert_eq!(request(a, "POST", "/put?queue=big", &chunk).status, 404);
    // Reads and removals keep working, and free room.
    assert_eq!(take(a, "big").body.len(), chunk.len());
    assert_eq!(get(a, "/purge?queue=big&priori=0").status, 200);
    assert_eq!(request(a, "POST", "/put?queue=small", b"fits").status, 200);
}

#[test]
fn evget_is_released_by_a_put_within_100_ms() {
    let server = mq(&[]);
    let a = server.addr();
    let waiter = spawn_request(
        a,
        "GET",
        "/evget?queue=jobs&worker=host1.9999".into(),
        vec![],
    );
    wait_parked(a, "huststore_mq_parked_evget", 1);
    let mut producer = Client::connect(a);
    let r = producer.send("GET", "/put?queue=jobs&item=job42", &[], b"");
    let put_done = Instant::now();
    assert_eq!(r.status, 200);
    let (r, at) = waiter.join().unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"job42"[..]));
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    let lag = at.saturating_duration_since(put_done);
    assert!(
        lag < Duration::from_millis(100),
        "woken {lag:?} after the put"
    );
    // The message went to the waiter only.
    assert_eq!(take(a, "jobs").status, 404);
    // Data already there: answered at once, with ack=false headers.
    put(a, "jobs", "now", 0);
    let r = get(a, "/evget?queue=jobs&worker=w&ack=false");
    assert_eq!((r.status, r.header("Ack-Token")), (200, Some("0:2")));
    // Two waiters, FIFO: the first parked gets the first message.
    let first = spawn_request(a, "GET", "/evget?queue=fifo&worker=a".into(), vec![]);
    wait_parked(a, "huststore_mq_parked_evget", 1);
    let second = spawn_request(a, "GET", "/evget?queue=fifo&worker=b".into(), vec![]);
    wait_parked(a, "huststore_mq_parked_evget", 2);
    put(a, "fifo", "one", 0);
    put(a, "fifo", "two", 0);
    assert_eq!(first.join().unwrap().0.body, b"one");
    assert_eq!(second.join().unwrap().0.body, b"two");
}

#[test]
fn evget_times_out_with_404_and_pipelined_requests_wait() {
    let server = mq(&[("long_polling_timeout", "1s")]);
    let a = server.addr();
    let mut c = Client::connect(a);
    let start = Instant::now();
    // Pipelined: a stat behind the parked evget is answered after it.
    c.send_raw(b"GET /evget?queue=idle&worker=w HTTP/1.1\r\nHost: x\r\n\r\nGET /stat_all HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.read_response().unwrap();
    let waited = start.elapsed();
    assert_eq!((r.status, r.body.len()), (404, 0));
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "timed out after {waited:?}"
    );
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "[]"));
}

#[test]
fn a_parked_client_that_leaves_gets_no_message() {
    let server = mq(&[]);
    let a = server.addr();
    {
        let mut c = Client::connect(a);
        c.send_raw(b"GET /evget?queue=gone&worker=w HTTP/1.1\r\nHost: x\r\n\r\n");
        wait_parked(a, "huststore_mq_parked_evget", 1);
    }
    // Closed: once the daemon has seen it, the waiter is forgotten.
    wait_parked(a, "huststore_mq_parked_evget", 0);
    assert_eq!(put(a, "gone", "kept", 0), 200);
    let r = take(a, "gone");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"kept"[..]));
    // Same for a subscriber and an RPC worker.
    {
        let mut c = Client::connect(a);
        c.send_raw(b"POST /do_post HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        wait_parked(a, "huststore_mq_rpc_workers", 1);
    }
    wait_parked(a, "huststore_mq_rpc_workers", 0);
    let caller = spawn_request(a, "POST", "/do_get?queue=t".into(), b"a".to_vec());
    wait_parked(a, "huststore_mq_rpc_tasks", 1);
    let status = get(a, "/do_get_status").text();
    assert_eq!(
        status,
        r#"{"unassigned_tasks":1,"assigned_tasks":0,"free_tasks":1023,"total":1024}"#
    );
    let claim = request(a, "POST", "/do_post", b"");
    let token = claim.header("Token").unwrap().to_string();
    assert_eq!(
        request(a, "POST", &format!("/do_post?token={token}"), b"r").status,
        200
    );
    assert_eq!(caller.join().unwrap().0.body, b"r");
}

#[test]
fn pub_sub_evsub_across_the_window() {
    let server = mq(&[]);
    let a = server.addr();
    for (i, item) in ["one", "two", "three"].iter().enumerate() {
        let r = get(a, &format!("/pub?queue=news&item={item}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Index"), Some(format!("0-{}", i + 1).as_str()));
    }
    let r = get(a, "/sub?queue=news&idx=2");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"two"[..]));
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(get(a, "/sub?queue=news&idx=4").status, 404);
    let r = get(a, "/sub?queue=news&idx=5");
    assert_eq!((r.status, r.header("Index")), (403, Some("0-3")));
    // In the window: evsub answers at once.
    assert_eq!(get(a, "/evsub?queue=news&idx=1").body, b"one");
    // Caught up: two subscribers wait on idx 4; one pub wakes both.
    let s1 = spawn_request(a, "GET", "/evsub?queue=news&idx=4".into(), vec![]);
    let s2 = spawn_request(a, "GET", "/evsub?queue=news&idx=4".into(), vec![]);
    wait_parked(a, "huststore_mq_parked_evsub", 2);
    let r = request(a, "POST", "/pub?queue=news", b"four");
    assert_eq!(r.header("Index"), Some("0-4"));
    for s in [s1, s2] {
        let (r, _) = s.join().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"four"[..]));
    }
    // A forced index moves the window past a waiting subscriber: 403 with the new window.
    let s3 = spawn_request(a, "GET", "/evsub?queue=news&idx=5".into(), vec![]);
    wait_parked(a, "huststore_mq_parked_evsub", 1);
    let r = get(a, "/pub?queue=news&item=ten&idx=10");
    assert_eq!(r.header("Index"), Some("9-10"));
    let (r, _) = s3.join().unwrap();
    assert_eq!((r.status, r.header("Index")), (403, Some("9-10")));
    assert_eq!(get(a, "/sub?queue=news&idx=10").body, b"ten");
    // ttl: a message with a short ttl drops off the head of the window.
    let r = get(a, "/pub?queue=short&item=brief&ttl=1");
    assert_eq!(r.header("Index"), Some("0-1"));
    assert!(wait_until(Duration::from_secs(5), || {
        get(a, "/sub?queue=short&idx=1").status == 403
    }));
    let stat = get(a, "/stat?queue=short").text();
    assert!(
        stat.contains(r#""ready":[0,0,0],"max":0,"lock":0,"si":1,"ci":1"#),
        "{stat}"
    );
    // An evsub on a queue that does not exist yet waits for index 1.
    let s4 = spawn_request(a, "GET", "/evsub?queue=later&idx=1".into(), vec![]);
    wait_parked(a, "huststore_mq_parked_evsub", 1);
    get(a, "/pub?queue=later&item=first");
    assert_eq!(s4.join().unwrap().0.body, b"first");
}

#[test]
fn evsub_times_out_with_404() {
    let server = mq(&[("subscribe_timeout", "1s")]);
    let a = server.addr();
    let start = Instant::now();
    let r = get(a, "/evsub?queue=quiet&idx=1");
    assert_eq!((r.status, r.header("Index")), (404, None));
    assert!(start.elapsed() >= Duration::from_millis(900));
}

#[test]
fn rpc_round_trip_and_timeouts() {
    let server = mq(&[("do_get_timeout", "1s"), ("do_post_timeout", "1s")]);
    let a = server.addr();
    // A worker parked first, then a call.
    let worker = spawn_request(a, "POST", "/do_post".into(), vec![]);
    wait_parked(a, "huststore_mq_rpc_workers", 1);
    assert_eq!(
        get(a, "/do_post_status").text(),
        r#"{"cache_workers":1,"free_workers":1023,"total":1024}"#
    );
    let caller = spawn_request(a, "POST", "/do_get?queue=fibonacci".into(), b"10".to_vec());
    let (task, _) = worker.join().unwrap();
    assert_eq!(task.status, 200);
    assert_eq!(task.header("Queue"), Some("fibonacci"));
    assert_eq!(task.header("Content-Type"), Some("text/plain"));
    assert_eq!(task.body, b"10");
    let token = task.header("Token").unwrap().to_string();
    assert!(
        token.len() <= 20 && token.bytes().all(|b| b.is_ascii_digit()),
        "{token}"
    );
    assert_eq!(
        get(a, "/do_get_status").text(),
        r#"{"unassigned_tasks":0,"assigned_tasks":1,"free_tasks":1023,"total":1024}"#
    );
    let r = request(a, "POST", &format!("/do_post?token={token}"), b"55");
    assert_eq!((r.status, r.body.len()), (200, 0));
    let (r, _) = caller.join().unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"55"[..]));
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(
        request(a, "POST", &format!("/do_post?token={token}"), b"55").status,
        404
    );

    // Nobody claims: 408 after do_get_timeout.
    let start = Instant::now();
    let r = request(a, "POST", "/do_get?queue=lonely", b"x");
    assert_eq!(r.status, 408);
    assert!(start.elapsed() >= Duration::from_millis(900));
    // Claimed but never answered: 408 one timeout after the claim, and the token dies.
    let caller = spawn_request(a, "POST", "/do_get?queue=slow".into(), b"x".to_vec());
    wait_parked(a, "huststore_mq_rpc_tasks", 1);
    let claim = request(a, "POST", "/do_post", b"");
    let claimed_at = Instant::now();
    assert_eq!(claim.status, 200);
    let (r, at) = caller.join().unwrap();
    assert_eq!(r.status, 408);
    assert!(at.duration_since(claimed_at) >= Duration::from_millis(900));
    let token = claim.header("Token").unwrap();
    assert_eq!(
        request(a, "POST", &format!("/do_post?token={token}"), b"late").status,
        404
    );
    // No task: the claim times out with 408.
    let start = Instant::now();
    assert_eq!(request(a, "POST", "/do_post", b"").status, 408);
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert_eq!(
        get(a, "/do_get_status").text(),
        r#"{"unassigned_tasks":0,"assigned_tasks":0,"free_tasks":1024,"total":1024}"#
    );
}

#[test]
fn a_reload_answers_parked_clients_at_once() {
    let server = mq(&[]);
    let a = server.addr();
    let waiter = spawn_request(a, "GET", "/evget?queue=r&worker=w".into(), vec![]);
    let claim = spawn_request(a, "POST", "/do_post".into(), vec![]);
    wait_parked(a, "huststore_mq_parked_evget", 1);
    wait_parked(a, "huststore_mq_rpc_workers", 1);
    let old = server.worker_pids();
    let start = Instant::now();
    server.signal(libc::SIGHUP);
    assert_eq!(waiter.join().unwrap().0.status, 404);
    assert_eq!(claim.join().unwrap().0.status, 408);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(10), || {
        let now = server.worker_pids();
        now.len() == 1 && now != old
    }));
    assert!(wait_until(Duration::from_secs(5), || put(
        a, "r", "after", 0
    ) == 200));
    assert_eq!(take(a, "r").body, b"after");
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    let mut server = mq(&[]);
    let a = server.addr();
    const N: usize = 60;
    let all: BTreeSet<String> = (0..N).map(|i| format!("m{i:02}")).collect();
    for (i, m) in all.iter().enumerate() {
        assert_eq!(put(a, "crash", m, (i % 3) as u8), 200);
    }
    assert_eq!(get(a, "/timeout?queue=crash&minute=4").status, 200);
    let mut taken = BTreeSet::new();
    let mut pending = BTreeSet::new();
    for i in 0..15 {
        let ack = if i % 3 == 0 { "true" } else { "false" };
        let r = get(a, &format!("/get?queue=crash&worker=w&ack={ack}"));
        assert_eq!(r.status, 200);
        if ack == "true" {
            taken.insert(r.text());
        } else {
            pending.insert(r.text());
        }
    }
    let handed = Instant::now();
    assert_eq!((taken.len(), pending.len()), (5, 10));
    server.kill_all();
    server.restart();
    let stat = get(a, "/stat?queue=crash").text();
    assert!(stat.contains(r#""unacked":10,"timeout":4"#), "{stat}");
    // Every ready message is there exactly once; the pending ones are not handed out again
    // before their deadline.
    let mut after = Vec::new();
    loop {
        let r = take(a, "crash");
        if r.status != 200 {
            assert_eq!(r.status, 404);
            break;
        }
        after.push(r.text());
        assert!(after.len() <= N, "more messages than were put");
    }
    assert!(
        handed.elapsed() < Duration::from_millis(3900),
        "too slow to check the deadline"
    );
    assert_eq!(after.len(), N - 15);
    // Pending deliveries come back after their deadline (4 s after they were handed out).
    assert!(wait_until(Duration::from_secs(15), || {
        let r = take(a, "crash");
        if r.status == 200 {
            after.push(r.text());
        }
        after.len() == N - 5
    }));
    assert!(handed.elapsed() >= Duration::from_millis(3900));
    let back: BTreeSet<String> = after.iter().skip(N - 15).cloned().collect();
    assert_eq!(back, pending);
    let seen: BTreeSet<String> = after.iter().cloned().collect();
    assert_eq!(seen.len(), after.len(), "a message came twice");
    let everything: BTreeSet<String> = seen.union(&taken).cloned().collect();
    assert_eq!(everything, all);
    assert_eq!(take(a, "crash").status, 404);
    let stat = get(a, "/stat?queue=crash").text();
    assert!(
        stat.contains(r#""ready":[0,0,0]"#) && stat.contains(r#""unacked":0"#),
        "{stat}"
    );
}

#[test]
fn a_respawned_worker_keeps_pending_deliveries_and_their_deadlines() {
    let server = mq(&[]);
    let a = server.addr();
    for m in ["p", "r"] {
        assert_eq!(put(a, "w9", m, 0), 200);
    }
    assert_eq!(get(a, "/timeout?queue=w9&minute=3").status, 200);
    let r = get(a, "/get?queue=w9&worker=w&ack=false");
    let handed = Instant::now();
    assert_eq!(
        (r.body.as_slice(), r.header("Ack-Token")),
        (&b"p"[..], Some("0:1"))
    );
    let old = server.worker_pids();
    assert_eq!(old.len(), 1);
    // SAFETY: kill(2) has no memory effects.
    assert_eq!(unsafe { libc::kill(old[0], libc::SIGKILL) }, 0);
    assert!(wait_until(Duration::from_secs(10), || {
        let now = server.worker_pids();
        now.len() == 1
            && now != old
            && common::try_request(a, "GET", "/status.html", b"", Duration::from_secs(1))
                .is_ok_and(|r| r.status == 200)
    }));
    // Still pending (not handed out again), the ready one still ready.
    let stat = get(a, "/stat?queue=w9").text();
    assert!(
        stat.contains(r#""ready":[1,0,0]"#) && stat.contains(r#""unacked":1,"timeout":3"#),
        "{stat}"
    );
    assert_eq!(take(a, "w9").body, b"r");
    if handed.elapsed() < Duration::from_millis(2900) {
        assert_eq!(take(a, "w9").status, 404, "redelivered before its deadline");
    }
    // Back at its deadline, with the same token; then acked for good.
    let mut again = None;
    assert!(wait_until(Duration::from_secs(10), || {
        let r = get(a, "/get?queue=w9&worker=w&ack=false");
        let ok = r.status == 200;
        again = Some(r);
        ok
    }));
    assert!(handed.elapsed() >= Duration::from_millis(2900));
    assert_eq!(again.unwrap().header("Ack-Token"), Some("0:1"));
    assert_eq!(get(a, "/ack?queue=w9&token=0:1").status, 200);
    assert_eq!(take(a, "w9").status, 404);
}
