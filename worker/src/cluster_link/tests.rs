//! The link's tests: a helper played by a thread on a Unix socket.

use super::*;
use cluster::local::Frame;
use mio::{Events, Poll};
use std::os::unix::net::{UnixListener, UnixStream as StdStream};
use std::sync::mpsc;
use std::thread;

const LINK: Token = Token(7);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("huststore-link-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Reads whole frames from a helper's connection (blocking).
fn read_frame(s: &mut StdStream, buf: &mut Vec<u8>) -> Option<Frame> {
    loop {
        if let Some((f, used)) = decode_prefix(buf).unwrap() {
            buf.drain(..used);
            return Some(f);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn applied(id: u64, ver: u32) -> Vec<u8> {
    let mut out = Vec::new();
    Frame {
        id,
        message: Message::Applied(Applied::Written { ver }),
    }
    .encode(&mut out);
    out
}

/// Drives the link's poll until `n` answers arrived (or 5 s).
fn answers(poll: &mut Poll, link: &mut Link, n: usize) -> Vec<(u64, Answer)> {
    let mut got = Vec::new();
    let mut events = Events::with_capacity(16);
    let until = Instant::now() + Duration::from_secs(5);
    while got.len() < n && Instant::now() < until {
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        let now = Instant::now();
        if events.iter().any(|e| e.token() == LINK) {
            link.on_ready(now);
        }
        link.tick(now);
        got.extend(link.take_answers());
    }
    got
}

fn attached(path: PathBuf) -> (Poll, Link) {
    attached_waiting(path, Duration::from_secs(5))
}

fn attached_waiting(path: PathBuf, wait: Duration) -> (Poll, Link) {
    let poll = Poll::new().unwrap();
    let mut link = Link::new(path).queue_for(wait);
    link.attach(poll.registry(), LINK, Instant::now()).unwrap();
    (poll, link)
}

#[test]
fn answers_in_any_order_and_split_frames() {
    let path = temp_dir("order").join("cluster.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let helper = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let frames: Vec<Frame> = (0..3)
            .map(|_| read_frame(&mut s, &mut buf).unwrap())
            .collect();
        assert_eq!(frames[2].message, Message::ReadBarrier { group: 2 });
        let ids: Vec<u64> = frames.iter().map(|f| f.id).collect();
        // Answered last first, the middle one's frame split byte by byte.
        let mut ready = Vec::new();
        Frame {
            id: ids[2],
            message: Message::ReadReady,
        }
        .encode(&mut ready);
        s.write_all(&ready).unwrap();
        for b in applied(ids[1], 2) {
            s.write_all(&[b]).unwrap();
            thread::sleep(Duration::from_millis(1));
        }
        let mut two = applied(ids[0], 1);
        two.truncate(5);
        s.write_all(&two).unwrap();
        thread::sleep(Duration::from_millis(20));
        s.write_all(&applied(ids[0], 1)[5..]).unwrap();
        thread::sleep(Duration::from_millis(200));
    });
    let (mut poll, mut link) = attached(path);
    assert!(link.connected());
    let mut ids: Vec<u64> = (0..2).map(|g| link.propose(g, vec![g as u8; 10])).collect();
    ids.push(link.read_barrier(2));
    let got = answers(&mut poll, &mut link, 3);
    let expect: Vec<(u64, Answer)> = vec![
        (ids[2], Answer::ReadReady),
        (ids[1], Answer::Applied(Applied::Written { ver: 2 })),
        (ids[0], Answer::Applied(Applied::Written { ver: 1 })),
    ];
    assert_eq!(got, expect);
    helper.join().unwrap();
}

#[test]
fn large_proposals_are_buffered_across_writable_events() {
    let path = temp_dir("large").join("cluster.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let helper = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        // Let the link's socket buffer fill before reading.
        thread::sleep(Duration::from_millis(100));
        let mut lens = Vec::new();
        for _ in 0..4 {
            let f = read_frame(&mut s, &mut buf).unwrap();
            if let Message::Propose { command, .. } = &f.message {
                lens.push(command.len());
            }
            s.write_all(&applied(f.id, 1)).unwrap();
        }
        lens
    });
    let (mut poll, mut link) = attached(path);
    for _ in 0..4 {
        link.propose(0, vec![7; 1 << 20]);
    }
    assert_eq!(answers(&mut poll, &mut link, 4).len(), 4);
    assert_eq!(helper.join().unwrap(), vec![1 << 20; 4]);
}

#[test]
fn a_helper_that_dies_mid_request_answers_unknown_and_the_link_reconnects() {
    let path = temp_dir("dies").join("cluster.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (tx, rx) = mpsc::channel();
    let helper_path = path.clone();
    let helper = thread::spawn(move || {
        // The first helper reads one proposal and dies without answering.
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        read_frame(&mut s, &mut buf).unwrap();
        drop(s);
        drop(listener);
        // A respawned helper on the same path.
        let _ = std::fs::remove_file(&helper_path);
        let listener = UnixListener::bind(&helper_path).unwrap();
        tx.send(()).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        let f = read_frame(&mut s, &mut buf).unwrap();
        s.write_all(&applied(f.id, 5)).unwrap();
        thread::sleep(Duration::from_millis(200));
    });
    let (mut poll, mut link) = attached(path);
    let first = link.propose(1, b"cmd".to_vec());
    let got = answers(&mut poll, &mut link, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, first);
    assert!(matches!(got[0].1, Answer::Unknown(_)), "{got:?}");
    rx.recv().unwrap();
    // Connected again or not yet: the request waits for the respawned helper.
    let second = link.propose(1, b"cmd".to_vec());
    let got = answers(&mut poll, &mut link, 1);
    assert_eq!(
        got,
        vec![(second, Answer::Applied(Applied::Written { ver: 5 }))]
    );
    helper.join().unwrap();
}

#[test]
fn a_request_not_fully_written_to_a_lost_helper_is_unavailable() {
    let path = temp_dir("unsent").join("cluster.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let helper = thread::spawn(move || {
        // Reads the first small frame only, then dies with the big one half sent.
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        read_frame(&mut s, &mut buf).unwrap();
        rx.recv().unwrap();
    });
    let (mut poll, mut link) = attached(path);
    let small = link.propose(0, b"small".to_vec());
    thread::sleep(Duration::from_millis(100));
    let big = link.propose(0, vec![1; 8 << 20]);
    tx.send(()).unwrap();
    helper.join().unwrap();
    let mut got = answers(&mut poll, &mut link, 2);
    got.sort_by_key(|a| a.0);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, small);
    assert!(matches!(got[0].1, Answer::Unknown(_)), "{got:?}");
    assert_eq!(got[1].0, big);
    assert!(matches!(got[1].1, Answer::Unavailable(_)), "{got:?}");
}

#[test]
fn requests_wait_for_a_helper_not_listening_yet() {
    let path = temp_dir("late").join("cluster.sock");
    let (mut poll, mut link) = attached(path.clone());
    assert!(!link.connected());
    let ids: Vec<u64> = (0..3).map(|g| link.propose(g, vec![g as u8])).collect();
    assert_eq!(link.take_answers().count(), 0, "queued, not refused");
    assert!(link
        .next_deadline()
        .is_some_and(|at| at <= Instant::now() + QUEUED_BACKOFF));
    let listener = UnixListener::bind(&path).unwrap();
    let helper = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        for _ in 0..3 {
            let f = read_frame(&mut s, &mut buf).unwrap();
            let Message::Propose { group, .. } = f.message else {
                panic!("{:?}", f.message)
            };
            s.write_all(&applied(f.id, group + 10)).unwrap();
        }
        thread::sleep(Duration::from_millis(200));
    });
    let mut got = answers(&mut poll, &mut link, 3);
    got.sort_by_key(|a| a.0);
    let expect: Vec<(u64, Answer)> = (0..3)
        .map(|g| {
            (
                ids[g],
                Answer::Applied(Applied::Written { ver: g as u32 + 10 }),
            )
        })
        .collect();
    assert_eq!(got, expect, "sent in order once connected");
    helper.join().unwrap();
}

