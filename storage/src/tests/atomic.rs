//! A refused request changes nothing, in both modes: with `write_map` there is no nested
//! transaction to undo it, so every check must come before the first change (the lazy removal
//! of an expired record, the wipe of a dead table of another type). An LMDB failure once the
//! changes started undoes that request alone (nested) or the whole pass (`write_map`).

use super::*;

const SEC: u64 = 1000;

/// Runs `f` alone in a batch, expects the refusal `want`, commits, and checks that no byte of
/// either environment changed.
fn refused(
    s: &Store,
    want: fn(&StorageError) -> bool,
    f: impl FnOnce(&mut Batch<'_>) -> Result<()>,
) {
    let before = dump(s);
    let mut b = s.batch();
    match f(&mut b) {
        Err(e) if want(&e) => {}
        other => panic!("unexpected {other:?}"),
    }
    b.commit().expect("a refusal does not spoil the pass");
    assert!(dump(s) == before, "a refused request changed the store");
}

fn mismatch(e: &StorageError) -> bool {
    matches!(e, StorageError::VersionMismatch { current: 0 })
}

fn not_numeric(e: &StorageError) -> bool {
    matches!(e, StorageError::NotNumeric)
}

fn full(e: &StorageError) -> bool {
    matches!(e, StorageError::MapFull)
}

#[test]
fn zadd_with_a_version_mismatch_on_an_expired_member() {
    let d = TempDir::new("at");
    let s = open(&d);
    with_batch(&s, |b| {
        b.zadd("z", b"m", (5, ZaddMode::Set), 1, 0, 0).unwrap();
        b.zadd("z", b"keep", (1, ZaddMode::Set), 0, 0, 0).unwrap();
        b.put(b"k", b"v", 1, 0, 0).unwrap();
    });
    let now = 5 * SEC;
    // The expired member is the record the write would replace: its removal must wait for
    // the version check.
    refused(&s, mismatch, |b| {
        b.zadd("z", b"m", (7, ZaddMode::Set), 0, 3, now).map(|_| ())
    });
    refused(&s, mismatch, |b| {
        b.zadd("z", b"m", (7, ZaddMode::Add), 0, 1, now).map(|_| ())
    });
    refused(&s, mismatch, |b| b.put(b"k", b"w", 0, 1, now).map(|_| ()));
    refused(&s, mismatch, |b| b.sadd("s", b"m", 0, 2, now).map(|_| ()));
    // Overflow of a live score.
    with_batch(&s, |b| {
        b.zadd("z", b"top", (i64::MAX, ZaddMode::Set), 0, 0, now)
            .unwrap();
    });
    refused(&s, not_numeric, |b| {
        b.zadd("z", b"top", (1, ZaddMode::Add), 0, 0, now)
            .map(|_| ())
    });
    // Without the version, the expired member is replaced and counted once.
    with_batch(&s, |b| {
        assert_eq!(
            b.zadd("z", b"m", (7, ZaddMode::Add), 0, 0, now).unwrap(),
            (Written { ver: 1 }, 7)
        );
        assert_eq!(b.table_stat("z", now).unwrap().usage.count, 3);
    });
}

#[test]
fn hincrby_that_overflows_or_meets_no_number() {
    let d = TempDir::new("at");
    let s = open(&d);
    with_batch(&s, |b| {
        b.hset("h", b"max", i64::MAX.to_string().as_bytes(), 0, 0, 0)
            .unwrap();
        b.hset("h", b"text", b"abc", 0, 0, 0).unwrap();
        b.cache_hset("c", b"text", b"abc").unwrap();
        b.cache_put(b"s", &[1; 100], 0, 0).unwrap();
    });
    refused(&s, not_numeric, |b| {
        b.hincrby("h", b"max", 1, 0, 0, 0).map(|_| ())
    });
    refused(&s, not_numeric, |b| {
        b.hincrby("h", b"text", 1, 0, 0, 0).map(|_| ())
    });
    refused(&s, not_numeric, |b| {
        b.cache_hincrby("c", b"text", 1).map(|_| ())
    });
    refused(&s, not_numeric, |b| {
        b.cache_hincrbyfloat("c", b"text", 1.5).map(|_| ())
    });
    refused(
        &s,
        |e| matches!(e, StorageError::TooLarge),
        |b| b.cache_append(b"s", &vec![0; 8 << 20], 0),
    );
    refused(
        &s,
        |e| matches!(e, StorageError::NotFound),
        |b| b.cache_persist(b"s", 0),
    );
}

/// A table whose members all expired may be taken over by another type; the takeover wipes
/// the old members, but only once nothing can refuse the write.
#[test]
fn a_dead_table_of_another_type_is_wiped_only_by_a_write_that_succeeds() {
    let d = TempDir::new("at");
    let s = open(&d);
    with_batch(&s, |b| {
        for i in 0..300u32 {
            b.sadd("t", &i.to_be_bytes(), 1, 0, 0).unwrap();
        }
    });
    let now = 5 * SEC;
    refused(&s, mismatch, |b| {
        b.hincrby("t", b"f", 1, 0, 2, now).map(|_| ())
    });
    refused(&s, mismatch, |b| {
        b.zadd("t", b"f", (1, ZaddMode::Set), 0, 2, now).map(|_| ())
    });
    with_batch(&s, |b| {
        assert_eq!(b.hincrby("t", b"f", 5, 0, 0, now).unwrap().1, 5);
    });
    // The statistics are those of a store that only ever held the new field.
    let d2 = TempDir::new("at");
    let fresh = open(&d2);
    with_batch(&fresh, |b| {
        b.hincrby("t", b"f", 5, 0, 0, now).unwrap();
    });
    assert_eq!(s.map_usage(), fresh.map_usage());
    let mut b = s.batch();
    let st = b.table_stat("t", now).unwrap();
    assert_eq!((st.kind, st.usage.count), (TableType::Hash, 1));
    assert_eq!(b.totals().unwrap(), fresh.batch().totals().unwrap());
    assert!(b.sismember("t", &0u32.to_be_bytes(), now).is_err());
    drop(b);
    // Nothing of the old set is left, index entries included: purging finds nothing.
    let mut b = s.batch();
    assert_eq!(b.purge_expired(now, 1000).unwrap(), 0);
    b.commit().unwrap();
}

#[test]
fn a_full_store_refuses_without_removing_the_expired_record() {
    let d = TempDir::new("at");
    let s = Store::open(&options(d.path(), 1 << 20, 1 << 20)).unwrap();
    with_batch(&s, |b| {
        b.hset("h", b"f", b"small", 1, 0, 0).unwrap();
        b.put(b"k", b"small", 1, 0, 0).unwrap();
        b.sadd("dead", b"m", 1, 0, 0).unwrap();
        b.cache_put(b"c", b"small", 1, 0).unwrap();
    });
    // Fill both to the last few bytes.
    let mut i = 0u32;
    for size in [1000, 100, 10, 1] {
        for cache in [false, true] {
            loop {
                i += 1;
                let mut b = s.batch();
                let r = match cache {
                    false => b
                        .put(&i.to_be_bytes(), &vec![b'v'; size], 0, 0, 0)
                        .map(|_| ()),
                    true => b.cache_put(&i.to_be_bytes(), &vec![b'v'; size], 0, 0),
                };
                b.commit().unwrap();
                if r.is_err() {
                    break;
                }
            }
        }
    }
    let v = vec![b'v'; 1000];
    let now = 5 * SEC;
    refused(&s, full, |b| b.hset("h", b"f", &v, 0, 0, now).map(|_| ()));
    refused(&s, full, |b| b.put(b"k", &v, 0, 0, now).map(|_| ()));
    refused(&s, full, |b| {
        b.hset("dead", b"f", &v, 0, 0, now).map(|_| ())
    });
    refused(&s, full, |b| b.cache_put(b"c", &v, 0, now));
    refused(&s, full, |b| b.cache_hset("t", b"f", &v));
}

/// An LMDB failure after a request's first change (simulated: an I/O error once its changes
/// are made). Nested: that request alone is undone. `write_map`: the pass is poisoned, every
/// later call fails at once, and the commit fails and writes nothing.
#[test]
fn an_lmdb_failure_inside_a_request() {
    for cache_side in [false, true] {
        let d = TempDir::new("at");
        let s = open(&d);
        with_batch(&s, |b| b.put(b"old", b"1", 0, 0, 0).unwrap());
        let before = dump(&s);
        let mut b = s.batch();
        b.put(b"k1", b"v", 0, 0, 0).unwrap();
        b.cache_put(b"c1", b"v", 0, 0).unwrap();
        s.fail_next_apply
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let r = if cache_side {
            b.cache_hset("c", b"f", b"v")
        } else {
            b.hset("h", b"f", b"v", 0, 0, 0).map(|_| ())
        };
        assert!(matches!(r, Err(StorageError::Lmdb(_))), "{r:?}");
        if WRITE_MAP {
            let bad = |r: Result<()>| {
                assert!(
                    matches!(r, Err(StorageError::Lmdb(lmdb::Error::BadTxn))),
                    "{r:?}"
                )
            };
            bad(b.put(b"k2", b"v", 0, 0, 0).map(|_| ()));
            bad(b.cache_put(b"c2", b"v", 0, 0));
            bad(b.get(b"old", 0).map(|_| ()));
            bad(b.purge_expired(0, 10).map(|_| ()));
            assert!(b.has_writes());
            assert!(b.commit().is_err());
            assert!(dump(&s) == before, "a poisoned pass wrote something");
        } else {
            b.put(b"k2", b"v", 0, 0, 0).unwrap();
            b.commit().unwrap();
            let mut b = s.batch();
            assert_eq!(b.get(b"k2", 0).unwrap().value, b"v");
            assert_eq!(b.cache_get(b"c1", 0).unwrap(), b"v");
            assert!(b.hget("h", b"f", 0).is_err());
            assert!(b.cache_hget("c", b"f").is_err());
        }
        // The next pass works as usual.
        with_batch(&s, |b| b.put(b"k3", b"v", 0, 0, 0).unwrap());
        let mut b = s.batch();
        assert_eq!(b.get(b"k3", 0).unwrap().value, b"v");
        assert_eq!(b.get(b"k1", 0).is_ok(), !WRITE_MAP);
        assert_eq!(b.totals().unwrap().kv.count, if WRITE_MAP { 2 } else { 4 });
    }
}
