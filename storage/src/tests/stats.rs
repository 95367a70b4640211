//! Statistics (kv-api §7) and purging.

use super::*;

fn u(count: u64, size: u64, capacity: u64) -> Usage {
    Usage {
        count,
        size,
        capacity,
    }
}

#[test]
fn stat_examples_of_the_spec() {
    let d = TempDir::new("st");
    let s = open(&d);
    let mut b = s.batch();
    b.put(b"k1", b"v1", 0, 0, 0).unwrap();
    b.hset("h1", b"f1", b"10", 0, 0, 0).unwrap();
    b.sadd("s1", b"m1", 0, 0, 0).unwrap();
    b.zadd("z1", b"m1", (60, ZaddMode::Set), 0, 0, 0).unwrap();
    b.commit().unwrap();
    let mut b = s.batch();
    assert_eq!(
        b.totals().unwrap(),
        Totals {
            kv: u(1, 4, 1024),
            hash: u(1, 4, 1024)
        }
    );
    assert_eq!(
        b.table_stat("h1", 0).unwrap(),
        TableStat {
            name: "h1".into(),
            kind: TableType::Hash,
            usage: u(1, 4, 1024)
        }
    );
    assert_eq!(
        b.all_tables(0).unwrap(),
        vec![
            TableStat {
                name: "h1".into(),
                kind: TableType::Hash,
                usage: u(1, 4, 1024)
            },
            TableStat {
                name: "s1".into(),
                kind: TableType::Set,
                usage: u(1, 0, 0)
            },
            TableStat {
                name: "z1".into(),
                kind: TableType::SortedSet,
                usage: u(1, 0, 0)
            },
        ]
    );
    assert!(matches!(
        b.table_stat("nope", 0),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        b.table_stat("no pe", 0),
        Err(StorageError::Invalid(_))
    ));
}

#[test]
fn statistics_stay_exact() {
    let d = TempDir::new("st");
    let s = open(&d);
    let mut b = s.batch();
    b.put(b"a", &[0; 1023], 0, 0, 0).unwrap(); // 1024 bytes: 1 KiB
    b.put(b"b", &[0; 1024], 0, 0, 0).unwrap(); // 1025: 2 KiB
    assert_eq!(b.totals().unwrap().kv, u(2, 2049, 3072));
    b.put(b"a", b"x", 0, 0, 0).unwrap();
    assert_eq!(b.totals().unwrap().kv, u(2, 1027, 3072));
    b.del(b"b", 0, 0).unwrap();
    assert_eq!(b.totals().unwrap().kv, u(1, 2, 1024));
    b.hset("h", b"f", b"1234", 0, 0, 0).unwrap();
    b.hset("g", b"ff", b"1", 0, 0, 0).unwrap();
    b.hincrby("h", b"f", 1, 0, 0, 0).unwrap();
    assert_eq!(b.totals().unwrap().hash, u(2, 8, 2048));
    b.hincrby("h", b"f", 10_000, 0, 0, 0).unwrap(); // "11235"
    assert_eq!(b.table_stat("h", 0).unwrap().usage, u(1, 6, 1024));
    b.hdel("g", b"ff", 0, 0).unwrap();
    assert_eq!(b.totals().unwrap().hash, u(1, 6, 1024));
    let long = vec![b'L'; 1000];
    b.hset("h", &long, b"v", 0, 0, 0).unwrap();
    assert_eq!(b.table_stat("h", 0).unwrap().usage, u(2, 1007, 2048));
    b.hdel("h", &long, 0, 0).unwrap();
    b.hdel("h", b"f", 0, 0).unwrap();
    assert_eq!(b.totals().unwrap().hash, Usage::default());
    b.commit().unwrap();
}

