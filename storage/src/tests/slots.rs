//! Slot snapshots (`Batch::export_slots`, `Batch::import_slots`): a range's records carried to
//! another store, which ends exactly as if their commands had been applied there (records,
//! index entries, versions, expiries, totals, table statistics, byte accounting), outside the
//! range untouched; bad snapshots refused before any change.

use super::*;

/// The time of the logs' first pass; each pass is 500 ms later.
const T0: u64 = 1_700_000_000_000;

/// A random log of encoded commands (passes separated by `None`) of every persistent kind
/// over many slots: short and long keys and members, values on overflow pages, expiries
/// that pass while the log runs (expired records stay stored: nothing purges), versions
/// above 1, tables of each type emptied and refilled. No purge, which is not of one slot.
fn log_of(seed: u64, passes: u32) -> Vec<Option<Vec<u8>>> {
    let mut rng = Rng::new(seed);
    let mut log = Vec::new();
    let mut now_ms = T0;
    for _ in 0..passes {
        for _ in 0..1 + rng.below(30) {
            let n = rng.below(400);
            let mut key = format!("k{n}").into_bytes();
            if n.is_multiple_of(37) {
                // Long keys sharing their first 400 bytes.
                key = [vec![b'L'; 420], key].concat();
            }
            let len = [0, 5, 30, 3000][rng.below(4) as usize];
            let val = vec![b'a' + rng.below(26) as u8; len];
            let t = rng.below(60);
            let tb = table(t);
            let exp = [0, 0, now_ms + 1200, now_ms + 90_000][rng.below(4) as usize];
            let ver = [0, 0, 0, 0, 1, 2][rng.below(6) as usize];
            let (key, val, tb) = (&key[..], &val[..], &tb[..]);
            // One table type per name, so that the log's tables live long enough to matter.
            let write = match (rng.below(10), t % 3) {
                (0..=2, _) => Write::Put {
                    key,
                    val,
                    expires_at: exp,
                    ver,
                },
                (3, _) => Write::Del { key, ver },
                (4..=5, 0) => Write::Hset {
                    tb,
                    key,
                    val,
                    expires_at: exp,
                    ver,
                },
                (6, 0) => Write::Hincrby {
                    tb,
                    key,
                    delta: 3,
                    expires_at: exp,
                    ver,
                },
                (_, 0) => Write::Hdel { tb, key, ver },
                (4..=6, 1) => Write::Sadd {
                    tb,
                    member: key,
                    expires_at: exp,
                    ver,
                },
                (_, 1) => Write::Srem {
                    tb,
                    member: key,
                    ver,
                },
                (4..=6, _) => Write::Zadd {
                    tb,
                    member: key,
                    score: rng.below(9) as i64 - 4,
                    mode: ZaddMode::Add,
                    expires_at: exp,
                    ver,
                },
                (_, _) => Write::Zrem {
                    tb,
                    member: key,
                    ver,
                },
            };
            let mut bytes = Vec::new();
            Command { now_ms, write }.encode(&mut bytes);
            log.push(Some(bytes));
        }
        log.push(None);
        now_ms += 500;
    }
    log
}

/// The name of the log's table `t` (of 60), spread over the slots (`t0`, `t7919`, ...).
fn table(t: u64) -> String {
    format!("t{}", t * 7919)
}

/// The slot a write belongs to (`cluster.md` §2): its key's, or its table's.
fn slot_of(w: &Write<'_>) -> u32 {
    match *w {
        Write::Put { key, .. } | Write::Del { key, .. } => bucket(key),
        Write::Hset { tb, .. }
        | Write::Hincrby { tb, .. }
        | Write::Hdel { tb, .. }
        | Write::Sadd { tb, .. }
        | Write::Srem { tb, .. }
        | Write::Zadd { tb, .. }
        | Write::Zrem { tb, .. } => bucket(tb.as_bytes()),
        _ => panic!("not in the logs: {w:?}"),
    }
}

