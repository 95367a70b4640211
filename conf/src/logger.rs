//! The error log: nginx-like lines (`2026/11/24 05:54:36 [notice] 4242#0: message`), each
//! written with one `write(2)` to a file opened with `O_APPEND`, so the lines of the master and
//! of every worker sharing the file never interleave. Before [`init`], lines go to stderr at
//! level `notice`.
//!
//! The `log` crate's macros work once [`init`] ran (its Error/Warn/Info/Debug/Trace are
//! error/warn/info/debug/debug); the nginx levels it lacks have their own macros:
//! [`notice!`](crate::notice), [`crit!`](crate::crit), [`alert!`](crate::alert),
//! [`emerg!`](crate::emerg).
//!
//! Processes are single-threaded and may fork after [`init`]: a child keeps writing to the
//! inherited file descriptor until it calls [`init`] or [`reopen`] itself.

use crate::{LogLevel, LogTarget};
use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

enum Sink {
    Stderr,
    File { path: PathBuf, file: File },
}

struct State {
    sink: Sink,
    /// `redirect_stderr` was called: [`reopen`] and [`init`] point fd 2 at the new file too.
    stderr_redirected: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    sink: Sink::Stderr,
    stderr_redirected: false,
});

/// The configured level, outside the lock so that a filtered line costs one atomic load.
static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Notice as u8);

fn lock() -> MutexGuard<'static, State> {
    // A panic while holding the lock leaves the state whole (only a fd swap happens under it).
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Installs the error log: every line from now on goes to `target` when its level is at least
/// `level`. Calling it again (on reload) replaces both; if the new file cannot be opened the old
/// log stays in place and the error is returned. A file's folder is created if missing.
pub fn init(target: &LogTarget, level: LogLevel) -> io::Result<()> {
    let sink = open(target)?;
    {
        let mut st = lock();
        st.sink = sink;
        if st.stderr_redirected {
            dup_to_stderr(&st.sink)?;
        }
    }
    LEVEL.store(level as u8, Ordering::Relaxed);
    log::set_max_level(match level {
        LogLevel::Debug => log::LevelFilter::Trace,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Notice | LogLevel::Warn => log::LevelFilter::Warn,
        _ => log::LevelFilter::Error,
    });
    // Only the first call installs the logger; later ones fail harmlessly.
    let _ = log::set_logger(&LOGGER);
    Ok(())
}

/// Reopens the log file at the same path (USR1, after logrotate moved it away). On error the
/// old file stays in use.
pub fn reopen() -> io::Result<()> {
    let mut st = lock();
    let path = match &st.sink {
        Sink::Stderr => return Ok(()),
        Sink::File { path, .. } => path.clone(),
    };
    st.sink = open(&LogTarget::File(path))?;
    if st.stderr_redirected {
        dup_to_stderr(&st.sink)?;
    }
    Ok(())
}

/// Points fd 2 at the log file (nginx does this once daemonized), so that whatever a library
/// prints to stderr lands in the log; [`reopen`] keeps it pointed at the current file. Nothing
/// happens when the log is stderr.
pub fn redirect_stderr() -> io::Result<()> {
    let mut st = lock();
    dup_to_stderr(&st.sink)?;
    st.stderr_redirected = true;
    Ok(())
}

fn dup_to_stderr(sink: &Sink) -> io::Result<()> {
    if let Sink::File { file, .. } = sink {
        // SAFETY: dup2 on a fd we own onto fd 2; no memory is involved.
        if unsafe { libc::dup2(file.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn open(target: &LogTarget) -> io::Result<Sink> {
    match target {
        LogTarget::Stderr => Ok(Sink::Stderr),
        LogTarget::File(path) => {
            if let Some(dir) = path.parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)?;
                }
            }
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o644)
                .open(path)?;
            Ok(Sink::File {
                path: path.clone(),
                file,
            })
        }
    }
}

/// The configured level.
pub fn level() -> LogLevel {
    let n = LEVEL.load(Ordering::Relaxed);
    LogLevel::ALL
        .into_iter()
        .find(|&l| l as u8 == n)
        .unwrap_or(LogLevel::Notice)
}

/// Whether a line at `level` would be written.
pub fn enabled(level: LogLevel) -> bool {
    level as u8 >= LEVEL.load(Ordering::Relaxed)
}

/// Writes one line at `level` (dropped when below the configured level). The macros
/// [`notice!`](crate::notice) and friends call this.
pub fn write(level: LogLevel, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    // Formatted before taking the lock: a Display impl may itself log.
    let line = format_line(level, args);
    let st = lock();
    emit(&st.sink, line.as_bytes());
}

