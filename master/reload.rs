//! The reload (HUP), as nginx does it: re-read the conf (a bad one, or one that changes what
//! cluster mode cannot change by HUP, `cluster.rs`, changes nothing), prepare the data folder, bind only the addresses the new conf adds
//! (the others keep their sockets and their accept queues), re-init the log, then start the new
//! generation of workers *before* retiring the old one, so that some worker always accepts. If
//! no new worker comes to serve, the old conf and the old workers stay. In mq mode only one
//! worker may run: the old one goes first. A socket the conf no longer lists is closed once no
//! worker that may use it is left. The cluster helper is not part of a generation: it keeps
//! running (one that failed its init is started again).
//!
//! The restart of the workers after WINCH (the rollback of a binary upgrade) is the upgrade's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use conf::{Conf, Mode};
use nix::sys::signal::Signal;
use nix::unistd::User;

use crate::cluster;
use crate::error::MasterError;
use crate::listen::{self, Listener};
use crate::logs;
use crate::pidfile;
use crate::process::{self, Slot, State, Table, READY_TIMEOUT, TERMINATE_GRACE};

/// A kv-mode reload in progress: the new generation is starting, the old one still serves.
/// What the table held before, to go back to.
struct Previous {
    conf: Conf,
    slots: Vec<Slot>,
    user: Option<User>,
    generation: u64,
    started: Instant,
}

/// The reload the master is in the middle of, if any.
#[derive(Default)]
pub struct Reload {
    /// kv mode: the new generation starts beside the old one.
    kv: Option<Previous>,
    /// mq mode: the new worker starts once the old one is gone.
    mq_pending: bool,
}

impl Reload {
    /// HUP: re-read the conf of `table`; a bad one changes nothing. `pid_file`: the pid file
    /// this master wrote, if any (it moves when the conf moves it).
    pub fn reconfigure(&mut self, table: &mut Table, pid_file: &mut Option<PathBuf>) {
        conf::notice!("reconfiguring: reading {}", table.conf.path.display());
        let result = conf::load(&table.conf.path)
            .map_err(MasterError::Conf)
            .and_then(|new| {
                cluster::check_reload(&table.conf, &new, table.user.is_some())?;
                self.apply(table, pid_file, new)
            });
        if let Err(e) = result {
            log::error!("reload failed, keeping the old conf: {e}");
        }
    }

    /// Applies a good conf: prepare the data folder, bind the new addresses, re-init the log,
    /// then start the new generation. Any failure before the commit point leaves everything
    /// as it was.
    fn apply(
        &mut self,
        table: &mut Table,
        pid_file: &mut Option<PathBuf>,
        new: Conf,
    ) -> Result<(), MasterError> {
        if new.daemon != table.conf.daemon {
            log::warn!("\"daemon\" cannot change on reload, ignored");
        }
        worker::prepare(&new, false).map_err(MasterError::Prepare)?;
        let user = process::resolve_user(&new.user)?;
        if let Some(user) = &user {
            crate::access::check_reachable(&new, user)?;
            process::chown_tree(&new.data_dir, user)?;
        }
        let mut bound: Vec<Listener> = Vec::new();
        for l in &new.listen {
            let known = |b: &Listener| b.addr == l.addr;
            if !table.listeners.iter().any(known) && !bound.iter().any(known) {
                bound.push(listen::bind(l.addr)?);
            }
        }
        logs::init_logger(&new)?;
        // Commit point: from here on the new conf is in force.
        crate::limits::set_nofile(&new);
        if let Some(user) = &user {
            logs::chown_logs(&new, user);
        }
        if new.pid != table.conf.pid && pid_file.is_some() {
            match pidfile::write(&new.pid, table.pid.as_raw()) {
                Ok(()) => {
                    pidfile::remove(&table.conf.pid, table.pid.as_raw());
                    *pid_file = Some(new.pid.clone());
                }
                Err(e) => log::error!("could not write the pid file {}: {e}", new.pid.display()),
            }
        }
        for l in &bound {
            conf::notice!("listening on {}", l.addr);
        }
        table.listeners.extend(bound);
        let count = new.worker_count();
        let old_conf = std::mem::replace(&mut table.conf, new);
        let old_user = std::mem::replace(&mut table.user, user);
        let old_slots = std::mem::replace(&mut table.slots, process::fresh_slots(count));
        let old_generation = table.generation;
        table.generation += 1;
        conf::notice!(
            "reloaded {}: starting {count} new workers",
            table.conf.path.display()
        );
        // With the new conf in force, so that the helper starts with it.
        table.helper_reloaded();
        if old_conf.mode == Mode::Mq || table.conf.mode == Mode::Mq {
            // Only one mq worker may run (parked clients live in its memory): retire the old
            // one first; `progress` starts the new one once it has exited.
            self.kv = None;
            self.mq_pending = true;
            table.retire_old();
        } else {
            // New workers first; the old ones are retired once the new ones serve, so there
            // is always a worker accepting.
            self.kv = Some(Previous {
                conf: old_conf,
                slots: old_slots,
                user: old_user,
                generation: old_generation,
                started: Instant::now(),
            });
            table.respawn_all();
        }
        Ok(())
    }

