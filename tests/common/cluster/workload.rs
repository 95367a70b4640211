//! The client side of the history tests: client threads that run random put / get / CAS / del
//! / hset / hget / hincrby on a few records through every node in turn and record each in a
//! [`History`] (invocation just before the request is sent, completion just after the answer);
//! the mapping of answers to outcomes (`503` and a connection never made: certainly failed;
//! `504`, a timeout or a connection lost after sending: unknown); and the final state of every
//! replica, read from each member node with `consistency=local` once the cluster settled.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::super::history::{Call, History, Key, Op, Outcome, Record, Replicas, Ret};
use super::super::kv::pct;
use super::super::Response;
use super::TestCluster;

/// The records the workload runs on: `kv` plain keys `k0..` and `fields` fields `f0..` of the
/// table `jt`.
pub fn records(kv: usize, fields: usize) -> Vec<Key> {
    let mut keys: Vec<Key> = (0..kv).map(|k| Key::kv(&format!("k{k}"))).collect();
    keys.extend((0..fields).map(|f| Key::field("jt", &format!("f{f}"))));
    keys
}

/// What the clients did, for the test's output and its minimum-activity assertions.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub ok: usize,
    /// Definite answers to writes that took effect (`put`/`hset`/CAS/`hincrby` `200`, `del` `200`).
    pub acked_writes: usize,
    pub unknown: usize,
    pub failed: usize,
    /// Answers outside the contract (neither the API's nor `503`/`504`), with their op.
    pub anomalies: Vec<String>,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.ok += other.ok;
        self.acked_writes += other.acked_writes;
        self.unknown += other.unknown;
        self.failed += other.failed;
        self.anomalies.extend(other.anomalies.iter().cloned());
    }
}

/// How the clients run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The records, renamed each epoch (see [`at_epoch`]).
    pub keys: Vec<Key>,
    pub clients: usize,
    pub duration: Duration,
    /// How long the clients stay on one generation of the records. Each key's history is then
    /// a few seconds long, with the few unknown writes of at most a fault or two: the
    /// linearizability search is exponential in the unknown writes pending together on a key
    /// (Jepsen's "independent keys" for the same reason).
    pub epoch: Duration,
    /// The pause of a client after a failed or unknown op (a client backs off).
    pub backoff: Duration,
}

/// `key` of epoch `e`: `k0` becomes `k0-e<e>`, a field of table `jt` one of `jte<e>` (a table
/// name is letters, digits and `_`).
pub fn at_epoch(key: &Key, e: u64) -> Key {
    match key {
        Key::Kv(k) => Key::kv(&format!("{k}-e{e}")),
        Key::Field { tb, field } => Key::field(&format!("{tb}e{e}"), field),
    }
}

/// Runs `plan.clients` client threads until `stop` is set or the plan's duration passed;
/// client `c`'s k-th op goes to node `(c + k) % n`. Returns the sum of their stats.
pub fn run_clients(
    cluster: &TestCluster,
    history: &History,
    plan: &Plan,
    stop: &AtomicBool,
) -> Stats {
    let total = Mutex::new(Stats::default());
    std::thread::scope(|scope| {
        for c in 0..plan.clients {
            let total = &total;
            scope.spawn(move || {
                let stats = client(cluster, history, plan, c, stop);
                total.lock().unwrap_or_else(|e| e.into_inner()).add(&stats);
            });
        }
    });
    total.into_inner().unwrap_or_else(|e| e.into_inner())
}

