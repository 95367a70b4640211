//! The master loop, after nginx's `ngx_master_process_cycle`: wait for a signal byte, a worker's
//! ready byte or the next timer; then, in this fixed order: reap children, terminate, quit,
//! reconfigure, reopen; then the timers (respawn back-off, kill deadlines, retiring the old
//! generation after a reload).

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use conf::{Conf, LogTarget, Mode};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{self, ForkResult, Pid, User};

use crate::daemon::Reporter;
use crate::error::MasterError;
use crate::listen::{self, Listener};
use crate::notify::Notifier;
use crate::pidfile;
use crate::process::{self, Exit, Slot, State, Worker};
use crate::signals::{self, Pending, SignalPipe};
use crate::upgrade;

/// How long a new worker may take to write its ready byte.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// After TERM (fast stop), how long workers get before SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_secs(3);
/// Added to `shutdown_timeout` before a retiring worker gets SIGKILL: the worker enforces the
/// timeout itself, the master only catches one that hangs.
const QUIT_SLACK: Duration = Duration::from_secs(1);
/// The longest the loop sleeps without looking at its timers.
const MAX_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Workers forked, not all ready yet; the pid file is not written.
    Starting {
        deadline: Instant,
    },
    Running,
    /// QUIT, TERM or a failed startup: waiting for the last worker to exit.
    Stopping,
}

/// A kv-mode reload in progress: the new generation is starting, the old one still serves.
struct Reload {
    old_conf: Conf,
    old_slots: Vec<Slot>,
    old_user: Option<User>,
    old_generation: u64,
    started: Instant,
}

/// The master's whole state.
pub struct Master {
    conf: Conf,
    /// The generation of the workers that serve `conf`.
    generation: u64,
    /// Bound once; only a reload adds (or, once no worker uses them, removes) entries.
    listeners: Vec<Listener>,
    workers: Vec<Worker>,
    /// Crash accounting of the current generation, one per slot.
    slots: Vec<Slot>,
    /// `None` only in a child, where it has been closed.
    signals: Option<SignalPipe>,
    /// While daemonized and not ready yet: the way to tell the original process.
    reporter: Option<Reporter>,
    /// The user workers switch to (the master runs as root).
    user: Option<User>,
    pid: Pid,
    phase: Phase,
    /// The pid file, once written.
    pid_file: Option<PathBuf>,
    reload: Option<Reload>,
    /// mq mode reload: the new worker starts once the old one is gone.
    mq_pending: bool,
    /// A HUP that arrived during startup, handled once running.
    deferred_reload: bool,
    /// Why a failed startup stops.
    failure: Option<MasterError>,
    /// The binary a USR2 starts (absolute path this master was started from).
    binary: Option<PathBuf>,
    /// The new master started by USR2, while it runs.
    new_binary: Option<Pid>,
    /// WINCH retired the workers (a new master serves): none is respawned until HUP.
    no_accepting: bool,
    /// The workers' shared `/metrics` counters (mapped before the first fork).
    metrics: worker::SharedMetrics,
    /// systemd's readiness protocol (does nothing when not started by systemd).
    notifier: Notifier,
    /// A reload announced with `RELOADING=1` whose `READY=1` is due once it settles; `true`
    /// when that `READY=1` also claims the main process (see [`Master::reload_settled`]).
    reload_announced: Option<bool>,
    /// `STOPPING=1` has been sent.
    stop_announced: bool,
    /// Started by a binary upgrade: the old master's pid (this master's parent).
    upgraded_from: Option<Pid>,
}

