//! The process table as plain data: the workers of every generation, the crash accounting of
//! the current generation's slots, the cluster helper's row (cluster mode), and everything a
//! child is forked with (the conf in force, the listening sockets, the workers' user). Also
//! the fork itself, and what a freshly forked child does before it becomes a worker (close
//! the master's descriptors, switch user, parent-death signal, `worker::run`); the helper's
//! child side is `helper.rs`'s. What the master does with the table (when to spawn, respawn
//! or retire) is the cycle's, the reload's and the helper's business.

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use conf::Conf;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::prctl;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::{self, ForkResult, Pid, User};

use crate::daemon::Reporter;
use crate::error::MasterError;
use crate::listen::Listener;
use crate::signals::{self, SignalPipe};

/// How long a new worker may take to write its ready byte.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// After TERM (fast stop), how long workers get before SIGKILL.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(3);
/// Added to `shutdown_timeout` before a retiring worker gets SIGKILL: the worker enforces the
/// timeout itself, the master only catches one that hangs.
pub const QUIT_SLACK: Duration = Duration::from_secs(1);

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

/// One row of the process table: a live child (a worker, or the cluster helper, whose `slot`
/// and `generation` mean nothing).
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

/// The cluster helper (cluster mode only): its process while it lives, and its crash
/// accounting, kept across reloads (a reload only clears `failed`).
#[derive(Debug, Default)]
pub struct Helper {
    pub proc: Option<Worker>,
    pub slot: Slot,
}

/// A slot whose worker dies this many times within [`CRASH_WINDOW`] is respawned with a delay.
pub const CRASH_LIMIT: usize = 3;
pub const CRASH_WINDOW: Duration = Duration::from_secs(10);
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A worker that was ready and lived this long has served: its death is no crash loop.
pub const QUICK_DEATH: Duration = Duration::from_secs(1);