fn client(
    cluster: &TestCluster,
    history: &History,
    plan: &Plan,
    c: usize,
    stop: &AtomicBool,
) -> Stats {
    let start = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((c as u64 + 1) * 0x2545_f491_4f6c_dd1d));
    let mut seen: BTreeMap<Key, u32> = BTreeMap::new();
    let mut stats = Stats::default();
    let mut node = c % cluster.len();
    let mut n = 0u64;
    let epoch_ms = plan.epoch.as_millis().max(1) as u64;
    while start.elapsed() < plan.duration && !stop.load(Ordering::Relaxed) {
        n += 1;
        let e = start.elapsed().as_millis() as u64 / epoch_ms;
        let base = &plan.keys[rng.below(plan.keys.len() as u64) as usize];
        let key = &at_epoch(base, e);
        let op = pick(&mut rng, key, c, n, seen.get(key).copied());
        let id = history.invoke_on(c, Some(node), op.clone());
        let exchange = call(cluster, node, &op);
        let outcome = outcome(&op, exchange);
        match &outcome {
            Answer::Ret(ret) => {
                if let Some(v) = version_of(ret) {
                    seen.insert(key.clone(), v);
                }
                stats.ok += 1;
                if is_write_effect(ret) {
                    stats.acked_writes += 1;
                }
                history.complete(id, ret.clone());
            }
            Answer::Failed => {
                stats.failed += 1;
                history.failed(id);
            }
            Answer::Unknown => {
                stats.unknown += 1;
                history.unknown(id);
            }
            Answer::Anomaly(text) => {
                stats.unknown += 1;
                stats.anomalies.push(format!("node {node}: {op}: {text}"));
                history.unknown(id);
            }
        }
        if !matches!(outcome, Answer::Ret(_)) {
            // A dead or leaderless node fails fast: do not hammer it.
            std::thread::sleep(plan.backoff);
        }
        node = (node + 1) % cluster.len();
    }
    stats
}

/// A random op on `key`: reads, writes of values unique to this client and op (`c{c}-{n}`, or
/// a unique number on fields so that `hincrby` keeps working), CAS on the version this client
/// last saw, rare deletes of plain keys, increments of fields.
fn pick(rng: &mut Rng, key: &Key, c: usize, n: u64, seen: Option<u32>) -> Op {
    let roll = rng.below(100);
    match key {
        Key::Kv(_) => match roll {
            0..=34 => Op::get(key),
            35..=64 => Op::put(key, &format!("c{c}-{n}")),
            65..=96 => {
                let ver = seen.unwrap_or(0).max(1) + u32::from(rng.below(4) == 0);
                Op::put_if_version(key, &format!("c{c}-{n}"), ver)
            }
            _ => Op::del(key),
        },
        Key::Field { .. } => match roll {
            0..=34 => Op::get(key),
            35..=79 => Op::hincrby(key, 1 + rng.below(5) as i64),
            _ => Op::put(key, &((c as u64 + 1) * 1_000_000_000 + n).to_string()),
        },
    }
}

/// The request of `op`.
pub fn target(op: &Op) -> String {
    let q = pct;
    match (&op.key, &op.call) {
        (Key::Kv(k), Call::Get) => format!("/get?key={}", q(k.as_bytes())),
        (Key::Kv(k), Call::Put { val }) => {
            format!("/put?key={}&val={}", q(k.as_bytes()), q(val.as_bytes()))
        }
        (Key::Kv(k), Call::PutIfVersion { val, ver }) => format!(
            "/put?key={}&val={}&ver={ver}",
            q(k.as_bytes()),
            q(val.as_bytes())
        ),
        (Key::Kv(k), Call::Del) => format!("/del?key={}", q(k.as_bytes())),
        (Key::Kv(_), Call::Hincrby { .. }) => panic!("no hincrby on a plain key"),
        (Key::Field { tb, field }, call) => {
            let base = format!("tb={}&key={}", q(tb.as_bytes()), q(field.as_bytes()));
            match call {
                Call::Get => format!("/hget?{base}"),
                Call::Put { val } => format!("/hset?{base}&val={}", q(val.as_bytes())),
                Call::PutIfVersion { val, ver } => {
                    format!("/hset?{base}&val={}&ver={ver}", q(val.as_bytes()))
                }
                Call::Del => format!("/hdel?{base}"),
                Call::Hincrby { delta } => format!("/hincrby?{base}&val={delta}"),
            }
        }
    }
}

