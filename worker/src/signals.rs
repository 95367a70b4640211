//! The worker's signals: `QUIT` (retire gracefully), `TERM`/`INT` (exit now), `USR1` (reopen
//! the logs). The handlers (signal-hook's) only set a flag and write a byte to a pipe that the
//! loop polls; the loop then asks [`Signals::take`] what arrived. Nothing here runs inside a
//! signal handler but signal-hook's own code.

use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why the loop should stop; the stronger reason wins (`max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    /// Keep running.
    No,
    /// Retire: stop accepting, finish requests in flight, exit by the deadline.
    Graceful,
    /// Exit now.
    Now,
}

/// What the signals since the last look ask of the loop.
pub struct Arrived {
    pub stop: Stop,
    /// `USR1`: reopen the error and access logs.
    pub reopen: bool,
}

/// Signal flags, set by the signal handlers, and the pipe that wakes the loop.
pub struct Signals {
    quit: Arc<AtomicBool>,
    terminate: Arc<AtomicBool>,
    reopen: Arc<AtomicBool>,
    pipe: mio::net::UnixStream,
}

impl Signals {
    /// Installs the handlers (after the fork: the master's are its own).
    pub fn install() -> io::Result<Signals> {
        let (reader, writer) = std::os::unix::net::UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        let quit = Arc::new(AtomicBool::new(false));
        let terminate = Arc::new(AtomicBool::new(false));
        let reopen = Arc::new(AtomicBool::new(false));
        for (sig, flag) in [
            (SIGQUIT, &quit),
            (SIGTERM, &terminate),
            (SIGINT, &terminate),
            (SIGUSR1, &reopen),
        ] {
            // The flag is set before the pipe byte wakes the loop, so the loop always sees it.
            signal_hook::flag::register(sig, Arc::clone(flag))?;
            signal_hook::low_level::pipe::register(sig, writer.try_clone()?)?;
        }
        Ok(Signals {
            quit,
            terminate,
            reopen,
            pipe: mio::net::UnixStream::from_std(reader),
        })
    }

    /// The pipe to register with the loop's poll.
    pub fn pipe(&mut self) -> &mut mio::net::UnixStream {
        &mut self.pipe
    }

    /// Drains the pipe and tells what the flags ask: a stop stays asked for, a reopen is
    /// asked once.
    pub fn take(&mut self) -> Arrived {
        let mut buf = [0u8; 64];
        while let Ok(n) = self.pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        let stop = if self.terminate.load(Ordering::Relaxed) {
            Stop::Now
        } else if self.quit.load(Ordering::Relaxed) {
            Stop::Graceful
        } else {
            Stop::No
        };
        Arrived {
            stop,
            reopen: self.reopen.swap(false, Ordering::Relaxed),
        }
    }
}
