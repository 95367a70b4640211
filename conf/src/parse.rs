//! The conf file parser, shaped like nginx's `ngx_conf_file.c`: a tokenizer that cuts the text
//! into statements, one table of directives ([`DIRECTIVES`]) and one function ([`apply`]) that
//! checks every statement against it (known name, number of arguments, duplicates) before the
//! directive's own function reads the values.

use crate::{Conf, Listen, LogLevel, LogTarget, Mode, WorkerCount};
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a conf could not be loaded. Every variant but [`ConfError::Open`] names the file and the
/// line; `Display` is one line, e.g. `/etc/huststore/huststore.conf:12: unknown directive "lisen"`.
#[derive(Debug)]
pub enum ConfError {
    /// The file could not be opened or read.
    Open { path: PathBuf, error: io::Error },
    /// The file is not UTF-8; `line` is where the first bad byte is.
    NotUtf8 { file: PathBuf, line: usize },
    /// A name that is not in [`DIRECTIVES`].
    UnknownDirective {
        file: PathBuf,
        line: usize,
        name: String,
    },
    /// Too few or too many arguments for the directive.
    ArgCount {
        file: PathBuf,
        line: usize,
        directive: &'static str,
    },
    /// A statement that runs into the next one: the `;` after `line` is missing.
    NotTerminated {
        file: PathBuf,
        line: usize,
        directive: &'static str,
    },
    /// An argument the directive does not accept.
    InvalidValue {
        file: PathBuf,
        line: usize,
        directive: &'static str,
        value: String,
        expected: &'static str,
    },
    /// A directive given twice that may be given only once.
    Duplicate {
        file: PathBuf,
        line: usize,
        directive: &'static str,
    },
    /// Two `listen` lines for the same address.
    DuplicateListen {
        file: PathBuf,
        line: usize,
        value: String,
    },
    /// The file ends inside a statement or a quoted value.
    UnexpectedEof {
        file: PathBuf,
        line: usize,
        expecting: &'static str,
    },
    /// A token that cannot appear here (`{`, `}`, an empty statement `;`, text glued to a quote).
    Unexpected {
        file: PathBuf,
        line: usize,
        token: String,
    },
}

impl ConfError {
    /// The line the error is about, when it is about a line.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfError::Open { .. } => None,
            ConfError::NotUtf8 { line, .. }
            | ConfError::UnknownDirective { line, .. }
            | ConfError::ArgCount { line, .. }
            | ConfError::NotTerminated { line, .. }
            | ConfError::InvalidValue { line, .. }
            | ConfError::Duplicate { line, .. }
            | ConfError::DuplicateListen { line, .. }
            | ConfError::UnexpectedEof { line, .. }
            | ConfError::Unexpected { line, .. } => Some(*line),
        }
    }
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfError::Open { path, error } => {
                write!(
                    f,
                    "could not open conf {}: {}",
                    path.display(),
                    os_message(error)
                )
            }
            ConfError::NotUtf8 { file, line } => {
                write!(f, "{}:{}: invalid UTF-8", file.display(), line)
            }
            ConfError::UnknownDirective { file, line, name } => write!(
                f,
                "{}:{}: unknown directive \"{}\"",
                file.display(),
                line,
                Shown(name)
            ),
            ConfError::ArgCount {
                file,
                line,
                directive,
            } => write!(
                f,
                "{}:{}: invalid number of arguments in \"{}\" directive",
                file.display(),
                line,
                directive
            ),
            ConfError::NotTerminated {
                file,
                line,
                directive,
            } => write!(
                f,
                "{}:{}: \"{}\" directive is not terminated by \";\"",
                file.display(),
                line,
                directive
            ),
            ConfError::InvalidValue {
                file,
                line,
                directive,
                value,
                expected,
            } => write!(
                f,
                "{}:{}: invalid value \"{}\" in \"{}\" (expected {})",
                file.display(),
                line,
                Shown(value),
                directive,
                expected
            ),
            ConfError::Duplicate {
                file,
                line,
                directive,
            } => write!(
                f,
                "{}:{}: \"{}\" directive is duplicate",
                file.display(),
                line,
                directive
            ),
            ConfError::DuplicateListen { file, line, value } => write!(
                f,
                "{}:{}: duplicate address \"{}\" in \"listen\"",
                file.display(),
                line,
                Shown(value)
            ),
            ConfError::UnexpectedEof {
                file,
                line,
                expecting,
            } => write!(
                f,
                "{}:{}: unexpected end of file, expecting {}",
                file.display(),
                line,
                expecting
            ),
            ConfError::Unexpected { file, line, token } => write!(
                f,
                "{}:{}: unexpected \"{}\"",
                file.display(),
                line,
                Shown(token)
            ),
        }
    }
}

