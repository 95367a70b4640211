//! The `cluster { }` block (`cluster.md` §1): its own table of directives, each filling a
//! [`ClusterConf`], and the checks that need more than one statement: the required directives,
//! `node_id` among the `node` lines and `replicas` within the nodes (when the block closes), and
//! this node's client address among the `listen` addresses (at the end of the file, since
//! `listen` may come after the block). The statement loop in `mod.rs` opens and closes the
//! block; unknown names, argument counts and duplicates are the table's, as everywhere.

use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::args::{Args, Bad};
use super::error::{ClusterProblem, ConfError};
use super::lexer::Word;
use super::table::{Context, Directive, Scope, Source};
use super::values::parse_listen;
use crate::cluster::{ClusterConf, ClusterNode, Reads, Secret};
use crate::cluster::{DEFAULT_GROUPS, DEFAULT_REPLICAS, MIN_SECRET_LEN};
use crate::Conf;

/// The block's directive name at the top level.
pub(super) const NAME: &str = "cluster";

/// The directives a block must have; the others have defaults.
const REQUIRED: [&str; 4] = ["name", "node_id", "node", "secret"];

/// A secret file larger than this is a mistake (a key file is tens of bytes), not a secret.
const MAX_SECRET_FILE: u64 = 64 << 10;

const NAME_EXPECTED: &str = "a name of at most 64 letters, digits, \".\", \"_\" or \"-\"";

/// Every directive of the `cluster` block, in the order of the spec and the man page.
pub static CLUSTER_DIRECTIVES: &[Directive<ClusterConf>] = &[
    Directive {
        name: "name",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Cluster,
        syntax: "name",
        default: "",
        help: "the cluster's name: a node refuses peers of another cluster name",
        set: |c, a| {
            c.name = node_name(a, 0)?;
            Ok(())
        },
    },
    Directive {
        name: "node_id",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Cluster,
        syntax: "name",
        default: "",
        help: "this node: the name of one of the node lines",
        set: |c, a| {
            c.node_id = node_name(a, 0)?;
            Ok(())
        },
    },
    Directive {
        name: "node",
        min_args: 3,
        max_args: 3,
        multi: true,
        context: Context::Cluster,
        syntax: "name client_address peer_address",
        default: "",
        help: "a node of the cluster: its name, its client address and its peer address (repeats)",
        set: |c, a| {
            let name = node_name(a, 0)?;
            if c.nodes.iter().any(|n| n.name == name) {
                return Err(Bad::Cluster {
                    arg: 0,
                    problem: ClusterProblem::DuplicateNodeName(name),
                });
            }
            let client = node_addr(a, 1)?;
            let peer = node_addr(a, 2)?;
            let taken =
                |addr: SocketAddr| c.nodes.iter().any(|n| n.client == addr || n.peer == addr);
            let twice = [(1, client), (2, peer)]
                .into_iter()
                .find(|&(arg, addr)| taken(addr) || (arg == 2 && addr == client));
            if let Some((arg, _)) = twice {
                return Err(Bad::Cluster {
                    arg,
                    problem: ClusterProblem::DuplicateAddress(a.str(arg).to_string()),
                });
            }
            c.nodes.push(ClusterNode {
                name,
                client,
                client_text: a.str(1).to_string(),
                peer,
                peer_text: a.str(2).to_string(),
            });
            Ok(())
        },
    },
    Directive {
        name: "groups",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Cluster,
        syntax: "number",
        default: "16",
        help: "how many consensus groups the 1024 slots are spread over (1 to 1024)",
        set: |c, a| {
            c.groups = a.number(0, 1, 1024, "a number from 1 to 1024")? as usize;
            Ok(())
        },
    },
    Directive {
        name: "replicas",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Cluster,
        syntax: "number",
        default: "3",
        help: "how many nodes hold each group (1 to the number of nodes; 3 survives one loss)",
        set: |c, a| {
            c.replicas = a.count(0)?;
            Ok(())
        },
    },
    Directive {
        name: "secret",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Cluster,
        syntax: "path",
        default: "",
        help: "a file holding the secret every node shares (not world-readable, 16 bytes or more)",
        set: |c, a| {
            let path = a.path(0)?;
            c.secret = read_secret(&path).map_err(|problem| Bad::Cluster { arg: 0, problem })?;
            c.secret_path = path;
            Ok(())
        },
    },
    Directive {
        name: "timeout",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Cluster,
        syntax: "time",
        default: "5s",
        help: "how long a request may wait for its group (election, commit)",
        set: |c, a| {
            c.timeout = a.time(0, Duration::from_millis(1), "a time above 0")?;
            Ok(())
        },
    },
    Directive {
        name: "election_timeout",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Cluster,
        syntax: "time",
        default: "1s",
        help: "how long followers wait for a leader before an election; heartbeats every quarter",
        set: |c, a| {
            c.election_timeout = a.time(0, Duration::from_millis(10), "a time of at least 10ms")?;
            Ok(())
        },
    },
    Directive {
        name: "reads",
        min_args: 1,
        max_args: 1,
        multi: false,
        context: Context::Cluster,
        syntax: "linearizable | local",
        default: "linearizable",
        help: "linearizable: a read sees every acknowledged write; local: any replica, may lag",
        set: |c, a| {
            c.reads = match a.str(0) {
                "linearizable" => Reads::Linearizable,
                "local" => Reads::Local,
                _ => return a.bad(0, "linearizable or local"),
            };
            Ok(())
        },
    },
];