/// Applies the commands of `log` whose slot `keep` accepts, pass by pass.
fn replay(s: &Store, log: &[Option<Vec<u8>>], keep: impl Fn(u32) -> bool) {
    let mut b = s.batch();
    for entry in log {
        match entry {
            Some(bytes) => {
                let cmd = Command::decode(bytes).expect("a command of the log");
                if keep(slot_of(&cmd.write)) {
                    let _ = b.apply(&cmd);
                }
            }
            None => {
                b.commit().expect("commit");
                b = s.batch();
            }
        }
    }
    b.commit().expect("commit");
}

/// The persistent store's contents: every record and index entry, and the totals (not the
/// journal's position nor the groups' states, which are no records).
fn records(s: &Store) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let data = ["kv", "mem", "zidx", "tbl", "exp"];
    dump(s)
        .into_iter()
        .filter(|(db, k, _)| data.contains(db) || (*db == "meta" && k == b"totals"))
        .collect()
}

/// The `/stat`-level figures and every listing, at the log's end and later.
fn figures(s: &Store) -> Vec<String> {
    let mut b = s.batch();
    let mut out = vec![
        format!("{:?}", b.totals()),
        format!("{:?}", s.map_usage().0),
    ];
    for now in [T0, T0 + 30_000, T0 + 200_000] {
        out.push(format!("{:?}", b.all_tables(now)));
        out.push(format!("{:?}", b.keys(&q(0, 10_000), now)));
        for t in 0..60 {
            let tb = table(t);
            out.push(format!("{:?}", b.table_stat(&tb, now)));
            out.push(format!("{:?}", b.hkeys(&tb, &q(0, 10_000), now)));
            out.push(format!("{:?}", b.smembers(&tb, &q(0, 10_000), now)));
            out.push(format!("{:?}", b.zrange_by_rank(&tb, &q(0, 10_000), now)));
        }
    }
    out
}

fn export(s: &Store, slots: std::ops::Range<u32>) -> Vec<u8> {
    s.batch().export_slots(slots, T0).expect("export")
}

fn import(s: &Store, slots: std::ops::Range<u32>, snapshot: &[u8]) -> Result<()> {
    let mut b = s.batch();
    b.import_slots(slots, snapshot)?;
    b.commit().map(|_| ())
}

fn assert_same(a: &Store, b: &Store, what: &str) {
    assert!(records(a) == records(b), "{what}: records differ");
    assert_eq!(figures(a), figures(b), "{what}");
}

#[test]
fn a_range_carried_over_is_as_if_its_commands_had_run_there() {
    let (x, y) = (log_of(1, 120), log_of(2, 80));
    let range = 100..400;
    let inside = |s: u32| (100..400).contains(&s);
    let dirs: Vec<TempDir> = (0..5).map(|_| TempDir::new("slots")).collect();
    let [from, empty, other, want_empty, want_other] = [0, 1, 2, 3, 4].map(|i| open(&dirs[i]));
    replay(&from, &x, |_| true);
    replay(&other, &y, |_| true);
    // Not vacuous: the range holds records of every kind, and so do the slots around it.
    let snapshot = export(&from, range.clone());
    let all = export(&from, 0..1024);
    assert!(snapshot.len() > 50_000 && all.len() > 2 * snapshot.len());

    import(&empty, range.clone(), &snapshot).unwrap();
    let held = records(&empty);
    let has = |db: &str, f: &dyn Fn(&[u8]) -> bool| held.iter().any(|(d, k, _)| *d == db && f(k));
    assert!(has("kv", &|k| k.len() == 416), "a long key");
    assert!(
        has("zidx", &|_| true) && has("mem", &|k| k.len() > 416),
        "long members"
    );
    assert!(has("exp", &|k| u64::from_be_bytes(
        k[..8].try_into().unwrap()
    ) < T0 + 30_000));
    let kinds = format!("{:?}", empty.batch().all_tables(T0));
    assert!(["Hash", "Set", "SortedSet"]
        .iter()
        .all(|k| kinds.contains(k)));
    replay(&want_empty, &x, inside);
    assert_same(&empty, &want_empty, "into an empty store");

    import(&other, range.clone(), &snapshot).unwrap();
    replay(&want_other, &y, |s| !inside(s));
    replay(&want_other, &x, inside);
    assert_same(&other, &want_other, "into a store with other data");

    // The exporter is unchanged, and an export of the importer is the same snapshot.
    assert_eq!(export(&empty, range.clone()), snapshot);
    assert_eq!(export(&other, range.clone()), snapshot);
    // Applying the same next commands gives the same outcomes and contents.
    let next = log_of(3, 20);
    let outcomes = |s: &Store| {
        let mut b = s.batch();
        let now = T0 + 120 * 500;
        let mut out = Vec::new();
        for bytes in next.iter().flatten() {
            let cmd = Command::decode(bytes).unwrap();
            if inside(slot_of(&cmd.write)) {
                out.push(format!("{:?}", b.apply(&Command { now_ms: now, ..cmd })));
            }
        }
        b.commit().unwrap();
        out
    };
    assert_eq!(outcomes(&from), outcomes(&other));
    assert_eq!(export(&from, range.clone()), export(&other, range.clone()));
    // Expired records were carried over too: a purge removes them alike.
    for s in [&from, &other] {
        with_batch(s, |b| b.purge_expired(T0 + 200_000, usize::MAX).unwrap());
    }
    assert_eq!(export(&from, range.clone()), export(&other, range));
}

