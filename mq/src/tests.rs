//! The model against a real LMDB environment: one outer write transaction per "pass" with a
//! nested one per operation, as the storage crate's batch does.

use crate::{Broker, Clock, Reply, Step, Transact};
use lmdb::{Environment, RwTransaction, Transaction};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

struct TestEnv {
    env: Option<Environment>,
    dir: PathBuf,
}

impl TestEnv {
    fn new() -> TestEnv {
        let dir = std::env::temp_dir().join(format!(
            "mq-unit-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut t = TestEnv { env: None, dir };
        t.reopen();
        t
    }

    /// Closes and reopens the environment, as a restarted worker does.
    fn reopen(&mut self) {
        self.env = None;
        self.env = Some(
            Environment::new()
                .set_max_dbs(4)
                .set_map_size(256 << 20)
                .open(&self.dir)
                .unwrap(),
        );
    }

    fn env(&self) -> &Environment {
        self.env.as_ref().unwrap()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.env = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One pass: an outer write transaction, committed by [`Pass::commit`].
struct Pass<'e> {
    txn: RwTransaction<'e>,
}

impl Transact for Pass<'_> {
    fn transact<T>(
        &mut self,
        f: impl FnOnce(&mut RwTransaction<'_>) -> storage::Result<T>,
    ) -> storage::Result<T> {
        let mut nested = self
            .txn
            .begin_nested_txn()
            .map_err(storage::StorageError::Lmdb)?;
        let v = f(&mut nested)?;
        nested.commit().map_err(storage::StorageError::Lmdb)?;
        Ok(v)
    }
}

impl Pass<'_> {
    fn commit(self) {
        self.txn.commit().unwrap();
    }
}

fn pass(t: &TestEnv) -> Pass<'_> {
    Pass {
        txn: t.env().begin_rw_txn().unwrap(),
    }
}

fn conf() -> conf::MqConf {
    conf::MqConf {
        mq_timeout_unit: Duration::from_secs(1),
        ..conf::MqConf::default()
    }
}

/// A controllable clock: `ms` milliseconds after a fixed wall-clock origin.
#[derive(Clone, Copy)]
struct Time {
    t0: Instant,
    wall0: u64,
}

impl Time {
    fn new() -> Time {
        Time {
            t0: Instant::now(),
            wall0: 1_700_000_000_000,
        }
    }
    fn at(&self, ms: u64) -> Clock {
        Clock {
            now: self.t0 + Duration::from_millis(ms),
            now_ms: self.wall0 + ms,
        }
    }
}

fn open(t: &TestEnv, c: &conf::MqConf, time: Time) -> Broker<u32> {
    Broker::open(t.env(), c, time.at(0)).unwrap()
}

fn msg(b: &str) -> Reply {
    Reply::Message(b.as_bytes().to_vec())
}

fn pending(b: &str, token: &str) -> Reply {
    Reply::Pending {
        body: b.as_bytes().to_vec(),
        token: token.to_string(),
    }
}

fn json(s: &str) -> Reply {
    Reply::Json(s.to_string())
}

#[test]
fn priorities_then_fifo_and_stat() {
    let t = TestEnv::new();
    let time = Time::new();
    let mut b = open(&t, &conf(), time);
    let c = time.at(0);
    let mut p = pass(&t);
    for (item, prio) in [("a0", 0), ("b1", 1), ("c0", 0), ("d2", 2), ("e1", 1)] {
        assert_eq!(b.put(&mut p, c, "q", prio, item.as_bytes()), Reply::Done);
    }
    assert_eq!(
        b.stat(&mut p, c, "q"),
        json(
            r#"{"queue":"q","type":0,"ready":[2,2,1],"max":0,"lock":0,"si":0,"ci":2,"tm":1700000000,"unacked":0,"timeout":5}"#
        )
    );
    let order: Vec<Reply> = (0..5).map(|_| b.get(&mut p, c, "q", "w1", true)).collect();
    assert_eq!(
        order,
        vec![msg("d2"), msg("b1"), msg("e1"), msg("a0"), msg("c0")]
    );
    assert_eq!(b.get(&mut p, c, "q", "w1", true), Reply::NotFound);
    assert_eq!(b.get(&mut p, c, "nope", "w1", true), Reply::NotFound);
    assert_eq!(
        b.stat(&mut p, c, "q"),
        json(
            r#"{"queue":"q","type":0,"ready":[0,0,0],"max":0,"lock":0,"si":2,"ci":2,"tm":1700000000,"unacked":0,"timeout":5}"#
        )
    );
    assert_eq!(
        b.worker_list(&mut p, time.at(3000), "q"),
        json(r#"[{"w":"w1","t":1700000000}]"#)
    );
    p.commit();
}

#[test]
fn ack_and_redelivery() {
    let t = TestEnv::new();
    let time = Time::new();
    let mut b = open(&t, &conf(), time);
    let mut p = pass(&t);
    let c0 = time.at(0);
    b.put(&mut p, c0, "q", 0, b"x");
    b.put(&mut p, c0, "q", 2, b"y");
    assert_eq!(b.set_timeout(&mut p, c0, "q", 2), Reply::Done);
    // y is taken first (priority 2), pending until 2 s.
    assert_eq!(b.get(&mut p, c0, "q", "w", false), pending("y", "2:1"));
    assert_eq!(
        b.get(&mut p, time.at(1000), "q", "w", false),
        pending("x", "0:1")
    );
    assert_eq!(
        b.get(&mut p, time.at(1500), "q", "w", true),
        Reply::NotFound
    );
    let stat = b.stat(&mut p, c0, "q");
    assert!(
        matches!(&stat, Reply::Json(s) if s.contains(r#""unacked":2,"timeout":2"#)),
        "{stat:?}"
    );
    // At 2 s, y is overdue: redelivered with its token, and a new deadline (4 s).
    assert_eq!(
        b.get(&mut p, time.at(2000), "q", "w", false),
        pending("y", "2:1")
    );
    // At 3 s, x (deadline 3 s) comes before y (now 4 s).
    assert_eq!(b.get(&mut p, time.at(3000), "q", "w", true), msg("x"));
    assert_eq!(
        b.ack(&mut p, time.at(3000), "q", b"0:1"),
        Reply::NotFound,
        "removed by ack=true redelivery"
    );
    assert_eq!(b.ack(&mut p, time.at(3000), "q", b"2:1"), Reply::Done);
    assert_eq!(
        b.ack(&mut p, time.at(3000), "q", b"2:1"),
        Reply::NotFound,
        "second ack"
    );
    assert_eq!(b.ack(&mut p, time.at(3000), "q", b"junk"), Reply::NotFound);
    assert_eq!(
        b.get(&mut p, time.at(60_000), "q", "w", true),
        Reply::NotFound
    );
    // Sequence numbers are never reused within the queue's lifetime.
    b.put(&mut p, c0, "q", 2, b"z");
    assert_eq!(b.get(&mut p, c0, "q", "w", false), pending("z", "2:2"));
    p.commit();
}

#[test]
fn pending_survives_a_restart_with_its_deadline() {
    let mut t = TestEnv::new();
    let time = Time::new();
    {
        let mut b = open(&t, &conf(), time);
        let mut p = pass(&t);
        for i in 0..10 {
            b.put(&mut p, time.at(0), "q", 0, format!("m{i}").as_bytes());
        }
        b.set_timeout(&mut p, time.at(0), "q", 10);
        p.commit();
        let mut p = pass(&t);
        for _ in 0..3 {
            assert!(matches!(
                b.get(&mut p, time.at(0), "q", "w", false),
                Reply::Pending { .. }
            ));
        }
        assert_eq!(b.get(&mut p, time.at(0), "q", "w", true), msg("m3"));
        p.commit();
        // A pass that is never committed leaves nothing behind.
        let mut p = pass(&t);
        assert_eq!(b.get(&mut p, time.at(0), "q", "w", true), msg("m4"));
        drop(p);
    }
    t.reopen();
    let mut b = open(&t, &conf(), time);
    let mut p = pass(&t);
    let mut got = Vec::new();
    while let Reply::Message(m) = b.get(&mut p, time.at(5000), "q", "w", true) {
        got.push(String::from_utf8(m).unwrap());
    }
    assert_eq!(got, ["m4", "m5", "m6", "m7", "m8", "m9"]);
    // The pending ones come back at their deadline (10 s), not before.
    assert_eq!(
        b.get(&mut p, time.at(9999), "q", "w", true),
        Reply::NotFound
    );
    for expect in ["m0", "m1", "m2"] {
        assert_eq!(b.get(&mut p, time.at(10_000), "q", "w", true), msg(expect));
    }
    assert_eq!(
        b.get(&mut p, time.at(99_000), "q", "w", true),
        Reply::NotFound
    );
    p.commit();
}

#[test]
fn lock_max_purge_and_limits() {
    let t = TestEnv::new();
    let time = Time::new();
    let c = conf::MqConf {
        max_queue_size: 2,
        ..conf()
    };
    let mut b = open(&t, &c, time);
    let mut p = pass(&t);
    let c0 = time.at(0);
    assert_eq!(
        b.set_lock(&mut p, c0, "q", true),
        Reply::NotFound,
        "lock cannot create"
    );
    assert_eq!(b.set_max(&mut p, c0, "q", 1), Reply::NotFound);
    assert_eq!(b.purge(&mut p, c0, "q", 0), Reply::NotFound);
    b.put(&mut p, c0, "q", 0, b"a");
    assert_eq!(b.set_lock(&mut p, c0, "q", true), Reply::Done);
    assert_eq!(b.put(&mut p, c0, "q", 0, b"b"), Reply::NotFound, "locked");
    assert_eq!(
        b.get(&mut p, c0, "q", "w", false),
        pending("a", "0:1"),
        "reads ignore the lock"
    );
    assert_eq!(b.set_lock(&mut p, c0, "q", false), Reply::Done);
    assert_eq!(b.set_max(&mut p, c0, "q", 2), Reply::Done);
    assert_eq!(b.put(&mut p, c0, "q", 1, b"b"), Reply::Done);
    assert_eq!(
        b.put(&mut p, c0, "q", 2, b"c"),
        Reply::Done,
        "pending does not count"
    );
    assert_eq!(b.put(&mut p, c0, "q", 0, b"d"), Reply::NotFound, "full");
    assert_eq!(b.set_max(&mut p, c0, "q", 0), Reply::Done);
    assert_eq!(b.put(&mut p, c0, "q", 0, b"d"), Reply::Done);
    // Purge removes one priority's ready messages; pending stays, so does the queue.
    assert_eq!(b.purge(&mut p, c0, "q", 0), Reply::Done);
    assert_eq!(b.purge(&mut p, c0, "q", 1), Reply::Done);
    assert_eq!(b.purge(&mut p, c0, "q", 2), Reply::Done);
    let s = b.stat(&mut p, c0, "q");
    assert!(
        matches!(&s, Reply::Json(j) if j.contains(r#""ready":[0,0,0],"max":0,"lock":0,"si":2,"ci":2"#) && j.contains(r#""unacked":1"#)),
        "{s:?}"
    );
    // Queue limit: q and r exist, s is one too many (either type).
    b.put(&mut p, c0, "r", 0, b"x");
    assert_eq!(b.put(&mut p, c0, "s", 0, b"x"), Reply::Busy);
    assert_eq!(b.publish(&mut p, c0, "s", None, 900, b"x"), Reply::Busy);
    assert_eq!(
        b.publish(&mut p, c0, "r", None, 900, b"x"),
        Reply::WrongType
    );
    assert_eq!(b.sub(&mut p, c0, "r", 1), Reply::WrongType);
    // Acking the last pending message and purging deletes q, which frees a slot.
    assert_eq!(b.ack(&mut p, c0, "q", b"0:1"), Reply::Done);
    assert_eq!(b.purge(&mut p, c0, "q", 0), Reply::Done);
    assert_eq!(b.stat(&mut p, c0, "q"), Reply::NotFound);
    assert_eq!(b.worker_list(&mut p, c0, "q"), Reply::NotFound);
    assert_eq!(b.put(&mut p, c0, "s", 0, b"x"), Reply::Done);
    let all = b.stat_all(&mut p, c0);
    assert!(
        matches!(&all, Reply::Json(j) if j.starts_with(r#"[{"queue":"r","#) && j.contains(r#"},{"queue":"s","#)),
        "{all:?}"
    );
    p.commit();
}

#[test]
fn push_window_ttl_and_forced_index() {
    let t = TestEnv::new();
    let time = Time::new();
    let mut b = open(&t, &conf(), time);
    let mut p = pass(&t);
    let c0 = time.at(0);
    assert_eq!(b.sub(&mut p, c0, "n", 1), Reply::NotFound);
    assert_eq!(
        b.publish(&mut p, c0, "n", None, 10, b"one"),
        Reply::Published { si: 0, ci: 1 }
    );
    assert_eq!(
        b.publish(&mut p, c0, "n", None, 5, b"two"),
        Reply::Published { si: 0, ci: 2 }
    );
    assert_eq!(
        b.publish(&mut p, time.at(1000), "n", None, 20, b"three"),
        Reply::Published { si: 0, ci: 3 }
    );
    assert_eq!(b.sub(&mut p, c0, "n", 1), msg("one"));
    assert_eq!(b.sub(&mut p, c0, "n", 4), Reply::NotFound, "ci + 1");
    assert_eq!(
        b.sub(&mut p, c0, "n", 5),
        Reply::OutOfWindow { si: 0, ci: 3 }
    );
    assert_eq!(
        b.sub(&mut p, c0, "n", 0),
        Reply::OutOfWindow { si: 0, ci: 3 }
    );
    assert_eq!(b.get(&mut p, c0, "n", "w", true), Reply::WrongType);
    // At 6 s, "two" expired but "one" still heads the window.
    assert_eq!(b.sub(&mut p, time.at(6000), "n", 2), Reply::NotFound);
    // At 10 s, one and two are dropped from the head.
    assert_eq!(
        b.sub(&mut p, time.at(10_000), "n", 1),
        Reply::OutOfWindow { si: 2, ci: 3 }
    );
    assert_eq!(
        b.stat(&mut p, time.at(10_000), "n"),
        json(
            r#"{"queue":"n","type":1,"ready":[1,0,0],"max":0,"lock":0,"si":2,"ci":3,"tm":1700000001,"unacked":0,"timeout":5}"#
        )
    );
    // idx <= ci: drops messages before idx, appends at ci + 1.
    assert_eq!(
        b.publish(&mut p, time.at(10_000), "n", Some(3), 20, b"four"),
        Reply::Published { si: 2, ci: 4 }
    );
    // idx > ci: the window holds only the new message.
    assert_eq!(
        b.publish(&mut p, time.at(10_000), "n", Some(100), 20, b"x"),
        Reply::Published { si: 99, ci: 100 }
    );
    assert_eq!(b.sub(&mut p, time.at(10_000), "n", 100), msg("x"));
    assert_eq!(b.set_max(&mut p, c0, "n", 1), Reply::Done);
    assert_eq!(
        b.publish(&mut p, time.at(10_000), "n", None, 20, b"y"),
        Reply::NotFound
    );
    assert_eq!(b.set_max(&mut p, c0, "n", 0), Reply::Done);
    assert_eq!(b.set_lock(&mut p, c0, "n", true), Reply::Done);
    assert_eq!(
        b.publish(&mut p, time.at(10_000), "n", None, 20, b"y"),
        Reply::NotFound
    );
    assert_eq!(b.purge(&mut p, c0, "n", 2), Reply::Done);
    assert_eq!(b.stat(&mut p, c0, "n"), Reply::NotFound);
    assert_eq!(
        b.publish(&mut p, c0, "n", None, 20, b"again"),
        Reply::Published { si: 0, ci: 1 }
    );
    p.commit();
}

#[test]
fn evget_waits_in_line_and_skips_cancelled_waiters() {
    let t = TestEnv::new();
    let time = Time::new();
    let mut b = open(&t, &conf(), time);
    let mut p = pass(&t);
    let c0 = time.at(0);
    let park = Step::Park(conf().long_polling_timeout);
    assert_eq!(b.evget(&mut p, c0, 1, "q", "w1", true), park);
    assert_eq!(b.evget(&mut p, c0, 2, "q", "w2", false), park);
    assert_eq!(b.evget(&mut p, c0, 3, "q", "w3", true), park);
    let mut out = Vec::new();
    b.tick(&mut p, c0, &mut out);
    assert!(out.is_empty());
    assert_eq!(b.next_deadline(), None);
    b.park_cancel(1);
    b.put(&mut p, c0, "q", 0, b"m1");
    b.put(&mut p, c0, "q", 0, b"m2");
    assert_eq!(b.next_deadline(), Some(c0.now), "handover pending");
    b.tick(&mut p, c0, &mut out);
    assert_eq!(out, vec![(2, pending("m1", "0:1")), (3, msg("m2"))]);
    assert_eq!(b.parked_counts(), (0, 0, 0, 0));
    // The pending m1 comes due at 5 s: a waiter gets it then.
    assert_eq!(b.evget(&mut p, c0, 4, "q", "w4", true), park);
    out.clear();
    b.tick(&mut p, c0, &mut out);
    assert!(out.is_empty());
    assert_eq!(
        b.next_deadline(),
        Some(c0.now + Duration::from_millis(5001))
    );
    b.tick(&mut p, time.at(4999), &mut out);
    assert!(out.is_empty());
    b.tick(&mut p, time.at(5000), &mut out);
    assert_eq!(out, vec![(4, msg("m1"))]);
    // Timeouts and a push queue created under waiters.
    assert_eq!(b.evget(&mut p, c0, 5, "n", "w", true), park);
    assert_eq!(b.evget(&mut p, c0, 6, "n", "w", true), park);
    assert_eq!(b.park_timeout(5), Reply::NotFound);
    b.publish(&mut p, c0, "n", None, 10, b"x");
    out.clear();
    b.tick(&mut p, c0, &mut out);
    assert_eq!(out, vec![(6, Reply::WrongType)]);
    assert_eq!(
        b.evget(&mut p, c0, 7, "n", "w", true),
        Step::Reply(Reply::WrongType)
    );
    p.commit();
}

#[test]
fn evget_capacity_and_retire() {
    let t = TestEnv::new();
    let time = Time::new();
    let c = conf::MqConf {
        max_timer_count: 1,
        ..conf()
    };
    let mut b = open(&t, &c, time);
    let mut p = pass(&t);
    let c0 = time.at(0);
    assert!(matches!(
        b.evget(&mut p, c0, 1, "q", "w", true),
        Step::Park(_)
    ));
    assert_eq!(
        b.evget(&mut p, c0, 2, "q", "w", true),
        Step::Reply(Reply::Busy)
    );
    assert!(matches!(b.evsub(&mut p, c0, 3, "n", 1), Step::Park(_)));
    assert_eq!(b.evsub(&mut p, c0, 4, "n", 1), Step::Reply(Reply::Busy));
    assert!(matches!(b.do_post_claim(c0, 5), Step::Park(_)));
    let mut out = Vec::new();
    b.retire(&mut out);
    out.sort_by_key(|(w, _)| *w);
    assert_eq!(
        out,
        vec![
            (1, Reply::NotFound),
            (3, Reply::NotFound),
            (5, Reply::Timeout)
        ]
    );
    assert_eq!(
        b.evget(&mut p, c0, 6, "q", "w", true),
        Step::Reply(Reply::NotFound)
    );
    assert_eq!(b.do_post_claim(c0, 7), Step::Reply(Reply::Timeout));
    p.commit();
}

#[test]
fn evsub_every_subscriber_gets_the_index() {
    let t = TestEnv::new();
    let time = Time::new();
    let mut b = open(&t, &conf(), time);
    let mut p = pass(&t);
    let c0 = time.at(0);
    let park = Step::Park(conf().subscribe_timeout);
    assert_eq!(b.evsub(&mut p, c0, 1, "n", 1), park);
    assert_eq!(b.evsub(&mut p, c0, 2, "n", 1), park);
    assert_eq!(
        b.evsub(&mut p, c0, 3, "n", 2),
        Step::Reply(Reply::OutOfWindow { si: 0, ci: 0 })
    );
    b.publish(&mut p, c0, "n", None, 10, b"first");
    let mut out = Vec::new();
    b.tick(&mut p, c0, &mut out);
    assert_eq!(out, vec![(1, msg("first")), (2, msg("first"))]);
    assert_eq!(b.evsub(&mut p, c0, 4, "n", 1), Step::Reply(msg("first")));
    assert_eq!(b.evsub(&mut p, c0, 5, "n", 2), park);
    assert_eq!(b.evsub(&mut p, c0, 6, "n", 2), park);
    assert_eq!(b.evsub(&mut p, c0, 7, "n", 2), park);
    b.park_cancel(6);
    assert_eq!(b.park_timeout(7), Reply::NotFound);
    // A forced index moves the window past idx 2.
    b.publish(&mut p, c0, "n", Some(10), 10, b"ten");
    out.clear();
    b.tick(&mut p, c0, &mut out);
    assert_eq!(out, vec![(5, Reply::OutOfWindow { si: 9, ci: 10 })]);
    // Purge: those on idx 1 keep waiting, the others get 403 0-0.
    assert_eq!(b.evsub(&mut p, c0, 8, "n", 11), park);
    b.purge(&mut p, c0, "n", 0);
    out.clear();
    b.tick(&mut p, c0, &mut out);
    assert_eq!(out, vec![(8, Reply::OutOfWindow { si: 0, ci: 0 })]);
    assert_eq!(b.evsub(&mut p, c0, 9, "n", 1), park);
    // The name becomes a normal queue: its subscribers get 409.
    b.put(&mut p, c0, "n", 0, b"x");
    out.clear();
    b.tick(&mut p, c0, &mut out);
    assert_eq!(out, vec![(9, Reply::WrongType)]);
    assert_eq!(b.parked_counts(), (0, 0, 0, 0));
    p.commit();
}

#[test]
fn rpc_round_trip_through_the_broker() {
    let t = TestEnv::new();
    let time = Time::new();
    let c = conf::MqConf {
        do_get_timeout: Duration::from_secs(2),
        do_get_cache_size: 2,
        ..conf()
    };
    let mut b = open(&t, &c, time);
    let mut p = pass(&t);
    let c0 = time.at(0);
    assert!(matches!(b.do_post_claim(c0, 1), Step::Park(_)));
    assert!(matches!(
        b.do_get(c0, 2, "fib", b"10".to_vec()),
        Step::Park(_)
    ));
    assert_eq!(
        b.do_get_status(),
        json(r#"{"unassigned_tasks":1,"assigned_tasks":0,"free_tasks":1,"total":2}"#)
    );
    let mut out = Vec::new();
    b.tick(&mut p, c0, &mut out);
    let [(1, Reply::Task { name, token, args })] = &out[..] else {
        panic!("{out:?}");
    };
    assert_eq!((name.as_str(), &args[..]), ("fib", &b"10"[..]));
    let token = *token;
    assert_eq!(
        b.do_post_reply(c0, token + 1, b"x".to_vec()),
        Reply::NotFound
    );
    assert_eq!(b.do_post_reply(c0, token, b"55".to_vec()), Reply::Done);
    assert_eq!(b.do_post_reply(c0, token, b"55".to_vec()), Reply::NotFound);
    out.clear();
    b.tick(&mut p, c0, &mut out);
    assert_eq!(out, vec![(2, msg("55"))]);
    // Claimed at 1.5 s, so the result is due by 3.5 s, not 2 s.
    assert!(matches!(
        b.do_get(c0, 3, "slow", b"a".to_vec()),
        Step::Park(_)
    ));
    assert!(matches!(
        b.do_post_claim(time.at(1500), 4),
        Step::Reply(Reply::Task { .. })
    ));
    out.clear();
    b.tick(&mut p, time.at(3000), &mut out);
    assert!(out.is_empty());
    assert_eq!(b.next_deadline(), Some(time.at(3500).now));
    b.tick(&mut p, time.at(3500), &mut out);
    assert_eq!(out, vec![(3, Reply::Timeout)]);
    // A caller that leaves frees its slot.
    assert!(matches!(b.do_get(c0, 5, "x", b"a".to_vec()), Step::Park(_)));
    assert!(matches!(b.do_get(c0, 6, "x", b"a".to_vec()), Step::Park(_)));
    assert_eq!(
        b.do_get(c0, 7, "x", b"a".to_vec()),
        Step::Reply(Reply::Busy)
    );
    b.park_cancel(5);
    assert_eq!(b.park_timeout(6), Reply::Timeout);
    assert_eq!(
        b.do_get_status(),
        json(r#"{"unassigned_tasks":0,"assigned_tasks":0,"free_tasks":2,"total":2}"#)
    );
    p.commit();
}