impl std::error::Error for ConfError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfError::Open { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// `No such file or directory`, without std's ` (os error 2)` tail.
fn os_message(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Conf text quoted in a message: control characters and quotes escaped so the message stays
/// one line, and cut after 64 characters.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 64;
        for c in self.0.chars().take(MAX) {
            write!(f, "{}", c.escape_debug())?;
        }
        if self.0.chars().nth(MAX).is_some() {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// Which mode uses a directive (every directive is accepted in both modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Both,
    Kv,
    Mq,
}

impl Context {
    /// `both`, `kv` or `mq`, as the man page says it.
    pub fn name(self) -> &'static str {
        match self {
            Context::Both => "both",
            Context::Kv => "kv",
            Context::Mq => "mq",
        }
    }
}

/// One entry of the directive table.
pub struct Directive {
    pub name: &'static str,
    /// Fewest arguments after the name.
    pub min_args: usize,
    /// Most arguments after the name.
    pub max_args: usize,
    /// May be given more than once (only `listen`).
    pub multi: bool,
    /// Which mode uses it.
    pub context: Context,
    /// The arguments as the man page writes them, e.g. `on | off`.
    pub syntax: &'static str,
    /// The default, in conf syntax (`""`: none).
    pub default: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Reads the arguments into the conf; called by [`apply`] once the generic checks passed.
    pub(crate) set: fn(&mut Conf, &Args<'_>) -> Result<(), Bad>,
}

impl fmt::Debug for Directive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directive")
            .field("name", &self.name)
            .field("min_args", &self.min_args)
            .field("max_args", &self.max_args)
            .field("multi", &self.multi)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// What a directive's `set` found wrong with argument `arg`.
pub(crate) enum Bad {
    Value { arg: usize, expected: &'static str },
    DuplicateListen { arg: usize },
}

/// The arguments of one statement, as a directive's `set` sees them.
pub(crate) struct Args<'a> {
    words: &'a [Word],
    /// The conf file's folder, absolute: relative paths are resolved against it.
    dir: &'a Path,
    /// This is the first statement of this directive in the file.
    first: bool,
}

impl Args<'_> {
    fn len(&self) -> usize {
        self.words.len()
    }

    fn str(&self, i: usize) -> &str {
        self.words.get(i).map(|w| w.text.as_str()).unwrap_or("")
    }

    fn bad<T>(&self, i: usize, expected: &'static str) -> Result<T, Bad> {
        Err(Bad::Value { arg: i, expected })
    }

    fn flag(&self, i: usize) -> Result<bool, Bad> {
        match self.str(i) {
            "on" => Ok(true),
            "off" => Ok(false),
            _ => self.bad(i, "on or off"),
        }
    }

    /// A size of at least `min` bytes; `too_small` is the message when it is less.
    fn size(&self, i: usize, min: u64, too_small: &'static str) -> Result<u64, Bad> {
        match parse_size(self.str(i)) {
            None => self.bad(i, "a size like 64m"),
            Some(n) if n < min => self.bad(i, too_small),
            Some(n) => Ok(n),
        }
    }

    /// A time of at least `min`; `too_small` is the message when it is less.
    fn time(&self, i: usize, min: Duration, too_small: &'static str) -> Result<Duration, Bad> {
        match parse_time(self.str(i)) {
            None => self.bad(i, "a time like 60s"),
            Some(t) if t < min => self.bad(i, too_small),
            Some(t) => Ok(t),
        }
    }

