//! The cluster helper process (`cluster.md` §9) as the master sees it: one child beside the
//! workers when the conf has a `cluster { }` block, running `cluster::helper::run` (the
//! consensus engine, the node's peer port, the workers' local socket). It is forked, reported
//! ready and supervised as a worker is (respawned at once when it dies unasked, the same crash
//! back-off, exit 2 not respawned until the next reload), but it is no worker: it has no slot
//! of a generation, so a reload keeps it running (no leader blips), and a graceful stop asks it
//! to stop only once the last worker has exited, since the workers' parked writes need its
//! answers. The child side: the master's descriptors closed, the workers' user, the
//! parent-death signal, and a thread that `sigwait`s the stop signals for the helper's stop
//! channel (the helper's runtime threads never see a signal).

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use cluster::watch;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd;

use crate::process::{self, Exit, State, Table, Worker, READY_TIMEOUT, TERMINATE_GRACE};
use crate::signals;

/// The signals the helper's own thread waits for; blocked in every thread of the helper.
/// QUIT, TERM and INT stop it (the same stop: its answers in flight are bounded by the
/// cluster `timeout` anyway), USR1 reopens the log, HUP is ignored (the master reloads).
const HELPER_SIGNALS: [Signal; 5] = [
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGUSR1,
    Signal::SIGHUP,
];

impl Table {
    /// The helper's pid, while it lives.
    pub fn helper_pid(&self) -> Option<unistd::Pid> {
        self.helper.as_ref()?.proc.as_ref().map(|p| p.pid)
    }

    /// Forks the cluster helper (cluster mode only; nothing otherwise).
    pub fn spawn_helper(&mut self) -> Result<(), crate::error::MasterError> {
        if self.helper.is_none() {
            return Ok(());
        }
        let (pid, ready) = self.fork_child("fork the cluster helper", |table, ready| {
            signals::reset_in_child(&helper_mask());
            table.become_helper(ready)
        })?;
        conf::notice!("started cluster helper {pid}");
        let generation = self.generation;
        if let Some(h) = &mut self.helper {
            h.proc = Some(Worker::spawned(0, generation, pid, ready));
        }
        Ok(())
    }

