//! The worker table as plain data, the crash accounting of a slot, and what a freshly forked
//! child does before it becomes a worker (switch user, parent-death signal, `worker::run`).

use std::ffi::CString;
use std::fmt;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::{self, Pid, User};

use crate::error::MasterError;

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Forked, has not written its ready byte yet.
    Spawning,
    /// Serving.
    Running,
    /// Asked to stop (QUIT or TERM); its exit is expected and it is not respawned.
    Exiting,
}

/// One row of the process table: a live child.
#[derive(Debug)]
pub struct Worker {
    pub slot: usize,
    /// Bumped by each reload; workers of an older generation are being (or about to be) retired.
    pub generation: u64,
    pub pid: Pid,
    pub state: State,
    pub spawned: Instant,
    /// Read end of the readiness pipe, while `Spawning`.
    pub ready: Option<OwnedFd>,
    /// When an `Exiting` worker gets SIGKILL.
    pub kill_at: Option<Instant>,
    /// SIGKILL was sent because it never became ready (it is respawned when reaped).
    pub killed: bool,
}

/// Per-slot crash accounting of the current generation.
#[derive(Debug, Default)]
pub struct Slot {
    /// Times of the unasked exits of the last [`CRASH_WINDOW`].
    pub crashes: Vec<Instant>,
    /// The last back-off delay, while the slot is crashing again and again.
    pub backoff: Option<Duration>,
    /// When a backed-off (or unforkable) slot is spawned again.
    pub respawn_at: Option<Instant>,
    /// Its worker exited with the fatal init code: not respawned until the next reload.
    pub failed: bool,
}

/// A slot whose worker dies this many times within [`CRASH_WINDOW`] is respawned with a delay.
pub const CRASH_LIMIT: usize = 3;
pub const CRASH_WINDOW: Duration = Duration::from_secs(10);
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Slot {
    /// Records an unasked exit at `now` of a worker spawned at `spawned` and returns the delay
    /// before the respawn (`None`: at once). The delay doubles from 1 s up to 30 s while the
    /// slot keeps dying within 10 s of its start; a worker that lived 10 s resets it.
    pub fn crashed(&mut self, now: Instant, spawned: Instant) -> Option<Duration> {
        if now.duration_since(spawned) >= CRASH_WINDOW {
            self.backoff = None;
        }
        self.crashes
            .retain(|t| now.duration_since(*t) < CRASH_WINDOW);
        self.crashes.push(now);
        if self.backoff.is_none() && self.crashes.len() < CRASH_LIMIT {
            return None;
        }
        let delay = match self.backoff {
            Some(last) => (last * 2).min(MAX_BACKOFF),
            None => FIRST_BACKOFF,
        };
        self.backoff = Some(delay);
        Some(delay)
    }
}

/// How a child ended, as the log lines say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal { signal: i32, core: bool },
}

impl Exit {
    /// The ending described by a `waitpid` status, if it is one.
    pub fn from_status(status: WaitStatus) -> Option<(Pid, Exit)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((pid, Exit::Code(code))),
            WaitStatus::Signaled(pid, sig, core) => Some((
                pid,
                Exit::Signal {
                    signal: sig as i32,
                    core,
                },
            )),
            _ => None,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exited with code {code}"),
            Exit::Signal {
                signal,
                core: false,
            } => write!(f, "exited on signal {signal}"),
            Exit::Signal { signal, core: true } => {
                write!(f, "exited on signal {signal} (core dumped)")
            }
        }
    }
}

/// The user the workers switch to: `None` unless the master runs as root (ops.md: `user` is
/// ignored otherwise).
pub fn resolve_user(name: &str) -> Result<Option<User>, MasterError> {
    if !unistd::geteuid().is_root() {
        return Ok(None);
    }
    match User::from_name(name) {
        Ok(Some(user)) => Ok(Some(user)),
        Ok(None) => Err(MasterError::UnknownUser(name.to_string())),
        Err(e) => Err(MasterError::os("look up the user", e)),
    }
}

/// Gives `path` and, for a folder, everything under it to `user` (symlinks themselves, never
/// their targets), so that workers running as `user` can write the files the master created.
pub fn chown_tree(path: &Path, user: &User) -> Result<(), MasterError> {
    let fail = |err| MasterError::Chown {
        path: path.to_path_buf(),
        err,
    };
    std::os::unix::fs::lchown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
        .map_err(fail)?;
    let meta = std::fs::symlink_metadata(path).map_err(fail)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(fail)? {
            chown_tree(&entry.map_err(fail)?.path(), user)?;
        }
    }
    Ok(())
}

/// The number of threads of this process. The master forks, so it must have exactly one: a
/// lock held by another thread at fork time would stay locked forever in the child.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

/// The child side of `fork`, once the master's state it must not keep is closed: switch user,
/// arm the parent-death signal, run the worker, exit with its code. Never returns.
pub fn run_child(
    conf: conf::Conf,
    listeners: Vec<TcpListener>,
    slot: usize,
    ready: OwnedFd,
    user: Option<&User>,
    master: Pid,
    metrics: worker::SharedMetrics,
) -> ! {
    if let Some(user) = user {
        if let Err(e) = switch_user(user) {
            conf::emerg!(
                "worker slot {slot}: could not switch to user \"{}\": {e}",
                user.name
            );
            std::process::exit(worker::EXIT_FATAL_INIT);
        }
    }
    // After the user switch, because a change of credentials clears the parent-death signal.
    // SIGQUIT: the workers of a master killed with -9 finish their requests and exit.
    if let Err(e) = prctl::set_pdeathsig(Signal::SIGQUIT) {
        log::warn!("worker slot {slot}: could not set the parent-death signal: {e}");
    }
    // The master may have died before the line above: then no signal will ever come.
    if unistd::getppid() != master {
        std::process::exit(0);
    }
    std::process::exit(worker::run(worker::WorkerArgs {
        conf,
        listeners,
        slot,
        ready: Some(ready),
        metrics,
    }))
}

/// setgid, initgroups, setuid: in that order, since each needs the privileges the next drops.
fn switch_user(user: &User) -> nix::Result<()> {
    let name = CString::new(user.name.as_str()).map_err(|_| nix::errno::Errno::EINVAL)?;
    unistd::setgid(user.gid)?;
    unistd::initgroups(&name, user.gid)?;
    unistd::setuid(user.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_at_the_third_quick_crash_and_doubles() {
        let mut slot = Slot::default();
        let t0 = Instant::now();
        let s = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(slot.crashed(s(100), s(0)), None);
        assert_eq!(slot.crashed(s(200), s(100)), None);
        assert_eq!(slot.crashed(s(300), s(200)), Some(Duration::from_secs(1)));
        assert_eq!(slot.crashed(s(1400), s(1300)), Some(Duration::from_secs(2)));
        assert_eq!(slot.crashed(s(3500), s(3400)), Some(Duration::from_secs(4)));
        let mut at = 3500;
        let mut last = Duration::from_secs(4);
        for _ in 0..6 {
            at += last.as_millis() as u64 + 100;
            last = slot.crashed(s(at), s(at - 50)).unwrap();
        }
        assert_eq!(last, MAX_BACKOFF);
        // A worker that lived 10 s resets the slot.
        at += 40_000;
        assert_eq!(slot.crashed(s(at), s(at - 10_000)), None);
    }

    #[test]
    fn exit_lines() {
        assert_eq!(Exit::Code(101).to_string(), "exited with code 101");
        let sig = Exit::Signal {
            signal: 9,
            core: false,
        };
        assert_eq!(sig.to_string(), "exited on signal 9");
    }
}
