//! Durability against the real binary (`kv-api.md`, issue 3): acknowledged writes survive a
//! `kill -9` of the whole process tree; a worker killed while others write does not stall them
//! and loses nothing; a restart keeps data, versions and statistics exactly.

mod common;

use common::conn::{is_gone, Conn};
use common::{get, wait_until, Client, Response, Server};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Deterministic value of a key's `gen`-th write: varied lengths, binary bytes.
fn value_for(key: &str, gen: u32) -> Vec<u8> {
    let h = key.bytes().fold(gen.wrapping_mul(2_654_435_761), |h, b| {
        h.wrapping_mul(31).wrapping_add(b as u32)
    });
    let len = 1 + (h % 3000) as usize;
    let seed = format!("{key}/{gen}/");
    seed.bytes().chain([0u8, 0xff]).cycle().take(len).collect()
}

/// One acknowledged write: what to read back and the version it was given.
#[derive(Debug, Clone)]
struct Ack {
    /// The read that must answer it ("/get?key=..", "/hget?..", ...).
    read: String,
    /// Expected body of that read.
    body: Vec<u8>,
    ver: u32,
    /// A later write of the same record that was in flight when its process died: it may have
    /// been applied (committed, then killed before the reply), so this body and version are
    /// accepted too.
    maybe: Option<(Vec<u8>, u32)>,
}

/// Write number `i` of thread `t` (generation `gen`): the request and what a read returns.
fn write_op(t: usize, i: usize, gen: u32) -> (String, Vec<u8>, String, Vec<u8>) {
    let key = format!("t{t}k{i}");
    let val = value_for(&key, gen);
    match i % 4 {
        0 => (
            format!("/put?key={key}"),
            val.clone(),
            format!("/get?key={key}"),
            val,
        ),
        1 => (
            format!("/hset?tb=h{t}&key={key}"),
            val.clone(),
            format!("/hget?tb=h{t}&key={key}"),
            val,
        ),
        2 => (
            format!("/sadd?tb=s{t}&key={key}"),
            Vec::new(),
            format!("/sismember?tb=s{t}&key={key}"),
            Vec::new(),
        ),
        _ => {
            let score = (i as i64 * 7919 + gen as i64) % 1000 - 500;
            (
                format!("/zadd?tb=z{t}&key={key}&score={score}"),
                Vec::new(),
                format!("/zscore?tb=z{t}&key={key}"),
                score.to_string().into_bytes(),
            )
        }
    }
}

/// The write of `read`'s record whose answer never came: if an earlier write of that record
/// was acknowledged, either version may be found (the new one with version + 1).
fn in_flight(acks: &mut [Ack], read: &str, body: Vec<u8>) {
    if let Some(a) = acks.iter_mut().find(|a| a.read == read) {
        a.maybe = Some((body, a.ver + 1));
    }
}

/// Reads every acknowledged write back: status 200, its body and the version it was given.
fn check_acks(addr: SocketAddr, acks: &[Ack]) {
    let mut c = Client::connect(addr);
    for a in acks {
        let r = c.send("GET", &a.read, &[], b"");
        assert_eq!(r.status, 200, "{} lost", a.read);
        let got = (r.body.as_slice(), r.header("Version"));
        let ver = a.ver.to_string();
        let acked = (a.body.as_slice(), Some(ver.as_str()));
        let alt = a.maybe.as_ref().map(|(b, v)| (b.clone(), v.to_string()));
        let in_flight = alt.as_ref().map(|(b, v)| (b.as_slice(), Some(v.as_str())));
        assert!(
            got == acked || Some(got) == in_flight,
            "{}: got version {:?} and {} bytes, acknowledged version {} and {} bytes",
            a.read,
            got.1,
            got.0.len(),
            a.ver,
            a.body.len()
        );
    }
}

/// Writer `t`: distinct keys, each written once or twice (so versions 1 and 2 are both at
/// stake), stopping at the first I/O error, `stop`, or `max` writes. Returns the acks.
fn writer(
    addr: SocketAddr,
    t: usize,
    max: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
) -> Vec<Ack> {
    let mut acks: Vec<Ack> = Vec::new();
    // Two keep-alive connections per thread, used in turn.
    let mut conns = Vec::new();
    for _ in 0..2 {
        match Conn::connect(addr, Duration::from_secs(5)) {
            Ok(c) => conns.push(c),
            Err(_) => return acks,
        }
    }
    for n in 0..max {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Every third write rewrites a key written just before (version 2).
        let (i, gen) = if n % 3 == 2 { (n - 1, 2) } else { (n, 1) };
        let (target, body, read, want) = write_op(t, i, gen);
        let conn = &mut conns[n % 2];
        match conn.send("POST", &target, &body) {
            Ok(r) => {
                assert_eq!(r.status, 200, "{target}: {:?}", r.headers);
                let ver: u32 = r
                    .header("Version")
                    .and_then(|v| v.parse().ok())
                    .expect("a Version header");
                // A key's second write supersedes its first.
                acks.retain(|a| a.read != read);
                acks.push(Ack {
                    read,
                    body: want,
                    ver,
                    maybe: None,
                });
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                assert!(is_gone(&e), "{target}: stalled: {e}");
                in_flight(&mut acks, &read, want);
                break;
            }
        }
    }
    acks
}

