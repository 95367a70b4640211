//! The body of the cluster helper process (`cluster.md` §9): it opens the node's store, runs
//! the [`Node`] and serves the workers' local socket (`<data_dir>/cluster.sock`), answering
//! each [`Message::Propose`], [`Message::ReadBarrier`], [`Message::Fetch`] (a GET to another
//! node's client address, `crate::fetch`) and [`Message::Report`] under its request id. Every request
//! runs in a task of its own so that a slow group never holds up the answers of the others;
//! answers go back in the order they are ready. A malformed frame ends its connection only,
//! and a worker that goes away never stops the helper.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use storage::{Command, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::fetch::Fetcher;
use crate::local::{decode_prefix, Frame, Message};
use crate::metrics::Refusal;
use crate::node::Node;
use crate::report::Report;

/// The socket's name in the data folder; the worker's `kv::CLUSTER_SOCKET` names the same.
pub const SOCKET: &str = "cluster.sock";

/// The exit code of a helper that could not start: the master does not respawn it (the
/// worker's `EXIT_FATAL_INIT`).
pub const EXIT_FATAL_INIT: i32 = 2;

/// Runs the helper until `stop` turns `true` (or its sender is dropped; the master makes the
/// channel with [`crate::watch`]): 0 after a clean
/// stop (the Node shut down), [`EXIT_FATAL_INIT`] when it could not start (logged). `ready`
/// is called once, when the Node runs and the local socket is served (the master's
/// readiness byte).
pub fn run(conf: &conf::Conf, stop: watch::Receiver<bool>, ready: impl FnOnce()) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log::error!("cluster helper: could not build its runtime: {e}");
            return EXIT_FATAL_INIT;
        }
    };
    // Opened here, after the fork, as a worker does: LMDB forbids carrying one across it.
    let store = match Store::open(&storage::StoreOptions {
        data_dir: conf.data_dir.join("db"),
        map_size: conf.map_size,
        sync_writes: conf.sync_writes,
        cache_dir: conf.data_dir.join("cache"),
        cache_size: conf.cache_size,
        write_map: conf.mode == conf::Mode::Kv,
        fail_stop: Default::default(),
    }) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            log::error!(
                "cluster helper: could not open the store in {}: {e}",
                conf.data_dir.display()
            );
            return EXIT_FATAL_INIT;
        }
    };
    let code = runtime.block_on(serve(conf, store.clone(), stop, ready));
    if code == 0 && !conf.sync_writes {
        if let Err(e) = store.sync() {
            log::error!("cluster helper: could not flush the store to disk: {e}");
        }
    }
    code
}

/// Starts the node and the local server, waits for `stop`, then shuts both down.
async fn serve(
    conf: &conf::Conf,
    store: Arc<Store>,
    mut stop: watch::Receiver<bool>,
    ready: impl FnOnce(),
) -> i32 {
    let node = match start_node(conf, store).await {
        Ok(n) => Arc::new(n),
        Err(e) => {
            log::error!("cluster helper: could not start the node: {e}");
            return EXIT_FATAL_INIT;
        }
    };
    let timeout = conf
        .cluster
        .as_ref()
        .map_or(Duration::from_secs(5), |c| c.timeout);
    let clients = conf
        .cluster
        .as_ref()
        .map(|c| c.nodes.iter().map(|n| n.client).collect())
        .unwrap_or_default();
    let fetcher = Arc::new(Fetcher::new(clients, timeout));
    let server = match serve_local_with(
        &conf.data_dir.join(SOCKET),
        node.clone(),
        timeout,
        stop.clone(),
        fetcher,
    ) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cluster helper: {e}");
            shut_down(node, timeout).await;
            return EXIT_FATAL_INIT;
        }
    };
    ready();
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            break;
        }
    }
    let _ = server.await;
    shut_down(node, timeout).await;
    0
}

/// How often, and how far apart, the helper tries to take its peer port and its consensus
/// log: a helper that is still stopping (its master was killed, and a new master started at
/// once) holds them for a moment, as a dying tree holds the client port (the master's
/// `listen` retries the same way).
const START_TRIES: u32 = 10;
const START_PAUSE: Duration = Duration::from_millis(500);

