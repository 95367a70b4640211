//! One client connection: an explicit state machine over its own read and write buffers.
//! Bytes come in through [`Conn::read_available`], complete requests go out to a dispatcher in
//! order (pipelining), and replies are appended to the write buffer, which is written only
//! after the pass's writes are committed and their journal flush is durable. The connection
//! owns all of its state, the pass it joined and the flush it holds for included; the loop
//! acts only on its answers ([`Served`], [`AfterCommit`], [`Expiry`]): registering interest,
//! closing, scheduling. It never knows the route table, the services or the store.

use crate::http::{
    self, BodyFraming, ChunkProgress, ChunkedDecoder, FramingError, Head, HeadParse, Response,
};
use crate::metrics::SharedMetrics;
use crate::outq::OutQueue;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read};
use std::time::{Duration, Instant};

mod reply;
#[cfg(test)]
mod tests;

pub use reply::AfterCommit;
use reply::PassReplies;

/// Consumed bytes are dropped from the front of the read buffer once they pass this size.
const READ_CHUNK: usize = 64 * 1024;
/// Buffers larger than this are freed when the connection goes idle.
const IDLE_BUFFER_KEEP: usize = 16 * 1024;
/// The worker's scratch buffer for reads.
pub const SCRATCH_SIZE: usize = 64 * 1024;

/// Where a connection is in its request/response cycle.
#[derive(Debug)]
enum State {
    /// Waiting for (the rest of) a request head; with an empty buffer the connection is idle.
    ReadHead,
    /// Reading a body framed by `Content-Length`.
    ReadBody {
        head: Head,
        body: Vec<u8>,
        remaining: u64,
    },
    /// Reading a `chunked` body.
    ReadChunked {
        head: Head,
        body: Vec<u8>,
        decoder: ChunkedDecoder,
    },
    /// Dropping the body of a request already answered (a `413` by `Content-Length`), so the
    /// connection stays usable.
    Discard { remaining: u64 },
    /// A handler parked the request (long poll, RPC, debug sleep) until `deadline` at the
    /// latest; requests pipelined behind it wait in the read buffer.
    Parked {
        minor: u8,
        keep_alive: bool,
        deadline: Instant,
    },
    /// The last reply is queued; close once it is written.
    Closing,
}

/// What a dispatcher made of a request.
pub enum Outcome {
    Reply(Response),
    /// Answer later, through [`Conn::finish_parked`], by `deadline` at the latest.
    Park {
        deadline: Instant,
    },
}

/// Result of a step on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Continue,
    Close,
}

/// What the loop does with a connection after serving its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// It broke, is done, or its client left: close it.
    Close,
    /// Replies are queued: put it on the pass's dirty list (and schedule its timer).
    Write,
    /// Nothing to write yet: only schedule its timer.
    Wait,
}

/// What a timer that fired means for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Its deadline moved on: schedule it again.
    NotYet,
    /// Its parked request timed out: answer it.
    Parked,
    /// Idle keep-alive, a head or body that took too long, or a client that does not read its
    /// replies: close without a reply, as nginx does.
    Close,
}

pub struct Conn {
    stream: TcpStream,
    /// The client's address (for the access log).
    peer: Option<std::net::SocketAddr>,
    /// Distinguishes this connection from earlier ones in the same slab slot.
    generation: u64,
    state: State,
    inbuf: Vec<u8>,
    /// Bytes of `inbuf` already consumed.
    in_start: usize,
    /// How far the search for the end of the current head got.
    scanned: usize,
    out: OutQueue,
    /// The peer closed its side; finish what is queued, then close.
    peer_closed: bool,
    /// Set when the worker retires: close after the request in progress.
    draining: bool,
    accepted_at: Instant,
    /// Requests answered so far.
    served: u64,
    /// When the current partial request started (header timeout) or the connection went idle.
    since: Instant,
    /// Earliest timer entry scheduled for this connection, to avoid flooding the timer heap.
    scheduled: Option<Instant>,
    /// The socket is registered for writability too.
    writable_interest: bool,
    /// A request head has started arriving (its header timeout runs from `since`).
    head_started: bool,
    /// Replies were queued on this connection in this pass: it joined the pass, and they
    /// must wait for its commit.
    pass: Option<PassReplies>,
    /// The journal flush (ticket) that must be done before what is queued may be written; 0
    /// for none (see [`Conn::after_commit`]).
    hold: u64,
}

