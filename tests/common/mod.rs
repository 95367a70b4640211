//! The one helper every integration test drives the real binary through: a temp conf on a free
//! loopback port, start and wait until it answers, signals, a hand-written HTTP/1.1 client,
//! `wait_until(deadline, condition)`, and a `Drop` that stops the daemon and fails the test on
//! panic lines in the error log. Only std and libc.

#![allow(dead_code)] // each test file uses a part of it

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_huststore");

/// How long a daemon may take to come up or to stop.
const START_DEADLINE: Duration = Duration::from_secs(10);
const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// A huststore daemon (master and workers) on its own temp folder and port.
pub struct Server {
    pub port: u16,
    /// Temp folder holding the conf, pid file, error log and data; removed on drop.
    pub dir: PathBuf,
    pub conf_path: PathBuf,
    /// The overrides the conf was last written with (start's, then each rewrite's on top).
    layers: Vec<Vec<(String, String)>>,
    /// The master when started in the foreground by this helper.
    child: Option<Child>,
    /// The master's pid (the child's, or the pid file's for a daemon started with `run`).
    master: Option<i32>,
}

/// The directives of every test conf, before overrides. `{port}` and `{dir}` are filled in.
const BASE: &[(&str, &str)] = &[
    ("daemon", "off"),
    ("mode", "kv"),
    ("worker_processes", "2"),
    ("listen", "127.0.0.1:{port}"),
    ("pid", "{dir}/huststore.pid"),
    ("error_log", "{dir}/error.log info"),
    ("data_dir", "{dir}/data"),
    ("map_size", "64m"),
    ("cache_size", "16m"),
    ("debug_endpoints", "on"),
];

impl Server {
    /// Starts the real binary (`-c conf`) on a temp conf: daemon off; mode kv;
    /// worker_processes 2; listen 127.0.0.1:<free port>; pid/error_log(info)/data_dir inside
    /// `dir`; map_size 64m; cache_size 16m; debug_endpoints on. Each (directive, value) of
    /// `overrides` replaces every line of that directive (value "" removes it; a directive
    /// given several times, like `listen`, gets one line per value); `{port}` and `{dir}` in a
    /// value are replaced by the port and the folder. Polls GET /status.html until 200 and the
    /// pid file exists (deadline 10 s), retrying with another port if the port was taken.
    /// Panics with the error log's content if it does not come up.
    pub fn start(overrides: &[(&str, &str)]) -> Server {
        let mut server = Server::prepare(overrides);
        for attempt in 0.. {
            match server.try_start() {
                Ok(()) => return server,
                Err(stderr) if stderr.contains("Address already in use") && attempt < 5 => {
                    server.port = free_port();
                    server.write_conf();
                }
                Err(stderr) => panic!(
                    "huststore did not start: {stderr}\n--- error log ---\n{}",
                    server.error_log()
                ),
            }
        }
        unreachable!()
    }

    /// A temp folder and conf as [`Server::start`] writes them, without starting anything (for
    /// tests that run the binary themselves: `-t`, `-s`, startup errors, `daemon on`).
    pub fn prepare(overrides: &[(&str, &str)]) -> Server {
        let dir = temp_dir();
        let server = Server {
            port: free_port(),
            conf_path: dir.join("huststore.conf"),
            dir,
            layers: vec![owned(overrides)],
            child: None,
            master: None,
        };
        server.write_conf();
        server
    }

    /// Starts the master in the foreground on the current conf and waits until it serves.
    /// Err carries the master's stderr when it exited (or a description when it hung).
    fn try_start(&mut self) -> Result<(), String> {
        let stdout = std::fs::File::create(self.dir.join("stdout.txt")).map_err(err_text)?;
        let stderr = std::fs::File::create(self.dir.join("stderr.txt")).map_err(err_text)?;
        let child = Command::new(BIN)
            .arg("-c")
            .arg(&self.conf_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(err_text)?;
        self.master = Some(child.id() as i32);
        self.child = Some(child);
        let ready = wait_until(START_DEADLINE, || {
            self.exited().is_some() || (self.pid_file().exists() && self.serves())
        });
        if let Some(status) = self.exited() {
            self.master = None;
            return Err(format!("{status}: {}", self.stderr_text().trim_end()));
        }
        if !ready {
            self.kill_all();
            return Err(format!(
                "not serving after {} s; stderr: {}",
                START_DEADLINE.as_secs(),
                self.stderr_text().trim_end()
            ));
        }
        Ok(())
    }

    /// Whether GET /status.html answers 200 right now.
    fn serves(&self) -> bool {
        try_request(
            self.addr(),
            "GET",
            "/status.html",
            b"",
            Duration::from_secs(2),
        )
        .is_ok_and(|r| r.status == 200)
    }

    /// The foreground master's exit status, if it has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// What the foreground master printed on stderr.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.txt")).unwrap_or_default()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("huststore.pid")
    }

