//! The volatile cache (kv-api §8).

use super::*;

#[test]
fn the_spec_example_table() {
    let d = TempDir::new("ca");
    let s = open(&d);
    let t0 = 1_000_000;
    let mut b = s.batch();
    b.cache_put(b"c1", b"hello", 60, t0).unwrap(); // 1
    assert_eq!(b.cache_get(b"c1", t0).unwrap(), b"hello"); // 2
    b.cache_exist(b"c1", t0).unwrap(); // 3
    assert_eq!(b.cache_ttl(b"c1", t0 + 400).unwrap(), Some(60)); // 4
    b.cache_append(b"c1", b"!", t0).unwrap(); // 5
    b.cache_expire(b"c1", 30, t0).unwrap(); // 6
    assert_eq!(b.cache_ttl(b"c1", t0).unwrap(), Some(30));
    b.cache_persist(b"c1", t0).unwrap(); // 7
    assert!(matches!(
        b.cache_persist(b"c1", t0),
        Err(StorageError::NotFound)
    )); // 8
    assert_eq!(b.cache_ttl(b"c1", t0).unwrap(), None); // 9
    assert_eq!(b.cache_get(b"c1", t0).unwrap(), b"hello!"); // 10
    b.cache_del(b"c1", t0).unwrap(); // 11
    assert!(matches!(
        b.cache_get(b"c1", t0),
        Err(StorageError::NotFound)
    )); // 12
    b.cache_hset("ch", b"f", b"1.5").unwrap(); // 13
    assert_eq!(b.cache_hincrbyfloat("ch", b"f", 0.25).unwrap(), 1.75); // 14
    assert_eq!(b.cache_hget("ch", b"f").unwrap(), b"1.75"); // 15
    assert_eq!(b.cache_hincrby("ch", b"n", 7).unwrap(), 7); // 16
    assert!(matches!(
        b.cache_hincrby("ch", b"f", 1),
        Err(StorageError::NotNumeric)
    )); // 17
    b.cache_hexist("ch", b"n").unwrap(); // 18
    b.cache_hdel("ch", b"n").unwrap(); // 19
    assert!(matches!(
        b.cache_hexist("ch", b"n"),
        Err(StorageError::NotFound)
    )); // 20
    b.commit().unwrap();
}

#[test]
fn expiry_ttl_and_persist() {
    let d = TempDir::new("ca");
    let s = open(&d);
    let mut b = s.batch();
    b.cache_put(b"k", b"v", 60, 0).unwrap();
    assert_eq!(b.cache_ttl(b"k", 30_600).unwrap(), Some(29));
    assert_eq!(b.cache_ttl(b"k", 30_500).unwrap(), Some(30));
    assert!(matches!(
        b.cache_get(b"k", 60_000),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        b.cache_exist(b"k", 60_000),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        b.cache_ttl(b"k", 60_000),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        b.cache_del(b"k", 60_000),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        b.cache_expire(b"k", 5, 60_000),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        b.cache_persist(b"k", 60_000),
        Err(StorageError::NotFound)
    ));
    // put with ttl 0 removes an expiry.
    b.cache_put(b"k", b"v", 10, 0).unwrap();
    b.cache_put(b"k", b"w", 0, 0).unwrap();
    assert_eq!(b.cache_ttl(b"k", 0).unwrap(), None);
    assert_eq!(b.cache_get(b"k", u64::MAX / 2).unwrap(), b"w");
    assert!(matches!(
        b.cache_persist(b"k", 0),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        b.cache_expire(b"k", 0, 0),
        Err(StorageError::Invalid(_))
    ));
    b.cache_expire(b"k", 1, 0).unwrap();
    assert!(matches!(
        b.cache_get(b"k", 1_000),
        Err(StorageError::NotFound)
    ));
    // Expired keys come back as new ones.
    b.cache_append(b"k", b"x", 1_000).unwrap();
    assert_eq!(b.cache_get(b"k", 1_000).unwrap(), b"x");
    assert_eq!(b.cache_ttl(b"k", 1_000).unwrap(), None);
    b.commit().unwrap();
}