#[test]
fn the_whole_range_round_trips_exactly() {
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new("slots")).collect();
    let [from, empty, other] = [0, 1, 2].map(|i| open(&dirs[i]));
    replay(&from, &log_of(4, 100), |_| true);
    replay(&other, &log_of(5, 60), |_| true);
    let all = export(&from, 0..1024);
    import(&empty, 0..1024, &all).unwrap();
    assert!(records(&empty) == records(&from));
    assert_same(&empty, &from, "into an empty store");
    import(&other, 0..1024, &all).unwrap();
    assert_same(&other, &from, "over other data");
    // An empty snapshot empties its range and nothing else.
    let (d, e) = (TempDir::new("slots"), TempDir::new("slots"));
    let (nothing, want) = (open(&d), open(&e));
    import(&other, 0..512, &export(&nothing, 0..512)).unwrap();
    replay(&want, &log_of(4, 100), |s| s >= 512);
    assert_same(&other, &want, "an empty snapshot");
    import(&other, 0..1024, &export(&nothing, 0..1024)).unwrap();
    assert!(records(&other).iter().all(|(db, ..)| *db == "meta"));
    assert_eq!(figures(&other), figures(&nothing));
}

#[test]
fn bad_snapshots_are_refused_before_any_change() {
    let (d, e) = (TempDir::new("slots"), TempDir::new("slots"));
    let (from, to) = (open(&d), open(&e));
    replay(&from, &log_of(6, 40), |_| true);
    replay(&to, &log_of(7, 40), |_| true);
    let good = export(&from, 0..300);
    let before = dump(&to);
    let refused = |slots: std::ops::Range<u32>, snap: &[u8]| {
        let mut b = to.batch();
        let r = b.import_slots(slots, snap);
        assert!(matches!(r, Err(StorageError::Invalid(_))), "{r:?}");
        // A refusal leaves the pass usable.
        b.set_group_state(0, b"s").unwrap();
        drop(b);
        assert!(dump(&to) == before);
    };
    refused(0..301, &good);
    refused(0..0, &good);
    refused(1000..1025, &good);
    let mut rng = Rng::new(8);
    for round in 0..3000 {
        let len = rng.below(if round % 2 == 0 { 64 } else { 4096 }) as usize;
        let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        refused(0..300, &junk);
    }
    // Cut or flipped, a good snapshot is refused.
    for cut in [0, 1, 20, good.len() / 2, good.len() - 1] {
        refused(0..300, &good[..cut]);
    }
    for _ in 0..300 {
        let mut bad = good.clone();
        let at = rng.below(bad.len() as u64) as usize;
        bad[at] ^= 1 << rng.below(8);
        refused(0..300, &bad);
    }
}