#[test]
fn no_helper_means_unavailable_and_garbage_ends_the_connection() {
    let dir = temp_dir("none");
    // Not waiting: refused at once.
    let (_poll, mut link) = attached_waiting(dir.join("absent.sock"), Duration::ZERO);
    assert!(!link.connected());
    assert!(link.next_deadline().is_some());
    let id = link.propose(0, Vec::new());
    let got: Vec<_> = link.take_answers().collect();
    assert!(matches!(got.as_slice(), [(i, Answer::Unavailable(_))] if *i == id));
    // Waiting: refused once the wait is over, never sent.
    let (mut poll, mut link) = attached_waiting(dir.join("absent.sock"), Duration::from_millis(60));
    let id = link.read_barrier(1);
    let got = answers(&mut poll, &mut link, 1);
    assert!(
        matches!(got.as_slice(), [(i, Answer::Unavailable(_))] if *i == id),
        "{got:?}"
    );

    let path = dir.join("garbage.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let helper = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        read_frame(&mut s, &mut buf).unwrap();
        s.write_all(&[0xff; 32]).unwrap();
        thread::sleep(Duration::from_millis(200));
    });
    let (mut poll, mut link) = attached(path);
    let id = link.propose(0, Vec::new());
    let got = answers(&mut poll, &mut link, 1);
    assert!(matches!(got.as_slice(), [(i, Answer::Unknown(_))] if *i == id));
    assert!(!link.connected());
    helper.join().unwrap();
}