    /// A plain decimal number in `min..=max`; `range` is the message when it is outside.
    fn number(&self, i: usize, min: u64, max: u64, range: &'static str) -> Result<u64, Bad> {
        match parse_digits(self.str(i)) {
            None => self.bad(i, "a number like 1024"),
            Some(n) if n < min || n > max => self.bad(i, range),
            Some(n) => Ok(n),
        }
    }

    fn count(&self, i: usize) -> Result<usize, Bad> {
        let n = self.number(i, 1, usize::MAX as u64, "a number of at least 1")?;
        usize::try_from(n).or_else(|_| self.bad(i, "a number of at least 1"))
    }

    fn path(&self, i: usize) -> Result<PathBuf, Bad> {
        let s = self.str(i);
        if s.is_empty() || s.contains('\0') {
            return self.bad(i, "a path");
        }
        Ok(resolve(self.dir, s))
    }
}

/// The largest time the conf accepts: 2^31-1 seconds (about 68 years), so that adding it to
/// a clock reading never overflows.
const MAX_TIME_MS: u64 = (i32::MAX as u64) * 1000;

/// Every directive, in the order of the shipped conf and the man page.
pub static DIRECTIVES: &[Directive] = &[
    Directive {
        name: "daemon",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "on | off",
        default: "on",
        help: "detach from the terminal (off: stay in the foreground, for systemd and tests)",
        set: |c, a| {
            c.daemon = a.flag(0)?;
            Ok(())
        },
    },
    Directive {
        name: "mode",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "kv | mq",
        default: "kv",
        help: "which API to serve: key-value (kv) or message queue (mq)",
        set: |c, a| {
            c.mode = match a.str(0) {
                "kv" => Mode::Kv,
                "mq" => Mode::Mq,
                _ => return a.bad(0, "kv or mq"),
            };
            Ok(())
        },
    },
    Directive {
        name: "worker_processes",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Kv,
        syntax: "number | auto",
        default: "auto",
        help: "how many worker processes serve (auto: one per CPU; always 1 in mq mode)",
        set: |c, a| {
            c.worker_processes = if a.str(0) == "auto" {
                WorkerCount::Auto
            } else {
                let n = a.number(0, 1, 1024, "a number from 1 to 1024 or auto")?;
                WorkerCount::Fixed(n as usize)
            };
            Ok(())
        },
    },
    Directive {
        name: "user",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "name",
        default: "nobody",
        help: "the user workers switch to when the master runs as root",
        set: |c, a| {
            let name = a.str(0);
            if name.is_empty() || name.chars().any(|ch| ch.is_control()) {
                return a.bad(0, "a user name");
            }
            c.user = name.to_string();
            Ok(())
        },
    },
    Directive {
        name: "pid",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "path",
        default: "/run/huststore/huststore.pid",
        help: "the file the master writes its pid to",
        set: |c, a| {
            c.pid = a.path(0)?;
            Ok(())
        },
    },
    Directive {
        name: "error_log",
        min_args: 1,
        max_args: 2,
        multi: false,
        context: Context::Both,
        syntax: "path | stderr [level]",
        default: "/var/log/huststore/error.log notice",
        help: "where the error log goes, and the least severe level written",
        set: |c, a| {
            c.error_log = if a.str(0) == "stderr" {
                LogTarget::Stderr
            } else {
                LogTarget::File(a.path(0)?)
            };
            if a.len() > 1 {
                c.error_log_level = match LogLevel::from_name(a.str(1)) {
                    Some(level) => level,
                    None => {
                        return a.bad(
                            1,
                            "one of debug, info, notice, warn, error, crit, alert, emerg",
                        )
                    }
                };
            }
            Ok(())
        },
    },
    Directive {
        name: "access_log",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "off | path",
        default: "off",
        help: "where requests are logged, or off",
        set: |c, a| {
            c.access_log = if a.str(0) == "off" {
                None
            } else {
                Some(a.path(0)?)
            };
            Ok(())
        },
    },
    Directive {
        name: "listen",
        min_args: 1,
        max_args: 1,
        multi: true,
        context: Context::Both,
        syntax: "address",
        default: "127.0.0.1:8082",
        help: "an address to accept connections on (may repeat)",
        set: |c, a| {
            let text = a.str(0);
            let Some(addr) = parse_listen(text) else {
                return a.bad(
                    0,
                    "an address like 127.0.0.1:8082, [::1]:8082, *:8082 or 8082",
                );
            };
            // The file's listen lines replace the default one.
            if a.first {
                c.listen.clear();
            }
            if c.listen.iter().any(|l| l.addr == addr) {
                return Err(Bad::DuplicateListen { arg: 0 });
            }
            c.listen.push(Listen {
                addr,
                text: text.to_string(),
            });
            Ok(())
        },
    },
    Directive {
        name: "data_dir",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "path",
        default: "/var/lib/huststore",
        help: "the folder of the LMDB data",
        set: |c, a| {
            c.data_dir = a.path(0)?;
            Ok(())
        },
    },
    Directive {
        name: "map_size",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "size",
        default: "64g",
        help: "the LMDB map size: the most data the store can hold",
        set: |c, a| {
            c.map_size = a.size(0, 1 << 20, "a size of at least 1m")?;
            Ok(())
        },
    },
    Directive {
        name: "keepalive_timeout",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "time",
        default: "60s",
        help: "how long an idle keep-alive connection stays open",
        set: |c, a| {
            c.keepalive_timeout = a.time(0, Duration::ZERO, "a time like 60s")?;
            Ok(())
        },
    },
    Directive {
        name: "client_max_body_size",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "size",
        default: "64m",
        help: "the largest request body accepted (larger: 413)",
        set: |c, a| {
            c.client_max_body_size = a.size(0, 1, "a size of at least 1")?;
            Ok(())
        },
    },
    Directive {
        name: "shutdown_timeout",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "time",
        default: "10s",
        help: "how long a retiring worker may finish the requests in flight",
        set: |c, a| {
            c.shutdown_timeout = a.time(0, Duration::ZERO, "a time like 10s")?;
            Ok(())
        },
    },
    Directive {
        name: "client_header_timeout",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "time",
        default: "60s",
        help: "how long a client may take to send a request head",
        set: |c, a| {
            c.client_header_timeout = a.time(0, Duration::from_millis(1), "a time above 0")?;
            Ok(())
        },
    },
    Directive {
        name: "sync_writes",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "on | off",
        default: "on",
        help: "on: a 200 means the write is on disk (fsync once per loop pass)",
        set: |c, a| {
            c.sync_writes = a.flag(0)?;
            Ok(())
        },
    },
    Directive {
        name: "sync_interval",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "time",
        default: "1s",
        help: "with sync_writes off: how often data is flushed to disk",
        set: |c, a| {
            c.sync_interval = a.time(0, Duration::from_millis(1), "a time above 0")?;
            Ok(())
        },
    },
    Directive {
        name: "cache_size",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Kv,
        syntax: "size",
        default: "2g",
        help: "the memory budget of /cache/* (full: 507, nothing is evicted)",
        set: |c, a| {
            c.cache_size = a.size(0, 1 << 20, "a size of at least 1m")?;
            Ok(())
        },
    },
    Directive {
        name: "auth_basic_user_file",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "path",
        default: "",
        help: "an htpasswd file: every request needs Basic credentials from it",
        set: |c, a| {
            c.auth_basic_user_file = Some(a.path(0)?);
            Ok(())
        },
    },
    Directive {
        name: "debug_endpoints",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "on | off",
        default: "off",
        help: "serve test-only endpoints such as /debug/sleep (never in production)",
        set: |c, a| {
            c.debug_endpoints = a.flag(0)?;
            Ok(())
        },
    },
    Directive {
        name: "long_polling_timeout",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Mq,
        syntax: "time",
        default: "180s",
        help: "how long /evget waits for a message",
        set: |c, a| {
            c.mq.long_polling_timeout = a.time(0, Duration::from_millis(1), "a time above 0")?;
            Ok(())
        },
    },
    Directive {
        name: "subscribe_timeout",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Mq,
        syntax: "time",
        default: "180s",
        help: "how long /evsub waits for a message",
        set: |c, a| {
            c.mq.subscribe_timeout = a.time(0, Duration::from_millis(1), "a time above 0")?;
            Ok(())
        },
    },
    Directive {
        name: "do_get_timeout",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Mq,
        syntax: "time",
        default: "180s",
        help: "/do_get: how long to wait for a worker to claim the task, and again for its result",
        set: |c, a| {
            c.mq.do_get_timeout = a.time(0, Duration::from_millis(1), "a time above 0")?;
            Ok(())
        },
    },
    Directive {
        name: "do_post_timeout",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Mq,
        syntax: "time",
        default: "180s",
        help: "/do_post: how long a worker waits for a task",
        set: |c, a| {
            c.mq.do_post_timeout = a.time(0, Duration::from_millis(1), "a time above 0")?;
            Ok(())
        },
    },
    Directive {
        name: "do_get_cache_size",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Mq,
        syntax: "number",
        default: "1024",
        help: "how many RPC tasks may be in flight (waiting or claimed)",
        set: |c, a| {
            c.mq.do_get_cache_size = a.count(0)?;
            Ok(())
        },
    },
    Directive {
        name: "do_post_cache_size",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Mq,
        syntax: "number",
        default: "1024",
        help: "how many workers may be parked in /do_post",
        set: |c, a| {
            c.mq.do_post_cache_size = a.count(0)?;
            Ok(())
        },
    },
    Directive {
        name: "max_do_task_body_size",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Mq,
        syntax: "size",
        default: "8m",
        help: "the largest RPC arguments or result",
        set: |c, a| {
            c.mq.max_do_task_body_size = a.size(0, 1, "a size of at least 1")?;
            Ok(())
        },
    },
    Directive {
        name: "max_queue_size",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Mq,
        syntax: "number",
        default: "8192",
        help: "the most queues (normal and push together)",
        set: |c, a| {
            c.mq.max_queue_size = a.count(0)?;
            Ok(())
        },
    },
    Directive {
        name: "max_timer_count",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Mq,
        syntax: "number",
        default: "1048576",
        help: "the most parked /evget requests, and separately the most parked /evsub requests",
        set: |c, a| {
            c.mq.max_timer_count = a.count(0)?;
            Ok(())
        },
    },
    Directive {
        name: "mq_redelivery_timeout",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Mq,
        syntax: "minutes",
        default: "5",
        help: "the redelivery timeout (in minutes) given to new queues",
        set: |c, a| {
            c.mq.mq_redelivery_timeout =
                a.number(0, 1, 255, "a number of minutes from 1 to 255")? as u32;
            Ok(())
        },
    },
    Directive {
        name: "mq_ttl_maximum",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Mq,
        syntax: "time",
        default: "7200s",
        help: "the largest ttl /pub accepts",
        set: |c, a| {
            c.mq.mq_ttl_maximum = a.time(0, Duration::from_secs(1), "a time of at least 1s")?;
            Ok(())
        },
    },
    Directive {
        name: "mq_timeout_unit",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Mq,
        syntax: "time",
        default: "60s",
        help: "the length of one /timeout \"minute\" (shorter only in tests)",
        set: |c, a| {
            c.mq.mq_timeout_unit = a.time(0, Duration::from_millis(1), "a time above 0")?;
            Ok(())
        },
    },
];

/// Reads and parses the conf at `path`, made absolute against the current folder.
pub fn load(path: &Path) -> Result<Conf, ConfError> {
    let open_error = |error| ConfError::Open {
        path: path.to_path_buf(),
        error,
    };
    let abs = std::path::absolute(path).map_err(open_error)?;
    let bytes = std::fs::read(&abs).map_err(|error| ConfError::Open {
        path: abs.clone(),
        error,
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
            return Err(ConfError::NotUtf8 { file: abs, line });
        }
    };
    parse_str(&text, &abs)
}

/// Parses conf text. `path` is the file it came from: messages name it, and relative paths in
/// the text are resolved against its folder (itself made absolute against the current folder).
pub fn parse_str(text: &str, path: &Path) -> Result<Conf, ConfError> {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut st = State {
        conf: Conf::defaults(abs),
        file: path,
        dir: &dir,
        seen: Vec::new(),
    };
    // A byte-order mark some editors write is not part of the first directive's name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lexer = Lexer::new(text, path);
    let mut words: Vec<Word> = Vec::new();
    loop {
        match lexer.next_token()? {
            Token::Word(w) => words.push(w),
            Token::Semicolon(line) => {
                if words.is_empty() {
                    return Err(st.unexpected(line, ";"));
                }
                apply(&mut st, &words)?;
                words.clear();
            }
            Token::Brace(brace, line) => {
                return Err(st.unexpected(line, brace));
            }
            Token::Eof => {
                if let Some(last) = words.last() {
                    return Err(ConfError::UnexpectedEof {
                        file: path.to_path_buf(),
                        line: last.line,
                        expecting: "\";\"",
                    });
                }
                return Ok(st.conf);
            }
        }
    }
}

/// The parser's state across statements.
struct State<'a> {
    conf: Conf,
    /// The path as given, for messages.
    file: &'a Path,
    dir: &'a Path,
    /// Directives already given.
    seen: Vec<&'static str>,
}