/// A snapshot changed and its CRC made right again (the writer's bug, not the wire's): the
/// records' own checks refuse what does not decode or does not belong, and nothing panics.
#[test]
fn records_are_checked_behind_a_valid_crc() {
    let (d, e) = (TempDir::new("slots"), TempDir::new("slots"));
    let (from, to) = (open(&d), open(&e));
    replay(&from, &log_of(9, 30), |_| true);
    let good = export(&from, 0..1024);
    let mut rng = Rng::new(10);
    let mut refusals = 0;
    for _ in 0..400 {
        let mut bad = good[..good.len() - 4].to_vec();
        for _ in 0..1 + rng.below(3) {
            // Past the header, so that the records are what changes.
            let at = 21 + rng.below(bad.len() as u64 - 21) as usize;
            bad[at] = rng.next() as u8;
        }
        let crc = crc32fast::hash(&bad);
        bad.extend_from_slice(&crc.to_le_bytes());
        let mut b = to.batch();
        match b.import_slots(0..1024, &bad) {
            Ok(()) => {}
            Err(StorageError::Invalid(_)) => refusals += 1,
            Err(e) => panic!("{e}"),
        }
    }
    // Most changes hit a value's bytes, which make another valid record; the others refuse.
    assert!(refusals > 20, "{refusals}");
}

/// `Batch::totals_of_slots`: a range's totals are those of a store holding that range only,
/// the whole range's are the store's, and ranges that split it sum to it.
#[test]
fn a_ranges_totals_are_a_store_of_that_range_alone() {
    let dirs: Vec<TempDir> = (0..2).map(|_| TempDir::new("slots")).collect();
    let [all, low] = [0, 1].map(|i| open(&dirs[i]));
    let log = log_of(7, 100);
    replay(&all, &log, |_| true);
    replay(&low, &log, |s| s < 300);
    let totals_of = |s: &Store, r: std::ops::Range<u32>| s.batch().totals_of_slots(r).unwrap();
    let whole = all.batch().totals().unwrap();
    assert!(whole.kv.count > 0 && whole.hash.count > 0, "{whole:?}");
    assert_eq!(totals_of(&all, 0..1024), whole);
    assert_eq!(totals_of(&all, 0..300), low.batch().totals().unwrap());
    let (a, b) = (totals_of(&all, 0..300), totals_of(&all, 300..1024));
    let sum = |x: Usage, y: Usage| Usage {
        count: x.count + y.count,
        size: x.size + y.size,
        capacity: x.capacity + y.capacity,
    };
    assert_eq!(sum(a.kv, b.kv), whole.kv);
    assert_eq!(sum(a.hash, b.hash), whole.hash);
    assert!(all.batch().totals_of_slots(5..5).is_err());
}

#[test]
fn a_slot_purge_removes_the_same_records_whatever_lies_outside() {
    let (x, y) = (log_of(1, 120), log_of(2, 80));
    let inside = |s: u32| (100..400).contains(&s);
    let dirs: Vec<TempDir> = (0..2).map(|_| TempDir::new("slots")).collect();
    let [a, b] = [0, 1].map(|i| open(&dirs[i]));
    replay(&a, &x, |_| true);
    replay(&b, &x, inside);
    replay(&b, &y, |s| !inside(s));
    let outside = export(&a, 400..1024);
    let now = T0 + 200_000;
    let purge = |s: &Store, max| {
        let write = Write::PurgeExpiredSlots {
            start: 100,
            end: 400,
            max,
        };
        let mut batch = s.batch();
        let out = batch.apply(&Command { now_ms: now, write }).unwrap();
        batch.commit().unwrap();
        out
    };
    assert!(a.batch().has_expired_in_slots(100..400, now).unwrap());
    assert!(!a.batch().has_expired_in_slots(100..400, T0).unwrap());
    let first = purge(&a, 7);
    assert_eq!(first, Outcome::Purged(7));
    assert_eq!(purge(&b, 7), first);
    assert_eq!(export(&a, 100..400), export(&b, 100..400));
    for _ in 0..100 {
        if !a.batch().has_expired_in_slots(100..400, now).unwrap() {
            break;
        }
        assert_eq!(purge(&a, 1000), purge(&b, 1000));
    }
    assert!(!b.batch().has_expired_in_slots(100..400, now).unwrap());
    assert_eq!(export(&a, 100..400), export(&b, 100..400));
    // Outside the range nothing went, though much has expired there.
    assert_eq!(export(&a, 400..1024), outside);
    assert!(a.batch().has_expired_in_slots(400..1024, now).unwrap());
}