/// `2026/11/24 05:54:36 [notice] 4242#0: message\n`.
fn format_line(level: LogLevel, args: fmt::Arguments<'_>) -> String {
    let mut line = String::with_capacity(128);
    push_time(&mut line);
    let _ = write!(line, " [{}] {}#0: ", level.name(), std::process::id());
    let _ = line.write_fmt(args);
    if !line.ends_with('\n') {
        line.push('\n');
    }
    line
}

fn push_time(line: &mut String) {
    // SAFETY: `time` with a null pointer only returns the time; `localtime_r` writes into `tm`,
    // which lives on this stack frame, and is thread-safe (unlike `localtime`).
    let tm = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            None
        } else {
            Some(tm)
        }
    };
    match tm {
        Some(tm) => {
            let _ = write!(
                line,
                "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
                tm.tm_year + 1900,
                tm.tm_mon + 1,
                tm.tm_mday,
                tm.tm_hour,
                tm.tm_min,
                tm.tm_sec
            );
        }
        None => line.push_str("1970/01/01 00:00:00"),
    }
}

/// One `write(2)` of the whole line (more only if the kernel takes part of it); errors are
/// dropped, since there is nowhere left to report them.
fn emit(sink: &Sink, bytes: &[u8]) {
    let _ = match sink {
        Sink::Stderr => io::stderr().lock().write_all(bytes),
        Sink::File { file, .. } => (&*file).write_all(bytes),
    };
}

struct Logger;

static LOGGER: Logger = Logger;

fn from_log(level: log::Level) -> LogLevel {
    match level {
        log::Level::Error => LogLevel::Error,
        log::Level::Warn => LogLevel::Warn,
        log::Level::Info => LogLevel::Info,
        log::Level::Debug | log::Level::Trace => LogLevel::Debug,
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        enabled(from_log(metadata.level()))
    }

    fn log(&self, record: &log::Record<'_>) {
        write(from_log(record.level()), *record.args());
    }

    fn flush(&self) {}
}

/// Logs a panic at `alert` as `panic: <message> at <file:line>` instead of printing it to
/// stderr.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            s
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.as_str()
        } else {
            "Box<dyn Any>"
        };
        let line = match info.location() {
            Some(at) => format_line(
                LogLevel::Alert,
                format_args!("panic: {} at {}:{}", message, at.file(), at.line()),
            ),
            None => format_line(LogLevel::Alert, format_args!("panic: {}", message)),
        };
        // The panic may have happened while this thread held the lock: never wait for it.
        match STATE.try_lock() {
            Ok(st) => emit(&st.sink, line.as_bytes()),
            Err(std::sync::TryLockError::Poisoned(p)) => {
                emit(&p.into_inner().sink, line.as_bytes())
            }
            Err(std::sync::TryLockError::WouldBlock) => emit(&Sink::Stderr, line.as_bytes()),
        }
    }));
}

/// Logs at `notice` (the nginx level between info and warn); same syntax as `log::info!`.
#[macro_export]
macro_rules! notice {
    ($($arg:tt)+) => {
        $crate::logger::write($crate::LogLevel::Notice, ::std::format_args!($($arg)+))
    };
}

/// Logs at `crit`; same syntax as `log::error!`.
#[macro_export]
macro_rules! crit {
    ($($arg:tt)+) => {
        $crate::logger::write($crate::LogLevel::Crit, ::std::format_args!($($arg)+))
    };
}

/// Logs at `alert` (tests fail on any `[alert]` line); same syntax as `log::error!`.
#[macro_export]
macro_rules! alert {
    ($($arg:tt)+) => {
        $crate::logger::write($crate::LogLevel::Alert, ::std::format_args!($($arg)+))
    };
}