#[test]
fn purge_in_bounded_batches_keeps_stats_exact() {
    let d = TempDir::new("st");
    let s = open(&d);
    with_batch(&s, |b| {
        for i in 0..10u8 {
            b.put(&[b'k', i], b"vv", 1 + (i as u32 % 3), 0, 0).unwrap();
            b.hset("h", &[b'f', i], b"vvv", 1 + (i as u32 % 2), 0, 0)
                .unwrap();
            b.sadd("s", &[b'm', i], 1, 0, 0).unwrap();
            b.zadd("z", &[b'm', i], (i as i64, ZaddMode::Set), 1, 0, 0)
                .unwrap();
        }
        b.put(b"keep", b"v", 0, 0, 0).unwrap();
        b.hset("h", b"keep", b"v", 0, 0, 0).unwrap();
        b.cache_put(b"c1", b"v", 1, 0).unwrap();
        b.cache_put(b"c2", b"v", 5, 0).unwrap();
    });
    let used_before = s.map_usage().0;
    // 40 persistent records and c1 are due at 3000; purge 12 at a time.
    let mut total = 0;
    let mut rounds = 0;
    loop {
        let n = with_batch(&s, |b| b.purge_expired(3_000, 12).unwrap());
        assert!(n <= 12);
        total += n;
        rounds += 1;
        if n == 0 {
            break;
        }
        // Counts never go below what lives, and never above what is stored.
        let t = with_batch(&s, |b| b.totals().unwrap());
        assert!(t.kv.count >= 1 && t.kv.count <= 11);
    }
    assert_eq!(total, 41);
    assert_eq!(rounds, 5);
    let mut b = s.batch();
    assert_eq!(
        b.totals().unwrap(),
        Totals {
            kv: u(1, 5, 1024),
            hash: u(1, 5, 1024)
        }
    );
    assert_eq!(b.all_tables(3_000).unwrap().len(), 1);
    assert_eq!(b.table_stat("h", 3_000).unwrap().usage, u(1, 5, 1024));
    assert!(matches!(b.cache_get(b"c1", 0), Err(StorageError::NotFound)));
    assert_eq!(b.cache_get(b"c2", 3_000).unwrap(), b"v");
    assert!(s.map_usage().0 < used_before);
    drop(b);
    // Nothing due: no write transaction at all.
    let mut b = s.batch();
    assert_eq!(b.purge_expired(3_000, 100).unwrap(), 0);
    assert!(!b.has_writes());
}

#[test]
fn purging_everything_returns_the_charged_bytes_to_zero() {
    let d = TempDir::new("st");
    let s = open(&d);
    let long = vec![b'x'; 3000];
    with_batch(&s, |b| {
        b.put(&long, &long, 1, 0, 0).unwrap();
        b.put(b"k", b"v", 1, 0, 0).unwrap();
        b.hset("h", &long, b"v", 1, 0, 0).unwrap();
        b.sadd("s", &long, 1, 0, 0).unwrap();
        b.zadd("z", &long, (-3, ZaddMode::Set), 1, 0, 0).unwrap();
        b.zadd("z", b"m", (3, ZaddMode::Add), 1, 0, 0).unwrap();
    });
    assert!(s.map_usage().0 > 0);
    assert_eq!(with_batch(&s, |b| b.purge_expired(1_000, 100).unwrap()), 6);
    assert_eq!(s.map_usage().0, 0);
    let mut b = s.batch();
    assert_eq!(b.totals().unwrap(), Totals::default());
    assert!(b.all_tables(1_000).unwrap().is_empty());
    // And the same with deletes instead of expiry.
    b.put(&long, &long, 0, 0, 0).unwrap();
    b.zadd("z", &long, (1, ZaddMode::Set), 5, 0, 0).unwrap();
    b.hset("h", b"f", &long, 0, 0, 0).unwrap();
    b.del(&long, 0, 0).unwrap();
    b.zrem("z", &long, 0, 0).unwrap();
    b.hdel("h", b"f", 0, 0).unwrap();
    b.commit().unwrap();
    assert_eq!(s.map_usage().0, 0);
}
