//! Cluster mode's reads against a fake helper: barriers, `consistency`, forwarding with its
//! retries, the `*2` comparisons, `peer=` routing, reports and the `/metrics` lines, and a
//! helper that sends garbage.
use super::*;
use crate::kv::{hash, set, stat, strings};
use crate::service::Service as _;
use cluster::local::{decode_prefix, Frame, Message};
use cluster::placement::group_of_slot;
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixListener;
use std::sync::{mpsc, Arc, Mutex};

/// A link to a fake helper: `this` of `placement`'s nodes, reading as `reads`.
pub fn for_test(
    link: Link,
    placement: Placement,
    this: NodeIndex,
    reads: conf::Reads,
    timeout: Duration,
) -> Replicated {
    Replicated {
        link,
        groups: placement.groups(),
        timeout,
        placement,
        this,
        reads,
        pending: HashMap::new(),
        jobs: HashMap::new(),
        next_job: 1,
        open: false,
        plan: None,
        metrics: None,
        metrics_asked: false,
        next_metrics: Instant::now(),
    }
}

const TOKEN: mio::Token = mio::Token(9);

/// How the fake helper answers a request (`None`: not at all); raw bytes to send instead.
type Answerer = Box<dyn FnMut(&Message) -> Option<Result<Message, Vec<u8>>> + Send>;

/// What the fake helper was asked, in order (the periodic metrics report left out).
type Seen = Arc<Mutex<Vec<Message>>>;

