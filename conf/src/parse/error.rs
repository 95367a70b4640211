//! The conf's one error type and its one-line messages (`file:line: what`), worded as nginx
//! words them. Owns how conf text is quoted in a message; knows nothing of which directives exist.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a conf could not be loaded. Every variant but [`ConfError::Open`] names the file and the
/// line; `Display` is one line, e.g. `/etc/huststore/huststore.conf:12: unknown directive "lisen"`.
#[derive(Debug)]
pub enum ConfError {
    /// The file could not be opened or read.
    Open { path: PathBuf, error: io::Error },
    /// The file is not UTF-8; `line` is where the first bad byte is.
    NotUtf8 { file: PathBuf, line: usize },
    /// A name that is not in [`DIRECTIVES`](crate::DIRECTIVES).
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
