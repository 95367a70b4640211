//! Tests of the consensus module: the shared log (reopen gives the same view, a torn tail
//! loses only its last record, garbage never panics, compaction keeps the view, group commit
//! acknowledges every append), the codec on garbage; in `suite.rs` openraft's own storage
//! test suite over the log and the state machine, in `single_node.rs` a real `Raft` over them.

mod single_node;
mod suite;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership};
use openraft::{RaftLogReader, Vote};

use super::codec;
use super::engine::{Records, ENTRY};
use super::{Applied, LogCommand, LogEngine, LogStore, TypeConfig};

/// A folder removed on drop (no tempdir crate in the workspace).
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("cluster-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
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

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
    let payload = match index % 3 {
        0 => EntryPayload::Blank,
        1 => EntryPayload::Normal(LogCommand {
            bytes: format!("command {index}").into_bytes(),
        }),
        _ => {
            let nodes = (0..3)
                .map(|i| {
                    (
                        i,
                        BasicNode {
                            addr: format!("10.0.0.{i}:9082"),
                        },
                    )
                })
                .collect::<std::collections::BTreeMap<_, _>>();
            EntryPayload::Membership(Membership::new(vec![BTreeSet::from([0, 1, 2])], nodes))
        }
    };
    Entry {
        log_id: log_id(term, index),
        payload,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// Everything openraft can read of a group: log state, vote, committed, all entries.
type Seen = (
    Option<LogId<u64>>,
    Option<LogId<u64>>,
    Option<Vote<u64>>,
    Option<LogId<u64>>,
    Vec<Entry<TypeConfig>>,
);

async fn seen(store: &mut LogStore) -> Seen {
    let state = store.get_log_state().await.expect("log state");
    let vote = store.read_vote().await.expect("vote");
    let committed = store.read_committed().await.expect("committed");
    let entries = store.try_get_log_entries(..).await.expect("entries");
    (
        state.last_purged_log_id,
        state.last_log_id,
        vote,
        committed,
        entries,
    )
}

/// Two groups, interleaved: appends, votes, a truncate, a purge, a committed id.
async fn fill(engine: &LogEngine) {
    let (mut a, mut b) = (engine.group(0), engine.group(7));
    a.blocking_append((1..=10).map(|i| entry(1, i)))
        .await
        .expect("append");
    b.blocking_append((1..=4).map(|i| entry(1, i)))
        .await
        .expect("append");
    a.save_vote(&Vote::new(2, 1)).await.expect("vote");
    a.truncate(log_id(1, 8)).await.expect("truncate");
    a.blocking_append((8..=12).map(|i| entry(2, i)))
        .await
        .expect("append");
    a.purge(log_id(1, 3)).await.expect("purge");
    b.save_vote(&Vote::new_committed(3, 2)).await.expect("vote");
    b.save_committed(Some(log_id(1, 2)))
        .await
        .expect("committed");
    b.purge(log_id(1, 6))
        .await
        .expect("purge beyond the last entry");
}

#[test]
fn reopen_gives_the_same_view() {
    let dir = TempDir::new("reopen");
    rt().block_on(async {
        let engine = LogEngine::open(dir.path()).expect("open");
        fill(&engine).await;
        let (a, b) = (
            seen(&mut engine.group(0)).await,
            seen(&mut engine.group(7)).await,
        );
        assert_eq!(a.0, Some(log_id(1, 3)));
        assert_eq!(a.1, Some(log_id(2, 12)));
        assert_eq!(a.2, Some(Vote::new(2, 1)));
        let indexes: Vec<u64> = a.4.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, (4..=12).collect::<Vec<_>>());
        assert_eq!(a.4[4], entry(2, 8));
        assert_eq!(
            (b.0, b.1, b.3, b.4.len()),
            (
                Some(log_id(1, 6)),
                Some(log_id(1, 6)),
                Some(log_id(1, 2)),
                0
            )
        );
        assert_eq!(
            seen(&mut engine.group(3)).await,
            (None, None, None, None, vec![])
        );
        drop(engine);

        let engine = LogEngine::open(dir.path()).expect("reopen");
        assert_eq!(seen(&mut engine.group(0)).await, a);
        assert_eq!(seen(&mut engine.group(7)).await, b);

        // Compaction keeps the view, shrinks the file, and survives a reopen.
        let (before, live) = engine.sizes();
        assert!(live < before);
        engine.compact().expect("compact");
        assert!(engine.sizes().0 < before);
        assert_eq!(seen(&mut engine.group(0)).await, a);
        engine
            .group(7)
            .blocking_append([entry(3, 7)])
            .await
            .expect("append");
        drop(engine);
        let engine = LogEngine::open(dir.path()).expect("reopen");
        assert_eq!(seen(&mut engine.group(0)).await, a);
        assert_eq!(seen(&mut engine.group(7)).await.4, vec![entry(3, 7)]);
    });
}

#[test]
fn a_torn_tail_loses_only_the_last_record() {
    let dir = TempDir::new("torn");
    let path = dir.path().join("raft/log");
    let (before, after) = rt().block_on(async {
        let engine = LogEngine::open(dir.path()).expect("open");
        fill(&engine).await;
        let before = (
            seen(&mut engine.group(0)).await,
            seen(&mut engine.group(7)).await,
        );
        engine
            .group(0)
            .blocking_append([entry(2, 13)])
            .await
            .expect("append");
        let after = (
            seen(&mut engine.group(0)).await,
            seen(&mut engine.group(7)).await,
        );
        (before, after)
    });
    let whole = std::fs::read(&path).expect("read log");
    let mut last = Records::default();
    last.push(0, ENTRY, |out| codec::put_entry(out, &entry(2, 13)));
    let start = whole.len() - last.len();
    for cut in start..=whole.len() {
        let copy = TempDir::new("torn-copy");
        std::fs::create_dir_all(copy.path().join("raft")).expect("mkdir");
        std::fs::write(copy.path().join("raft/log"), &whole[..cut]).expect("write");
        rt().block_on(async {
            let engine = LogEngine::open(copy.path()).expect("open a torn log");
            let now = (
                seen(&mut engine.group(0)).await,
                seen(&mut engine.group(7)).await,
            );
            let expected = if cut == whole.len() { &after } else { &before };
            assert_eq!(&now, expected, "cut at {cut}");
            // The log goes on after the cut.
            engine
                .group(7)
                .blocking_append([entry(4, 7)])
                .await
                .expect("append");
            drop(engine);
            let engine = LogEngine::open(copy.path()).expect("reopen");
            assert_eq!(
                seen(&mut engine.group(7)).await.4,
                vec![entry(4, 7)],
                "cut at {cut}"
            );
        });
    }
}

/// A xorshift: garbage that a test can repeat.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn garbage_files_do_not_panic() {
    for seed in 0..40u64 {
        let dir = TempDir::new("garbage");
        std::fs::create_dir_all(dir.path().join("raft")).expect("mkdir");
        let len = (seed as usize * 37) % 600;
        // Half of them start like a log, so the records themselves are garbage.
        let mut bytes = if seed % 2 == 0 {
            b"HSRAFTL1".to_vec()
        } else {
            Vec::new()
        };
        bytes.extend(garbage(seed, len));
        std::fs::write(dir.path().join("raft/log"), &bytes).expect("write");
        rt().block_on(async {
            if let Ok(engine) = LogEngine::open(dir.path()) {
                for g in 0..4 {
                    let _ = seen(&mut engine.group(g)).await;
                }
                engine
                    .group(1)
                    .blocking_append([entry(1, 1)])
                    .await
                    .expect("append");
            }
        });
    }
    // A byte flipped in a middle record: the log ends just before it.
    let dir = TempDir::new("flipped");
    rt().block_on(async {
        let engine = LogEngine::open(dir.path()).expect("open");
        engine
            .group(0)
            .blocking_append((1..=5).map(|i| entry(1, i)))
            .await
            .expect("append");
    });
    let path = dir.path().join("raft/log");
    let mut bytes = std::fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes).expect("write");
    rt().block_on(async {
        let engine = LogEngine::open(dir.path()).expect("open");
        let entries = seen(&mut engine.group(0)).await.4;
        assert!(entries.len() < 5);
        assert_eq!(
            entries,
            (1..=entries.len() as u64)
                .map(|i| entry(1, i))
                .collect::<Vec<_>>()
        );
    });
}

