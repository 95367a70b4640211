//! Micro-benchmarks of the paths that decide huststore's speed, so a regression shows without
//! wrk: the HTTP head parser, the query decoder, and the storage put/get path. Hand-written on
//! `std::time::Instant` and `std::hint::black_box` (no bench crate): each case is calibrated to
//! batches of at least 20 ms, run for a fixed number of samples, and reported as the median
//! ns per operation (with the fastest sample beside it). Nothing here asserts a timing.
//!
//!     cargo bench --bench micro            # everything, well under a minute
//!     cargo bench --bench micro -- query   # only the cases whose name contains "query"

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use storage::{Batch, Command, Store, StoreOptions, Write};
use worker::http::{parse_head, HeadParse};
use worker::query::Params;

/// Samples per case; the median is reported.
const SAMPLES: usize = 11;
/// Shortest sample: batches are doubled until one takes at least this long.
const MIN_SAMPLE: Duration = Duration::from_millis(20);

/// One result line.
struct Row {
    name: String,
    median_ns: f64,
    best_ns: f64,
    ops: u64,
}

/// Runs `f` (which does `per_call` operations) in calibrated batches and returns the figures.
fn measure(name: &str, per_call: u64, mut f: impl FnMut()) -> Row {
    let mut batch: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        if t.elapsed() >= MIN_SAMPLE || batch >= 1 << 30 {
            break;
        }
        batch *= 2;
    }
    let mut per_op = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        per_op.push(t.elapsed().as_nanos() as f64 / (batch * per_call) as f64);
    }
    per_op.sort_by(f64::total_cmp);
    Row {
        name: name.to_string(),
        median_ns: per_op[SAMPLES / 2],
        best_ns: per_op[0],
        ops: batch * per_call * SAMPLES as u64,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The pattern the wrk scripts send as values.
fn value(size: usize) -> Vec<u8> {
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        .iter()
        .copied()
        .cycle()
        .take(size)
        .collect()
}

/// A temp folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "huststore-micro-{}-{tag}-{nanos}",
            std::process::id()
        ));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Opens a store as a worker does: `write_map` is what kv mode sets, mq mode leaves it off.
fn open_store(dir: &Path, sync_writes: bool, write_map: bool) -> Store {
    let opts = StoreOptions {
        data_dir: dir.join("data"),
        map_size: 4 << 30,
        sync_writes,
        cache_dir: dir.join("cache"),
        cache_size: 16 << 20,
        write_map,
        fail_stop: Default::default(),
    };
    match Store::open(&opts) {
        Ok(s) => s,
        Err(e) => panic!("Store::open on {}: {e}", dir.display()),
    }
}

/// A small xorshift, so the key order is random but the same in every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const GET_HEAD: &[u8] = b"GET /get?key=g256_421 HTTP/1.1\r\nHost: 127.0.0.1:8082\r\n\
User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
const POST_HEAD: &[u8] = b"POST /put?key=p256_1_734512345 HTTP/1.1\r\nHost: 127.0.0.1:8082\r\n\
User-Agent: curl/7.88.1\r\nAccept: */*\r\nContent-Type: application/octet-stream\r\n\
Content-Length: 256\r\n\r\n";

fn head_len(buf: &[u8]) -> usize {
    match parse_head(buf, 0) {
        Ok(HeadParse::Complete { len, .. }) => len,
        other => panic!("the sample head does not parse: {other:?}"),
    }
}

fn parser_cases(rows: &mut Vec<Row>, keep: &dyn Fn(&str) -> bool) {
    for (kind, head) in [("GET", GET_HEAD), ("POST", POST_HEAD)] {
        let name = format!("http: parse_head, {kind} head ({} B)", head.len());
        if !keep(&name) {
            continue;
        }
        assert_eq!(head_len(head), head.len());
        rows.push(measure(&name, 1, || {
            black_box(parse_head(black_box(head), 0).is_ok());
        }));
    }
    // A head arriving in two reads: the second call resumes where the first search stopped.
    let name = "http: parse_head, POST head in 2 reads";
    if keep(name) {
        let cut = POST_HEAD.len() / 2;
        rows.push(measure(name, 1, || {
            let first = parse_head(black_box(&POST_HEAD[..cut]), 0);
            let scanned = match first {
                Ok(HeadParse::Partial { scanned }) => scanned,
                _ => 0,
            };
            black_box(parse_head(black_box(POST_HEAD), scanned).is_ok());
        }));
    }
}

fn query_cases(rows: &mut Vec<Row>, keep: &dyn Fn(&str) -> bool) {
    let cases: [(&str, &[u8], &str); 4] = [
        ("query: Params::parse key=...", b"key=g256_421", "key"),
        (
            "query: Params::parse queue&worker&ack",
            b"queue=q256&worker=w1&ack=true",
            "worker",
        ),
        (
            "query: Params::parse 5 params",
            b"tb=table_1&key=member_1234&val=42&ttl=3600&ver=7",
            "ver",
        ),
        (
            "query: Params::parse %-escaped key (60 B)",
            b"key=%E4%BD%A0%E5%A5%BD%20world%2Bplus%2Fslash%3Dequals&ttl=0",
            "key",
        ),
    ];
    for (name, raw, probe) in cases {
        if !keep(name) {
            continue;
        }
        match Params::parse(raw) {
            Ok(p) if p.get(probe).is_some() => {}
            _ => panic!(
                "the sample query {:?} does not decode",
                String::from_utf8_lossy(raw)
            ),
        }
        rows.push(measure(name, 1, || {
            let p = Params::parse(black_box(raw));
            black_box(p.map(|p| p.get(probe).map(<[u8]>::len)).ok());
        }));
    }
}

