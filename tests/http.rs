//! The HTTP layer against the real binary: keep-alive, pipelining, bodies, limits, auth and
//! malformed input (`ops.md` "The HTTP layer").

mod common;

use common::{get, request, wait_until, Client, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Reads until the peer closes (or 10 s pass) and returns everything.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    all
}

fn raw_exchange(server: &Server, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(bytes).unwrap();
    String::from_utf8_lossy(&read_to_close(&mut s)).into_owned()
}

#[test]
fn health_paths_answer() {
    let server = Server::start(&[]);
    let r = get(server.addr(), "/status.html");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok\n");
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.header("Content-Length"), Some("3"));
    let r = get(server.addr(), "/version");
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("huststore "), "{}", r.text());
    assert!(r.text().ends_with('\n'));
}

#[test]
fn keep_alive_serves_many_requests_and_errors_keep_it_open() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    for i in 0..20 {
        let r = c.send("GET", "/nope", &[], b"");
        assert_eq!(r.status, 404, "request {i}");
        assert_eq!(r.body, b"");
        let r = c.send("DELETE", "/get?key=a", &[], b"");
        assert_eq!(r.status, 405);
        assert_eq!(r.header("Allow"), Some("GET, POST"));
        let r = c.send("GET", "/status.html", &[], b"");
        assert_eq!(r.status, 200);
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    let mut batch = Vec::new();
    for i in 0..50 {
        batch.extend_from_slice(
            format!(
                "POST /put?key=p{i} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\nvalue{i}",
                5 + i.to_string().len()
            )
            .as_bytes(),
        );
        batch
            .extend_from_slice(format!("GET /get?key=p{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    batch.extend_from_slice(b"GET /nope HTTP/1.1\r\n\r\n");
    c.send_raw(&batch);
    for i in 0..50 {
        let put = c.read_response().expect("put response");
        assert_eq!(put.status, 200, "put {i}");
        assert_eq!(put.header("Version"), Some("1"));
        let got = c.read_response().expect("get response");
        assert_eq!(got.status, 200, "get {i}");
        assert_eq!(got.text(), format!("value{i}"));
    }
    assert_eq!(c.read_response().expect("404").status, 404);
}

#[test]
fn chunked_bodies_are_decoded() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    c.send_raw(
        b"POST /put?key=chunky HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=x\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n",
    );
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    let r = c.send("GET", "/get?key=chunky", &[], b"");
    assert_eq!(r.text(), "hello world");
    // A large chunked body in many chunks.
    let value: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut wire =
        b"PUT /put?key=bigchunky HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in value.chunks(7000) {
        wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        wire.extend_from_slice(piece);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    c.send_raw(&wire);
    assert_eq!(c.read_response().unwrap().status, 200);
    let r = c.send("GET", "/get?key=bigchunky", &[], b"");
    assert_eq!(r.body, value);
}

#[test]
fn expect_100_continue_gets_an_interim_response() {
    let server = Server::start(&[]);
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /put?key=cont HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut buf = [0u8; 25];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"data").unwrap();
    let mut c = Client::from_stream(s);
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(c.send("GET", "/get?key=cont", &[], b"").text(), "data");
}

#[test]
fn limits_answer_414_431_413() {
    let server = Server::start(&[("client_max_body_size", "1k")]);
    // 414: request line over 256 KiB; the connection closes.
    let long = format!("GET /get?key={} HTTP/1.1\r\n\r\n", "a".repeat(262_200));
    let out = raw_exchange(&server, long.as_bytes());
    assert!(
        out.starts_with("HTTP/1.1 414 "),
        "{}",
        &out[..out.len().min(80)]
    );
    // A 64 KiB key percent-encoded fits in the request line.
    let key = "%41".repeat(65_536);
    let r = get(server.addr(), &format!("/get?key={key}"));
    assert_eq!(r.status, 404);
    // 431: header section over 64 KiB.
    let mut big = b"GET /status.html HTTP/1.1\r\n".to_vec();
    for i in 0..700 {
        big.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(100)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let out = raw_exchange(&server, &big);
    assert!(
        out.starts_with("HTTP/1.1 431 "),
        "{}",
        &out[..out.len().min(80)]
    );
    // 413 by Content-Length, and the connection stays usable (the body is skipped).
    let mut c = Client::connect(server.addr());
    let r = c.send("POST", "/put?key=big", &[], &vec![b'x'; 2000]);
    assert_eq!(r.status, 413);
    assert_eq!(r.body, b"");
    let r = c.send("GET", "/get?key=big", &[], b"");
    assert_eq!(r.status, 404);
    // 413 for a chunked body that grows past the limit; then the connection closes.
    let mut wire = b"POST /put?key=big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        wire.extend_from_slice(b"200\r\n");
        wire.extend_from_slice(&[b'y'; 512]);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let out = raw_exchange(&server, &wire);
    assert!(out.starts_with("HTTP/1.1 413 "), "{out}");
}

#[test]
fn malformed_requests_get_400_and_close() {
    let server = Server::start(&[]);
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET / HTTP/7.0\r\n\r\n",
        b"POST /put?key=a HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST /put?key=a HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /put?key=a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
    ] {
        let out = raw_exchange(&server, bad);
        assert!(
            out.starts_with("HTTP/1.1 400 "),
            "{:?} -> {out:?}",
            String::from_utf8_lossy(bad)
        );
        assert!(out.contains("Content-Length: 0"));
    }
    // The daemon keeps serving.
    assert_eq!(get(server.addr(), "/status.html").status, 200);
}

#[test]
fn unsupported_transfer_coding_is_501_and_close() {
    let server = Server::start(&[]);
    let out = raw_exchange(
        &server,
        b"POST /put?key=a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nxxxx",
    );
    assert!(out.starts_with("HTTP/1.1 501 "), "{out}");
}

#[test]
fn bad_percent_escape_is_400_and_keeps_the_connection() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr());
    assert_eq!(c.send("GET", "/get?key=%G1", &[], b"").status, 400);
    assert_eq!(c.send("GET", "/get?key=%4", &[], b"").status, 400);
    assert_eq!(c.send("GET", "/status.html", &[], b"").status, 200);
}

