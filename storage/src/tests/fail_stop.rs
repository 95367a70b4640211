//! Fail-stop after a failed flush (injected with the test switch): the failed pass is not
//! acknowledged, nothing later commits, no checkpoint drops the journal, and the next open
//! (the marker of a daemon that is gone) recovers from the last good checkpoint and the
//! journal; replay stops at a hole in the middle of the journal and never skips it.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::journal::{hold_checkpoints, tear_data_file, write_history};
use super::write_map::options;
use super::*;
use crate::journal;

const MIB: u64 = 1 << 20;

fn open_with(d: &TempDir, fail: FailStop) -> Store {
    let mut opts = options(d.path(), 64 * MIB, 8 * MIB);
    opts.fail_stop = fail;
    Store::open_at_boot(&opts, Some("boot-1".into())).unwrap()
}

fn jdir(d: &TempDir) -> PathBuf {
    d.path().join("data").join("journal")
}

/// The marker as a daemon that is gone leaves it (the test's own parent is alive).
fn daemon_gone(d: &TempDir) {
    let marker = jdir(d).join("fail-stop");
    assert!(marker.exists(), "the failed flush left no marker");
    fs::write(marker, "4294967295\n").unwrap();
}

fn segments(dir: &std::path::Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

#[test]
fn a_failed_flush_stops_every_later_write_and_a_restart_recovers() {
    let d = TempDir::new("failstop");
    hold_checkpoints(&d);
    let s = open_with(&d, FailStop::default().with_faults(3, 0));
    with_batch(&s, |b| b.put(b"a1", b"1", 0, 0, 0).unwrap());
    with_batch(&s, |b| b.put(b"a2", b"2", 0, 0, 0).unwrap());
    assert!(!s.fail_stopped());
    // The third flush fails: committed, not acknowledged.
    let mut b = s.batch();
    b.put(b"b", b"3", 0, 0, 0).unwrap();
    assert!(matches!(
        b.commit(),
        Err(StorageError::Stopped { committed: true })
    ));
    assert!(s.fail_stopped());
    // Nothing commits any more; reads go on from what is committed.
    let mut b = s.batch();
    b.put(b"c", b"4", 0, 0, 0).unwrap();
    assert!(matches!(
        b.commit(),
        Err(StorageError::Stopped { committed: false })
    ));
    assert_eq!(s.batch().get(b"a2", 0).unwrap().value, b"2");
    assert!(s.batch().get(b"c", 0).is_err());
    let ck = journal::read_checkpoint(&jdir(&d)).unwrap().unwrap();
    // A clean stop takes no last checkpoint once stopped: the journal keeps everything.
    drop(s);
    let after = journal::read_checkpoint(&jdir(&d)).unwrap().unwrap();
    assert_eq!(
        after.txnid, ck.txnid,
        "a checkpoint was taken after the failure"
    );
    // Worse: the machine crashed too, and the data file lost what followed the checkpoint.
    tear_data_file(&d, &ck);
    daemon_gone(&d);
    let s = open_with(&d, FailStop::default());
    assert!(!s.fail_stopped());
    assert!(
        !jdir(&d).join("fail-stop").exists(),
        "the marker outlived the recovery"
    );
    for (k, v) in [(&b"a1"[..], &b"1"[..]), (b"a2", b"2"), (b"b", b"3")] {
        assert_eq!(s.batch().get(k, 0).unwrap().value, v, "{k:?} lost");
    }
    assert!(s.batch().get(b"c", 0).is_err(), "a refused write appeared");
    with_batch(&s, |b| b.put(b"d", b"5", 0, 0, 0).unwrap());
}

#[test]
fn a_respawned_worker_of_a_stopped_daemon_stays_stopped() {
    let d = TempDir::new("failstop");
    let fail = FailStop::default().with_faults(1, 0);
    let s = open_with(&d, fail);
    let mut b = s.batch();
    b.put(b"a", b"1", 0, 0, 0).unwrap();
    assert!(b.commit().is_err());
    drop(s);
    // Same daemon (the shared flag is set): no recovery, no checkpoint, no write.
    let s = open_with(&d, fail);
    assert!(s.fail_stopped());
    assert!(jdir(&d).join("fail-stop").exists());
    let mut b = s.batch();
    b.put(b"x", b"1", 0, 0, 0).unwrap();
    assert!(matches!(
        b.commit(),
        Err(StorageError::Stopped { committed: false })
    ));
    drop(s);
    // Another daemon while the one that stopped runs (its master is this test's parent).
    let s = open_with(&d, FailStop::default());
    assert!(
        s.fail_stopped(),
        "the marker of a running daemon was ignored"
    );
}

#[test]
fn a_failed_checkpoint_keeps_the_journal_for_the_restart() {
    let d = TempDir::new("failstop");
    hold_checkpoints(&d);
    // The first checkpoint is the open's; the second, the clean stop's, fails.
    let s = open_with(&d, FailStop::default().with_faults(0, 2));
    write_history(&s);
    let before = dump(&s);
    let ck = journal::read_checkpoint(&jdir(&d)).unwrap().unwrap();
    let wal = segments(&jdir(&d), ".wal");
    assert!(
        wal.len() >= 3,
        "the history fills several segments: {wal:?}"
    );
    drop(s);
    assert_eq!(
        journal::read_checkpoint(&jdir(&d)).unwrap().unwrap().txnid,
        ck.txnid
    );
    assert_eq!(segments(&jdir(&d), ".wal"), wal, "segments were dropped");
    tear_data_file(&d, &ck);
    daemon_gone(&d);
    let s = open_with(&d, FailStop::default());
    let mut after = dump(&s);
    let mut expected = before;
    // The journal's tail moves with the recovery's own commit.
    after.retain(|(db, k, _)| !(*db == "meta" && k == b"wal"));
    expected.retain(|(db, k, _)| !(*db == "meta" && k == b"wal"));
    assert_eq!(after, expected);
}

#[test]
fn replay_stops_at_a_hole_in_a_segment_that_is_not_the_last() {
    let d = TempDir::new("failstop");
    hold_checkpoints(&d);
    let s = open_with(&d, FailStop::default());
    write_history(&s);
    with_batch(&s, |b| b.put(b"last", b"v", 0, 0, 0).unwrap());
    let ck = journal::read_checkpoint(&jdir(&d)).unwrap().unwrap();
    s.drop_as_in_a_crash();
    let wal = segments(&jdir(&d), ".wal");
    assert!(wal.len() >= 3, "{wal:?}");
    // The first record of the second segment: a changed byte fails its CRC.
    let hole = jdir(&d).join(&wal[1]);
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&hole)
        .unwrap();
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, 30).unwrap();
    f.write_all_at(&[byte[0] ^ 0xff], 30).unwrap();
    drop(f);
    tear_data_file(&d, &ck);
    let mut opts = options(d.path(), 64 * MIB, 8 * MIB);
    opts.fail_stop = FailStop::default();
    let s = Store::open_at_boot(&opts, Some("boot-2".into())).unwrap();
    // What the first segment held is there; nothing after the hole is.
    assert_eq!(s.batch().get(b"key-0-1", 0).unwrap().value, vec![1u8; 600]);
    assert!(
        s.batch().get(b"last", 0).is_err(),
        "a record past the hole was replayed"
    );
    assert!(s.batch().get(b"key-39-1", 0).is_err());
    // What was not replayed is kept aside, and the journal goes on from the hole.
    // (The replay stopped at the end of the first segment: the next one does not go on.)
    let lost = segments(&jdir(&d), ".wal.lost");
    assert_eq!(lost.len(), wal.len(), "{lost:?}");
    assert_eq!(segments(&jdir(&d), ".wal"), wal[..1].to_vec());
    with_batch(&s, |b| b.put(b"new", b"n", 0, 0, 0).unwrap());
    let ck = journal::read_checkpoint(&jdir(&d)).unwrap().unwrap();
    s.drop_as_in_a_crash();
    tear_data_file(&d, &ck);
    let s = Store::open_at_boot(&opts, Some("boot-3".into())).unwrap();
    assert_eq!(s.batch().get(b"new", 0).unwrap().value, b"n");
    assert!(s.batch().get(b"last", 0).is_err());
}
