//! Binary upgrade (USR2), as nginx does it: the running master starts the binary on disk as a
//! new master that inherits the listening sockets, so old and new serve side by side on the
//! same sockets and no connection is refused; WINCH then retires the old workers, and QUIT the
//! old master (or HUP rolls back: the old master starts its workers again). Meanwhile the old
//! master's pid file is `<pid>.oldbin`, and it comes back if the new master exits. This file
//! owns the old master's side ([`Upgrade`]) and the new master's (the sockets it inherits).
//!
//! The sockets travel as file descriptors kept open across `exec` (close-on-exec cleared for
//! the spawn only), named in the environment variable [`ENV`] as `fd:addr;fd:addr`.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::unistd::{self, Pid};

use crate::error::MasterError;
use crate::listen::Listener;
use crate::notify::Notifier;
use crate::process::{self, Exit, Table};
use crate::signals;

/// The environment variable that hands the listening sockets to the new master.
pub const ENV: &str = "HUSTSTORE_LISTEN_FDS";

/// The master's side of a binary upgrade.
#[derive(Debug, Default)]
pub struct Upgrade {
    /// The binary a USR2 starts (absolute path this master was started from).
    binary: Option<PathBuf>,
    /// The new master started by USR2, while it runs.
    new_master: Option<Pid>,
    /// WINCH retired the workers (a new master serves): none is respawned until HUP.
    retired: bool,
    /// Started by a binary upgrade: the old master's pid (this master's parent).
    upgraded_from: Option<Pid>,
}

/// What the master does once the new master of an upgrade has exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover {
    /// WINCH had retired the workers: start them again, as HUP does.
    Restart,
    /// The workers serve: tell systemd that this master is the main process again.
    Reclaim,
    /// This master is not running (starting or stopping): nothing.
    Nothing,
}

impl Upgrade {
    /// `binary`: what a USR2 starts; `upgraded_from`: the old master, when this master was
    /// started by a binary upgrade.
    pub fn new(binary: Option<PathBuf>, upgraded_from: Option<Pid>) -> Upgrade {
        Upgrade {
            binary,
            upgraded_from,
            ..Upgrade::default()
        }
    }

    /// Whether `pid` is the new master this one started.
    pub fn is_new_master(&self, pid: Pid) -> bool {
        self.new_master == Some(pid)
    }

    /// WINCH retired the workers: none may be respawned until HUP.
    pub fn workers_retired(&self) -> bool {
        self.retired
    }

    /// Whether this master's `STOPPING=1` would stop the whole service although it is not the
    /// one systemd supervises: after a binary upgrade the new master is (while it runs), and
    /// a new master whose old master still lives has been rolled back.
    pub fn not_main(&self) -> bool {
        let handed_over = self.new_master.is_some();
        let rolled_back = self
            .upgraded_from
            .is_some_and(|old| unistd::getppid() == old);
        handed_over || rolled_back
    }

    /// Whether the `READY=1` that ends a reload claims the main process. While a new master
    /// serves side by side, it is the one systemd supervises, and a plain reload of this one
    /// must not take that back; the rollback (HUP after WINCH) must.
    pub fn reload_claims_main(&self) -> bool {
        self.new_master.is_none() || self.retired
    }

