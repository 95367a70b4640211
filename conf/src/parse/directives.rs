//! The table of the conf's directives, one entry each with its argument counts, its man-page
//! syntax and default, and the `set` that reads its values into the [`Conf`](crate::Conf). The
//! generic checks live in [`table`](super::table); each `set` here only says what its values
//! mean.

use super::args::{Args, Bad};
use super::table::{Context, Directive};
use super::values::parse_listen;
use crate::{Conf, Listen, LogLevel, LogTarget, Mode, WorkerCount};
use std::time::Duration;

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
        name: "worker_connections",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "number",
        default: "4096",
        help: "the most client connections one worker holds open; at the limit it stops accepting until one closes",
        set: |c, a| {
            c.worker_connections = a.number(0, 1, 1 << 20, "a number from 1 to 1048576")? as usize;
            Ok(())
        },
    },
    Directive {
        name: "worker_rlimit_nofile",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "number",
        default: "",
        help: "the open-file limit (RLIMIT_NOFILE) the master sets for itself and its workers",
        set: |c, a| {
            c.worker_rlimit_nofile = Some(a.number(0, 1, 1 << 30, "a number from 1 to 1073741824")?);
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
        name: "debug_fail_flush",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "number",
        default: "0",
        help: "test-only: the daemon's nth journal flush fails with EIO (0: never)",
        set: |c, a| {
            c.debug_fail_flush = debug_count(c, a)?;
            Ok(())
        },
    },
    Directive {
        name: "debug_fail_checkpoint",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Both,
        syntax: "number",
        default: "0",
        help: "test-only: the daemon's nth checkpoint sync fails with EIO (0: never)",
        set: |c, a| {
            c.debug_fail_checkpoint = debug_count(c, a)?;
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

/// A fault switch's count: above 0 only after `debug_endpoints on` (a test conf), so that a
/// production conf cannot turn it on.
fn debug_count(c: &Conf, a: &Args<'_>) -> Result<u64, Bad> {
    let n = a.number(0, 0, u64::MAX, "a number")?;
    // The switches make a daemon fail on purpose: a release build (what users run) has none.
    if n > 0 && !cfg!(debug_assertions) {
        return a.bad(
            0,
            "0 in a release build (a test-only fault switch of debug builds)",
        );
    }
    if n > 0 && !c.debug_endpoints {
        return a.bad(0, "0, or a number after \"debug_endpoints on\" (test-only)");
    }
    Ok(n)
}