impl State<'_> {
    fn unexpected(&self, line: usize, token: &str) -> ConfError {
        ConfError::Unexpected {
            file: self.file.to_path_buf(),
            line,
            token: token.to_string(),
        }
    }
}

/// Checks one statement (`words[0]` is the name) against [`DIRECTIVES`] and applies it: the one
/// place that knows about unknown names, argument counts and duplicates.
fn apply(st: &mut State<'_>, words: &[Word]) -> Result<(), ConfError> {
    let path = st.file;
    let file = || path.to_path_buf();
    let Some((name, args)) = words.split_first() else {
        return Ok(());
    };
    let Some(d) = DIRECTIVES.iter().find(|d| d.name == name.text) else {
        return Err(ConfError::UnknownDirective {
            file: file(),
            line: name.line,
            name: name.text.clone(),
        });
    };
    if args.len() < d.min_args || args.len() > d.max_args {
        // `daemon off` + newline + `mode kv;` reads as one statement: say what is missing.
        let runs_on = words.windows(2).find(|pair| {
            pair[1].line > pair[0].line && DIRECTIVES.iter().any(|d| d.name == pair[1].text)
        });
        if let Some(pair) = runs_on {
            return Err(ConfError::NotTerminated {
                file: file(),
                line: pair[0].line,
                directive: d.name,
            });
        }
        return Err(ConfError::ArgCount {
            file: file(),
            line: name.line,
            directive: d.name,
        });
    }
    let first = !st.seen.contains(&d.name);
    if !first && !d.multi {
        return Err(ConfError::Duplicate {
            file: file(),
            line: name.line,
            directive: d.name,
        });
    }
    let a = Args {
        words: args,
        dir: st.dir,
        first,
    };
    if let Err(bad) = (d.set)(&mut st.conf, &a) {
        let (arg, error) = match bad {
            Bad::Value { arg, expected } => (arg, Some(expected)),
            Bad::DuplicateListen { arg } => (arg, None),
        };
        let word = args.get(arg).unwrap_or(name);
        return Err(match error {
            Some(expected) => ConfError::InvalidValue {
                file: file(),
                line: word.line,
                directive: d.name,
                value: word.text.clone(),
                expected,
            },
            None => ConfError::DuplicateListen {
                file: file(),
                line: word.line,
                value: word.text.clone(),
            },
        });
    }
    st.seen.push(d.name);
    Ok(())
}

