//! Whole-tree kill and restart loops through the real binary (issue 12), in kv and in mq mode:
//! clients write under load, the whole process tree (master and every worker) is killed with
//! SIGKILL at once in the middle of the traffic and started again at once on the same data
//! folder (a restart that fails is a failure: the master retries `bind()` for the port a
//! killed worker's last thread may still hold), round after round. After each restart, and
//! at the end after a clean stop and start, a verifier compares the store with a model of
//! what was acknowledged; each client's request whose answer never came (one at most, its
//! connection died with the tree) may or may not have been applied, and the verifier learns
//! which from what it reads.
//!
//! - kv: each client owns its records (keys, hash fields, `hincrby` counters), so the model
//!   predicts every answer exactly: puts, `ver=` puts and deletes, their versions (which
//!   therefore never go backwards, across restarts too), and the counters' totals. After a
//!   restart every record is its acknowledged value and version or what its in-flight write
//!   would make it, and the tables and the key count hold nothing else (no write that was
//!   never sent, or answered but not acknowledged, appears).
//! - mq (`mq-api.md` §2.7-2.8): a put answered `200` survives; a removal answered `200`
//!   (`get` with `ack=true`, or `/ack`) never comes back; a delivery with `ack=false` that
//!   was not acknowledged before the kill is still pending after it and is delivered again
//!   after its deadline (at least once); a `get ack=true` whose answer was lost may have
//!   taken its message (at most once). So, after each restart, what is queued is between the
//!   acknowledged puts less the removals seen and those that may have happened unseen, and the
//!   acknowledged and in-flight puts less the removals seen; at the end, once the queues are
//!   drained, every acknowledged put was finally delivered (removed with a `200`) exactly
//!   once, but for as many as there were unanswered removals, and nothing was delivered that
//!   was never put.
//!
//! Bounded: `HUSTSTORE_STORM_SECS` (default 10) seconds of traffic in all, in at least 5
//! rounds of at most about 2 s.

mod common;

use common::conn::{is_gone, Conn};
use common::{wait_until, Client, Server};
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;
/// Each request's connect, read and write timeout: longer is a stall, not a kill.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The number of kill rounds and each round's traffic time.
fn rounds() -> (usize, Duration) {
    let total = common::storm_length(10);
    let n = (total.as_secs() / 2).max(5) as usize;
    (n, total / n as u32)
}

/// A small deterministic generator (xorshift64*), seeded per client.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// A client of the storm: one request at a time on one connection.
trait Writer: Send + 'static {
    /// Sends the next request and checks its answer against the model; `Ok(true)` for an
    /// acknowledged write. The request is noted as in flight before it is sent and stays so
    /// when its answer never comes (`Err`).
    fn step(&mut self, conn: &mut Conn) -> io::Result<bool>;
}

/// Requests of `w` until `stop`, the connection's death (the tree was killed) or a bound.
fn drive<W: Writer>(w: &mut W, addr: SocketAddr, stop: &AtomicBool, acked: &AtomicUsize) {
    let mut conn = Conn::connect(addr, TIMEOUT).expect("connect to the restarted daemon");
    for _ in 0..1_000_000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match w.step(&mut conn) {
            Ok(true) => {
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(e) => {
                assert!(is_gone(&e), "a request stalled: {e}");
                return;
            }
        }
    }
}

/// The rounds: the writers' traffic, `kill -9` of the whole tree in the middle of it, a
/// restart at once, and `verify(addr, writers, round)`, which checks the store and resolves
/// what was in flight. Then a clean stop and start, and `verify` once more.
fn kill_loop<W: Writer>(
    server: &mut Server,
    mut writers: Vec<W>,
    verify: impl Fn(SocketAddr, &mut [W], &str),
) -> Vec<W> {
    let (rounds, length) = rounds();
    let addr = server.addr();
    let mut total = 0;
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = writers
            .drain(..)
            .map(|mut w| {
                let (stop, acked) = (stop.clone(), acked.clone());
                std::thread::spawn(move || {
                    drive(&mut w, addr, &stop, &acked);
                    w
                })
            })
            .collect();
        // Traffic for the round's time, and enough of it that the kill falls among writes.
        let start = Instant::now();
        let busy = wait_until(length + Duration::from_secs(20), || {
            start.elapsed() >= length && acked.load(Ordering::Relaxed) >= 50
        });
        server.kill_all();
        stop.store(true, Ordering::Relaxed);
        writers = threads
            .into_iter()
            .map(|t| t.join().expect("a writer failed (see its panic above)"))
            .collect();
        let n = acked.load(Ordering::Relaxed);
        assert!(busy, "round {round}: only {n} writes acknowledged");
        total += n;
        // Must come up the first time: no retry here.
        server.restart();
        verify(addr, &mut writers, &format!("after kill {}", round + 1));
    }
    // A restart that found the port still held waited for it (the master's bind retry).
    let retries = server.error_log().matches("trying again in 500 ms").count();
    println!("{rounds} kills of the tree, {total} writes acknowledged, {retries} bind retries");
    let status = server.stop();
    assert!(status.success(), "{status}");
    server.restart();
    verify(addr, &mut writers, "after the clean restart");
    writers
}

