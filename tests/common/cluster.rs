//! A real cluster for the fault tests (issue 11): N nodes, each the real binary (master, workers
//! and the cluster helper) on its own temp folder and conf with a `cluster { }` block, on ports
//! chosen free at runtime, or each inside a namespace of a [`Lab`] for partitions. A test drives
//! nodes by index: requests, `kill -9` of a node's whole process tree or of its helper alone,
//! SIGSTOP/SIGCONT, restart, restart with a wiped data folder, and waits (always bounded) until
//! every group takes writes again. Leaders are read from `/cluster/status` when a node serves
//! it, whatever its shape (a node index or a name); nothing else of the cluster's HTTP side is
//! assumed. Drop stops every node and fails the test on a panic in any error log; a test that
//! failed gets the tail of every node's error log on stderr.

#![allow(dead_code)] // each cluster test file uses a part of it

pub mod verdict;
pub mod workload;

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ::cluster::placement::{self, Placement, Target};

use super::netns::Lab;
use super::{children_of, is_alive, temp_dir, try_request, wait_until, Response, BIN};

/// How long a node may take to serve `/status.html` after its start, or to stop.
const START_DEADLINE: Duration = Duration::from_secs(15);
const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// The client and peer ports of every node in a lab (each node has its own namespace).
const LAB_CLIENT_PORT: u16 = 8082;
const LAB_PEER_PORT: u16 = 9082;

/// What cluster to make.
#[derive(Debug, Clone)]
pub struct ClusterOpts {
    pub nodes: usize,
    pub groups: u32,
    pub replicas: usize,
    /// `worker_processes` of every node.
    pub workers: usize,
    /// The block's `timeout`.
    pub timeout: Duration,
    /// The block's `election_timeout`.
    pub election_timeout: Duration,
    /// The block's `reads`: "linearizable" or "local".
    pub reads: &'static str,
}

impl Default for ClusterOpts {
    fn default() -> Self {
        ClusterOpts {
            nodes: 3,
            groups: 3,
            replicas: 3,
            workers: 1,
            timeout: Duration::from_secs(2),
            election_timeout: Duration::from_millis(300),
            reads: "linearizable",
        }
    }
}

/// One node: its folder, conf, addresses and, while it runs, its master.
pub struct NodeProc {
    pub name: String,
    pub dir: PathBuf,
    pub conf_path: PathBuf,
    pub client: SocketAddr,
    pub peer: SocketAddr,
    /// Behind a lock so that faults (`&self`) can be injected while client threads run.
    state: Mutex<NodeState>,
}

#[derive(Default)]
struct NodeState {
    /// The master, while it runs (stopped or not).
    child: Option<Child>,
    /// Whether the tree is SIGSTOPped.
    stopped: bool,
}

impl NodeProc {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn error_log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.dir.join("error.log")).unwrap_or_default())
            .into_owned()
    }

    fn master(&self) -> Option<i32> {
        self.lock().child.as_ref().map(|c| c.id() as i32)
    }

    fn lock(&self) -> MutexGuard<'_, NodeState> {
        // A panicking test thread leaves a whole state behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The cluster: its nodes, their shared secret, and the lab they run in, if any.
pub struct TestCluster {
    pub opts: ClusterOpts,
    pub root: PathBuf,
    pub nodes: Vec<NodeProc>,
    pub placement: Placement,
    /// Declared after `nodes`: the nodes are stopped (in Drop) before the lab goes.
    lab: Option<Lab>,
}

impl TestCluster {
    /// Writes the secret and the confs on loopback ports chosen free now, starts every node and
    /// waits until each serves `/status.html` (not until the cluster has leaders: see
    /// [`TestCluster::wait_writable`]).
    pub fn start(opts: ClusterOpts) -> TestCluster {
        let addrs = free_addr_pairs(opts.nodes);
        TestCluster::build(opts, addrs, None)
    }

    /// As [`TestCluster::start`], node i inside `lab`'s namespace i, on the lab's addresses.
    pub fn start_in_lab(opts: ClusterOpts, lab: Lab) -> TestCluster {
        assert_eq!(
            lab.node_count(),
            opts.nodes,
            "one lab node per cluster node"
        );
        let addrs = (0..opts.nodes)
            .map(|i| {
                let ip = lab.node_addr(i);
                (
                    SocketAddr::new(ip, LAB_CLIENT_PORT),
                    SocketAddr::new(ip, LAB_PEER_PORT),
                )
            })
            .collect();
        TestCluster::build(opts, addrs, Some(lab))
    }

