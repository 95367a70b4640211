//! Plain kv: versions, TTL, binary and long keys, batches, reopening, several stores.

use super::*;
use crate::codec::{write_rec, MAX_VER};
use lmdb::{Transaction, WriteFlags};

#[test]
fn put_get_exist_del_and_versions() {
    let d = TempDir::new("kv");
    let s = open(&d);
    let mut b = s.batch();
    assert_eq!(b.put(b"k1", b"v1", 0, 0, 0).unwrap(), Written { ver: 1 });
    assert_eq!(
        b.get(b"k1", 0).unwrap(),
        Record {
            ver: 1,
            value: b"v1".to_vec()
        }
    );
    assert_eq!(b.put(b"k1", b"v2", 0, 0, 0).unwrap().ver, 2);
    assert_eq!(b.exist(b"k1", 0).unwrap(), 2);
    assert_eq!(b.del(b"k1", 0, 0).unwrap().ver, 2);
    assert!(matches!(b.get(b"k1", 0), Err(StorageError::NotFound)));
    assert!(matches!(b.exist(b"k1", 0), Err(StorageError::NotFound)));
    assert!(matches!(b.del(b"k1", 0, 0), Err(StorageError::NotFound)));
    // Written again after a delete: version 1.
    assert_eq!(b.put(b"k1", b"v3", 0, 0, 0).unwrap().ver, 1);
    b.commit().unwrap();
}

#[test]
fn version_checks() {
    let d = TempDir::new("kv");
    let s = open(&d);
    let mut b = s.batch();
    assert!(matches!(
        b.put(b"k", b"v", 0, 5, 0),
        Err(StorageError::VersionMismatch { current: 0 })
    ));
    assert!(matches!(b.get(b"k", 0), Err(StorageError::NotFound)));
    b.put(b"k", b"v1", 0, 0, 0).unwrap();
    assert!(matches!(
        b.put(b"k", b"v2", 0, 5, 0),
        Err(StorageError::VersionMismatch { current: 1 })
    ));
    assert_eq!(b.get(b"k", 0).unwrap().value, b"v1");
    assert_eq!(b.put(b"k", b"v2", 0, 1, 0).unwrap().ver, 2);
    assert!(matches!(
        b.del(b"k", 7, 0),
        Err(StorageError::VersionMismatch { current: 2 })
    ));
    // Absence is checked before the version.
    assert!(matches!(b.del(b"nope", 7, 0), Err(StorageError::NotFound)));
    assert_eq!(b.del(b"k", 2, 0).unwrap().ver, 2);
    b.commit().unwrap();
}

#[test]
fn versions_wrap_to_one() {
    let d = TempDir::new("kv");
    let s = open(&d);
    let mut b = s.batch();
    b.put(b"k", b"v", 0, 0, 0).unwrap();
    // Forge the stored version to the maximum rather than writing 4 million times.
    let db = s.db.kv;
    b.write(|t| {
        let mut buf = vec![0u8; 12 + 1];
        write_rec(&mut buf, MAX_VER, 0, None, b"v");
        t.put(db, b"k", &buf, WriteFlags::empty())?;
        Ok(())
    })
    .unwrap();
    assert_eq!(b.exist(b"k", 0).unwrap(), MAX_VER);
    assert_eq!(b.put(b"k", b"w", 0, MAX_VER, 0).unwrap().ver, 1);
    assert_eq!(b.put(b"k", b"x", 0, 1, 0).unwrap().ver, 2);
    b.commit().unwrap();
}

#[test]
fn ttl_expiry_is_absence_everywhere() {
    let d = TempDir::new("kv");
    let s = open(&d);
    let mut b = s.batch();
    b.put(b"k", b"v", 10, 0, 1_000).unwrap();
    assert_eq!(b.get(b"k", 10_999).unwrap().ver, 1);
    assert!(matches!(b.get(b"k", 11_000), Err(StorageError::NotFound)));
    assert!(matches!(b.exist(b"k", 11_000), Err(StorageError::NotFound)));
    assert!(matches!(
        b.del(b"k", 0, 11_000),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        b.put(b"k", b"w", 0, 1, 11_000),
        Err(StorageError::VersionMismatch { current: 0 })
    ));
    assert!(b.keys(&q(0, 10), 11_000).unwrap().items.is_empty());
    // The next write starts again at version 1, and without ttl it is permanent.
    assert_eq!(b.put(b"k", b"w", 0, 0, 11_000).unwrap().ver, 1);
    assert_eq!(b.get(b"k", u64::MAX / 2).unwrap().value, b"w");
    // Every write replaces the expiry.
    b.put(b"k", b"x", 5, 0, 20_000).unwrap();
    assert!(matches!(b.get(b"k", 25_000), Err(StorageError::NotFound)));
    b.commit().unwrap();
    let t = with_batch(&s, |b| b.totals().unwrap());
    assert_eq!(t.kv.count, 1, "expired but not purged may still be counted");
    assert_eq!(with_batch(&s, |b| b.purge_expired(25_000, 100).unwrap()), 1);
    assert_eq!(with_batch(&s, |b| b.totals().unwrap()).kv, Usage::default());
}

