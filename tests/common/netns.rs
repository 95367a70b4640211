//! A network lab for cluster tests: `n` nodes, each in its own network namespace, wired so that
//! every pair can talk, and links that a test cuts and heals to make real partitions. The
//! wiring is a mesh of cables through a hub namespace: for each pair of nodes (i, j) a bridge
//! `b<i>-<j>` in the hub with two ports, the veth `h<i>-<j>` whose other end is `p<j>` in node
//! i, and `h<j>-<i>` whose other end is `p<i>` in node j. A cut sets the two hub-side ends of
//! a pair down: the node-side ends lose their carrier but keep their routes, so packets are
//! dropped silently, as on a pulled cable (connects time out, open connections stall and
//! resume after a heal), rather than failing fast with "network unreachable" as they would if
//! a node's own interface went down. One bridge per pair instead of one shared bridge is what
//! lets a test cut any single link, and so any partition, not only a node from all others.
//!
//! Node i has the address 10.201.<lab>.<i+1> on its `lo` and a host route to each peer through
//! that peer's cable. That private range exists only inside the lab's namespaces: nothing is
//! created in the host's namespace, so no route there leads to it (and tests must never send
//! to it from the host). Needs root and `ip` (iproute2); [`Lab::new`] says why it cannot run,
//! and [`lab_or_skip`] turns that into a visible skip, or a failure under CI. Everything a lab
//! made (its processes, namespaces and so its links) goes on drop, even when the test panics;
//! the leftovers of a run that was killed are removed by the next one.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::wait_until;

/// Where `ip netns` keeps the namespaces it names (iproute2's NETNS_RUN_DIR).
const NETNS_DIR: &str = "/run/netns";

/// How long the processes left in a lab's namespaces may take to die on SIGKILL.
const KILL_DEADLINE: Duration = Duration::from_secs(5);

/// How long links may take to come up after they were made or healed.
const SETTLE_DEADLINE: Duration = Duration::from_secs(5);

/// Why a lab cannot be made here (not root, no `ip`, no namespaces, no veth or bridge).
#[derive(Debug, Clone)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `n` nodes in their own network namespaces, each pair joined by a cable through the hub.
pub struct Lab {
    /// `<prefix>-<pid>-<k>`: the start of every namespace name of this lab.
    base: String,
    /// The third byte of the nodes' addresses (the lab's number), for telling labs apart in
    /// packet traces; the namespaces keep equal addresses of two labs apart anyway.
    subnet: u8,
    /// The node namespaces made so far (all n once `new` returns).
    nodes: Vec<String>,
    /// The hub namespace, once made.
    hub: Option<String>,
    /// How many nodes the lab was asked for (the cables are for pairs of these).
    n: usize,
}