/// One word of a statement (quotes removed), with the line it starts on.
#[derive(Debug)]
struct Word {
    text: String,
    line: usize,
}

enum Token {
    Word(Word),
    Semicolon(usize),
    Brace(&'static str, usize),
    Eof,
}

/// Cuts conf text into tokens, as nginx does: whitespace separates words; `;`, `{` and `}` end a
/// word anywhere; `#` starts a comment only where a word could start; a quote starts a quoted
/// word only there too, and the closing quote must be followed by a separator.
struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    file: &'a Path,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str, file: &'a Path) -> Lexer<'a> {
        Lexer {
            chars: text.chars().peekable(),
            line: 1,
            file,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next();
        if c == Some('\n') {
            self.line += 1;
        }
        c
    }

    fn next_token(&mut self) -> Result<Token, ConfError> {
        loop {
            let Some(&c) = self.chars.peek() else {
                return Ok(Token::Eof);
            };
            match c {
                c if c.is_ascii_whitespace() => {
                    self.bump();
                }
                '#' => {
                    while let Some(&c) = self.chars.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                ';' => {
                    self.bump();
                    return Ok(Token::Semicolon(self.line));
                }
                '{' | '}' => {
                    self.bump();
                    let brace = if c == '{' { "{" } else { "}" };
                    return Ok(Token::Brace(brace, self.line));
                }
                '"' | '\'' => return self.quoted(c),
                _ => return Ok(self.word()),
            }
        }
    }

    fn word(&mut self) -> Token {
        let line = self.line;
        let mut text = String::new();
        while let Some(&c) = self.chars.peek() {
            if c.is_ascii_whitespace() || matches!(c, ';' | '{' | '}') {
                break;
            }
            text.push(c);
            self.bump();
        }
        Token::Word(Word { text, line })
    }

    fn quoted(&mut self, quote: char) -> Result<Token, ConfError> {
        let line = self.line;
        self.bump();
        let mut text = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(ConfError::UnexpectedEof {
                        file: self.file.to_path_buf(),
                        line,
                        expecting: if quote == '"' { "'\"'" } else { "\"'\"" },
                    })
                }
                Some('\\') => match self.chars.peek() {
                    Some(&c) if matches!(c, '"' | '\'' | '\\') => {
                        text.push(c);
                        self.bump();
                    }
                    _ => text.push('\\'),
                },
                Some(c) if c == quote => break,
                Some(c) => text.push(c),
            }
        }
        match self.chars.peek() {
            Some(&c) if !(c.is_ascii_whitespace() || matches!(c, ';' | '{' | '}')) => {
                Err(ConfError::Unexpected {
                    file: self.file.to_path_buf(),
                    line: self.line,
                    token: c.to_string(),
                })
            }
            _ => Ok(Token::Word(Word { text, line })),
        }
    }
}