#[test]
fn binary_keys_and_values() {
    let d = TempDir::new("kv");
    let s = open(&d);
    let all: Vec<u8> = (0..=255u8).collect();
    let keys: Vec<Vec<u8>> = vec![
        vec![0],
        vec![0, 0],
        vec![0xff; 3],
        b"a\0b".to_vec(),
        all.clone(),
    ];
    with_batch(&s, |b| {
        for (i, k) in keys.iter().enumerate() {
            b.put(k, &all[i..], 0, 0, 0).unwrap();
        }
        b.put(b"empty", b"", 0, 0, 0).unwrap();
    });
    let mut b = s.batch();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(b.get(k, 0).unwrap().value, &all[i..]);
    }
    assert_eq!(b.get(b"empty", 0).unwrap().value, b"");
    let mut sorted = keys.clone();
    sorted.push(b"empty".to_vec());
    sorted.sort();
    assert_eq!(keys_of(&b.keys(&q(0, 100), 0).unwrap()), sorted);
}

#[test]
fn long_keys() {
    let d = TempDir::new("kv");
    let s = open(&d);
    let big: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut other = big.clone();
    other[65535] ^= 1;
    let mut b = s.batch();
    assert_eq!(b.put(&big, b"big", 0, 0, 0).unwrap().ver, 1);
    assert_eq!(b.put(&other, b"other", 0, 0, 0).unwrap().ver, 1);
    assert_eq!(b.put(&big[..401], b"401", 0, 0, 0).unwrap().ver, 1);
    assert_eq!(b.put(&big[..400], b"400", 0, 0, 0).unwrap().ver, 1);
    assert_eq!(b.get(&big, 0).unwrap().value, b"big");
    assert_eq!(b.get(&other, 0).unwrap().value, b"other");
    assert_eq!(b.get(&big[..401], 0).unwrap().value, b"401");
    assert_eq!(b.get(&big[..400], 0).unwrap().value, b"400");
    assert!(matches!(b.get(&big[..402], 0), Err(StorageError::NotFound)));
    assert_eq!(b.put(&big, b"big2", 0, 1, 0).unwrap().ver, 2);
    assert_eq!(b.del(&other, 0, 0).unwrap().ver, 1);
    assert!(matches!(b.get(&other, 0), Err(StorageError::NotFound)));
    let l = b.keys(&q(0, 10), 0).unwrap();
    assert_eq!(
        keys_of(&l),
        vec![big[..400].to_vec(), big[..401].to_vec(), big.clone()]
    );
    let too_long = vec![1u8; 65537];
    assert!(matches!(
        b.put(&too_long, b"x", 0, 0, 0),
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        b.put(b"", b"x", 0, 0, 0),
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(b.get(b"", 0), Err(StorageError::Invalid(_))));
    b.commit().unwrap();
}

#[test]
fn large_values() {
    let d = TempDir::new("kv");
    let s = open(&d);
    let v: Vec<u8> = (0..20 << 20).map(|i: u32| (i % 253) as u8).collect();
    with_batch(&s, |b| b.put(b"big", &v, 0, 0, 0).unwrap());
    assert!(with_batch(&s, |b| b.get(b"big", 0).unwrap().value) == v);
}

#[test]
fn a_batch_reads_its_own_writes_and_failed_writes_abort_alone() {
    let d = TempDir::new("kv");
    let s = open(&d);
    let mut b = s.batch();
    assert!(!b.has_writes());
    assert!(matches!(b.get(b"a", 0), Err(StorageError::NotFound)));
    assert!(!b.has_writes());
    b.put(b"a", b"1", 0, 0, 0).unwrap();
    assert!(b.has_writes());
    assert_eq!(b.get(b"a", 0).unwrap().value, b"1");
    assert!(b.put(b"b", b"2", 0, 9, 0).is_err());
    b.put(b"c", b"3", 0, 0, 0).unwrap();
    let stats = b.commit().unwrap();
    assert_eq!(stats.writes, 3);
    let mut b = s.batch();
    assert!(b.get(b"a", 0).is_ok() && b.get(b"c", 0).is_ok());
    assert!(matches!(b.get(b"b", 0), Err(StorageError::NotFound)));
    assert_eq!(b.totals().unwrap().kv.count, 2);
    // Dropping a batch aborts it.
    b.put(b"d", b"4", 0, 0, 0).unwrap();
    drop(b);
    let mut b = s.batch();
    assert!(matches!(b.get(b"d", 0), Err(StorageError::NotFound)));
    // (The refusal counts are the process's, which other tests move.)
    let stats: CommitStats = b.commit().unwrap();
    assert_eq!((stats.writes, stats.micros), (0, 0));
}

#[test]
fn reopening_keeps_data() {
    let d = TempDir::new("kv");
    {
        let s = open(&d);
        with_batch(&s, |b| {
            b.put(b"k", b"v", 0, 0, 0).unwrap();
            b.hset("h", b"f", b"x", 0, 0, 0).unwrap();
        });
    }
    let s = open(&d);
    let mut b = s.batch();
    assert_eq!(b.get(b"k", 0).unwrap().value, b"v");
    assert_eq!(b.hget("h", b"f", 0).unwrap().value, b"x");
    assert_eq!(b.totals().unwrap().kv.count, 1);
}

#[test]
fn two_stores_on_the_same_dirs_see_each_other() {
    let d = TempDir::new("kv");
    let s1 = open(&d);
    let s2 = open(&d);
    with_batch(&s1, |b| b.put(b"k", b"1", 0, 0, 0).unwrap());
    assert_eq!(with_batch(&s2, |b| b.get(b"k", 0).unwrap().value), b"1");
    with_batch(&s2, |b| {
        b.put(b"k", b"2", 0, 1, 0).unwrap();
        b.cache_put(b"c", b"x", 0, 0).unwrap();
    });
    let mut b = s1.batch();
    assert_eq!(
        b.get(b"k", 0).unwrap(),
        Record {
            ver: 2,
            value: b"2".to_vec()
        }
    );
    assert_eq!(b.cache_get(b"c", 0).unwrap(), b"x");
    assert_eq!(b.totals().unwrap().kv.count, 1);
}

#[test]
fn sync_writes_off() {
    let d = TempDir::new("kv");
    let mut o = options(d.path(), 8 << 20, 8 << 20);
    o.sync_writes = false;
    let s = Store::open(&o).unwrap();
    with_batch(&s, |b| b.put(b"k", b"v", 0, 0, 0).unwrap());
    s.sync().unwrap();
    drop(s);
    let s = Store::open(&o).unwrap();
    assert_eq!(with_batch(&s, |b| b.get(b"k", 0).unwrap().value), b"v");
}

/// Without `write_map`, a failed closure is undone alone; with it (no nested transactions),
/// it poisons the pass, which then commits nothing.
#[test]
fn write_runs_the_queue_crates_changes_in_a_nested_transaction() {
    let d = TempDir::new("kv");
    let s = open(&d);
    let q = s
        .env()
        .create_db(Some("queue"), lmdb::DatabaseFlags::empty())
        .unwrap();
    let mut b = s.batch();
    b.write(|t| Ok(t.put(q, b"m1", b"x", WriteFlags::empty())?))
        .unwrap();
    let r: Result<()> = b.write(|t| {
        t.put(q, b"m2", b"y", WriteFlags::empty())?;
        Err(StorageError::NotFound)
    });
    assert!(matches!(r, Err(StorageError::NotFound)));
    let t = if WRITE_MAP {
        assert!(matches!(
            b.put(b"k", b"v", 0, 0, 0),
            Err(StorageError::Lmdb(lmdb::Error::BadTxn))
        ));
        assert!(b.commit().is_err());
        let t = s.env().begin_ro_txn().unwrap();
        assert_eq!(t.get(q, b"m1"), Err(lmdb::Error::NotFound));
        t
    } else {
        b.put(b"k", b"v", 0, 0, 0).unwrap();
        b.commit().unwrap();
        let t = s.env().begin_ro_txn().unwrap();
        assert_eq!(t.get(q, b"m1").unwrap(), b"x");
        t
    };
    assert_eq!(t.get(q, b"m2"), Err(lmdb::Error::NotFound));
}

/// A child process takes the write lock and is killed with it; the parent must still write.
/// The child is this test binary re-run on the ignored test below.
#[test]
fn a_writer_killed_with_the_lock_does_not_block_others() {
    let d = TempDir::new("kv");
    drop(open(&d));
    let exe = std::env::current_exe().unwrap();
    // This suite's copy of the child test: `storage::tests::<suite>::kv` without the crate.
    let module = module_path!().trim_start_matches("storage::");
    let child = format!("{module}::child_dies_holding_the_write_lock");
    let status = std::process::Command::new(exe)
        .args(["--ignored", "--exact", &child, "--nocapture"])
        .env("STORAGE_TEST_DIR", d.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must die by SIGKILL");
    let dir = d.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let s = Store::open(&options(&dir, 64 << 20, 64 << 20)).unwrap();
        let r = with_batch(&s, |b| {
            b.put(b"k", b"parent", 0, 0, 0).unwrap();
            b.get(b"k", 0).unwrap().value
        });
        let _ = tx.send(r);
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(20));
    assert_eq!(
        got.ok(),
        Some(b"parent".to_vec()),
        "blocked on a dead writer's lock"
    );
}

#[test]
#[ignore = "child half of a_writer_killed_with_the_lock_does_not_block_others"]
fn child_dies_holding_the_write_lock() {
    let Ok(dir) = std::env::var("STORAGE_TEST_DIR") else {
        return;
    };
    let s = Store::open(&options(Path::new(&dir), 64 << 20, 64 << 20)).unwrap();
    let mut b = s.batch();
    b.put(b"k", b"child", 0, 0, 0).unwrap();
    // SAFETY: kill(2) on our own pid with a valid signal number.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}

/// Rough costs, for `cargo test --release -p storage -- --ignored --nocapture perf`.
#[test]
#[ignore = "timing report, run by hand in release mode"]
fn perf_report() {
    let d = TempDir::new("perf");
    let s = open(&d);
    let n = 20_000u32;
    let t = std::time::Instant::now();
    for chunk in 0..n / 100 {
        with_batch(&s, |b| {
            for i in 0..100 {
                let k = (chunk * 100 + i).to_be_bytes();
                b.put(&k, b"value-of-some-forty-bytes-in-length-xxxx", 0, 0, 0)
                    .unwrap();
            }
        });
    }
    let put = t.elapsed().as_nanos() as f64 / n as f64;
    let t = std::time::Instant::now();
    let mut b = s.batch();
    for i in 0..n {
        b.get(&i.to_be_bytes(), 0).unwrap();
    }
    let get = t.elapsed().as_nanos() as f64 / n as f64;
    drop(b);
    let t = std::time::Instant::now();
    for i in 0..2000u32 {
        let mut b = s.batch();
        b.get(&i.to_be_bytes(), 0).unwrap();
    }
    let get1 = t.elapsed().as_nanos() as f64 / 2000.0;
    println!("put in batches of 100 (fsync per batch): {put:.0} ns; get: {get:.0} ns; batch+get: {get1:.0} ns");
    let mut o = options(d.path(), 64 << 20, 64 << 20);
    o.data_dir = d.path().join("nosync");
    o.sync_writes = false;
    let s = Store::open(&o).unwrap();
    let t = std::time::Instant::now();
    for chunk in 0..n / 100 {
        with_batch(&s, |b| {
            for i in 0..100 {
                let k = (chunk * 100 + i).to_be_bytes();
                b.put(&k, b"value-of-some-forty-bytes-in-length-xxxx", 0, 0, 0)
                    .unwrap();
            }
        });
    }
    let put = t.elapsed().as_nanos() as f64 / n as f64;
    println!("put without fsync: {put:.0} ns");
}

#[test]
fn data_and_cache_must_be_different_folders() {
    let d = TempDir::new("kv");
    let mut o = options(d.path(), 8 << 20, 8 << 20);
    o.cache_dir = o.data_dir.clone();
    assert!(matches!(Store::open(&o), Err(StorageError::Invalid(_))));
    let f = d.path().join("file");
    std::fs::write(&f, b"x").unwrap();
    o.data_dir = f;
    assert!(matches!(Store::open(&o), Err(StorageError::Lmdb(_))));
}