impl Master {
    /// A master that owns the bound `listeners` and the installed `signals`.
    pub fn new(
        conf: Conf,
        listeners: Vec<Listener>,
        user: Option<User>,
        signals: SignalPipe,
        reporter: Option<Reporter>,
        binary: Option<PathBuf>,
        metrics: worker::SharedMetrics,
    ) -> Master {
        let slots = (0..conf.worker_count()).map(|_| Slot::default()).collect();
        Master {
            conf,
            generation: 0,
            listeners,
            workers: Vec::new(),
            slots,
            signals: Some(signals),
            reporter,
            user,
            pid: unistd::getpid(),
            phase: Phase::Running,
            pid_file: None,
            reload: None,
            mq_pending: false,
            deferred_reload: false,
            failure: None,
            binary,
            new_binary: None,
            no_accepting: false,
            metrics,
            notifier: Notifier::default(),
            reload_announced: None,
            stop_announced: false,
            upgraded_from: None,
        }
    }

    /// Sets how the master talks to systemd, and, for a master started by a binary upgrade, the
    /// old master it came from.
    pub fn notify_with(mut self, notifier: Notifier, upgraded_from: Option<Pid>) -> Master {
        self.notifier = notifier;
        self.upgraded_from = upgraded_from;
        self
    }

    /// Runs until stopped; returns the process exit code. A startup failure is reported on
    /// stderr (or to the original process of a daemon) and in the log.
    pub fn run(mut self) -> i32 {
        match self.cycle() {
            Ok(code) => code,
            Err(e) => {
                if matches!(self.conf.error_log, LogTarget::File(_)) {
                    conf::emerg!("{e}");
                }
                match self.reporter.take() {
                    Some(reporter) => reporter.fail(&e.to_string()),
                    None => eprintln!("huststore: {e}"),
                }
                1
            }
        }
    }

    fn cycle(&mut self) -> Result<i32, MasterError> {
        conf::notice!(
            "huststore {} starting: master {}, {} workers, conf {}",
            env!("CARGO_PKG_VERSION"),
            self.pid,
            self.slots.len(),
            self.conf.path.display()
        );
        if self.user.as_ref().is_some_and(|u| u.uid.is_root()) {
            log::warn!("user root: the workers run as root");
        }
        self.phase = Phase::Starting {
            deadline: Instant::now() + READY_TIMEOUT,
        };
        for slot in 0..self.slots.len() {
            if let Err(e) = self.spawn(slot) {
                // Stop the workers already forked, then fail.
                self.fail(e);
                break;
            }
        }
        loop {
            let pending = self.wait();
            // A stop signal often reaches the workers too (Ctrl-C to the process group, systemd
            // signalling the whole cgroup), and they may exit before it is handled below: the
            // reap must already count those exits as asked for.
            self.reap(pending.terminate || pending.quit);
            if pending.terminate {
                self.stop(Signal::SIGTERM);
            }
            if pending.quit {
                self.stop(Signal::SIGQUIT);
            }
            if pending.reconfigure {
                self.deferred_reload = true;
            }
            if self.deferred_reload && self.phase == Phase::Running {
                self.deferred_reload = false;
                self.reconfigure();
            }
            if pending.reopen {
                self.reopen();
            }
            if pending.upgrade {
                self.upgrade();
            }
            if pending.winch {
                self.retire_all();
            }
            self.timers(Instant::now());
            match self.phase {
                Phase::Starting { deadline } => self.check_started(deadline),
                Phase::Running => self.reload_settled(),
                Phase::Stopping => {
                    if self.workers.is_empty() {
                        return self.exit();
                    }
                }
            }
        }
    }

