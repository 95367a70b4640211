//! `/metrics`: Prometheus text whose counters add up every worker's share.

mod common;

use common::{get, wait_until, Client, Server};
use std::time::Duration;

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn counters_add_up_over_all_workers() {
    let server = Server::start(&[("worker_processes", "2")]);
    let addr = server.addr();
    // Many connections, so both workers serve some of them.
    let mut clients: Vec<Client> = (0..16).map(|_| Client::connect(addr)).collect();
    for round in 0..5 {
        for (i, c) in clients.iter_mut().enumerate() {
            let r = c.send("POST", &format!("/put?key=m{round}_{i}"), &[], b"v");
            assert_eq!(r.status, 200);
            assert_eq!(c.send("GET", "/nope", &[], b"").status, 404);
        }
    }
    // Under load the last replies may show in the counters a moment after the client has
    // them (seen: 79 of 80 puts with the machine's CPUs busy; a worker counts a pass's
    // replies when the pass ends, likely after some went out); a count that never arrives
    // fails the exact checks below.
    let put_200 = "huststore_requests_total{path=\"/put\",status=\"200\"}";
    let other_404 = "huststore_requests_total{path=\"other\",status=\"404\"}";
    wait_until(Duration::from_secs(5), || {
        let text = get(addr, "/metrics").text();
        value(&text, put_200) == Some(80.0) && value(&text, other_404) == Some(80.0)
    });
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain; version=0.0.4"));
    let text = r.text();
    assert_eq!(
        value(
            &text,
            "huststore_requests_total{path=\"/put\",status=\"200\"}"
        ),
        Some(80.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "huststore_requests_total{path=\"other\",status=\"404\"}"
        ),
        Some(80.0)
    );
    assert!(value(&text, "huststore_commits_total").unwrap() >= 1.0);
    assert_eq!(
        value(&text, "huststore_commit_batch_writes_sum"),
        Some(80.0)
    );
    assert!(value(&text, "huststore_open_connections").unwrap() >= 16.0);
    assert!(value(&text, "huststore_received_bytes_total").unwrap() > 1000.0);
    assert!(value(&text, "huststore_store_used_bytes").unwrap() > 0.0);
    assert!(value(&text, "huststore_request_duration_seconds_count").unwrap() >= 160.0);
    assert_eq!(value(&text, "huststore_worker_restarts_total"), Some(0.0));

    // A killed worker is counted as a restart.
    let victim = server.worker_pids()[0];
    // SAFETY: kill(2) on a pid of our own test daemon.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(5), || {
        value(
            &get(addr, "/metrics").text(),
            "huststore_worker_restarts_total",
        ) == Some(1.0)
    }));
}

#[test]
fn mq_mode_reports_queue_depths_and_parked_waiters() {
    let server = Server::start(&[("mode", "mq")]);
    let addr = server.addr();
    for i in 0..3 {
        assert_eq!(get(addr, &format!("/put?queue=jobs&item=m{i}")).status, 200);
    }
    assert_eq!(get(addr, "/put?queue=other&item=x").status, 200);
    let r = get(addr, "/get?queue=jobs&worker=w1&ack=false");
    assert_eq!(r.status, 200);
    let text = get(addr, "/metrics").text();
    assert_eq!(
        value(&text, "huststore_mq_ready_messages{queue=\"jobs\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "huststore_mq_ready_messages{queue=\"other\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "huststore_mq_unacked_messages{queue=\"jobs\"}"),
        Some(1.0)
    );
    assert_eq!(value(&text, "huststore_mq_parked_evget"), Some(0.0));
    assert_eq!(
        value(
            &text,
            "huststore_requests_total{path=\"/put\",status=\"200\"}"
        ),
        Some(4.0)
    );
}

/// The step histograms (`worker/src/pass_timings.rs`), in its order.
const STEPS: [&str; 5] = [
    "huststore_pass_duration_seconds",
    "huststore_write_lock_wait_seconds",
    "huststore_journal_flush_duration_seconds",
    "huststore_checkpoint_sync_duration_seconds",
    "huststore_periodic_sync_duration_seconds",
];

/// Checks that `name` is a well-formed Prometheus histogram in `text` (typed, cumulative
/// buckets with rising bounds ending with `+Inf`, which equals `_count`, and a `_sum`) and
/// returns its `_count`.
fn histogram_count(text: &str, name: &str) -> f64 {
    assert!(
        text.contains(&format!("# TYPE {name} histogram\n")),
        "{name} untyped: {text}"
    );
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(String, f64)> = text
        .lines()
        .filter_map(|l| {
            let (le, n) = l.strip_prefix(&prefix)?.split_once("\"} ")?;
            Some((le.to_string(), n.parse().ok()?))
        })
        .collect();
    assert!(buckets.len() >= 2, "{name}: too few buckets: {text}");
    let (last, total) = buckets.last().unwrap();
    assert_eq!(last, "+Inf", "{name}: the last bucket is not +Inf");
    let mut bound = f64::NEG_INFINITY;
    let mut below = 0.0;
    for (le, n) in &buckets[..buckets.len() - 1] {
        let le: f64 = le.parse().expect("a numeric bound");
        assert!(le > bound, "{name}: bounds do not rise at {le}");
        assert!(*n >= below, "{name}: buckets are not cumulative at {le}");
        bound = le;
        below = *n;
    }
    assert!(*total >= below, "{name}: +Inf below the last bound");
    let count = value(text, &format!("{name}_count")).expect("a _count");
    assert_eq!(count, *total, "{name}: _count is not the +Inf bucket");
    let sum = value(text, &format!("{name}_sum")).expect("a _sum");
    assert!(sum >= 0.0);
    count
}

/// The `_count` of every step histogram, in `STEPS` order.
fn step_counts(addr: std::net::SocketAddr) -> Vec<f64> {
    let text = get(addr, "/metrics").text();
    STEPS.iter().map(|s| histogram_count(&text, s)).collect()
}

#[test]
fn a_durable_write_is_timed_in_every_step_histogram() {
    let server = Server::start(&[("worker_processes", "1")]);
    let addr = server.addr();
    let before = step_counts(addr);
    let mut c = Client::connect(addr);
    for i in 0..5 {
        let r = c.send("POST", &format!("/put?key=t{i}"), &[], b"value");
        assert_eq!(r.status, 200);
    }
    // The pass, the write lock and the journal flush are counted before the reply leaves;
    // the checkpoint thread syncs within a quarter of a second of a change.
    let mut after = Vec::new();
    let grew = wait_until(Duration::from_secs(10), || {
        after = step_counts(addr);
        (0..4).all(|i| after[i] > before[i])
    });
    assert!(grew, "before {before:?}, after {after:?}");
    // The lock is taken once per pass that writes (one environment here): at least once, at
    // most once per put, plus the metrics' own passes write nothing.
    assert!(after[1] - before[1] <= 5.0, "{before:?} {after:?}");
    // Durable mode has no periodic flush.
    assert_eq!(after[4], 0.0);
}

#[test]
fn the_periodic_flush_of_sync_writes_off_is_timed() {
    let server = Server::start(&[("sync_writes", "off"), ("sync_interval", "50ms")]);
    let addr = server.addr();
    assert_eq!(get(addr, "/put?key=p&val=v").status, 200);
    let mut after = Vec::new();
    let grew = wait_until(Duration::from_secs(10), || {
        after = step_counts(addr);
        after[4] > 0.0
    });
    assert!(grew, "{after:?}");
    // No journal without sync_writes: nothing is flushed on the flusher thread.
    assert_eq!(after[2], 0.0);
}