/// How one request went at the socket level.
pub enum Exchange {
    /// The connection was never made: the node cannot have seen the request.
    NotSent(io::Error),
    /// Sent, then no whole answer (timeout, reset, close): it may have taken effect.
    Lost(io::Error),
    Answered(Response),
}

/// Sends `op` to node `i` (inside its namespace in a lab) with the cluster's request deadline.
pub fn call(cluster: &TestCluster, i: usize, op: &Op) -> Exchange {
    let addr = cluster.nodes[i].client;
    let timeout = cluster.request_deadline();
    let target = target(op);
    cluster.in_node(i, || exchange(addr, &target, timeout))
}

/// One `GET target` with `Connection: close`, the response read to EOF.
pub fn exchange(addr: SocketAddr, target: &str, timeout: Duration) -> Exchange {
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Ok(s) => s,
        Err(e) => return Exchange::NotSent(e),
    };
    let deadline = Instant::now() + timeout;
    let head = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut bytes = Vec::new();
    let result = (|| {
        stream.set_write_timeout(Some(timeout))?;
        stream.write_all(head.as_bytes())?;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "client deadline"));
            }
            stream.set_read_timeout(Some(left))?;
            match stream.read(&mut buf)? {
                0 => return Ok(()),
                k => bytes.extend_from_slice(&buf[..k]),
            }
        }
    })();
    match (result, parse_response(&bytes)) {
        (_, Some(r)) => Exchange::Answered(r),
        (Err(e), None) => Exchange::Lost(e),
        (Ok(()), None) => Exchange::Lost(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("closed after {} bytes of an answer", bytes.len()),
        )),
    }
}

/// A whole response in `bytes` (head and a body of Content-Length bytes), or None.
fn parse_response(bytes: &[u8]) -> Option<Response> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let r = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = r
        .header("Content-Length")
        .map_or(Some(0), |v| v.parse().ok())?;
    let body = bytes.get(end + 4..end + 4 + len)?.to_vec();
    Some(Response { body, ..r })
}

/// What an exchange means for the history.
pub enum Answer {
    Ret(Ret),
    Failed,
    Unknown,
    /// Outside the contract: recorded as unknown, reported by the test.
    Anomaly(String),
}

/// The outcome of `op` from its exchange (`kv-api.md` §2.5, `cluster.md` §3).
pub fn outcome(op: &Op, exchange: Exchange) -> Answer {
    let r = match exchange {
        Exchange::NotSent(_) => return Answer::Failed,
        Exchange::Lost(_) => return Answer::Unknown,
        Exchange::Answered(r) => r,
    };
    let version = r.header("Version").and_then(|v| v.parse::<u32>().ok());
    let ver_error = r.header("VerError") == Some("true");
    let anomaly =
        |r: &Response| Answer::Anomaly(format!("{} {:?} body {:?}", r.status, r.headers, r.text()));
    let ret = match (r.status, &op.call, version) {
        (503, ..) => return Answer::Failed,
        (504, ..) => return Answer::Unknown,
        (200, Call::Get, Some(version)) => Ret::Value {
            val: r.text(),
            version,
        },
        (404, Call::Get | Call::Del, _) => Ret::NotFound,
        (200, Call::Put { .. } | Call::PutIfVersion { .. }, Some(version)) if !ver_error => {
            Ret::Written { version }
        }
        (401, _, Some(current)) if ver_error => Ret::Mismatch { current },
        (200, Call::Del, Some(version)) => Ret::Deleted { version },
        (200, Call::Hincrby { .. }, Some(version)) => match r.text().parse::<i64>() {
            Ok(value) => Ret::Incremented { value, version },
            Err(_) => return anomaly(&r),
        },
        (409, Call::Hincrby { .. }, _) => Ret::NotNumber,
        _ => return anomaly(&r),
    };
    Answer::Ret(ret)
}