    /// Sleeps in poll(2) until a signal byte, a ready byte or the next timer; returns the
    /// signals seen and marks the workers that reported ready.
    fn wait(&mut self) -> Pending {
        let timeout = self
            .next_deadline()
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or(MAX_WAIT)
            .min(MAX_WAIT);
        // Round up so that the loop does not spin in sub-millisecond waits before a deadline.
        let ms = timeout.as_micros().div_ceil(1000) as u16;
        let Some(sig) = self.signals.as_ref() else {
            return Pending::default();
        };
        let spawning: Vec<usize> = (0..self.workers.len())
            .filter(|&i| self.workers[i].ready.is_some())
            .collect();
        let mut fds = vec![PollFd::new(sig.fd(), PollFlags::POLLIN)];
        for &i in &spawning {
            if let Some(fd) = &self.workers[i].ready {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => conf::alert!("poll failed: {e}"),
        }
        let readable: Vec<bool> = fds[1..]
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let pending = sig.drain();
        for (k, &i) in spawning.iter().enumerate() {
            if readable[k] {
                self.read_ready(i);
            }
        }
        pending
    }

    /// The ready pipe of worker `i` is readable: a byte means it serves, EOF that it is dying
    /// before serving (the reap will tell how).
    fn read_ready(&mut self, i: usize) {
        let w = &mut self.workers[i];
        let Some(fd) = &w.ready else { return };
        let mut byte = [0u8; 1];
        match unistd::read(fd.as_raw_fd(), &mut byte) {
            Ok(1) => {
                w.ready = None;
                if w.state == State::Spawning {
                    w.state = State::Running;
                    log::info!("worker {} (slot {}) is ready", w.pid, w.slot);
                }
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Ok(_) | Err(_) => w.ready = None,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut at: Vec<Instant> = Vec::new();
        if let Phase::Starting { deadline } = self.phase {
            at.push(deadline);
        }
        at.extend(self.slots.iter().filter_map(|s| s.respawn_at));
        for w in &self.workers {
            at.extend(w.kill_at);
            if w.state == State::Spawning && !w.killed {
                at.push(w.spawned + READY_TIMEOUT);
            }
        }
        if let Some(r) = &self.reload {
            at.push(r.started + READY_TIMEOUT);
        }
        at.into_iter().min()
    }

    /// Collects every exited child (waitpid WNOHANG until none is left). With `stopping`, no
    /// exit is respawned.
    fn reap(&mut self, stopping: bool) {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(status) => {
                    if let Some((pid, exit)) = Exit::from_status(status) {
                        self.worker_exited(pid, exit, stopping);
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    conf::alert!("waitpid failed: {e}");
                    return;
                }
            }
        }
    }

    fn worker_exited(&mut self, pid: Pid, exit: Exit, stopping: bool) {
        if self.new_binary == Some(pid) {
            self.new_binary_exited(pid, exit);
            return;
        }
        let Some(i) = self.workers.iter().position(|w| w.pid == pid) else {
            return;
        };
        let w = self.workers.remove(i);
        let asked = w.state == State::Exiting
            || stopping
            || self.phase == Phase::Stopping
            || w.generation != self.generation;
        if asked {
            conf::notice!("worker {pid} {exit}");
            return;
        }
        if exit == Exit::Code(worker::EXIT_FATAL_INIT) {
            conf::alert!(
                "worker {pid} {exit}: fatal init error, slot {} is not respawned",
                w.slot
            );
            self.slots[w.slot].failed = true;
            return;
        }
        conf::notice!("worker {pid} {exit}, respawning");
        self.metrics.worker_restarted(w.slot);
        let now = Instant::now();
        let slot = &mut self.slots[w.slot];
        match slot.crashed(now, w.spawned) {
            None => self.respawn(w.slot),
            Some(delay) => {
                let n = slot.crashes.len();
                slot.respawn_at = Some(now + delay);
                if n >= process::CRASH_LIMIT {
                    conf::notice!(
                        "worker slot {} crashed {n} times in {} s, respawning in {} s",
                        w.slot,
                        process::CRASH_WINDOW.as_secs(),
                        delay.as_secs()
                    );
                } else {
                    conf::notice!(
                        "worker slot {} keeps crashing, respawning in {} s",
                        w.slot,
                        delay.as_secs()
                    );
                }
            }
        }
    }

    /// Forks a worker for `slot`; a failed fork is retried in 1 s.
    fn respawn(&mut self, slot: usize) {
        if let Err(e) = self.spawn(slot) {
            conf::alert!("{e}, retrying in 1 s");
            self.slots[slot].respawn_at = Some(Instant::now() + Duration::from_secs(1));
        }
    }

    /// Forks one worker of the current generation for `slot`.
    fn spawn(&mut self, slot: usize) -> Result<(), MasterError> {
        let (ready_read, ready_write) = unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| MasterError::os("create a ready pipe", e))?;
        fcntl(ready_read.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .map_err(|e| MasterError::os("create a ready pipe", e))?;
        let threads = process::thread_count();
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
                Err(MasterError::os("fork a worker", e))
            }
            Ok(ForkResult::Child) => {
                signals::reset_in_child();
                drop(ready_read);
                self.become_worker(slot, ready_write)
            }
            Ok(ForkResult::Parent { child }) => {
                signals::restore(&old_mask);
                drop(ready_write);
                conf::notice!("started worker {child} in slot {slot}");
                self.workers.push(Worker {
                    slot,
                    generation: self.generation,
                    pid: child,
                    state: State::Spawning,
                    spawned: Instant::now(),
                    ready: Some(ready_read),
                    kill_at: None,
                    killed: false,
                });
                Ok(())
            }
        }
    }

