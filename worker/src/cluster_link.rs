//! The worker's link to the node's cluster helper process (`cluster.md` §9): one nonblocking
//! Unix socket, registered with the loop's poll under its own token, over which the worker
//! hands replicated writes, read barriers, forwarded reads and report requests to the helper
//! (`cluster::local`'s frames) and
//! gets their answers back by request id, in any order. It never blocks: what the socket does
//! not take waits for the next writable event, and half a frame read waits for the rest.
//!
//! The helper may die and be respawned: the link then answers every request it had sent
//! [`Answer::Unknown`] (the helper may have proposed it: the client gets a `504`), those it
//! had not fully written [`Answer::Unavailable`] (certainly not applied), and reconnects with
//! a growing back-off. A request made while there is no connection is `Unavailable` at once.

use cluster::local::{decode_prefix, Frame, Message, MAX_FRAME};
use cluster::raft::Applied;
use mio::net::UnixStream;
use mio::{Interest, Registry, Token};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The first wait before a reconnect; it doubles up to [`MAX_BACKOFF`] while connects fail.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;

/// The helper's answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A proposal was committed and applied by this node's store.
    Applied(Applied),
    /// A read barrier is passed.
    ReadReady,
    /// An HTTP answer: a forwarded read's, or a report.
    Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Certainly not applied: the client may retry (`503`).
    Unavailable(String),
    /// It may or may not have been applied (`504`).
    Unknown(String),
}

pub struct Link {
    path: PathBuf,
    token: Token,
    /// The loop's registry (a clone), so the link can register the sockets of reconnects.
    registry: Option<Registry>,
    stream: Option<UnixStream>,
    /// Whether the socket is registered for writable events too.
    watching_writes: bool,
    /// Frames not yet taken by the socket; `out[out_at..]` is left to write.
    out: Vec<u8>,
    out_at: usize,
    /// Bytes written on this connection so far (to tell sent frames from unsent ones).
    written: u64,
    /// Bytes queued on this connection so far.
    queued: u64,
    /// Requests sent on this connection and not answered: the stream offset their frame ends at.
    in_flight: HashMap<u64, u64>,
    inbuf: Vec<u8>,
    answers: Vec<(u64, Answer)>,
    next_id: u64,
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Link {
    /// A link to the helper listening at `path`; it connects on [`Link::attach`].
    pub fn new(path: PathBuf) -> Link {
        Link {
            path,
            token: Token(usize::MAX),
            registry: None,
            stream: None,
            watching_writes: false,
            out: Vec::new(),
            out_at: 0,
            written: 0,
            queued: 0,
            in_flight: HashMap::new(),
            inbuf: Vec::new(),
            answers: Vec::new(),
            next_id: 1,
            retry_at: None,
            backoff: MIN_BACKOFF,
        }
    }

    /// Registers the link with the loop's poll under `token`, and connects.
    pub fn attach(&mut self, registry: &Registry, token: Token, now: Instant) -> io::Result<()> {
        self.registry = Some(registry.try_clone()?);
        self.token = token;
        self.connect(now);
        Ok(())
    }

    /// Whether a connection to the helper is up.
    #[cfg(test)]
    pub fn connected(&self) -> bool {
        self.stream.is_some()
    }

    /// Hands `command` (the bytes of `storage::Command::encode`) to `group`; the answer comes
    /// later from [`Link::take_answers`] under the id returned.
    pub fn propose(&mut self, group: u32, command: Vec<u8>) -> u64 {
        self.request(Message::Propose { group, command })
    }

    /// Asks for a read barrier on `group` (answered [`Answer::ReadReady`]).
    pub fn read_barrier(&mut self, group: u32) -> u64 {
        self.request(Message::ReadBarrier { group })
    }

    /// Asks the helper to GET `target` (`path?query`) from node `node`'s client address with
    /// the client's `authorization` (answered [`Answer::Reply`] or `Unavailable`).
    pub fn fetch(&mut self, node: u32, target: Vec<u8>, authorization: Vec<u8>) -> u64 {
        self.request(Message::Fetch {
            node,
            target,
            authorization,
        })
    }

    /// Asks for the report `what` (`cluster::report::Report::code`; answered
    /// [`Answer::Reply`]).
    pub fn report(&mut self, what: u8) -> u64 {
        self.request(Message::Report { what })
    }

    fn request(&mut self, message: Message) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if self.stream.is_none() {
            let why = "no cluster helper".to_string();
            self.answers.push((id, Answer::Unavailable(why)));
            return id;
        }
        let before = self.out.len();
        Frame { id, message }.encode(&mut self.out);
        if self.out.len() - before > MAX_FRAME + 4 {
            // The helper would refuse it and drop the link with every request on it.
            self.out.truncate(before);
            let why = "write too large to replicate".to_string();
            self.answers.push((id, Answer::Unavailable(why)));
            return id;
        }
        self.queued += (self.out.len() - before) as u64;
        self.in_flight.insert(id, self.queued);
        self.flush();
        id
    }