/// Limits the connection enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body: u64,
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
}

impl Conn {
    pub fn new(
        stream: TcpStream,
        peer: Option<std::net::SocketAddr>,
        generation: u64,
        now: Instant,
    ) -> Conn {
        Conn {
            stream,
            peer,
            generation,
            state: State::ReadHead,
            inbuf: Vec::new(),
            in_start: 0,
            scanned: 0,
            out: OutQueue::default(),
            peer_closed: false,
            draining: false,
            accepted_at: now,
            served: 0,
            since: now,
            scheduled: None,
            writable_interest: false,
            head_started: false,
            pass: None,
            hold: 0,
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        self.peer
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served
    }

    pub fn accepted_at(&self) -> Instant {
        self.accepted_at
    }

    pub fn is_parked(&self) -> bool {
        matches!(self.state, State::Parked { .. })
    }

    /// The worker retires: close after the request in progress.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    pub fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.reregister(&mut self.stream, token, interest)
    }

    pub fn deregister(&mut self, registry: &Registry) {
        // The socket closes right after; a failure changes nothing.
        let _ = registry.deregister(&mut self.stream);
    }

    /// Reads everything the socket has, through the worker's `scratch` buffer, so an idle
    /// connection holds no read buffer of its own and no buffer is zeroed per read. `Close`
    /// when the connection broke; a clean close by the peer sets [`Conn::peer_closed`].
    pub fn read_available(&mut self, scratch: &mut [u8], metrics: &SharedMetrics) -> Step {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    self.peer_closed = true;
                    return Step::Continue;
                }
                Ok(n) => {
                    metrics.bytes_in(n);
                    if self.in_start > 0 && self.in_start == self.inbuf.len() {
                        self.inbuf.clear();
                        self.in_start = 0;
                    } else if self.in_start > READ_CHUNK {
                        self.inbuf.drain(..self.in_start);
                        self.scanned -= self.in_start.min(self.scanned);
                        self.in_start = 0;
                    }
                    self.inbuf.extend_from_slice(&scratch[..n]);
                    if n < scratch.len() {
                        // A short read means the socket is drained for now; skip the extra
                        // syscall that would only say WouldBlock.
                        return Step::Continue;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Close,
            }
        }
    }

    /// Gives back buffer memory an idle connection no longer needs (10k idle keep-alive
    /// connections must stay cheap).
    fn trim_buffers(&mut self) {
        if self.in_start == self.inbuf.len() && self.inbuf.capacity() > IDLE_BUFFER_KEEP {
            self.inbuf = Vec::new();
            self.in_start = 0;
        }
        self.out.shrink();
    }

    fn buffered(&self) -> &[u8] {
        &self.inbuf[self.in_start..]
    }

    fn consume(&mut self, n: usize) {
        self.in_start += n;
        self.scanned = 0;
        if self.in_start == self.inbuf.len() {
            self.inbuf.clear();
            self.in_start = 0;
        }
    }

    /// True when nothing is in progress: no partial request, nothing to write, not parked.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::ReadHead)
            && self.in_start == self.inbuf.len()
            && self.out.is_empty()
    }

    fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Serves every complete request in the read buffer, in order, until the buffer runs dry,
    /// a request parks, or the connection is closing.
    pub fn process(
        &mut self,
        limits: &Limits,
        now: Instant,
        dispatch: &mut dyn FnMut(&Head, &[u8]) -> Outcome,
    ) -> Step {
        loop {
            let state = std::mem::replace(&mut self.state, State::Closing);
            match state {
                State::ReadHead => {
                    if self.buffered().is_empty() {
                        self.state = State::ReadHead;
                        break;
                    }
                    if !self.head_started {
                        self.head_started = true;
                        self.since = now;
                    }
                    match http::parse_head(self.buffered(), self.scanned) {
                        Ok(HeadParse::Partial { scanned }) => {
                            self.scanned = scanned;
                            self.state = State::ReadHead;
                            break;
                        }
                        Err(e) => {
                            self.reply_framing_error(e);
                            break;
                        }
                        Ok(HeadParse::Complete { head, len }) => {
                            self.head_started = false;
                            self.since = now;
                            self.consume(len);
                            self.start_body(head, limits, dispatch);
                        }
                    }
                }
                State::ReadBody {
                    head,
                    mut body,
                    remaining,
                } => {
                    let take = (remaining as usize).min(self.buffered().len());
                    body.extend_from_slice(&self.buffered()[..take]);
                    self.consume(take);
                    if take > 0 {
                        self.since = now;
                    }
                    let remaining = remaining - take as u64;
                    if remaining > 0 {
                        self.state = State::ReadBody {
                            head,
                            body,
                            remaining,
                        };
                        break;
                    }
                    self.dispatch(head, &body, dispatch);
                }
                State::ReadChunked {
                    head,
                    mut body,
                    mut decoder,
                } => {
                    let input = &self.inbuf[self.in_start..];
                    match decoder.feed(input, &mut body, limits.max_body) {
                        Ok(ChunkProgress::NeedMore(n)) => {
                            if n > 0 {
                                self.since = now;
                            }
                            self.consume(n);
                            self.state = State::ReadChunked {
                                head,
                                body,
                                decoder,
                            };
                            break;
                        }
                        Ok(ChunkProgress::Done(n)) => {
                            self.consume(n);
                            self.dispatch(head, &body, dispatch);
                        }
                        Err(e) => {
                            self.reply_framing_error_to(e, head.minor);
                            break;
                        }
                    }
                }
                State::Discard { remaining } => {
                    let take = (remaining as usize).min(self.buffered().len());
                    self.consume(take);
                    let remaining = remaining - take as u64;
                    if remaining > 0 {
                        self.state = State::Discard { remaining };
                        break;
                    }
                    self.state = self.after_reply_state(true);
                }
                parked @ State::Parked { .. } => {
                    self.state = parked;
                    break;
                }
                State::Closing => {
                    self.state = State::Closing;
                    break;
                }
            }
        }
        if matches!(self.state, State::Closing) && !self.has_output() {
            return Step::Close;
        }
        Step::Continue
    }

    /// A head is complete: answer the HTTP-layer `413` or set up the body.
    fn start_body(
        &mut self,
        head: Head,
        limits: &Limits,
        dispatch: &mut dyn FnMut(&Head, &[u8]) -> Outcome,
    ) {
        match head.framing {
            BodyFraming::None => self.dispatch(head, &[], dispatch),
            BodyFraming::Length(n) if n > limits.max_body => {
                // The client that asked for 100-continue will not send the body; anyone else
                // will, and we skip it so the connection stays usable.
                let discard = !head.expect_continue;
                let keep_alive = head.keep_alive && discard && !self.draining;
                self.queue_reply(Response::empty(413), keep_alive, head.minor);
                self.state = if !keep_alive {
                    State::Closing
                } else {
                    State::Discard { remaining: n }
                };
            }
            BodyFraming::Length(n) => {
                if head.expect_continue && self.buffered().is_empty() {
                    self.out.push_bytes(http::CONTINUE);
                }
                self.state = State::ReadBody {
                    head,
                    body: Vec::with_capacity(n.min(1 << 20) as usize),
                    remaining: n,
                };
            }
            BodyFraming::Chunked => {
                if head.expect_continue && self.buffered().is_empty() {
                    self.out.push_bytes(http::CONTINUE);
                }
                self.state = State::ReadChunked {
                    head,
                    body: Vec::new(),
                    decoder: ChunkedDecoder::default(),
                };
            }
        }
    }

    fn dispatch(
        &mut self,
        head: Head,
        body: &[u8],
        dispatch: &mut dyn FnMut(&Head, &[u8]) -> Outcome,
    ) {
        match dispatch(&head, body) {
            Outcome::Reply(resp) => {
                let keep_alive = head.keep_alive && !resp.close && !self.draining;
                self.queue_reply(resp, keep_alive, head.minor);
                self.state = self.after_reply_state(keep_alive);
            }
            Outcome::Park { deadline } => {
                self.state = State::Parked {
                    minor: head.minor,
                    keep_alive: head.keep_alive,
                    deadline,
                };
            }
        }
    }

    fn after_reply_state(&self, keep_alive: bool) -> State {
        if keep_alive && !self.draining {
            State::ReadHead
        } else {
            State::Closing
        }
    }

    /// Answers a parked request and goes on with any request pipelined behind it.
    pub fn finish_parked(
        &mut self,
        resp: &Response,
        limits: &Limits,
        now: Instant,
        dispatch: &mut dyn FnMut(&Head, &[u8]) -> Outcome,
    ) -> Step {
        let State::Parked {
            minor, keep_alive, ..
        } = self.state
        else {
            return Step::Continue;
        };
        let keep_alive = keep_alive && !resp.close && !self.draining;
        self.queue_reply(resp.clone(), keep_alive, minor);
        self.state = self.after_reply_state(keep_alive);
        self.since = now;
        self.process(limits, now, dispatch)
    }

    fn reply_framing_error(&mut self, e: FramingError) {
        self.reply_framing_error_to(e, 1);
    }

    fn reply_framing_error_to(&mut self, e: FramingError, minor: u8) {
        let mut resp = Response::empty(e.status);
        resp.close = e.close;
        self.queue_reply(resp, false, minor);
        self.state = State::Closing;
    }

    /// What the loop does after [`Conn::process`] or [`Conn::finish_parked`] took `step`.
    pub fn after_serving(&self, step: Step) -> Served {
        if step == Step::Close {
            return Served::Close;
        }
        if self.peer_closed {
            if self.is_parked() {
                // The client of a parked request left: forget it at once.
                return Served::Close;
            }
            if !self.has_output() && self.pass.is_none() {
                return Served::Close;
            }
        }
        if self.has_output() {
            Served::Write
        } else {
            Served::Wait
        }
    }

    /// The deadline the loop must put on its timer heap, when it holds no entry as early yet.
    pub fn schedule(&mut self, limits: &Limits) -> Option<Instant> {
        let deadline = self.deadline(limits);
        if self.scheduled.is_none_or(|s| deadline < s) {
            self.scheduled = Some(deadline);
            return Some(deadline);
        }
        None
    }

    /// A timer entry for `at` fired at `now`.
    pub fn expire(&mut self, at: Instant, now: Instant, limits: &Limits) -> Expiry {
        if self.scheduled == Some(at) {
            self.scheduled = None;
        }
        if self.deadline(limits) > now {
            Expiry::NotYet
        } else if self.is_parked() {
            Expiry::Parked
        } else {
            Expiry::Close
        }
    }

    /// When this connection times out if nothing happens.
    fn deadline(&self, limits: &Limits) -> Instant {
        match &self.state {
            State::Parked { deadline, .. } => *deadline,
            State::ReadHead if self.buffered().is_empty() && !self.has_output() => {
                self.since + limits.keepalive_timeout
            }
            _ if self.has_output() => self.since + limits.keepalive_timeout,
            _ => self.since + limits.header_timeout,
        }
    }
}
