//! The journal of `sync_writes on` with `write_map`: what a machine crash leaves is restored
//! to the last checkpoint and the journal replayed onto it; a daemon restart replays nothing.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::write_map::options;
use super::*;
use crate::journal;

const MIB: u64 = 1 << 20;

fn open_on(d: &TempDir, boot: &str) -> Result<Store> {
    Store::open_at_boot(
        &options(d.path(), 64 * MIB, 8 * MIB),
        Some(boot.to_string()),
    )
}

/// Writes of every kind over many passes: plain keys (some long, some deleted, one with a
/// TTL), hash, set and sorted-set tables, a table emptied, several journal segments' worth.
pub(super) fn write_history(s: &Store) {
    let now = 1_000_000;
    for pass in 0..40u32 {
        with_batch(s, |b| {
            for i in 0..10u32 {
                let k = format!("key-{pass}-{i}");
                b.put(k.as_bytes(), &vec![(pass + i) as u8; 600], 0, 0, now)
                    .unwrap();
            }
            b.put(
                &vec![b'L'; 700],
                format!("long {pass}").as_bytes(),
                0,
                0,
                now,
            )
            .unwrap();
            b.hset("h", format!("f{}", pass % 7).as_bytes(), b"hv", 0, 0, now)
                .unwrap();
            b.sadd("s", format!("m{pass}").as_bytes(), 0, 0, now)
                .unwrap();
            b.zadd("z", b"member", (pass as i64, ZaddMode::Add), 0, 0, now)
                .unwrap();
            if pass % 3 == 0 {
                b.del(format!("key-{pass}-0").as_bytes(), 0, now).unwrap();
            }
            // Values on overflow pages of their own (written by `pwrite`, see `direct`),
            // overwritten in later passes, some deleted.
            let large = format!("large-{}", pass % 5);
            b.put(
                large.as_bytes(),
                &vec![pass as u8; 5000 + 1000 * pass as usize],
                0,
                0,
                now,
            )
            .unwrap();
            if pass % 7 == 6 {
                b.del(format!("large-{}", (pass + 1) % 5).as_bytes(), 0, now)
                    .unwrap();
            }
            if pass == 20 {
                b.put(b"ttl", b"soon", 60, 0, now).unwrap();
                for m in 0..=20 {
                    b.srem("s", format!("m{m}").as_bytes(), 0, now).unwrap();
                }
            }
        });
    }
}

fn data_mdb(d: &TempDir) -> std::fs::File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(d.path().join("data").join("data.mdb"))
        .unwrap()
}

/// What a machine crash can leave on disk after the checkpoint: both meta pages claim a later
/// transaction whose pages never arrived (garbage roots), and every page past the
/// checkpoint's last page is gone.
pub(super) fn tear_data_file(d: &TempDir, ck: &journal::Checkpoint) {
    let f = data_mdb(d);
    let psize = ck.psize;
    let last_pg = u64::from_le_bytes(ck.meta[136..144].try_into().unwrap());
    let used_end = f.metadata().unwrap().len().min(64 * MIB);
    let from = (last_pg + 1) * psize;
    if used_end > from {
        f.write_all_at(&vec![0u8; (used_end - from) as usize], from)
            .unwrap();
    }
    for slot in 0..2u64 {
        let mut page = vec![0u8; 256];
        f.read_exact_at(&mut page, slot * psize).unwrap();
        // mm_dbs[1].md_root (the main database's root) and mm_txnid.
        page[16 + 24 + 48 + 40..16 + 24 + 48 + 48].copy_from_slice(&0xdead_beefu64.to_le_bytes());
        page[144..152].copy_from_slice(&(ck.txnid + 100 + slot).to_le_bytes());
        f.write_all_at(&page, slot * psize).unwrap();
    }
}