    pub fn error_log_path(&self) -> PathBuf {
        self.dir.join("error.log")
    }

    pub fn master_pid(&self) -> i32 {
        self.master.expect("the master is not running")
    }

    /// The live (not zombie) children of the master, from /proc, sorted.
    pub fn worker_pids(&self) -> Vec<i32> {
        match self.master {
            Some(master) => children_of(master),
            None => Vec::new(),
        }
    }

    /// Sends `sig` to the master.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) has no memory effects.
        let rc = unsafe { libc::kill(self.master_pid(), sig) };
        assert_eq!(rc, 0, "kill {sig}: {}", io::Error::last_os_error());
    }

    pub fn error_log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.error_log_path()).unwrap_or_default())
            .into_owned()
    }

    /// Rewrites the conf file (for HUP tests): the base, then start's overrides, then these
    /// (and earlier rewrites'), each replacing the directives it names.
    pub fn rewrite_conf(&mut self, overrides: &[(&str, &str)]) {
        self.layers.push(owned(overrides));
        self.write_conf();
    }

    /// Replaces the conf file with `text` as is (for confs the overrides cannot express).
    pub fn write_conf_text(&self, text: &str) {
        std::fs::write(&self.conf_path, text).expect("write the conf");
    }

    fn write_conf(&self) {
        let mut lines: Vec<(String, String)> = owned(BASE);
        for layer in &self.layers {
            let mut seen: Vec<&str> = Vec::new();
            for (name, value) in layer {
                if !seen.contains(&name.as_str()) {
                    seen.push(name);
                    lines.retain(|(n, _)| n != name);
                }
                if !value.is_empty() {
                    lines.push((name.clone(), value.clone()));
                }
            }
        }
        let mut text = String::from("# written by tests/common\n");
        for (name, value) in lines {
            let value = value
                .replace("{port}", &self.port.to_string())
                .replace("{dir}", &self.dir.display().to_string());
            text.push_str(&format!("{name} {value};\n"));
        }
        self.write_conf_text(&text);
    }

    /// Runs the binary with `-c conf` and `args`, with a deadline; kills it if it hangs.
    pub fn command(&self, args: &[&str]) -> Output {
        let mut all = vec!["-c", self.conf_path.to_str().expect("utf-8 temp path")];
        all.extend_from_slice(args);
        run_bin(&all, STOP_DEADLINE)
    }

    /// Adopts a master started outside this helper (`daemon on`): its pid is the pid file's.
    pub fn adopt_daemon(&mut self) -> i32 {
        let pid = read_pid(&self.pid_file()).expect("the daemon wrote no pid file");
        self.master = Some(pid);
        pid
    }

    /// kill -9 the whole tree (the master and every child) at once and waits until they are
    /// gone.
    pub fn kill_all(&mut self) {
        let Some(master) = self.master.take() else {
            return;
        };
        // Stopped first, the master forks no replacement between the reading of its children
        // and their deaths: every process of the tree is in the list, and all die within
        // microseconds of each other, before any can react to another's death.
        // SAFETY: kill(2) has no memory effects.
        unsafe { libc::kill(master, libc::SIGSTOP) };
        let workers = children_of(master);
        for pid in workers.iter().copied().chain(std::iter::once(master)) {
            // SAFETY: kill(2) has no memory effects.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        let gone = wait_until(STOP_DEADLINE, || {
            std::iter::once(master)
                .chain(workers.iter().copied())
                .all(|p| !is_alive(p))
        });
        assert!(gone, "processes of master {master} survived SIGKILL");
    }

    /// Starts again on the same folder, conf and port, and waits until it serves.
    pub fn restart(&mut self) {
        if let Err(e) = self.try_start() {
            panic!(
                "huststore did not restart: {e}\n--- error log ---\n{}",
                self.error_log()
            );
        }
    }

    /// Fast stop (`-s stop` semantics, by SIGTERM to the master); waits and returns its status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit()
    }

    /// Waits (deadline) for the foreground master to exit and returns its status; panics if it
    /// does not.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut status = None;
        wait_until(STOP_DEADLINE, || {
            status = self.exited();
            status.is_some()
        });
        match status {
            Some(status) => {
                let master = self.master.take();
                self.child = None;
                // Its workers exit on their own (they were told, or get the parent-death
                // signal); wait for them so the next test step sees a quiet system.
                if let Some(m) = master {
                    wait_until(STOP_DEADLINE, || children_of(m).is_empty());
                }
                status
            }
            None => {
                self.kill_all();
                panic!("the master did not exit within {STOP_DEADLINE:?}");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(master) = self.master {
            let workers = children_of(master);
            if is_alive(master) {
                // SAFETY: kill(2) has no memory effects.
                unsafe { libc::kill(master, libc::SIGTERM) };
            }
            let stopped = wait_until(STOP_DEADLINE, || {
                if let Some(child) = self.child.as_mut() {
                    let _ = child.try_wait();
                }
                !is_alive(master) && workers.iter().all(|&p| !is_alive(p))
            });
            if !stopped {
                self.kill_all();
            }
            if let Some(mut child) = self.child.take() {
                let _ = child.wait();
            }
            if !stopped && !std::thread::panicking() {
                let log = self.error_log();
                let _ = std::fs::remove_dir_all(&self.dir);
                panic!("master {master} did not stop on SIGTERM within {STOP_DEADLINE:?}\n{log}");
            }
        }
        let log = self.error_log();
        if !std::thread::panicking() {
            assert!(!log.contains("panic"), "the error log has a panic:\n{log}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The pid of a cluster node's helper: the last "started cluster helper PID" line of the
/// error log whose process is still a child of the master (workers are the other children).
pub fn cluster_helper_pid(server: &Server) -> Option<i32> {
    let log = server.error_log();
    let pid: i32 = log
        .lines()
        .rev()
        .find_map(|l| l.split("started cluster helper ").nth(1))?
        .trim()
        .parse()
        .ok()?;
    children_of(server.master_pid())
        .contains(&pid)
        .then_some(pid)
}

/// POSTs /put?key=`key` through `server` until a 200 (bounded: elections, a helper coming
/// back; at most 30 s); panics with the last answer otherwise.
pub fn put_until_ok(server: &Server, key: &str, value: &str) {
    let target = format!("/put?key={key}");
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(30), || {
        let r = try_request(
            server.addr(),
            "POST",
            &target,
            value.as_bytes(),
            Duration::from_secs(10),
        );
        match r {
            Ok(r) if r.status == 200 => true,
            Ok(r) => {
                last = format!("{} {:?}", r.status, r.header("Cluster-Error"));
                std::thread::sleep(Duration::from_millis(100));
                false
            }
            Err(e) => {
                last = e.to_string();
                false
            }
        }
    });
    assert!(
        ok,
        "no 200 for {target} on {}: {last}\n{}",
        server.addr(),
        server.error_log()
    );
}

/// Runs the binary with `args` and a deadline; a process that hangs is killed and the test
/// fails.
pub fn run_bin(args: &[&str], deadline: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn huststore");
    let done = wait_until(deadline, || child.try_wait().ok().flatten().is_some());
    if !done {
        let _ = child.kill();
        let _ = child.wait();
        panic!("huststore {args:?} did not finish within {deadline:?}");
    }
    child.wait_with_output().expect("collect the output")
}

/// How long a storm-like test runs: `HUSTSTORE_STORM_SECS` seconds (2 to 600), else
/// `default_secs` (what CI can afford).
pub fn storm_length(default_secs: u64) -> Duration {
    let secs = std::env::var("HUSTSTORE_STORM_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_secs);
    Duration::from_secs(secs.clamp(2, 600))
}

/// Polls `f` every ~10 ms until it returns true (→ true) or `timeout` passes (→ false).
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A free loopback port: bind port 0, read it, close.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A new empty folder: `<temp>/huststore-test-<pid>-<counter>-<nanos>`.
pub fn temp_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "huststore-test-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create the temp folder");
    dir
}

/// The pid in a pid file.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` exists and is not a zombie (nothing may reap orphans in a container, so a
/// dead process can linger as a zombie).
pub fn is_alive(pid: i32) -> bool {
    match proc_stat(pid) {
        Some((state, _)) => state != 'Z' && state != 'X',
        None => false,
    }
}

/// The live children of `parent`, sorted.
pub fn children_of(parent: i32) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            matches!(proc_stat(pid), Some((state, ppid)) if ppid == parent && state != 'Z' && state != 'X')
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// (state, ppid) of a process, from /proc/PID/stat.
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The number of connections waiting in the accept queue of the socket listening on
/// 127.0.0.1:`port` (from /proc/net/tcp, where a listening socket's rx_queue is its backlog),
/// or None if no such socket is listening.
pub fn accept_queue_len(port: u16) -> Option<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 4 && f[1] == local && f[3] == "0A" {
            let rx = f[4].split(':').nth(1)?;
            usize::from_str_radix(rx, 16).ok()
        } else {
            None
        }
    })
}

