//! `map_size` and `cache_size`: full stores refuse growing writes and nothing else.

use super::*;
use lmdb::WriteFlags;

const MIB: u64 = 1 << 20;

fn key(i: usize) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

/// Puts `val`-sized values one batch per write until `MapFull`; returns how many fit.
fn fill(s: &Store, val: usize) -> usize {
    let v = vec![b'v'; val];
    for i in 0..100_000 {
        let mut b = s.batch();
        match b.put(&key(i), &v, 0, 0, 0) {
            Ok(_) => {
                b.commit().unwrap();
            }
            Err(StorageError::MapFull) => {
                // The refused write left nothing behind, and the batch still commits.
                assert!(matches!(b.get(&key(i), 0), Err(StorageError::NotFound)));
                b.commit().unwrap();
                return i;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    panic!("never full");
}

#[test]
fn a_full_store_still_reads_and_deletes_and_a_delete_makes_room() {
    let d = TempDir::new("cap");
    let s = Store::open(&options(d.path(), MIB, MIB)).unwrap();
    let n = fill(&s, 1000);
    assert!(n > 500 && n < 1100, "{n} values of 1000 bytes in 1 MiB");
    let (used, limit) = s.map_usage();
    assert!(used <= limit && used + 1100 > limit, "{used} of {limit}");
    let mut b = s.batch();
    assert_eq!(b.get(&key(0), 0).unwrap().value.len(), 1000);
    assert_eq!(
        b.keys(
            &ListQuery {
                count_total: true,
                ..q(0, 1)
            },
            0
        )
        .unwrap()
        .total,
        n as u64
    );
    // Still full: a new key, a bigger value, a new table, a ttl (index entry) are refused.
    assert!(matches!(
        b.put(b"new", &[1; 1000], 0, 0, 0),
        Err(StorageError::MapFull)
    ));
    assert!(matches!(
        b.put(&key(1), &[1; 2000], 0, 0, 0),
        Err(StorageError::MapFull)
    ));
    assert!(matches!(
        b.sadd("t", &[1; 1000], 0, 0, 0),
        Err(StorageError::MapFull)
    ));
    // A write that does not grow goes through.
    assert_eq!(b.put(&key(1), &[2; 1000], 0, 0, 0).unwrap().ver, 2);
    assert_eq!(b.put(&key(2), &[2; 10], 0, 0, 0).unwrap().ver, 2);
    assert_eq!(b.del(&key(3), 0, 0).unwrap().ver, 1);
    b.commit().unwrap();
    // The deletes made room for one more value of the same size.
    let mut b = s.batch();
    assert_eq!(b.put(b"new", &[1; 1000], 0, 0, 0).unwrap().ver, 1);
    b.commit().unwrap();
    // Deleting everything always works.
    with_batch(&s, |b| {
        for i in 0..n {
            let _ = b.del(&key(i), 0, 0);
        }
        b.del(b"new", 0, 0).unwrap();
    });
    assert_eq!(s.map_usage().0, 0);
    // The file stayed well inside LMDB's real map.
    let (phys, real) = s.file_usage().unwrap();
    assert!(phys < real / 2, "{phys} of {real}");
    // And it fills up again the same way.
    let again = fill(&s, 1000);
    assert!(again + 2 >= n && again <= n + 2, "{again} vs {n}");
}

#[test]
fn big_values_and_one_batch() {
    let d = TempDir::new("cap");
    let s = Store::open(&options(d.path(), 2 * MIB, MIB)).unwrap();
    let v = vec![7u8; 100_000];
    let mut b = s.batch();
    let mut n = 0;
    while b.put(&key(n), &v, 0, 0, 0).is_ok() {
        n += 1;
    }
    assert!((15..=21).contains(&n), "{n}");
    // The refused writes did not spoil the pass.
    b.put(&key(0), b"small", 0, 0, 0).unwrap();
    b.commit().unwrap();
    let mut b = s.batch();
    assert_eq!(b.get(&key(0), 0).unwrap().value, b"small");
    assert_eq!(b.get(&key(n - 1), 0).unwrap().value.len(), 100_000);
    assert!(b.put(b"big", &vec![0; 3 << 20], 0, 0, 0).is_err());
    b.commit().unwrap();
}

#[test]
fn a_full_cache() {
    let d = TempDir::new("cap");
    let s = Store::open(&options(d.path(), MIB, MIB)).unwrap();
    let v = vec![b'c'; 1000];
    let mut n = 0;
    loop {
        let mut b = s.batch();
        let r = if n % 2 == 0 {
            b.cache_put(&key(n), &v, 0, 0)
        } else {
            b.cache_hset("t", &key(n), &v)
        };
        b.commit().unwrap();
        match r {
            Ok(()) => n += 1,
            Err(StorageError::MapFull) => break,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(n > 500 && n < 1100, "{n}");
    let mut b = s.batch();
    assert_eq!(b.cache_get(&key(0), 0).unwrap().len(), 1000);
    assert_eq!(b.cache_hget("t", &key(1)).unwrap().len(), 1000);
    assert!(matches!(
        b.cache_append(&key(0), &v, 0),
        Err(StorageError::MapFull)
    ));
    assert!(matches!(
        b.cache_hset("t", b"n", &v),
        Err(StorageError::MapFull)
    ));
    assert!(matches!(
        b.cache_put(b"n", &v, 0, 0),
        Err(StorageError::MapFull)
    ));
    b.cache_del(&key(0), 0).unwrap();
    b.cache_put(&key(0), &v, 0, 0).unwrap();
    b.cache_hdel("t", &key(1)).unwrap();
    b.cache_hset("t", &key(1), &v).unwrap();
    b.commit().unwrap();
    // The persistent store is not affected by the full cache.
    with_batch(&s, |b| b.put(b"p", &v, 0, 0, 0).unwrap());
}

#[test]
fn ensure_room_bounds_the_queue_crates_data() {
    let d = TempDir::new("cap");
    let s = Store::open(&options(d.path(), MIB, MIB)).unwrap();
    let qdb = s
        .env()
        .create_db(Some("queue"), lmdb::DatabaseFlags::empty())
        .unwrap();
    let v = vec![b'q'; 4000];
    let mut n = 0u32;
    loop {
        let mut b = s.batch();
        let r = b.ensure_room(v.len() as u64).and_then(|()| {
            b.write(|t| Ok(t.put(qdb, &n.to_be_bytes(), &v, WriteFlags::empty())?))
        });
        b.commit().unwrap();
        match r {
            Ok(()) => n += 1,
            Err(StorageError::MapFull) => break,
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(n < 1000);
    }
    assert!(n > 100, "{n}");
    let (phys, _) = s.file_usage().unwrap();
    assert!(phys <= MIB + 3 * 4096 * 2, "{phys}");
    // Deletes work and make room.
    with_batch(&s, |b| {
        b.write(|t| {
            for i in 0..n / 2 {
                t.del(qdb, &i.to_be_bytes(), None)?;
            }
            Ok(())
        })
        .unwrap()
    });
    // Freed pages become reusable once no reader holds them: after one more commit.
    with_batch(&s, |b| b.put(b"k", b"v", 0, 0, 0).unwrap());
    let mut b = s.batch();
    b.ensure_room(v.len() as u64).unwrap();
}

#[test]
fn freed_pages_are_reusable_only_once_no_snapshot_older_than_them_is_open() {
    let d = TempDir::new("cap-reuse");
    // No journal: no checkpoint thread, whose pin would be a reader of its own.
    let mut opts = options_with(d.path(), 64 * MIB, MIB, true);
    opts.sync_writes = false;
    let s = Store::open(&opts).unwrap();
    let v = vec![b'r'; 16 << 10];
    for i in 0..64 {
        let mut b = s.batch();
        b.put(&key(i), &v, 0, 0, 0).unwrap();
        b.commit().unwrap();
    }
    let before = crate::room::reusable_free(&s.env).unwrap();
    // A snapshot taken before the deletes (as a checkpoint's pin is) keeps what they free.
    let pin = s.env.begin_ro_txn().unwrap();
    for i in 0..32 {
        let mut b = s.batch();
        b.del(&key(i), 0, 0).unwrap();
        b.commit().unwrap();
    }
    let pinned = crate::room::reusable_free(&s.env).unwrap();
    assert!(
        pinned <= before + 8,
        "{pinned} pages reusable under the pin, {before} before the deletes"
    );
    drop(pin);
    // One more commit: the pages freed by the last delete are reusable after it.
    let mut b = s.batch();
    b.put(b"after", b"x", 0, 0, 0).unwrap();
    b.commit().unwrap();
    let free = crate::room::reusable_free(&s.env).unwrap();
    // 32 values of five overflow pages each.
    assert!(free >= 32 * 4, "{free} pages reusable, {before} before");
}
