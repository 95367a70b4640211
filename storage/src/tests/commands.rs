//! Writes as data: the same log of commands, applied to two fresh stores, gives the same
//! outcomes and the same contents (what replicas rely on), and the log survives its binary
//! form.

use super::*;

/// A random log of encoded commands: every kind of write, on a few keys and tables (one name
/// used with every table type), expiries that pass as the log's time goes on, versions that
/// sometimes mismatch, purges. Passes are separated by `None`.
fn random_log(seed: u64) -> Vec<Option<Vec<u8>>> {
    let mut rng = Rng::new(seed);
    let mut log = Vec::new();
    let mut now_ms = 1_700_000_000_000u64;
    for _pass in 0..120 {
        for _ in 0..1 + rng.below(8) {
            let key = format!("k{}", rng.below(6)).into_bytes();
            let val = vec![b'a' + rng.below(26) as u8; rng.below(40) as usize];
            let number = format!("{}", rng.below(5) as i64 - 2).into_bytes();
            let val = if rng.below(4) == 0 { number } else { val };
            let tb = ["h", "s", "z", "t"][rng.below(4) as usize];
            let ttl = [0, 0, 1, 2][rng.below(4) as usize];
            let exp = expires_at(ttl, now_ms);
            let ver = [0, 0, 0, 1, 2][rng.below(5) as usize];
            let (key, val) = (&key[..], &val[..]);
            let member = key;
            let write = match rng.below(20) {
                0 => Write::Put {
                    key,
                    val,
                    expires_at: exp,
                    ver,
                },
                1 => Write::Del { key, ver },
                2 => Write::Hset {
                    tb,
                    key,
                    val,
                    expires_at: exp,
                    ver,
                },
                3 => Write::Hincrby {
                    tb,
                    key,
                    delta: rng.below(7) as i64 - 3,
                    expires_at: exp,
                    ver,
                },
                4 => Write::Hdel { tb, key, ver },
                5 => Write::Sadd {
                    tb,
                    member,
                    expires_at: exp,
                    ver,
                },
                6 => Write::Srem { tb, member, ver },
                7 => Write::Zadd {
                    tb,
                    member,
                    score: rng.below(5) as i64 - 2,
                    mode: [ZaddMode::Set, ZaddMode::Add, ZaddMode::Subtract][rng.below(3) as usize],
                    expires_at: exp,
                    ver,
                },
                8 => Write::Zrem { tb, member, ver },
                9 => Write::PurgeExpired {
                    max: 1 + rng.below(4) as usize,
                },
                10 => Write::CachePut {
                    key,
                    val,
                    expires_at: exp,
                },
                11 => Write::CacheDel { key },
                12 => Write::CacheExpire {
                    key,
                    expires_at: exp,
                },
                13 => Write::CachePersist { key },
                14 => Write::CacheAppend { key, val },
                15 => Write::CacheHset { tb, key, val },
                16 => Write::CacheHdel { tb, key },
                17 => Write::CacheHincrby {
                    tb,
                    key,
                    delta: rng.below(7) as i64 - 3,
                },
                18 => Write::CacheHincrbyfloat {
                    tb,
                    key,
                    delta: [0.5, -1.25, f64::INFINITY][rng.below(3) as usize],
                },
                _ => Write::CachePurgeExpired {
                    max: rng.below(3) as usize,
                },
            };
            let cmd = Command { now_ms, write };
            let mut bytes = Vec::new();
            cmd.encode(&mut bytes);
            assert_eq!(Command::decode(&bytes).unwrap(), cmd);
            log.push(Some(bytes));
        }
        log.push(None);
        now_ms += 400;
    }
    log
}

/// Applies the log pass by pass; returns every outcome, printed.
fn replay(s: &Store, log: &[Option<Vec<u8>>]) -> Vec<String> {
    let mut outcomes = Vec::new();
    let mut b = s.batch();
    for entry in log {
        match entry {
            Some(bytes) => {
                let cmd = Command::decode(bytes).expect("a command of the log");
                outcomes.push(format!("{:?}", b.apply(&cmd)));
            }
            None => {
                b.commit().expect("commit");
                b = s.batch();
            }
        }
    }
    b.commit().expect("commit");
    outcomes
}

#[test]
fn the_same_commands_give_the_same_outcomes_and_contents() {
    for seed in [1, 2, 3] {
        let log = random_log(seed);
        let (da, db) = (TempDir::new("cmd-a"), TempDir::new("cmd-b"));
        let (a, b) = (open(&da), open(&db));
        let outcomes = replay(&a, &log);
        assert_eq!(replay(&b, &log), outcomes, "seed {seed}");
        assert_eq!(dump(&a), dump(&b), "seed {seed}");
        // The log did something of every sort: writes, refusals, purges.
        let has = |what: &str| outcomes.iter().any(|o| o.contains(what));
        for what in [
            "Written",
            "Done",
            "Purged",
            "NotFound",
            "WrongType",
            "NotNumeric",
        ] {
            assert!(has(what), "seed {seed}: no {what} in {outcomes:?}");
        }
    }
}

#[test]
fn a_command_and_its_write_method_agree() {
    let (da, db) = (TempDir::new("cmd-c"), TempDir::new("cmd-d"));
    let (a, b) = (open(&da), open(&db));
    let now_ms = 5_000;
    let by_method = with_batch(&a, |bt| {
        let w = bt
            .zadd("z", b"m", (4, ZaddMode::Add), 3, 0, now_ms)
            .unwrap();
        let f = bt.cache_hincrbyfloat("c", b"f", 0.25).unwrap();
        (w, f)
    });
    let by_command = with_batch(&b, |bt| {
        let zadd = Write::Zadd {
            tb: "z",
            member: b"m",
            score: 4,
            mode: ZaddMode::Add,
            expires_at: expires_at(3, now_ms),
            ver: 0,
        };
        let float = Write::CacheHincrbyfloat {
            tb: "c",
            key: b"f",
            delta: 0.25,
        };
        let z = bt
            .apply(&Command {
                now_ms,
                write: zadd,
            })
            .unwrap();
        let f = bt
            .apply(&Command {
                now_ms,
                write: float,
            })
            .unwrap();
        (z, f)
    });
    assert_eq!(
        by_command,
        (
            Outcome::Scored(by_method.0 .0, by_method.0 .1),
            Outcome::Float(by_method.1)
        )
    );
    assert_eq!(dump(&a), dump(&b));
}

#[test]
fn refusals_that_need_no_state_are_not_counted_as_writes() {
    let d = TempDir::new("cmd-e");
    let s = open(&d);
    let mut b = s.batch();
    let never = Write::CacheExpire {
        key: b"k",
        expires_at: 0,
    };
    let nan = Write::CacheHincrbyfloat {
        tb: "t",
        key: b"k",
        delta: f64::NAN,
    };
    assert!(matches!(
        b.apply(&Command {
            now_ms: 1,
            write: never
        }),
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        b.apply(&Command {
            now_ms: 1,
            write: nan
        }),
        Err(StorageError::NotNumeric)
    ));
    assert!(!b.has_writes());
    let del = Write::CacheDel { key: b"k" };
    assert!(matches!(
        b.apply(&Command {
            now_ms: 1,
            write: del
        }),
        Err(StorageError::NotFound)
    ));
    assert!(b.has_writes());
    b.commit().unwrap();
}