impl Lab {
    /// Makes `n` nodes named `<prefix>-<pid>-<k>-<i>` and the hub `<prefix>-<pid>-<k>-hub`
    /// (k counts labs within this process), every pair connected, `lo` up in each. First
    /// removes the namespaces `<prefix>-<pid>-…` left by processes that no longer exist.
    /// `prefix` is ASCII letters and digits. Err when not root, `ip` is missing, or making a
    /// namespace or link fails; what was made by then is removed.
    pub fn new(prefix: &str, n: usize) -> Result<Lab, Unavailable> {
        assert!(
            !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_alphanumeric()),
            "a lab prefix is letters and digits, not {prefix:?}"
        );
        assert!((1..=250).contains(&n), "a lab has 1 to 250 nodes, not {n}");
        // SAFETY: geteuid(2) has no memory effects and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(Unavailable("not root".into()));
        }
        match Command::new("ip").arg("-V").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => return Err(Unavailable(format!("`ip -V` failed: {}", out.status))),
            Err(e) => {
                return Err(Unavailable(format!(
                    "`ip` not found (Debian package iproute2): {e}"
                )))
            }
        }
        clean_stale(prefix);
        static LABS: AtomicUsize = AtomicUsize::new(0);
        let k = LABS.fetch_add(1, Ordering::Relaxed);
        let mut lab = Lab {
            base: format!("{prefix}-{}-{k}", std::process::id()),
            subnet: (k % 256) as u8,
            nodes: Vec::new(),
            hub: None,
            n,
        };
        // On an error, dropping `lab` removes what was made.
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), Unavailable> {
        let hub = format!("{}-hub", self.base);
        ip(&["netns", "add", &hub]).map_err(|e| Unavailable(format!("ip netns add: {e}")))?;
        self.hub = Some(hub.clone());
        for i in 0..self.n {
            let name = format!("{}-{i}", self.base);
            ip(&["netns", "add", &name]).map_err(|e| Unavailable(format!("ip netns add: {e}")))?;
            self.nodes.push(name);
        }
        // The hub side: a bridge per pair, and the two cables plugged into it, their node ends
        // created straight in the nodes' namespaces (never in the host's).
        let mut hub_script = String::from("link set lo up\n");
        for (i, j) in self.pairs() {
            let bridge = format!("b{i}-{j}");
            hub_script.push_str(&format!("link add {bridge} type bridge\n"));
            hub_script.push_str(&format!("link set {bridge} up\n"));
            for (a, b) in [(i, j), (j, i)] {
                let node = &self.nodes[a];
                let mac = self.mac(a, b);
                hub_script.push_str(&format!(
                    "link add h{a}-{b} type veth peer name p{b} address {mac} netns {node}\n"
                ));
                hub_script.push_str(&format!("link set h{a}-{b} master {bridge} up\n"));
            }
        }
        ip_batch(&hub, &hub_script).map_err(|e| Unavailable(format!("hub wiring: {e}")))?;
        for i in 0..self.n {
            let me = self.node_addr(i);
            let mut script = format!("link set lo up\naddr add {me}/32 dev lo\n");
            for j in (0..self.n).filter(|&j| j != i) {
                let peer = self.node_addr(j);
                script.push_str(&format!("link set p{j} up\n"));
                script.push_str(&format!("route add {peer}/32 dev p{j} src {me}\n"));
                let mac = self.mac(j, i);
                script.push_str(&format!(
                    "neigh replace {peer} lladdr {mac} dev p{j} nud permanent\n"
                ));
            }
            ip_batch(&self.nodes[i], &script)
                .map_err(|e| Unavailable(format!("node {i} wiring: {e}")))?;
        }
        self.settle().map_err(Unavailable)
    }

    /// Waits until every interface of the lab is operationally up. The kernel applies a
    /// carrier change in its link-watch work, which it batches up to a second after the
    /// previous one; until then a veth end that got its carrier back still drops what it
    /// sends, so a probe right after a heal would lose its SYN and wait a second to resend.
    fn settle(&self) -> Result<(), String> {
        let mut down = Vec::new();
        let up = wait_until(SETTLE_DEADLINE, || {
            down = self.links_not_up();
            down.is_empty()
        });
        if up {
            Ok(())
        } else {
            Err(format!("links not up after {SETTLE_DEADLINE:?}: {down:?}"))
        }
    }

    /// `namespace: line` of each interface whose operational state is neither UP nor (lo's)
    /// UNKNOWN.
    fn links_not_up(&self) -> Vec<String> {
        let mut down = Vec::new();
        for ns in self.namespaces() {
            match run("ip", &["-n", &ns, "-o", "link", "show"], None) {
                Ok(out) => down.extend(
                    out.lines()
                        .filter(|l| !l.contains(" state UP ") && !l.contains(" state UNKNOWN "))
                        .map(|l| format!("{ns}: {l}")),
                ),
                Err(e) => down.push(e),
            }
        }
        down
    }

    /// The MAC address of node `a`'s end of its cable to node `b`: locally administered,
    /// fixed, so that each node knows its peers' from the start (permanent neighbour entries).
    /// Without them a node asks by ARP, and a question asked during a cut is only asked again
    /// a second later (ARP's retransmit time), so a heal would take that long to show.
    fn mac(&self, a: usize, b: usize) -> String {
        format!("02:68:73:{:02x}:{a:02x}:{b:02x}", self.subnet)
    }

    /// Every pair (i, j), i < j.
    fn pairs(&self) -> Vec<(usize, usize)> {
        let n = self.n;
        (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .collect()
    }

    /// How many nodes.
    pub fn node_count(&self) -> usize {
        self.n
    }

    /// Node `i`'s address (10.201.<lab>.<i+1>, on its `lo`: it stays even when cut off).
    pub fn node_addr(&self, i: usize) -> IpAddr {
        assert!(i < self.n, "node {i} of a lab of {}", self.n);
        IpAddr::V4(Ipv4Addr::new(10, 201, self.subnet, i as u8 + 1))
    }

    /// The name of node `i`'s namespace (for `ip -n NAME …` or `ip netns exec NAME …`).
    pub fn namespace(&self, i: usize) -> &str {
        &self.nodes[i]
    }

    /// The names of all the lab's namespaces, the hub's last.
    pub fn namespaces(&self) -> Vec<String> {
        self.nodes.iter().chain(&self.hub).cloned().collect()
    }

    /// Starts `cmd` inside node `i`'s network namespace; all else of `cmd` (environment,
    /// folder, stdio) is as the caller set it. The child is the caller's to wait for; the
    /// lab kills it on drop if it still runs. Panics if it cannot be started.
    pub fn spawn(&self, i: usize, mut cmd: Command) -> Child {
        let ns = self.open_ns(i);
        let fd = ns.as_raw_fd();
        // SAFETY: the hook runs in the forked child before exec and only makes the setns(2)
        // system call on a descriptor the parent keeps open until spawn returns (it is
        // close-on-exec, so the program does not inherit it); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?} in node {i}: {e}", cmd.get_program()));
        drop(ns);
        child
    }

    /// Runs `f` on a thread inside node `i`'s network namespace and returns what it returns
    /// (a panic in `f` goes on in the caller). Sockets made by `f` stay in that namespace
    /// wherever they are used afterwards, so `lab.in_node(1, || TcpStream::connect(..))` is a
    /// connection from node 1.
    pub fn in_node<T: Send>(&self, i: usize, f: impl FnOnce() -> T + Send) -> T {
        let ns = self.open_ns(i);
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| {
                // SAFETY: setns(2) on an open descriptor; it moves only this new thread.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns node {i}: {}", io::Error::last_os_error());
                f()
            });
            match thread.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    fn open_ns(&self, i: usize) -> File {
        assert!(i < self.n, "node {i} of a lab of {}", self.n);
        let path = format!("{NETNS_DIR}/{}", self.nodes[i]);
        File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"))
    }

    /// Cuts the cable between nodes `a` and `b` (both directions; packets are dropped).
    pub fn cut(&self, a: usize, b: usize) {
        self.set_links(&[(a, b)], "down");
    }

    /// Cuts node `i` off from all the others.
    pub fn isolate(&self, i: usize) {
        let links: Vec<(usize, usize)> = (0..self.n).filter(|&j| j != i).map(|j| (i, j)).collect();
        self.set_links(&links, "down");
    }

    /// Cuts every cable between a node of `side_a` and a node of `side_b` (disjoint); links
    /// within a side, and those of nodes on neither side, stay as they are.
    pub fn partition(&self, side_a: &[usize], side_b: &[usize]) {
        let a: BTreeSet<usize> = side_a.iter().copied().collect();
        assert!(
            side_b.iter().all(|x| !a.contains(x)),
            "the sides {side_a:?} and {side_b:?} overlap"
        );
        let links: Vec<(usize, usize)> = side_a
            .iter()
            .flat_map(|&x| side_b.iter().map(move |&y| (x, y)))
            .collect();
        self.set_links(&links, "down");
    }

    /// Reconnects every cable (cuts add up until this; delays stay).
    /// Returns once the links are up again (see `settle`).
    pub fn heal(&self) {
        self.set_links(&self.pairs(), "up");
        if let Err(e) = self.settle() {
            panic!("heal: {e}");
        }
    }

    /// Sets the hub ends of the given cables down or up. Panics if `ip` fails: a lab that was
    /// made can always do this, so a failure is a bug to see.
    fn set_links(&self, links: &[(usize, usize)], state: &str) {
        let mut script = String::new();
        for &(a, b) in links {
            assert!(
                a < self.n && b < self.n && a != b,
                "no cable {a}-{b} in a lab of {}",
                self.n
            );
            script.push_str(&format!(
                "link set h{a}-{b} {state}\nlink set h{b}-{a} {state}\n"
            ));
        }
        let hub = self.hub.as_deref().expect("a made lab has a hub");
        if let Err(e) = ip_batch(hub, &script) {
            panic!("set links {links:?} {state}: {e}");
        }
    }

    /// Delays every packet node `i` sends by `ms` milliseconds (tc netem on its cables; 0
    /// removes the delay). Err when tc or the kernel's netem is missing: the caller skips
    /// that part with a note.
    pub fn delay(&self, i: usize, ms: u32) -> Result<(), Unavailable> {
        let ns = &self.nodes[i];
        for j in (0..self.n).filter(|&j| j != i) {
            let dev = format!("p{j}");
            if ms == 0 {
                // Removing a qdisc that is not there fails; that is the wanted state anyway.
                let _ = run("tc", &["-n", ns, "qdisc", "del", "dev", &dev, "root"], None);
                continue;
            }
            let delay = format!("{ms}ms");
            let args = [
                "-n", ns, "qdisc", "replace", "dev", &dev, "root", "netem", "delay", &delay,
            ];
            run("tc", &args, None).map_err(|e| Unavailable(format!("tc netem: {e}")))?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let names = self.namespaces();
        remove_namespaces(&names);
    }
}

/// A lab, or None after printing why there is none: one `SKIPPED (no network namespaces: …)`
/// line on stderr (written past the test harness's capture, so a skip is never silent).
/// Under CI (`CI` set, as CI services do) there is no skip: CI runs as root with iproute2
/// installed by .ci/run, so a lab that cannot be made there fails the test.
pub fn lab_or_skip(prefix: &str, n: usize) -> Option<Lab> {
    match Lab::new(prefix, n) {
        Ok(lab) => Some(lab),
        Err(e) if in_ci() => panic!("CI must run the network-namespace tests, but: {e}"),
        Err(e) => {
            let test = std::thread::current().name().unwrap_or("?").to_string();
            let line = format!("{test}: SKIPPED (no network namespaces: {e})\n");
            let _ = io::stderr().write_all(line.as_bytes());
            None
        }
    }
}

/// Whether this is a CI run: `CI` set to anything but "", "0" or "false".
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Removes the namespaces of crashed runs: names `<prefix>-<pid>-<k>-<node or hub>` whose pid
/// is not a live process (a live one may be another test process using its lab right now).
fn clean_stale(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    let stale: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| stale_pid(prefix, name).is_some_and(|pid| !super::is_alive(pid)))
        .collect();
    remove_namespaces(&stale);
}