/// Logs at `emerg`; same syntax as `log::error!`.
#[macro_export]
macro_rules! emerg {
    ($($arg:tt)+) => {
        $crate::logger::write($crate::LogLevel::Emerg, ::std::format_args!($($arg)+))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// `2026/11/24 05:54:36 [notice] 4242#0: message` → (level, pid, message).
    fn split(line: &str) -> (&str, u32, &str) {
        let b = line.as_bytes();
        assert!(line.len() > 20, "{line:?}");
        for (i, &c) in b[..19].iter().enumerate() {
            let want_digit = !matches!(i, 4 | 7 | 10 | 13 | 16);
            assert_eq!(c.is_ascii_digit(), want_digit, "{line:?}");
        }
        assert_eq!(&line[4..5], "/");
        assert_eq!(&line[19..21], " [");
        let rest = &line[21..];
        let (level, rest) = rest.split_once("] ").unwrap();
        let (pid, message) = rest.split_once("#0: ").unwrap();
        (level, pid.parse().unwrap(), message)
    }

    /// One test for the whole logger: it is process-global state.
    #[test]
    fn the_error_log() {
        let dir = std::env::temp_dir().join(format!("conf-logger-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("logs/error.log");
        let me = std::process::id();

        // The folder is created; levels filter; the log crate is routed here.
        init(&LogTarget::File(path.clone()), LogLevel::Info).unwrap();
        assert_eq!(level(), LogLevel::Info);
        crate::notice!("hello {}", 42);
        log::info!("from log {}", "info");
        log::debug!("hidden debug");
        log::trace!("hidden trace");
        write(LogLevel::Debug, format_args!("hidden too"));
        log::warn!("a warning");
        log::error!("an error");
        crate::crit!("critical");
        crate::alert!("alerted");
        crate::emerg!("emergency");
        let text = read(&path);
        let lines: Vec<(&str, u32, &str)> = text.lines().map(split).collect();
        assert_eq!(
            lines,
            vec![
                ("notice", me, "hello 42"),
                ("info", me, "from log info"),
                ("warn", me, "a warning"),
                ("error", me, "an error"),
                ("crit", me, "critical"),
                ("alert", me, "alerted"),
                ("emerg", me, "emergency"),
            ]
        );
        assert!(text.ends_with('\n'));

        // Reopen after a rotation: new lines go to a fresh file at the path.
        let rotated = dir.join("logs/error.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        crate::notice!("before reopen");
        reopen().unwrap();
        crate::notice!("after reopen");
        assert!(read(&rotated).contains("before reopen"));
        assert!(!read(&rotated).contains("after reopen"));
        assert!(read(&path).contains("[notice] "));
        assert!(read(&path).ends_with(": after reopen\n"));

        // init again replaces target and level.
        let other = dir.join("other.log");
        init(&LogTarget::File(other.clone()), LogLevel::Error).unwrap();
        crate::notice!("filtered");
        log::warn!("filtered");
        log::error!("kept");
        assert_eq!(
            read(&other).lines().map(|l| split(l).2).collect::<Vec<_>>(),
            ["kept"]
        );
        assert!(!read(&path).contains("filtered"));

        // A failed init keeps the old log.
        let blocked = dir.join("other.log/x.log");
        assert!(init(&LogTarget::File(blocked), LogLevel::Debug).is_err());
        assert_eq!(level(), LogLevel::Error);
        log::error!("still here");
        assert!(read(&other).ends_with(": still here\n"));

        // Lines from a forked child and its parent never interleave.
        let shared = dir.join("shared.log");
        init(&LogTarget::File(shared.clone()), LogLevel::Notice).unwrap();
        let body = |c: char| c.to_string().repeat(3000);
        const N: usize = 300;
        // SAFETY: the child only formats, writes and calls _exit.
        let child = unsafe { libc::fork() };
        assert!(child >= 0);
        if child == 0 {
            let b = body('c');
            for i in 0..N {
                crate::notice!("{i} {b}");
            }
            // SAFETY: ends the child without running the test harness's code.
            unsafe { libc::_exit(0) };
        }
        let b = body('p');
        for i in 0..N {
            crate::notice!("{i} {b}");
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        let text = read(&shared);
        let (mut from_child, mut from_parent) = (0, 0);
        for line in text.lines() {
            let (level, pid, message) = split(line);
            assert_eq!(level, "notice");
            let (_, b) = message.split_once(' ').unwrap();
            if pid == me {
                assert_eq!(b, body('p'));
                from_parent += 1;
            } else {
                assert_eq!(pid, child as u32);
                assert_eq!(b, body('c'));
                from_child += 1;
            }
        }
        assert_eq!((from_child, from_parent), (N, N));

        // A panic is logged at alert with its place.
        let previous = std::panic::take_hook();
        install_panic_hook();
        let result = std::panic::catch_unwind(|| panic!("boom {}", 7));
        let line = line!() - 1;
        std::panic::set_hook(previous);
        assert!(result.is_err());
        let text = read(&shared);
        let last = split(text.lines().last().unwrap());
        assert_eq!(
            last,
            (
                "alert",
                me,
                format!("panic: boom 7 at {}:{line}", file!()).as_str()
            )
        );

        init(&LogTarget::Stderr, LogLevel::Notice).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
