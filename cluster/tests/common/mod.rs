//! What the in-process cluster tests share: a temp folder, the secret file, the peer listeners
//! and the confs of three nodes on loopback (4 groups of 3 replicas), and a store opened as a
//! node's process opens it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use storage::{Store, StoreOptions};

pub const NODES: usize = 3;
pub const GROUPS: u32 = 4;
pub const NOW: u64 = 1_700_000_000_000;
pub const SECRET: &str = "0123456789abcdef0123";

/// A folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("cluster-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The confs of the three nodes (node `i`'s folder is `<root>/n<i>`, created) and each node's
/// bound peer listener, in node order.
pub async fn confs(root: &TempDir) -> (Vec<conf::Conf>, Vec<tokio::net::TcpListener>) {
    let secret = root.0.join("cluster.secret");
    fs::write(&secret, format!("{SECRET}\n")).expect("secret");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    // Client addresses are only named in the confs, never bound by a node: their probes stay
    // open until every port is chosen, so no later bind of port 0 gets one of them again.
    let mut client_probes = Vec::new();
    for _ in 0..NODES {
        let peer = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = |a: std::io::Result<std::net::SocketAddr>| a.expect("addr").port();
        ports.push((port(client.local_addr()), port(peer.local_addr())));
        listeners.push(peer);
        client_probes.push(client);
    }
    let confs = (0..NODES)
        .map(|i| {
            let dir = root.0.join(format!("n{i}"));
            fs::create_dir_all(&dir).expect("node dir");
            let text = conf_text(i, &dir, &secret, &ports);
            conf::parse_str(&text, &root.0.join(format!("n{i}.conf"))).expect("conf")
        })
        .collect();
    (confs, listeners)
}

/// The conf of node `i`, whose folder is `dir`.
fn conf_text(i: usize, dir: &Path, secret: &Path, ports: &[(u16, u16)]) -> String {
    let mut s = format!(
        "listen 127.0.0.1:{};\ndata_dir {};\nmap_size 64m;\ncluster {{\n    name test;\n    node_id n{i};\n",
        ports[i].0,
        dir.display()
    );
    for (n, (client, peer)) in ports.iter().enumerate() {
        s.push_str(&format!(
            "    node n{n} 127.0.0.1:{client} 127.0.0.1:{peer};\n"
        ));
    }
    s.push_str(&format!(
        "    groups {GROUPS};\n    replicas 3;\n    secret {};\n    timeout 2s;\n    election_timeout 300ms;\n}}\n",
        secret.display()
    ));
    s
}

/// The node's store, as its process opens it (without fsyncs: a test has no machine crash).
pub fn open_store(conf: &conf::Conf) -> Arc<Store> {
    let store = Store::open(&StoreOptions {
        data_dir: conf.data_dir.join("db"),
        map_size: conf.map_size,
        sync_writes: false,
        cache_dir: conf.data_dir.join("cache"),
        cache_size: 8 << 20,
        write_map: true,
        fail_stop: Default::default(),
    })
    .expect("store");
    Arc::new(store)
}

/// Shuts node `i` (`node` over `store`) down and waits, 10 s at most, until openraft's tasks
/// let go of its store (a restart on the same folder needs it closed).
#[allow(dead_code)] // helper_socket.rs stops its nodes another way
pub async fn shut_down(i: usize, node: cluster::node::Node, store: Arc<Store>) {
    node.shutdown().await;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while Arc::strong_count(&store) > 1 {
        assert!(
            std::time::Instant::now() < until,
            "node {i} keeps its store"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