/// The bytes received but not yet read by the server on the connection from the client port
/// `peer` to 127.0.0.1:`port` (the server side's rx_queue in /proc/net/tcp), or None if there
/// is no such connection. Some(0) after the client sent a request means a worker has accepted
/// the connection and read the request: it is in flight.
pub fn unread_bytes(port: u16, peer: u16) -> Option<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    let remote = format!("0100007F:{peer:04X}");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 4 && f[1] == local && f[2] == remote && f[3] == "01" {
            let rx = f[4].split(':').nth(1)?;
            usize::from_str_radix(rx, 16).ok()
        } else {
            None
        }
    })
}

/// Whether the loopback IPv6 address can be bound here (some containers lack it).
pub fn ipv6_available() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a new connection with `Connection: close`; reads the whole response
/// (Content-Length framed). Panics on an I/O error.
pub fn request(addr: SocketAddr, method: &str, target: &str, body: &[u8]) -> Response {
    try_request(addr, method, target, body, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{method} {target} on {addr}: {e}"))
}

/// GET shorthand of [`request`].
pub fn get(addr: SocketAddr, target: &str) -> Response {
    request(addr, "GET", target, b"")
}

/// [`request`] that returns I/O errors instead of panicking, with `timeout` for connect and
/// each read.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &[u8],
    timeout: Duration,
) -> io::Result<Response> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut reader = BufReader::new(stream);
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    reader.get_mut().write_all(&bytes)?;
    read_response(&mut reader, method == "HEAD")?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a response"))
}

