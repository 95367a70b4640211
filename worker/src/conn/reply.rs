//! A connection's replies: queued in the pass that produced them, rewritten as `500`s when
//! that pass's commit fails, held while a journal flush they may depend on is outstanding
//! (a write's reply for its own flush, a read's because it may have seen such a write), and
//! written out once both allow, never before. [`Conn::after_commit`] is the one question
//! the loop asks at the end of a pass, or once a flush is over.

use super::{Conn, State, Step};
use crate::flusher::{Committed, Tickets};
use crate::http::Response;
use crate::metrics::SharedMetrics;
use crate::outq::Flushed;
use mio::Interest;

/// What the loop does with a connection at the end of a pass (after the commit) or once the
/// journal flush it held for is over: the answer of [`Conn::after_commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCommit {
    /// Its replies wait for a journal flush still outstanding: keep it on the held list.
    Hold,
    /// Close it without its replies: its writes' journal flush failed.
    FlushFailed,
    /// Close it: its socket broke, or its last reply is out.
    Close,
    /// Everything queued is written; `watch`: the interest to re-register (it changed).
    Sent { watch: Option<Interest> },
    /// The socket took part of it; `watch` as for `Sent`. Flush again on writable events.
    Pending { watch: Option<Interest> },
}

/// Where the replies queued in the current loop pass begin (to rewrite them if the pass's
/// commit fails).
#[derive(Debug, Clone, Copy)]
pub(super) struct PassReplies {
    mark: usize,
    count: u32,
}

impl Conn {
    pub(super) fn queue_reply(&mut self, resp: Response, keep_alive: bool, minor: u8) {
        let out = &mut self.out;
        let pass = self.pass.get_or_insert_with(|| PassReplies {
            mark: out.mark(),
            count: 0,
        });
        pass.count += 1;
        self.served += 1;
        resp.write_head(self.out.open_chunk(), keep_alive, minor);
        match resp.lent {
            Some(value) => self.out.push_lent(value),
            None => self.out.push_body(resp.body),
        }
    }

    /// Copies what is left of the values lent by the pass's batch (see `outq`); before the
    /// batch ends.
    pub fn own_lent(&mut self) {
        self.out.own_lent();
    }

    /// What the loop does with this connection at the end of a pass, after what became of its
    /// commit (`committed`), or once the journal flush it held for is over. Replies queued while a journal flush is
    /// outstanding wait for it: a write's reply for its own flush, a read's because it may have
    /// seen such a write. What it may write, it writes.
    pub fn after_commit(
        &mut self,
        committed: Committed,
        tickets: &Tickets,
        metrics: &SharedMetrics,
    ) -> AfterCommit {
        match committed {
            Committed::Yes => {}
            Committed::Failed(status) => self.fail_pass(status),
            // Its replies (reads may have seen the change) can be neither 200 nor an error.
            Committed::Unacknowledged if self.pass.is_some() => return AfterCommit::FlushFailed,
            Committed::Unacknowledged => {}
        }
        // Over, not durable: after a failed flush (fail-stop) no flush follows, and replies of
        // later passes (reads, 503s) must not wait for one, nor be taken for the failed pass's.
        if self.pass.is_some() && tickets.issued > tickets.over() {
            self.hold = tickets.issued;
        }
        if self.hold != 0 {
            if self.hold <= tickets.failed {
                return AfterCommit::FlushFailed;
            }
            if self.hold > tickets.durable {
                // The pass is over for this connection (`fail_pass` of a later pass must not
                // reach back into this one's replies).
                self.pass = None;
                return AfterCommit::Hold;
            }
            self.hold = 0;
        }
        if self.write_out(metrics) == Step::Close {
            return AfterCommit::Close;
        }
        let want_write = self.has_output();
        if self.is_idle() {
            self.trim_buffers();
        }
        let watch = (want_write != self.writable_interest).then(|| {
            self.writable_interest = want_write;
            if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            }
        });
        if want_write {
            AfterCommit::Pending { watch }
        } else {
            AfterCommit::Sent { watch }
        }
    }

    /// Still holding its replies for a journal flush that is not over.
    pub fn still_held(&self, tickets: &Tickets) -> bool {
        self.hold > tickets.over()
    }

    /// The pass's commit failed: every reply queued in this pass becomes a `status` (`500`; `503`
    /// when the daemon is fail-stopped, `507` when the disk is full; reads of the pass may have seen the uncommitted
    /// writes), and the connection closes after them.
    fn fail_pass(&mut self, status: u16) {
        let Some(pass) = self.pass else {
            return;
        };
        self.out.truncate_to(pass.mark);
        let mut resp = Response::empty(status);
        resp.close = true;
        for _ in 0..pass.count {
            resp.write_head(self.out.open_chunk(), false, 1);
        }
        self.state = State::Closing;
    }

    /// Writes what is queued. `Close` when the connection is done or broken.
    fn write_out(&mut self, metrics: &SharedMetrics) -> Step {
        self.pass = None;
        let (flushed, written) = self.out.write_to(&mut self.stream);
        metrics.bytes_out(written);
        match flushed {
            Flushed::Closed => return Step::Close,
            Flushed::Partly => return Step::Continue,
            Flushed::All => {}
        }
        if matches!(self.state, State::Closing) {
            return Step::Close;
        }
        if self.peer_closed && !self.is_parked() {
            return Step::Close;
        }
        Step::Continue
    }
}