/// A plain put without expiry or version check, as `/put?key=..` builds it.
fn put(batch: &mut Batch<'_>, key: &[u8], val: &[u8], now_ms: u64) -> storage::Result<()> {
    let write = Write::Put {
        key,
        val,
        expires_at: 0,
        ver: 0,
    };
    batch.apply(&Command { now_ms, write }).map(|_| ())
}

/// Puts `count` keys `<prefix><i>` with `size`-byte values, committing every 100.
fn fill(store: &Store, prefix: &str, size: usize, count: u64) {
    let val = value(size);
    let now = now_ms();
    let mut i = 0;
    while i < count {
        let mut batch = store.batch();
        for _ in 0..100.min(count - i) {
            let key = format!("{prefix}{i}");
            if let Err(e) = put(&mut batch, key.as_bytes(), &val, now) {
                panic!("put {key}: {e}");
            }
            i += 1;
        }
        if let Err(e) = batch.commit() {
            panic!("commit: {e}");
        }
    }
}

fn storage_cases(rows: &mut Vec<Row>, keep: &dyn Fn(&str) -> bool) {
    let now = now_ms();
    // (name, value size, sync_writes, write_map): kv mode runs with write_map, mq mode without.
    let puts = [
        (
            "storage: put 256 B, commit every 100, sync_writes off",
            256,
            false,
            true,
        ),
        (
            "storage: put 4 KiB, commit every 100, sync_writes off",
            4096,
            false,
            true,
        ),
        (
            "storage: put 64 KiB, commit every 100, sync_writes off",
            65536,
            false,
            true,
        ),
        (
            "storage: put 256 B, commit every 100, sync_writes on (fsync)",
            256,
            true,
            true,
        ),
        (
            "storage: put 256 B, commit every 100, sync_writes off, write_map off (mq mode)",
            256,
            false,
            false,
        ),
    ];
    for (name, size, sync, write_map) in puts {
        if !keep(name) {
            continue;
        }
        let dir = TempDir::new("put");
        let store = open_store(dir.path(), sync, write_map);
        let val = value(size);
        let mut n: u64 = 0;
        let mut key = Vec::with_capacity(32);
        rows.push(measure(name, 100, || {
            let mut batch = store.batch();
            for _ in 0..100 {
                key.clear();
                key.extend_from_slice(b"k");
                key.extend_from_slice(n.to_string().as_bytes());
                n += 1;
                black_box(put(&mut batch, &key, &val, now).is_ok());
            }
            black_box(batch.commit().is_ok());
        }));
    }

    let gets = [
        (
            "storage: get 256 B, 10k keys, 100 gets per batch",
            256,
            10_000u64,
        ),
        (
            "storage: get 64 KiB, 1k keys, 100 gets per batch",
            65536,
            1_000,
        ),
        (
            "storage: get 256 B, 1M keys, 100 gets per batch",
            256,
            1_000_000,
        ),
    ];
    for (name, size, nkeys) in gets {
        if !keep(name) {
            continue;
        }
        let dir = TempDir::new("get");
        let store = open_store(dir.path(), false, true);
        fill(&store, "k", size, nkeys);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let keys: Vec<Vec<u8>> = (0..4096)
            .map(|_| format!("k{}", rng.below(nkeys)).into_bytes())
            .collect();
        let mut at = 0;
        rows.push(measure(name, 100, || {
            let mut batch = store.batch();
            for _ in 0..100 {
                let r = batch.get(&keys[at & 4095], now);
                black_box(r.map(|r| r.value.len()).ok());
                at += 1;
            }
            black_box(batch.commit().is_ok());
        }));
    }
}

fn main() {
    // `cargo bench` passes "--bench"; anything else not starting with '-' filters by name.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let keep = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let start = Instant::now();
    let mut rows = Vec::new();
    parser_cases(&mut rows, &keep);
    query_cases(&mut rows, &keep);
    storage_cases(&mut rows, &keep);

    println!(
        "| benchmark | ns/op (median of {SAMPLES}) | ns/op (best) | ops/s (median) | ops run |"
    );
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.1} | {:.1} | {:.0} | {} |",
            r.name,
            r.median_ns,
            r.best_ns,
            1e9 / r.median_ns,
            r.ops
        );
    }
    println!();
    println!(
        "{} cases in {:.1} s; storage cases on LMDB in {} (page cache, so sync_writes off \
         never waits for the disk)",
        rows.len(),
        start.elapsed().as_secs_f64(),
        std::env::temp_dir().display()
    );
}
