//! Fail-stop after a failed flush, through the real binary with the test-only fault switch
//! (`debug_fail_flush`, `debug_fail_checkpoint`): the failed pass's clients get no `200`,
//! every later write gets `503` (on every worker, respawned ones too), reads of acknowledged
//! data go on, the error log says it once at `[alert]`, and after `kill -9` of the tree a
//! restart on the same data folder has every acknowledged write. mq mode too, and the
//! periodic sync of `sync_writes off` (kv and mq) as well.

mod common;

use common::{get, try_request, wait_until, Server};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

/// One request on a fresh connection: its status, or `None` when the connection closed
/// without a response.
fn status(addr: SocketAddr, target: &str) -> Option<u16> {
    try_request(addr, "GET", target, b"", TIMEOUT)
        .ok()
        .map(|r| r.status)
}

/// The alert of the fail-stop, which must appear exactly once.
fn alerts(server: &Server) -> usize {
    server
        .error_log()
        .lines()
        .filter(|l| l.contains("[alert]") && l.contains("acknowledges no further write"))
        .count()
}

/// After the failure: writes get 503 on fresh connections (spread over the workers), reads
/// of `acked` still 200; a worker killed and respawned is stopped as well.
fn assert_stopped(server: &Server, acked: &[String], write: impl Fn(usize) -> String) {
    let addr = server.addr();
    for i in 0..20 {
        assert_eq!(
            status(addr, &write(i)),
            Some(503),
            "write {i} after the failure"
        );
    }
    for key in acked {
        assert_eq!(get(addr, &format!("/get?key={key}")).status, 200, "{key}");
    }
    let workers = server.worker_pids();
    assert!(!workers.is_empty());
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(workers[0], libc::SIGKILL) };
    let respawned = wait_until(TIMEOUT, || {
        let now = server.worker_pids();
        now.len() == workers.len() && !now.contains(&workers[0])
    });
    assert!(respawned, "no worker replaced {}", workers[0]);
    for i in 20..40 {
        let s = status(addr, &write(i));
        assert!(s == Some(503), "write {i} after a respawn: {s:?}");
    }
    assert_eq!(alerts(server), 1, "{}", server.error_log());
}

/// `kill -9` of the tree, a restart without the fault switch on the same data folder: every
/// acknowledged write is there (`check`), and writes are acknowledged again.
fn kill_and_restart(server: &mut Server, switch: &str) {
    server.kill_all();
    server.rewrite_conf(&[(switch, "")]);
    server.restart();
}

#[test]
fn a_failed_journal_flush_stops_every_write_until_a_restart() {
    let mut server = Server::start(&[("debug_fail_flush", "11")]);
    let addr = server.addr();
    // One put at a time: each is one pass and one journal flush, counted over both workers.
    let mut acked = Vec::new();
    let mut failed = None;
    for i in 0..20 {
        match status(addr, &format!("/put?key=k{i}&val=v{i}")) {
            Some(200) => acked.push(format!("k{i}")),
            other => {
                failed = Some((i, other));
                break;
            }
        }
    }
    // The 11th flush failed: its client got no reply at all (the pass is committed and may
    // be lost in a machine crash, so neither a 200 nor an error would be true).
    assert_eq!(failed, Some((10, None)), "{}", server.error_log());
    assert_stopped(&server, &acked, |i| format!("/put?key=after{i}&val=x"));
    let log = server.error_log();
    assert!(log.contains("journal fdatasync of"), "{log}");
    kill_and_restart(&mut server, "debug_fail_flush");
    for (i, key) in acked.iter().enumerate() {
        let r = get(server.addr(), &format!("/get?key={key}"));
        assert_eq!((r.status, r.text()), (200, format!("v{i}")), "{key}");
    }
    for i in 0..40 {
        assert_eq!(
            status(server.addr(), &format!("/get?key=after{i}")),
            Some(404),
            "a write answered 503 is there"
        );
    }
    assert!(server
        .error_log()
        .contains("the last daemon stopped after a failed flush"));
    assert_eq!(status(server.addr(), "/put?key=again&val=1"), Some(200));
}

