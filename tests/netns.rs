//! The network lab of tests/common/netns.rs, proved on its own with a tiny TCP echo server
//! (this test binary run again in a helper mode inside a node's namespace) before any cluster
//! runs in it: every pair talks, a cut drops packets silently (connects time out, an open
//! connection stalls and resumes after a heal), isolate / partition / heal make exactly the
//! reachability they say, the host's namespace sees none of it, and a lab leaves nothing
//! behind, even when its test panics or its process was killed. Needs root and iproute2:
//! without them each test prints a SKIPPED line (under CI it fails instead).

mod common;

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::netns::{lab_or_skip, Lab};
use common::wait_until;

/// The variable that turns [`echo_server_helper`] into a server listening on its value.
const ECHO_ENV: &str = "HS_NETNS_ECHO";
/// The echo port on every node (each node has its own namespace, so nothing else is there).
const PORT: u16 = 7000;
/// How long a connect or a read may take before it counts as "cannot reach".
const PROBE: Duration = Duration::from_millis(500);
/// How long a helper server may take to come up.
const START: Duration = Duration::from_secs(5);

/// Not a test on its own (it returns at once): with `HS_NETNS_ECHO=addr:port` set, as
/// [`start_echo`] runs it inside a node, it serves an echo of each line on that address until
/// it is killed (or after 60 s, so that a lost one does not linger).
#[test]
fn echo_server_helper() {
    let Ok(addr) = std::env::var(ECHO_ENV) else {
        return;
    };
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(60));
        std::process::exit(0);
    });
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let mut writer = match stream.try_clone() {
                Ok(w) => w,
                Err(_) => return,
            };
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                if writeln!(writer, "{line}").is_err() {
                    return;
                }
            }
        });
    }
}

/// Starts the echo server in node `i` and waits until node `i` itself reaches it.
fn start_echo(lab: &Lab, i: usize) -> Child {
    let addr = SocketAddr::new(lab.node_addr(i), PORT);
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
    cmd.args([
        "echo_server_helper",
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(ECHO_ENV, addr.to_string())
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    let mut child = lab.spawn(i, cmd);
    let up = wait_until(START, || {
        child.try_wait().ok().flatten().is_some() || lab.in_node(i, || echo(addr).is_ok())
    });
    assert!(
        up && child.try_wait().ok().flatten().is_none(),
        "the echo server in node {i} did not come up"
    );
    child
}

/// A child that is killed and reaped when the test lets go of it (the lab's drop kills what
/// runs in it, but only its parent can reap it).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One line sent to `addr` and echoed back, each step within [`PROBE`].
fn echo(addr: SocketAddr) -> io::Result<()> {
    let stream = TcpStream::connect_timeout(&addr, PROBE)?;
    stream.set_read_timeout(Some(PROBE))?;
    stream.set_write_timeout(Some(PROBE))?;
    (&stream).write_all(b"ping\n")?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    if line == "ping\n" {
        Ok(())
    } else {
        Err(io::Error::other(format!("echoed {line:?}")))
    }
}

/// Tries every ordered pair (from, to) of distinct nodes at once and returns those that got
/// their echo. Every failure must be a timeout: a cut drops packets, it refuses nothing.
fn reachable(lab: &Lab) -> BTreeSet<(usize, usize)> {
    let n = lab.node_count();
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| (a, b)))
        .collect();
    let start = Instant::now();
    let results: Vec<((usize, usize), io::Result<()>)> = std::thread::scope(|scope| {
        let probes: Vec<_> = pairs
            .iter()
            .map(|&(a, b)| {
                let to = SocketAddr::new(lab.node_addr(b), PORT);
                ((a, b), scope.spawn(move || lab.in_node(a, || echo(to))))
            })
            .collect();
        probes
            .into_iter()
            .map(|(pair, t)| (pair, t.join().expect("a probe thread panicked")))
            .collect()
    });
    assert!(
        start.elapsed() < PROBE * 6,
        "probes took {:?}",
        start.elapsed()
    );
    let mut ok = BTreeSet::new();
    for ((a, b), result) in results {
        match result {
            Ok(()) => {
                ok.insert((a, b));
            }
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ),
                "{a} -> {b} failed with {e:?}, not a timeout"
            ),
        }
    }
    ok
}

