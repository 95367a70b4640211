//! The history checker of the cluster test (tests/common/history.rs) on synthetic histories:
//! ones a correct store may produce must pass, ones only a broken store produces must fail
//! with a violation naming the key and the ops; then histories recorded from simulated stores
//! driven by concurrent client threads, a correct one and one that sometimes serves a stale
//! value.

mod common;

use common::history::*;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

fn k1() -> Key {
    Key::kv("k1")
}

/// Invokes and completes at once (no overlap with anything).
fn seq(h: &History, client: Client, op: Op, ret: Ret) {
    let id = h.invoke(client, op);
    h.complete(id, ret);
}

fn written(version: u32) -> Ret {
    Ret::Written { version }
}

fn value(val: &str, version: u32) -> Ret {
    Ret::Value {
        val: val.to_string(),
        version,
    }
}

fn replicas(list: &[(&str, &[(Key, Record)])]) -> Replicas {
    list.iter()
        .map(|(name, recs)| (name.to_string(), recs.iter().cloned().collect()))
        .collect()
}

fn all_checks(h: &History, group: &Replicas) -> Result<(), Violation> {
    check_key_histories(h)?;
    check_versions_grow(h)?;
    check_acknowledged_writes(h, group)?;
    check_replicas_agree(group)
}

#[track_caller]
fn must_pass(result: Result<(), Violation>) {
    if let Err(v) = result {
        panic!("expected a pass, got:\n{v}");
    }
}

#[test]
fn sequential_history_of_every_call_passes() {
    let h = History::new();
    let f = Key::field("h1", "f1");
    seq(&h, 0, Op::get(&k1()), Ret::NotFound);
    seq(&h, 0, Op::put(&k1(), "a"), written(1));
    seq(&h, 1, Op::get(&k1()), value("a", 1));
    seq(&h, 1, Op::put_if_version(&k1(), "b", 1), written(2));
    seq(
        &h,
        0,
        Op::put_if_version(&k1(), "c", 1),
        Ret::Mismatch { current: 2 },
    );
    seq(&h, 0, Op::put_if_version(&k1(), "d", 0), written(3));
    seq(&h, 0, Op::get(&k1()), value("d", 3));
    seq(&h, 1, Op::del(&k1()), Ret::Deleted { version: 3 });
    seq(&h, 1, Op::del(&k1()), Ret::NotFound);
    seq(
        &h,
        1,
        Op::put_if_version(&k1(), "e", 3),
        Ret::Mismatch { current: 0 },
    );
    seq(&h, 0, Op::put(&k1(), "e"), written(1));
    seq(
        &h,
        0,
        Op::hincrby(&f, 5),
        Ret::Incremented {
            value: 5,
            version: 1,
        },
    );
    seq(
        &h,
        1,
        Op::hincrby(&f, -8),
        Ret::Incremented {
            value: -3,
            version: 2,
        },
    );
    seq(&h, 1, Op::get(&f), value("-3", 2));
    seq(&h, 0, Op::put(&f, "x"), written(3));
    seq(&h, 0, Op::hincrby(&f, 1), Ret::NotNumber);
    seq(&h, 0, Op::put(&f, "9223372036854775807"), written(4));
    seq(&h, 0, Op::hincrby(&f, 1), Ret::NotNumber);
    let finals: &[(Key, Record)] = &[
        (k1(), Record::new("e", 1)),
        (f.clone(), Record::new("9223372036854775807", 4)),
    ];
    must_pass(all_checks(&h, &replicas(&[("n1", finals), ("n2", finals)])));
}

#[test]
fn the_model_follows_the_contract() {
    let mut rec = None;
    assert_eq!(
        apply(&mut rec, &Call::Hincrby { delta: 2 }),
        Ret::Incremented {
            value: 2,
            version: 1
        }
    );
    rec = Some(Record::new("+1", 7));
    assert_eq!(
        apply(&mut rec, &Call::Hincrby { delta: 1 }),
        Ret::NotNumber,
        "no leading +"
    );
    rec = Some(Record::new("-", 7));
    assert_eq!(apply(&mut rec, &Call::Hincrby { delta: 1 }), Ret::NotNumber);
    rec = Some(Record::new("a", MAX_VERSION));
    assert_eq!(
        apply(&mut rec, &Call::Put { val: "b".into() }),
        written(1),
        "wraps to 1"
    );
    assert_eq!(
        apply(
            &mut rec,
            &Call::PutIfVersion {
                val: "c".into(),
                ver: 2
            }
        ),
        Ret::Mismatch { current: 1 }
    );
    assert_eq!(rec, Some(Record::new("b", 1)), "a mismatch changes nothing");
}

