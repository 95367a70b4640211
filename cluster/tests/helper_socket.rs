//! Three nodes in one process, each serving its local socket in its data folder as the
//! cluster helper does: a client on a plain `UnixStream` (as a worker's link) proposes
//! encoded `storage::Command`s to node 0 for every group and gets the answers a local apply
//! gives, matched by id whatever their order; a read barrier passes; garbage closes that
//! connection only; a group that does not exist is Unavailable; all three stores then hold
//! the records. Every wait has a deadline.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::helper::{serve_local, SOCKET};
use cluster::local::{decode_prefix, Frame, Message};
use cluster::node::Node;
use cluster::placement::{Placement, Target};
use cluster::raft::Applied;
use openraft::ServerState;
use storage::{Command, Store, StoreOptions, Write};
use tokio::sync::watch;

mod common;

use common::{open_store, TempDir, GROUPS, NODES, NOW, SECRET};

struct Cluster {
    root: TempDir,
    confs: Vec<conf::Conf>,
    nodes: Vec<(Arc<Node>, Arc<Store>)>,
    placement: Placement,
    stop: watch::Sender<bool>,
}

async fn start() -> Cluster {
    let root = TempDir::new("helper");
    let (all_confs, listeners) = common::confs(&root).await;
    let (stop, stopped) = watch::channel(false);
    let mut confs = Vec::new();
    let mut nodes = Vec::new();
    for (conf, listener) in all_confs.into_iter().zip(listeners) {
        let dir = conf.data_dir.clone();
        let store = open_store(&conf);
        let node = Arc::new(
            Node::start_on(&conf, store.clone(), listener)
                .await
                .expect("start"),
        );
        // A stale file where the socket goes is replaced.
        fs::write(dir.join(SOCKET), b"stale").expect("stale socket");
        serve_local(
            &dir.join(SOCKET),
            node.clone(),
            Duration::from_secs(2),
            stopped.clone(),
        )
        .expect("serve");
        let mode = fs::metadata(dir.join(SOCKET))
            .expect("socket")
            .permissions();
        assert_eq!(mode.mode() & 0o777, 0o600);
        confs.push(conf);
        nodes.push((node, store));
    }
    let placement = Placement::from_conf(confs[0].cluster.as_ref().expect("cluster"));
    Cluster {
        root,
        confs,
        nodes,
        placement,
        stop,
    }
}

/// Waits until every group has a leader that node 0 knows of.
async fn leaders_known(c: &Cluster) {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let mut led = vec![false; GROUPS as usize];
        for (node, _) in &c.nodes {
            for st in node.status().await {
                led[st.group as usize] |= st.state == ServerState::Leader;
            }
        }
        let known = c.nodes[0].0.status().await;
        if led.iter().all(|l| *l) && known.iter().all(|s| s.leader.is_some()) {
            return;
        }
        assert!(Instant::now() < until, "not every group has a known leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A worker's end, blocking with a read deadline.
struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(c: &Cluster, i: usize) -> Client {
        let stream = UnixStream::connect(c.confs[i].data_dir.join(SOCKET)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, frames: &[Frame]) {
        let mut out = Vec::new();
        for f in frames {
            f.encode(&mut out);
        }
        self.stream.write_all(&out).expect("send");
    }

    /// The next frame; `None` once the helper closed the connection.
    fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some((f, used)) = decode_prefix(&self.buf).expect("a well-formed answer") {
                self.buf.drain(..used);
                return Some(f);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("no answer in time: {e}"),
            }
        }
    }

    /// Sends `frames` at once; their answers by id, however they came.
    fn ask(&mut self, frames: &[Frame]) -> HashMap<u64, Message> {
        self.send(frames);
        let mut got = HashMap::new();
        while got.len() < frames.len() {
            let f = self.next().expect("an answer before the close");
            assert!(frames.iter().any(|r| r.id == f.id), "unasked id {}", f.id);
            assert!(got.insert(f.id, f.message).is_none(), "two answers");
        }
        got
    }
}

fn propose(id: u64, group: u32, cmd: &Command<'_>) -> Frame {
    let mut command = Vec::new();
    cmd.encode(&mut command);
    Frame {
        id,
        message: Message::Propose { group, command },
    }
}

fn put<'a>(key: &'a str, val: &'a str) -> Command<'a> {
    Command {
        now_ms: NOW,
        write: Write::Put {
            key: key.as_bytes(),
            val: val.as_bytes(),
            expires_at: 0,
            ver: 0,
        },
    }
}