fn fake_helper(sock: std::path::PathBuf, mut answer: Answerer) -> Seen {
    let listener = UnixListener::bind(&sock).unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Ok(Some((f, used))) = decode_prefix(&buf) {
                buf.drain(..used);
                if f.message != (Message::Report { what: 4 }) {
                    log.lock().unwrap().push(f.message.clone());
                }
                let out = match answer(&f.message) {
                    None => continue,
                    Some(Ok(message)) => {
                        let mut out = Vec::new();
                        Frame { id: f.id, message }.encode(&mut out);
                        out
                    }
                    Some(Err(raw)) => raw,
                };
                if s.write_all(&out).is_err() {
                    return;
                }
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    seen
}

struct Rig {
    kv: KvService,
    poll: mio::Poll,
    /// Leaked: the pass's batch borrows it while the test drives the rig.
    store: &'static storage::Store,
    seen: Seen,
    _dir: std::path::PathBuf,
}

fn rig(name: &str, placement: Placement, this: NodeIndex, answer: Answerer) -> Rig {
    let dir =
        std::env::temp_dir().join(format!("huststore-kv-reads-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("cluster.sock");
    let seen = fake_helper(sock.clone(), answer);
    let store = Box::leak(Box::new(crate::test_store(&dir)));
    let mut kv = KvService {
        node: "127.0.0.1:8082".into(),
        next_purge: Instant::now(),
        cluster: Some(for_test(
            Link::new(sock),
            placement,
            this,
            conf::Reads::Linearizable,
            Duration::from_secs(3),
        )),
    };
    let poll = mio::Poll::new().unwrap();
    kv.attach(poll.registry(), TOKEN, Instant::now());
    Rig {
        kv,
        poll,
        store,
        seen,
        _dir: dir,
    }
}

fn who(key: usize) -> ConnRef {
    ConnRef { key, generation: 1 }
}

fn req<'a>(params: &'a Params, forwarded: bool) -> Request<'a> {
    Request {
        method: Method::Get,
        params,
        body: b"",
        authorization: Some(b"Basic dTpw"),
        forwarded,
    }
}

fn pass<'p, 's>(batch: &'p mut storage::Batch<'s>) -> Pass<'p, 's> {
    Pass {
        batch,
        now: Instant::now(),
        now_ms: 1,
        replication: Replication::Local,
    }
}

fn put(pass: &mut Pass<'_, '_>, key: &[u8], val: &[u8]) {
    let write = storage::Write::Put {
        key,
        val,
        expires_at: 0,
        ver: 0,
    };
    let cmd = storage::Command { now_ms: 1, write };
    pass.batch.apply(&cmd).unwrap();
}

/// Drives the link until `n` wakeups came (or 5 s).
fn wakeups(r: &mut Rig, pass: &mut Pass<'_, '_>, n: usize) -> Vec<(ConnRef, Response)> {
    let mut got = Vec::new();
    let mut events = mio::Events::with_capacity(8);
    let until = Instant::now() + Duration::from_secs(5);
    while got.len() < n && Instant::now() < until {
        r.poll
            .poll(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
        r.kv.on_link_ready(Instant::now());
        pass.now = Instant::now();
        r.kv.tick(pass, &mut got);
    }
    got
}

fn header<'r>(r: &'r Response, name: &str) -> Option<&'r str> {
    r.headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

fn parks(o: Outcome) {
    assert!(matches!(o, Outcome::Park { .. }), "parks");
}

fn replied(o: Outcome) -> Response {
    match o {
        Outcome::Reply(r) => r,
        Outcome::Park { .. } => panic!("answered at once"),
    }
}

#[test]
fn a_linearizable_read_waits_for_its_barrier_and_local_reads_do_not() {
    // One node, 4 groups: this node has every group. The barrier of the first key is
    // passed, the second is refused.
    let answer: Answerer = Box::new(|m| match m {
        Message::ReadBarrier { group } if *group == group_of_slot(storage::bucket(b"k"), 4) => {
            Some(Ok(Message::ReadReady))
        }
        Message::ReadBarrier { .. } => Some(Ok(Message::Unavailable {
            why: "no leader".into(),
        })),
        _ => None,
    });
    let mut r = rig("barrier", Placement::new(1, 4, 1), 0, answer);
    let store = r.store;
    let mut batch = store.batch();
    let mut pass = pass(&mut batch);
    put(&mut pass, b"k", b"value");
    put(&mut pass, b"other", b"x");

    let p = Params::parse(b"key=k").unwrap();
    parks(call(
        strings::get,
        &mut r.kv,
        &req(&p, false),
        who(1),
        &mut pass,
    ));
    let got = wakeups(&mut r, &mut pass, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, who(1));
    assert_eq!(
        (got[0].1.status, got[0].1.body.as_slice()),
        (200, &b"value"[..])
    );
    assert_eq!(header(&got[0].1, "Version"), Some("1"));
    let group = group_of_slot(storage::bucket(b"k"), 4);
    assert_eq!(
        r.seen.lock().unwrap().as_slice(),
        &[Message::ReadBarrier { group }]
    );

    // Refused: 503, Retry-After, Cluster-Error, no value.
    let p = Params::parse(b"key=other").unwrap();
    parks(call(
        strings::get,
        &mut r.kv,
        &req(&p, false),
        who(2),
        &mut pass,
    ));
    let got = wakeups(&mut r, &mut pass, 1);
    let resp = &got[0].1;
    assert_eq!((resp.status, resp.body.len()), (503, 0));
    assert_eq!(header(resp, "Retry-After"), Some("1"));
    assert_eq!(header(resp, "Cluster-Error"), Some("no leader"));

    // consistency=local answers at once, without a frame; another value is 400.
    let before = r.seen.lock().unwrap().len();
    let p = Params::parse(b"key=other&consistency=local").unwrap();
    let resp = replied(call(
        strings::get,
        &mut r.kv,
        &req(&p, false),
        who(3),
        &mut pass,
    ));
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"x"[..]));
    let p = Params::parse(b"key=other&consistency=eventual").unwrap();
    let resp = replied(call(
        strings::get,
        &mut r.kv,
        &req(&p, false),
        who(3),
        &mut pass,
    ));
    assert_eq!(resp.status, 400);
    // A parameter problem is answered before any barrier.
    let p = Params::parse(b"tb=bad name&key=k").unwrap();
    let resp = replied(call(
        hash::hget,
        &mut r.kv,
        &req(&p, false),
        who(3),
        &mut pass,
    ));
    assert_eq!(resp.status, 400);
    assert_eq!(r.seen.lock().unwrap().len(), before);

    // A read whose barrier never comes times out as 503 (nothing changed), not 504.
    let p = Params::parse(b"key=k").unwrap();
    let mut kv_slow = rig(
        "barrier-slow",
        Placement::new(1, 4, 1),
        0,
        Box::new(|_| None),
    );
    parks(call(
        strings::get,
        &mut kv_slow.kv,
        &req(&p, false),
        who(4),
        &mut pass,
    ));
    let resp = kv_slow.kv.park_timeout(who(4), &mut pass);
    assert_eq!(resp.status, 503);
    assert_eq!(header(&resp, "Retry-After"), Some("1"));
}

/// Five nodes, five groups of three: a node that is not in a key's group.
fn outsider(target: Target<'_>) -> (Placement, NodeIndex, u32) {
    let p = Placement::new(5, 5, 3);
    let g = p.group_of(target);
    let node = (0..5).find(|&n| !p.is_member(g, n)).unwrap();
    (p, node, g)
}