    fn build(opts: ClusterOpts, addrs: Vec<(SocketAddr, SocketAddr)>, lab: Option<Lab>) -> Self {
        let root = temp_dir();
        let secret = root.join("cluster.secret");
        fs::write(&secret, "a cluster secret of the fault tests\n").expect("write the secret");
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod 600");
        let nodes: Vec<NodeProc> = (0..opts.nodes)
            .map(|i| {
                let dir = root.join(format!("n{i}"));
                fs::create_dir_all(&dir).expect("create a node folder");
                NodeProc {
                    name: format!("n{i}"),
                    conf_path: dir.join("huststore.conf"),
                    dir,
                    client: addrs[i].0,
                    peer: addrs[i].1,
                    state: Mutex::default(),
                }
            })
            .collect();
        let placement = Placement::new(opts.nodes, opts.groups, opts.replicas);
        let cluster = TestCluster {
            opts,
            root,
            nodes,
            placement,
            lab,
        };
        for i in 0..cluster.nodes.len() {
            let text = cluster.conf_text(i, &secret);
            fs::write(&cluster.nodes[i].conf_path, text).expect("write a conf");
        }
        // Spawn all, then wait for each: a node may wait for its peers before it serves.
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i);
        }
        for i in 0..cluster.nodes.len() {
            cluster.wait_serving(i);
        }
        cluster
    }

    fn conf_text(&self, i: usize, secret: &Path) -> String {
        let node = &self.nodes[i];
        let dir = node.dir.display();
        let o = &self.opts;
        let mut s = format!(
            "# written by tests/common/cluster.rs\ndaemon off;\nmode kv;\nworker_processes {};\n\
             listen {};\npid {dir}/huststore.pid;\nerror_log {dir}/error.log info;\n\
             data_dir {dir}/data;\nmap_size 64m;\ncache_size 16m;\ndebug_endpoints on;\n\
             cluster {{\n    name faults;\n    node_id {};\n",
            o.workers, node.client, node.name
        );
        for n in &self.nodes {
            s.push_str(&format!("    node {} {} {};\n", n.name, n.client, n.peer));
        }
        s.push_str(&format!(
            "    groups {};\n    replicas {};\n    secret {};\n    timeout {}ms;\n    \
             election_timeout {}ms;\n    reads {};\n}}\n",
            o.groups,
            o.replicas,
            secret.display(),
            o.timeout.as_millis(),
            o.election_timeout.as_millis(),
            o.reads
        ));
        s
    }

    /// The lab the nodes run in (for cuts and heals), if any.
    pub fn lab(&self) -> Option<&Lab> {
        self.lab.as_ref()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    fn spawn(&self, i: usize) {
        let node = &self.nodes[i];
        let mut state = node.lock();
        assert!(state.child.is_none(), "node {i} already runs");
        let out = |name: &str| fs::File::create(node.dir.join(name)).expect("create a log file");
        let mut cmd = Command::new(BIN);
        cmd.arg("-c")
            .arg(&node.conf_path)
            .stdin(Stdio::null())
            .stdout(out("stdout.txt"))
            .stderr(out("stderr.txt"));
        let child = match &self.lab {
            Some(lab) => lab.spawn(i, cmd),
            None => cmd.spawn().expect("spawn huststore"),
        };
        state.child = Some(child);
        state.stopped = false;
    }

    fn wait_serving(&self, i: usize) {
        let mut exited = None;
        let up = wait_until(START_DEADLINE, || {
            if let Some(child) = self.nodes[i].lock().child.as_mut() {
                exited = child.try_wait().ok().flatten();
            }
            exited.is_some()
                || (self.nodes[i].dir.join("huststore.pid").exists()
                    && self
                        .request_timeout(i, "GET", "/status.html", b"", Duration::from_secs(1))
                        .is_ok_and(|r| r.status == 200))
        });
        let node = &self.nodes[i];
        let stderr = fs::read_to_string(node.dir.join("stderr.txt")).unwrap_or_default();
        match exited {
            Some(status) => {
                self.nodes[i].lock().child = None;
                panic!(
                    "node {i} exited at start ({status}): {}\n--- error log ---\n{}",
                    stderr.trim_end(),
                    self.nodes[i].error_log()
                );
            }
            None if !up => panic!(
                "node {i} not serving after {START_DEADLINE:?}; stderr: {}\n--- error log ---\n{}",
                stderr.trim_end(),
                node.error_log()
            ),
            None => {}
        }
    }

    /// Whether node `i` has a master running (stopped or not).
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].master().is_some_and(is_alive)
    }

    /// Whether node `i` runs and is not SIGSTOPped: it can answer.
    pub fn is_up(&self, i: usize) -> bool {
        self.is_running(i) && !self.nodes[i].lock().stopped
    }

    /// The indexes of the nodes that can answer.
    pub fn up_nodes(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.is_up(i)).collect()
    }

    pub fn master_pid(&self, i: usize) -> i32 {
        self.nodes[i].master().expect("the node does not run")
    }

    /// The master of node `i` and everything below it.
    pub fn tree(&self, i: usize) -> Vec<i32> {
        let Some(master) = self.nodes[i].master() else {
            return Vec::new();
        };
        let mut all = vec![master];
        let mut k = 0;
        while k < all.len() {
            let kids = children_of(all[k]);
            all.extend(kids);
            k += 1;
        }
        all
    }

    /// The cluster helper of node `i`: the master's child that holds the listening socket
    /// `<data_dir>/cluster.sock` (found through /proc, in the node's own network namespace).
    /// None while there is none (not yet respawned, or the node does not run).
    pub fn helper_pid(&self, i: usize) -> Option<i32> {
        let master = self.nodes[i].master()?;
        let sock = self.nodes[i].data_dir().join("cluster.sock");
        let sock = sock.to_str()?;
        let table = fs::read_to_string(format!("/proc/{master}/net/unix")).ok()?;
        // Num RefCount Protocol Flags Type St Inode Path
        let inodes: Vec<String> = table
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 8 && f[7] == sock).then(|| format!("socket:[{}]", f[6]))
            })
            .collect();
        if inodes.is_empty() {
            return None;
        }
        children_of(master).into_iter().find(|&pid| {
            fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| fs::read_link(e.path()).ok())
                .any(|target| inodes.iter().any(|s| target.as_os_str() == s.as_str()))
        })
    }

    /// The master's children that are not the helper: the workers.
    pub fn worker_pids(&self, i: usize) -> Vec<i32> {
        let Some(master) = self.nodes[i].master() else {
            return Vec::new();
        };
        let helper = self.helper_pid(i);
        children_of(master)
            .into_iter()
            .filter(|&p| Some(p) != helper)
            .collect()
    }

    /// Waits until node `i` has a helper other than `not` (a respawn); its pid, or None.
    pub fn wait_helper(&self, i: usize, not: Option<i32>, timeout: Duration) -> Option<i32> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.helper_pid(i).filter(|&p| Some(p) != not);
            found.is_some()
        });
        found
    }

    /// kill -9 of node `i`'s whole tree (master, workers, helper); waits until all are gone.
    pub fn kill9(&self, i: usize) {
        let pids = self.tree(i);
        signal_all(&pids, libc::SIGKILL);
        let child = self.nodes[i].lock().child.take();
        if let Some(mut child) = child {
            let _ = child.wait();
        }
        self.nodes[i].lock().stopped = false;
        let gone = wait_until(STOP_DEADLINE, || pids.iter().all(|&p| !is_alive(p)));
        assert!(gone, "node {i}: processes {pids:?} survived SIGKILL");
    }

    /// kill -9 of node `i`'s helper alone; its pid. Panics if the node has none.
    pub fn kill9_helper(&self, i: usize) -> i32 {
        let pid = self
            .wait_helper(i, None, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("node {i} has no cluster helper"));
        signal_all(&[pid], libc::SIGKILL);
        pid
    }

    /// SIGSTOP of node `i`'s whole tree.
    pub fn sigstop(&self, i: usize) {
        signal_all(&self.tree(i), libc::SIGSTOP);
        self.nodes[i].lock().stopped = true;
    }

    /// SIGCONT of node `i`'s whole tree.
    pub fn sigcont(&self, i: usize) {
        signal_all(&self.tree(i), libc::SIGCONT);
        self.nodes[i].lock().stopped = false;
    }

    /// Starts node `i` again on its folder and conf (after `kill9`), and waits until it serves.
    pub fn restart(&self, i: usize) {
        self.spawn(i);
        self.wait_serving(i);
    }

    /// Removes node `i`'s data folder (the node must be down): its next start is on an empty disk.
    pub fn wipe(&self, i: usize) {
        assert!(!self.is_running(i), "wipe of node {i} while it runs");
        let data = self.nodes[i].data_dir();
        if data.exists() {
            fs::remove_dir_all(&data).expect("remove the data folder");
        }
    }

    /// One request to node `i` (`Connection: close`), from inside its namespace in a lab.
    pub fn request_timeout(
        &self,
        i: usize,
        method: &str,
        target: &str,
        body: &[u8],
        timeout: Duration,
    ) -> io::Result<Response> {
        let addr = self.nodes[i].client;
        self.in_node(i, || try_request(addr, method, target, body, timeout))
    }

    /// [`TestCluster::request_timeout`] with a timeout past the cluster's own `timeout`, so
    /// that a request the cluster answers (with 503 or 504 at worst) is never cut short here.
    pub fn request(&self, i: usize, method: &str, target: &str) -> io::Result<Response> {
        self.request_timeout(i, method, target, b"", self.request_deadline())
    }

    /// How long a client waits for an answer: the cluster's `timeout` and a margin.
    pub fn request_deadline(&self) -> Duration {
        self.opts.timeout + Duration::from_secs(3)
    }

    /// Runs `f` where node `i`'s client address is reachable: in its namespace in a lab (sockets
    /// made there stay there), on this thread otherwise.
    pub fn in_node<T: Send>(&self, i: usize, f: impl FnOnce() -> T + Send) -> T {
        match &self.lab {
            Some(lab) => lab.in_node(i, f),
            None => f(),
        }
    }

    /// The group that owns a plain key.
    pub fn group_of_key(&self, key: &str) -> u32 {
        self.placement.group_of(Target::Key(key.as_bytes()))
    }

    /// The group that owns a table.
    pub fn group_of_table(&self, tb: &str) -> u32 {
        self.placement.group_of(Target::Table(tb))
    }

    /// The first `<tag><n>` (n = 0, 1, …) that falls in group `g`.
    pub fn key_in_group(&self, g: u32, tag: &str) -> String {
        (0..100_000)
            .map(|n| format!("{tag}{n}"))
            .find(|k| {
                placement::group_of_slot(placement::slot_of_key(k.as_bytes()), self.opts.groups)
                    == g
            })
            .unwrap_or_else(|| panic!("no key of group {g}"))
    }

    /// Group `g`'s member nodes, its preferred leader first.
    pub fn members(&self, g: u32) -> Vec<usize> {
        self.placement.members(g).to_vec()
    }

    /// Each group's leader (node index) as the answering nodes' `/cluster/status` say; of two
    /// views the one with the higher term wins. None for a group no node names a leader of (or
    /// when no node serves the report).
    pub fn leaders(&self) -> Vec<Option<usize>> {
        let mut best: Vec<Option<(u64, usize)>> = vec![None; self.opts.groups as usize];
        for i in self.up_nodes() {
            let Ok(r) =
                self.request_timeout(i, "GET", "/cluster/status", b"", Duration::from_secs(2))
            else {
                continue;
            };
            if r.status != 200 {
                continue;
            }
            for (g, term, leader) in parse_status(&r.body, &self.nodes) {
                if let Some(slot) = best.get_mut(g as usize) {
                    if slot.is_none_or(|(t, _)| term > t) {
                        *slot = Some((term, leader));
                    }
                }
            }
        }
        best.into_iter().map(|b| b.map(|(_, l)| l)).collect()
    }

    /// Group `g`'s leader as the status reports say, else its preferred leader (the node that
    /// initializes it, and so most likely its leader in a fresh cluster). The bool says
    /// whether it was reported.
    pub fn leader_or_guess(&self, g: u32) -> (usize, bool) {
        match self.leaders().get(g as usize).copied().flatten() {
            Some(l) => (l, true),
            None => (self.placement.preferred_leader(g).unwrap_or(0), false),
        }
    }

    /// A put of `key`=`val` through node `i`: its response or the I/O error.
    pub fn put(&self, i: usize, key: &str, val: &str) -> io::Result<Response> {
        self.request(i, "GET", &format!("/put?key={key}&val={val}"))
    }

    /// Waits until a write to every group succeeds through node `via` (a put of a key of each
    /// group), up to `timeout`. Ok(how long it took), or Err(the last failures).
    pub fn wait_writable_via(&self, via: usize, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let keys: Vec<String> = (0..self.opts.groups)
            .map(|g| self.key_in_group(g, "writable-"))
            .collect();
        let mut pending: Vec<usize> = (0..keys.len()).collect();
        let mut last = Vec::new();
        while start.elapsed() < timeout {
            last.clear();
            pending.retain(|&g| match self.put(via, &keys[g], "w") {
                Ok(r) if r.status == 200 => false,
                Ok(r) => {
                    last.push(format!(
                        "group {g}: {} {:?}",
                        r.status,
                        r.header("Cluster-Error")
                    ));
                    true
                }
                Err(e) => {
                    last.push(format!("group {g}: {e}"));
                    true
                }
            });
            if pending.is_empty() {
                return Ok(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "through node {via} after {timeout:?}: {}",
            last.join("; ")
        ))
    }

    /// Puts to a key of group `g` through the nodes of `via` in turn until one is acknowledged,
    /// up to `timeout`: Ok(how long it took), or Err(the last failure).
    pub fn wait_group_writable(
        &self,
        g: u32,
        via: &[usize],
        timeout: Duration,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        let key = self.key_in_group(g, "failover-");
        let mut last = String::from("no attempt");
        for k in 0.. {
            if start.elapsed() > timeout {
                break;
            }
            let node = via[k % via.len()];
            match self.put(node, &key, "x") {
                Ok(r) if r.status == 200 => return Ok(start.elapsed()),
                Ok(r) => last = format!("node {node}: {} {:?}", r.status, r.headers),
                Err(e) => last = format!("node {node}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "group {g} took no write within {timeout:?}; last: {last}"
        ))
    }

    /// Waits until every group takes a write through every node that can answer.
    pub fn wait_writable(&self, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        for i in self.up_nodes() {
            let left = timeout.saturating_sub(start.elapsed());
            self.wait_writable_via(i, left)?;
        }
        Ok(start.elapsed())
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for i in 0..self.nodes.len() {
            let pids = self.tree(i);
            signal_all(&pids, libc::SIGCONT);
            if let Some(&master) = pids.first() {
                signal_all(&[master], libc::SIGTERM);
            }
            let stopped = wait_until(STOP_DEADLINE, || {
                if let Some(child) = self.nodes[i].lock().child.as_mut() {
                    let _ = child.try_wait();
                }
                pids.iter().all(|&p| !is_alive(p))
            });
            if !stopped {
                eprintln!("node {i}: did not stop on SIGTERM within {STOP_DEADLINE:?}; killed");
                signal_all(&self.tree(i), libc::SIGKILL);
            }
            let child = self.nodes[i].lock().child.take();
            if let Some(mut child) = child {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let mut panics = Vec::new();
        for node in &self.nodes {
            let log = node.error_log();
            if panicking {
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                eprintln!("--- {} error log (last 40 lines) ---\n{tail}", node.name);
            } else if log.contains("panic") {
                panics.push(format!("--- {} ---\n{log}", node.name));
            }
        }
        // The lab (its namespaces) goes after the nodes, then the folder.
        self.lab.take();
        let _ = fs::remove_dir_all(&self.root);
        if !panicking && !panics.is_empty() {
            panic!("an error log has a panic:\n{}", panics.join("\n"));
        }
    }
}

/// Sends `sig` to each pid (gone ones are skipped silently).
fn signal_all(pids: &[i32], sig: i32) {
    for &pid in pids {
        // SAFETY: kill(2) has no memory effects.
        unsafe { libc::kill(pid, sig) };
    }
}

/// `n` (client, peer) loopback address pairs on distinct free ports: all bound at once, so
/// no two are the same, then released for the nodes to bind.
fn free_addr_pairs(n: usize) -> Vec<(SocketAddr, SocketAddr)> {
    let listeners: Vec<TcpListener> = (0..2 * n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0"))
        .collect();
    let addr = |k: usize| {
        let port = listeners[k].local_addr().expect("local addr").port();
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    };
    (0..n).map(|i| (addr(2 * i), addr(2 * i + 1))).collect()
}

/// (group, term, leader index) of each group of a `/cluster/status` body that names a leader:
/// `{"groups":[{"group":G,"leader":L,"term":T,…},…]}`, L a node index or a node name (or an
/// object with a "name" or "index").
fn parse_status(body: &[u8], nodes: &[NodeProc]) -> Vec<(u32, u64, usize)> {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let Some(groups) = json.get("groups").and_then(|g| g.as_array()) else {
        return Vec::new();
    };
    let index_of = |v: &serde_json::Value| -> Option<usize> {
        if let Some(n) = v.as_u64() {
            return usize::try_from(n).ok().filter(|&n| n < nodes.len());
        }
        if let Some(name) = v.as_str() {
            return nodes.iter().position(|n| n.name == name);
        }
        v.get("name")
            .or_else(|| v.get("index"))
            .and_then(|inner| if inner.is_object() { None } else { Some(inner) })
            .and_then(|inner| {
                inner
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .or_else(|| {
                        nodes
                            .iter()
                            .position(|n| Some(n.name.as_str()) == inner.as_str())
                    })
            })
    };
    groups
        .iter()
        .filter_map(|g| {
            let group = u32::try_from(g.get("group")?.as_u64()?).ok()?;
            let term = g.get("term").and_then(|t| t.as_u64()).unwrap_or(0);
            let leader = index_of(g.get("leader")?)?;
            Some((group, term, leader))
        })
        .collect()
}