    /// The socket is ready (the loop saw an event on the link's token).
    pub fn on_ready(&mut self, now: Instant) {
        self.flush();
        self.read(now);
    }

    /// Reconnects when a back-off is over.
    pub fn tick(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|at| at <= now) {
            self.connect(now);
        }
    }

    /// When [`Link::tick`] next has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.retry_at
    }

    /// The answers that arrived since the last call, by request id.
    pub fn take_answers(&mut self) -> std::vec::Drain<'_, (u64, Answer)> {
        self.answers.drain(..)
    }

    fn connect(&mut self, now: Instant) {
        self.retry_at = None;
        let Some(registry) = &self.registry else {
            return;
        };
        let registered = UnixStream::connect(&self.path).and_then(|mut s| {
            registry.register(&mut s, self.token, Interest::READABLE)?;
            Ok(s)
        });
        match registered {
            Ok(s) => {
                log::info!("connected to the cluster helper at {}", self.path.display());
                self.stream = Some(s);
                self.watching_writes = false;
                self.backoff = MIN_BACKOFF;
            }
            Err(e) => {
                log::debug!("cluster helper at {}: {e}", self.path.display());
                self.retry_at = Some(now + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Writes what the socket takes; watches for writability while anything is left.
    fn flush(&mut self) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        while self.out_at < self.out.len() {
            match stream.write(&self.out[self.out_at..]) {
                Ok(0) => return self.lose("the cluster helper closed the link", None),
                Ok(n) => {
                    self.out_at += n;
                    self.written += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.lose(&format!("writing to the cluster helper: {e}"), None),
            }
        }
        if self.out_at == self.out.len() {
            self.out.clear();
            self.out_at = 0;
        }
        let want = !self.out.is_empty();
        if want != self.watching_writes {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let rereg = match (&self.registry, self.stream.as_mut()) {
                (Some(r), Some(s)) => r.reregister(s, self.token, interest),
                _ => Ok(()),
            };
            match rereg {
                Ok(()) => self.watching_writes = want,
                Err(e) => self.lose(&format!("watching the cluster helper link: {e}"), None),
            }
        }
    }

    fn read(&mut self, now: Instant) {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            // Read straight into the buffer's tail (no chunk allocated per event).
            let filled = self.inbuf.len();
            self.inbuf.resize(filled + READ_CHUNK, 0);
            let got = stream.read(&mut self.inbuf[filled..]);
            self.inbuf.truncate(filled + *got.as_ref().unwrap_or(&0));
            match got {
                Ok(0) => return self.lose("the cluster helper closed the link", Some(now)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let why = format!("reading from the cluster helper: {e}");
                    return self.lose(&why, Some(now));
                }
            }
            if let Err(why) = self.parse() {
                return self.lose(&why, Some(now));
            }
        }
    }

    /// Turns the complete frames of `inbuf` into answers.
    fn parse(&mut self) -> Result<(), String> {
        let mut at = 0;
        let result = loop {
            match decode_prefix(&self.inbuf[at..]) {
                Ok(None) => break Ok(()),
                Ok(Some((frame, used))) => {
                    at += used;
                    let answer = match frame.message {
                        Message::Applied(a) => Answer::Applied(a),
                        Message::ReadReady => Answer::ReadReady,
                        Message::Unavailable { why } => Answer::Unavailable(why),
                        Message::Unknown { why } => Answer::Unknown(why),
                        Message::Reply {
                            status,
                            headers,
                            body,
                        } => Answer::Reply {
                            status,
                            headers,
                            body,
                        },
                        Message::Propose { .. }
                        | Message::ReadBarrier { .. }
                        | Message::Fetch { .. }
                        | Message::Report { .. } => {
                            break Err("the cluster helper sent a request".to_string())
                        }
                    };
                    // An id not in flight was answered already (a helper's bug): dropped.
                    if self.in_flight.remove(&frame.id).is_some() {
                        self.answers.push((frame.id, answer));
                    }
                }
                Err(e) => break Err(format!("from the cluster helper: {e}")),
            }
        };
        self.inbuf.drain(..at);
        result
    }

    /// The connection is lost: answers everything in flight, and reconnects (at once when
    /// `now` is given and the link was up: a respawned helper is likely listening already;
    /// else after the back-off).
    fn lose(&mut self, why: &str, now: Option<Instant>) {
        log::error!("cluster link lost: {why}");
        if let (Some(mut s), Some(r)) = (self.stream.take(), &self.registry) {
            let _ = r.deregister(&mut s);
        }
        let written = self.written;
        let mut lost: Vec<(u64, u64)> = self.in_flight.drain().collect();
        lost.sort_unstable();
        for (id, end) in lost {
            let answer = if end <= written {
                Answer::Unknown(format!("cluster helper lost: {why}"))
            } else {
                Answer::Unavailable(format!("cluster helper lost: {why}"))
            };
            self.answers.push((id, answer));
        }
        self.out.clear();
        self.out_at = 0;
        self.written = 0;
        self.queued = 0;
        self.inbuf.clear();
        self.watching_writes = false;
        // The next pass's tick reconnects (no reconnect inside a read of the old socket).
        self.retry_at = Some(now.unwrap_or_else(Instant::now) + self.backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::local::Frame;
    use mio::{Events, Poll};
    use std::os::unix::net::{UnixListener, UnixStream as StdStream};
    use std::sync::mpsc;
    use std::thread;

    const LINK: Token = Token(7);

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("huststore-link-{name}-{}", std::process::id()));
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
        let poll = Poll::new().unwrap();
        let mut link = Link::new(path);
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
        // While down, a request is certainly not applied.
        if !link.connected() {
            let id = link.propose(1, b"cmd".to_vec());
            let got: Vec<_> = link.take_answers().collect();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].0, id);
            assert!(matches!(got[0].1, Answer::Unavailable(_)));
        }
        let until = Instant::now() + Duration::from_secs(5);
        while !link.connected() && Instant::now() < until {
            answers(&mut poll, &mut link, 0);
            thread::sleep(Duration::from_millis(10));
            link.tick(Instant::now());
        }
        assert!(
            link.connected(),
            "the link reconnects to the respawned helper"
        );
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
    fn no_helper_means_unavailable_and_garbage_ends_the_connection() {
        let dir = temp_dir("none");
        let (_poll, mut link) = attached(dir.join("absent.sock"));
        assert!(!link.connected());
        assert!(link.next_deadline().is_some());
        let id = link.propose(0, Vec::new());
        let got: Vec<_> = link.take_answers().collect();
        assert!(matches!(got.as_slice(), [(i, Answer::Unavailable(_))] if *i == id));

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
}
