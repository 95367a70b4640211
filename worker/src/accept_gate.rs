//! When a worker may accept, after nginx's `ngx_event_accept`: never past
//! `worker_connections` open connections, and not for a while after `accept(2)` failed for
//! want of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM). Without the pause an
//! edge-triggered listener with connections still queued would be retried every pass and log
//! one line per try; nginx disables its accept events for `accept_mutex_delay` (500 ms) and
//! logs each failure, we also keep the log to one line a second with a count of the rest.
//!
//! Pure bookkeeping (no sockets): the loop asks [`AcceptGate::open`] before accepting, tells
//! it of failures, and remembers the listeners it turned away, which it retries once
//! [`AcceptGate::open`] says yes again (a closed connection or the pause's end).

use std::io;
use std::time::{Duration, Instant};

/// How long accepting stops after a failure for want of resources (nginx's
/// `accept_mutex_delay` default).
pub const PAUSE: Duration = Duration::from_millis(500);
/// At most one log line per reason per this long.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Why accepting is held back, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Limit,
    Resources,
}

/// The state of one worker's accepting.
#[derive(Debug)]
pub struct AcceptGate {
    max_connections: usize,
    paused_until: Option<Instant>,
    /// Listeners turned away while closed, retried once open.
    waiting: Vec<usize>,
    /// Per reason: when its last line was logged, and how many were not since.
    logged: [(Option<Instant>, u64); 2],
}

impl AcceptGate {
    pub fn new(max_connections: usize) -> AcceptGate {
        AcceptGate {
            max_connections: max_connections.max(1),
            paused_until: None,
            waiting: Vec::new(),
            logged: [(None, 0); 2],
        }
    }

    /// May a connection be accepted now, with `open` connections held? A `false` because of
    /// the limit is logged (rate-limited).
    pub fn open(&mut self, open: usize, now: Instant) -> bool {
        if self.paused_until.is_some_and(|until| now < until) {
            return false;
        }
        self.paused_until = None;
        if open >= self.max_connections {
            let max = self.max_connections;
            self.log(Reason::Limit, now, |n| {
                format!("worker_connections ({max}) reached: not accepting until a connection closes{n}")
            });
            return false;
        }
        true
    }

    /// `listener` was turned away by [`AcceptGate::open`] or [`AcceptGate::failed`]: retry it
    /// later.
    pub fn hold(&mut self, listener: usize) {
        if !self.waiting.contains(&listener) {
            self.waiting.push(listener);
        }
    }

    /// The listeners to retry now that accepting may go on (empty while it may not).
    pub fn release(&mut self, open: usize, now: Instant) -> Vec<usize> {
        let paused = self.paused_until.is_some_and(|until| now < until);
        if self.waiting.is_empty() || paused || open >= self.max_connections {
            return Vec::new();
        }
        std::mem::take(&mut self.waiting)
    }

    /// `accept(2)` failed with `e` (neither WouldBlock nor Interrupted). Returns `true` when
    /// accepting pauses (the listener should be held).
    pub fn failed(&mut self, e: &io::Error, now: Instant) -> bool {
        let lack = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if lack {
            self.paused_until = Some(now + PAUSE);
            self.log(Reason::Resources, now, |n| {
                format!(
                    "accept failed: {e}; not accepting for {} ms{n}",
                    PAUSE.as_millis()
                )
            });
        } else {
            // ECONNABORTED and the like: one connection's trouble; the next is fine.
            log::error!("accept failed: {e}");
        }
        lack
    }

    /// When a pause ends while listeners wait for it.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.paused_until.filter(|_| !self.waiting.is_empty())
    }

    fn log(&mut self, why: Reason, now: Instant, line: impl FnOnce(String) -> String) {
        let (last, skipped) = &mut self.logged[why as usize];
        if last.is_some_and(|at| now.duration_since(at) < LOG_EVERY) {
            *skipped += 1;
            return;
        }
        let more = match *skipped {
            0 => String::new(),
            n => format!(" ({n} more since the last line)"),
        };
        *last = Some(now);
        *skipped = 0;
        log::error!("{}", line(more));
    }

    #[cfg(test)]
    fn skipped(&self, why: Reason) -> u64 {
        self.logged[why as usize].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(libc::EMFILE)
    }

    #[test]
    fn the_connection_limit_closes_the_gate_until_one_closes() {
        let now = Instant::now();
        let mut gate = AcceptGate::new(2);
        assert!(gate.open(1, now));
        assert!(!gate.open(2, now));
        gate.hold(0);
        assert!(gate.release(2, now).is_empty());
        assert_eq!(gate.release(1, now), vec![0]);
        // Released once.
        assert!(gate.release(1, now).is_empty());
    }

    #[test]
    fn a_lack_of_descriptors_pauses_accepting_and_is_logged_once_a_second() {
        let now = Instant::now();
        let mut gate = AcceptGate::new(100);
        assert!(gate.failed(&emfile(), now));
        gate.hold(3);
        assert!(!gate.open(0, now + PAUSE / 2));
        assert_eq!(gate.next_deadline(), Some(now + PAUSE));
        assert!(gate.release(0, now + PAUSE / 2).is_empty());
        assert_eq!(gate.release(0, now + PAUSE), vec![3]);
        assert!(gate.open(0, now + PAUSE));
        // A second failure within the second is counted, not logged.
        assert!(gate.failed(&emfile(), now + PAUSE));
        assert_eq!(gate.skipped(Reason::Resources), 1);
        assert!(gate.failed(&emfile(), now + LOG_EVERY + PAUSE));
        assert_eq!(gate.skipped(Reason::Resources), 0);
    }

    #[test]
    fn other_accept_errors_do_not_pause() {
        let now = Instant::now();
        let mut gate = AcceptGate::new(100);
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert!(!gate.failed(&aborted, now));
        assert!(gate.open(0, now));
        assert_eq!(gate.next_deadline(), None);
    }
}
