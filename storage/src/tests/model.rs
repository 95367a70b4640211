//! Property test: random writes applied to the store and to a plain in-memory model, then
//! random pages of every listing compared. Fixed seeds, bounded iterations.

use std::collections::BTreeMap;

use super::*;

/// Member → (version, score; 0 for sets).
type Members = BTreeMap<Vec<u8>, (u32, i64)>;

#[derive(Default)]
struct Model {
    kv: BTreeMap<Vec<u8>, (u32, Vec<u8>)>,
    /// Table → (type, member → (version, score; 0 for sets)).
    tables: BTreeMap<String, (TableType, Members)>,
}

fn next(v: u32) -> u32 {
    v + 1
}

struct Gen {
    rng: Rng,
    long_prefix: Vec<u8>,
}

impl Gen {
    fn key(&mut self) -> Vec<u8> {
        match self.rng.below(10) {
            0..=4 => format!("k{}", self.rng.below(40)).into_bytes(),
            5 => vec![self.rng.below(3) as u8; 1 + self.rng.below(3) as usize],
            6 => {
                // Exactly around the 400-byte threshold.
                let mut k = self.long_prefix[..398].to_vec();
                for _ in 0..self.rng.below(5) {
                    k.push(b'a' + self.rng.below(2) as u8);
                }
                k
            }
            _ => {
                let mut k = self.long_prefix.clone();
                for _ in 0..self.rng.below(6) {
                    k.push(b'a' + self.rng.below(3) as u8);
                }
                if self.rng.below(20) == 0 {
                    k.resize(65536, b'z');
                }
                k
            }
        }
    }

    fn score(&mut self) -> i64 {
        match self.rng.below(20) {
            0 => i64::MIN + self.rng.below(3) as i64,
            1 => i64::MAX - self.rng.below(3) as i64,
            _ => self.rng.below(21) as i64 - 10,
        }
    }

    fn query(&mut self, n: usize) -> ListQuery {
        let start = if self.rng.below(2) == 0 {
            0
        } else {
            self.rng.below(1024) as u32
        };
        let end = if self.rng.below(2) == 0 {
            1024
        } else {
            start + 1 + self.rng.below((1024 - start) as u64) as u32
        };
        ListQuery {
            offset: self.rng.below(n as u64 + 3),
            size: self.rng.below(n as u64 + 3) as u32,
            start,
            end,
            with_values: self.rng.below(2) == 0,
            count_total: self.rng.below(2) == 0,
        }
    }
}

const TABLES: [&str; 4] = ["s", "z", "x", "y"];

fn page(all: Vec<ListItem>, q: &ListQuery, buckets: bool) -> Listing {
    let matched: Vec<ListItem> = all
        .into_iter()
        .filter(|it| !buckets || (q.start..q.end).contains(&bucket(&it.key)))
        .collect();
    let total = if q.count_total {
        matched.len() as u64
    } else {
        0
    };
    let items = matched
        .into_iter()
        .skip(q.offset as usize)
        .take(q.size as usize)
        .map(|mut it| {
            if !q.with_values {
                it.val = None;
            }
            it
        })
        .collect();
    Listing { items, total }
}

fn check(b: &mut Batch<'_>, m: &Model, g: &mut Gen) {
    let q = g.query(m.kv.len());
    let all =
        m.kv.iter()
            .map(|(k, (v, val))| ListItem {
                key: k.clone(),
                val: Some(ListValue::Bytes(val.clone())),
                ver: *v,
            })
            .collect();
    assert_eq!(b.keys(&q, 0).unwrap(), page(all, &q, true), "keys {q:?}");
    for tb in TABLES {
        let Some((kind, members)) = m.tables.get(tb) else {
            let q = g.query(0);
            assert!(matches!(b.smembers(tb, &q, 0), Err(StorageError::NotFound)));
            assert!(matches!(
                b.zrange_by_rank(tb, &q, 0),
                Err(StorageError::NotFound)
            ));
            continue;
        };
        let q = g.query(members.len());
        match kind {
            TableType::Set => {
                let all = members
                    .iter()
                    .map(|(k, (v, _))| ListItem {
                        key: k.clone(),
                        val: None,
                        ver: *v,
                    })
                    .collect();
                assert_eq!(
                    b.smembers(tb, &q, 0).unwrap(),
                    page(all, &q, true),
                    "smembers {tb} {q:?}"
                );
                assert!(matches!(
                    b.zrange_by_rank(tb, &q, 0),
                    Err(StorageError::WrongType)
                ));
            }
            TableType::SortedSet => {
                let mut all: Vec<(i64, ListItem)> = members
                    .iter()
                    .map(|(k, (v, s))| {
                        (
                            *s,
                            ListItem {
                                key: k.clone(),
                                val: Some(ListValue::Score(*s)),
                                ver: *v,
                            },
                        )
                    })
                    .collect();
                all.sort_by(|a, b| (a.0, &a.1.key).cmp(&(b.0, &b.1.key)));
                let by_rank = all.iter().map(|(_, it)| it.clone()).collect();
                assert_eq!(
                    b.zrange_by_rank(tb, &q, 0).unwrap(),
                    page(by_rank, &q, false),
                    "zrank {tb} {q:?}"
                );
                let (mut lo, mut hi) = (g.score(), g.score());
                if lo > hi {
                    std::mem::swap(&mut lo, &mut hi);
                }
                let by_score = all
                    .iter()
                    .filter(|(s, _)| (lo..=hi).contains(s))
                    .map(|(_, it)| it.clone())
                    .collect();
                assert_eq!(
                    b.zrange_by_score(tb, lo, hi, &q, 0).unwrap(),
                    page(by_score, &q, false),
                    "zscore {tb} {lo}..={hi} {q:?}"
                );
                assert!(matches!(
                    b.smembers(tb, &q, 0),
                    Err(StorageError::WrongType)
                ));
            }
            TableType::Hash => unreachable!("the model makes no hashes"),
        }
        let st = b.table_stat(tb, 0).unwrap();
        assert_eq!((st.kind, st.usage.count), (*kind, members.len() as u64));
    }
    assert_eq!(b.totals().unwrap().kv.count, m.kv.len() as u64);
    assert_eq!(b.all_tables(0).unwrap().len(), m.tables.len());
}

