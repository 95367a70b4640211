//! Unit tests of the store, one file per topic under `tests/`. Time is always passed in
//! explicitly (`now_ms`), so nothing here sleeps. The topic files run twice: in `nested`
//! (`write_map` off: a nested transaction per request) and in `write_map` (requests straight
//! in the pass's transaction); each suite's `options` and `open` open stores its way.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::*;

// The same topic files, once per suite.
#[allow(clippy::duplicate_mod)]
mod nested;
#[allow(clippy::duplicate_mod)]
mod write_map;

mod fail_stop;
mod journal;
// The tests' shorthand for commands (the old write methods of `Batch`).
mod shorthand;

/// A folder removed on drop (no tempdir crate in the workspace).
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let p =
            std::env::temp_dir().join(format!("storage-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn options_with(
    dir: &Path,
    map_size: u64,
    cache_size: u64,
    write_map: bool,
) -> StoreOptions {
    StoreOptions {
        data_dir: dir.join("data"),
        map_size,
        sync_writes: true,
        cache_dir: dir.join("cache"),
        cache_size,
        write_map,
        fail_stop: Default::default(),
    }
}

/// A listing query: `offset`, `size`, everything else default (all buckets, no values, no
/// total).
pub(crate) fn q(offset: u64, size: u32) -> ListQuery {
    ListQuery {
        offset,
        size,
        start: 0,
        end: 1024,
        with_values: false,
        count_total: false,
    }
}

/// Runs `f` in a batch and commits it.
pub(crate) fn with_batch<T>(s: &Store, f: impl FnOnce(&mut Batch<'_>) -> T) -> T {
    let mut b = s.batch();
    let out = f(&mut b);
    b.commit().expect("commit");
    out
}

pub(crate) fn keys_of(l: &Listing) -> Vec<Vec<u8>> {
    l.items.iter().map(|i| i.key.clone()).collect()
}

/// Small xorshift64* generator: deterministic, no crates.
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Every entry of every database of both environments, read in a fresh read transaction:
/// what "nothing changed" is checked against.
pub(crate) fn dump(s: &Store) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    use lmdb::{Cursor, Transaction};
    let data = [
        ("kv", s.db.kv),
        ("mem", s.db.mem),
        ("zidx", s.db.zidx),
        ("tbl", s.db.tbl),
        ("exp", s.db.exp),
        ("meta", s.db.meta),
    ];
    let cache = [
        ("ckv", s.cdb.kv),
        ("chash", s.cdb.hash),
        ("cexp", s.cdb.exp),
        ("cmeta", s.cdb.meta),
    ];
    let mut out = Vec::new();
    for (env, dbs) in [(s.env(), &data[..]), (s.cache_env(), &cache[..])] {
        let t = env.begin_ro_txn().expect("read txn");
        for &(name, db) in dbs {
            let mut c = t.open_ro_cursor(db).expect("cursor");
            for item in c.iter_start() {
                let (k, v) = item.expect("entry");
                out.push((name, k.to_vec(), v.to_vec()));
            }
        }
    }
    out
}