/// A keep-alive connection: requests and raw bytes on one socket, responses read in order.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects, with a read timeout of 10 s.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set the read timeout");
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// Wraps a connection the test opened itself (its timeouts are kept).
    pub fn from_stream(stream: TcpStream) -> Client {
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// Sends one request (adding `Host` and, with a body or for POST/PUT, `Content-Length`
    /// unless `headers` has them) and reads its response.
    pub fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let mut head = format!("{method} {target} HTTP/1.1\r\n");
        if !has("host") {
            head.push_str("Host: huststore\r\n");
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !has("content-length")
            && !has("transfer-encoding")
            && (!body.is_empty() || method == "POST" || method == "PUT")
        {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        self.send_raw(&bytes);
        match read_response(&mut self.reader, method == "HEAD") {
            Ok(Some(r)) => r,
            Ok(None) => panic!("{method} {target}: connection closed before a response"),
            Err(e) => panic!("{method} {target}: {e}"),
        }
    }

    /// Writes `bytes` as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.reader
            .get_mut()
            .write_all(bytes)
            .expect("write to the connection");
    }

    /// Reads the next response; None on EOF before one starts. Panics on an I/O error (a
    /// reset counts as EOF, since servers close after some errors).
    pub fn read_response(&mut self) -> Option<Response> {
        match read_response(&mut self.reader, false) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("read a response: {e}"),
        }
    }

    /// The socket, for tests that need to shut down one direction or set timeouts.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }
}

/// Reads one response: status line, headers, then a body framed by Content-Length (none for
/// HEAD, 1xx, 204 and 304; up to EOF when there is no Content-Length). Ok(None): EOF before
/// the first byte.
fn read_response(reader: &mut BufReader<TcpStream>, head: bool) -> io::Result<Option<Response>> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let status_line = line.trim_end().to_string();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("bad status line {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad("EOF in the headers".into()));
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (name, value) = l
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {l:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>())
        .transpose()
        .map_err(|_| bad("bad Content-Length".into()))?;
    let mut body = Vec::new();
    if !(head || (100..200).contains(&status) || status == 204 || status == 304) {
        match length {
            Some(n) => {
                body.resize(n, 0);
                reader.read_exact(&mut body)?;
            }
            None => {
                reader.read_to_end(&mut body)?;
            }
        }
    }
    Ok(Some(Response {
        status,
        headers,
        body,
    }))
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn err_text(e: io::Error) -> String {
    e.to_string()
}

pub mod cluster;
pub mod conn;
pub mod history;
pub mod kv;
pub mod netns;