// ---- kv mode ----------------------------------------------------------------------------

/// Records of one kv client: keys, hash fields (table `h<c>`), counters (table `n<c>`).
const KEYS: usize = 12;
const FIELDS: usize = 8;
const COUNTERS: usize = 4;
const RECORDS: usize = KEYS + FIELDS + COUNTERS;

/// A record as the store holds it.
#[derive(Clone, PartialEq)]
struct Rec {
    body: Vec<u8>,
    ver: u32,
}

fn describe(r: &Option<Rec>) -> String {
    match r {
        None => "absent".into(),
        Some(r) => format!(
            "version {} with {} bytes {:?}",
            r.ver,
            r.body.len(),
            String::from_utf8_lossy(&r.body[..r.body.len().min(24)])
        ),
    }
}

struct KvWriter {
    c: usize,
    rng: Rng,
    seq: u64,
    /// The model: each record after its last acknowledged write.
    recs: Vec<Option<Rec>>,
    /// The write whose answer never came: its record and what it makes of it if applied.
    in_flight: Option<(usize, Option<Rec>)>,
}

impl KvWriter {
    fn new(c: usize) -> KvWriter {
        KvWriter {
            c,
            rng: Rng::new(c as u64 + 1),
            seq: 0,
            recs: vec![None; RECORDS],
            in_flight: None,
        }
    }

    /// The path and query naming record `r` (without the operation).
    fn name(&self, r: usize) -> String {
        let c = self.c;
        if r < KEYS {
            format!("key=t{c}k{r}")
        } else if r < KEYS + FIELDS {
            format!("tb=h{c}&key=f{r}")
        } else {
            format!("tb=n{c}&key=n{r}")
        }
    }

    fn read(&self, r: usize) -> String {
        let op = if r < KEYS { "get" } else { "hget" };
        format!("/{op}?{}", self.name(r))
    }

    /// A value no other write sends: the client, its write number, a varied length.
    fn value(&self) -> Vec<u8> {
        let seed = format!("t{}s{}.", self.c, self.seq);
        let len = 1 + (self.seq.wrapping_mul(2_654_435_761) % 900) as usize;
        seed.bytes().cycle().take(len).collect()
    }

    /// The records of `range` the model has.
    fn present(&self, range: std::ops::Range<usize>) -> usize {
        range.filter(|&r| self.recs[r].is_some()).count()
    }
}

impl Writer for KvWriter {
    fn step(&mut self, conn: &mut Conn) -> io::Result<bool> {
        self.seq += 1;
        let r = self.rng.below(RECORDS as u64) as usize;
        let cur = self.recs[r].clone();
        // Versions start at 1 and wrap from 4194303 back to 1 (kv-api.md §2.5).
        let next = cur.as_ref().map_or(1, |x| x.ver % 4_194_303 + 1);
        let name = self.name(r);
        let set = if r < KEYS { "put" } else { "hset" };
        let del = if r < KEYS { "del" } else { "hdel" };
        // (method, target, body, status, Version, body of the answer, the record after)
        let (method, target, body, status, ver, answer, after) = if r >= KEYS + FIELDS {
            let d = self.rng.below(101) as i64 - 50;
            let d = if d == 0 { 7 } else { d };
            let old: i64 = cur.as_ref().map_or(0, |x| {
                String::from_utf8_lossy(&x.body).parse().expect("a counter")
            });
            let total = (old + d).to_string().into_bytes();
            let target = format!("/hincrby?{name}&val={d}");
            let after = Some(Rec {
                body: total.clone(),
                ver: next,
            });
            ("GET", target, Vec::new(), 200, next, total, after)
        } else {
            match (self.rng.below(10), &cur) {
                (0..=1, Some(x)) => {
                    let target = format!("/{del}?{name}");
                    ("GET", target, Vec::new(), 200, x.ver, Vec::new(), None)
                }
                (0..=1, None) => {
                    let target = format!("/{del}?{name}");
                    ("GET", target, Vec::new(), 404, 0, Vec::new(), None)
                }
                (2..=4, Some(x)) => {
                    // Conditional on the version the model has: applied only if the store
                    // agrees.
                    let target = format!("/{set}?{name}&ver={}", x.ver);
                    let v = self.value();
                    let after = Some(Rec {
                        body: v.clone(),
                        ver: next,
                    });
                    ("POST", target, v, 200, next, Vec::new(), after)
                }
                _ => {
                    let target = format!("/{set}?{name}");
                    let v = self.value();
                    let after = Some(Rec {
                        body: v.clone(),
                        ver: next,
                    });
                    ("POST", target, v, 200, next, Vec::new(), after)
                }
            }
        };
        self.in_flight = Some((r, after.clone()));
        let resp = conn.send(method, &target, &body)?;
        self.in_flight = None;
        let ver = ver.to_string();
        assert_eq!(
            (resp.status, resp.header("Version"), resp.body.as_slice()),
            (status, Some(ver.as_str()), answer.as_slice()),
            "{target}: the record was {}",
            describe(&cur)
        );
        self.recs[r] = after;
        Ok(status == 200)
    }
}