/// Two overlapping puts and a read overlapping both: each order is possible.
#[test]
fn concurrent_ops_pass_in_either_order() {
    for a_first in [true, false] {
        let h = History::new();
        let a = h.invoke(0, Op::put(&k1(), "a"));
        let b = h.invoke(1, Op::put(&k1(), "b"));
        let r = h.invoke(2, Op::get(&k1()));
        let (va, vb) = if a_first { (1, 2) } else { (2, 1) };
        h.complete(b, written(vb));
        h.complete(
            r,
            if a_first {
                value("a", 1)
            } else {
                value("a", 2)
            },
        );
        h.complete(a, written(va));
        seq(
            &h,
            2,
            Op::get(&k1()),
            if a_first {
                value("b", 2)
            } else {
                value("a", 2)
            },
        );
        let last = if a_first {
            Record::new("b", 2)
        } else {
            Record::new("a", 2)
        };
        let finals: &[(Key, Record)] = &[(k1(), last)];
        must_pass(all_checks(&h, &replicas(&[("n1", finals), ("n2", finals)])));
    }
}

/// An unknown put may show up at any time after its invocation, even after later ops of the
/// same client, or never.
#[test]
fn unknown_ops_may_or_may_not_have_happened() {
    // Took effect, seen much later (after two more ops of the same client).
    let h = History::new();
    seq(&h, 0, Op::put(&k1(), "a"), written(1));
    let u = h.invoke(0, Op::put(&k1(), "u"));
    h.unknown(u);
    seq(&h, 0, Op::get(&k1()), value("a", 1));
    seq(&h, 1, Op::get(&k1()), value("a", 1));
    seq(&h, 1, Op::get(&k1()), value("u", 2));
    seq(&h, 0, Op::put_if_version(&k1(), "c", 2), written(3));
    let finals: &[(Key, Record)] = &[(k1(), Record::new("c", 3))];
    must_pass(all_checks(&h, &replicas(&[("n1", finals)])));

    // Never took effect: an unknown CAS and an unknown delete, the state moves on without them.
    let h = History::new();
    seq(&h, 0, Op::put(&k1(), "a"), written(1));
    let u = h.invoke(0, Op::put_if_version(&k1(), "u", 1));
    h.unknown(u);
    let d = h.invoke(1, Op::del(&k1()));
    h.unknown(d);
    let f = h.invoke(1, Op::put(&k1(), "never"));
    h.failed(f);
    seq(&h, 1, Op::get(&k1()), value("a", 1));
    seq(&h, 0, Op::put(&k1(), "b"), written(2));
    let p = h.invoke(2, Op::get(&k1())); // still pending at the end: ignored like unknown
    let _ = p;
    let finals: &[(Key, Record)] = &[(k1(), Record::new("b", 2))];
    must_pass(all_checks(&h, &replicas(&[("n1", finals)])));

    // The unknown delete did happen, after the last acknowledged write.
    let h = History::new();
    seq(&h, 0, Op::put(&k1(), "a"), written(1));
    let d = h.invoke(1, Op::del(&k1()));
    h.unknown(d);
    seq(&h, 0, Op::get(&k1()), Ret::NotFound);
    must_pass(all_checks(&h, &replicas(&[("n1", &[])])));
}

fn not_linearizable(h: &History) -> String {
    match check_key_histories(h) {
        Err(v @ Violation::NotLinearizable { .. }) => v.to_string(),
        other => panic!("expected NotLinearizable, got {other:?}"),
    }
}

