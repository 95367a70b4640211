//! Listings: order, bucket filter, paging, totals, values, expiry, long keys.

use super::*;

fn qv(offset: u64, size: u32) -> ListQuery {
    ListQuery {
        with_values: true,
        ..q(offset, size)
    }
}

#[test]
fn keys_matches_the_spec_example() {
    let d = TempDir::new("ls");
    let s = open(&d);
    let mut b = s.batch();
    b.put(b"k2", b"v2", 0, 0, 0).unwrap();
    b.put(b"k1", b"v1", 0, 0, 0).unwrap();
    b.hset("k0", b"f", b"x", 0, 0, 0).unwrap();
    let l = b.keys(&q(0, 10), 0).unwrap();
    assert_eq!(
        l,
        Listing {
            items: vec![
                ListItem {
                    key: b"k1".to_vec(),
                    val: None,
                    ver: 1
                },
                ListItem {
                    key: b"k2".to_vec(),
                    val: None,
                    ver: 1
                },
            ],
            total: 0,
        }
    );
    let l = b
        .keys(
            &ListQuery {
                count_total: true,
                ..qv(1, 10)
            },
            0,
        )
        .unwrap();
    assert_eq!(l.total, 2);
    assert_eq!(
        l.items,
        vec![ListItem {
            key: b"k2".to_vec(),
            val: Some(ListValue::Bytes(b"v2".to_vec())),
            ver: 1
        }]
    );
}

#[test]
fn paging_bucket_filter_and_totals() {
    let d = TempDir::new("ls");
    let s = open(&d);
    let mut keys: Vec<Vec<u8>> = (0..300u32)
        .map(|i| format!("key{:04}", i * 7919 % 10000).into_bytes())
        .collect();
    keys.sort();
    with_batch(&s, |b| {
        for k in keys.iter().rev() {
            b.put(k, k, 0, 0, 0).unwrap();
            b.hset("h", k, k, 0, 0, 0).unwrap();
            b.sadd("s", k, 0, 0, 0).unwrap();
        }
    });
    let mut b = s.batch();
    let (start, end) = (100, 700);
    let want: Vec<Vec<u8>> = keys
        .iter()
        .filter(|k| (start..end).contains(&bucket(k)))
        .cloned()
        .collect();
    assert!(want.len() > 50 && want.len() < 300, "{}", want.len());
    for (offset, size) in [
        (0, 10),
        (7, 33),
        (0, 1000),
        (want.len() as u64 - 3, 10),
        (500, 10),
        (5, 0),
    ] {
        let q = ListQuery {
            start,
            end,
            count_total: true,
            ..q(offset, size)
        };
        let exp: Vec<Vec<u8>> = want
            .iter()
            .skip(offset as usize)
            .take(size as usize)
            .cloned()
            .collect();
        for l in [
            b.keys(&q, 0).unwrap(),
            b.hkeys("h", &q, 0).unwrap(),
            b.smembers("s", &q, 0).unwrap(),
        ] {
            assert_eq!(keys_of(&l), exp);
            assert_eq!(l.total, want.len() as u64);
        }
        // Without `count_total` the total is 0.
        assert_eq!(
            b.keys(
                &ListQuery {
                    count_total: false,
                    ..q
                },
                0
            )
            .unwrap()
            .total,
            0
        );
    }
    // Totals without filter come from the counters.
    let l = b
        .smembers(
            "s",
            &ListQuery {
                count_total: true,
                ..q(299, 5)
            },
            0,
        )
        .unwrap();
    assert_eq!((l.items.len(), l.total), (1, 300));
    // Values: kv and hash give the value, sets never.
    let l = b.hkeys("h", &qv(0, 1), 0).unwrap();
    assert_eq!(l.items[0].val, Some(ListValue::Bytes(keys[0].clone())));
    assert_eq!(b.smembers("s", &qv(0, 1), 0).unwrap().items[0].val, None);
    assert_eq!(
        b.keys(&qv(0, 1), 0).unwrap().items[0].val,
        Some(ListValue::Bytes(keys[0].clone()))
    );
    assert!(matches!(
        b.hkeys("nope", &q(0, 1), 0),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        b.smembers("nope", &q(0, 1), 0),
        Err(StorageError::NotFound)
    ));
}

