//! What only `write_map` does to the files.

use std::os::unix::fs::MetadataExt;

use super::*;

const MIB: u64 = 1 << 20;

fn data_file(d: &TempDir) -> std::fs::Metadata {
    std::fs::metadata(d.path().join("data").join("data.mdb")).unwrap()
}

/// LMDB sizes the file to its whole map (2 x map_size + 64 MiB), sparse: the blocks in use are
/// the pages written plus the margin allocated ahead.
#[test]
fn the_data_file_is_sparse_at_the_map_size() {
    let d = TempDir::new("wm");
    let s = Store::open(&options(d.path(), 64 * MIB, 64 * MIB)).unwrap();
    with_batch(&s, |b| {
        for i in 0..1000u32 {
            b.put(&i.to_be_bytes(), &[7; 256], 0, 0, 0).unwrap();
        }
    });
    let m = data_file(&d);
    assert_eq!(m.len(), 192 * MIB);
    let allocated = m.blocks() * 512;
    assert!(allocated < 100 * MIB, "{allocated} bytes allocated");
}

/// A smaller `map_size` (a reload) must not shrink the file under workers that still map it
/// whole; the data stays readable and the new limit holds.
#[test]
fn a_smaller_map_size_keeps_the_file() {
    let d = TempDir::new("wm");
    {
        let s = Store::open(&options(d.path(), 64 * MIB, MIB)).unwrap();
        with_batch(&s, |b| b.put(b"k", b"v", 0, 0, 0).unwrap());
    }
    let old = Store::open(&options(d.path(), 64 * MIB, MIB)).unwrap();
    let s = Store::open(&options(d.path(), 2 * MIB, MIB)).unwrap();
    assert_eq!(data_file(&d).len(), 192 * MIB);
    assert_eq!(with_batch(&s, |b| b.get(b"k", 0).unwrap().value), b"v");
    assert_eq!(s.map_usage().1, 2 * MIB);
    assert!(matches!(
        with_batch(&s, |b| b.put(b"big", &vec![0; 3 << 20], 0, 0, 0)),
        Err(StorageError::MapFull)
    ));
    // The old store, with its larger map, still writes.
    with_batch(&old, |b| b.put(b"k2", &vec![1; 3 << 20], 0, 0, 0).unwrap());
    assert_eq!(
        with_batch(&s, |b| b.get(b"k2", 0).unwrap().value.len()),
        3 << 20
    );
}

/// A value lent in place stays as it was read until the batch ends, whatever is written
/// after it: here another pass (as another worker would) overwrites it and commits, which
/// frees its pages, and then the lending pass writes enough to take freed pages; its read
/// snapshot, kept open once a value is lent, keeps those pages from being reused.
#[test]
fn a_lent_value_outlives_later_writes_of_any_pass() {
    let d = TempDir::new("wm");
    let mut opts = options(d.path(), 64 * MIB, MIB);
    // No journal: no checkpoint pin that would keep the pages anyway.
    opts.sync_writes = false;
    let s = Store::open(&opts).unwrap();
    let old: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    with_batch(&s, |b| b.put(b"big", &old, 0, 0, 0).unwrap());
    let mut lending = s.batch();
    let (_, value) = lending.get_for_reply(b"big", 0, 1024).unwrap();
    let ReplyValue::InPlace(lent) = value else {
        panic!("a large value read before any write is lent");
    };
    for round in 0..3u8 {
        with_batch(&s, |b| {
            b.put(b"big", &vec![round; old.len()], 0, 0, 0).unwrap();
        });
    }
    for i in 0..2000u32 {
        lending.put(&i.to_be_bytes(), &[9; 2000], 0, 0, 0).unwrap();
    }
    // SAFETY: the lending batch has not ended.
    assert_eq!(unsafe { lent.bytes() }, &old[..]);
    // After its first write the pass reads its own changes, copied.
    assert!(matches!(
        lending.get_for_reply(b"big", 0, 1).unwrap().1,
        ReplyValue::Copied(v) if v == vec![2u8; old.len()]
    ));
    lending.commit().unwrap();
}

/// Values of a page and more go to the file by `pwrite` (`direct`), and read back the same in
/// the pass that wrote them, after its commit, after an overwrite of the same key in one pass
/// (LMDB reuses the dirty overflow pages in place) and after a reopen; smaller ones do not.
/// With and without the journal (`sync_writes off`: the value is built in a scratch buffer).
#[test]
fn large_values_are_written_by_pwrite_and_read_back_the_same() {
    for sync_writes in [true, false] {
        let d = TempDir::new("wm-direct");
        let opts = StoreOptions {
            sync_writes,
            ..options(d.path(), 64 * MIB, 8 * MIB)
        };
        let big = |n: usize, seed: u8| -> Vec<u8> {
            (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
        };
        let sizes = [4000usize, 4096, 5000, 20_000, 65_536, 300_000];
        {
            let s = Store::open(&opts).unwrap();
            let before = crate::direct::writes();
            with_batch(&s, |b| {
                b.put(b"small", &big(1000, 1), 0, 0, 0).unwrap();
                for (i, &n) in sizes.iter().enumerate() {
                    let k = format!("big{i}");
                    b.put(k.as_bytes(), &big(n, 2), 0, 0, 0).unwrap();
                    assert_eq!(b.get(k.as_bytes(), 0).unwrap().value, big(n, 2), "{n}");
                    // The same key again in the pass: the dirty overflow pages are reused.
                    b.put(k.as_bytes(), &big(n, 3), 0, 0, 0).unwrap();
                    assert_eq!(b.get(k.as_bytes(), 0).unwrap().value, big(n, 3), "{n}");
                }
            });
            let direct = crate::direct::writes() - before;
            // Every size but 4000 (and 1000) is a page or more with the record's header; 4000
            // is on one overflow page whose header LMDB writes through the map anyway.
            assert_eq!(
                direct,
                2 * (sizes.len() as u64 - 1),
                "sync_writes {sync_writes}"
            );
            with_batch(&s, |b| {
                assert_eq!(b.get(b"small", 0).unwrap().value, big(1000, 1));
                for (i, &n) in sizes.iter().enumerate() {
                    let k = format!("big{i}");
                    assert_eq!(b.get(k.as_bytes(), 0).unwrap().value, big(n, 3), "{n}");
                    // Overwritten in a later pass, shorter: new pages again.
                    b.put(k.as_bytes(), &big(n - 50, 4), 0, 0, 0).unwrap();
                }
            });
        }
        let s = Store::open(&opts).unwrap();
        with_batch(&s, |b| {
            for (i, &n) in sizes.iter().enumerate() {
                let k = format!("big{i}");
                assert_eq!(b.get(k.as_bytes(), 0).unwrap().value, big(n - 50, 4), "{n}");
            }
        });
    }
}

/// Without `write_map` a reserved value is LMDB's heap copy, never a place in the file.
#[test]
fn without_write_map_nothing_is_written_by_pwrite() {
    let d = TempDir::new("wm-direct-off");
    let s = Store::open(&options_with(d.path(), 64 * MIB, 8 * MIB, false)).unwrap();
    let before = crate::direct::writes();
    with_batch(&s, |b| b.put(b"big", &vec![5; 70_000], 0, 0, 0).unwrap());
    assert_eq!(crate::direct::writes(), before);
    assert_eq!(
        with_batch(&s, |b| b.get(b"big", 0).unwrap().value),
        vec![5; 70_000]
    );
}