#[test]
fn a_stale_read_after_an_acknowledged_write_fails() {
    let h = History::new();
    seq(&h, 0, Op::put(&k1(), "a"), written(1));
    seq(&h, 0, Op::put(&k1(), "b"), written(2));
    seq(&h, 1, Op::get(&k1()), value("a", 1));
    seq(&h, 1, Op::get(&k1()), value("b", 2));
    let msg = not_linearizable(&h);
    assert!(msg.contains("key \"k1\""), "{msg}");
    assert!(
        msg.contains("op #2 client 1 get key \"k1\" -> 200 \"a\" version 1"),
        "{msg}"
    );
    assert!(
        msg.contains("put key \"k1\" val=\"b\" -> 200 version 2"),
        "{msg}"
    );
    // The versions-only-grow check sees it too.
    assert!(matches!(
        check_versions_grow(&h),
        Err(Violation::VersionWentBack { .. })
    ));
}

#[test]
fn a_lost_acknowledged_write_fails() {
    let h = History::new();
    seq(&h, 0, Op::put(&k1(), "a"), written(1));
    seq(&h, 1, Op::put(&k1(), "b"), written(2));
    let finals: &[(Key, Record)] = &[(k1(), Record::new("a", 1))];
    let v = check_acknowledged_writes(&h, &replicas(&[("n1", finals), ("n2", finals)]));
    let msg = match v {
        Err(v @ Violation::LostWrite { .. }) => v.to_string(),
        other => panic!("expected LostWrite, got {other:?}"),
    };
    assert!(
        msg.contains("replica n1") && msg.contains("val=\"b\"") && msg.contains("\"a\" version 1"),
        "{msg}"
    );

    // The same value at the same version, on another record gone: a lost acknowledged delete.
    let h = History::new();
    seq(&h, 0, Op::put(&k1(), "a"), written(1));
    seq(&h, 0, Op::del(&k1()), Ret::Deleted { version: 1 });
    let finals: &[(Key, Record)] = &[(k1(), Record::new("a", 1))];
    assert!(matches!(
        check_acknowledged_writes(&h, &replicas(&[("n1", finals)])),
        Err(Violation::LostWrite { .. })
    ));
    // A replica missing the record entirely.
    let h = History::new();
    seq(&h, 0, Op::put(&k1(), "a"), written(1));
    assert!(matches!(
        check_acknowledged_writes(&h, &replicas(&[("n1", &[])])),
        Err(Violation::LostWrite { .. })
    ));
}

#[test]
fn two_cas_on_the_same_version_both_succeeding_fail() {
    let h = History::new();
    seq(&h, 0, Op::put(&k1(), "a"), written(1));
    let x = h.invoke(1, Op::put_if_version(&k1(), "x", 1));
    let y = h.invoke(2, Op::put_if_version(&k1(), "y", 1));
    h.complete(x, written(2));
    h.complete(y, written(3));
    not_linearizable(&h);

    let h = History::new();
    seq(&h, 0, Op::put(&k1(), "a"), written(1));
    let x = h.invoke(1, Op::put_if_version(&k1(), "x", 1));
    let y = h.invoke(2, Op::put_if_version(&k1(), "y", 1));
    h.complete(x, written(2));
    h.complete(y, written(2));
    not_linearizable(&h);
}

#[test]
fn a_version_going_backwards_fails() {
    let h = History::new();
    seq(&h, 0, Op::put(&k1(), "a"), written(1));
    seq(&h, 0, Op::put(&k1(), "b"), written(2));
    seq(&h, 1, Op::put(&k1(), "c"), written(2));
    let msg = match check_versions_grow(&h) {
        Err(v @ Violation::VersionWentBack { .. }) => v.to_string(),
        other => panic!("expected VersionWentBack, got {other:?}"),
    };
    assert!(
        msg.contains("val=\"b\"") && msg.contains("val=\"c\""),
        "{msg}"
    );
    not_linearizable(&h);

    // A delete that may lie between excuses it: the record started again at 1.
    let h = History::new();
    seq(&h, 0, Op::put(&k1(), "a"), written(1));
    seq(&h, 0, Op::put(&k1(), "b"), written(2));
    let d = h.invoke(2, Op::del(&k1()));
    h.unknown(d);
    seq(&h, 1, Op::put(&k1(), "c"), written(1));
    must_pass(check_versions_grow(&h));
    must_pass(check_key_histories(&h));
}

