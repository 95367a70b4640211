//! The connection's answers to the loop, over a real loopback socket: what it serves, when
//! its replies may leave (commit, journal flush), and what its timers mean.

use super::*;
use crate::flusher::Tickets;

const LIMITS: Limits = Limits {
    max_body: 1 << 20,
    header_timeout: Duration::from_secs(10),
    keepalive_timeout: Duration::from_secs(60),
};
/// No flusher: every ticket durable, none failed.
const NO_FLUSHER: Tickets = Tickets {
    issued: 0,
    durable: u64::MAX,
    failed: 0,
};
/// Flush 1 handed over, not done yet.
const OUTSTANDING: Tickets = Tickets {
    issued: 1,
    durable: 0,
    failed: 0,
};
const DURABLE: Tickets = Tickets {
    issued: 1,
    durable: 1,
    failed: 0,
};

struct Peer {
    conn: Conn,
    client: std::net::TcpStream,
    metrics: SharedMetrics,
}

fn connected() -> Peer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, addr) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    Peer {
        conn: Conn::new(TcpStream::from_std(server), Some(addr), 1, Instant::now()),
        client,
        metrics: SharedMetrics::create().unwrap(),
    }
}

impl Peer {
    /// The client sends `request`; the connection serves it with `reply` (or parks it).
    fn serve(&mut self, request: &str, outcome: impl Fn() -> Outcome) -> Served {
        self.conn.inbuf.extend_from_slice(request.as_bytes());
        let mut dispatch = |_: &Head, _: &[u8]| outcome();
        let step = self.conn.process(&LIMITS, Instant::now(), &mut dispatch);
        self.conn.after_serving(step)
    }

    fn get(&mut self) -> Served {
        self.serve("GET /status HTTP/1.1\r\nHost: x\r\n\r\n", || {
            Outcome::Reply(Response::text("ok\n"))
        })
    }

    fn after_commit(
        &mut self,
        committed: crate::flusher::Committed,
        tickets: Tickets,
    ) -> AfterCommit {
        self.conn.after_commit(committed, &tickets, &self.metrics)
    }

    /// What the client has received so far.
    fn received(&mut self) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        while let Ok(n) = self.client.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }
}

fn statuses(received: &str) -> Vec<&str> {
    received
        .lines()
        .filter(|l| l.starts_with("HTTP/1.1 "))
        .map(|l| &l[9..12])
        .collect()
}

#[test]
fn a_reply_with_no_flush_outstanding_is_written_at_the_commit() {
    let mut p = connected();
    assert_eq!(p.get(), Served::Write);
    assert_eq!(
        p.after_commit(Ok(()), NO_FLUSHER),
        AfterCommit::Sent { watch: None }
    );
    assert_eq!(statuses(&p.received()), ["200"]);
}

#[test]
fn a_reply_queued_while_a_flush_is_outstanding_waits_until_it_is_durable() {
    let mut p = connected();
    assert_eq!(p.get(), Served::Write);
    assert_eq!(p.after_commit(Ok(()), OUTSTANDING), AfterCommit::Hold);
    assert!(p.conn.still_held(&OUTSTANDING));
    assert_eq!(p.received(), "", "a held reply left before its flush");
    assert!(!p.conn.still_held(&DURABLE));
    assert_eq!(
        p.after_commit(Ok(()), DURABLE),
        AfterCommit::Sent { watch: None }
    );
    assert_eq!(statuses(&p.received()), ["200"]);
}

#[test]
fn a_failed_flush_closes_without_the_reply_even_once_a_later_one_is_durable() {
    let mut p = connected();
    p.get();
    assert_eq!(p.after_commit(Ok(()), OUTSTANDING), AfterCommit::Hold);
    let later = Tickets {
        issued: 2,
        durable: 2,
        failed: 1,
    };
    assert!(!p.conn.still_held(&later));
    assert_eq!(p.after_commit(Ok(()), later), AfterCommit::FlushFailed);
    assert_eq!(p.received(), "");
}

#[test]
fn a_failed_commit_turns_the_passs_replies_into_500s_and_closes() {
    let mut p = connected();
    p.get();
    p.get();
    assert_eq!(p.after_commit(Err(500), NO_FLUSHER), AfterCommit::Close);
    assert_eq!(statuses(&p.received()), ["500", "500"]);
}