#[test]
fn a_machine_crash_is_restored_to_the_checkpoint_and_the_journal_replayed() {
    let d = TempDir::new("journal");
    // The history must stay in the journal (several segments) however slow the machine is.
    crate::journal::checkpoint::PERIODIC_HELD
        .lock()
        .unwrap()
        .push(d.path().join("data").join("journal"));
    let s = open_on(&d, "boot-1").unwrap();
    write_history(&s);
    let before = dump(&s);
    s.drop_as_in_a_crash();
    let jdir = d.path().join("data").join("journal");
    let ck = journal::read_checkpoint(&jdir)
        .unwrap()
        .expect("a checkpoint");
    let segments = std::fs::read_dir(&jdir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("wal".as_ref()))
        .count();
    assert!(
        segments >= 3,
        "the history spans several segments ({segments})"
    );
    tear_data_file(&d, &ck);

    // Opened as after a daemon restart, the torn file is what LMDB sees: the test is not
    // vacuous.
    assert!(
        open_on(&d, "boot-1").is_err(),
        "the torn file opens as it is"
    );

    let s = open_on(&d, "boot-2").unwrap();
    assert_eq!(dump(&s), before);
    let now = 1_000_000;
    with_batch(&s, |b| {
        assert_eq!(b.get(b"key-39-9", now).unwrap().value, vec![48u8; 600]);
        assert!(matches!(
            b.get(b"key-39-0", now),
            Err(StorageError::NotFound)
        ));
        assert_eq!(
            b.zscore("z", b"member", now).unwrap().1,
            (0..40).sum::<i64>()
        );
        // And it keeps working: new writes, then a clean stop and a restart on the same boot.
        b.put(b"after", b"crash", 0, 0, now).unwrap();
    });
    let after = dump(&s);
    drop(s);
    let s = open_on(&d, "boot-2").unwrap();
    assert_eq!(dump(&s), after);
}

#[test]
fn a_restart_of_the_daemon_replays_nothing() {
    let d = TempDir::new("journal");
    let s = open_on(&d, "boot-1").unwrap();
    write_history(&s);
    let before = dump(&s);
    // kill -9 of every process: the page cache keeps everything, including the records of
    // the journal after the checkpoint, which must not be applied a second time (the
    // sorted-set score is a sum: twice would show).
    s.drop_as_in_a_crash();
    let s = open_on(&d, "boot-1").unwrap();
    assert_eq!(dump(&s), before);
}

#[test]
fn a_clean_stop_checkpoints_and_drops_old_segments() {
    let d = TempDir::new("journal");
    let s = open_on(&d, "boot-1").unwrap();
    write_history(&s);
    let before = dump(&s);
    drop(s);
    let jdir = d.path().join("data").join("journal");
    let ck = journal::read_checkpoint(&jdir)
        .unwrap()
        .expect("a checkpoint");
    let gens: Vec<_> = std::fs::read_dir(&jdir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".wal")
                .map(|h| u64::from_str_radix(h, 16).unwrap())
        })
        .collect();
    assert!(
        gens.iter().all(|&g| g >= ck.pos.gen),
        "{gens:?} vs {:?}",
        ck.pos
    );
    // After a reboot the checkpoint is the whole store: nothing to replay, nothing lost.
    let s = open_on(&d, "boot-2").unwrap();
    assert_eq!(dump(&s), before);
}

#[test]
fn without_the_journal_the_checkpoint_is_dropped() {
    let d = TempDir::new("journal");
    drop(open_on(&d, "boot-1").unwrap());
    let jdir = d.path().join("data").join("journal");
    assert!(journal::read_checkpoint(&jdir).unwrap().is_some());
    let mut opts = options(d.path(), 64 * MIB, 8 * MIB);
    opts.sync_writes = false;
    let s = Store::open(&opts).unwrap();
    assert!(journal::read_checkpoint(&jdir).unwrap().is_none());
    drop(s);
}

/// A copy of the data file in the first `MIB` bytes (the pages in use here), sparse past them.
fn sparse_copy(from: &Path, to: &Path) {
    let src = std::fs::File::open(from).unwrap();
    let len = src.metadata().unwrap().len();
    let mut head = vec![0u8; (16 * MIB).min(len) as usize];
    src.read_exact_at(&mut head, 0).unwrap();
    let dst = std::fs::File::create(to).unwrap();
    dst.write_all_at(&head, 0).unwrap();
    dst.set_len(len).unwrap();
}

#[test]
fn a_backup_put_in_place_of_the_data_file_is_not_overwritten_after_a_reboot() {
    let d = TempDir::new("journal");
    let data = d.path().join("data");
    let s = open_on(&d, "boot-1").unwrap();
    with_batch(&s, |b| b.put(b"old", b"1", 0, 0, 0).unwrap());
    let at_backup = dump(&s);
    drop(s);
    sparse_copy(&data.join("data.mdb"), &d.path().join("backup.mdb"));
    let s = open_on(&d, "boot-1").unwrap();
    write_history(&s);
    drop(s);
    // Restored as the README says: the daemon stopped, the copy in place, lock.mdb removed.
    std::fs::rename(d.path().join("backup.mdb"), data.join("data.mdb")).unwrap();
    std::fs::remove_file(data.join("lock.mdb")).unwrap();
    let s = open_on(&d, "boot-2").unwrap();
    assert_eq!(dump(&s), at_backup);
    let ck = journal::read_checkpoint(&data.join("journal"))
        .unwrap()
        .unwrap();
    let ino =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(data.join("data.mdb")).unwrap());
    assert_eq!(ck.file, ino, "the checkpoints are of the restored file now");
}