fn step(b: &mut Batch<'_>, m: &mut Model, g: &mut Gen) {
    let key = g.key();
    let tb = TABLES[g.rng.below(4) as usize];
    match g.rng.below(7) {
        0 => {
            let val = format!("v{}", g.rng.below(1000)).into_bytes();
            let w = b.put(&key, &val, 0, 0, 0).unwrap();
            let ver = m.kv.get(&key).map_or(1, |(v, _)| next(*v));
            assert_eq!(w.ver, ver);
            m.kv.insert(key, (ver, val));
        }
        1 => match (b.del(&key, 0, 0), m.kv.remove(&key)) {
            (Ok(w), Some((v, _))) => assert_eq!(w.ver, v),
            (Err(StorageError::NotFound), None) => {}
            (r, o) => panic!("del {r:?} vs {o:?}"),
        },
        2 => {
            let r = b.sadd(tb, &key, 0, 0, 0);
            let t = m
                .tables
                .entry(tb.to_string())
                .or_insert((TableType::Set, BTreeMap::new()));
            if t.0 != TableType::Set {
                assert!(matches!(r, Err(StorageError::WrongType)), "{r:?}");
                return;
            }
            let ver = t.1.get(&key).map_or(1, |(v, _)| next(*v));
            assert_eq!(r.unwrap().ver, ver);
            t.1.insert(key, (ver, 0));
        }
        3 | 4 => {
            let score = g.score();
            let mode = [ZaddMode::Set, ZaddMode::Add, ZaddMode::Subtract][g.rng.below(3) as usize];
            let r = b.zadd(tb, &key, (score, mode), 0, 0, 0);
            let kind = m.tables.get(tb).map(|t| t.0);
            if kind.is_some_and(|k| k != TableType::SortedSet) {
                assert!(matches!(r, Err(StorageError::WrongType)), "{r:?}");
                return;
            }
            let cur = m.tables.get(tb).and_then(|t| t.1.get(&key)).copied();
            let new = match mode {
                ZaddMode::Set => Some(score),
                ZaddMode::Add => cur.map_or(0, |c| c.1).checked_add(score),
                ZaddMode::Subtract => cur.map_or(0, |c| c.1).checked_sub(score),
            };
            let Some(new) = new else {
                assert!(matches!(r, Err(StorageError::NotNumeric)), "{r:?}");
                return;
            };
            let ver = match cur {
                Some((v, s)) if mode == ZaddMode::Set && s == score => v,
                Some((v, _)) => next(v),
                None => 1,
            };
            assert_eq!(r.unwrap(), (Written { ver }, new));
            let t = m
                .tables
                .entry(tb.to_string())
                .or_insert((TableType::SortedSet, BTreeMap::new()));
            t.1.insert(key, (ver, new));
        }
        _ => {
            let z = g.rng.below(2) == 0;
            let r = if z {
                b.zrem(tb, &key, 0, 0)
            } else {
                b.srem(tb, &key, 0, 0)
            };
            let want_kind = if z {
                TableType::SortedSet
            } else {
                TableType::Set
            };
            match m.tables.get_mut(tb) {
                None => assert!(matches!(r, Err(StorageError::NotFound))),
                Some((k, _)) if *k != want_kind => {
                    assert!(matches!(r, Err(StorageError::WrongType)))
                }
                Some((_, mem)) => {
                    match mem.remove(&key) {
                        Some((v, _)) => assert_eq!(r.unwrap().ver, v),
                        None => assert!(matches!(r, Err(StorageError::NotFound))),
                    }
                    if mem.is_empty() {
                        m.tables.remove(tb);
                    }
                }
            }
        }
    }
}

#[test]
fn random_operations_match_a_model() {
    for seed in [1u64, 42, 0xdead_beef] {
        let d = TempDir::new("model");
        let s = open(&d);
        let mut m = Model::default();
        let mut g = Gen {
            rng: Rng::new(seed),
            long_prefix: vec![b'P'; 420],
        };
        for _round in 0..40 {
            let mut b = s.batch();
            for _ in 0..g.rng.below(40) + 1 {
                step(&mut b, &mut m, &mut g);
            }
            // Reads inside the pass see its writes; and again after the commit.
            check(&mut b, &m, &mut g);
            b.commit().unwrap();
            let mut b = s.batch();
            check(&mut b, &m, &mut g);
        }
    }
}