#[test]
fn a_later_failed_commit_leaves_the_held_replies_of_an_earlier_pass_alone() {
    let mut p = connected();
    p.get();
    assert_eq!(p.after_commit(Ok(()), OUTSTANDING), AfterCommit::Hold);
    assert_eq!(p.get(), Served::Write);
    assert_eq!(p.after_commit(Err(500), OUTSTANDING), AfterCommit::Hold);
    // The 500 closes the connection once everything is out.
    assert_eq!(p.after_commit(Ok(()), DURABLE), AfterCommit::Close);
    assert_eq!(statuses(&p.received()), ["200", "500"]);
}

#[test]
fn a_reply_the_socket_does_not_take_at_once_asks_for_writability_until_it_is_out() {
    let mut p = connected();
    let big = || Outcome::Reply(Response::text(vec![b'x'; 32 << 20]));
    p.serve("GET /get?key=k HTTP/1.1\r\nHost: x\r\n\r\n", big);
    let both = Interest::READABLE | Interest::WRITABLE;
    assert_eq!(
        p.after_commit(Ok(()), NO_FLUSHER),
        AfterCommit::Pending { watch: Some(both) }
    );
    let mut received = p.received().len();
    let mut answer = p.after_commit(Ok(()), NO_FLUSHER);
    for _ in 0..10_000 {
        if answer != (AfterCommit::Pending { watch: None }) {
            break;
        }
        received += p.received().len();
        answer = p.after_commit(Ok(()), NO_FLUSHER);
    }
    assert_eq!(
        answer,
        AfterCommit::Sent {
            watch: Some(Interest::READABLE)
        }
    );
    received += p.received().len();
    assert!(received > 32 << 20, "{received} bytes received");
}

#[test]
fn a_parked_request_times_out_at_its_own_deadline() {
    let mut p = connected();
    let deadline = Instant::now() + Duration::from_millis(50);
    let park = || Outcome::Park { deadline };
    let served = p.serve("GET /debug/sleep?ms=50 HTTP/1.1\r\nHost: x\r\n\r\n", park);
    assert_eq!(served, Served::Wait);
    assert!(p.conn.is_parked());
    assert_eq!(p.conn.schedule(&LIMITS), Some(deadline));
    assert_eq!(p.conn.schedule(&LIMITS), None, "scheduled twice");
    let early = deadline - Duration::from_millis(1);
    assert_eq!(p.conn.expire(early, early, &LIMITS), Expiry::NotYet);
    assert_eq!(p.conn.expire(deadline, deadline, &LIMITS), Expiry::Parked);
    let mut no_more = |_: &Head, _: &[u8]| -> Outcome { unreachable!() };
    let resp = Response::text("slept\n");
    let step = p.conn.finish_parked(&resp, &LIMITS, deadline, &mut no_more);
    assert!(!p.conn.is_parked());
    assert_eq!(p.conn.after_serving(step), Served::Write);
    assert_eq!(
        p.after_commit(Ok(()), NO_FLUSHER),
        AfterCommit::Sent { watch: None }
    );
    assert!(p.received().ends_with("slept\n"));
}

#[test]
fn the_client_of_a_parked_request_leaving_closes_it() {
    let mut p = connected();
    let deadline = Instant::now() + Duration::from_secs(5);
    let served = p.serve("GET /sub HTTP/1.1\r\nHost: x\r\n\r\n", || Outcome::Park {
        deadline,
    });
    assert_eq!(served, Served::Wait);
    p.conn.peer_closed = true;
    assert_eq!(p.conn.after_serving(Step::Continue), Served::Close);
}

#[test]
fn an_idle_keep_alive_connection_expires_into_a_close() {
    let mut p = connected();
    let at = p.conn.schedule(&LIMITS).unwrap();
    assert_eq!(at, p.conn.since + LIMITS.keepalive_timeout);
    assert_eq!(p.conn.expire(at, at, &LIMITS), Expiry::Close);
}

#[test]
fn a_retiring_connection_closes_after_the_request_in_progress() {
    let mut p = connected();
    p.conn.drain();
    assert_eq!(p.get(), Served::Write);
    assert_eq!(p.after_commit(Ok(()), NO_FLUSHER), AfterCommit::Close);
    assert!(p.received().contains("Connection: close"));
}