#[test]
fn a_read_of_another_group_is_forwarded_to_its_members_in_turn() {
    let (placement, this, group) = outsider(Target::Key(b"a b"));
    let members = placement.members(group).to_vec();
    let first = members[0] as u32;
    let answer: Answerer = Box::new(move |m| match m {
        // The preferred leader is down; the next member answers.
        Message::Fetch { node, .. } if *node == first => Some(Ok(Message::Unavailable {
            why: "connection refused".into(),
        })),
        Message::Fetch { .. } => Some(Ok(Message::Reply {
            status: 200,
            headers: vec![
                ("Version".into(), "3".into()),
                ("Content-Type".into(), "text/plain".into()),
                ("X-Other".into(), "dropped".into()),
            ],
            body: b"remote".to_vec(),
        })),
        _ => None,
    });
    let mut r = rig("forward", placement, this, answer);
    let store = r.store;
    let mut batch = store.batch();
    let mut pass = pass(&mut batch);
    let p = Params::parse(b"key=a+b").unwrap();
    parks(call(
        strings::get,
        &mut r.kv,
        &req(&p, false),
        who(1),
        &mut pass,
    ));
    let got = wakeups(&mut r, &mut pass, 1);
    let resp = &got[0].1;
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"remote"[..]));
    assert_eq!(resp.headers, vec![("Version", "3".to_string())]);
    assert_eq!(resp.content_type, Some("text/plain"));
    let fetch = |node: usize| Message::Fetch {
        node: node as u32,
        target: b"/get?key=a%20b".to_vec(),
        authorization: b"Basic dTpw".to_vec(),
    };
    assert_eq!(
        r.seen.lock().unwrap().as_slice(),
        &[fetch(members[0]), fetch(members[1])]
    );

    // A forwarded read is never forwarded again.
    let resp = replied(call(
        strings::get,
        &mut r.kv,
        &req(&p, true),
        who(2),
        &mut pass,
    ));
    assert_eq!(resp.status, 503);
    assert!(header(&resp, "Cluster-Error").is_some());

    // A POST body standing for the member goes as `key`.
    let (placement, this, _) = outsider(Target::Table("t"));
    let mut r = rig(
        "forward-body",
        placement,
        this,
        Box::new(|_| {
            Some(Ok(Message::Reply {
                status: 404,
                headers: vec![("Version".into(), "0".into())],
                body: Vec::new(),
            }))
        }),
    );
    let p = Params::parse(b"tb=t&key=ignored").unwrap();
    let post = Request {
        method: Method::Post,
        params: &p,
        body: b"m&1",
        authorization: None,
        forwarded: false,
    };
    parks(call(set::sismember, &mut r.kv, &post, who(3), &mut pass));
    let got = wakeups(&mut r, &mut pass, 1);
    assert_eq!(got[0].1.status, 404);
    assert_eq!(
        r.seen.lock().unwrap().first(),
        Some(&Message::Fetch {
            node: r
                .kv
                .cluster
                .as_ref()
                .unwrap()
                .placement
                .members(r.kv.cluster.as_ref().unwrap().group_of(Target::Table("t")))[0]
                as u32,
            target: b"/sismember?tb=t&key=m%261".to_vec(),
            authorization: Vec::new(),
        })
    );
}

/// A replica's scripted answer: status (0: none), version, value.
type Scripted = (u16, &'static str, &'static [u8]);