/// A node or cluster name: it travels in peer requests and log lines, so plain characters only.
fn node_name(a: &Args<'_>, i: usize) -> Result<String, Bad> {
    let s = a.str(i);
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if s.is_empty() || s.len() > 64 || !s.bytes().all(plain) {
        return a.bad(i, NAME_EXPECTED);
    }
    Ok(s.to_string())
}

/// A node address in the forms `listen` takes, but never a wildcard: other nodes and clients
/// connect to it.
fn node_addr(a: &Args<'_>, i: usize) -> Result<SocketAddr, Bad> {
    match parse_listen(a.str(i)) {
        Some(addr) if !addr.ip().is_unspecified() => Ok(addr),
        _ => a.bad(i, "an address like 10.0.0.1:8082 or [::1]:8082"),
    }
}

/// Reads the secret file: a regular file, not world-readable, of [`MIN_SECRET_LEN`] bytes or
/// more once trailing white space is trimmed. Stat first, so that a FIFO never blocks the open.
fn read_secret(path: &Path) -> Result<Secret, ClusterProblem> {
    let unreadable = |error| ClusterProblem::SecretUnreadable {
        path: path.to_path_buf(),
        error,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(unreadable(std::io::Error::other("not a regular file")));
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(unreadable(std::io::Error::other("larger than 64 KiB")));
    }
    let mode = meta.permissions().mode();
    if mode & 0o004 != 0 {
        return Err(ClusterProblem::SecretWorldReadable {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE).read_to_end(&mut bytes))
        .map_err(unreadable)?;
    let secret = Secret::trimmed(bytes);
    if secret.bytes().len() < MIN_SECRET_LEN {
        return Err(ClusterProblem::SecretTooShort {
            path: path.to_path_buf(),
            len: secret.bytes().len(),
        });
    }
    Ok(secret)
}

/// A `cluster` block being read: its statements so far.
pub(super) struct Block {
    scope: Scope<ClusterConf>,
    conf: ClusterConf,
}

impl Block {
    /// The block opened by `words` (`cluster`, and nothing else) and a `{`, every directive
    /// at its default. `inside`: the `{` is inside a block already; `given`: the file had a
    /// block before.
    pub(super) fn open(
        src: &Source<'_>,
        words: &[Word],
        inside: bool,
        given: bool,
    ) -> Result<Block, ConfError> {
        let file = src.file.to_path_buf();
        let line = words.first().map_or(0, |w| w.line);
        if inside {
            let directive = NAME.to_string();
            return Err(ConfError::NotAllowedHere {
                file,
                line,
                directive,
            });
        }
        if words.len() > 1 {
            let directive = NAME;
            return Err(ConfError::ArgCount {
                file,
                line,
                directive,
            });
        }
        if given {
            let directive = NAME;
            return Err(ConfError::Duplicate {
                file,
                line,
                directive,
            });
        }
        Ok(Block {
            scope: Scope::new(CLUSTER_DIRECTIVES),
            conf: ClusterConf {
                line,
                name: String::new(),
                node_id: String::new(),
                this: 0,
                nodes: Vec::new(),
                groups: DEFAULT_GROUPS,
                replicas: DEFAULT_REPLICAS,
                secret_path: PathBuf::new(),
                secret: Secret::default(),
                timeout: Duration::from_secs(5),
                election_timeout: Duration::from_secs(1),
                reads: Reads::Linearizable,
            },
        })
    }

    /// The line of `cluster {`.
    pub(super) fn line(&self) -> usize {
        self.conf.line
    }

    /// One statement inside the block.
    pub(super) fn apply(&mut self, src: &Source<'_>, words: &[Word]) -> Result<(), ConfError> {
        self.scope.apply(src, &mut self.conf, words)
    }

    /// The `}`: the checks over the whole block. Gives the block and the line of this node's
    /// `node` line (for [`check_listen`]).
    pub(super) fn close(self, src: &Source<'_>) -> Result<(ClusterConf, usize), ConfError> {
        let Block { scope, mut conf } = self;
        let at = |line, problem| ConfError::Cluster {
            file: src.file.to_path_buf(),
            line,
            problem,
        };
        if let Some(missing) = REQUIRED
            .into_iter()
            .find(|d| scope.lines_of(d).next().is_none())
        {
            return Err(at(conf.line, ClusterProblem::Missing(missing)));
        }
        let Some(this) = conf.nodes.iter().position(|n| n.name == conf.node_id) else {
            let line = scope.lines_of("node_id").next().unwrap_or(conf.line);
            return Err(at(line, ClusterProblem::NodeIdNotListed(conf.node_id)));
        };
        conf.this = this;
        let nodes = conf.nodes.len();
        match scope.lines_of("replicas").next() {
            Some(line) if conf.replicas > nodes => {
                return Err(at(
                    line,
                    ClusterProblem::TooManyReplicas {
                        replicas: conf.replicas,
                        nodes,
                    },
                ))
            }
            Some(_) => {}
            // The default is 3, or every node when there are fewer.
            None => conf.replicas = DEFAULT_REPLICAS.min(nodes),
        }
        let this_line = scope.lines_of("node").nth(this).unwrap_or(conf.line);
        Ok((conf, this_line))
    }
}

/// At the end of the file: this node's client address must be one the conf listens on
/// (`this_line` is its `node` line). A wildcard `listen` of the same port and family covers it.
pub(super) fn check_listen(
    src: &Source<'_>,
    conf: &Conf,
    this_line: usize,
) -> Result<(), ConfError> {
    let Some(cluster) = &conf.cluster else {
        return Ok(());
    };
    let node = cluster.this_node();
    let covers = |l: SocketAddr| {
        l == node.client
            || (l.port() == node.client.port()
                && l.ip().is_unspecified()
                && l.is_ipv4() == node.client.is_ipv4())
    };
    if conf.listen.iter().any(|l| covers(l.addr)) {
        return Ok(());
    }
    Err(ConfError::Cluster {
        file: src.file.to_path_buf(),
        line: this_line,
        problem: ClusterProblem::NotListening {
            node: node.name.clone(),
            addr: node.client_text.clone(),
        },
    })
}

#[cfg(test)]
mod tests;