fn durable_through_kill_of_the_tree(overrides: &[(&str, &str)]) {
    let mut server = Server::start(overrides);
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || writer(addr, t, 20_000, stop, acked))
        })
        .collect();
    // Let them write a while, then kill -9 master and workers in the middle of the traffic.
    let busy = wait_until(Duration::from_secs(20), || {
        acked.load(Ordering::Relaxed) >= 1000
    });
    assert!(
        busy,
        "only {} writes in 20 s",
        acked.load(Ordering::Relaxed)
    );
    server.kill_all();
    stop.store(true, Ordering::Relaxed);
    let acks: Vec<Ack> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("writer thread"))
        .collect();
    assert!(acks.len() >= 600, "{} acks", acks.len());
    assert!(acks.iter().any(|a| a.ver == 2) && acks.iter().any(|a| a.ver == 1));
    server.restart();
    check_acks(addr, &acks);
    // The restarted daemon takes writes again, continuing the versions.
    let a = acks.iter().find(|a| a.read.starts_with("/get?")).unwrap();
    let key = &a.read["/get?key=".len()..];
    let r = get(addr, &format!("/put?key={key}&val=after"));
    assert_eq!(r.status, 200);
    let next = (a.ver + 1).to_string();
    assert_eq!(r.header("Version"), Some(next.as_str()));
}

#[test]
fn acknowledged_writes_survive_kill_9_of_the_whole_tree() {
    durable_through_kill_of_the_tree(&[("worker_processes", "2")]);
}

#[test]
fn acknowledged_writes_survive_kill_9_with_sync_writes_off() {
    // ops.md: a process crash loses nothing whatever sync_writes says (the page cache has it).
    durable_through_kill_of_the_tree(&[("worker_processes", "2"), ("sync_writes", "off")]);
}

#[test]
fn killing_a_worker_does_not_stall_the_other_writers() {
    let server = Server::start(&[("worker_processes", "2")]);
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let limit = Duration::from_secs(2);
    // Writers that reconnect when their worker dies, and fail on any request slower than 2 s.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut acks: Vec<Ack> = Vec::new();
                let mut conn: Option<Conn> = None;
                let mut reconnects = 0;
                let mut slowest = Duration::ZERO;
                for n in 0..50_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (i, gen) = if n % 3 == 2 { (n - 1, 2) } else { (n, 1) };
                    let (target, body, read, want) = write_op(t, i, gen);
                    let started = Instant::now();
                    let c = match conn.as_mut() {
                        Some(c) => c,
                        None => {
                            let c = Conn::connect(addr, limit)
                                .unwrap_or_else(|e| panic!("writer {t}: connect: {e}"));
                            conn.insert(c)
                        }
                    };
                    match c.send("POST", &target, &body) {
                        Ok(r) => {
                            let took = started.elapsed();
                            slowest = slowest.max(took);
                            assert!(took < limit, "writer {t}: {target} took {took:?}");
                            assert_eq!(r.status, 200, "{target}");
                            let ver: u32 = r.header("Version").unwrap().parse().unwrap();
                            acks.retain(|a| a.read != read);
                            acks.push(Ack {
                                read,
                                body: want,
                                ver,
                                maybe: None,
                            });
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            assert!(is_gone(&e), "writer {t}: {target} stalled: {e}");
                            // Its worker was killed: the write may or may not have happened;
                            // another connection carries on.
                            in_flight(&mut acks, &read, want);
                            conn = None;
                            reconnects += 1;
                            assert!(reconnects < 100, "writer {t} reconnects forever");
                        }
                    }
                }
                (acks, reconnects, slowest)
            })
        })
        .collect();
    let mut killed = Vec::new();
    for round in 0..3 {
        // Traffic first, then kill -9 one worker in the middle of it.
        let target = acked.load(Ordering::Relaxed) + 400;
        let busy = wait_until(Duration::from_secs(10), || {
            acked.load(Ordering::Relaxed) >= target
        });
        assert!(
            busy,
            "round {round}: writers stalled at {}",
            acked.load(Ordering::Relaxed)
        );
        let workers = server.worker_pids();
        assert_eq!(workers.len(), 2, "{workers:?}");
        let victim = workers[round % 2];
        // SAFETY: kill(2) has no memory effects; the pid is a child of our master.
        assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
        killed.push(victim);
        // The master respawns it: two workers again, the victim not among them.
        let respawned = wait_until(Duration::from_secs(5), || {
            let now = server.worker_pids();
            now.len() == 2 && !now.contains(&victim)
        });
        assert!(
            respawned,
            "no respawn after killing {victim}: {:?}",
            server.worker_pids()
        );
    }
    // More traffic after the last respawn, then stop.
    let target = acked.load(Ordering::Relaxed) + 400;
    assert!(wait_until(Duration::from_secs(10), || {
        acked.load(Ordering::Relaxed) >= target
    }));
    stop.store(true, Ordering::Relaxed);
    let mut acks = Vec::new();
    for t in threads {
        let (a, _reconnects, slowest) = t.join().expect("writer thread");
        assert!(slowest < limit);
        acks.extend(a);
    }
    assert!(acks.len() >= 700, "{} acks", acks.len());
    let now = server.worker_pids();
    assert!(
        killed.iter().all(|k| !now.contains(k)),
        "{killed:?} vs {now:?}"
    );
    check_acks(addr, &acks);
    // The error log tells about the respawns.
    let log = server.error_log();
    for pid in &killed {
        assert!(
            log.contains(&pid.to_string()),
            "no line about {pid}:\n{log}"
        );
    }
}