#[test]
fn get2_compares_every_replica() {
    // Three nodes, one group of three: this node (0) and two others.
    let (tx, rx) = mpsc::channel::<Vec<Scripted>>();
    let rx = Mutex::new(rx);
    let script: Arc<Mutex<Vec<Scripted>>> = Arc::default();
    let script2 = script.clone();
    let answer: Answerer = Box::new(move |m| {
        let Message::Fetch { .. } = m else {
            return None;
        };
        if let Ok(next) = rx.lock().unwrap().try_recv() {
            *script2.lock().unwrap() = next;
        }
        let (status, ver, body) = script2.lock().unwrap().remove(0);
        if status == 0 {
            return Some(Ok(Message::Unavailable { why: "down".into() }));
        }
        Some(Ok(Message::Reply {
            status,
            headers: vec![("Version".into(), ver.into())],
            body: body.to_vec(),
        }))
    });
    let mut r = rig("get2", Placement::new(3, 1, 3), 0, answer);
    let store = r.store;
    let mut batch = store.batch();
    let mut pass = pass(&mut batch);
    put(&mut pass, b"k", b"v1");
    let p = Params::parse(b"key=k").unwrap();

    // All agree: the plain answer.
    tx.send(vec![(200, "1", b"v1"), (200, "1", b"v1")]).unwrap();
    parks(call(
        strings::get2,
        &mut r.kv,
        &req(&p, false),
        who(1),
        &mut pass,
    ));
    let got = wakeups(&mut r, &mut pass, 1);
    let resp = &got[0].1;
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"v1"[..]));
    assert_eq!(resp.headers, vec![("Version", "1".to_string())]);
    let targets: Vec<Message> = r.seen.lock().unwrap().drain(..).collect();
    assert_eq!(targets.len(), 2);
    for t in &targets {
        let Message::Fetch { target, .. } = t else {
            panic!("{t:?}")
        };
        assert_eq!(target, b"/get?key=k&consistency=local");
    }

    // A replica lags: 409, the values concatenated, one version per replica in order.
    tx.send(vec![(200, "1", b"v1"), (404, "0", b"")]).unwrap();
    parks(call(
        strings::get2,
        &mut r.kv,
        &req(&p, false),
        who(2),
        &mut pass,
    ));
    let got = wakeups(&mut r, &mut pass, 1);
    let resp = &got[0].1;
    assert_eq!((resp.status, resp.body.as_slice()), (409, &b"v1v1"[..]));
    assert_eq!(
        resp.headers,
        vec![
            ("Val-Offset", "2,4".to_string()),
            ("Version1", "1".to_string()),
            ("Version2", "1".to_string()),
            ("Version3", "0".to_string()),
        ]
    );

    // A replica does not answer: 503.
    tx.send(vec![(200, "1", b"v1"), (0, "", b"")]).unwrap();
    parks(call(
        strings::get2,
        &mut r.kv,
        &req(&p, false),
        who(3),
        &mut pass,
    ));
    let got = wakeups(&mut r, &mut pass, 1);
    assert_eq!(got[0].1.status, 503);
    assert_eq!(header(&got[0].1, "Retry-After"), Some("1"));
}

#[test]
fn peer_routes_listings_and_counts_to_groups() {
    // One node of 4 groups: every group is here, read with consistency=local.
    let mut r = rig("peer", Placement::new(1, 4, 1), 0, Box::new(|_| None));
    let store = r.store;
    let mut batch = store.batch();
    let mut pass = pass(&mut batch);
    let keys: Vec<&[u8]> = vec![b"a", b"b", b"k1", b"zz", b"hello"];
    for k in &keys {
        put(&mut pass, k, b"v");
    }
    let mut total = 0;
    for g in 0..4u32 {
        let q = format!("offset=0&size=100&peer={g}&consistency=local");
        let p = Params::parse(q.as_bytes()).unwrap();
        let resp = replied(call(
            strings::keys,
            &mut r.kv,
            &req(&p, false),
            who(1),
            &mut pass,
        ));
        assert_eq!(resp.status, 200);
        let n: usize = header(&resp, "Keys").unwrap().parse().unwrap();
        let expected = keys
            .iter()
            .filter(|k| group_of_slot(storage::bucket(k), 4) == g)
            .count();
        assert_eq!(n, expected, "group {g}");
        total += n;
    }
    assert_eq!(total, keys.len(), "peer=0..3 visits every key once");
    for bad in [&b"offset=0&size=10&peer=4"[..], b"offset=0&size=10&peer=x"] {
        let p = Params::parse(bad).unwrap();
        let resp = replied(call(
            strings::keys,
            &mut r.kv,
            &req(&p, false),
            who(1),
            &mut pass,
        ));
        assert_eq!(resp.status, 400);
    }
    let p = Params::parse(b"peer=3").unwrap();
    let resp = replied(call(
        stat::file_count,
        &mut r.kv,
        &req(&p, false),
        who(1),
        &mut pass,
    ));
    assert_eq!(resp.status, 200);
    let resp = replied(call(
        admin_peer_count(),
        &mut r.kv,
        &req(&p, false),
        who(1),
        &mut pass,
    ));
    assert_eq!(resp.body, b"4");
    // A table listing with the peer of another group is empty.
    let g = group_of_slot(storage::bucket(b"t"), 4);
    let q = format!("tb=t&offset=0&size=10&peer={}", (g + 1) % 4);
    let p = Params::parse(q.as_bytes()).unwrap();
    let resp = replied(call(
        hash::hkeys,
        &mut r.kv,
        &req(&p, false),
        who(1),
        &mut pass,
    ));
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"[]"[..]));
}