#[test]
fn a_failed_checkpoint_stops_every_write_and_loses_nothing() {
    // Each worker's open takes the first two checkpoints; the third (a periodic one, after
    // the writes below) fails.
    let mut server = Server::start(&[("debug_fail_checkpoint", "3")]);
    let addr = server.addr();
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    let stopped = loop {
        assert!(Instant::now() < deadline, "no checkpoint failed");
        match status(addr, &format!("/put?key=c{i}&val=v{i}")) {
            Some(200) => acked.push(format!("c{i}")),
            // Refused, or (a pass whose flush ended after the failure) not answered.
            Some(503) | None => break true,
            other => panic!("put {i}: {other:?}"),
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(stopped && !acked.is_empty());
    assert_stopped(&server, &acked, |i| format!("/hset?key=t&field=f{i}&val=x"));
    assert!(server.error_log().contains("checkpoint msync of"));
    kill_and_restart(&mut server, "debug_fail_checkpoint");
    for key in &acked {
        let r = get(server.addr(), &format!("/get?key={key}"));
        assert_eq!(r.status, 200, "{key} lost");
        assert_eq!(r.text(), format!("v{}", &key[1..]));
    }
    assert_eq!(status(server.addr(), "/put?key=again&val=1"), Some(200));
}

#[test]
fn mq_mode_never_answers_an_error_for_a_change_it_keeps() {
    let mut server = Server::start(&[
        ("mode", "mq"),
        ("mq_timeout_unit", "1s"),
        ("debug_fail_flush", "6"),
    ]);
    let addr = server.addr();
    let mut acked = Vec::new();
    let mut failed = None;
    for i in 0..20 {
        match status(addr, &format!("/put?queue=q&item=i{i}")) {
            Some(200) => acked.push(format!("i{i}")),
            other => {
                failed = Some(other);
                break;
            }
        }
    }
    // The put whose commit sync failed is kept (it is committed) and gets no answer: a 500
    // would tell the client it failed.
    assert_eq!(failed, Some(None), "{}", server.error_log());
    assert!(acked.len() >= 4, "{acked:?}");
    for i in 0..10 {
        assert_eq!(
            status(addr, &format!("/put?queue=q&item=late{i}")),
            Some(503)
        );
        // /get takes a message: a write too.
        assert_eq!(status(addr, "/get?queue=q&worker=w"), Some(503));
    }
    assert_eq!(status(addr, "/status.html"), Some(200));
    // mq's reads run in the pass's write transaction, which no longer commits: 503 too.
    assert_eq!(status(addr, "/stat_all"), Some(503));
    assert_eq!(alerts(&server), 1, "{}", server.error_log());
    assert!(server.error_log().contains("commit sync of"));
    kill_and_restart(&mut server, "debug_fail_flush");
    let addr = server.addr();
    for item in &acked {
        let r = get(addr, "/get?queue=q&worker=w");
        assert_eq!((r.status, r.text()), (200, item.clone()), "lost {item}");
    }
}

/// `sync_writes off` in `mode`: the periodic sync fails (the 100th of the daemon, both workers
/// flushing every 50 ms: about 2.5 s in, so that a slow start still leaves writes
/// acknowledged before it); every write before it got 200, every one after gets 503 (nothing
/// of a pass waits for the sync, so none goes unanswered), once at `[alert]`; a restart goes
/// on from the data file with every acknowledged write. `put(i)` is the ith write.
/// Returns the restarted server and the numbers of the acknowledged writes.
fn a_failed_periodic_sync_stops_writes(
    mode: &str,
    put: impl Fn(usize) -> String,
) -> (Server, Vec<usize>) {
    let mut server = Server::start(&[
        ("mode", mode),
        ("sync_writes", "off"),
        ("sync_interval", "50ms"),
        ("mq_timeout_unit", "1s"),
        ("debug_fail_flush", "100"),
    ]);
    let addr = server.addr();
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    let refused = loop {
        assert!(Instant::now() < deadline, "no periodic sync failed");
        match status(addr, &put(i)) {
            Some(200) => acked.push(i),
            other => break other,
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(refused, Some(503), "write {i}: {}", server.error_log());
    assert!(!acked.is_empty(), "the sync failed before any write");
    for j in 0..20 {
        assert_eq!(
            status(addr, &put(1000 + j)),
            Some(503),
            "write after the failure"
        );
    }
    let workers = server.worker_pids();
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(workers[0], libc::SIGKILL) };
    assert!(wait_until(TIMEOUT, || {
        let now = server.worker_pids();
        now.len() == workers.len() && !now.contains(&workers[0])
    }));
    for j in 20..40 {
        assert_eq!(status(addr, &put(1000 + j)), Some(503), "after a respawn");
    }
    assert_eq!(status(addr, "/status.html"), Some(200));
    assert_eq!(alerts(&server), 1, "{}", server.error_log());
    let log = server.error_log();
    assert!(
        log.contains("[alert]") && log.contains("the periodic sync of"),
        "{log}"
    );
    kill_and_restart(&mut server, "debug_fail_flush");
    assert!(server
        .error_log()
        .contains("the last daemon stopped after a failed flush; without a journal"));
    let marker = server.dir.join("data/db/journal/fail-stop");
    assert!(!marker.exists(), "the marker outlived the restart");
    (server, acked)
}

#[test]
fn a_failed_periodic_sync_with_sync_writes_off_stops_every_write() {
    let (server, acked) =
        a_failed_periodic_sync_stops_writes("kv", |i| format!("/put?key=p{i}&val=v{i}"));
    let addr = server.addr();
    for i in &acked {
        let r = get(addr, &format!("/get?key=p{i}"));
        assert_eq!((r.status, r.text()), (200, format!("v{i}")), "p{i}");
    }
    assert_eq!(
        status(addr, "/get?key=p1000"),
        Some(404),
        "a write answered 503 is there"
    );
    assert_eq!(status(addr, "/put?key=again&val=1"), Some(200));
}

#[test]
fn mq_mode_a_failed_periodic_sync_stops_every_write() {
    let (server, acked) =
        a_failed_periodic_sync_stops_writes("mq", |i| format!("/put?queue=q&item=m{i}"));
    let addr = server.addr();
    for i in &acked {
        let r = get(addr, "/get?queue=q&worker=w");
        assert_eq!((r.status, r.text()), (200, format!("m{i}")), "lost m{i}");
    }
    assert_eq!(
        status(addr, "/get?queue=q&worker=w"),
        Some(404),
        "a put answered 503 is there"
    );
    assert_eq!(status(addr, "/put?queue=q&item=again"), Some(200));
}