/// Every ordered pair of distinct nodes in `n`, except those with one end in `cut_a` and the
/// other in `cut_b`.
fn all_but(n: usize, cut_a: &[usize], cut_b: &[usize]) -> BTreeSet<(usize, usize)> {
    let split = |a: usize, b: usize| {
        (cut_a.contains(&a) && cut_b.contains(&b)) || (cut_a.contains(&b) && cut_b.contains(&a))
    };
    (0..n)
        .flat_map(|a| (0..n).map(move |b| (a, b)))
        .filter(|&(a, b)| a != b && !split(a, b))
        .collect()
}

/// The names `ip netns list` shows.
fn listed_namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn assert_gone(names: &[String]) {
    let listed = listed_namespaces();
    let left: Vec<&String> = names.iter().filter(|n| listed.contains(n)).collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn cuts_partitions_and_heals_make_the_reachability_they_say() {
    let Some(lab) = lab_or_skip("hs", 3) else {
        return;
    };
    let mut servers: Vec<Child> = (0..3).map(|i| start_echo(&lab, i)).collect();
    let everyone = all_but(3, &[], &[]);
    assert_eq!(reachable(&lab), everyone, "a fresh lab");

    lab.isolate(0);
    assert_eq!(reachable(&lab), all_but(3, &[0], &[1, 2]), "0 isolated");
    lab.heal();
    assert_eq!(reachable(&lab), everyone, "healed after isolating 0");

    lab.partition(&[0, 1], &[2]);
    assert_eq!(
        reachable(&lab),
        all_but(3, &[0, 1], &[2]),
        "{{0,1}} | {{2}}"
    );
    lab.heal();
    assert_eq!(reachable(&lab), everyone, "healed after the partition");

    // One cable only: 0 and 1 no longer talk, 2 still talks to both.
    lab.cut(0, 1);
    assert_eq!(reachable(&lab), all_but(3, &[0], &[1]), "0-1 cut");
    lab.heal();
    assert_eq!(reachable(&lab), everyone, "healed after the cut");

    let names = lab.namespaces();
    assert_eq!(names.len(), 4, "three nodes and the hub: {names:?}");
    drop(lab);
    assert_gone(&names);
    // The servers were inside the lab: dropping it killed them.
    for (i, server) in servers.iter_mut().enumerate() {
        let dead = wait_until(START, || server.try_wait().ok().flatten().is_some());
        assert!(dead, "the echo server of node {i} survived the lab");
    }
}

#[test]
fn an_open_connection_stalls_across_a_cut_and_resumes_after_heal() {
    let Some(lab) = lab_or_skip("hs", 2) else {
        return;
    };
    let _server = Reaped(start_echo(&lab, 0));
    let to = SocketAddr::new(lab.node_addr(0), PORT);
    let stream = lab
        .in_node(1, || TcpStream::connect_timeout(&to, PROBE))
        .expect("connect");
    stream.set_read_timeout(Some(PROBE)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    (&stream).write_all(b"before\n").unwrap();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "before\n");

    lab.cut(0, 1);
    (&stream).write_all(b"during\n").unwrap();
    line.clear();
    let e = reader
        .read_line(&mut line)
        .expect_err("an echo came through a cut cable");
    assert!(
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "the cut should stall the connection, not break it: {e:?}"
    );

    // TCP retransmits the line after the heal (its backoff is still short): the echo comes.
    lab.heal();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    line.clear();
    reader
        .read_line(&mut line)
        .expect("the echo after the heal");
    assert_eq!(line, "during\n");
}

#[test]
fn each_node_has_its_address_and_the_host_namespace_none() {
    let Some(lab) = lab_or_skip("hs", 2) else {
        return;
    };
    let addrs = |out: &[u8]| String::from_utf8_lossy(out).into_owned();
    for i in 0..2 {
        let mut cmd = Command::new("ip");
        cmd.args(["-o", "-4", "addr", "show"])
            .stdout(Stdio::piped());
        let out = lab
            .spawn(i, cmd)
            .wait_with_output()
            .expect("ip addr in the node");
        let text = addrs(&out.stdout);
        let me = format!("inet {}/32", lab.node_addr(i));
        let other = format!("inet {}/32", lab.node_addr(1 - i));
        assert!(text.contains(&me), "node {i} lacks {me}:\n{text}");
        assert!(!text.contains(&other), "node {i} has {other}:\n{text}");
        assert!(
            text.contains("inet 127.0.0.1/8"),
            "node {i}'s lo is not up:\n{text}"
        );
    }
    let host = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .unwrap();
    let routes = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output();
    let host_text = addrs(&host.stdout) + &addrs(&routes.unwrap().stdout);
    for i in 0..2 {
        let addr = lab.node_addr(i).to_string();
        assert!(
            !host_text
                .split(|c: char| c.is_whitespace() || c == '/')
                .any(|w| w == addr),
            "the host namespace knows {addr}:\n{host_text}"
        );
    }
}

#[test]
fn a_panicking_test_leaves_no_namespace_and_no_process() {
    // The sleeper is moved out of the closure, so that only the lab's drop can end it.
    let made: Mutex<Option<(Vec<String>, Child)>> = Mutex::new(None);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let Some(lab) = lab_or_skip("hs", 2) else {
            return;
        };
        let mut sleep = Command::new("sleep");
        sleep.arg("30");
        let child = lab.spawn(1, sleep);
        *made.lock().unwrap() = Some((lab.namespaces(), child));
        panic!("on purpose: this test checks the cleanup after a panic");
    }));
    let Some((names, mut sleeper)) = made.into_inner().unwrap() else {
        // No lab: skipped, or (under CI) failed, and that failure must not be swallowed.
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
        return;
    };
    assert!(result.is_err(), "the closure was meant to panic");
    assert_gone(&names);
    let ended = wait_until(START, || sleeper.try_wait().ok().flatten().is_some());
    if !ended {
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }
    assert!(ended, "the process in the lab survived it");
}