#[test]
fn http10_and_connection_close_are_honoured() {
    let server = Server::start(&[]);
    let out = raw_exchange(&server, b"GET /status.html HTTP/1.0\r\n\r\n");
    assert!(out.starts_with("HTTP/1.0 200 OK\r\n"), "{out}");
    assert!(out.ends_with("ok\n"));
    let out = raw_exchange(
        &server,
        b"GET /status.html HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(out.contains("Connection: close"));
    // HTTP/1.0 keep-alive: two requests on one connection.
    let mut c = Client::connect(server.addr());
    c.send_raw(b"GET /status.html HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    c.send_raw(b"GET /version HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
}

#[test]
fn a_trickled_head_is_cut_off_after_the_header_timeout() {
    let server = Server::start(&[("client_header_timeout", "1s")]);
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let head = b"GET /status.html HTTP/1.1\r\nX-Slow: ";
    let mut closed = false;
    // One byte every 50 ms for at most 4 s: the server must close well before that.
    for i in 0..80 {
        let byte = if i < head.len() { head[i] } else { b'a' };
        if s.write_all(&[byte]).is_err() {
            closed = true;
            break;
        }
        let mut probe = [0u8; 1];
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        if let Ok(0) = s.read(&mut probe) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the trickling client was never cut off");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    assert_eq!(get(server.addr(), "/status.html").status, 200);
}

#[test]
fn idle_keep_alive_connections_do_not_block_others() {
    let server = Server::start(&[]);
    let mut idle = Vec::new();
    for _ in 0..2000 {
        match TcpStream::connect(server.addr()) {
            Ok(s) => idle.push(s),
            Err(_) => break, // a low fd limit in the test process; what we have is enough
        }
    }
    assert!(idle.len() >= 500, "only {} connections opened", idle.len());
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(get(server.addr(), "/status.html").status, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(idle);
}

#[test]
fn basic_auth_guards_every_path_but_health() {
    let dir = std::env::temp_dir().join(format!("huststore-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("htpasswd");
    // bob's {SHA} line is base64(sha1("secret")), as `htpasswd -s` writes it.
    std::fs::write(
        &file,
        "alice:{PLAIN}wonder\nbob:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n",
    )
    .unwrap();
    let server = Server::start(&[("auth_basic_user_file", file.to_str().unwrap())]);
    let mut c = Client::connect(server.addr());
    for target in ["/get?key=a", "/nope", "/put?key=a&val=b", "/metrics"] {
        let r = c.send("GET", target, &[], b"");
        assert_eq!(r.status, 401, "{target}");
        assert_eq!(
            r.header("WWW-Authenticate"),
            Some("Basic realm=\"huststore\"")
        );
        assert_eq!(r.header("VerError"), None);
        assert_eq!(r.body, b"");
    }
    for target in ["/status.html", "/version"] {
        assert_eq!(c.send("GET", target, &[], b"").status, 200, "{target}");
    }
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let alice = format!("Basic {}", b64("alice:wonder"));
    let bob = format!("Basic {}", b64("bob:secret"));
    let wrong = format!("Basic {}", b64("bob:nope"));
    let r = c.send("GET", "/put?key=a&val=b", &[("Authorization", &alice)], b"");
    assert_eq!(r.status, 200);
    let r = c.send("GET", "/get?key=a", &[("Authorization", &bob)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "b");
    let r = c.send("GET", "/get?key=a", &[("Authorization", &wrong)], b"");
    assert_eq!(r.status, 401);
    let r = c.send("GET", "/nope", &[("Authorization", &alice)], b"");
    assert_eq!(r.status, 404);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn debug_sleep_does_not_block_the_loop() {
    let server = Server::start(&[("worker_processes", "1")]);
    let addr = server.addr();
    let slow = std::thread::spawn(move || {
        let started = Instant::now();
        let r = get(addr, "/debug/sleep?ms=1000");
        (r.status, started.elapsed())
    });
    // While the slow request is parked, the only worker keeps answering.
    assert!(wait_until(Duration::from_secs(5), || {
        get(addr, "/status.html").status == 200
    }));
    let started = Instant::now();
    for _ in 0..10 {
        assert_eq!(get(addr, "/status.html").status, 200);
    }
    assert!(started.elapsed() < Duration::from_millis(900));
    let (status, took) = slow.join().unwrap();
    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(950), "{took:?}");
}

#[test]
fn a_client_that_disappears_mid_request_does_not_hurt() {
    let server = Server::start(&[]);
    for partial in [
        &b"POST /put?key=x HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc"[..],
        b"GET /get?key=x HTTP/1.1\r\nHost",
        b"POST /put?key=x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ] {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.write_all(partial).unwrap();
        drop(s);
    }
    let _ = request(server.addr(), "GET", "/status.html", b"");
    assert_eq!(get(server.addr(), "/get?key=x").status, 404);
}

#[test]
fn access_log_lines_in_combined_format_and_reopen() {
    let server = Server::start(&[
        ("access_log", "{dir}/access.log"),
        ("worker_processes", "1"),
    ]);
    let path = server.dir.join("access.log");
    let mut c = Client::connect(server.addr());
    let r = c.send("GET", "/status.html", &[("User-Agent", "tester/1.0")], b"");
    assert_eq!(r.status, 200);
    let r = c.send("GET", "/nope?x=\"y\"", &[("Referer", "http://r/")], b"");
    assert_eq!(r.status, 404);
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    // The harness's own readiness probes are logged too: find our two lines by content.
    assert!(wait_until(Duration::from_secs(5), || read().contains("/nope")));
    let text = read();
    let find = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or("")
            .to_string()
    };
    let lines = [find("tester/1.0"), find("/nope")];
    assert!(lines[0].starts_with("127.0.0.1 - - ["), "{text}");
    assert!(
        lines[0].contains("] \"GET /status.html HTTP/1.1\" 200 3 \"-\" \"tester/1.0\" "),
        "{text}"
    );
    assert!(
        lines[1].contains("\"GET /nope?x=\\x22y\\x22 HTTP/1.1\" 404 0 \"http://r/\" \"-\" "),
        "{text}"
    );
    // The request time in seconds with milliseconds closes each line.
    let time = lines[0].rsplit(' ').next().unwrap();
    assert!(
        time.len() >= 5 && time.as_bytes()[time.len() - 4] == b'.',
        "{time}"
    );
    // USR1 (reopen) after a rename: new lines go to a new file.
    let rotated = server.dir.join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    let out = server.command(&["-s", "reopen"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(wait_until(Duration::from_secs(5), || {
        let _ = get(server.addr(), "/version");
        read().contains("\"GET /version HTTP/1.1\" 200")
    }));
    assert!(std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("tester/1.0"));
}