impl Slot {
    /// Records an unasked exit at `now` of a child spawned at `spawned` and returns the delay
    /// before the respawn (`None`: at once). `served`: it had reported ready; a child that
    /// served and lived [`QUICK_DEATH`] is replaced at once, always (a worker killed again and
    /// again after serving, say by an operator's script or the OOM killer, is not a crash
    /// loop, and backing it off would leave the daemon without workers). Otherwise the delay
    /// doubles from 1 s up to 30 s while the slot keeps dying within 10 s of its start, from
    /// the third such death; a child that lived 10 s resets it.
    pub fn crashed(&mut self, now: Instant, spawned: Instant, served: bool) -> Option<Duration> {
        if served && now.duration_since(spawned) >= QUICK_DEATH {
            self.backoff = None;
            self.crashes.clear();
            return None;
        }
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

impl Exit {
    /// SIGKILL: an operator, a script or the OOM killer ended the child; no crash of its own
    /// (a panic aborts with SIGABRT, a fault is SIGSEGV or SIGBUS, a failed start an exit code).
    pub fn killed_from_outside(&self) -> bool {
        matches!(self, Exit::Signal { signal, .. } if *signal == libc::SIGKILL)
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
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

/// The process table, and what its workers are forked with.
pub struct Table {
    /// The conf in force: the current generation runs it.
    pub conf: Conf,
    /// The user workers switch to (the master runs as root).
    pub user: Option<User>,
    /// Bound once; only a reload adds (or, once no worker uses them, removes) entries.
    pub listeners: Vec<Listener>,
    /// The generation of the workers that serve `conf`.
    pub generation: u64,
    pub workers: Vec<Worker>,
    /// The cluster helper, when the conf has a cluster block (fixed for the master's life: a
    /// reload may not add or remove the block).
    pub helper: Option<Helper>,
    /// Crash accounting of the current generation, one per slot.
    pub slots: Vec<Slot>,
    /// This master's pid.
    pub pid: Pid,
    /// The workers' shared `/metrics` counters (mapped before the first fork).
    pub metrics: worker::SharedMetrics,
    /// The master's signal pipe; `None` only in a child, where it has been closed.
    pub signals: Option<SignalPipe>,
    /// While daemonized and not ready yet: the way to tell the original process. A child
    /// closes it.
    pub reporter: Option<Reporter>,
}

/// `count` slots with no history.
pub fn fresh_slots(count: usize) -> Vec<Slot> {
    (0..count).map(|_| Slot::default()).collect()
}

impl Table {
    /// The table of a master that owns the bound `listeners` and the installed `signals`: no
    /// worker yet, one empty slot per worker the conf asks for.
    pub fn new(
        conf: Conf,
        listeners: Vec<Listener>,
        user: Option<User>,
        signals: SignalPipe,
        reporter: Option<Reporter>,
        metrics: worker::SharedMetrics,
    ) -> Table {
        Table {
            slots: fresh_slots(conf.worker_count()),
            helper: conf.cluster.as_ref().map(|_| Helper::default()),
            conf,
            user,
            listeners,
            generation: 0,
            workers: Vec::new(),
            pid: unistd::getpid(),
            metrics,
            signals: Some(signals),
            reporter,
        }
    }

    /// Whether a worker of the current generation has not written its ready byte yet.
    pub fn starting(&self) -> bool {
        self.workers
            .iter()
            .any(|w| w.generation == self.generation && w.state == State::Spawning)
    }

    /// Whether a worker of `generation` serves.
    pub fn serving(&self, generation: u64) -> bool {
        self.workers
            .iter()
            .any(|w| w.generation == generation && w.state == State::Running)
    }

    /// No backed-off slot (nor the helper) is spawned again.
    pub fn cancel_respawns(&mut self) {
        for s in &mut self.slots {
            s.respawn_at = None;
        }
        if let Some(h) = &mut self.helper {
            h.slot.respawn_at = None;
        }
    }

    /// Forks a worker for every slot (see [`Table::respawn`]).
    pub fn respawn_all(&mut self) {
        for slot in 0..self.slots.len() {
            self.respawn(slot);
        }
    }

    /// Forks a worker for `slot`; a failed fork is retried in 1 s.
    pub fn respawn(&mut self, slot: usize) {
        if let Err(e) = self.spawn(slot) {
            conf::alert!("{e}, retrying in 1 s");
            self.slots[slot].respawn_at = Some(Instant::now() + Duration::from_secs(1));
        }
    }

    /// Forks one worker of the current generation for `slot`.
    pub fn spawn(&mut self, slot: usize) -> Result<(), MasterError> {
        let (pid, ready) = self.fork_child("fork a worker", |table, ready| {
            signals::reset_in_child(&nix::sys::signal::SigSet::empty());
            table.become_worker(slot, ready)
        })?;
        conf::notice!("started worker {pid} in slot {slot}");
        self.workers
            .push(Worker::spawned(slot, self.generation, pid, ready));
        Ok(())
    }

    /// Forks a child that runs `child` with the write end of a fresh ready pipe and exits with
    /// the code it returns; returns the child's pid and the read end (nonblocking). In the
    /// child the master's handled signals are still blocked: `child` resets them first.
    pub fn fork_child(
        &mut self,
        what: &'static str,
        child: impl FnOnce(&mut Table, OwnedFd) -> i32,
    ) -> Result<(Pid, OwnedFd), MasterError> {
        let (ready_read, ready_write) = unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| MasterError::os("create a ready pipe", e))?;
        fcntl(ready_read.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .map_err(|e| MasterError::os("create a ready pipe", e))?;
        let threads = thread_count();
        if threads != 1 {
            conf::alert!("the master has {threads} threads at fork time, expected 1");
        }
        let old_mask = signals::block();
        // SAFETY: the master is single-threaded (checked above, and it never starts a thread),
        // so the child may run any code: no lock can be held by a thread that does not exist
        // in the child.
        let forked = unsafe { unistd::fork() };
        match forked {
            Err(e) => {
                signals::restore(&old_mask);
                Err(MasterError::os(what, e))
            }
            Ok(ForkResult::Child) => {
                drop(ready_read);
                std::process::exit(child(self, ready_write))
            }
            Ok(ForkResult::Parent { child }) => {
                signals::restore(&old_mask);
                drop(ready_write);
                Ok((child, ready_read))
            }
        }
    }

    /// In a child: close what belongs to the master (signal pipe, the other children's ready
    /// pipes, the daemon report pipe). The listening sockets are the caller's to sort out.
    pub fn forget_master_state(&mut self) {
        self.signals = None;
        self.reporter = None;
        for w in &mut self.workers {
            w.ready = None;
        }
        if let Some(p) = self.helper.as_mut().and_then(|h| h.proc.as_mut()) {
            p.ready = None;
        }
    }

    /// In the child: close what belongs to the master and the listeners this conf does not
    /// list, then run the worker; its exit code.
    fn become_worker(&mut self, slot: usize, ready: OwnedFd) -> i32 {
        self.forget_master_state();
        let mut all = std::mem::take(&mut self.listeners);
        let mut listeners = Vec::new();
        for l in &self.conf.listen {
            if let Some(i) = all.iter().position(|b| b.addr == l.addr) {
                listeners.push(all.swap_remove(i).socket);
            }
        }
        drop(all);
        let args = worker::WorkerArgs {
            conf: self.conf.clone(),
            listeners,
            slot,
            ready: Some(ready),
            metrics: self.metrics,
        };
        let what = format!("worker slot {slot}");
        become_child(&what, self.user.as_ref(), self.pid);
        worker::run(args)
    }

    /// The ready pipe of worker `i` is readable (see [`Worker::read_ready`]).
    pub fn read_ready(&mut self, i: usize) {
        let w = &mut self.workers[i];
        if w.read_ready() {
            log::info!("worker {} (slot {}) is ready", w.pid, w.slot);
        }
    }

    /// Sends QUIT to every worker of an older generation that was not told yet.
    pub fn retire_old(&mut self) {
        let kill_at = Instant::now() + self.conf.shutdown_timeout + QUIT_SLACK;
        let mut n = 0;
        for w in &mut self.workers {
            if w.generation != self.generation && w.state != State::Exiting {
                signal_worker(w.pid, Signal::SIGQUIT);
                w.state = State::Exiting;
                w.kill_at = Some(kill_at);
                n += 1;
            }
        }
        if n > 0 {
            conf::notice!("retiring {n} old workers");
        }
    }
}

impl Worker {
    /// The row of a child just forked, with the read end of its ready pipe.
    pub fn spawned(slot: usize, generation: u64, pid: Pid, ready: OwnedFd) -> Worker {
        Worker {
            slot,
            generation,
            pid,
            state: State::Spawning,
            spawned: Instant::now(),
            ready: Some(ready),
            kill_at: None,
            killed: false,
        }
    }

    /// Its ready pipe is readable: a byte means it serves (→ true, once), EOF that it is dying
    /// before serving (the reap will tell how).
    pub fn read_ready(&mut self) -> bool {
        let Some(fd) = &self.ready else { return false };
        let mut byte = [0u8; 1];
        match unistd::read(fd.as_raw_fd(), &mut byte) {
            Ok(1) => {
                self.ready = None;
                if self.state == State::Spawning {
                    self.state = State::Running;
                    return true;
                }
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Ok(_) | Err(_) => self.ready = None,
        }
        false
    }
}

/// Sends `sig` to a worker; one that is already gone (ESRCH) is reaped soon.
pub fn signal_worker(pid: Pid, sig: Signal) {
    match kill(pid, sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => conf::alert!("could not send {} to worker {pid}: {e}", sig.as_str()),
    }
}

/// The child side of `fork` (`what` names it in log lines), once the master's state it must
/// not keep is closed: switch to `user`, arm the parent-death signal; exits (fatal init) when
/// the switch fails, and (0) when the `master` is gone already.
pub fn become_child(what: &str, user: Option<&User>, master: Pid) {
    if let Some(user) = user {
        if let Err(e) = switch_user(user) {
            conf::emerg!("{what}: could not switch to user \"{}\": {e}", user.name);
            std::process::exit(worker::EXIT_FATAL_INIT);
        }
    }
    // After the user switch, because a change of credentials clears the parent-death signal.
    // SIGQUIT: the children of a master killed with -9 finish their requests and exit.
    if let Err(e) = prctl::set_pdeathsig(Signal::SIGQUIT) {
        log::warn!("{what}: could not set the parent-death signal: {e}");
    }
    // The master may have died before the line above: then no signal will ever come.
    if unistd::getppid() != master {
        std::process::exit(0);
    }
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

    impl Slot {
        fn crashed_quick(&mut self, now: Instant, spawned: Instant) -> Option<Duration> {
            self.crashed(now, spawned, false)
        }
    }

    #[test]
    fn a_worker_that_served_is_replaced_at_once_even_in_a_storm() {
        let mut slot = Slot::default();
        let t0 = Instant::now();
        let s = |ms| t0 + Duration::from_millis(ms);
        // Killed every 1.2 s after serving, 50 times: never backed off.
        for k in 0..50u64 {
            let spawned = s(k * 1200);
            assert_eq!(slot.crashed(spawned + QUICK_DEATH, spawned, true), None);
        }
        // Quick deaths still back off, and a served one ends that.
        assert_eq!(slot.crashed(s(70_000), s(69_900), false), None);
        assert_eq!(slot.crashed(s(70_100), s(70_000), true), None);
        assert_eq!(
            slot.crashed(s(70_200), s(70_100), false),
            Some(FIRST_BACKOFF)
        );
        assert_eq!(slot.crashed(s(72_000), s(70_500), true), None);
        assert_eq!(slot.backoff, None);
    }

    #[test]
    fn backoff_starts_at_the_third_quick_crash_and_doubles() {
        let mut slot = Slot::default();
        let t0 = Instant::now();
        let s = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(slot.crashed_quick(s(100), s(0)), None);
        assert_eq!(slot.crashed_quick(s(200), s(100)), None);
        assert_eq!(
            slot.crashed_quick(s(300), s(200)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            slot.crashed_quick(s(1400), s(1300)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            slot.crashed_quick(s(3500), s(3400)),
            Some(Duration::from_secs(4))
        );
        let mut at = 3500;
        let mut last = Duration::from_secs(4);
        for _ in 0..6 {
            at += last.as_millis() as u64 + 100;
            last = slot.crashed_quick(s(at), s(at - 50)).unwrap();
        }
        assert_eq!(last, MAX_BACKOFF);
        // A worker that lived 10 s resets the slot.
        at += 40_000;
        assert_eq!(slot.crashed_quick(s(at), s(at - 10_000)), None);
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

    #[test]
    fn only_sigkill_is_a_kill_from_outside() {
        let signal = |signal| Exit::Signal {
            signal,
            core: false,
        };
        assert!(signal(libc::SIGKILL).killed_from_outside());
        assert!(!signal(libc::SIGSEGV).killed_from_outside());
        assert!(!signal(libc::SIGABRT).killed_from_outside());
        assert!(!Exit::Code(101).killed_from_outside());
    }
}
