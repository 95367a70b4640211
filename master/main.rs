//! The huststore binary and its master process: command line, conf check, signals to a running
//! master, and the daemon itself: bind the listening sockets once, fork the workers, write the
//! pid file once they serve, then supervise (respawn, reload, reopen, stop) as nginx's master
//! does.
//!
//! The master never serves HTTP and never opens the database: it knows nothing about HTTP or
//! LMDB, only `conf` (what to run), `worker` (`prepare` and `run`) and, in cluster mode,
//! `cluster::helper::run` (the body of the cluster helper process it forks beside them).

mod access;
mod args;
mod cluster;
mod cycle;
mod daemon;
mod error;
mod helper;
mod limits;
mod listen;
mod logs;
mod notify;
mod pidfile;
mod process;
mod reload;
mod signals;
mod upgrade;

use std::path::Path;

use nix::sys::signal::kill;
use nix::unistd::Pid;

use args::{Action, Command};
use error::MasterError;

fn main() {
    let command = match args::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(args::UsageError(message)) => {
            eprintln!("huststore: {message}");
            eprint!("{}", args::USAGE);
            std::process::exit(1);
        }
    };
    let code = match command {
        Command::Help => {
            print!("{}", args::USAGE);
            0
        }
        Command::Version => {
            println!("huststore version {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Command::Test { conf } => test_conf(&conf),
        Command::Signal { conf, action } => match send_signal(&conf, action) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("huststore: {e}");
                1
            }
        },
        Command::Run { conf } => run(&conf),
    };
    std::process::exit(code);
}

/// `-t`: parse the conf and say so.
fn test_conf(path: &Path) -> i32 {
    match conf::load(path) {
        Ok(_) => {
            println!("conf {} is ok", path.display());
            0
        }
        Err(e) => {
            eprintln!("huststore: {e}");
            1
        }
    }
}

/// `-s NAME`: signal the master named by the conf's pid file, if it is a live huststore.
fn send_signal(path: &Path, action: Action) -> Result<(), MasterError> {
    let conf = conf::load(path).map_err(MasterError::Conf)?;
    let pid = pidfile::read(&conf.pid).map_err(|e| MasterError::NotRunning {
        pid_file: conf.pid.clone(),
        why: e.to_string(),
    })?;
    if !pidfile::is_huststore_alive(pid) {
        return Err(MasterError::NotRunning {
            pid_file: conf.pid.clone(),
            why: format!("process {pid} is not running"),
        });
    }
    kill(Pid::from_raw(pid), action.signal()).map_err(|e| MasterError::Signal {
        pid,
        err: std::io::Error::from(e),
    })
}

/// Starts the daemon; returns the exit code. Every startup error is one line on stderr.
fn run(path: &Path) -> i32 {
    conf::logger::install_panic_hook();
    // Taken out of the environment first, while single-threaded: only the master talks to
    // systemd, never a worker.
    let notifier = notify::Notifier::from_env();
    // Resolved now, before a daemon's chdir: the binary a USR2 will start.
    let binary = upgrade::started_binary();
    let prepared = upgrade::inherited().and_then(|inherited| {
        let upgrading = !inherited.is_empty();
        prepare(path, inherited).map(|p| (p, upgrading))
    });
    let ((conf, listeners, user), upgrading) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            eprintln!("huststore: {e}");
            return 1;
        }
    };
    // A new master started by a binary upgrade is the child of a daemon already, detached
    // from any terminal: it stays where it is.
    let reporter = if conf.daemon && !upgrading {
        match daemon::daemonize() {
            Ok(reporter) => Some(reporter),
            Err(e) => {
                eprintln!("huststore: {e}");
                return 1;
            }
        }
    } else {
        None
    };
    // From here on a daemon's stderr is /dev/null: errors go through the reporter.
    let signals = logs::init_logger(&conf).and_then(|()| {
        if conf.daemon {
            // Whatever a library prints to stderr lands in the log instead of /dev/null.
            if let Err(e) = conf::logger::redirect_stderr() {
                log::warn!("could not point stderr at the error log: {e}");
            }
        }
        if let Some(user) = &user {
            logs::chown_logs(&conf, user);
        }
        signals::SignalPipe::install()
    });
    let signals = match signals {
        Ok(signals) => signals,
        Err(e) => {
            match reporter {
                Some(reporter) => reporter.fail(&e.to_string()),
                None => eprintln!("huststore: {e}"),
            }
            return 1;
        }
    };
    // Mapped before the first fork so that every worker inherits it.
    let metrics = match worker::SharedMetrics::create() {
        Ok(m) => m,
        Err(e) => {
            conf::emerg!("could not map the shared metrics counters: {e}");
            return 1;
        }
    };
    // A master started by a binary upgrade is the old master's child: while that one lives,
    // systemd may still take it for the main process (a rollback).
    let upgraded_from = upgrading.then(nix::unistd::getppid);
    limits::set_nofile(&conf);
    let table = process::Table::new(conf, listeners, user, signals, reporter, metrics);
    let upgrade = upgrade::Upgrade::new(binary, upgraded_from);
    cycle::Master::new(table, upgrade, notifier).run()
}

/// Everything that can fail before the master detaches, so that a failure is reported on the
/// terminal: the conf, a running master, the data folder, the user, the listening sockets.
/// `inherited`: the sockets an old master handed over (binary upgrade), used instead of
/// binding again; then the old master's workers still use the cache, which is kept.
fn prepare(
    path: &Path,
    mut inherited: Vec<listen::Listener>,
) -> Result<(conf::Conf, Vec<listen::Listener>, Option<nix::unistd::User>), MasterError> {
    let conf = conf::load(path).map_err(MasterError::Conf)?;
    if let Ok(pid) = pidfile::read(&conf.pid) {
        if pidfile::is_huststore_alive(pid) {
            return Err(MasterError::AlreadyRunning {
                pid,
                pid_file: conf.pid.clone(),
            });
        }
    }
    worker::prepare(&conf, inherited.is_empty()).map_err(MasterError::Prepare)?;
    let user = process::resolve_user(&conf.user)?;
    if let Some(user) = &user {
        access::check_reachable(&conf, user)?;
        process::chown_tree(&conf.data_dir, user)?;
    }
    let mut listeners = Vec::new();
    for l in &conf.listen {
        match inherited.iter().position(|i| i.addr == l.addr) {
            Some(i) => listeners.push(inherited.swap_remove(i)),
            None => listeners.push(listen::bind_retrying(l.addr)?),
        }
    }
    // Inherited sockets this conf no longer lists are closed here (dropped).
    Ok((conf, listeners, user))
}
