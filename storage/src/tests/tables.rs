//! Hash, set and sorted-set tables: type binding, existence, increments, zadd modes, limit.

use super::*;

#[test]
fn hash_fields() {
    let d = TempDir::new("tb");
    let s = open(&d);
    let mut b = s.batch();
    assert!(matches!(
        b.hget("h1", b"f1", 0),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        b.hdel("h1", b"f1", 0, 0),
        Err(StorageError::NotFound)
    ));
    assert_eq!(b.hset("h1", b"f1", b"10", 0, 0, 0).unwrap().ver, 1);
    assert_eq!(
        b.hget("h1", b"f1", 0).unwrap(),
        Record {
            ver: 1,
            value: b"10".to_vec()
        }
    );
    assert_eq!(b.hexist("h1", b"f1", 0).unwrap(), 1);
    assert!(matches!(
        b.hget("h1", b"f2", 0),
        Err(StorageError::NotFound)
    ));
    assert_eq!(b.hset("h1", b"f1", b"11", 0, 1, 0).unwrap().ver, 2);
    assert!(matches!(
        b.hset("h1", b"f1", b"12", 0, 1, 0),
        Err(StorageError::VersionMismatch { current: 2 })
    ));
    assert!(matches!(
        b.hdel("h1", b"f1", 3, 0),
        Err(StorageError::VersionMismatch { current: 2 })
    ));
    assert_eq!(b.hdel("h1", b"f1", 2, 0).unwrap().ver, 2);
    // The last member is gone: so is the table.
    assert!(matches!(
        b.hget("h1", b"f1", 0),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(b.table_stat("h1", 0), Err(StorageError::NotFound)));
    assert!(matches!(
        b.hkeys("h1", &q(0, 10), 0),
        Err(StorageError::NotFound)
    ));
    assert_eq!(b.sadd("h1", b"m", 0, 0, 0).unwrap().ver, 1);
    assert_eq!(b.table_stat("h1", 0).unwrap().kind, TableType::Set);
    b.commit().unwrap();
}

#[test]
fn tables_are_bound_to_one_type() {
    let d = TempDir::new("tb");
    let s = open(&d);
    let mut b = s.batch();
    b.sadd("s1", b"m", 0, 0, 0).unwrap();
    let wrong = |r: Result<()>| assert!(matches!(r, Err(StorageError::WrongType)));
    wrong(b.hset("s1", b"m", b"v", 0, 0, 0).map(|_| ()));
    wrong(b.hincrby("s1", b"m", 1, 0, 0, 0).map(|_| ()));
    wrong(b.zadd("s1", b"m", (1, ZaddMode::Set), 0, 0, 0).map(|_| ()));
    wrong(b.hget("s1", b"m", 0).map(|_| ()));
    wrong(b.hexist("s1", b"m", 0).map(|_| ()));
    wrong(b.hdel("s1", b"m", 0, 0).map(|_| ()));
    wrong(b.zscore("s1", b"m", 0).map(|_| ()));
    wrong(b.zismember("s1", b"m", 0).map(|_| ()));
    wrong(b.zrem("s1", b"m", 0, 0).map(|_| ()));
    wrong(b.hkeys("s1", &q(0, 10), 0).map(|_| ()));
    wrong(b.zrange_by_rank("s1", &q(0, 10), 0).map(|_| ()));
    wrong(b.zrange_by_score("s1", 0, 1, &q(0, 10), 0).map(|_| ()));
    // Nothing changed.
    assert_eq!(b.sismember("s1", b"m", 0).unwrap(), 1);
    let st = b.table_stat("s1", 0).unwrap();
    assert_eq!((st.kind, st.usage.count), (TableType::Set, 1));
    assert_eq!(b.totals().unwrap().hash, Usage::default());
    // A kv key and a table of the same name coexist.
    b.put(b"s1", b"kv", 0, 0, 0).unwrap();
    assert_eq!(b.get(b"s1", 0).unwrap().value, b"kv");
    assert_eq!(b.sismember("s1", b"m", 0).unwrap(), 1);
    b.commit().unwrap();
}

#[test]
fn a_table_whose_members_expired_is_gone_at_once() {
    let d = TempDir::new("tb");
    let s = open(&d);
    let mut b = s.batch();
    b.sadd("t", b"a", 1, 0, 0).unwrap();
    b.sadd("t", b"b", 2, 0, 0).unwrap();
    b.zadd("z", b"a", (5, ZaddMode::Set), 1, 0, 0).unwrap();
    assert_eq!(b.all_tables(999).unwrap().len(), 2);
    // At 1000 `a` expired, `b` still lives.
    assert!(matches!(
        b.sismember("t", b"a", 1_000),
        Err(StorageError::NotFound)
    ));
    assert_eq!(b.sismember("t", b"b", 1_000).unwrap(), 1);
    assert!(matches!(
        b.hset("t", b"x", b"v", 0, 0, 1_000),
        Err(StorageError::WrongType)
    ));
    assert_eq!(
        keys_of(&b.smembers("t", &q(0, 10), 1_000).unwrap()),
        vec![b"b".to_vec()]
    );
    // At 2000 everything expired: no table, and the name takes another type.
    assert!(matches!(
        b.smembers("t", &q(0, 10), 2_000),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        b.table_stat("t", 2_000),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        b.zrange_by_rank("z", &q(0, 10), 2_000),
        Err(StorageError::NotFound)
    ));
    assert!(b.all_tables(2_000).unwrap().is_empty());
    assert!(matches!(
        b.hget("t", b"a", 2_000),
        Err(StorageError::NotFound)
    ));
    assert_eq!(b.hset("t", b"a", b"v", 0, 0, 2_000).unwrap().ver, 1);
    let st = b.table_stat("t", 2_000).unwrap();
    assert_eq!(st.kind, TableType::Hash);
    assert_eq!(
        st.usage,
        Usage {
            count: 1,
            size: 2,
            capacity: 1024
        }
    );
    assert_eq!(
        b.zadd("z", b"a", (1, ZaddMode::Add), 0, 0, 2_000).unwrap(),
        (Written { ver: 1 }, 1)
    );
    b.commit().unwrap();
    // The set's remains went with the type change; purge finds nothing of it.
    let mut b = s.batch();
    assert_eq!(b.purge_expired(2_000, 100).unwrap(), 0);
    assert!(matches!(
        b.smembers("t", &q(0, 10), 2_000),
        Err(StorageError::WrongType)
    ));
    assert_eq!(b.all_tables(2_000).unwrap().len(), 2);
}

#[test]
fn hincrby() {
    let d = TempDir::new("tb");
    let s = open(&d);
    let mut b = s.batch();
    assert_eq!(b.hset("h1", b"f1", b"10", 0, 0, 0).unwrap().ver, 1);
    assert_eq!(
        b.hincrby("h1", b"f1", 5, 0, 0, 0).unwrap(),
        (Written { ver: 2 }, 15)
    );
    assert_eq!(
        b.hget("h1", b"f1", 0).unwrap(),
        Record {
            ver: 2,
            value: b"15".to_vec()
        }
    );
    assert_eq!(
        b.hincrby("h1", b"new", -7, 0, 0, 0).unwrap(),
        (Written { ver: 1 }, -7)
    );
    assert_eq!(
        b.hincrby("h1", b"new", 7, 0, 1, 0).unwrap(),
        (Written { ver: 2 }, 0)
    );
    assert!(matches!(
        b.hincrby("h1", b"new", 1, 0, 1, 0),
        Err(StorageError::VersionMismatch { current: 2 })
    ));
    for bad in [
        &b"abc"[..],
        b"1.5",
        b"-",
        b"+1",
        b" 1",
        b"99999999999999999999",
    ] {
        b.hset("h1", b"bad", bad, 0, 0, 0).unwrap();
        assert!(matches!(
            b.hincrby("h1", b"bad", 1, 0, 0, 0),
            Err(StorageError::NotNumeric)
        ));
    }
    b.hset("h1", b"max", i64::MAX.to_string().as_bytes(), 0, 0, 0)
        .unwrap();
    assert!(matches!(
        b.hincrby("h1", b"max", 1, 0, 0, 0),
        Err(StorageError::NotNumeric)
    ));
    assert_eq!(b.hget("h1", b"max", 0).unwrap().ver, 1);
    b.hset("h1", b"min", b"-9223372036854775808", 0, 0, 0)
        .unwrap();
    assert!(matches!(
        b.hincrby("h1", b"min", -1, 0, 0, 0),
        Err(StorageError::NotNumeric)
    ));
    // ttl as for hset: the field expires.
    b.hincrby("h1", b"t", 1, 10, 0, 0).unwrap();
    assert!(matches!(
        b.hget("h1", b"t", 10_000),
        Err(StorageError::NotFound)
    ));
    assert_eq!(
        b.hincrby("h1", b"t", 1, 0, 0, 10_000).unwrap(),
        (Written { ver: 1 }, 1)
    );
    b.commit().unwrap();
}

#[test]
fn zadd_modes() {
    let d = TempDir::new("tb");
    let s = open(&d);
    let mut b = s.batch();
    assert_eq!(
        b.zadd("z1", b"m1", (60, ZaddMode::Set), 0, 0, 0).unwrap(),
        (Written { ver: 1 }, 60)
    );
    // Same score: a no-op, version unchanged.
    assert_eq!(
        b.zadd("z1", b"m1", (60, ZaddMode::Set), 0, 0, 0).unwrap(),
        (Written { ver: 1 }, 60)
    );
    // The version check comes before the no-op.
    assert!(matches!(
        b.zadd("z1", b"m1", (60, ZaddMode::Set), 0, 9, 0),
        Err(StorageError::VersionMismatch { current: 1 })
    ));
    assert_eq!(
        b.zadd("z1", b"m1", (5, ZaddMode::Add), 0, 1, 0).unwrap(),
        (Written { ver: 2 }, 65)
    );
    assert_eq!(
        b.zadd("z1", b"m1", (10, ZaddMode::Subtract), 0, 0, 0)
            .unwrap(),
        (Written { ver: 3 }, 55)
    );
    // Add 0 is a write.
    assert_eq!(
        b.zadd("z1", b"m1", (0, ZaddMode::Add), 0, 0, 0).unwrap(),
        (Written { ver: 4 }, 55)
    );
    assert_eq!(
        b.zadd("z1", b"m2", (5, ZaddMode::Subtract), 0, 0, 0)
            .unwrap(),
        (Written { ver: 1 }, -5)
    );
    assert_eq!(
        b.zadd("z1", b"m3", (5, ZaddMode::Add), 0, 0, 0).unwrap(),
        (Written { ver: 1 }, 5)
    );
    assert_eq!(b.zscore("z1", b"m1", 0).unwrap(), (4, 55));
    assert_eq!(b.zscore("z1", b"m2", 0).unwrap(), (1, -5));
    assert_eq!(b.zismember("z1", b"m3", 0).unwrap(), 1);
    b.zadd("z1", b"big", (i64::MAX, ZaddMode::Set), 0, 0, 0)
        .unwrap();
    assert!(matches!(
        b.zadd("z1", b"big", (1, ZaddMode::Add), 0, 0, 0),
        Err(StorageError::NotNumeric)
    ));
    b.zadd("z1", b"small", (i64::MIN, ZaddMode::Set), 0, 0, 0)
        .unwrap();
    assert!(matches!(
        b.zadd("z1", b"small", (1, ZaddMode::Subtract), 0, 0, 0),
        Err(StorageError::NotNumeric)
    ));
    assert!(matches!(
        b.zadd("z1", b"x", (i64::MIN, ZaddMode::Subtract), 0, 0, 0),
        Err(StorageError::NotNumeric)
    ));
    assert!(matches!(
        b.zscore("z1", b"x", 0),
        Err(StorageError::NotFound)
    ));
    // Score index follows the changes.
    let l = b.zrange_by_rank("z1", &q(0, 10), 0).unwrap();
    assert_eq!(
        keys_of(&l),
        [&b"small"[..], b"m2", b"m3", b"m1", b"big"].map(|k| k.to_vec())
    );
    assert_eq!(b.zrem("z1", b"m1", 4, 0).unwrap().ver, 4);
    assert!(matches!(
        b.zrem("z1", b"m1", 0, 0),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        b.zscore("z1", b"m1", 0),
        Err(StorageError::NotFound)
    ));
    let l = b.zrange_by_rank("z1", &q(0, 10), 0).unwrap();
    assert_eq!(l.items.len(), 4);
    b.commit().unwrap();
}

#[test]
fn zadd_noop_keeps_the_expiry_and_writes_replace_it() {
    let d = TempDir::new("tb");
    let s = open(&d);
    let mut b = s.batch();
    b.zadd("z", b"m", (1, ZaddMode::Set), 10, 0, 0).unwrap();
    assert_eq!(
        b.zadd("z", b"m", (1, ZaddMode::Set), 0, 0, 5_000)
            .unwrap()
            .0
            .ver,
        1
    );
    assert!(matches!(
        b.zscore("z", b"m", 10_000),
        Err(StorageError::NotFound)
    ));
    b.zadd("z", b"n", (1, ZaddMode::Set), 10, 0, 0).unwrap();
    assert_eq!(
        b.zadd("z", b"n", (2, ZaddMode::Set), 0, 0, 5_000)
            .unwrap()
            .0
            .ver,
        2
    );
    assert_eq!(b.zscore("z", b"n", 10_000).unwrap(), (2, 2));
    b.commit().unwrap();
}

#[test]
fn sets() {
    let d = TempDir::new("tb");
    let s = open(&d);
    let mut b = s.batch();
    assert_eq!(b.sadd("s1", b"m1", 0, 0, 0).unwrap().ver, 1);
    // Adding an existing member is a write.
    assert_eq!(b.sadd("s1", b"m1", 0, 0, 0).unwrap().ver, 2);
    assert_eq!(b.sadd("s1", b"m2", 0, 0, 0).unwrap().ver, 1);
    assert_eq!(b.sismember("s1", b"m1", 0).unwrap(), 2);
    assert!(matches!(
        b.sismember("s1", b"m3", 0),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        b.sismember("s2", b"m1", 0),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        b.srem("s1", b"m1", 1, 0),
        Err(StorageError::VersionMismatch { current: 2 })
    ));
    assert_eq!(b.srem("s1", b"m1", 2, 0).unwrap().ver, 2);
    assert_eq!(
        b.table_stat("s1", 0).unwrap().usage,
        Usage {
            count: 1,
            size: 0,
            capacity: 0
        }
    );
    let big = vec![b'm'; 65536];
    assert_eq!(b.sadd("s1", &big, 0, 0, 0).unwrap().ver, 1);
    assert_eq!(b.sismember("s1", &big, 0).unwrap(), 1);
    assert_eq!(b.srem("s1", &big, 0, 0).unwrap().ver, 1);
    assert!(matches!(
        b.sadd("bad name", b"m", 0, 0, 0),
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        b.sadd("", b"m", 0, 0, 0),
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        b.sadd(&"x".repeat(65), b"m", 0, 0, 0),
        Err(StorageError::Invalid(_))
    ));
    assert!(b.sadd(&"x".repeat(64), b"m", 0, 0, 0).is_ok());
    assert!(b.sadd("A-z", b"m", 0, 0, 0).is_err());
    assert!(b.sadd("Az09_:.", b"m", 0, 0, 0).is_ok());
    b.commit().unwrap();
}

#[test]
fn at_most_8192_tables() {
    let d = TempDir::new("tb");
    let s = open(&d);
    with_batch(&s, |b| {
        for i in 0..8191 {
            b.sadd(&format!("t{i}"), b"m", 0, 0, 0).unwrap();
        }
        // The last one expires at 1000.
        b.sadd("last", b"m", 1, 0, 0).unwrap();
    });
    let mut b = s.batch();
    assert!(matches!(
        b.sadd("one_more", b"m", 0, 0, 0),
        Err(StorageError::MapFull)
    ));
    assert!(matches!(
        b.hset("one_more", b"m", b"v", 0, 0, 0),
        Err(StorageError::MapFull)
    ));
    assert!(matches!(
        b.table_stat("one_more", 0),
        Err(StorageError::NotFound)
    ));
    // Existing tables still take members.
    assert_eq!(b.sadd("t5", b"n", 0, 0, 0).unwrap().ver, 1);
    // Once `last` expired, a new table fits although its remains are not purged yet.
    assert_eq!(b.sadd("one_more", b"m", 0, 0, 1_000).unwrap().ver, 1);
    assert!(matches!(
        b.sadd("two_more", b"m", 0, 0, 1_000),
        Err(StorageError::MapFull)
    ));
    // Reviving the expired table would make 8193.
    assert!(matches!(
        b.sadd("last", b"m", 0, 0, 1_000),
        Err(StorageError::MapFull)
    ));
    assert_eq!(b.srem("t0", b"m", 0, 1_000).unwrap().ver, 1);
    assert_eq!(b.sadd("two_more", b"m", 0, 0, 1_000).unwrap().ver, 1);
    b.commit().unwrap();
    assert_eq!(with_batch(&s, |b| b.all_tables(1_000).unwrap().len()), 8192);
}
