//! The arguments of one statement as a directive's `set` reads them: typed readers (`flag`,
//! `size`, `time`, `number`, `path`, ...) over the value parsers, each naming what it expected
//! when the word is not that, so every directive of the same kind gets the same message.

use super::error::ClusterProblem;
use super::lexer::Word;
use super::values::{parse_digits, parse_flag, parse_size, parse_time, resolve};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a directive's `set` found wrong with argument `arg`.
pub(crate) enum Bad {
    Value {
        arg: usize,
        expected: &'static str,
    },
    DuplicateListen {
        arg: usize,
    },
    /// A rule of the `cluster` block that argument `arg` breaks.
    Cluster {
        arg: usize,
        problem: ClusterProblem,
    },
}

/// The arguments of one statement, as a directive's `set` sees them.
pub(crate) struct Args<'a> {
    pub(super) words: &'a [Word],
    /// The conf file's folder, absolute: relative paths are resolved against it.
    pub(super) dir: &'a Path,
    /// This is the first statement of this directive in the file.
    pub(super) first: bool,
}

impl Args<'_> {
    pub(super) fn len(&self) -> usize {
        self.words.len()
    }

    pub(super) fn str(&self, i: usize) -> &str {
        self.words.get(i).map(|w| w.text.as_str()).unwrap_or("")
    }

    pub(super) fn bad<T>(&self, i: usize, expected: &'static str) -> Result<T, Bad> {
        Err(Bad::Value { arg: i, expected })
    }

    pub(super) fn flag(&self, i: usize) -> Result<bool, Bad> {
        match parse_flag(self.str(i)) {
            Some(on) => Ok(on),
            None => self.bad(i, "on or off"),
        }
    }

    /// Argument `i` read by `parse` (`kind` is the message when it cannot be) and within
    /// `range` (`outside` is the message when it is not).
    fn ranged<V: PartialOrd>(
        &self,
        i: usize,
        parse: fn(&str) -> Option<V>,
        kind: &'static str,
        range: RangeInclusive<V>,
        outside: &'static str,
    ) -> Result<V, Bad> {
        match parse(self.str(i)) {
            None => self.bad(i, kind),
            Some(v) if !range.contains(&v) => self.bad(i, outside),
            Some(v) => Ok(v),
        }
    }

    /// A size of at least `min` bytes; `too_small` is the message when it is less.
    pub(super) fn size(&self, i: usize, min: u64, too_small: &'static str) -> Result<u64, Bad> {
        self.ranged(i, parse_size, "a size like 64m", min..=u64::MAX, too_small)
    }

    /// A time of at least `min`; `too_small` is the message when it is less.
    pub(super) fn time(
        &self,
        i: usize,
        min: Duration,
        too_small: &'static str,
    ) -> Result<Duration, Bad> {
        self.ranged(
            i,
            parse_time,
            "a time like 60s",
            min..=Duration::MAX,
            too_small,
        )
    }

    /// A plain decimal number in `min..=max`; `range` is the message when it is outside.
    pub(super) fn number(
        &self,
        i: usize,
        min: u64,
        max: u64,
        range: &'static str,
    ) -> Result<u64, Bad> {
        self.ranged(i, parse_digits, "a number like 1024", min..=max, range)
    }

    pub(super) fn count(&self, i: usize) -> Result<usize, Bad> {
        let n = self.number(i, 1, usize::MAX as u64, "a number of at least 1")?;
        usize::try_from(n).or_else(|_| self.bad(i, "a number of at least 1"))
    }

    pub(super) fn path(&self, i: usize) -> Result<PathBuf, Bad> {
        let s = self.str(i);
        if s.is_empty() || s.contains('\0') {
            return self.bad(i, "a path");
        }
        Ok(resolve(self.dir, s))
    }
}