#[test]
fn expired_records_are_skipped_and_not_counted() {
    let d = TempDir::new("ls");
    let s = open(&d);
    let mut b = s.batch();
    for i in 0..10u8 {
        let ttl = if i % 2 == 0 { 1 } else { 0 };
        b.put(&[b'k', i], b"v", ttl, 0, 0).unwrap();
        b.hset("h", &[b'k', i], b"v", ttl, 0, 0).unwrap();
        b.zadd("z", &[b'k', i], (i as i64, ZaddMode::Set), ttl, 0, 0)
            .unwrap();
    }
    let all = ListQuery {
        count_total: true,
        ..q(0, 100)
    };
    assert_eq!(b.keys(&all, 999).unwrap().total, 10);
    for l in [
        b.keys(&all, 1_000).unwrap(),
        b.hkeys("h", &all, 1_000).unwrap(),
        b.zrange_by_rank("z", &all, 1_000).unwrap(),
    ] {
        assert_eq!(l.total, 5);
        assert_eq!(
            keys_of(&l),
            (0..10u8)
                .filter(|i| i % 2 == 1)
                .map(|i| vec![b'k', i])
                .collect::<Vec<_>>()
        );
    }
    let l = b.zrange_by_score("z", 2, 6, &all, 1_000).unwrap();
    assert_eq!(keys_of(&l), vec![vec![b'k', 3], vec![b'k', 5]]);
    assert_eq!(l.total, 2);
    b.commit().unwrap();
}

#[test]
fn zranges_with_negative_scores_and_ties() {
    let d = TempDir::new("ls");
    let s = open(&d);
    let mut b = s.batch();
    let members: [(&[u8], i64); 7] = [
        (b"m1", 60),
        (b"m2", 30),
        (b"neg", -5),
        (b"min", i64::MIN),
        (b"max", i64::MAX),
        (b"b", 30),
        (b"a", 30),
    ];
    for (m, sc) in members {
        b.zadd("z1", m, (sc, ZaddMode::Set), 0, 0, 0).unwrap();
    }
    let order: Vec<Vec<u8>> = [&b"min"[..], b"neg", b"a", b"b", b"m2", b"m1", b"max"]
        .iter()
        .map(|k| k.to_vec())
        .collect();
    let l = b.zrange_by_rank("z1", &qv(0, 100), 0).unwrap();
    assert_eq!(keys_of(&l), order);
    assert_eq!(l.items[0].val, Some(ListValue::Score(i64::MIN)));
    assert_eq!(l.items[1].val, Some(ListValue::Score(-5)));
    // The bucket filter does not apply to sorted sets.
    let l = b
        .zrange_by_rank(
            "z1",
            &ListQuery {
                start: 0,
                end: 1,
                ..q(2, 3)
            },
            0,
        )
        .unwrap();
    assert_eq!(keys_of(&l), order[2..5].to_vec());
    let l = b
        .zrange_by_score(
            "z1",
            -5,
            30,
            &ListQuery {
                count_total: true,
                ..qv(1, 2)
            },
            0,
        )
        .unwrap();
    assert_eq!(keys_of(&l), order[2..4].to_vec());
    assert_eq!(l.total, 4);
    let l = b
        .zrange_by_score("z1", i64::MIN, i64::MAX, &q(0, 100), 0)
        .unwrap();
    assert_eq!(keys_of(&l), order);
    let l = b
        .zrange_by_score(
            "z1",
            31,
            59,
            &ListQuery {
                count_total: true,
                ..q(0, 100)
            },
            0,
        )
        .unwrap();
    assert_eq!((l.items.len(), l.total), (0, 0));
    let l = b
        .zrange_by_score("z1", i64::MAX, i64::MAX, &q(0, 100), 0)
        .unwrap();
    assert_eq!(keys_of(&l), vec![b"max".to_vec()]);
    // Spec example: m1 60, m2 30. (One batch at a time per thread: LMDB's write lock is not
    // recursive.)
    drop(b);
    let mut b2 = s.batch();
    b2.zadd("ex", b"m1", (60, ZaddMode::Set), 0, 0, 0).unwrap();
    b2.zadd("ex", b"m2", (30, ZaddMode::Set), 0, 0, 0).unwrap();
    let l = b2.zrange_by_score("ex", 0, 50, &qv(0, 10), 0).unwrap();
    assert_eq!(
        l.items,
        vec![ListItem {
            key: b"m2".to_vec(),
            val: Some(ListValue::Score(30)),
            ver: 1
        }]
    );
}