#[test]
fn a_read_of_a_value_never_written_fails() {
    let h = History::new();
    seq(&h, 0, Op::put(&k1(), "a"), written(1));
    let w = h.invoke(1, Op::put(&k1(), "b"));
    seq(&h, 2, Op::get(&k1()), value("zzz", 2));
    h.complete(w, written(2));
    not_linearizable(&h);

    let finals: &[(Key, Record)] = &[(k1(), Record::new("zzz", 2))];
    let v = check_acknowledged_writes(&h, &replicas(&[("n1", finals)]));
    assert!(matches!(v, Err(Violation::NeverWritten { .. })), "{v:?}");
}

#[test]
fn replicas_that_differ_fail() {
    let g = replicas(&[
        (
            "g1/n1",
            &[
                (k1(), Record::new("a", 2)),
                (Key::kv("k2"), Record::new("z", 1)),
            ],
        ),
        (
            "g1/n2",
            &[
                (k1(), Record::new("a", 2)),
                (Key::kv("k2"), Record::new("z", 1)),
            ],
        ),
        ("g1/n3", &[(k1(), Record::new("a", 2))]),
    ]);
    let msg = match check_replicas_agree(&g) {
        Err(v @ Violation::ReplicasDiffer { .. }) => v.to_string(),
        other => panic!("expected ReplicasDiffer, got {other:?}"),
    };
    assert!(
        msg.contains("key \"k2\"") && msg.contains("g1/n3: no record"),
        "{msg}"
    );
    let g = replicas(&[
        ("n1", &[(k1(), Record::new("a", 2))]),
        ("n2", &[(k1(), Record::new("a", 3))]),
    ]);
    assert!(check_replicas_agree(&g).is_err());
}

/// A small xorshift: the simulations need no statistical quality, only spread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pause(&mut self) {
        thread::sleep(Duration::from_micros(self.below(300)));
    }
}

/// The simulated store: one model record per key, under one lock, plus what the faulty store
/// needs to serve stale reads: every state each key went through, and the latest state whose
/// write was acknowledged.
#[derive(Default)]
struct Store {
    recs: BTreeMap<Key, Option<Record>>,
    states: BTreeMap<Key, Vec<Option<Record>>>,
    acked: BTreeMap<Key, usize>,
}

const CLIENTS: usize = 4;
const OPS_PER_CLIENT: usize = 60;