    /// USR2: start the binary on disk as a new master that inherits the listening sockets of
    /// `table`; the `pid_file` moves to `.oldbin` so that the new master can write its own.
    /// `running`: this master serves (not starting, not stopping).
    pub fn start(
        &mut self,
        running: bool,
        table: &Table,
        pid_file: &mut Option<PathBuf>,
        notifier: &Notifier,
    ) {
        if !running {
            conf::notice!("binary upgrade (USR2) ignored: not running");
            return;
        }
        if let Some(pid) = self.new_master {
            conf::notice!("binary upgrade (USR2) ignored: new master {pid} is running already");
            return;
        }
        if table.conf.cluster.is_some() {
            // The new master's helper could not run beside this one's: the consensus log's
            // lock and the peer port are held until this helper exits.
            conf::alert!(
                "binary upgrade (USR2) refused in cluster mode: the cluster helper holds the \
                 consensus log and the peer port; restart the node instead (QUIT, then start)"
            );
            return;
        }
        let (Some(binary), Some(current)) = (self.binary.clone(), pid_file.clone()) else {
            conf::alert!("binary upgrade impossible: the path of the binary is unknown");
            return;
        };
        let oldbin = oldbin_path(&current);
        if let Err(e) = std::fs::rename(&current, &oldbin) {
            conf::alert!(
                "binary upgrade failed: could not rename {} to {}: {e}",
                current.display(),
                oldbin.display()
            );
            return;
        }
        let env = notifier.env();
        match spawn_new_master(&binary, &table.conf.path, &table.listeners, env) {
            Ok(pid) => {
                conf::notice!(
                    "binary upgrade: started the new master {pid} from {}",
                    binary.display()
                );
                self.new_master = Some(pid);
                *pid_file = Some(oldbin);
            }
            Err(e) => {
                conf::alert!("binary upgrade failed: {e}");
                if let Err(e) = std::fs::rename(&oldbin, &current) {
                    conf::alert!("could not rename {} back: {e}", oldbin.display());
                }
            }
        }
    }

    /// The new master `pid` exited: this master is the one again. The pid file comes back
    /// from `.oldbin`; the answer says what else the master does.
    pub fn new_master_exited(
        &mut self,
        pid: Pid,
        exit: Exit,
        running: bool,
        table: &Table,
        pid_file: &mut Option<PathBuf>,
    ) -> Takeover {
        self.new_master = None;
        conf::notice!(
            "new master {pid} {exit}, the old master {} takes over",
            table.pid
        );
        if let Some(oldbin) = pid_file.clone() {
            let path = table.conf.pid.clone();
            match std::fs::rename(&oldbin, &path) {
                Ok(()) => *pid_file = Some(path),
                Err(e) => conf::alert!("could not rename {} back: {e}", oldbin.display()),
            }
        }
        match (self.retired, running) {
            (true, true) => Takeover::Restart,
            // The new master may have been the main process; its exit must not look like the
            // end of the service.
            (false, true) => Takeover::Reclaim,
            (_, false) => Takeover::Nothing,
        }
    }

    /// WINCH, after a binary upgrade: gracefully retire every worker and respawn none, since
    /// the new master serves. Ignored otherwise (a terminal resize sends WINCH to a
    /// foreground process group). Returns whether the workers were retired.
    pub fn retire_workers(&mut self, running: bool, table: &mut Table) -> bool {
        if self.new_master.is_none() || !running {
            conf::notice!("WINCH ignored: no binary upgrade in progress");
            return false;
        }
        conf::notice!("retiring the workers (WINCH)");
        self.retired = true;
        table.cancel_respawns();
        // Every current worker becomes "old" and is retired.
        table.generation += 1;
        table.retire_old();
        true
    }

    /// HUP after WINCH (the rollback of a binary upgrade): a new generation with the conf in
    /// force, the conf file is not read again.
    pub fn restart_workers(&mut self, table: &mut Table) {
        conf::notice!("restarting the workers (HUP after WINCH)");
        self.retired = false;
        table.generation += 1;
        table.slots = process::fresh_slots(table.conf.worker_count());
        table.respawn_all();
    }
}