    /// In the child: close what belongs to the master (signal pipe, other workers' ready pipes,
    /// the daemon report pipe, listeners this conf does not list), then run the worker.
    fn become_worker(&mut self, slot: usize, ready: std::os::fd::OwnedFd) -> ! {
        self.signals = None;
        self.reporter = None;
        for w in &mut self.workers {
            w.ready = None;
        }
        let mut all = std::mem::take(&mut self.listeners);
        let mut listeners = Vec::new();
        for l in &self.conf.listen {
            if let Some(i) = all.iter().position(|b| b.addr == l.addr) {
                listeners.push(all.swap_remove(i).socket);
            }
        }
        drop(all);
        process::run_child(
            self.conf.clone(),
            listeners,
            slot,
            ready,
            self.user.as_ref(),
            self.pid,
            self.metrics,
        )
    }

    /// QUIT (graceful) or TERM (fast): signal every worker, close the master's listening
    /// sockets (the port is released once the last worker closes its copy), and wait.
    fn stop(&mut self, sig: Signal) {
        let (grace, what) = if sig == Signal::SIGQUIT {
            (self.conf.shutdown_timeout + QUIT_SLACK, "graceful")
        } else {
            (TERMINATE_GRACE, "fast")
        };
        if sig == Signal::SIGQUIT && self.phase == Phase::Stopping {
            return; // already stopping, at least as fast
        }
        self.announce_stop(what);
        conf::notice!(
            "{what} shutdown: sending {} to {} workers",
            sig.as_str(),
            self.workers.len()
        );
        self.phase = Phase::Stopping;
        self.listeners.clear();
        self.reload = None;
        self.mq_pending = false;
        for s in &mut self.slots {
            s.respawn_at = None;
        }
        let kill_at = Instant::now() + grace;
        for w in &mut self.workers {
            signal_worker(w.pid, sig);
            w.state = State::Exiting;
            w.kill_at = Some(w.kill_at.map_or(kill_at, |t| t.min(kill_at)));
        }
    }

    /// Startup: once every slot has a ready worker (or failed for good), write the pid file
    /// and report success; if none could start, or not in time, stop with an error.
    fn check_started(&mut self, deadline: Instant) {
        let settled = (0..self.slots.len()).all(|s| {
            self.slots[s].failed
                || self
                    .workers
                    .iter()
                    .any(|w| w.slot == s && w.state == State::Running)
        });
        let log = match &self.conf.error_log {
            LogTarget::File(p) => p.display().to_string(),
            LogTarget::Stderr => "stderr".to_string(),
        };
        if !settled {
            if Instant::now() >= deadline {
                self.fail(MasterError::NotReady {
                    secs: READY_TIMEOUT.as_secs(),
                    log,
                });
            }
            return;
        }
        if !self.workers.iter().any(|w| w.state == State::Running) {
            self.fail(MasterError::WorkersFailed { log });
            return;
        }
        if let Err(err) = pidfile::write(&self.conf.pid, self.pid.as_raw()) {
            self.fail(MasterError::PidFile {
                path: self.conf.pid.clone(),
                err,
            });
            return;
        }
        self.pid_file = Some(self.conf.pid.clone());
        self.phase = Phase::Running;
        if let Some(reporter) = self.reporter.take() {
            reporter.ready();
        }
        // Also the new master of a binary upgrade: MAINPID makes it the process systemd
        // supervises, so that the old one may exit.
        self.notifier.ready(&self.serving_status(), true);
        let addrs: Vec<&str> = self.conf.listen.iter().map(|l| l.text.as_str()).collect();
        conf::notice!(
            "huststore started: master {}, {} workers, listening on {}",
            self.pid,
            self.workers.len(),
            addrs.join(", ")
        );
    }