/// The `count` of a table's `/stat` (0 when it does not exist).
fn table_count(c: &mut Client, tb: &str) -> u64 {
    let r = c.send("GET", &format!("/stat?tb={tb}"), &[], b"");
    match r.status {
        404 => 0,
        200 => json(&r.body)["count"].as_u64().expect("a count"),
        s => panic!("/stat?tb={tb}: {s}"),
    }
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).expect("JSON")
}

/// Every record is its model's or what its in-flight write makes of it (the model then takes
/// it), and the store holds no other record.
fn verify_kv(addr: SocketAddr, writers: &mut [KvWriter], when: &str) {
    let mut c = Client::connect(addr);
    let mut keys = 0;
    let (mut applied, mut unanswered) = (0, 0);
    for w in writers.iter_mut() {
        unanswered += usize::from(w.in_flight.is_some());
        for r in 0..RECORDS {
            let target = w.read(r);
            let resp = c.send("GET", &target, &[], b"");
            let got = match resp.status {
                200 => Some(Rec {
                    ver: resp
                        .header("Version")
                        .and_then(|v| v.parse().ok())
                        .expect("a Version"),
                    body: resp.body,
                }),
                404 => {
                    assert_eq!(resp.header("Version"), Some("0"), "{target}");
                    None
                }
                s => panic!("{when}: {target}: {s}"),
            };
            let flight = w.in_flight.as_ref().filter(|(f, _)| *f == r);
            if got == w.recs[r] {
                continue;
            }
            match flight {
                Some((_, after)) if *after == got => {
                    applied += 1;
                    w.recs[r] = got;
                }
                _ => panic!(
                    "{when}: {target} is {}; acknowledged: {}; in flight: {}",
                    describe(&got),
                    describe(&w.recs[r]),
                    flight.map_or("nothing".into(), |(_, a)| describe(a))
                ),
            }
        }
        w.in_flight = None;
        for (tb, range) in [
            (format!("h{}", w.c), KEYS..KEYS + FIELDS),
            (format!("n{}", w.c), KEYS + FIELDS..RECORDS),
        ] {
            let want = w.present(range) as u64;
            assert_eq!(table_count(&mut c, &tb), want, "{when}: fields of {tb}");
        }
        keys += w.present(0..KEYS) as u64;
    }
    let r = c.send("GET", "/stat", &[], b"");
    assert_eq!(r.status, 200);
    let count = json(&r.body)["TOTALIZE"]["KVPAIR"]["count"].as_u64();
    assert_eq!(count, Some(keys), "{when}: keys in the store");
    println!("{when}: {unanswered} writes unanswered, {applied} of them applied");
}

#[test]
fn kv_mode_loses_nothing_through_kill_9_and_restart_loops_of_the_tree() {
    let mut server = Server::start(&[("worker_processes", "2")]);
    let writers = (0..CLIENTS).map(KvWriter::new).collect();
    let writers = kill_loop(&mut server, writers, verify_kv);
    // The model saw every kind of write acknowledged.
    let versions: Vec<u32> = writers
        .iter()
        .flat_map(|w| w.recs.iter().flatten().map(|r| r.ver))
        .collect();
    assert!(versions.iter().any(|&v| v >= 3), "{versions:?}");
}

// ---- mq mode ----------------------------------------------------------------------------

/// A request of an mq client whose answer may never come.
#[derive(Clone)]
enum MqOp {
    Put(String),
    /// `get` with `ack=true`: may have taken a message, unseen.
    Take,
    /// `get` with `ack=false`: a message taken is pending, so it comes again.
    Peek,
    /// `/ack` of a delivered message: may have removed it.
    Ack(String),
}