/// The absolute path of the binary this process was started from: argv[0] made absolute
/// against the start folder, or looked up in PATH. Not /proc/self/exe, which still names the
/// old (deleted) file after a package upgrade replaced the binary. Call it before any chdir.
pub fn started_binary() -> Option<PathBuf> {
    let argv0 = PathBuf::from(std::env::args_os().next()?);
    if argv0.as_os_str().is_empty() {
        return None;
    }
    if argv0.components().count() > 1 {
        return std::path::absolute(&argv0).ok();
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    std::env::split_paths(&path)
        .map(|dir| dir.join(&argv0))
        .find(|candidate| candidate.is_file())
        .and_then(|found| std::path::absolute(found).ok())
}

/// The listening sockets an old master handed over through [`ENV`] (none on a normal start).
/// Each is checked to be a socket bound to the address it claims, and made close-on-exec
/// again; the variable is removed so that it does not leak into a later upgrade.
pub fn inherited() -> Result<Vec<Listener>, MasterError> {
    let Some(value) = std::env::var_os(ENV) else {
        return Ok(Vec::new());
    };
    // Single-threaded here, so changing the environment races with nothing.
    std::env::remove_var(ENV);
    let value = value.to_string_lossy().into_owned();
    let mut listeners = Vec::new();
    for item in value.split(';').filter(|s| !s.is_empty()) {
        let bad = |why: String| MasterError::Inherit(format!("{ENV} item \"{item}\": {why}"));
        let (fd, addr) = item
            .split_once(':')
            .ok_or_else(|| bad("expected fd:address".into()))?;
        let fd: RawFd = fd.parse().map_err(|_| bad("bad fd".into()))?;
        let addr: SocketAddr = addr.parse().map_err(|_| bad("bad address".into()))?;
        if fd < 3 || fcntl(fd, FcntlArg::F_GETFD).is_err() {
            return Err(bad("not an open file descriptor".into()));
        }
        // SAFETY: the fd is open (checked above) and was left open across exec by the old
        // master for exactly this purpose; nothing else in this fresh process owns it, so the
        // listener becomes its only owner.
        let socket = unsafe { TcpListener::from_raw_fd(fd) };
        match socket.local_addr() {
            Ok(local) if local == addr => {}
            Ok(local) => return Err(bad(format!("the socket is bound to {local}"))),
            Err(e) => return Err(bad(format!("not a listening socket: {e}"))),
        }
        set_cloexec(fd, true).map_err(|e| bad(format!("fcntl: {e}")))?;
        listeners.push(Listener { addr, socket });
    }
    Ok(listeners)
}

/// Starts `binary -c conf` as the new master, with the listening sockets open across exec and
/// named in [`ENV`], and `notify` (systemd's `NOTIFY_SOCKET`, which the master took out of
/// its environment) set so that it can announce itself. Returns its pid; it is a child of
/// this master, reaped by its loop.
pub fn spawn_new_master(
    binary: &Path,
    conf: &Path,
    listeners: &[Listener],
    notify: Option<(&str, &OsString)>,
) -> Result<Pid, MasterError> {
    let value: Vec<String> = listeners
        .iter()
        .map(|l| format!("{}:{}", l.socket.as_raw_fd(), l.addr))
        .collect();
    let fail = |err| MasterError::Os {
        action: "start the new binary",
        err,
    };
    for l in listeners {
        set_cloexec(l.socket.as_raw_fd(), false).map_err(|e| fail(e.into()))?;
    }
    // Blocked so that no signal runs this master's handlers in the child before its exec
    // (std resets the mask in the child just before exec).
    let old_mask = signals::block();
    let mut command = Command::new(binary);
    command
        .arg("-c")
        .arg(conf)
        .env(ENV, value.join(";"))
        .stdin(Stdio::null());
    if let Some((name, value)) = notify {
        command.env(name, value);
    }
    let spawned = command.spawn();
    signals::restore(&old_mask);
    for l in listeners {
        // Workers are forked, not exec'd, so only a later exec could see them; restore anyway.
        let _ = set_cloexec(l.socket.as_raw_fd(), true);
    }
    // The Child handle is dropped without waiting: the master loop reaps every child itself.
    spawned
        .map(|child| Pid::from_raw(child.id() as i32))
        .map_err(fail)
}

fn set_cloexec(fd: RawFd, on: bool) -> nix::Result<()> {
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd, FcntlArg::F_SETFD(flags)).map(|_| ())
}

/// `<pid file>.oldbin`: where the old master moves its pid file during an upgrade.
pub fn oldbin_path(pid_file: &Path) -> PathBuf {
    let mut name = pid_file.as_os_str().to_owned();
    name.push(".oldbin");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldbin_is_beside_the_pid_file() {
        assert_eq!(
            oldbin_path(Path::new("/run/huststore/huststore.pid")),
            PathBuf::from("/run/huststore/huststore.pid.oldbin")
        );
    }

    #[test]
    fn the_started_binary_is_absolute() {
        let bin = started_binary().expect("the test binary");
        assert!(bin.is_absolute(), "{}", bin.display());
    }
}