#[test]
fn append() {
    let d = TempDir::new("ca");
    let s = open(&d);
    let mut b = s.batch();
    b.cache_append(b"a", b"12", 0).unwrap();
    b.cache_append(b"a", b"34", 0).unwrap();
    assert_eq!(b.cache_get(b"a", 0).unwrap(), b"1234");
    b.cache_expire(b"a", 10, 0).unwrap();
    b.cache_append(b"a", b"5", 0).unwrap();
    assert_eq!(
        b.cache_ttl(b"a", 0).unwrap(),
        Some(10),
        "append keeps the expiry"
    );
    let big = vec![b'x'; 8 * 1024 * 1024 - 5];
    b.cache_append(b"a", &big, 0).unwrap();
    assert!(matches!(
        b.cache_append(b"a", b"y", 0),
        Err(StorageError::TooLarge)
    ));
    assert_eq!(b.cache_get(b"a", 0).unwrap().len(), 8 * 1024 * 1024);
    assert!(matches!(
        b.cache_put(b"b", &vec![0; 8 * 1024 * 1024 + 1], 0, 0),
        Err(StorageError::TooLarge)
    ));
    b.commit().unwrap();
}

#[test]
fn hash_increments() {
    let d = TempDir::new("ca");
    let s = open(&d);
    let mut b = s.batch();
    assert_eq!(b.cache_hincrbyfloat("t", b"f", 10.0).unwrap(), 10.0);
    assert_eq!(b.cache_hget("t", b"f").unwrap(), b"10");
    assert_eq!(b.cache_hincrby("t", b"f", 5).unwrap(), 15);
    assert_eq!(b.cache_hincrbyfloat("t", b"f", 0.1).unwrap(), 15.1);
    assert_eq!(b.cache_hget("t", b"f").unwrap(), b"15.1");
    b.cache_hset("t", b"e", b"1e3").unwrap();
    assert_eq!(b.cache_hincrbyfloat("t", b"e", -0.5).unwrap(), 999.5);
    b.cache_hset("t", b"big", b"1e308").unwrap();
    assert!(matches!(
        b.cache_hincrbyfloat("t", b"big", 1e308),
        Err(StorageError::NotNumeric)
    ));
    assert_eq!(b.cache_hget("t", b"big").unwrap(), b"1e308");
    for bad in [&b"abc"[..], b"1.", b".5", b"inf", b"1e400"] {
        b.cache_hset("t", b"bad", bad).unwrap();
        assert!(matches!(
            b.cache_hincrbyfloat("t", b"bad", 1.0),
            Err(StorageError::NotNumeric)
        ));
    }
    assert!(matches!(
        b.cache_hincrbyfloat("t", b"x", f64::NAN),
        Err(StorageError::NotNumeric)
    ));
    b.cache_hset("t", b"max", i64::MAX.to_string().as_bytes())
        .unwrap();
    assert!(matches!(
        b.cache_hincrby("t", b"max", 1),
        Err(StorageError::NotNumeric)
    ));
    assert!(matches!(
        b.cache_hget("none", b"f"),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        b.cache_hdel("t", b"none"),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        b.cache_hset("bad table", b"f", b"1"),
        Err(StorageError::Invalid(_))
    ));
    b.commit().unwrap();
}

#[test]
fn namespaces_are_separate() {
    let d = TempDir::new("ca");
    let s = open(&d);
    let mut b = s.batch();
    b.cache_put(b"x", b"string", 0, 0).unwrap();
    b.cache_hset("x", b"x", b"field").unwrap();
    b.put(b"x", b"persistent", 0, 0, 0).unwrap();
    b.hset("x", b"x", b"table", 0, 0, 0).unwrap();
    assert_eq!(b.cache_get(b"x", 0).unwrap(), b"string");
    assert_eq!(b.cache_hget("x", b"x").unwrap(), b"field");
    assert_eq!(b.get(b"x", 0).unwrap().value, b"persistent");
    assert!(matches!(b.cache_get(b"y", 0), Err(StorageError::NotFound)));
    b.put(b"y", b"p", 0, 0, 0).unwrap();
    assert!(matches!(b.cache_get(b"y", 0), Err(StorageError::NotFound)));
    let long = vec![b'l'; 9000];
    b.cache_put(&long, b"L", 0, 0).unwrap();
    b.cache_hset("x", &long, b"LL").unwrap();
    assert_eq!(b.cache_get(&long, 0).unwrap(), b"L");
    assert_eq!(b.cache_hget("x", &long).unwrap(), b"LL");
    b.commit().unwrap();
    assert!(s.cache_usage().0 > 0);
    with_batch(&s, |b| {
        b.cache_del(&long, 0).unwrap();
        b.cache_del(b"x", 0).unwrap();
        b.cache_hdel("x", &long).unwrap();
        b.cache_hdel("x", b"x").unwrap();
    });
    assert_eq!(s.cache_usage().0, 0);
}