    /// The line `systemctl status` shows while the workers serve.
    fn serving_status(&self) -> String {
        let addrs: Vec<&str> = self.conf.listen.iter().map(|l| l.text.as_str()).collect();
        let serving = self
            .workers
            .iter()
            .filter(|w| w.state == State::Running)
            .count();
        format!(
            "serving on {} with {serving} workers (master {})",
            addrs.join(", "),
            self.pid
        )
    }

    /// After a `RELOADING=1`: once the reload has settled (the new workers serve, or it was
    /// abandoned: a bad conf, no new worker could start), `READY=1` again.
    fn reload_settled(&mut self) {
        let Some(claim) = self.reload_announced else {
            return;
        };
        let starting = self.reload.is_some()
            || self.mq_pending
            || self
                .workers
                .iter()
                .any(|w| w.generation == self.generation && w.state == State::Spawning);
        if starting {
            return;
        }
        self.reload_announced = None;
        self.notifier.ready(&self.serving_status(), claim);
    }

    /// `STOPPING=1`, once, unless this master is not the one systemd supervises: after a
    /// binary upgrade the new master is (while it runs), and a new master whose old master
    /// still lives has been rolled back. Its STOPPING=1 would stop the whole service.
    fn announce_stop(&mut self, what: &str) {
        if self.stop_announced {
            return;
        }
        self.stop_announced = true;
        let handed_over = self.new_binary.is_some();
        let rolled_back = self
            .upgraded_from
            .is_some_and(|old| unistd::getppid() == old);
        if handed_over || rolled_back {
            return;
        }
        self.notifier
            .stopping(&format!("{what} shutdown of master {}", self.pid));
    }

    fn fail(&mut self, e: MasterError) {
        self.failure = Some(e);
        self.stop(Signal::SIGTERM);
    }

    /// The last worker is gone: remove the pid file and return the exit status.
    fn exit(&mut self) -> Result<i32, MasterError> {
        if let Some(path) = self.pid_file.take() {
            pidfile::remove(&path, self.pid.as_raw());
        }
        match self.failure.take() {
            Some(e) => Err(e),
            None => {
                conf::notice!("huststore master {} exiting", self.pid);
                Ok(0)
            }
        }
    }

    /// HUP: re-read the conf; a bad one changes nothing. After WINCH it restarts the workers
    /// with the conf in force instead (the rollback of a binary upgrade).
    fn reconfigure(&mut self) {
        // While a new master of a binary upgrade serves side by side, it is the one systemd
        // supervises, and a plain reload of this one must not take that back; the rollback
        // (HUP after WINCH) must. A claim already due stays due.
        let claim = self.new_binary.is_none() || self.no_accepting;
        self.reload_announced = Some(claim || self.reload_announced == Some(true));
        self.notifier
            .reloading(&format!("reloading {}", self.conf.path.display()));
        if self.no_accepting {
            conf::notice!("restarting the workers (HUP after WINCH)");
            self.no_accepting = false;
            self.generation += 1;
            self.slots = (0..self.conf.worker_count())
                .map(|_| Slot::default())
                .collect();
            for slot in 0..self.slots.len() {
                self.respawn(slot);
            }
            return;
        }
        conf::notice!("reconfiguring: reading {}", self.conf.path.display());
        let result = conf::load(&self.conf.path)
            .map_err(MasterError::Conf)
            .and_then(|new| self.apply(new));
        if let Err(e) = result {
            log::error!("reload failed, keeping the old conf: {e}");
        }
    }

