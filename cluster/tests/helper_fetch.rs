//! The helper's `Fetch` and `Report` requests over its local socket (`helper::run` on a
//! one-node cluster whose client address is a tiny HTTP server of the test's): a fetch is a
//! GET marked `Hust-Forwarded` with the client's `Authorization`, answered as a `Reply` and
//! made over one kept-alive connection; an unknown node, a server that sends garbage and an
//! unknown report are `Unavailable`; a report is a `Reply` with its content type. Every wait
//! has a deadline, and the server and the helper are stopped at the end.

use std::fs;
use std::io::{Read, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cluster::helper::SOCKET;
use cluster::local::{decode_prefix, Frame, Message};
use tokio::sync::watch;

const SECRET: &str = "0123456789abcdef0123";

/// A temp folder, removed at the end.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A tiny keep-alive HTTP server: `/garbage` answers bytes that are no HTTP and closes;
/// anything else `200`, `Version: 7`, the request's target as body.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s, c, h) = (stop.clone(), connections.clone(), heads.clone());
        let thread = thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::Relaxed) && Instant::now() < until {
                match listener.accept() {
                    Ok((conn, _)) => {
                        c.fetch_add(1, Ordering::Relaxed);
                        let (s, h) = (s.clone(), h.clone());
                        thread::spawn(move || serve(conn, &s, &h));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            port,
            stop,
            connections,
            heads,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut conn: std::net::TcpStream, stop: &AtomicBool, heads: &Mutex<Vec<String>>) {
    conn.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut buf = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let target = head.split(' ').nth(1).unwrap_or_default().to_string();
            heads.lock().expect("heads").push(head);
            if target == "/garbage" {
                let _ = conn.write_all(b"\xff\xfe not http at all\r\n\r\n");
                return;
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\nVersion: 7\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{target}",
                target.len()
            );
            if conn.write_all(reply.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let mut chunk = [0u8; 4096];
        match conn.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    }
}

/// The helper's socket, as a worker's link would use it (blocking, with a read deadline).
fn ask(stream: &mut UnixStream, buf: &mut Vec<u8>, id: u64, message: Message) -> Message {
    let mut out = Vec::new();
    Frame { id, message }.encode(&mut out);
    stream.write_all(&out).expect("send");
    loop {
        if let Some((f, used)) = decode_prefix(buf).expect("a well-formed answer") {
            buf.drain(..used);
            assert_eq!(f.id, id);
            return f.message;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).expect("an answer in time");
        assert!(n > 0, "the helper closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn fetch(node: u32, target: &str) -> Message {
    Message::Fetch {
        node,
        target: target.as_bytes().to_vec(),
        authorization: b"Basic dTpw".to_vec(),
    }
}

#[test]
fn the_helper_fetches_from_a_nodes_client_address_and_answers_reports() {
    let root = std::env::temp_dir().join(format!("cluster-helper-fetch-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).expect("temp dir");
    let root = TempDir(root);
    let secret = root.0.join("cluster.secret");
    fs::write(&secret, format!("{SECRET}\n")).expect("secret");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod");
    let server = Server::start();
    let peer = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let client = server.port;
    let text = format!(
        "listen 127.0.0.1:{client};\ndata_dir {};\nmap_size 64m;\ncluster {{\n    name test;\n    node_id n0;\n    node n0 127.0.0.1:{client} 127.0.0.1:{peer};\n    groups 2;\n    replicas 1;\n    secret {};\n    timeout 2s;\n    election_timeout 300ms;\n}}\n",
        root.0.display(),
        secret.display()
    );
    let conf = conf::parse_str(&text, &root.0.join("n0.conf")).expect("conf");
    let (stop, stopped) = watch::channel(false);
    let runner = thread::spawn(move || cluster::helper::run(&conf, stopped, || {}));
    let until = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        match UnixStream::connect(root.0.join(SOCKET)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < until => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("the helper's socket never came: {e}"),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = Vec::new();

    // Two fetches: the answers relayed, both over one kept-alive connection.
    for (id, target) in [(1, "/get?key=a%20b"), (2, "/hget?tb=t&key=k")] {
        let got = ask(&mut stream, &mut buf, id, fetch(0, target));
        let Message::Reply {
            status,
            headers,
            body,
        } = got
        else {
            panic!("{target}: {got:?}");
        };
        assert_eq!(status, 200);
        assert_eq!(body, target.as_bytes());
        assert!(headers.contains(&("Version".to_string(), "7".to_string())));
        assert!(
            !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-length")),
            "framing headers are not relayed"
        );
    }
    assert_eq!(server.connections.load(Ordering::Relaxed), 1);
    {
        let heads = server.heads.lock().expect("heads");
        assert!(heads[0].starts_with("GET /get?key=a%20b HTTP/1.1\r\n"));
        assert!(heads[0].contains("\r\nHust-Forwarded: 1"));
        assert!(heads[0].contains("\r\nAuthorization: Basic dTpw"));
    }

    // An unknown node, garbage from the server, a target that is no target: Unavailable.
    for (id, m) in [
        (3, fetch(9, "/get?key=a")),
        (4, fetch(0, "/garbage")),
        (5, fetch(0, "no slash")),
        (6, fetch(0, "/get?key=a b")),
    ] {
        let got = ask(&mut stream, &mut buf, id, m);
        assert!(matches!(got, Message::Unavailable { .. }), "{id}: {got:?}");
    }
    // The connection the garbage came on is gone; the next fetch opens a fresh one.
    let got = ask(&mut stream, &mut buf, 7, fetch(0, "/exist?key=x"));
    assert!(matches!(got, Message::Reply { status: 200, .. }), "{got:?}");

    // Reports: JSON with its content type; the metrics as Prometheus text; an unknown one.
    let got = ask(&mut stream, &mut buf, 8, Message::Report { what: 1 });
    let Message::Reply {
        status,
        headers,
        body,
    } = got
    else {
        panic!("{got:?}");
    };
    assert_eq!(status, 200);
    // JSON labelled text/plain, as every body of the kv API (kv-api.md D18).
    assert_eq!(
        headers,
        vec![("Content-Type".to_string(), "text/plain".to_string())]
    );
    assert!(body.starts_with(b"{"), "{}", String::from_utf8_lossy(&body));
    let got = ask(&mut stream, &mut buf, 9, Message::Report { what: 4 });
    assert!(
        matches!(&got, Message::Reply { status: 200, headers, .. }
            if headers[0].1.starts_with("text/plain; version=0.0.4")),
        "{got:?}"
    );
    let got = ask(&mut stream, &mut buf, 10, Message::Report { what: 99 });
    assert!(matches!(got, Message::Unavailable { .. }), "{got:?}");

    let _ = stop.send(true);
    assert_eq!(runner.join().expect("run returns"), 0);
    drop(server);
}