fn admin_peer_count() -> Handler {
    crate::kv::admin::peer_count
}

#[test]
fn reports_are_relayed_and_metrics_carry_the_helpers_lines() {
    let answer: Answerer = Box::new(|m| match m {
        Message::Report { what: 1 } => Some(Ok(Message::Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: b"{\"groups\":[]}".to_vec(),
        })),
        Message::Report { what: 4 } => Some(Ok(Message::Reply {
            status: 200,
            headers: Vec::new(),
            body: b"huststore_cluster_term{group=\"0\"} 2\n".to_vec(),
        })),
        _ => None,
    });
    let mut r = rig("report", Placement::new(1, 2, 1), 0, answer);
    let store = r.store;
    let mut batch = store.batch();
    let mut pass = pass(&mut batch);
    let mut out = String::new();
    r.kv.metrics(&mut pass, &mut out);
    assert_eq!(out, "# HELP huststore_cluster_report_up 1 while the cluster helper's consensus figures above are fresh, else 0.\n# TYPE huststore_cluster_report_up gauge\nhuststore_cluster_report_up 0\n");
    let p = Params::default();
    parks(call(
        crate::kv::admin::cluster_status,
        &mut r.kv,
        &req(&p, false),
        who(1),
        &mut pass,
    ));
    let got = wakeups(&mut r, &mut pass, 1);
    let resp = &got[0].1;
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, &b"{\"groups\":[]}"[..])
    );
    assert_eq!(resp.content_type, Some("text/plain"));
    assert_eq!(
        r.seen.lock().unwrap().as_slice(),
        &[Message::Report { what: 1 }]
    );
    // The periodic metrics report has come by now (it is asked at the first tick).
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        out.clear();
        r.kv.metrics(&mut pass, &mut out);
        if out.ends_with("huststore_cluster_report_up 1\n") || Instant::now() > until {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        r.kv.on_link_ready(Instant::now());
        pass.now = Instant::now();
        r.kv.tick(&mut pass, &mut Vec::new());
    }
    assert_eq!(
        out,
        "huststore_cluster_term{group=\"0\"} 2\n# HELP huststore_cluster_report_up 1 while the cluster helper's consensus figures above are fresh, else 0.\n# TYPE huststore_cluster_report_up gauge\nhuststore_cluster_report_up 1\n"
    );
}

#[test]
fn a_helper_sending_garbage_fails_the_parked_read_with_503() {
    let answer: Answerer = Box::new(|m| match m {
        // A Reply frame whose header count runs past its payload.
        Message::ReadBarrier { .. } => {
            let mut f = vec![0, 0, 0, 13, 9];
            f.extend_from_slice(&1u64.to_be_bytes());
            f.extend_from_slice(&[0, 200, 0, 9]);
            Some(Err(f))
        }
        _ => None,
    });
    let mut r = rig("garbage", Placement::new(1, 1, 1), 0, answer);
    let store = r.store;
    let mut batch = store.batch();
    let mut pass = pass(&mut batch);
    let p = Params::parse(b"key=k").unwrap();
    parks(call(
        strings::get,
        &mut r.kv,
        &req(&p, false),
        who(1),
        &mut pass,
    ));
    let got = wakeups(&mut r, &mut pass, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.status, 503);
    assert_eq!(header(&got[0].1, "Retry-After"), Some("1"));
}

#[test]
fn compare_shapes() {
    let a = |status, v: &str, body: &[u8]| Plain {
        status,
        version: Some(v.to_string()),
        body: body.to_vec(),
    };
    // Only the versions differ: 200 for a value, 409 for a member; no Val-Offset.
    let lag = [a(200, "2", b"x"), a(200, "1", b"x")];
    let r = compose(Compare::Value, &lag);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"x"[..]));
    assert_eq!(
        r.headers,
        vec![("Version1", "2".to_string()), ("Version2", "1".to_string())]
    );
    let members = [a(200, "2", b""), a(200, "1", b"")];
    assert_eq!(compose(Compare::Member, &members).status, 409);
    // Values differ, versions agree: one Version and the offset of the second value.
    let r = compose(Compare::Value, &[a(200, "1", b"abc"), a(200, "1", b"de")]);
    assert_eq!((r.status, r.body.as_slice()), (409, &b"abcde"[..]));
    assert_eq!(
        r.headers,
        vec![
            ("Val-Offset", "3".to_string()),
            ("Version", "1".to_string())
        ]
    );
    // All missing: the plain 404.
    let r = compose(Compare::Value, &[a(404, "0", b""), a(404, "0", b"")]);
    assert_eq!(
        (r.status, r.headers.clone()),
        (404, vec![("Version", "0".to_string())])
    );
    // A replica answering something else: 503.
    assert_eq!(
        compose(Compare::Value, &[a(200, "1", b"x"), a(500, "0", b"")]).status,
        503
    );
}