    /// Applies a good conf: prepare the data folder, bind the new addresses, re-init the log,
    /// then start the new generation. Any failure before the commit point leaves everything
    /// as it was.
    fn apply(&mut self, new: Conf) -> Result<(), MasterError> {
        if new.daemon != self.conf.daemon {
            log::warn!("\"daemon\" cannot change on reload, ignored");
        }
        worker::prepare(&new, false).map_err(MasterError::Prepare)?;
        let user = process::resolve_user(&new.user)?;
        if let Some(user) = &user {
            process::chown_tree(&new.data_dir, user)?;
        }
        let mut bound: Vec<Listener> = Vec::new();
        for l in &new.listen {
            let known = |b: &Listener| b.addr == l.addr;
            if !self.listeners.iter().any(known) && !bound.iter().any(known) {
                bound.push(listen::bind(l.addr)?);
            }
        }
        init_logger(&new)?;
        // Commit point: from here on the new conf is in force.
        if let Some(user) = &user {
            chown_logs(&new, user);
        }
        if new.pid != self.conf.pid && self.pid_file.is_some() {
            match pidfile::write(&new.pid, self.pid.as_raw()) {
                Ok(()) => {
                    pidfile::remove(&self.conf.pid, self.pid.as_raw());
                    self.pid_file = Some(new.pid.clone());
                }
                Err(e) => log::error!("could not write the pid file {}: {e}", new.pid.display()),
            }
        }
        for l in &bound {
            conf::notice!("listening on {}", l.addr);
        }
        self.listeners.extend(bound);
        let count = new.worker_count();
        let old_conf = std::mem::replace(&mut self.conf, new);
        let old_user = std::mem::replace(&mut self.user, user);
        let old_slots = std::mem::replace(
            &mut self.slots,
            (0..count).map(|_| Slot::default()).collect(),
        );
        let old_generation = self.generation;
        self.generation += 1;
        conf::notice!(
            "reloaded {}: starting {count} new workers",
            self.conf.path.display()
        );
        if old_conf.mode == Mode::Mq || self.conf.mode == Mode::Mq {
            // Only one mq worker may run (parked clients live in its memory): retire the old
            // one first; `timers` starts the new one once it has exited.
            self.reload = None;
            self.mq_pending = true;
            self.retire_old();
        } else {
            // New workers first; the old ones are retired once the new ones serve, so there
            // is always a worker accepting.
            self.reload = Some(Reload {
                old_conf,
                old_slots,
                old_user,
                old_generation,
                started: Instant::now(),
            });
            for slot in 0..count {
                self.respawn(slot);
            }
        }
        Ok(())
    }

