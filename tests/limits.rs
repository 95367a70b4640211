//! nginx-like limits through the real binary: `worker_connections` holds new connections in
//! the listen queue until one closes, and a worker out of descriptors (`worker_rlimit_nofile`)
//! logs its accept failures at most once a second, pauses, and serves again once descriptors
//! are free (issue 12: a worker logged `accept failed: Too many open files` 1,900 times).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{wait_until, Client, Server};

fn send_status_request(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /status.html HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write a request");
}

/// Reads until a whole status line is there; `None` on a timeout or EOF first.
fn status_line(stream: &mut TcpStream, timeout: Duration) -> Option<String> {
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    text.lines().next().map(str::to_string)
}

#[test]
fn worker_connections_holds_new_connections_until_one_closes() {
    let server = Server::start(&[("worker_processes", "1"), ("worker_connections", "2")]);
    let mut first = Client::connect(server.addr());
    let mut second = Client::connect(server.addr());
    assert_eq!(first.send("GET", "/status.html", &[], b"").status, 200);
    assert_eq!(second.send("GET", "/status.html", &[], b"").status, 200);
    let mut third = TcpStream::connect(server.addr()).expect("the kernel queues it");
    send_status_request(&mut third);
    assert_eq!(
        status_line(&mut third, Duration::from_millis(700)),
        None,
        "a third connection was served past worker_connections 2"
    );
    drop(first);
    let line = status_line(&mut third, Duration::from_secs(10));
    assert_eq!(line.as_deref(), Some("HTTP/1.1 200 OK"));
    assert!(
        server
            .error_log()
            .contains("worker_connections (2) reached"),
        "{}",
        server.error_log()
    );
}

#[test]
fn a_worker_out_of_descriptors_logs_once_a_second_pauses_and_recovers() {
    let server = Server::start(&[("worker_processes", "1"), ("worker_rlimit_nofile", "64")]);
    // More connections than the worker has descriptors for: the rest wait in the queue.
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(server.addr()).expect("connect");
        send_status_request(&mut s);
        held.push(s);
    }
    let failed = |log: &str| log.matches("accept failed").count();
    assert!(
        wait_until(Duration::from_secs(10), || failed(&server.error_log()) >= 1),
        "no accept failure logged at the descriptor limit: {}",
        server.error_log()
    );
    let start = Instant::now();
    let before = failed(&server.error_log());
    // Keep clients arriving at the limit (each a readiness event): without the pause and the
    // rate limit it logged a line per arrival.
    let window = Duration::from_secs(2);
    while start.elapsed() < window && held.len() < 400 {
        if let Ok(mut s) = TcpStream::connect(server.addr()) {
            send_status_request(&mut s);
            held.push(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let during = failed(&server.error_log()) - before;
    assert!(
        during <= 3,
        "{during} accept failures logged in {window:?}: {}",
        server.error_log()
    );
    // Free every descriptor: the worker serves again, no restart.
    drop(held);
    let recovered = wait_until(Duration::from_secs(10), || {
        common::try_request(
            server.addr(),
            "GET",
            "/status.html",
            b"",
            Duration::from_secs(2),
        )
        .is_ok_and(|r| r.status == 200)
    });
    assert!(recovered, "not serving after the connections closed");
}
