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
//! a growing back-off. A request made while there is no connection (a worker just started,
//! before its helper listens; a helper being respawned) waits for one up to the link's
//! [`Link::queue_for`] (then it is `Unavailable`: it never left), and is sent once connected;
//! meanwhile reconnects are tried at least every [`QUEUED_BACKOFF`].

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
/// The longest wait between reconnects while requests wait for a connection.
pub const QUEUED_BACKOFF: Duration = Duration::from_millis(100);
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
    queued_bytes: u64,
    /// Requests sent on this connection and not answered: the stream offset their frame ends at.
    in_flight: HashMap<u64, u64>,
    inbuf: Vec<u8>,
    answers: Vec<(u64, Answer)>,
    next_id: u64,
    retry_at: Option<Instant>,
    backoff: Duration,
    /// How long a request made without a connection waits for one.
    queue_for: Duration,
    /// Requests waiting for a connection, in order, with when they give up.
    queued: Vec<(u64, Message, Instant)>,
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
            queued_bytes: 0,
            in_flight: HashMap::new(),
            inbuf: Vec::new(),
            answers: Vec::new(),
            next_id: 1,
            retry_at: None,
            backoff: MIN_BACKOFF,
            queue_for: Duration::ZERO,
            queued: Vec::new(),
        }
    }

    /// The link, with requests made while it has no connection waiting up to `wait` for one
    /// (zero, as [`Link::new`] makes it: answered `Unavailable` at once).
    pub fn queue_for(mut self, wait: Duration) -> Link {
        self.queue_for = wait;
        self
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
        if self.stream.is_some() {
            self.send(id, message);
        } else if self.queue_for.is_zero() || self.registry.is_none() {
            let why = "no cluster helper".to_string();
            self.answers.push((id, Answer::Unavailable(why)));
        } else {
            let now = Instant::now();
            self.queued.push((id, message, now + self.queue_for));
            let soon = now + QUEUED_BACKOFF;
            self.retry_at = Some(self.retry_at.map_or(soon, |at| at.min(soon)));
        }
        id
    }

    /// Queues the frame of request `id` on the connection (there is one) and writes what the
    /// socket takes.
    fn send(&mut self, id: u64, message: Message) {
        let before = self.out.len();
        Frame { id, message }.encode(&mut self.out);
        if self.out.len() - before > MAX_FRAME + 4 {
            // The helper would refuse it and drop the link with every request on it.
            self.out.truncate(before);
            let why = "write too large to replicate".to_string();
            self.answers.push((id, Answer::Unavailable(why)));
            return;
        }
        self.queued_bytes += (self.out.len() - before) as u64;
        self.in_flight.insert(id, self.queued_bytes);
        self.flush();
    }

    /// The socket is ready (the loop saw an event on the link's token).
    pub fn on_ready(&mut self, now: Instant) {
        self.flush();
        self.read(now);
    }

    /// Reconnects when a back-off is over; a request that waited its time for a connection
    /// is answered `Unavailable`.
    pub fn tick(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|at| at <= now) {
            self.connect(now);
        }
        if self.queued.iter().any(|q| q.2 <= now) {
            let (gone, kept) = std::mem::take(&mut self.queued)
                .into_iter()
                .partition(|q| q.2 <= now);
            self.queued = kept;
            for (id, _, _) in gone {
                let why = format!("no cluster helper within {:?}", self.queue_for);
                self.answers.push((id, Answer::Unavailable(why)));
            }
        }
    }

    /// When [`Link::tick`] next has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let give_up = self.queued.iter().map(|q| q.2).min();
        match (self.retry_at, give_up) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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
                for (id, message, until) in std::mem::take(&mut self.queued) {
                    // A send that fails loses the connection: the rest wait again.
                    if self.stream.is_some() {
                        self.send(id, message);
                    } else {
                        self.queued.push((id, message, until));
                    }
                }
            }
            Err(e) => {
                log::debug!("cluster helper at {}: {e}", self.path.display());
                let most = if self.queued.is_empty() {
                    MAX_BACKOFF
                } else {
                    QUEUED_BACKOFF
                };
                self.retry_at = Some(now + self.backoff.min(most));
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
        self.queued_bytes = 0;
        self.inbuf.clear();
        self.watching_writes = false;
        // The next pass's tick reconnects (no reconnect inside a read of the old socket).
        self.retry_at = Some(now.unwrap_or_else(Instant::now) + self.backoff);
    }
}

#[cfg(test)]
mod tests;
