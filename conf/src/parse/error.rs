//! The conf's one error type and its one-line messages (`file:line: what`), worded as nginx
//! words them. Owns how conf text is quoted in a message; knows nothing of which directives exist.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::cluster::MIN_SECRET_LEN;

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
    /// A block directive (`cluster`) ended by `;` instead of opening its block.
    NoOpeningBrace {
        file: PathBuf,
        line: usize,
        directive: &'static str,
    },
    /// A known directive in the wrong place: `cluster` inside its block, a top-level
    /// directive inside the block, a block's directive at the top level.
    NotAllowedHere {
        file: PathBuf,
        line: usize,
        directive: String,
    },
    /// A `cluster` block that breaks one of its rules (`cluster.md` §1).
    Cluster {
        file: PathBuf,
        line: usize,
        problem: ClusterProblem,
    },
}

/// What is wrong with a `cluster` block; [`ConfError::Cluster`] says where.
#[derive(Debug)]
pub enum ClusterProblem {
    /// A required directive (`name`, `node_id`, `node`, `secret`) is not in the block.
    Missing(&'static str),
    /// `node_id` names no `node` line.
    NodeIdNotListed(String),
    /// Two `node` lines with one name.
    DuplicateNodeName(String),
    /// An address given twice among all the nodes' client and peer addresses.
    DuplicateAddress(String),
    /// `replicas` is more than the number of nodes.
    TooManyReplicas { replicas: usize, nodes: usize },
    /// This node's client address is none of the conf's `listen` addresses.
    NotListening { node: String, addr: String },
    /// The secret file could not be read.
    SecretUnreadable { path: PathBuf, error: io::Error },
    /// The secret file may be read by anyone (`mode` is its permission bits).
    SecretWorldReadable { path: PathBuf, mode: u32 },
    /// The secret has fewer than [`MIN_SECRET_LEN`] bytes once trailing white space is trimmed.
    SecretTooShort { path: PathBuf, len: usize },
}

impl fmt::Display for ClusterProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterProblem::Missing(directive) => {
                write!(f, "no \"{directive}\" directive in the \"cluster\" block")
            }
            ClusterProblem::NodeIdNotListed(id) => write!(
                f,
                "\"node_id\" \"{}\" is not the name of a \"node\" line",
                Shown(id)
            ),
            ClusterProblem::DuplicateNodeName(name) => {
                write!(f, "duplicate node name \"{}\" in \"node\"", Shown(name))
            }
            ClusterProblem::DuplicateAddress(addr) => {
                write!(f, "duplicate address \"{}\" in \"node\"", Shown(addr))
            }
            ClusterProblem::TooManyReplicas { replicas, nodes } => write!(
                f,
                "invalid value \"{replicas}\" in \"replicas\" \
                 (expected at most the number of nodes, {nodes})"
            ),
            ClusterProblem::NotListening { node, addr } => write!(
                f,
                "the client address \"{}\" of this node (\"{}\") is not a \"listen\" address",
                Shown(addr),
                Shown(node)
            ),
            ClusterProblem::SecretUnreadable { path, error } => write!(
                f,
                "could not read the secret file \"{}\": {}",
                Shown(&path.to_string_lossy()),
                os_message(error)
            ),
            ClusterProblem::SecretWorldReadable { path, mode } => write!(
                f,
                "the secret file \"{}\" is readable by everyone (mode {:04o}): \
                 run chmod o-r on it",
                Shown(&path.to_string_lossy()),
                mode & 0o7777
            ),
            ClusterProblem::SecretTooShort { path, len } => write!(
                f,
                "the secret file \"{}\" holds {len} bytes, at least {MIN_SECRET_LEN} \
                 are needed (trailing white space does not count)",
                Shown(&path.to_string_lossy())
            ),
        }
    }
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
            | ConfError::Unexpected { line, .. }
            | ConfError::NoOpeningBrace { line, .. }
            | ConfError::NotAllowedHere { line, .. }
            | ConfError::Cluster { line, .. } => Some(*line),
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
            ConfError::NoOpeningBrace {
                file,
                line,
                directive,
            } => write!(
                f,
                "{}:{}: \"{}\" directive has no opening \"{{\"",
                file.display(),
                line,
                directive
            ),
            ConfError::NotAllowedHere {
                file,
                line,
                directive,
            } => write!(
                f,
                "{}:{}: \"{}\" directive is not allowed here",
                file.display(),
                line,
                Shown(directive)
            ),
            ConfError::Cluster {
                file,
                line,
                problem,
            } => write!(f, "{}:{}: {}", file.display(), line, problem),
        }
    }
}

impl std::error::Error for ConfError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfError::Open { error, .. } => Some(error),
            ConfError::Cluster {
                problem: ClusterProblem::SecretUnreadable { error, .. },
                ..
            } => Some(error),
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