fn hset<'a>(tb: &'a str, key: &'a str, val: &'a str) -> Command<'a> {
    Command {
        now_ms: NOW,
        write: Write::Hset {
            tb,
            key: key.as_bytes(),
            val: val.as_bytes(),
            expires_at: 0,
            ver: 0,
        },
    }
}

fn hincrby<'a>(tb: &'a str, key: &'a str, delta: i64) -> Command<'a> {
    Command {
        now_ms: NOW,
        write: Write::Hincrby {
            tb,
            key: key.as_bytes(),
            delta,
            expires_at: 0,
            ver: 0,
        },
    }
}

/// What applying `cmds` in order to a fresh local store answers.
fn local_answers(dir: &Path, cmds: &[Command<'_>]) -> Vec<Applied> {
    let store = Store::open(&StoreOptions {
        data_dir: dir.join("db"),
        map_size: 64 << 20,
        sync_writes: false,
        cache_dir: dir.join("cache"),
        cache_size: 8 << 20,
        write_map: true,
    })
    .expect("local store");
    cmds.iter()
        .map(|cmd| {
            let mut b = store.batch();
            let applied = Applied::of(b.apply(cmd)).expect("local apply");
            b.commit().expect("commit");
            applied
        })
        .collect()
}

/// A key (`tag` + a number) or table name that lands in `group`.
fn name_in(p: &Placement, tag: &str, group: u32, table: bool) -> String {
    (0..)
        .map(|n| format!("{tag}{n}"))
        .find(|k| {
            let t = if table {
                Target::Table(k.as_str())
            } else {
                Target::Key(k.as_bytes())
            };
            p.group_of(t) == group
        })
        .expect("a name")
}

async fn scenario() {
    let c = start().await;
    leaders_known(&c).await;

    // Per group: put k=1, put k=2, hset t.f, hincrby t.n +5, hincrby t.n -2, as one round of
    // frames per step across the groups, ids descending so that order cannot match them.
    let keys: Vec<String> = (0..GROUPS)
        .map(|g| name_in(&c.placement, "k", g, false))
        .collect();
    let tables: Vec<String> = (0..GROUPS)
        .map(|g| name_in(&c.placement, "t", g, true))
        .collect();
    let steps = |g: usize| {
        vec![
            put(&keys[g], "one"),
            put(&keys[g], "two"),
            hset(&tables[g], "f", "v"),
            hincrby(&tables[g], "n", 5),
            hincrby(&tables[g], "n", -2),
        ]
    };
    let expected = local_answers(&c.root.0.join("local"), &steps(0));
    assert_eq!(expected[0], Applied::Written { ver: 1 });
    assert_eq!(expected[1], Applied::Written { ver: 2 });
    assert!(matches!(expected[4], Applied::Counted { value: 3, .. }));

    let mut client = Client::connect(&c, 0);
    let mut other = Client::connect(&c, 0);
    let mut id = 1_000u64;
    for (step, want) in expected.iter().enumerate() {
        let frames: Vec<Frame> = (0..GROUPS)
            .map(|g| {
                id -= 1;
                propose(id, g, &steps(g as usize)[step])
            })
            .collect();
        let got = client.ask(&frames);
        for (g, f) in frames.iter().enumerate() {
            assert_eq!(
                got[&f.id],
                Message::Applied(want.clone()),
                "group {g}, step {step}"
            );
        }
    }

    // Read barriers on every group's leader pass; elsewhere they are Unavailable.
    let mut ready = 0;
    for i in 0..NODES {
        let mut cl = Client::connect(&c, i);
        let frames: Vec<Frame> = (0..GROUPS)
            .map(|group| Frame {
                id: u64::from(group),
                message: Message::ReadBarrier { group },
            })
            .collect();
        for (_, m) in cl.ask(&frames) {
            match m {
                Message::ReadReady => ready += 1,
                Message::Unavailable { .. } => {}
                m => panic!("a read barrier answered {m:?}"),
            }
        }
    }
    assert!(ready >= GROUPS, "every group's leader passes its barrier");

    // Garbage, a group that does not exist, an undecodable command, an answer sent as a
    // request: the last three answered, the first closes its connection only.
    let mut bad = Client::connect(&c, 0);
    bad.stream
        .write_all(b"\x00\x00\x00\x10\x63garbage garbage")
        .expect("send garbage");
    assert!(bad.next().is_none(), "garbage closes the connection");
    let odd = [
        propose(1, GROUPS + 7, &put("x", "y")),
        Frame {
            id: 2,
            message: Message::Propose {
                group: 0,
                command: b"\x07 not a command".to_vec(),
            },
        },
        Frame {
            id: 3,
            message: Message::ReadReady,
        },
    ];
    let got = other.ask(&odd);
    for i in 1..=3 {
        assert!(
            matches!(got[&i], Message::Unavailable { .. }),
            "{i}: {:?}",
            got[&i]
        );
    }
    assert_eq!(
        got[&2],
        Message::Unavailable {
            why: "undecodable command".into()
        }
    );
    // A worker that goes away mid-request does not stop the helper.
    let mut gone = Client::connect(&c, 0);
    gone.send(&[propose(9, 0, &put("gone", "x"))]);
    drop(gone);
    let got = client.ask(&[propose(7, 1, &put(&keys[1], "three"))]);
    assert_eq!(got[&7], Message::Applied(Applied::Written { ver: 3 }));

    // Every store holds the records.
    let until = Instant::now() + Duration::from_secs(10);
    for (i, (_, store)) in c.nodes.iter().enumerate() {
        for g in 0..GROUPS as usize {
            let want: &[u8] = if g == 1 { b"three" } else { b"two" };
            loop {
                let mut b = store.batch();
                let key_ok = b
                    .get(keys[g].as_bytes(), NOW)
                    .is_ok_and(|r| r.value == want);
                let field_ok = b.hget(&tables[g], b"n", NOW).is_ok_and(|r| r.value == b"3");
                drop(b);
                if key_ok && field_ok {
                    break;
                }
                assert!(Instant::now() < until, "node {i} lacks group {g}'s records");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    let _ = c.stop.send(true);
    for (node, _) in c.nodes {
        if let Ok(n) = Arc::try_unwrap(node) {
            n.shutdown().await;
        }
    }
}

#[test]
fn the_local_socket_answers_proposals_and_barriers_by_id_and_survives_bad_clients() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), scenario()).await })
        .expect("the scenario ends within 60 s");
}