/// `dir/s` (or `s` when absolute), with `.` and repeated slashes dropped; `..` is kept, since
/// resolving it lexically is wrong across symlinks.
fn resolve(dir: &Path, s: &str) -> PathBuf {
    let p = Path::new(s);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    };
    joined.components().collect()
}

/// Plain ASCII digits that fit in a u64 (no sign, no spaces, no `_`).
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `1024`, `64k`, `64m`, `2g` (case-insensitive, powers of 1024) in bytes.
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let (num, unit) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    parse_digits(num)?.checked_mul(unit)
}

/// `1500ms`, `30s`, `2m`, `1h`, `1d`, or a bare number of seconds; at most [`MAX_TIME_MS`].
pub(crate) fn parse_time(s: &str) -> Option<Duration> {
    let (num, unit_ms) = if let Some(num) = s.strip_suffix("ms") {
        (num, 1u64)
    } else {
        match s.as_bytes().last()? {
            b's' => (&s[..s.len() - 1], 1000),
            b'm' => (&s[..s.len() - 1], 60 * 1000),
            b'h' => (&s[..s.len() - 1], 3600 * 1000),
            b'd' => (&s[..s.len() - 1], 86400 * 1000),
            _ => (s, 1000),
        }
    };
    let ms = parse_digits(num)?.checked_mul(unit_ms)?;
    (ms <= MAX_TIME_MS).then(|| Duration::from_millis(ms))
}

/// `127.0.0.1:8082`, `[::1]:8082`, `*:8082` (any IPv4), `localhost:8082` (127.0.0.1), or a bare
/// port `8082` (any IPv4). Port 0 is refused: clients could not know the port.
pub(crate) fn parse_listen(s: &str) -> Option<SocketAddr> {
    let port = |p: &str| {
        parse_digits(p)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n != 0)
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, p) = rest.split_once("]:")?;
        let ip: Ipv6Addr = host.parse().ok()?;
        return Some(SocketAddr::new(ip.into(), port(p)?));
    }
    match s.rsplit_once(':') {
        None => Some(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port(s)?)),
        Some((host, p)) => {
            let ip = if host == "*" {
                Ipv4Addr::UNSPECIFIED
            } else if host.eq_ignore_ascii_case("localhost") {
                Ipv4Addr::LOCALHOST
            } else {
                host.parse().ok()?
            };
            Some(SocketAddr::new(ip.into(), port(p)?))
        }
    }
}

#[cfg(test)]
mod tests;