/// Runs `CLIENTS` threads of random ops against the simulated store. With `stale`, a read
/// begun after a write was acknowledged sometimes answers the state before that write; the
/// count of such reads is returned. Some ops time out (unknown), having taken effect or not.
fn simulate(stale: bool, seed: u64) -> (History, Store, usize) {
    let keys = [Key::kv("a"), Key::kv("b"), Key::field("h", "n")];
    let h = History::new();
    let store = Mutex::new(Store::default());
    let stale_served = Mutex::new(0);
    thread::scope(|s| {
        for client in 0..CLIENTS {
            let (h, store, keys, stale_served) = (&h, &store, &keys, &stale_served);
            s.spawn(move || {
                let mut rng = Rng(seed + 977 * client as u64 + 1);
                let mut seen = 0;
                for n in 0..OPS_PER_CLIENT {
                    let key = &keys[rng.below(keys.len() as u64) as usize];
                    let val = format!("c{client}-{n}");
                    let op = match (rng.below(10), key) {
                        (0..=3, _) => Op::get(key),
                        (4..=5, Key::Field { .. }) => Op::hincrby(key, rng.below(7) as i64 - 3),
                        (4..=5, _) => Op::put(key, &val),
                        (6..=7, _) => Op::put_if_version(key, &val, seen),
                        (8, _) if !stale => Op::del(key),
                        _ => Op::put(key, &val),
                    };
                    let floor = store.lock().unwrap().acked.get(key).copied().unwrap_or(0);
                    rng.pause();
                    let id = h.invoke(client, op.clone());
                    rng.pause();
                    let timeout = rng.below(20) == 0;
                    let (ret, state) = {
                        let mut st = store.lock().unwrap();
                        let states = st.states.entry(key.clone()).or_insert_with(|| vec![None]);
                        if stale && op.call == Call::Get && floor >= 1 && rng.below(3) == 0 {
                            *stale_served.lock().unwrap() += 1;
                            (apply(&mut states[floor - 1].clone(), &Call::Get), 0)
                        } else if timeout && rng.below(2) == 0 {
                            (Ret::NotFound, 0) // lost before it reached the store
                        } else {
                            let rec = st.recs.entry(key.clone()).or_default();
                            let before = rec.clone();
                            let ret = apply(rec, &op.call);
                            let after = rec.clone();
                            let states = st.states.get_mut(key).expect("made above");
                            if after != before {
                                states.push(after);
                            }
                            (ret, states.len() - 1)
                        }
                    };
                    rng.pause();
                    if timeout {
                        h.unknown(id);
                        continue;
                    }
                    seen = match &ret {
                        Ret::Written { version } | Ret::Value { version, .. } => *version,
                        Ret::Incremented { version, .. } | Ret::Mismatch { current: version } => {
                            *version
                        }
                        _ => 0,
                    };
                    h.complete(id, ret);
                    if op.call != Call::Get {
                        let mut st = store.lock().unwrap();
                        let acked = st.acked.entry(key.clone()).or_default();
                        *acked = (*acked).max(state);
                    }
                }
            });
        }
    });
    let served = *stale_served.lock().unwrap();
    (h, store.into_inner().unwrap(), served)
}

#[test]
fn a_simulated_linearizable_store_passes() {
    let started = Instant::now();
    for seed in [1, 2, 3] {
        let (h, store, _) = simulate(false, seed);
        let finals: BTreeMap<Key, Record> = store
            .recs
            .into_iter()
            .filter_map(|(k, r)| Some((k, r?)))
            .collect();
        let group: Replicas = [
            ("n1".to_string(), finals.clone()),
            ("n2".to_string(), finals),
        ]
        .into();
        must_pass(all_checks(&h, &group));
        assert!(
            h.ops().iter().any(|o| o.outcome == Outcome::Unknown),
            "the run had no timeouts"
        );
    }
    // A figure, not an assertion: the machine is shared (the checker bounds itself by budget).
    println!("checked in {:?}", started.elapsed());
}

#[test]
fn a_simulated_store_serving_stale_reads_is_caught() {
    let started = Instant::now();
    for seed in [11, 12, 13] {
        let (h, _, served) = simulate(true, seed);
        assert!(
            served > 0,
            "seed {seed}: no stale read was served, the test proves nothing"
        );
        let msg = not_linearizable(&h);
        assert!(msg.contains("get "), "{msg}");
        if seed == 11 {
            println!("{msg}"); // what the cluster test will show (cargo test -- --nocapture)
        }
    }
    // A figure, not an assertion: the machine is shared (the checker bounds itself by budget).
    println!("checked in {:?}", started.elapsed());
}

/// Past its step budget the search says so instead of passing or failing.
#[test]
fn a_search_past_its_budget_is_undecided_not_passed() {
    let (h, _, _) = simulate(false, 21);
    match check_key_histories_with_budget(&h, 5) {
        Err(Violation::Undecided { budget: 5, ops, .. }) => assert!(ops > 0),
        other => panic!("expected Undecided, got {other:?}"),
    }
    let (h, _, _) = simulate(false, 22);
    must_pass(check_key_histories_with_budget(&h, DEFAULT_STEP_BUDGET));
}

/// The two searches (stateright's and the JIT one that decides when stateright cannot) agree
/// on every key of the simulated histories, correct and faulty.
#[test]
fn both_searches_agree() {
    let mut linearizable = 0;
    for (stale, seed) in [(false, 31), (false, 32), (true, 33)] {
        let (h, _, _) = simulate(stale, seed);
        match cross_check(&h) {
            Ok(n) => linearizable += n,
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
    assert!(linearizable >= 6, "only {linearizable} linearizable keys");
}
