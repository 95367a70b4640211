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
