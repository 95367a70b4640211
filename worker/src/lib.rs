//! A huststore worker process: one single-threaded mio event loop that speaks HTTP/1.1 on the
//! listening sockets it inherited from the master, routes requests through one static table
//! and serves them from the storage (kv mode) or queue (mq mode) crates, committing the writes
//! of each loop pass at once before any of that pass's replies leave.
//!
//! It must never fork, bind or supervise: that is the master's job.

use std::net::TcpListener;
use std::os::fd::OwnedFd;

/// What the master hands a worker after the fork.
pub struct WorkerArgs {
    pub conf: conf::Conf,
    /// The master's listening sockets, inherited across the fork; shared by all workers.
    pub listeners: Vec<TcpListener>,
    /// Slot number in the master's worker table (for log lines).
    pub slot: usize,
    /// Write end of the master's readiness pipe: the worker writes one byte once it serves.
    pub ready: Option<OwnedFd>,
}

/// Exit code of a worker that failed to initialise; the master does not respawn it.
pub const EXIT_FATAL_INIT: i32 = 2;

/// Prepares the data folder before workers start (called by the master, never by a worker):
/// creates it and checks that it is writable; with `empty_cache` (a fresh start, not a reload)
/// also empties the cache folder, since the cache is volatile by contract. The error is one
/// line for the operator.
pub fn prepare(conf: &conf::Conf, empty_cache: bool) -> Result<(), String> {
    let _ = (conf, empty_cache);
    todo!()
}

/// Runs the worker until it is told to stop. Installs its own signal handling (QUIT: graceful,
/// TERM/INT: now, USR1: reopen logs). Returns the process exit code: 0 after a requested stop,
/// [`EXIT_FATAL_INIT`] when it could not start.
pub fn run(args: WorkerArgs) -> i32 {
    let _ = args;
    todo!()
}