    /// The timers of a reload: retire the old generation once the new one is up (kv), or
    /// start the new worker once the old one is gone (mq).
    pub fn progress(&mut self, table: &mut Table, now: Instant) {
        self.progress_kv(table, now);
        if self.mq_pending
            && table
                .workers
                .iter()
                .all(|w| w.generation == table.generation)
        {
            self.mq_pending = false;
            table.respawn_all();
        }
    }

    /// A kv reload: once no new worker is still starting, retire the old generation; if no new
    /// worker serves (each failed its init or keeps crashing), keep the old workers and go back
    /// to the old conf.
    fn progress_kv(&mut self, table: &mut Table, now: Instant) {
        let Some(previous) = &self.kv else { return };
        if table.starting() && now.duration_since(previous.started) < READY_TIMEOUT {
            return;
        }
        let Some(previous) = self.kv.take() else {
            return;
        };
        let old_serving = table.serving(previous.generation);
        let new_serving = table.serving(table.generation);
        if !new_serving && old_serving {
            // Every new worker failed its init or keeps crashing: retiring the old ones would
            // leave nobody serving.
            conf::alert!("reload failed: no new worker could start, keeping the old workers");
            let kill_at = now + TERMINATE_GRACE;
            for w in &mut table.workers {
                if w.generation == table.generation {
                    process::signal_worker(w.pid, Signal::SIGTERM);
                    w.state = State::Exiting;
                    w.kill_at = Some(kill_at);
                }
            }
            table.conf = previous.conf;
            table.slots = previous.slots;
            table.user = previous.user;
            table.generation = previous.generation;
            if let Err(e) = logs::init_logger(&table.conf) {
                conf::alert!("{e}");
            }
            return;
        }
        table.retire_old();
    }

    /// Gives up the reload in progress (the master stops, or WINCH retires every worker).
    pub fn abandon(&mut self) {
        self.kv = None;
        self.mq_pending = false;
    }

    /// Whether the new generation is not started yet.
    pub fn in_progress(&self) -> bool {
        self.kv.is_some() || self.mq_pending
    }

    /// When a kv reload stops waiting for the new workers to start.
    pub fn deadline(&self) -> Option<Instant> {
        self.kv.as_ref().map(|p| p.started + READY_TIMEOUT)
    }
}

/// Closes the sockets of addresses the conf no longer lists, once no worker that may use
/// them is left.
pub fn close_unused_listeners(table: &mut Table) {
    let listed = |addr: &SocketAddr| table.conf.listen.iter().any(|l| l.addr == *addr);
    if table.listeners.iter().all(|l| listed(&l.addr))
        || table
            .workers
            .iter()
            .any(|w| w.generation != table.generation)
    {
        return;
    }
    let conf = &table.conf;
    table.listeners.retain(|l| {
        let keep = conf.listen.iter().any(|c| c.addr == l.addr);
        if !keep {
            conf::notice!("closed the listening socket {}", l.addr);
        }
        keep
    });
}