/// `helper::run` on a one-node cluster: it serves the socket, a write is applied, and a stop
/// returns 0; a conf without a cluster block is a fatal init (2).
#[test]
fn run_serves_until_stopped_and_refuses_a_conf_without_a_cluster() {
    let root = std::env::temp_dir().join(format!("cluster-helper-run-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).expect("temp dir");
    let root = TempDir(root);
    let secret = root.0.join("cluster.secret");
    fs::write(&secret, format!("{SECRET}\n")).expect("secret");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod");
    let free = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (client, peer) = (free(), free());
    let text = format!(
        "listen 127.0.0.1:{client};\ndata_dir {};\nmap_size 64m;\ncluster {{\n    name test;\n    node_id n0;\n    node n0 127.0.0.1:{client} 127.0.0.1:{peer};\n    groups 2;\n    replicas 1;\n    secret {};\n    timeout 2s;\n    election_timeout 300ms;\n}}\n",
        root.0.display(),
        secret.display()
    );
    let conf = conf::parse_str(&text, &root.0.join("n0.conf")).expect("conf");

    let mut plain = conf.clone();
    plain.cluster = None;
    let (_keep, never) = watch::channel(false);
    assert_eq!(cluster::helper::run(&plain, never, || {}), 2);

    let (stop, stopped) = watch::channel(false);
    let ready = Arc::new(AtomicBool::new(false));
    let runner = {
        let (conf, ready) = (conf.clone(), ready.clone());
        let report = move || ready.store(true, Ordering::SeqCst);
        std::thread::spawn(move || cluster::helper::run(&conf, stopped, report))
    };
    let until = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        assert!(
            Instant::now() < until,
            "no write applied through run's socket"
        );
        let Ok(stream) = UnixStream::connect(root.0.join(SOCKET)) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut cl = Client {
            stream,
            buf: Vec::new(),
        };
        match cl.ask(&[propose(5, 0, &put("run", "ok"))]).remove(&5) {
            Some(Message::Unavailable { .. }) => std::thread::sleep(Duration::from_millis(20)),
            m => break m,
        }
    };
    assert_eq!(answer, Some(Message::Applied(Applied::Written { ver: 1 })));
    assert!(
        ready.load(Ordering::SeqCst),
        "served before reporting ready"
    );
    let _ = stop.send(true);
    assert_eq!(runner.join().expect("run returns"), 0);
}
