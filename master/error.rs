//! The master's error enum: each variant is named after the action that failed, and its
//! `Display` is the one line an operator reads on stderr (after `huststore: `) or in the log.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can stop the master from starting or from doing what `-s` asked.
#[derive(Debug)]
pub enum MasterError {
    /// The conf file is bad (its own message already names file and line).
    Conf(conf::ConfError),
    /// A reload would change what a running cluster node cannot change by HUP
    /// (`cluster.md` §1): `what` says what (the block added or removed, or the directives).
    ClusterReload {
        file: PathBuf,
        what: String,
    },
    /// Another master is alive on the same pid file.
    AlreadyRunning {
        pid: i32,
        pid_file: PathBuf,
    },
    /// `-s` found no master to signal.
    NotRunning {
        pid_file: PathBuf,
        why: String,
    },
    /// `kill` refused to deliver the signal.
    Signal {
        pid: i32,
        err: io::Error,
    },
    /// `worker::prepare` refused the data folder (its message is already one operator line).
    Prepare(String),
    Bind {
        addr: SocketAddr,
        err: io::Error,
    },
    /// The error log could not be opened.
    Log {
        target: String,
        err: io::Error,
    },
    /// `user` names nobody in the password database.
    UnknownUser(String),
    /// The workers' `user` cannot search `refusing`, a folder on the way to `path`; `what`
    /// says its mode and owner.
    Unreachable {
        user: String,
        path: PathBuf,
        refusing: PathBuf,
        what: String,
    },
    /// chown of the data folder or the logs to `user` failed.
    Chown {
        path: PathBuf,
        err: io::Error,
    },
    PidFile {
        path: PathBuf,
        err: io::Error,
    },
    /// A system call the master cannot do without (pipe, fork, sigaction, setsid...).
    Os {
        action: &'static str,
        err: io::Error,
    },
    /// The sockets handed over by an old master (binary upgrade) are not what they claim.
    Inherit(String),
    /// Every worker exited with the fatal init code at startup.
    WorkersFailed {
        log: String,
    },
    /// The cluster helper exited with the fatal init code at startup.
    HelperFailed {
        log: String,
    },
    /// The workers did not all report ready in time at startup.
    NotReady {
        secs: u64,
        log: String,
    },
}

impl MasterError {
    /// Wraps a `nix` error from the system call described by `action`.
    pub fn os(action: &'static str, err: nix::Error) -> MasterError {
        MasterError::Os {
            action,
            err: io::Error::from(err),
        }
    }
}

impl fmt::Display for MasterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MasterError::Conf(e) => write!(f, "{e}"),
            MasterError::ClusterReload { file, what } => {
                write!(f, "conf {}: {what}", file.display())
            }
            MasterError::AlreadyRunning { pid, pid_file } => write!(
                f,
                "already running: master {pid} is alive (pid file {})",
                pid_file.display()
            ),
            MasterError::NotRunning { pid_file, why } => {
                write!(
                    f,
                    "no running master (pid file {}): {why}",
                    pid_file.display()
                )
            }
            MasterError::Signal { pid, err } => {
                write!(f, "could not signal the master {pid}: {err}")
            }
            MasterError::Prepare(msg) => write!(f, "{msg}"),
            MasterError::Bind { addr, err } => write!(f, "could not bind {addr}: {err}"),
            MasterError::Log { target, err } => {
                write!(f, "could not open the error log {target}: {err}")
            }
            MasterError::UnknownUser(name) => write!(f, "unknown user \"{name}\""),
            MasterError::Unreachable {
                user,
                path,
                refusing,
                what,
            } => write!(
                f,
                "the workers' user \"{user}\" cannot reach {}: it may not enter {} ({}); \
                 set \"user\" to a user that can (the owner, or root), or choose a folder it can \
                 reach",
                path.display(),
                refusing.display(),
                what
            ),
            MasterError::Chown { path, err } => {
                write!(f, "could not chown {}: {err}", path.display())
            }
            MasterError::PidFile { path, err } => {
                write!(f, "could not write the pid file {}: {err}", path.display())
            }
            MasterError::Os { action, err } => write!(f, "could not {action}: {err}"),
            MasterError::Inherit(msg) => {
                write!(f, "could not take over the listening sockets: {msg}")
            }
            MasterError::WorkersFailed { log } => {
                write!(f, "no worker could start (fatal init error), see {log}")
            }
            MasterError::HelperFailed { log } => {
                write!(
                    f,
                    "the cluster helper could not start (fatal init error), see {log}"
                )
            }
            MasterError::NotReady { secs, log } => {
                write!(f, "the workers were not ready within {secs} s, see {log}")
            }
        }
    }
}

impl std::error::Error for MasterError {}
