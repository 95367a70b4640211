//! The master loop, after nginx's `ngx_master_process_cycle`: wait for a signal byte, a worker's
//! ready byte or the next timer; then, in this fixed order: reap children, terminate, quit,
//! reconfigure, reopen (then the binary upgrade's USR2 and WINCH); then the timers (respawn
//! back-off, kill deadlines, the reload's progress). It owns the master's phase (starting,
//! running, stopping), respawning a crashed worker with back-off, the pid file's life, the
//! exit code and what systemd is told; the process table is `process`'s, the cluster helper's
//! supervision `helper`'s, the reload `reload`'s and the binary upgrade `upgrade`'s.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use conf::LogTarget;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::MasterError;
use crate::logs;
use crate::notify::Notifier;
use crate::pidfile;
use crate::process::{self, Exit, State, Table, QUIT_SLACK, READY_TIMEOUT, TERMINATE_GRACE};
use crate::reload::{self, Reload};
use crate::signals::Pending;
use crate::upgrade::{Takeover, Upgrade};

/// The longest the loop sleeps without looking at its timers.
const MAX_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Workers forked, not all ready yet; the pid file is not written.
    Starting {
        deadline: Instant,
    },
    Running,
    /// QUIT, TERM or a failed startup: waiting for the last worker (then the cluster
    /// helper) to exit.
    Stopping,
}

/// The master's whole state.
pub struct Master {
    /// The workers, their slots, and what they are forked with.
    table: Table,
    phase: Phase,
    /// The pid file, once written.
    pid_file: Option<PathBuf>,
    reload: Reload,
    upgrade: Upgrade,
    /// A HUP that arrived during startup, handled once running.
    deferred_reload: bool,
    /// Why a failed startup stops.
    failure: Option<MasterError>,
    /// systemd's readiness protocol (does nothing when not started by systemd).
    notifier: Notifier,
    /// A reload announced with `RELOADING=1` whose `READY=1` is due once it settles; `true`
    /// when that `READY=1` also claims the main process (see [`Master::reload_settled`]).
    reload_announced: Option<bool>,
    /// `STOPPING=1` has been sent.
    stop_announced: bool,
}

impl Master {
    /// A master over `table` (no worker forked yet); `notifier` is how it talks to systemd.
    pub fn new(table: Table, upgrade: Upgrade, notifier: Notifier) -> Master {
        Master {
            table,
            phase: Phase::Running,
            pid_file: None,
            reload: Reload::default(),
            upgrade,
            deferred_reload: false,
            failure: None,
            notifier,
            reload_announced: None,
            stop_announced: false,
        }
    }