#[test]
fn stat_totals_are_summed_over_every_group() {
    // Two nodes, two groups of one: group 0 here, group 1 on node 1, whose answers are
    // scripted (a part, then garbage).
    let replies = Arc::new(Mutex::new(vec![
        br#"{"TOTALIZE":{"KVPAIR":{"count":2,"size":10,"capacity":2048},"HASHTABLE":{"count":1,"size":3,"capacity":1024}}}"#.to_vec(),
        br#"[{"TOTALIZE":{"KVPAIR":{"count":0,"size":0,"capacity":0},"HASHTABLE":{"count":0,"size":0,"capacity":0}}},{"table":"a","type":"S","count":4}]"#.to_vec(),
        b"not json".to_vec(),
    ]));
    let script = replies.clone();
    let answer: Answerer = Box::new(move |m| match m {
        Message::Fetch { node: 1, .. } => Some(Ok(Message::Reply {
            status: 200,
            headers: Vec::new(),
            body: script.lock().unwrap().remove(0),
        })),
        _ => None,
    });
    let mut r = rig("stat", Placement::new(2, 2, 1), 0, answer);
    let store = r.store;
    let mut batch = store.batch();
    let mut pass = pass(&mut batch);
    // A key of group 0 (here): "a" is in slot 97, group 0 of 2.
    assert_eq!(group_of_slot(storage::bucket(b"a"), 2), 0);
    put(&mut pass, b"a", b"xyz");
    let p = Params::default();
    parks(call(
        stat::stat,
        &mut r.kv,
        &req(&p, false),
        who(1),
        &mut pass,
    ));
    let got = wakeups(&mut r, &mut pass, 1);
    assert_eq!(
        String::from_utf8_lossy(&got[0].1.body),
        r#"{"TOTALIZE":{"KVPAIR":{"count":3,"size":14,"capacity":3072},"HASHTABLE":{"count":1,"size":3,"capacity":1024}}}"#
    );
    assert_eq!(
        r.seen.lock().unwrap().as_slice(),
        &[Message::Fetch {
            node: 1,
            target: b"/stat?peer=1&consistency=local".to_vec(),
            authorization: b"Basic dTpw".to_vec(),
        }]
    );
    parks(call(
        stat::stat_all,
        &mut r.kv,
        &req(&p, false),
        who(2),
        &mut pass,
    ));
    let got = wakeups(&mut r, &mut pass, 1);
    assert_eq!(
        String::from_utf8_lossy(&got[0].1.body),
        r#"[{"TOTALIZE":{"KVPAIR":{"count":1,"size":4,"capacity":1024},"HASHTABLE":{"count":0,"size":0,"capacity":0}}},{"table":"a","type":"S","count":4}]"#
    );
    // A part that is not of its shape: 503.
    parks(call(
        stat::stat,
        &mut r.kv,
        &req(&p, false),
        who(3),
        &mut pass,
    ));
    let got = wakeups(&mut r, &mut pass, 1);
    assert_eq!(got[0].1.status, 503);
    // peer=0 is this node's group alone, answered at once.
    let p = Params::parse(b"peer=0&consistency=local").unwrap();
    let resp = replied(call(
        stat::stat,
        &mut r.kv,
        &req(&p, false),
        who(4),
        &mut pass,
    ));
    assert_eq!(
        String::from_utf8_lossy(&resp.body),
        r#"{"TOTALIZE":{"KVPAIR":{"count":1,"size":4,"capacity":1024},"HASHTABLE":{"count":0,"size":0,"capacity":0}}}"#
    );
    let p = Params::parse(b"peer=2").unwrap();
    let resp = replied(call(
        stat::stat,
        &mut r.kv,
        &req(&p, false),
        who(4),
        &mut pass,
    ));
    assert_eq!(resp.status, 400);
}
