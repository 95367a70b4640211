//! The huststore conf file: nginx-like syntax (`name value...;`, `#` comments, quoted values,
//! sizes with `k`/`m`/`g`, times with `ms`/`s`/`m`/`h`), parsed against one directive table
//! into a plain [`Conf`] value. Also owns the error log (nginx-like lines) because every other
//! crate logs and this is the crate they all depend on.
//!
//! It must never know about HTTP, LMDB or processes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod cluster;
pub mod logger;
mod parse;

pub use cluster::{
    ClusterConf, ClusterNode, Reads, Secret, DEFAULT_GROUPS, DEFAULT_REPLICAS, MIN_SECRET_LEN,
};
pub use parse::{
    load, parse_str, ClusterProblem, ConfError, Context, Directive, CLUSTER_DIRECTIVES, DIRECTIVES,
};

/// Which API the daemon serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Kv,
    Mq,
}

/// `worker_processes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerCount {
    /// `auto`: one worker per CPU (`std::thread::available_parallelism`).
    Auto,
    Fixed(usize),
}

/// Log levels of `error_log`, least to most severe, as nginx names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warn,
    Error,
    Crit,
    Alert,
    Emerg,
}

impl LogLevel {
    /// Every level, least to most severe.
    pub const ALL: [LogLevel; 8] = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Notice,
        LogLevel::Warn,
        LogLevel::Error,
        LogLevel::Crit,
        LogLevel::Alert,
        LogLevel::Emerg,
    ];

    /// The name used in the conf and in log lines (`notice`, `warn`, ...).
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Notice => "notice",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Crit => "crit",
            LogLevel::Alert => "alert",
            LogLevel::Emerg => "emerg",
        }
    }

    /// The level named `name` (exact, lowercase, as nginx spells them).
    pub fn from_name(name: &str) -> Option<LogLevel> {
        LogLevel::ALL.into_iter().find(|l| l.name() == name)
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where `error_log` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    File(PathBuf),
}

/// One `listen` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    /// The address exactly as written in the conf (`/get_table` echoes it).
    pub text: String,
}

/// A parsed conf. Every path is absolute (relative paths in the file are resolved against the
/// conf file's folder).
#[derive(Debug, Clone, PartialEq)]
pub struct Conf {
    /// The conf file this came from, absolute.
    pub path: PathBuf,
    pub daemon: bool,
    pub mode: Mode,
    pub worker_processes: WorkerCount,
    /// `user` (workers switch to it when the master runs as root); default `nobody`.
    pub user: String,
    pub pid: PathBuf,
    pub error_log: LogTarget,
    pub error_log_level: LogLevel,
    /// `access_log off` is `None`.
    pub access_log: Option<PathBuf>,
    /// At least one; default `127.0.0.1:8082`.
    pub listen: Vec<Listen>,
    pub data_dir: PathBuf,
    pub map_size: u64,
    /// `worker_connections`: the most client connections one worker holds open.
    pub worker_connections: usize,
    /// `worker_rlimit_nofile`: the open-file limit set by the master; `None` leaves it as inherited.
    pub worker_rlimit_nofile: Option<u64>,
    pub keepalive_timeout: Duration,
    pub client_max_body_size: u64,
    pub shutdown_timeout: Duration,
    pub client_header_timeout: Duration,
    pub sync_writes: bool,
    pub sync_interval: Duration,
    pub cache_size: u64,
    pub auth_basic_user_file: Option<PathBuf>,
    /// Test-only endpoints such as `/debug/sleep?ms=` (`debug_endpoints on;`), off by default.
    pub debug_endpoints: bool,
    pub mq: MqConf,
    /// The `cluster { }` block (`cluster.md` §1); `None`: the single-node daemon.
    pub cluster: Option<ClusterConf>,
}

/// mq-mode directives (`mq-api.md` §2.10); accepted in both modes.
#[derive(Debug, Clone, PartialEq)]
pub struct MqConf {
    pub long_polling_timeout: Duration,
    pub subscribe_timeout: Duration,
    pub do_get_timeout: Duration,
    pub do_post_timeout: Duration,
    pub do_get_cache_size: usize,
    pub do_post_cache_size: usize,
    pub max_do_task_body_size: u64,
    pub max_queue_size: usize,
    pub max_timer_count: usize,
    /// Minutes, 1..=255.
    pub mq_redelivery_timeout: u32,
    pub mq_ttl_maximum: Duration,
    pub mq_timeout_unit: Duration,
}

impl Default for MqConf {
    fn default() -> Self {
        MqConf {
            long_polling_timeout: Duration::from_secs(180),
            subscribe_timeout: Duration::from_secs(180),
            do_get_timeout: Duration::from_secs(180),
            do_post_timeout: Duration::from_secs(180),
            do_get_cache_size: 1024,
            do_post_cache_size: 1024,
            max_do_task_body_size: 8 << 20,
            max_queue_size: 8192,
            max_timer_count: 1 << 20,
            mq_redelivery_timeout: 5,
            mq_ttl_maximum: Duration::from_secs(7200),
            mq_timeout_unit: Duration::from_secs(60),
        }
    }
}

impl Conf {
    /// The defaults of `ops.md` ("Details that tests rely on"), for a conf file at `path`.
    pub fn defaults(path: PathBuf) -> Conf {
        Conf {
            path,
            daemon: true,
            mode: Mode::Kv,
            worker_processes: WorkerCount::Auto,
            user: "nobody".to_string(),
            pid: PathBuf::from("/run/huststore/huststore.pid"),
            error_log: LogTarget::File(PathBuf::from("/var/log/huststore/error.log")),
            error_log_level: LogLevel::Notice,
            access_log: None,
            listen: vec![Listen {
                addr: SocketAddr::from(([127, 0, 0, 1], 8082)),
                text: "127.0.0.1:8082".to_string(),
            }],
            data_dir: PathBuf::from("/var/lib/huststore"),
            map_size: 64 << 30,
            worker_connections: 4096,
            worker_rlimit_nofile: None,
            keepalive_timeout: Duration::from_secs(60),
            client_max_body_size: 64 << 20,
            shutdown_timeout: Duration::from_secs(10),
            client_header_timeout: Duration::from_secs(60),
            sync_writes: true,
            sync_interval: Duration::from_secs(1),
            cache_size: 2 << 30,
            auth_basic_user_file: None,
            debug_endpoints: false,
            mq: MqConf::default(),
            cluster: None,
        }
    }

    /// The number of worker processes this conf asks for: 1 in mq mode, the CPU count for `auto`.
    pub fn worker_count(&self) -> usize {
        if self.mode == Mode::Mq {
            return 1;
        }
        match self.worker_processes {
            WorkerCount::Fixed(n) => n,
            WorkerCount::Auto => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}