/// Long keys that share their first 400 bytes are stored in hash order; listings must still
/// come out bytewise, with paging, filters and values, across kv, hash, set and zset.
#[test]
fn long_keys_sharing_a_prefix_list_in_bytewise_order() {
    let d = TempDir::new("ls");
    let s = open(&d);
    let mut rng = Rng::new(7);
    let prefix = vec![b'p'; 420];
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for i in 0..60 {
        let mut k = prefix.clone();
        let extra = rng.below(40) as usize;
        for _ in 0..extra {
            k.push(b'a' + rng.below(3) as u8);
        }
        if i % 10 == 0 {
            k.truncate(400 + i / 10); // around the threshold
        }
        keys.push(k);
    }
    keys.push(vec![b'p'; 399]);
    keys.push(vec![b'q'; 500]);
    keys.push(vec![b'o'; 65536]);
    let mut short_after = prefix[..400].to_vec();
    short_after[399] = b'q';
    keys.push(short_after);
    keys.sort();
    keys.dedup();
    with_batch(&s, |b| {
        for (i, k) in keys.iter().enumerate() {
            b.put(k, &i.to_le_bytes(), 0, 0, 0).unwrap();
            b.hset("h", k, &i.to_le_bytes(), 0, 0, 0).unwrap();
            b.sadd("s", k, 0, 0, 0).unwrap();
            b.zadd("z", k, ((i % 3) as i64, ZaddMode::Set), 0, 0, 0)
                .unwrap();
        }
    });
    let mut zorder: Vec<(i64, Vec<u8>)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| ((i % 3) as i64, k.clone()))
        .collect();
    zorder.sort();
    let zkeys: Vec<Vec<u8>> = zorder.iter().map(|(_, k)| k.clone()).collect();
    let mut b = s.batch();
    for (offset, size) in [(0u64, 1000u32), (3, 7), (10, 1), (25, 30), (59, 10)] {
        let want: Vec<Vec<u8>> = keys
            .iter()
            .skip(offset as usize)
            .take(size as usize)
            .cloned()
            .collect();
        let q = ListQuery {
            count_total: true,
            ..qv(offset, size)
        };
        let l = b.keys(&q, 0).unwrap();
        assert_eq!(keys_of(&l), want);
        assert_eq!(l.total, keys.len() as u64);
        for it in &l.items {
            let i = keys.iter().position(|k| *k == it.key).unwrap();
            assert_eq!(it.val, Some(ListValue::Bytes(i.to_le_bytes().to_vec())));
        }
        assert_eq!(keys_of(&b.hkeys("h", &q, 0).unwrap()), want);
        assert_eq!(keys_of(&b.smembers("s", &q, 0).unwrap()), want);
        let zwant: Vec<Vec<u8>> = zkeys
            .iter()
            .skip(offset as usize)
            .take(size as usize)
            .cloned()
            .collect();
        assert_eq!(keys_of(&b.zrange_by_rank("z", &q, 0).unwrap()), zwant);
        let bq = ListQuery {
            start: 0,
            end: 512,
            ..q
        };
        let bwant: Vec<Vec<u8>> = keys
            .iter()
            .filter(|k| bucket(k) < 512)
            .skip(offset as usize)
            .take(size as usize)
            .cloned()
            .collect();
        assert_eq!(keys_of(&b.keys(&bq, 0).unwrap()), bwant);
    }
    let l = b.zrange_by_score("z", 1, 1, &q(0, 1000), 0).unwrap();
    let want: Vec<Vec<u8>> = zorder
        .iter()
        .filter(|(s, _)| *s == 1)
        .map(|(_, k)| k.clone())
        .collect();
    assert_eq!(keys_of(&l), want);
}