#[test]
fn a_file_that_is_not_a_log_is_refused_and_left_alone() {
    let dir = TempDir::new("foreign");
    std::fs::create_dir_all(dir.path().join("raft")).expect("mkdir");
    std::fs::write(dir.path().join("raft/log"), b"some other file").expect("write");
    assert!(LogEngine::open(dir.path()).is_err());
    assert_eq!(
        std::fs::read(dir.path().join("raft/log")).expect("read"),
        b"some other file"
    );
}

#[test]
fn group_commit_acknowledges_every_append_of_every_group() {
    let dir = TempDir::new("group-commit");
    let engine = LogEngine::open(dir.path()).expect("open");
    let (tx, rx) = mpsc::channel();
    let writers: Vec<_> = (0..4u32)
        .map(|g| {
            let (engine, tx) = (engine.clone(), tx.clone());
            std::thread::spawn(move || {
                for i in 1..=50 {
                    let mut records = Records::default();
                    records.push(g, ENTRY, |out| codec::put_entry(out, &entry(1, i)));
                    let tx = tx.clone();
                    let done = Box::new(move |r: std::io::Result<()>| {
                        tx.send((g, i, r.is_ok())).expect("send")
                    });
                    engine.write(records, Some(done)).expect("write");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    drop(tx);
    let acks: Vec<_> = rx.iter().collect();
    assert_eq!(acks.len(), 200);
    assert!(acks.iter().all(|a| a.2));
    assert!((1..=200).contains(&engine.syncs()));
    // A vote returns only once a sync covered it.
    let before = engine.syncs();
    rt().block_on(engine.group(9).save_vote(&Vote::new(5, 0)))
        .expect("vote");
    assert!(engine.syncs() > before);
    rt().block_on(async {
        for g in 0..4 {
            assert_eq!(seen(&mut engine.group(g)).await.4.len(), 50);
        }
    });
}

#[test]
fn automatic_compaction_when_garbage_dominates() {
    let dir = TempDir::new("auto-compact");
    rt().block_on(async {
        let engine = LogEngine::open_with(dir.path(), 4096).expect("open");
        let mut a = engine.group(0);
        for round in 0..20u64 {
            let first = round * 10 + 1;
            a.blocking_append((first..first + 10).map(|i| entry(1, i)))
                .await
                .expect("append");
            a.purge(log_id(1, first + 8)).await.expect("purge");
        }
        // The flusher compacts after a sync; one more sync lets it.
        a.save_vote(&Vote::new(1, 1)).await.expect("vote");
        let (len, live) = engine.sizes();
        assert!(len < 4096 || len - live <= live, "len {len} live {live}");
        assert!(len < 8192, "never compacted: {len} bytes");
        let view = seen(&mut a).await;
        drop((a, engine));
        let engine = LogEngine::open(dir.path()).expect("reopen");
        assert_eq!(seen(&mut engine.group(0)).await, view);
        assert_eq!(view.4, vec![entry(1, 200)]);
    });
}

#[test]
fn decoders_refuse_garbage() {
    for seed in 0..2000u64 {
        let bytes = garbage(seed, (seed % 64) as usize);
        let _ = codec::decode_entry(&bytes);
        let _ = super::state_machine::decode_applied_state(&bytes);
        let _ = Applied::decode(&bytes);
    }
    let mut out = Vec::new();
    codec::put_entry(&mut out, &entry(1, 2));
    assert_eq!(codec::decode_entry(&out), Ok(entry(1, 2)));
    for cut in 0..out.len() {
        assert!(codec::decode_entry(&out[..cut]).is_err());
    }
    out.push(0);
    assert!(codec::decode_entry(&out).is_err());
    for a in [
        Applied::Nothing,
        Applied::Counted { ver: 3, value: -9 },
        Applied::Float(1.5),
        Applied::VersionMismatch { current: 7 },
        Applied::Invalid("empty key".into()),
        Applied::Undecodable,
        Applied::Batch(vec![
            Applied::Written { ver: 1 },
            Applied::Invalid("why".into()),
            Applied::NotFound,
        ]),
    ] {
        let mut out = Vec::new();
        a.encode(&mut out);
        assert_eq!(Applied::decode(&out), Ok(a.clone()));
        if matches!(a, Applied::Batch(_)) {
            for cut in 0..out.len() {
                assert!(Applied::decode(&out[..cut]).is_err(), "cut at {cut}");
            }
        }
    }
    // Batches do not nest.
    let mut nested = Vec::new();
    Applied::Batch(vec![Applied::Batch(vec![Applied::Done])]).encode(&mut nested);
    assert!(Applied::decode(&nested).is_err());
}

#[test]
fn a_record_over_the_limit_is_refused_and_the_log_goes_on() {
    let dir = TempDir::new("too-large");
    rt().block_on(async {
        let engine = LogEngine::open(dir.path()).expect("open");
        let mut records = Records::default();
        records.push(0, ENTRY, |out| out.resize(out.len() + (256 << 20) + 1, 0));
        assert!(engine.write(records, None).is_err());
        engine
            .group(0)
            .blocking_append([entry(1, 1)])
            .await
            .expect("append");
        drop(engine);
        let engine = LogEngine::open(dir.path()).expect("reopen");
        assert_eq!(seen(&mut engine.group(0)).await.4, vec![entry(1, 1)]);
    });
}

#[test]
fn one_engine_at_a_time_holds_the_folder() {
    let dir = TempDir::new("lock");
    let engine = LogEngine::open(dir.path()).expect("open");
    let second = LogEngine::open(dir.path());
    assert_eq!(
        second.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::WouldBlock)
    );
    drop(engine);
    LogEngine::open(dir.path()).expect("open once the first is gone");
}