/// The pid in a name of our pattern for `prefix`, or None if the name is not ours.
fn stale_pid(prefix: &str, name: &str) -> Option<i32> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let mut parts = rest.splitn(3, '-');
    let pid: i32 = parts.next()?.parse().ok()?;
    parts.next()?.parse::<usize>().ok()?;
    let tail = parts.next()?;
    (tail == "hub" || tail.parse::<usize>().is_ok()).then_some(pid)
}

/// Kills the processes inside the namespaces, then deletes them (their links go with them).
/// Failures are printed, not raised: this runs in drops, possibly while a test panics.
fn remove_namespaces(names: &[String]) {
    for name in names {
        let pids = ns_pids(name);
        for &pid in &pids {
            // SAFETY: kill(2) has no memory effects; the pid was found inside our namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if !pids.is_empty() && !wait_until(KILL_DEADLINE, || ns_pids(name).is_empty()) {
            eprintln!("netns {name}: processes {pids:?} survived SIGKILL");
        }
        if let Err(e) = ip(&["netns", "del", name]) {
            eprintln!("netns {name}: could not delete it: {e}");
        }
    }
}

/// The processes whose network namespace is `name` (`ip netns pids`).
fn ns_pids(name: &str) -> Vec<i32> {
    run("ip", &["netns", "pids", name], None)
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `ip args`; Err carries its stderr.
fn ip(args: &[&str]) -> Result<String, String> {
    run("ip", args, None)
}

/// Runs the lines of `script` as `ip -n ns -batch -` (one process for many changes; it stops
/// at the first failing line and names it).
fn ip_batch(ns: &str, script: &str) -> Result<String, String> {
    if script.is_empty() {
        return Ok(String::new());
    }
    run("ip", &["-n", ns, "-batch", "-"], Some(script))
}

/// Runs `program args` with `input` on stdin; Ok(stdout) on success, Err(stderr) otherwise.
fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A write error shows as the program's own failure below.
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}