fn version_of(ret: &Ret) -> Option<u32> {
    match ret {
        Ret::Written { version }
        | Ret::Value { version, .. }
        | Ret::Incremented { version, .. } => Some(*version),
        Ret::Mismatch { current } => Some(*current),
        Ret::NotFound | Ret::Deleted { .. } => Some(0),
        Ret::NotNumber => None,
    }
}

fn is_write_effect(ret: &Ret) -> bool {
    matches!(
        ret,
        Ret::Written { .. } | Ret::Incremented { .. } | Ret::Deleted { .. }
    )
}

/// The group of a record.
pub fn group_of(cluster: &TestCluster, key: &Key) -> u32 {
    match key {
        Key::Kv(k) => cluster.group_of_key(k),
        Key::Field { tb, .. } => cluster.group_of_table(tb),
    }
}

/// Node `i`'s own replica of `key` (`consistency=local`): Ok(None) when absent, Err on any
/// other answer.
pub fn read_local(cluster: &TestCluster, i: usize, key: &Key) -> Result<Option<Record>, String> {
    let target = format!(
        "{}&consistency=local",
        super::workload::target(&Op::get(key))
    );
    match cluster.request(i, "GET", &target) {
        Ok(r) if r.status == 200 => {
            let version = r
                .header("Version")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("node {i}: {target}: 200 without a Version"))?;
            Ok(Some(Record::new(&r.text(), version)))
        }
        Ok(r) if r.status == 404 => Ok(None),
        Ok(r) => Err(format!("node {i}: {target}: {} {:?}", r.status, r.headers)),
        Err(e) => Err(format!("node {i}: {target}: {e}")),
    }
}

/// Every replica's final records, per group: group -> member name -> key -> record, read from
/// every member that can answer.
pub fn read_replicas(
    cluster: &TestCluster,
    keys: &[Key],
) -> Result<BTreeMap<u32, Replicas>, String> {
    let mut groups: BTreeMap<u32, Replicas> = BTreeMap::new();
    for key in keys {
        let g = group_of(cluster, key);
        for m in cluster.members(g) {
            if !cluster.is_up(m) {
                continue;
            }
            let name = cluster.nodes[m].name.clone();
            let replica = groups.entry(g).or_default().entry(name).or_default();
            if let Some(rec) = read_local(cluster, m, key)? {
                replica.insert(key.clone(), rec);
            }
        }
    }
    Ok(groups)
}

/// Waits (up to `timeout`) until the replicas of every group agree on every key, as followers
/// apply what is committed a little after the leader; the last state read either way.
pub fn settled_replicas(
    cluster: &TestCluster,
    keys: &[Key],
    timeout: Duration,
) -> Result<BTreeMap<u32, Replicas>, String> {
    let start = Instant::now();
    loop {
        let state = read_replicas(cluster, keys);
        let agree = state.as_ref().is_ok_and(|groups| {
            groups.values().all(|replicas| {
                let mut it = replicas.values();
                let first = it.next();
                it.all(|r| Some(r) == first)
            })
        });
        if agree || start.elapsed() >= timeout {
            return state;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many ops of `history` ended each way (Ok, unknown, failed), for the test's output.
pub fn summary(history: &History) -> String {
    let ops = history.ops();
    let count = |f: fn(&Outcome) -> bool| ops.iter().filter(|o| f(&o.outcome)).count();
    format!(
        "{} ops: {} ok, {} unknown, {} failed",
        ops.len(),
        count(|o| matches!(o, Outcome::Ok(_))),
        count(|o| matches!(o, Outcome::Unknown | Outcome::Pending)),
        count(|o| matches!(o, Outcome::Failed))
    )
}

/// xorshift64*: a deterministic per-client generator (no crate for a few random choices).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}
