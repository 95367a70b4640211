//! The process model against the real binary: command line, startup errors, worker count,
//! respawn and back-off, reload, graceful and fast stop, log reopening, daemon mode.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    accept_queue_len, children_of, get, is_alive, read_pid, run_bin, try_request, unread_bytes,
    wait_until, Client, Server,
};

/// The lines of a command's stderr.
fn stderr_lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A thread that keeps sending GET /status.html on new connections and counts the answers
/// that are not 200 (or not answers at all), until told to stop. Bounded: at most
/// `MAX_REQUESTS` requests and `MAX_TIME`.
struct Prober {
    stop: Arc<AtomicBool>,
    /// Answers so far.
    ok: Arc<std::sync::atomic::AtomicUsize>,
    /// Held by the prober around each request; a test takes it to act between requests.
    gate: Arc<Mutex<()>>,
    handle: thread::JoinHandle<(usize, Vec<String>)>,
}

const MAX_REQUESTS: usize = 200_000;
const MAX_TIME: Duration = Duration::from_secs(60);

impl Prober {
    fn start(server: &Server) -> Prober {
        let addr = server.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(Mutex::new(()));
        let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stop2, gate2, ok2) = (Arc::clone(&stop), Arc::clone(&gate), Arc::clone(&ok));
        let handle = thread::spawn(move || {
            let start = Instant::now();
            let mut failures = Vec::new();
            for _ in 0..MAX_REQUESTS {
                if stop2.load(Ordering::Relaxed) || start.elapsed() > MAX_TIME {
                    break;
                }
                let _held = gate2.lock().unwrap_or_else(|p| p.into_inner());
                match try_request(addr, "GET", "/status.html", b"", Duration::from_secs(5)) {
                    Ok(r) if r.status == 200 && r.body == b"ok\n" => {
                        ok2.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(format!("status {}", r.status)),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            (ok2.load(Ordering::Relaxed), failures)
        });
        Prober {
            stop,
            ok,
            gate,
            handle,
        }
    }

    /// Waits until the prober has had `n` more answers.
    fn wait_answers(&self, n: usize) {
        let target = self.ok.load(Ordering::Relaxed) + n;
        assert!(
            wait_until(Duration::from_secs(10), || self.ok.load(Ordering::Relaxed)
                >= target),
            "the prober gets no answers"
        );
    }

    /// Stops the thread; returns (answers, failures).
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the prober thread panicked")
    }
}

/// Waits until the master has `n` workers none of which is in `old`; returns them.
fn wait_for_new_workers(server: &Server, old: &[i32], n: usize, timeout: Duration) -> Vec<i32> {
    let mut now = Vec::new();
    let ok = wait_until(timeout, || {
        now = server.worker_pids();
        now.len() == n && now.iter().all(|p| !old.contains(p))
    });
    assert!(
        ok,
        "wanted {n} new workers (old {old:?}), have {now:?}\n{}",
        server.error_log()
    );
    now
}

/// Kills `pid` with SIGKILL and waits until the master has reaped it.
fn kill9_and_wait_reaped(server: &Server, pid: i32) {
    // SAFETY: kill(2) has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let reaped = wait_until(Duration::from_secs(5), || !is_alive(pid));
    assert!(reaped, "worker {pid} still there\n{}", server.error_log());
}

#[test]
fn version_and_help() {
    let out = run_bin(&["-v"], Duration::from_secs(5));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("huststore version {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = run_bin(&["-h"], Duration::from_secs(5));
    assert!(out.status.success());
    let usage = String::from_utf8_lossy(&out.stdout);
    assert!(usage.starts_with("usage: huststore"), "{usage}");
    for word in [
        "-c FILE",
        "-t",
        "-s SIGNAL",
        "reload",
        "quit",
        "stop",
        "reopen",
    ] {
        assert!(usage.contains(word), "usage lacks {word}: {usage}");
    }
    let out = run_bin(&["-s", "restart"], Duration::from_secs(5));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid signal \"restart\""), "{err}");
    assert!(err.contains("usage: huststore"), "{err}");
    let out = run_bin(&["--bogus"], Duration::from_secs(5));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn conf_test_good_and_bad() {
    let server = Server::prepare(&[]);
    let conf = server.conf_path.display().to_string();
    let out = server.command(&["-t"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("conf {conf} is ok\n")
    );

    server.write_conf_text("daemon off;\nworker_processes 2;\nlisen 127.0.0.1:1;\n");
    let out = server.command(&["-t"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(&format!("{conf}:3")), "{lines:?}");
    assert!(lines[0].contains("lisen"), "{lines:?}");

    server.write_conf_text("daemon off;\nworker_processes two;\n");
    let out = server.command(&["-t"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = stderr_lines(&out);
    assert!(lines[0].contains(&format!("{conf}:2")), "{lines:?}");
}

#[test]
fn startup_with_a_bad_conf_is_one_line() {
    let server = Server::prepare(&[("worker_processes", "many")]);
    let out = server.command(&[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("huststore: "), "{lines:?}");
    assert!(lines[0].contains("worker_processes"), "{lines:?}");
}

#[test]
fn two_workers_by_default_and_auto_is_the_cpu_count() {
    let server = Server::start(&[]);
    assert!(
        wait_until(Duration::from_secs(5), || server.worker_pids().len() == 2),
        "{:?}",
        server.worker_pids()
    );
    assert_eq!(read_pid(&server.pid_file()), Some(server.master_pid()));
    let log = server.error_log();
    assert!(log.contains("[notice]"), "{log}");
    assert!(log.contains("huststore started"), "{log}");

    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let auto = Server::start(&[("worker_processes", "auto")]);
    assert!(
        wait_until(Duration::from_secs(5), || auto.worker_pids().len() == cpus),
        "want {cpus}, have {:?}",
        auto.worker_pids()
    );
    assert_eq!(get(auto.addr(), "/status.html").text(), "ok\n");
}

#[test]
fn a_killed_worker_is_replaced_within_a_second_and_clients_see_nothing() {
    let server = Server::start(&[]);
    let before = server.worker_pids();
    assert_eq!(before.len(), 2);
    let prober = Prober::start(&server);
    prober.wait_answers(10);
    let victim = before[0];
    {
        // Between two of the prober's requests: the kill must not cut a request in flight on
        // the victim (that one would be lost, as the spec allows); every later request must
        // be served by the other worker or the new one.
        let _gate = prober.gate.lock().unwrap();
        kill9_and_wait_reaped(&server, victim);
    }
    let killed_at = Instant::now();
    let mut after = Vec::new();
    let replaced = wait_until(Duration::from_secs(1), || {
        after = server.worker_pids();
        after.len() == 2 && !after.contains(&victim)
    });
    assert!(
        replaced,
        "no new worker within 1 s: {after:?}\n{}",
        server.error_log()
    );
    assert!(killed_at.elapsed() < Duration::from_secs(1));
    // Keep probing while the new worker starts, until it is ready.
    let new = *after
        .iter()
        .find(|p| !before.contains(p))
        .expect("a new pid");
    assert!(wait_until(Duration::from_secs(5), || server
        .error_log()
        .contains(&format!("worker {new} (slot 0) is ready"))
        || server
            .error_log()
            .contains(&format!("worker {new} (slot 1) is ready"))));
    prober.wait_answers(10);
    let (ok, failures) = prober.finish();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(ok > 0);
    let log = server.error_log();
    assert!(
        log.contains(&format!("worker {victim} exited on signal 9, respawning")),
        "{log}"
    );
}

#[test]
fn a_slot_that_keeps_crashing_is_respawned_with_a_back_off() {
    let server = Server::start(&[]);
    let mut workers = server.worker_pids();
    assert_eq!(workers.len(), 2);
    let mut victim = workers[0];
    // Two quick crashes are respawned at once...
    for _ in 0..2 {
        kill9_and_wait_reaped(&server, victim);
        let now = wait_for_new_workers(&server, &[victim], 2, Duration::from_secs(1));
        victim = *now
            .iter()
            .find(|p| !workers.contains(p))
            .expect("a new pid");
        workers = now;
    }
    // ...the third within 10 s is delayed by 1 s.
    kill9_and_wait_reaped(&server, victim);
    let killed_at = Instant::now();
    let now = wait_for_new_workers(&server, &[victim], 2, Duration::from_secs(5));
    let delay = killed_at.elapsed();
    assert!(
        delay >= Duration::from_millis(900),
        "respawned after {delay:?}, before the back-off\n{}",
        server.error_log()
    );
    assert!(delay < Duration::from_secs(3), "respawned after {delay:?}");
    let log = server.error_log();
    assert!(
        log.contains("crashed 3 times in 10 s, respawning in 1 s"),
        "{log}"
    );
    // The back-off doubles on the next crash.
    let victim = *now
        .iter()
        .find(|p| !workers.contains(p))
        .expect("a new pid");
    kill9_and_wait_reaped(&server, victim);
    assert!(wait_until(Duration::from_secs(2), || server
        .error_log()
        .contains("respawning in 2 s")));
    assert_eq!(get(server.addr(), "/status.html").status, 200);
}

#[test]
fn hup_changes_the_worker_count_without_a_failed_request() {
    let mut server = Server::start(&[("shutdown_timeout", "5s")]);
    let old = server.worker_pids();
    assert_eq!(old.len(), 2);
    let prober = Prober::start(&server);
    prober.wait_answers(10);

    server.rewrite_conf(&[("worker_processes", "3")]);
    server.signal(libc::SIGHUP);
    let three = wait_for_new_workers(&server, &old, 3, Duration::from_secs(10));

    server.rewrite_conf(&[("worker_processes", "1")]);
    server.signal(libc::SIGHUP);
    let one = wait_for_new_workers(&server, &three, 1, Duration::from_secs(10));
    prober.wait_answers(10);

    let (ok, failures) = prober.finish();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(ok > 0);
    assert_eq!(get(server.addr(), "/status.html").status, 200);
    assert_eq!(server.worker_pids(), one);
    let log = server.error_log();
    assert!(log.contains("reloaded"), "{log}");
    assert!(!log.contains("[alert]"), "{log}");
}

#[test]
fn hup_with_a_bad_conf_keeps_serving_with_the_old_one() {
    let mut server = Server::start(&[]);
    let old = server.worker_pids();
    server.rewrite_conf(&[("worker_processes", "banana")]);
    server.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || server
            .error_log()
            .contains("reload failed, keeping the old conf: ")),
        "{}",
        server.error_log()
    );
    assert!(server
        .error_log()
        .contains(&format!("{}:", server.conf_path.display())));
    assert_eq!(get(server.addr(), "/status.html").status, 200);
    assert_eq!(server.worker_pids(), old);
}

#[test]
fn hup_whose_new_workers_cannot_start_keeps_the_old_workers() {
    let mut server = Server::start(&[]);
    let old = server.worker_pids();
    // The conf parses, but the workers fail their init (exit code 2) on a missing user file.
    server.rewrite_conf(&[("auth_basic_user_file", "{dir}/missing.htpasswd")]);
    server.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || server
            .error_log()
            .contains("keeping the old workers")),
        "{}",
        server.error_log()
    );
    assert_eq!(server.worker_pids(), old);
    assert_eq!(get(server.addr(), "/status.html").status, 200);
}

#[test]
fn workers_that_cannot_start_make_the_startup_fail() {
    let server = Server::prepare(&[("auth_basic_user_file", "{dir}/missing.htpasswd")]);
    let out = server.command(&[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("no worker could start"), "{lines:?}");
    assert!(!server.pid_file().exists());
}

#[test]
fn quit_lets_in_flight_requests_finish() {
    let mut server = Server::start(&[("shutdown_timeout", "5s")]);
    let addr = server.addr();
    // A slow request: the worker answers a parked /debug/sleep at once when it retires.
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let slow = thread::spawn(move || {
        let mut client = Client::connect(addr);
        client
            .send_raw(b"GET /debug/sleep?ms=1500 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let port = client.stream().local_addr().expect("local address").port();
        sent_tx.send(port).expect("tell the test");
        client.read_response()
    });
    // A request whose body is only half sent when QUIT arrives: the worker must wait for the
    // rest and answer it.
    let mut upload = Client::connect(addr);
    upload.send_raw(
        b"POST /put?key=graceful HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nConnection: close\r\n\r\nda",
    );
    let upload_port = upload.stream().local_addr().unwrap().port();
    let slow_port = sent_rx.recv().expect("the client sent its request");
    // Both are in flight once a worker has accepted the connection and read what was sent
    // (nothing left unread on the server side).
    assert!(
        wait_until(Duration::from_secs(2), || {
            unread_bytes(server.port, slow_port) == Some(0)
                && unread_bytes(server.port, upload_port) == Some(0)
        }),
        "the requests were not picked up"
    );
    let out = server.command(&["-s", "quit"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let response = slow
        .join()
        .expect("client thread")
        .expect("a response to the slow request");
    assert_eq!(response.status, 200);
    upload.send_raw(b"ta");
    let response = upload.read_response().expect("a response to the upload");
    assert_eq!(response.status, 200, "{}", response.text());
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert!(!server.pid_file().exists());
    assert!(server.error_log().contains("graceful shutdown"));
    // What the retiring worker acknowledged is there after a restart.
    server.restart();
    assert_eq!(get(server.addr(), "/get?key=graceful").text(), "data");
}

#[test]
fn stop_exits_zero_and_removes_the_pid_file() {
    let mut server = Server::start(&[]);
    let workers = server.worker_pids();
    let out = server.command(&["-s", "stop"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(server.wait_exit().code(), Some(0));
    assert!(!server.pid_file().exists());
    assert!(workers.iter().all(|&p| !is_alive(p)));
}

#[test]
fn signal_with_no_running_master_fails() {
    let server = Server::prepare(&[]);
    let out = server.command(&["-s", "reload"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("no running master"), "{lines:?}");
    // A stale pid file naming a process that is not huststore counts as no master.
    std::fs::write(server.pid_file(), format!("{}\n", std::process::id())).unwrap();
    let out = server.command(&["-s", "stop"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn reopen_writes_to_a_new_log_after_a_rename() {
    let server = Server::start(&[]);
    let rotated = server.dir.join("error.log.1");
    std::fs::rename(server.error_log_path(), &rotated).unwrap();
    let out = server.command(&["-s", "reopen"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        wait_until(Duration::from_secs(5), || server
            .error_log()
            .contains("logs reopened")),
        "new log: {:?}\nold log: {}",
        server.error_log(),
        std::fs::read_to_string(&rotated).unwrap_or_default()
    );
    // USR1 did not kill the workers, and they write to the new file: kill one, and its
    // successor (forked after the reopen) logs there, as does the master.
    let workers = server.worker_pids();
    assert_eq!(workers.len(), 2);
    let victim = workers[0];
    kill9_and_wait_reaped(&server, victim);
    let new = wait_for_new_workers(&server, &[victim], 2, Duration::from_secs(5));
    let successor = *new
        .iter()
        .find(|p| !workers.contains(p))
        .expect("a new pid");
    assert!(wait_until(Duration::from_secs(5), || {
        let log = server.error_log();
        log.contains(&format!("worker {victim} exited on signal 9"))
            && log.contains(&format!(" {successor}#0: "))
    }));
    let old = std::fs::read_to_string(&rotated).unwrap_or_default();
    assert!(!old.contains(&format!("worker {victim} exited")), "{old}");
    assert!(!old.contains("could not reopen"), "{old}");
    assert!(!server.error_log().contains("could not reopen"));
}

#[test]
fn a_second_master_on_the_same_conf_is_refused() {
    let server = Server::start(&[]);
    let out = server.command(&[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("already running"), "{lines:?}");
    assert!(
        lines[0].contains(&server.master_pid().to_string()),
        "{lines:?}"
    );
    assert_eq!(get(server.addr(), "/status.html").status, 200);
    assert_eq!(read_pid(&server.pid_file()), Some(server.master_pid()));
}

#[test]
fn a_port_in_use_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let server = Server::prepare(&[("listen", &addr.to_string())]);
    let out = server.command(&[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = stderr_lines(&out);
    assert_eq!(
        lines,
        vec![format!(
            "huststore: could not bind {addr}: Address already in use (os error 98)"
        )]
    );
    assert!(!server.pid_file().exists());
}

#[test]
fn an_unwritable_data_folder_is_one_clear_line() {
    let server = Server::prepare(&[("data_dir", "{dir}/file/data")]);
    // A regular file where a folder should be: not writable even for root.
    std::fs::write(server.dir.join("file"), b"x").unwrap();
    let out = server.command(&[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("data folder"), "{lines:?}");
    assert!(lines[0].contains("file/data"), "{lines:?}");
}

#[test]
fn daemon_on_detaches_and_stops() {
    let mut server = Server::prepare(&[("daemon", "on")]);
    let started = Instant::now();
    let out = server.command(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{out:?}\n{}",
        server.error_log()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let pid = server.adopt_daemon();
    assert!(is_alive(pid), "the daemon {pid} is not running");
    assert_eq!(get(server.addr(), "/status.html").status, 200);
    assert_eq!(server.worker_pids().len(), 2);
    let out = server.command(&["-s", "stop"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(wait_until(Duration::from_secs(10), || !is_alive(pid)
        && !server.pid_file().exists()));
}

#[test]
fn workers_of_a_master_killed_with_9_exit() {
    let mut server = Server::start(&[]);
    let master = server.master_pid();
    let workers = server.worker_pids();
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(master, libc::SIGKILL) };
    assert!(
        wait_until(Duration::from_secs(10), || workers
            .iter()
            .all(|&p| !is_alive(p))),
        "workers {workers:?} outlived their master"
    );
    assert!(children_of(master).is_empty());
    server.kill_all();
    // The stale pid file does not stop a restart on the same port.
    server.restart();
    assert_eq!(get(server.addr(), "/status.html").status, 200);
}

#[test]
fn several_listen_addresses_and_reload_adds_one() {
    let other = common::free_port();
    let mut server = Server::start(&[]);
    let second: std::net::SocketAddr = format!("127.0.0.1:{other}").parse().unwrap();
    server.rewrite_conf(&[
        ("listen", "127.0.0.1:{port}"),
        ("listen", &second.to_string()),
    ]);
    server.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || try_request(
            second,
            "GET",
            "/status.html",
            b"",
            Duration::from_secs(1)
        )
        .is_ok_and(|r| r.status == 200)),
        "{}",
        server.error_log()
    );
    assert_eq!(get(server.addr(), "/status.html").status, 200);
    // Dropping the first address closes it once the old workers are gone.
    server.rewrite_conf(&[("listen", &second.to_string())]);
    server.signal(libc::SIGHUP);
    let port = server.port;
    assert!(
        wait_until(Duration::from_secs(10), || accept_queue_len(port).is_none()),
        "{}",
        server.error_log()
    );
    assert_eq!(get(second, "/status.html").status, 200);
}

#[test]
fn ipv6_listen() {
    if !common::ipv6_available() {
        eprintln!("no IPv6 loopback here, skipped");
        return;
    }
    let server = Server::start(&[("listen", "127.0.0.1:{port}"), ("listen", "[::1]:{port}")]);
    let v6: std::net::SocketAddr = format!("[::1]:{}", server.port).parse().unwrap();
    assert_eq!(get(v6, "/status.html").status, 200);
    assert_eq!(get(server.addr(), "/status.html").status, 200);
}

#[test]
fn mq_mode_runs_one_worker_and_a_reload_replaces_it_in_turn() {
    let server = Server::start(&[("mode", "mq"), ("worker_processes", "4")]);
    let old = server.worker_pids();
    assert_eq!(old.len(), 1, "mq mode runs exactly one worker");
    server.signal(libc::SIGHUP);
    let new = wait_for_new_workers(&server, &old, 1, Duration::from_secs(10));
    assert_eq!(get(server.addr(), "/status.html").status, 200);
    // Only one mq worker may run: the old one exited before the new one was forked.
    let log = server.error_log();
    let exited = log
        .find(&format!("worker {} exited", old[0]))
        .unwrap_or_else(|| panic!("no exit line for the old worker\n{log}"));
    let started = log
        .find(&format!("started worker {}", new[0]))
        .unwrap_or_else(|| panic!("no start line for the new worker\n{log}"));
    assert!(exited < started, "{log}");
}

/// `<pid file>.oldbin`.
fn oldbin(server: &Server) -> std::path::PathBuf {
    let mut name = server.pid_file().into_os_string();
    name.push(".oldbin");
    name.into()
}

/// After USR2: waits until the pid file names a new master (and `.oldbin` the old one).
fn wait_for_new_master(server: &Server, old: i32) -> i32 {
    let mut new = None;
    let ok = wait_until(Duration::from_secs(10), || {
        new = read_pid(&server.pid_file()).filter(|&p| p != old);
        new.is_some() && read_pid(&oldbin(server)) == Some(old)
    });
    assert!(ok, "no new master\n{}", server.error_log());
    let new = new.expect("checked above");
    assert!(
        wait_until(Duration::from_secs(5), || children_of(new).len() == 2),
        "the new master {new} has no workers"
    );
    new
}

#[test]
fn binary_upgrade_then_the_old_master_retires() {
    let mut server = Server::start(&[]);
    let old = server.master_pid();
    let prober = Prober::start(&server);
    prober.wait_answers(10);
    let out = server.command(&["-s", "upgrade"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let new = wait_for_new_master(&server, old);
    prober.wait_answers(10);
    // WINCH: the old workers retire; only the new master is left as the old one's child.
    server.signal(libc::SIGWINCH);
    assert!(
        wait_until(Duration::from_secs(10), || children_of(old) == vec![new]),
        "{:?}\n{}",
        children_of(old),
        server.error_log()
    );
    prober.wait_answers(10);
    // QUIT the old master: the new one keeps serving and owns the pid file.
    server.signal(libc::SIGQUIT);
    assert_eq!(server.wait_exit().code(), Some(0));
    assert!(!oldbin(&server).exists());
    assert_eq!(read_pid(&server.pid_file()), Some(new));
    prober.wait_answers(10);
    let (ok, failures) = prober.finish();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(ok > 0);
    server.adopt_daemon();
    assert_eq!(server.worker_pids().len(), 2);
}

#[test]
fn binary_upgrade_rolls_back() {
    let server = Server::start(&[]);
    let old = server.master_pid();
    server.signal(libc::SIGUSR2);
    let new = wait_for_new_master(&server, old);
    server.signal(libc::SIGWINCH);
    assert!(wait_until(Duration::from_secs(10), || children_of(old) == vec![new]));
    // HUP restarts the old workers; QUIT to the new master; the pid file comes back.
    server.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || children_of(old)
        .len()
        == 3));
    // SAFETY: kill(2) has no memory effects.
    assert_eq!(unsafe { libc::kill(new, libc::SIGQUIT) }, 0);
    assert!(
        wait_until(Duration::from_secs(10), || read_pid(&server.pid_file())
            == Some(old)
            && !oldbin(&server).exists()),
        "{}",
        server.error_log()
    );
    assert!(wait_until(Duration::from_secs(10), || !is_alive(new)));
    assert_eq!(server.worker_pids().len(), 2);
    assert_eq!(get(server.addr(), "/status.html").status, 200);
    assert!(server.error_log().contains("takes over"));
}