/// A pass whose commit fails after its record reached the journal: after a machine crash the
/// replay must not apply it (its clients got errors), while the passes around it are kept.
#[test]
fn a_failed_commit_is_not_replayed() {
    let d = TempDir::new("journal");
    let s = open_on(&d, "boot-1").unwrap();
    with_batch(&s, |b| b.put(b"before", b"1", 0, 0, 0).unwrap());
    s.fail_next_commit
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut b = s.batch();
    b.put(b"failed", b"2", 0, 0, 0).unwrap();
    assert!(b.commit().is_err());
    let expected = dump(&s);
    let s = crash_and_reboot(&d, s);
    assert_eq!(dump(&s), expected);
    with_batch(&s, |b| {
        assert!(matches!(b.get(b"failed", 0), Err(StorageError::NotFound)));
        assert_eq!(b.get(b"before", 0).unwrap().value, b"1");
    });
}

/// Keeps the periodic checkpoints off `d`'s journal, so that its passes stay in it to be
/// replayed however slowly the machine runs the test.
pub(super) fn hold_checkpoints(d: &TempDir) {
    crate::journal::checkpoint::PERIODIC_HELD
        .lock()
        .unwrap()
        .push(d.path().join("data").join("journal"));
}

/// A machine crash under `s` (no last checkpoint, the data file torn past the checkpoint),
/// then the store opened after the reboot.
fn crash_and_reboot(d: &TempDir, s: Store) -> Store {
    s.drop_as_in_a_crash();
    let jdir = d.path().join("data").join("journal");
    let ck = journal::read_checkpoint(&jdir).unwrap().unwrap();
    tear_data_file(d, &ck);
    open_on(d, "boot-2").unwrap()
}

/// A group's state is journaled with the commands of its pass: after a machine crash the
/// replay restores both as they were committed.
#[test]
fn a_group_state_survives_the_replay_after_a_machine_crash() {
    let d = TempDir::new("journal");
    hold_checkpoints(&d);
    let s = open_on(&d, "boot-1").unwrap();
    write_history(&s);
    for pass in 0..20u32 {
        with_batch(&s, |b| {
            b.put(format!("g{pass}").as_bytes(), b"v", 0, 0, 0).unwrap();
            b.set_group_state(pass % 3, format!("applied {pass}").as_bytes())
                .unwrap();
        });
    }
    let before = dump(&s);
    let s = crash_and_reboot(&d, s);
    assert_eq!(dump(&s), before);
    with_batch(&s, |b| {
        assert_eq!(b.group_state(0).unwrap().unwrap(), b"applied 18");
        assert_eq!(b.group_state(1).unwrap().unwrap(), b"applied 19");
        assert_eq!(b.group_state(2).unwrap().unwrap(), b"applied 17");
        assert_eq!(b.get(b"g19", 0).unwrap().value, b"v");
    });
}

/// An import is journaled like the commands: after a machine crash the replay restores the
/// store with the imported range.
#[test]
fn an_import_survives_the_replay_after_a_machine_crash() {
    let d = TempDir::new("journal");
    hold_checkpoints(&d);
    let e = TempDir::new("journal");
    let from = open_on(&e, "boot-1").unwrap();
    with_batch(&from, |b| {
        for i in 0..200u32 {
            b.put(format!("from-{i}").as_bytes(), b"v", 0, 0, 0)
                .unwrap();
            b.hset("t", format!("f{i}").as_bytes(), b"v", 0, 0, 0)
                .unwrap();
        }
    });
    let snapshot = from.batch().export_slots(0..512, 0).unwrap();
    assert!(snapshot.len() > 200 * 30, "plain records and a table");
    let s = open_on(&d, "boot-1").unwrap();
    write_history(&s);
    with_batch(&s, |b| {
        b.import_slots(0..512, &snapshot).unwrap();
        b.set_group_state(0, b"snapshot").unwrap();
    });
    let before = dump(&s);
    let s = crash_and_reboot(&d, s);
    assert_eq!(dump(&s), before);
    assert_eq!(s.batch().export_slots(0..512, 0).unwrap(), snapshot);
    assert_eq!(s.batch().table_stat("t", 0).unwrap().usage.count, 200);
}