#[derive(Default)]
struct MqWriter {
    c: usize,
    seq: u64,
    rng: Option<Rng>,
    /// Puts answered 200, and those sent without an answer.
    acked: Vec<String>,
    unanswered_puts: Vec<String>,
    /// Removals answered 200 (`get ack=true`, `/ack`): the message's final delivery.
    finals: Vec<String>,
    /// Deliveries with `ack=false`.
    peeks: Vec<String>,
    /// `get ack=true` sent without an answer, and the messages of `/ack`s without one.
    unanswered_takes: usize,
    maybe_acked: Vec<String>,
    /// A delivery with `ack=false` to acknowledge next: queue, token, message.
    to_ack: Option<(String, String, String)>,
    in_flight: Option<MqOp>,
}

impl MqWriter {
    fn new(c: usize) -> MqWriter {
        MqWriter {
            c,
            rng: Some(Rng::new(100 + c as u64)),
            ..MqWriter::default()
        }
    }

    /// The request in flight at the kill is over (answered by nothing).
    fn settle(&mut self) {
        match self.in_flight.take() {
            Some(MqOp::Put(m)) => self.unanswered_puts.push(m),
            Some(MqOp::Take) => self.unanswered_takes += 1,
            Some(MqOp::Ack(m)) => self.maybe_acked.push(m),
            Some(MqOp::Peek) | None => {}
        }
    }

    fn send(&mut self, conn: &mut Conn, op: MqOp, target: &str, body: &[u8]) -> io::Result<u16> {
        self.in_flight = Some(op);
        let r = conn.send(if body.is_empty() { "GET" } else { "POST" }, target, body)?;
        self.in_flight = None;
        Ok(r.status)
    }
}

impl Writer for MqWriter {
    fn step(&mut self, conn: &mut Conn) -> io::Result<bool> {
        if let Some((q, token, m)) = self.to_ack.clone() {
            // Kept until answered: after a kill it is sent again (a 404 then says the first
            // one was applied, or the message was delivered again meanwhile).
            let target = format!("/ack?queue={q}&token={token}");
            let status = self.send(conn, MqOp::Ack(m.clone()), &target, b"")?;
            self.to_ack = None;
            assert!(status == 200 || status == 404, "{target}: {status}");
            if status == 200 {
                self.finals.push(m);
            }
            return Ok(status == 200);
        }
        let rng = self.rng.as_mut().expect("seeded");
        let q = format!("q{}", rng.below(2));
        let pick = rng.below(20);
        let keep_pending = rng.below(4) == 0;
        let worker = format!("w{}", self.c);
        match pick {
            0..=10 => {
                self.seq += 1;
                let m = format!("c{}-{}", self.c, self.seq);
                let status = self.send(
                    conn,
                    MqOp::Put(m.clone()),
                    &format!("/put?queue={q}"),
                    m.as_bytes(),
                )?;
                assert_eq!(status, 200, "put {m}");
                self.acked.push(m);
                Ok(true)
            }
            11..=15 => {
                self.in_flight = Some(MqOp::Take);
                let r = conn.send("GET", &format!("/get?queue={q}&worker={worker}"), b"")?;
                self.in_flight = None;
                assert!(r.status == 200 || r.status == 404, "get: {}", r.status);
                if r.status == 200 {
                    self.finals.push(r.text());
                }
                Ok(r.status == 200)
            }
            _ => {
                self.in_flight = Some(MqOp::Peek);
                let target = format!("/get?queue={q}&worker={worker}&ack=false");
                let r = conn.send("GET", &target, b"")?;
                self.in_flight = None;
                assert!(r.status == 200 || r.status == 404, "{target}: {}", r.status);
                if r.status == 200 {
                    let token = r.header("Ack-Token").expect("an Ack-Token").to_string();
                    let m = r.text();
                    self.peeks.push(m.clone());
                    // Some stay unacknowledged: delivered again after their deadline.
                    if !keep_pending {
                        self.to_ack = Some((q, token, m));
                    }
                }
                Ok(false)
            }
        }
    }
}

/// Ready and pending messages of both queues.
fn queued(c: &mut Client) -> usize {
    let mut n = 0;
    for q in ["q0", "q1"] {
        let r = c.send("GET", &format!("/stat?queue={q}"), &[], b"");
        if r.status == 404 {
            continue;
        }
        assert_eq!(r.status, 200, "/stat?queue={q}");
        let s = json(&r.body);
        let ready: u64 = s["ready"]
            .as_array()
            .expect("ready")
            .iter()
            .map(|v| v.as_u64().expect("a count"))
            .sum();
        n += (ready + s["unacked"].as_u64().expect("unacked")) as usize;
    }
    n
}