    /// Sends QUIT to every worker of an older generation that was not told yet.
    fn retire_old(&mut self) {
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

    /// USR1: reopen the master's log, hand the new file to the workers' user, tell the workers.
    fn reopen(&mut self) {
        conf::notice!("reopening logs");
        match conf::logger::reopen() {
            Ok(()) => conf::notice!("logs reopened"),
            Err(e) => conf::alert!("could not reopen the error log: {e}"),
        }
        // The workers reopen the same paths as `user`: the files must be theirs already.
        if let Some(user) = &self.user {
            chown_logs(&self.conf, user);
        }
        for w in &self.workers {
            // A worker still starting has not installed its handler yet, and the default
            // action of USR1 would kill it; it opens the log itself when it starts.
            if w.state != State::Spawning {
                signal_worker(w.pid, Signal::SIGUSR1);
            }
        }
    }

    /// USR2: start the binary on disk as a new master that inherits the listening sockets;
    /// the pid file moves to `.oldbin` so that the new master can write its own.
    fn upgrade(&mut self) {
        if self.phase != Phase::Running {
            conf::notice!("binary upgrade (USR2) ignored: not running");
            return;
        }
        if let Some(pid) = self.new_binary {
            conf::notice!("binary upgrade (USR2) ignored: new master {pid} is running already");
            return;
        }
        let (Some(binary), Some(pid_file)) = (self.binary.clone(), self.pid_file.clone()) else {
            conf::alert!("binary upgrade impossible: the path of the binary is unknown");
            return;
        };
        let oldbin = upgrade::oldbin_path(&pid_file);
        if let Err(e) = std::fs::rename(&pid_file, &oldbin) {
            conf::alert!(
                "binary upgrade failed: could not rename {} to {}: {e}",
                pid_file.display(),
                oldbin.display()
            );
            return;
        }
        let env = self.notifier.env();
        match upgrade::spawn_new_master(&binary, &self.conf.path, &self.listeners, env) {
            Ok(pid) => {
                conf::notice!(
                    "binary upgrade: started the new master {pid} from {}",
                    binary.display()
                );
                self.new_binary = Some(pid);
                self.pid_file = Some(oldbin);
            }
            Err(e) => {
                conf::alert!("binary upgrade failed: {e}");
                if let Err(e) = std::fs::rename(&oldbin, &pid_file) {
                    conf::alert!("could not rename {} back: {e}", oldbin.display());
                }
            }
        }
    }

    /// The new master of a binary upgrade exited: this master is the one again. The pid file
    /// comes back from `.oldbin`, and workers retired by WINCH are started again; systemd is
    /// told that this master is the main process again.
    fn new_binary_exited(&mut self, pid: Pid, exit: Exit) {
        self.new_binary = None;
        conf::notice!(
            "new master {pid} {exit}, the old master {} takes over",
            self.pid
        );
        if let Some(oldbin) = self.pid_file.clone() {
            let pid_file = self.conf.pid.clone();
            match std::fs::rename(&oldbin, &pid_file) {
                Ok(()) => self.pid_file = Some(pid_file),
                Err(e) => conf::alert!("could not rename {} back: {e}", oldbin.display()),
            }
        }
        if self.no_accepting && self.phase == Phase::Running {
            self.reconfigure();
        } else if self.phase == Phase::Running {
            // The new master may have been the main process; its exit must not look like the
            // end of the service.
            self.notifier.ready(&self.serving_status(), true);
        }
    }

    /// WINCH, after a binary upgrade: gracefully retire every worker and respawn none, since
    /// the new master serves. Ignored otherwise (a terminal resize sends WINCH to a
    /// foreground process group).
    fn retire_all(&mut self) {
        if self.new_binary.is_none() || self.phase != Phase::Running {
            conf::notice!("WINCH ignored: no binary upgrade in progress");
            return;
        }
        conf::notice!("retiring the workers (WINCH)");
        self.no_accepting = true;
        self.reload = None;
        self.mq_pending = false;
        for s in &mut self.slots {
            s.respawn_at = None;
        }
        // Every current worker becomes "old" and is retired.
        self.generation += 1;
        self.retire_old();
    }

    /// Everything that happens at a time rather than on an event.
    fn timers(&mut self, now: Instant) {
        if self.phase != Phase::Stopping && !self.no_accepting {
            for slot in 0..self.slots.len() {
                if self.slots[slot].respawn_at.is_some_and(|at| at <= now) {
                    self.slots[slot].respawn_at = None;
                    self.respawn(slot);
                }
            }
        }
        let starting = matches!(self.phase, Phase::Starting { .. });
        for w in &mut self.workers {
            if w.kill_at.is_some_and(|at| at <= now) {
                log::warn!("worker {} did not exit in time, sending SIGKILL", w.pid);
                signal_worker(w.pid, Signal::SIGKILL);
                w.kill_at = None;
            }
            // At startup the master's own deadline covers this.
            if w.state == State::Spawning
                && !w.killed
                && !starting
                && now.duration_since(w.spawned) >= READY_TIMEOUT
            {
                conf::alert!(
                    "worker {} not ready after {} s, sending SIGKILL",
                    w.pid,
                    READY_TIMEOUT.as_secs()
                );
                signal_worker(w.pid, Signal::SIGKILL);
                w.killed = true;
            }
        }
        self.progress_reload(now);
        if self.mq_pending && self.workers.iter().all(|w| w.generation == self.generation) {
            self.mq_pending = false;
            for slot in 0..self.slots.len() {
                self.respawn(slot);
            }
        }
        self.close_unused_listeners();
    }

    /// A kv reload: once no new worker is still starting, retire the old generation; if no new
    /// worker serves (each failed its init or keeps crashing), keep the old workers and go back
    /// to the old conf.
    fn progress_reload(&mut self, now: Instant) {
        let Some(reload) = &self.reload else { return };
        let starting = self
            .workers
            .iter()
            .any(|w| w.generation == self.generation && w.state == State::Spawning);
        if starting && now.duration_since(reload.started) < READY_TIMEOUT {
            return;
        }
        let Some(reload) = self.reload.take() else {
            return;
        };
        let old_serving = self
            .workers
            .iter()
            .any(|w| w.generation == reload.old_generation && w.state == State::Running);
        let new_serving = self
            .workers
            .iter()
            .any(|w| w.generation == self.generation && w.state == State::Running);
        if !new_serving && old_serving {
            // Every new worker failed its init or keeps crashing: retiring the old ones would
            // leave nobody serving.
            conf::alert!("reload failed: no new worker could start, keeping the old workers");
            let kill_at = now + TERMINATE_GRACE;
            for w in &mut self.workers {
                if w.generation == self.generation {
                    signal_worker(w.pid, Signal::SIGTERM);
                    w.state = State::Exiting;
                    w.kill_at = Some(kill_at);
                }
            }
            self.conf = reload.old_conf;
            self.slots = reload.old_slots;
            self.user = reload.old_user;
            self.generation = reload.old_generation;
            if let Err(e) = init_logger(&self.conf) {
                conf::alert!("{e}");
            }
            return;
        }
        self.retire_old();
    }

    /// Closes the sockets of addresses the conf no longer lists, once no worker that may use
    /// them is left.
    fn close_unused_listeners(&mut self) {
        let listed = |addr: &SocketAddr| self.conf.listen.iter().any(|l| l.addr == *addr);
        if self.listeners.iter().all(|l| listed(&l.addr))
            || self.workers.iter().any(|w| w.generation != self.generation)
        {
            return;
        }
        let conf = &self.conf;
        self.listeners.retain(|l| {
            let keep = conf.listen.iter().any(|c| c.addr == l.addr);
            if !keep {
                conf::notice!("closed the listening socket {}", l.addr);
            }
            keep
        });
    }
}

/// Sends `sig` to a worker; one that is already gone (ESRCH) is reaped soon.
fn signal_worker(pid: Pid, sig: Signal) {
    match kill(pid, sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => conf::alert!("could not send {} to worker {pid}: {e}", sig.as_str()),
    }
}

/// (Re)initialises the error log from `conf`.
pub fn init_logger(conf: &Conf) -> Result<(), MasterError> {
    conf::logger::init(&conf.error_log, conf.error_log_level).map_err(|err| MasterError::Log {
        target: match &conf.error_log {
            LogTarget::File(p) => p.display().to_string(),
            LogTarget::Stderr => "stderr".to_string(),
        },
        err,
    })
}

/// Hands the log files the master opened to the workers' user, who writes them too.
pub fn chown_logs(conf: &Conf, user: &User) {
    let files = [
        match &conf.error_log {
            LogTarget::File(p) => Some(p),
            LogTarget::Stderr => None,
        },
        conf.access_log.as_ref(),
    ];
    if let Some(path) = &conf.access_log {
        // Workers open the access log themselves (after switching user), so it must exist
        // and be theirs before they start.
        if let Err(e) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            log::warn!("could not create access_log {}: {e}", path.display());
        }
    }
    for path in files.into_iter().flatten() {
        if path.exists() {
            if let Err(e) = process::chown_tree(path, user) {
                log::warn!("{e}");
            }
        }
    }
}