    /// Forks the helper; a failed fork is retried in 1 s.
    pub fn respawn_helper(&mut self) {
        if let Err(e) = self.spawn_helper() {
            conf::alert!("{e}, retrying in 1 s");
            if let Some(h) = &mut self.helper {
                h.slot.respawn_at = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }

    /// The helper's ready pipe, while it has not reported ready.
    pub fn helper_ready_fd(&self) -> Option<&OwnedFd> {
        self.helper.as_ref()?.proc.as_ref()?.ready.as_ref()
    }

    /// Its ready pipe is readable.
    pub fn read_helper_ready(&mut self) {
        if let Some(p) = self.helper.as_mut().and_then(|h| h.proc.as_mut()) {
            if p.read_ready() {
                log::info!("cluster helper {} is ready", p.pid);
            }
        }
    }

    /// Whether the helper needs nothing more for a start: no cluster, or it serves, or it
    /// failed its init for good.
    pub fn helper_settled(&self) -> bool {
        match &self.helper {
            None => true,
            Some(h) => h.slot.failed || h.proc.as_ref().is_some_and(|p| p.state == State::Running),
        }
    }

    /// Whether the helper exited with the fatal init code (not respawned until a reload).
    pub fn helper_failed(&self) -> bool {
        self.helper.as_ref().is_some_and(|h| h.slot.failed)
    }

    /// A reload was committed: a helper that failed its init is given another try.
    pub fn helper_reloaded(&mut self) {
        let Some(h) = &mut self.helper else { return };
        if h.slot.failed && h.proc.is_none() {
            h.slot.failed = false;
            conf::notice!("reload: starting the cluster helper again");
            self.respawn_helper();
        }
    }

    /// The helper `pid` exited (→ true; false when `pid` is not the helper). `stopping`: the
    /// master is stopping, nothing is respawned.
    pub fn helper_exited(&mut self, pid: unistd::Pid, exit: Exit, stopping: bool) -> bool {
        let Some(h) = &mut self.helper else {
            return false;
        };
        if h.proc.as_ref().map(|p| p.pid) != Some(pid) {
            return false;
        }
        let Some(p) = h.proc.take() else { return false };
        if p.state == State::Exiting || stopping {
            conf::notice!("cluster helper {pid} {exit}");
            return true;
        }
        if exit == Exit::Code(cluster::helper::EXIT_FATAL_INIT) {
            conf::alert!(
                "cluster helper {pid} {exit}: fatal init error, not respawned until the next reload"
            );
            h.slot.failed = true;
            return true;
        }
        conf::notice!("cluster helper {pid} {exit}, respawning");
        let now = Instant::now();
        // The helper's deaths all count towards its back-off: a helper killed again and
        // again stalls its groups (each restart replays and re-elects) whatever it served.
        match h.slot.crashed(now, p.spawned, false) {
            None => self.respawn_helper(),
            Some(delay) => {
                let n = h.slot.crashes.len();
                h.slot.respawn_at = Some(now + delay);
                if n >= process::CRASH_LIMIT {
                    conf::notice!(
                        "cluster helper crashed {n} times in {} s, respawning in {} s",
                        process::CRASH_WINDOW.as_secs(),
                        delay.as_secs()
                    );
                } else {
                    conf::notice!(
                        "cluster helper keeps crashing, respawning in {} s",
                        delay.as_secs()
                    );
                }
            }
        }
        true
    }

    /// Asks the helper to stop with `sig` (QUIT: after the last worker; TERM: with them),
    /// SIGKILL past the grace: TERM's, or for QUIT the cluster `timeout` (its last answers)
    /// plus TERM's.
    pub fn stop_helper(&mut self, sig: Signal) {
        let grace = match (&self.conf.cluster, sig) {
            (Some(c), Signal::SIGQUIT) => c.timeout + TERMINATE_GRACE,
            _ => TERMINATE_GRACE,
        };
        let Some(p) = self.helper.as_mut().and_then(|h| h.proc.as_mut()) else {
            return;
        };
        if sig == Signal::SIGQUIT && p.state == State::Exiting {
            return;
        }
        conf::notice!("sending {} to the cluster helper {}", sig.as_str(), p.pid);
        process::signal_worker(p.pid, sig);
        p.state = State::Exiting;
        let kill_at = Instant::now() + grace;
        p.kill_at = Some(p.kill_at.map_or(kill_at, |t| t.min(kill_at)));
    }

    /// Whether no helper process is left.
    pub fn helper_gone(&self) -> bool {
        self.helper_pid().is_none()
    }

    /// USR1: the helper reopens the log (its signal is blocked from the fork on, so one sent
    /// while it starts waits for its thread).
    pub fn reopen_helper(&self) {
        if let Some(pid) = self.helper_pid() {
            process::signal_worker(pid, Signal::SIGUSR1);
        }
    }

    /// The helper's timers: its back-off respawn (`respawn`: the master may respawn), the
    /// SIGKILL of one that does not exit in time, and of one never ready (`starting`: the
    /// master's startup deadline covers that).
    pub fn helper_timers(&mut self, now: Instant, respawn: bool, starting: bool) {
        let Some(h) = &mut self.helper else { return };
        if respawn && h.slot.respawn_at.is_some_and(|at| at <= now) {
            h.slot.respawn_at = None;
            self.respawn_helper();
            return;
        }
        let Some(p) = h.proc.as_mut() else { return };
        if p.kill_at.is_some_and(|at| at <= now) {
            log::warn!(
                "cluster helper {} did not exit in time, sending SIGKILL",
                p.pid
            );
            process::signal_worker(p.pid, Signal::SIGKILL);
            p.kill_at = None;
        }
        if p.state == State::Spawning
            && !p.killed
            && !starting
            && now.duration_since(p.spawned) >= READY_TIMEOUT
        {
            conf::alert!(
                "cluster helper {} not ready after {} s, sending SIGKILL",
                p.pid,
                READY_TIMEOUT.as_secs()
            );
            process::signal_worker(p.pid, Signal::SIGKILL);
            p.killed = true;
        }
    }

    /// When the helper's next timer is due.
    pub fn helper_deadline(&self) -> Option<Instant> {
        let h = self.helper.as_ref()?;
        let mut at: Vec<Instant> = h.slot.respawn_at.into_iter().collect();
        if let Some(p) = &h.proc {
            at.extend(p.kill_at);
            if p.state == State::Spawning && !p.killed {
                at.push(p.spawned + READY_TIMEOUT);
            }
        }
        at.into_iter().min()
    }

    /// In the child: close the master's state and every listening socket (the helper serves
    /// no client), become the workers' user, then run the helper until a stop signal; its
    /// exit code.
    fn become_helper(&mut self, ready: OwnedFd) -> i32 {
        self.forget_master_state();
        self.listeners.clear();
        process::become_child("cluster helper", self.user.as_ref(), self.pid);
        run_helper(&self.conf, ready)
    }
}

/// [`HELPER_SIGNALS`] as a set.
fn helper_mask() -> SigSet {
    let mut set = SigSet::empty();
    for sig in HELPER_SIGNALS {
        set.add(sig);
    }
    set
}

/// Runs `cluster::helper::run` with a stop channel that a thread of its own flips on QUIT,
/// TERM or INT (the signals are blocked since the fork, in every thread that the helper's
/// runtime will start), and a ready callback that writes the master's ready byte.
fn run_helper(conf: &conf::Conf, ready: OwnedFd) -> i32 {
    let (stop, stopped) = watch::channel(false);
    let mask = helper_mask();
    let waiter = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            match mask.wait() {
                Ok(Signal::SIGUSR1) => {
                    if let Err(e) = conf::logger::reopen() {
                        log::error!("cluster helper: could not reopen the error log: {e}");
                    }
                }
                Ok(Signal::SIGQUIT | Signal::SIGTERM | Signal::SIGINT) => {
                    // The receiver may be gone (the helper is exiting already).
                    let _ = stop.send(true);
                }
                Ok(_) | Err(_) => {}
            }
        });
    if let Err(e) = waiter {
        log::error!("cluster helper: could not start its signal thread: {e}");
        return cluster::helper::EXIT_FATAL_INIT;
    }
    let report = move || {
        // A master that is gone reads nothing; the parent-death signal stops the helper.
        let _ = unistd::write(&ready, &[1u8]);
        drop(ready);
    };
    cluster::helper::run(conf, stopped, report)
}