#[test]
fn stale_namespaces_of_dead_processes_are_removed_and_others_kept() {
    // Root and iproute2 first (this makes and drops a lab of its own prefix).
    let Some(probe) = lab_or_skip("hsstale", 1) else {
        return;
    };
    drop(probe);
    let mut gone = Command::new("true").spawn().expect("run true");
    gone.wait().unwrap();
    let dead = gone.id();
    let stale = [
        format!("hsstale-{dead}-0-0"),
        format!("hsstale-{dead}-0-hub"),
    ];
    // pid 1 lives; the others are not of the pattern.
    let kept = [
        "hsstale-1-0-0".to_string(),
        format!("hsstale-{dead}-x-0"),
        format!("hsstaler-{dead}-0-0"),
    ];
    struct Remove(Vec<String>);
    impl Drop for Remove {
        fn drop(&mut self) {
            for name in &self.0 {
                let _ = Command::new("ip").args(["netns", "del", name]).output();
            }
        }
    }
    let _remove = Remove(stale.iter().chain(&kept).cloned().collect());
    for name in stale.iter().chain(&kept) {
        let out = Command::new("ip")
            .args(["netns", "add", name])
            .output()
            .unwrap();
        assert!(out.status.success(), "ip netns add {name}: {out:?}");
    }
    let lab = Lab::new("hsstale", 1).expect("a lab, as the probe was made");
    let listed = listed_namespaces();
    for name in &stale {
        assert!(
            !listed.contains(name),
            "{name} (a dead pid) was not removed"
        );
    }
    for name in &kept {
        assert!(
            listed.contains(name),
            "{name} was removed, but it is not stale"
        );
    }
    drop(lab);
}

#[test]
fn a_delay_slows_a_node_or_says_why_not() {
    let Some(lab) = lab_or_skip("hs", 2) else {
        return;
    };
    let _server = Reaped(start_echo(&lab, 0));
    if let Err(e) = lab.delay(1, 100) {
        let _ = writeln!(io::stderr(), "delay: SKIPPED ({e})");
        return;
    }
    let to = SocketAddr::new(lab.node_addr(0), PORT);
    let start = Instant::now();
    lab.in_node(1, || echo(to))
        .expect("an echo through the delay");
    let took = start.elapsed();
    // The SYN and the line each wait 100 ms on the way out of node 1.
    assert!(took >= Duration::from_millis(200), "an echo took {took:?}");
    lab.delay(1, 0).unwrap();
    let start = Instant::now();
    lab.in_node(1, || echo(to))
        .expect("an echo without the delay");
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "the delay stayed"
    );
}
