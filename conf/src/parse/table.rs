//! The entry type of a directive table and the one function that checks a statement against a
//! table (known name, number of arguments, duplicates) before the entry's own `set` reads the
//! values. Generic over what the table fills, so a block's table (its own sub-directives) reuses
//! both; it knows nothing of which directives exist.

use super::args::{Args, Bad};
use super::error::ConfError;
use super::lexer::Word;
use crate::Conf;
use std::fmt;
use std::path::Path;

/// Where a directive is used: at the top level, which mode uses it (every top-level directive
/// is accepted in both modes); or inside the `cluster` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Both,
    Kv,
    Mq,
    Cluster,
}

impl Context {
    /// `both`, `kv` or `mq`, as the man page says it.
    pub fn name(self) -> &'static str {
        match self {
            Context::Both => "both",
            Context::Kv => "kv",
            Context::Mq => "mq",
            Context::Cluster => "cluster",
        }
    }
}

/// One entry of a directive table; `T` is what the table fills (the [`Conf`] for the file's
/// top level).
pub struct Directive<T: 'static = Conf> {
    pub name: &'static str,
    /// Fewest arguments after the name.
    pub min_args: usize,
    /// Most arguments after the name.
    pub max_args: usize,
    /// May be given more than once (only `listen`, and `node` in the `cluster` block).
    pub multi: bool,
    /// Which mode uses it.
    pub context: Context,
    /// The arguments as the man page writes them, e.g. `on | off`.
    pub syntax: &'static str,
    /// The default, in conf syntax (`""`: none).
    pub default: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Reads the arguments into the conf; called by [`Scope::apply`] once the generic checks
    /// passed.
    pub(crate) set: fn(&mut T, &Args<'_>) -> Result<(), Bad>,
}

impl<T> fmt::Debug for Directive<T> {
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

/// Where statements come from: the file as given (for messages) and its folder, absolute
/// (relative paths are resolved against it).
pub(super) struct Source<'a> {
    pub(super) file: &'a Path,
    pub(super) dir: &'a Path,
}

impl Source<'_> {
    pub(super) fn unexpected(&self, line: usize, token: &str) -> ConfError {
        ConfError::Unexpected {
            file: self.file.to_path_buf(),
            line,
            token: token.to_string(),
        }
    }
}

/// The statements of one scope (the file's top level, or a block) checked against one table.
pub(super) struct Scope<T: 'static> {
    table: &'static [Directive<T>],
    /// Directives already given in this scope, each time with its line, in file order.
    seen: Vec<(&'static str, usize)>,
}

impl<T> Scope<T> {
    pub(super) fn new(table: &'static [Directive<T>]) -> Scope<T> {
        Scope {
            table,
            seen: Vec::new(),
        }
    }

    /// Whether the table has a directive called `name`.
    pub(super) fn knows(&self, name: &str) -> bool {
        self.table.iter().any(|d| d.name == name)
    }

    /// The lines `name` was given on, in file order.
    pub(super) fn lines_of<'s>(&'s self, name: &'s str) -> impl Iterator<Item = usize> + 's {
        self.seen
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|&(_, line)| line)
    }

    /// Checks one statement (`words[0]` is the name) against the table and applies it to
    /// `target`: the one place that knows about unknown names, argument counts and duplicates.
    pub(super) fn apply(
        &mut self,
        src: &Source<'_>,
        target: &mut T,
        words: &[Word],
    ) -> Result<(), ConfError> {
        let path = src.file;
        let file = || path.to_path_buf();
        let Some((name, args)) = words.split_first() else {
            return Ok(());
        };
        let Some(d) = self.table.iter().find(|d| d.name == name.text) else {
            return Err(ConfError::UnknownDirective {
                file: file(),
                line: name.line,
                name: name.text.clone(),
            });
        };
        if args.len() < d.min_args || args.len() > d.max_args {
            // `daemon off` + newline + `mode kv;` reads as one statement: say what is missing.
            let runs_on = words
                .windows(2)
                .find(|pair| pair[1].line > pair[0].line && self.knows(&pair[1].text));
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
        let first = self.lines_of(d.name).next().is_none();
        if !first && !d.multi {
            return Err(ConfError::Duplicate {
                file: file(),
                line: name.line,
                directive: d.name,
            });
        }
        let a = Args {
            words: args,
            dir: src.dir,
            first,
        };
        if let Err(bad) = (d.set)(target, &a) {
            let word = |arg: usize| args.get(arg).unwrap_or(name);
            return Err(match bad {
                Bad::Value { arg, expected } => ConfError::InvalidValue {
                    file: file(),
                    line: word(arg).line,
                    directive: d.name,
                    value: word(arg).text.clone(),
                    expected,
                },
                Bad::DuplicateListen { arg } => ConfError::DuplicateListen {
                    file: file(),
                    line: word(arg).line,
                    value: word(arg).text.clone(),
                },
                Bad::Cluster { arg, problem } => ConfError::Cluster {
                    file: file(),
                    line: word(arg).line,
                    problem,
                },
            });
        }
        self.seen.push((d.name, name.line));
        Ok(())
    }
}