/// Everything a client can see of the store, for before/after comparisons.
fn snapshot(addr: SocketAddr) -> Vec<(String, u16, Option<String>, Vec<u8>)> {
    let mut c = Client::connect(addr);
    let mut out = Vec::new();
    for target in [
        "/stat_all",
        "/stat",
        "/file_count",
        "/keys?offset=0&size=1000&noval=false&async=true",
        "/hkeys?tb=h&offset=0&size=1000&noval=false&async=true",
        "/hkeys?tb=h2&offset=0&size=1000&noval=false&async=true",
        "/smembers?tb=s&offset=0&size=1000&async=true",
        "/zrangebyrank?tb=z&offset=0&size=1000&noval=false&async=true",
        "/get?key=k0",
        "/get?key=k7",
        "/get?key=gone",
        "/hget?tb=h&key=n",
        "/zscore?tb=z&key=m3",
        "/sismember?tb=s&key=m1",
    ] {
        let r = c.send("GET", target, &[], b"");
        out.push((
            target.to_string(),
            r.status,
            r.header("Version").map(str::to_string),
            r.body,
        ));
    }
    out
}

#[test]
fn a_restart_keeps_data_versions_and_stats_exactly() {
    let mut server = Server::start(&[]);
    let addr = server.addr();
    let mut c = Client::connect(addr);
    for i in 0..20 {
        let k = format!("k{i}");
        for gen in 1..=(1 + i % 4) {
            let r = c.send("POST", &format!("/put?key={k}"), &[], &value_for(&k, gen));
            assert_eq!(r.status, 200);
        }
    }
    assert_eq!(c.send("GET", "/del?key=k3", &[], b"").status, 200);
    assert_eq!(c.send("GET", "/put?key=gone&val=x", &[], b"").status, 200);
    assert_eq!(c.send("GET", "/del?key=gone", &[], b"").status, 200);
    assert_eq!(
        c.send("GET", "/put?key=later&val=x&ttl=3600", &[], b"")
            .status,
        200
    );
    for i in 0..10 {
        let r = c.send(
            "POST",
            &format!("/hset?tb=h&key=f{i}"),
            &[],
            &value_for("h", i),
        );
        assert_eq!(r.status, 200);
        let r = c.send("GET", &format!("/sadd?tb=s&key=m{}", i % 4), &[], b"");
        assert_eq!(r.status, 200);
        let r = c.send(
            "GET",
            &format!("/zadd?tb=z&key=m{}&score={}&opt=1", i % 5, i as i64 - 5),
            &[],
            b"",
        );
        assert_eq!(r.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(
            c.send("GET", "/hincrby?tb=h&key=n&val=-7", &[], b"").status,
            200
        );
    }
    assert_eq!(
        c.send("GET", "/hset?tb=h2&key=x&val=1", &[], b"").status,
        200
    );
    assert_eq!(c.send("GET", "/hdel?tb=h2&key=x", &[], b"").status, 200);
    assert_eq!(
        c.send("GET", "/hset?tb=h2&key=y&val=22", &[], b"").status,
        200
    );
    drop(c);
    let before = snapshot(addr);
    // Sanity: the snapshot has content (so equality below means something).
    assert!(
        before[3].3.len() > 200,
        "{:?}",
        String::from_utf8_lossy(&before[3].3)
    );
    assert_eq!(before[8].2.as_deref(), Some("1"));
    assert_eq!(before[9].2.as_deref(), Some("4"));
    // A clean stop and start.
    let status = server.stop();
    assert!(status.success(), "{status}");
    server.restart();
    assert_eq!(snapshot(addr), before);
    // kill -9 of everything and a start.
    server.kill_all();
    server.restart();
    assert_eq!(snapshot(addr), before);
    // Versions continue from where they were.
    let r = get(addr, "/put?key=k7&val=next");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Version"), Some("5"));
    let r = get(addr, "/hincrby?tb=h&key=n&val=1");
    assert_eq!((r.status, r.text()), (200, "-20".to_string()));
    assert_eq!(r.header("Version"), Some("4"));
}

/// Sends `requests` pipelined in one write and reads their answers in order.
fn pipeline(addr: SocketAddr, requests: &[(&str, &str, &[u8])]) -> Vec<Response> {
    let mut c = Client::connect(addr);
    let mut wire = Vec::new();
    for (method, target, body) in requests {
        wire.extend_from_slice(
            format!(
                "{method} {target} HTTP/1.1\r\nHost: d\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        wire.extend_from_slice(body);
    }
    c.send_raw(&wire);
    requests
        .iter()
        .map(|(_, t, _)| {
            c.read_response()
                .unwrap_or_else(|| panic!("no answer to {t}"))
        })
        .collect()
}

#[test]
fn refused_writes_do_not_undo_the_others_of_their_pass() {
    // Pipelined requests are served in one loop pass and one write transaction: a write that
    // is refused (401, 404, 409, 412, 507) must not take the pass's other writes with it, and
    // reads in the pass see the writes before them.
    let mut server = Server::start(&[("map_size", "1m"), ("worker_processes", "1")]);
    let addr = server.addr();
    let mut c = Client::connect(addr);
    assert_eq!(c.send("GET", "/sadd?tb=s&key=m", &[], b"").status, 200);
    assert_eq!(
        c.send("GET", "/hset?tb=h&key=t&val=text", &[], b"").status,
        200
    );
    let big = vec![b'x'; 1100 << 10];
    let answers = pipeline(
        addr,
        &[
            ("GET", "/put?key=a&val=1", b""),
            ("GET", "/get?key=a", b""),
            ("GET", "/put?key=a&val=2&ver=1", b""),
            ("GET", "/get?key=a", b""),
            ("GET", "/hset?tb=s&key=f&val=1", b""),
            ("GET", "/put?key=b&val=1&ver=4", b""),
            ("GET", "/hincrby?tb=h&key=t&val=1", b""),
            ("GET", "/del?key=nothere", b""),
            ("POST", "/put?key=huge", &big),
            ("GET", "/put?key=c&val=3", b""),
            ("GET", "/sadd?tb=s&key=n", b""),
            ("GET", "/del?key=a", b""),
            ("GET", "/exist?key=a", b""),
            ("GET", "/put?key=a&val=again", b""),
        ],
    );
    let got: Vec<(u16, Option<&str>, String)> = answers
        .iter()
        .map(|r| (r.status, r.header("Version"), r.text()))
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        got,
        vec![
            (200, Some("1"), s("")),
            (200, Some("1"), s("1")),
            (200, Some("2"), s("")),
            (200, Some("2"), s("2")),
            (412, Some("0"), s("")),
            (401, Some("0"), s("")),
            (409, Some("0"), s("")),
            (404, Some("0"), s("")),
            (507, None, s("")),
            (200, Some("1"), s("")),
            (200, Some("1"), s("")),
            (200, Some("2"), s("")),
            (404, Some("0"), s("")),
            (200, Some("1"), s("")),
        ]
    );
    // All of it is durable: kill -9 and look again.
    drop(c);
    server.kill_all();
    server.restart();
    let mut c = Client::connect(addr);
    for (target, status, ver, body) in [
        ("/get?key=a", 200, Some("1"), "again"),
        ("/get?key=c", 200, Some("1"), "3"),
        ("/get?key=b", 404, Some("0"), ""),
        ("/get?key=huge", 404, Some("0"), ""),
        ("/sismember?tb=s&key=n", 200, Some("1"), ""),
        ("/hget?tb=h&key=t", 200, Some("1"), "text"),
        ("/hget?tb=s&key=f", 412, Some("0"), ""),
    ] {
        let r = c.send("GET", target, &[], b"");
        assert_eq!(
            (r.status, r.header("Version"), r.text().as_str()),
            (status, ver, body),
            "{target}"
        );
    }
}
