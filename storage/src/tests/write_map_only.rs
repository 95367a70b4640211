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