/// [`Node::start`], tried again while the peer port is in use or the log is locked.
async fn start_node(conf: &conf::Conf, store: Arc<Store>) -> io::Result<Node> {
    let mut tries = 1;
    loop {
        match Node::start(conf, store.clone()).await {
            Err(e)
                if tries < START_TRIES
                    && matches!(
                        e.kind(),
                        io::ErrorKind::AddrInUse | io::ErrorKind::WouldBlock
                    ) =>
            {
                log::warn!("cluster helper: {e}; trying again in {START_PAUSE:?}");
                tries += 1;
                tokio::time::sleep(START_PAUSE).await;
            }
            r => return r,
        }
    }
}

/// Shuts the node down once the requests still running let go of it (each is bounded by
/// `timeout`); past that it is dropped as it is.
async fn shut_down(mut node: Arc<Node>, timeout: Duration) {
    let until = tokio::time::Instant::now() + timeout + Duration::from_secs(1);
    loop {
        match Arc::try_unwrap(node) {
            Ok(n) => return n.shutdown().await,
            Err(still) if tokio::time::Instant::now() < until => node = still,
            Err(_) => {
                log::warn!("cluster helper: requests outlived the stop; the node is dropped");
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Binds the local socket at `path` (a stale file removed first, the new one mode 0600) and
/// serves worker connections on it until `stop` turns `true`; each request may take up to
/// `timeout`. Must be called inside a tokio runtime. The handle ends once the listener and
/// every connection are closed (requests still running finish on their own).
pub fn serve_local(
    path: &Path,
    node: Arc<Node>,
    timeout: Duration,
    stop: watch::Receiver<bool>,
) -> io::Result<JoinHandle<()>> {
    // No node to fetch from: every Fetch is answered Unavailable.
    let fetcher = Arc::new(Fetcher::new(Vec::new(), timeout));
    serve_local_with(path, node, timeout, stop, fetcher)
}

/// [`serve_local`], with the client that answers the workers' `Fetch` requests.
pub fn serve_local_with(
    path: &Path,
    node: Arc<Node>,
    timeout: Duration,
    stop: watch::Receiver<bool>,
    fetcher: Arc<Fetcher>,
) -> io::Result<JoinHandle<()>> {
    let context = |what: &str, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(context("could not remove the stale socket", e)),
    }
    let listener = UnixListener::bind(path).map_err(|e| context("could not bind", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| context("could not restrict", e))?;
    let ctx = Arc::new(Ctx {
        node,
        timeout,
        fetcher,
    });
    Ok(tokio::spawn(accept(listener, ctx, stop)))
}

/// What answering a request needs.
struct Ctx {
    node: Arc<Node>,
    timeout: Duration,
    fetcher: Arc<Fetcher>,
}

async fn accept(listener: UnixListener, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let mut connections = Vec::new();
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    connections.retain(|c: &JoinHandle<()>| !c.is_finished());
                    let conn = connection(stream, ctx.clone(), stop.clone());
                    connections.push(tokio::spawn(conn));
                }
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    log::warn!("cluster helper: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            r = stop.changed() => if r.is_err() { break },
        }
    }
    for c in connections {
        let _ = c.await;
    }
}

/// Reads one worker's frames until it closes, sends a malformed frame, or the helper stops.
async fn connection(stream: UnixStream, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let (mut read, write) = stream.into_split();
    let (answers, queue) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_answers(write, queue));
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    'read: loop {
        tokio::select! {
            r = read.read(&mut chunk) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            r = stop.changed() => if r.is_err() || *stop.borrow() { break },
        }
        let mut at = 0;
        loop {
            match decode_prefix(&buf[at..]) {
                Ok(Some((frame, used))) => {
                    at += used;
                    let (ctx, answers) = (ctx.clone(), answers.clone());
                    tokio::spawn(async move {
                        let message = answer(&ctx, frame.message).await;
                        // The worker may be gone: its answer goes nowhere.
                        let _ = answers.send(Frame {
                            id: frame.id,
                            message,
                        });
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    log::warn!("cluster helper: a worker sent a malformed frame ({e}); closed");
                    break 'read;
                }
            }
        }
        buf.drain(..at);
    }
    // Dropping both halves closes the socket; answers still running are dropped.
    writer.abort();
}

async fn write_answers(mut write: OwnedWriteHalf, mut queue: mpsc::UnboundedReceiver<Frame>) {
    let mut out = Vec::new();
    while let Some(frame) = queue.recv().await {
        out.clear();
        frame.encode(&mut out);
        // Whatever else is ready goes in the same write.
        while let Ok(more) = queue.try_recv() {
            more.encode(&mut out);
        }
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// The answer to one request from a worker. Each kind's work is boxed: the task spawned per
/// request then holds a small future, not the largest kind's state (the copy into each new
/// task was a tenth of the helper's CPU under linearizable reads).
async fn answer(ctx: &Ctx, message: Message) -> Message {
    let (node, timeout) = (&*ctx.node, ctx.timeout);
    match message {
        Message::Propose { group, command } => {
            let Ok(cmd) = Command::decode(&command) else {
                return Message::Unavailable {
                    why: "undecodable command".into(),
                };
            };
            let answer =
                match tokio::time::timeout(timeout, Box::pin(node.write(group, &cmd))).await {
                    Ok(Ok(applied)) => return Message::Applied(applied),
                    Ok(Err(e)) if e.certainly_not_applied() => {
                        Message::Unavailable { why: e.to_string() }
                    }
                    Ok(Err(e)) => Message::Unknown { why: e.to_string() },
                    Err(_) => Message::Unknown {
                        why: format!("no answer from group {group} within {timeout:?}"),
                    },
                };
            node.count_refusal(match answer {
                Message::Unavailable { .. } => Refusal::Unavailable,
                _ => Refusal::Unknown,
            });
            answer
        }
        Message::ReadBarrier { group } => {
            // A barrier changes nothing: whatever stops it, the read may simply be retried.
            let why = match tokio::time::timeout(
                timeout,
                Box::pin(node.linearizable_read_barrier(group)),
            )
            .await
            {
                Ok(Ok(())) => return Message::ReadReady,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no read barrier of group {group} within {timeout:?}"),
            };
            node.count_refusal(Refusal::Unavailable);
            Message::Unavailable { why }
        }
        Message::Fetch {
            node,
            target,
            authorization,
        } => match Box::pin(ctx.fetcher.get(node, &target, &authorization)).await {
            Ok(r) => Message::Reply {
                status: r.status,
                headers: r.headers,
                body: r.body,
            },
            Err(why) => Message::Unavailable {
                why: format!("node {node}: {why}"),
            },
        },
        Message::Report { what } => {
            let Some(report) = Report::from_code(what) else {
                return Message::Unavailable {
                    why: format!("no report {what}"),
                };
            };
            match tokio::time::timeout(timeout, Box::pin(node.report(report))).await {
                Ok(body) => Message::Reply {
                    status: 200,
                    headers: vec![("Content-Type".into(), report.content_type().into())],
                    body: body.into_bytes(),
                },
                Err(_) => Message::Unavailable {
                    why: format!("no report within {timeout:?}"),
                },
            }
        }
        // Answers are the helper's to send, never a worker's.
        other => Message::Unavailable {
            why: format!("not a request: {}", kind_name(&other)),
        },
    }
}

fn kind_name(m: &Message) -> &'static str {
    match m {
        Message::Propose { .. } => "propose",
        Message::ReadBarrier { .. } => "read barrier",
        Message::Applied(_) => "applied",
        Message::ReadReady => "read ready",
        Message::Unavailable { .. } => "unavailable",
        Message::Unknown { .. } => "unknown",
        Message::Fetch { .. } => "fetch",
        Message::Report { .. } => "report",
        Message::Reply { .. } => "reply",
    }
}
