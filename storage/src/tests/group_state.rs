//! A group's replication state (`Batch::set_group_state`): read back in its own pass and
//! later ones, kept across a reopen, committed with the pass's commands or not at all, and in
//! no statistic.

use super::*;

#[test]
fn a_group_state_is_read_back_in_its_pass_after_commit_and_after_reopen() {
    let d = TempDir::new("gs");
    let s = open(&d);
    with_batch(&s, |b| {
        assert_eq!(b.group_state(3).unwrap(), None);
        b.set_group_state(3, b"applied 7").unwrap();
        b.set_group_state(4, b"").unwrap();
        assert!(b.has_writes());
        assert_eq!(
            b.group_state(3).unwrap().as_deref(),
            Some(&b"applied 7"[..])
        );
        assert_eq!(b.group_state(4).unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(b.group_state(5).unwrap(), None);
    });
    with_batch(&s, |b| {
        assert_eq!(
            b.group_state(3).unwrap().as_deref(),
            Some(&b"applied 7"[..])
        );
        b.set_group_state(3, b"applied 8").unwrap();
        b.set_group_state(u32::MAX, &[0xff; 300]).unwrap();
    });
    drop(s);
    let s = open(&d);
    with_batch(&s, |b| {
        assert_eq!(
            b.group_state(3).unwrap().as_deref(),
            Some(&b"applied 8"[..])
        );
        assert_eq!(b.group_state(4).unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(b.group_state(u32::MAX).unwrap(), Some(vec![0xff; 300]));
    });
}

#[test]
fn a_group_state_commits_with_the_pass_s_commands_or_not_at_all() {
    let d = TempDir::new("gs");
    let s = open(&d);
    let before = dump(&s);
    {
        let mut b = s.batch();
        b.put(b"k", b"v", 0, 0, 0).unwrap();
        b.set_group_state(0, b"applied 1").unwrap();
        assert_eq!(
            b.group_state(0).unwrap().as_deref(),
            Some(&b"applied 1"[..])
        );
        // Dropped without commit: aborted.
    }
    assert!(dump(&s) == before, "an aborted pass left something");
    with_batch(&s, |b| {
        assert!(matches!(b.get(b"k", 0), Err(StorageError::NotFound)));
        assert_eq!(b.group_state(0).unwrap(), None);
        b.put(b"k", b"v", 0, 0, 0).unwrap();
        b.set_group_state(0, b"applied 1").unwrap();
    });
    with_batch(&s, |b| {
        assert_eq!(b.get(b"k", 0).unwrap().value, b"v");
        assert_eq!(
            b.group_state(0).unwrap().as_deref(),
            Some(&b"applied 1"[..])
        );
    });
}

#[test]
fn a_group_state_is_in_no_statistic() {
    let d = TempDir::new("gs");
    let s = open(&d);
    with_batch(&s, |b| {
        b.put(b"k", b"v", 0, 0, 0).unwrap();
        b.hset("h", b"f", b"v", 0, 0, 0).unwrap();
    });
    let figures = |s: &Store| {
        let mut b = s.batch();
        (b.totals().unwrap(), b.all_tables(0).unwrap(), s.map_usage())
    };
    let before = figures(&s);
    with_batch(&s, |b| {
        for g in 0..64 {
            b.set_group_state(g, &[g as u8; 100]).unwrap();
        }
    });
    assert_eq!(figures(&s), before);
    with_batch(&s, |b| {
        let keys = b.keys(&q(0, 100), 0).unwrap();
        assert_eq!(keys_of(&keys), vec![b"k".to_vec()]);
    });
}