    /// Runs until stopped; returns the process exit code. A startup failure is reported on
    /// stderr (or to the original process of a daemon) and in the log.
    pub fn run(mut self) -> i32 {
        match self.cycle() {
            Ok(code) => code,
            Err(e) => {
                if matches!(self.table.conf.error_log, LogTarget::File(_)) {
                    conf::emerg!("{e}");
                }
                match self.table.reporter.take() {
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
            self.table.pid,
            self.table.slots.len(),
            self.table.conf.path.display()
        );
        if self.table.user.as_ref().is_some_and(|u| u.uid.is_root()) {
            log::warn!("user root: the workers run as root");
        }
        self.phase = Phase::Starting {
            deadline: Instant::now() + READY_TIMEOUT,
        };
        // The helper first: the workers' links find its socket sooner.
        let mut started = self.table.spawn_helper();
        for slot in 0..self.table.slots.len() {
            if started.is_err() {
                break;
            }
            started = self.table.spawn(slot);
        }
        if let Err(e) = started {
            // Stop the children already forked, then fail.
            self.fail(e);
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
            let running = self.phase == Phase::Running;
            if pending.upgrade {
                self.upgrade
                    .start(running, &self.table, &mut self.pid_file, &self.notifier);
            }
            if pending.winch && self.upgrade.retire_workers(running, &mut self.table) {
                self.reload.abandon();
            }
            self.timers(Instant::now());
            match self.phase {
                Phase::Starting { deadline } => self.check_started(deadline),
                Phase::Running => self.reload_settled(),
                Phase::Stopping => {
                    if self.table.workers.is_empty() {
                        // Graceful: the helper answered the workers' last parked writes; now
                        // it may go (TERM has told it already).
                        self.table.stop_helper(Signal::SIGQUIT);
                        if self.table.helper_gone() {
                            return self.exit();
                        }
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
        let workers = &self.table.workers;
        let Some(sig) = self.table.signals.as_ref() else {
            return Pending::default();
        };
        let spawning: Vec<usize> = (0..workers.len())
            .filter(|&i| workers[i].ready.is_some())
            .collect();
        let mut fds = vec![PollFd::new(sig.fd(), PollFlags::POLLIN)];
        for &i in &spawning {
            if let Some(fd) = &workers[i].ready {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
        }
        let helper = self.table.helper_ready_fd();
        if let Some(fd) = helper {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        let helper = helper.is_some();
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
                self.table.read_ready(i);
            }
        }
        if helper && readable.last() == Some(&true) {
            self.table.read_helper_ready();
        }
        pending
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut at: Vec<Instant> = Vec::new();
        if let Phase::Starting { deadline } = self.phase {
            at.push(deadline);
        }
        at.extend(self.table.slots.iter().filter_map(|s| s.respawn_at));
        for w in &self.table.workers {
            at.extend(w.kill_at);
            if w.state == State::Spawning && !w.killed {
                at.push(w.spawned + READY_TIMEOUT);
            }
        }
        at.extend(self.reload.deadline());
        at.extend(self.table.helper_deadline());
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
                        self.child_exited(pid, exit, stopping);
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

    fn child_exited(&mut self, pid: Pid, exit: Exit, stopping: bool) {
        if self.upgrade.is_new_master(pid) {
            let running = self.phase == Phase::Running;
            let takeover =
                self.upgrade
                    .new_master_exited(pid, exit, running, &self.table, &mut self.pid_file);
            match takeover {
                Takeover::Restart => self.reconfigure(),
                Takeover::Reclaim => self.notifier.ready(&self.serving_status(), true),
                Takeover::Nothing => {}
            }
            return;
        }
        if self
            .table
            .helper_exited(pid, exit, stopping || self.phase == Phase::Stopping)
        {
            return;
        }
        let Some(i) = self.table.workers.iter().position(|w| w.pid == pid) else {
            return;
        };
        let w = self.table.workers.remove(i);
        let asked = w.state == State::Exiting
            || stopping
            || self.phase == Phase::Stopping
            || w.generation != self.table.generation;
        if asked {
            conf::notice!("worker {pid} {exit}");
            return;
        }
        if exit == Exit::Code(worker::EXIT_FATAL_INIT) {
            conf::alert!(
                "worker {pid} {exit}: fatal init error, slot {} is not respawned",
                w.slot
            );
            self.table.slots[w.slot].failed = true;
            return;
        }
        conf::notice!("worker {pid} {exit}, respawning");
        self.table.metrics.worker_restarted(w.slot);
        let now = Instant::now();
        let served = w.state == State::Running;
        // Back-off protects from a crash loop, never at the price of serving nothing: a
        // worker that had served, or that was killed from outside (SIGKILL: an operator, a
        // script, the OOM killer; never a crash of the worker's own), is replaced at once when
        // no other serves. A worker that crashed by itself before it served still backs off.
        let alone =
            (served || exit.killed_from_outside()) && !self.table.serving(self.table.generation);
        let slot = &mut self.table.slots[w.slot];
        match slot.crashed(now, w.spawned, served) {
            None => self.table.respawn(w.slot),
            Some(_) if alone => {
                conf::notice!(
                    "worker slot {} died soon after it started, but no worker serves: \
                     respawning it at once",
                    w.slot
                );
                self.table.respawn(w.slot);
            }
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

    /// QUIT (graceful) or TERM (fast): signal every worker, close the master's listening
    /// sockets (the port is released once the last worker closes its copy), and wait. TERM
    /// stops the cluster helper at once too; after QUIT it is asked once the last worker has
    /// exited (see `cycle`).
    fn stop(&mut self, sig: Signal) {
        let (grace, what) = if sig == Signal::SIGQUIT {
            (self.table.conf.shutdown_timeout + QUIT_SLACK, "graceful")
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
            self.table.workers.len()
        );
        self.phase = Phase::Stopping;
        self.table.listeners.clear();
        self.reload.abandon();
        self.table.cancel_respawns();
        let kill_at = Instant::now() + grace;
        for w in &mut self.table.workers {
            process::signal_worker(w.pid, sig);
            w.state = State::Exiting;
            w.kill_at = Some(w.kill_at.map_or(kill_at, |t| t.min(kill_at)));
        }
        if sig != Signal::SIGQUIT {
            self.table.stop_helper(sig);
        }
    }

    /// Startup: once every slot has a ready worker (or failed for good), write the pid file
    /// and report success; if none could start, or not in time, stop with an error.
    fn check_started(&mut self, deadline: Instant) {
        let table = &self.table;
        let settled = (0..table.slots.len()).all(|s| {
            table.slots[s].failed
                || table
                    .workers
                    .iter()
                    .any(|w| w.slot == s && w.state == State::Running)
        });
        let log = match &table.conf.error_log {
            LogTarget::File(p) => p.display().to_string(),
            LogTarget::Stderr => "stderr".to_string(),
        };
        if !settled || !table.helper_settled() {
            if Instant::now() >= deadline {
                self.fail(MasterError::NotReady {
                    secs: READY_TIMEOUT.as_secs(),
                    log,
                });
            }
            return;
        }
        if !table.workers.iter().any(|w| w.state == State::Running) {
            self.fail(MasterError::WorkersFailed { log });
            return;
        }
        if table.helper_failed() {
            self.fail(MasterError::HelperFailed { log });
            return;
        }
        if let Err(err) = pidfile::write(&table.conf.pid, table.pid.as_raw()) {
            self.fail(MasterError::PidFile {
                path: self.table.conf.pid.clone(),
                err,
            });
            return;
        }
        self.pid_file = Some(self.table.conf.pid.clone());
        self.phase = Phase::Running;
        if let Some(reporter) = self.table.reporter.take() {
            reporter.ready();
        }
        // Also the new master of a binary upgrade: MAINPID makes it the process systemd
        // supervises, so that the old one may exit.
        self.notifier.ready(&self.serving_status(), true);
        let table = &self.table;
        let addrs: Vec<&str> = table.conf.listen.iter().map(|l| l.text.as_str()).collect();
        let helper = match table.helper_pid() {
            Some(pid) => format!(", cluster helper {pid}"),
            None => String::new(),
        };
        conf::notice!(
            "huststore started: master {}, {} workers{helper}, listening on {}",
            table.pid,
            table.workers.len(),
            addrs.join(", ")
        );
    }

    /// The line `systemctl status` shows while the workers serve.
    fn serving_status(&self) -> String {
        let table = &self.table;
        let addrs: Vec<&str> = table.conf.listen.iter().map(|l| l.text.as_str()).collect();
        let serving = table
            .workers
            .iter()
            .filter(|w| w.state == State::Running)
            .count();
        format!(
            "serving on {} with {serving} workers (master {})",
            addrs.join(", "),
            table.pid
        )
    }

    /// After a `RELOADING=1`: once the reload has settled (the new workers serve, or it was
    /// abandoned: a bad conf, no new worker could start), `READY=1` again.
    fn reload_settled(&mut self) {
        let Some(claim) = self.reload_announced else {
            return;
        };
        if self.reload.in_progress() || self.table.starting() {
            return;
        }
        self.reload_announced = None;
        self.notifier.ready(&self.serving_status(), claim);
    }

    /// `STOPPING=1`, once, unless this master is not the one systemd supervises (see
    /// [`Upgrade::not_main`]): its STOPPING=1 would stop the whole service.
    fn announce_stop(&mut self, what: &str) {
        if self.stop_announced {
            return;
        }
        self.stop_announced = true;
        if self.upgrade.not_main() {
            return;
        }
        self.notifier
            .stopping(&format!("{what} shutdown of master {}", self.table.pid));
    }

    fn fail(&mut self, e: MasterError) {
        self.failure = Some(e);
        self.stop(Signal::SIGTERM);
    }

    /// The last worker is gone: remove the pid file and return the exit status.
    fn exit(&mut self) -> Result<i32, MasterError> {
        if let Some(path) = self.pid_file.take() {
            pidfile::remove(&path, self.table.pid.as_raw());
        }
        match self.failure.take() {
            Some(e) => Err(e),
            None => {
                conf::notice!("huststore master {} exiting", self.table.pid);
                Ok(0)
            }
        }
    }

    /// HUP: announce the reload to systemd, then re-read the conf. After WINCH it restarts
    /// the workers with the conf in force instead (the rollback of a binary upgrade).
    fn reconfigure(&mut self) {
        // A claim already due stays due.
        let claim = self.upgrade.reload_claims_main();
        self.reload_announced = Some(claim || self.reload_announced == Some(true));
        self.notifier
            .reloading(&format!("reloading {}", self.table.conf.path.display()));
        if self.upgrade.workers_retired() {
            self.upgrade.restart_workers(&mut self.table);
        } else {
            self.reload.reconfigure(&mut self.table, &mut self.pid_file);
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
        if let Some(user) = &self.table.user {
            logs::chown_logs(&self.table.conf, user);
        }
        for w in &self.table.workers {
            // A worker still starting has not installed its handler yet, and the default
            // action of USR1 would kill it; it opens the log itself when it starts.
            if w.state != State::Spawning {
                process::signal_worker(w.pid, Signal::SIGUSR1);
            }
        }
        self.table.reopen_helper();
    }

    /// Everything that happens at a time rather than on an event.
    fn timers(&mut self, now: Instant) {
        if self.phase != Phase::Stopping && !self.upgrade.workers_retired() {
            for slot in 0..self.table.slots.len() {
                if self.table.slots[slot]
                    .respawn_at
                    .is_some_and(|at| at <= now)
                {
                    self.table.slots[slot].respawn_at = None;
                    self.table.respawn(slot);
                }
            }
        }
        let starting = matches!(self.phase, Phase::Starting { .. });
        self.table
            .helper_timers(now, self.phase != Phase::Stopping, starting);
        for w in &mut self.table.workers {
            if w.kill_at.is_some_and(|at| at <= now) {
                log::warn!("worker {} did not exit in time, sending SIGKILL", w.pid);
                process::signal_worker(w.pid, Signal::SIGKILL);
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
                process::signal_worker(w.pid, Signal::SIGKILL);
                w.killed = true;
            }
        }
        self.reload.progress(&mut self.table, now);
        reload::close_unused_listeners(&mut self.table);
    }
}