/// What is queued lies between what must be there and what may be.
fn verify_mq(addr: SocketAddr, writers: &mut [MqWriter], when: &str) {
    for w in writers.iter_mut() {
        w.settle();
    }
    let sum = |f: &dyn Fn(&MqWriter) -> usize| writers.iter().map(f).sum::<usize>();
    let acked = sum(&|w| w.acked.len());
    let unanswered = sum(&|w| w.unanswered_puts.len());
    let finals = sum(&|w| w.finals.len());
    let unseen = sum(&|w| w.unanswered_takes + w.maybe_acked.len());
    let queued = queued(&mut Client::connect(addr));
    println!(
        "{when}: {queued} queued, {acked} puts acknowledged, {unanswered} unanswered, \
         {finals} removals acknowledged, {unseen} unanswered"
    );
    assert!(
        queued + finals + unseen >= acked,
        "{when}: lost: {queued} queued, {finals} removed, {unseen} unanswered removals, \
         {acked} acknowledged puts"
    );
    assert!(
        queued + finals <= acked + unanswered,
        "{when}: more than was put: {queued} queued, {finals} removed, {acked} acknowledged \
         and {unanswered} unanswered puts"
    );
}

#[test]
fn mq_mode_delivers_every_acknowledged_put_once_through_kill_9_and_restart_loops() {
    let mut server = Server::start(&[
        ("mode", "mq"),
        ("worker_processes", "2"),
        // A pending delivery's deadline: 1 s, so the drain below waits little.
        ("mq_timeout_unit", "1s"),
        ("mq_redelivery_timeout", "1"),
    ]);
    let writers = (0..CLIENTS).map(MqWriter::new).collect();
    let mut writers = kill_loop(&mut server, writers, verify_mq);
    // Acknowledge what is to be, then drain both queues (pending messages come again after
    // their deadline).
    let addr = server.addr();
    let mut conn = Conn::connect(addr, TIMEOUT).expect("connect");
    for w in writers.iter_mut() {
        while w.to_ack.is_some() {
            w.step(&mut conn).expect("an ack");
        }
    }
    let mut drained = Vec::new();
    let mut c = Client::connect(addr);
    let empty = wait_until(Duration::from_secs(20), || {
        for q in ["q0", "q1"] {
            for _ in 0..100_000 {
                let r = c.send("GET", &format!("/get?queue={q}&worker=drain"), &[], b"");
                match r.status {
                    200 => drained.push(r.text()),
                    404 => break,
                    s => panic!("drain {q}: {s}"),
                }
            }
        }
        queued(&mut c) == 0
    });
    assert!(empty, "{} still queued", queued(&mut c));
    let sent: HashSet<&String> = writers
        .iter()
        .flat_map(|w| w.acked.iter().chain(&w.unanswered_puts))
        .collect();
    let mut finals: HashMap<&String, usize> = HashMap::new();
    for m in writers.iter().flat_map(|w| &w.finals).chain(&drained) {
        assert!(sent.contains(m), "{m} delivered, never put");
        *finals.entry(m).or_default() += 1;
    }
    for m in writers.iter().flat_map(|w| &w.peeks) {
        assert!(sent.contains(m), "{m} delivered, never put");
    }
    let twice: Vec<_> = finals.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        twice.is_empty(),
        "removed with a 200 more than once: {twice:?}"
    );
    let maybe_acked: HashSet<&String> = writers.iter().flat_map(|w| &w.maybe_acked).collect();
    let lost: Vec<&String> = writers
        .iter()
        .flat_map(|w| &w.acked)
        .filter(|m| !finals.contains_key(m) && !maybe_acked.contains(m))
        .collect();
    let takes: usize = writers.iter().map(|w| w.unanswered_takes).sum();
    assert!(
        lost.len() <= takes,
        "{} acknowledged puts never delivered ({takes} unanswered gets): {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    let peeks: usize = writers.iter().map(|w| w.peeks.len()).sum();
    let acked: usize = writers.iter().map(|w| w.acked.len()).sum();
    println!(
        "{acked} acknowledged puts, {} messages removed with a 200, {peeks} deliveries with \
         ack=false, {} drained at the end, {} lost to unanswered gets",
        finals.len(),
        drained.len(),
        lost.len()
    );
    // Deliveries of both kinds happened while the tree was being killed, not only at the end.
    assert!(peeks > 0 && finals.len() > drained.len());
}
